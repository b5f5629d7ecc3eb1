"""titan.prepare: images + captions -> checked, fixed Titan fine-tuning data, manifest, upload."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from tests.prepare_support import assert_runs_without_torch_or_boto3, bucket_keys, mocked_bucket
from tests.titan_data_support import (
    CLEAN_CAPTIONS,
    make_dataset,
    snapshot,
    write_captions,
    write_image,
)
from titan import prepare
from titan.prepare import (
    MAX_PIXELS,
    MAX_SIDE,
    PrepareError,
    Record,
    Report,
    S3Location,
    fit_within_limits,
    fix,
    main,
    parse_s3_uri,
    recommend_hyperparameters,
    recommended_step_count,
    scan,
    upload,
    validate,
    write_manifest,
)

DESTINATION = "s3://atelier-datasets/titan/pets/"


def check(images: Path, captions: Path | None = None) -> Report:
    return validate(scan(images, captions).records)


def failures(report: Report) -> dict[str, list[str]]:
    """File -> the rules it breaks, for the failing records only."""
    return {result.record.name: result.rules for result in report.failing}


def manifest_lines(out: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """The clean set of five, captioned with sidecar .txt files."""
    folder = tmp_path / "pets"
    make_dataset(folder)
    return folder


# --------------------------------------------------------------------------- caption sources


@pytest.mark.parametrize("form", ["sidecar", "csv", "json"])
def test_each_caption_form_gives_the_same_valid_records(tmp_path: Path, form: str) -> None:
    # Given the clean set with its captions as sidecars, a CSV or a JSON object
    folder = tmp_path / "pets"
    captions = make_dataset(folder, form=form)
    # When it is scanned and validated
    report = check(folder, captions)
    # Then every image has its caption and the dataset passes
    assert report.valid, report.summary()
    assert {r.record.name: r.record.caption for r in report.records} == CLEAN_CAPTIONS
    assert report.dataset_findings == []


def test_csv_captions_with_commas_bom_and_extra_columns(tmp_path: Path) -> None:
    # Given a CSV saved by Excel (BOM), with an extra column, a quoted caption with commas and
    # an unquoted one whose commas split it into several fields
    folder = tmp_path / "pets"
    make_dataset(folder, form="sidecar")
    for sidecar in folder.glob("*.txt"):
        sidecar.unlink()
    names = list(CLEAN_CAPTIONS)
    captions = tmp_path / "captions.csv"
    captions.write_text(
        "\ufeffFilename,Caption\n"
        f'{names[0]},"Ron the dog, asleep, on a bed"\n'
        f"{names[1]},Ron the dog,   running,\ton sand\n"
        + "".join(f"{name},{CLEAN_CAPTIONS[name]}\n" for name in names[2:])
        + "\n",
        encoding="utf-8",
    )
    # When it is scanned
    records = {r.name: r for r in scan(folder, captions).records}
    # Then the commas are kept, whitespace is normalised and the line is remembered
    assert records[names[0]].caption == "Ron the dog, asleep, on a bed"
    assert records[names[1]].caption == "Ron the dog, running, on sand"
    assert records[names[1]].caption_source == "captions.csv line 3"
    assert check(folder, captions).valid


def test_caption_column_not_last_ignores_other_columns(tmp_path: Path) -> None:
    folder = tmp_path / "pets"
    make_dataset(folder, form="sidecar")
    for sidecar in folder.glob("*.txt"):
        sidecar.unlink()
    captions = tmp_path / "captions.csv"
    captions.write_text(
        "caption,filename,notes\n"
        + "".join(f'"{caption}",{name},x\n' for name, caption in CLEAN_CAPTIONS.items()),
        encoding="utf-8",
    )
    assert {r.name: r.caption for r in scan(folder, captions).records} == CLEAN_CAPTIONS


def test_sidecar_captions_are_read_as_utf8_and_joined_into_one_line(images: Path) -> None:
    (images / "ron_01.txt").write_text("Ron the dog\nlaying on a\n  white bed\n", encoding="utf-8")
    record = next(r for r in scan(images).records if r.name == "ron_01.jpg")
    assert record.caption == "Ron the dog laying on a white bed"
    assert record.caption_source == "ron_01.txt"


def test_caption_names_match_ignoring_case(tmp_path: Path) -> None:
    folder = tmp_path / "pets"
    make_dataset(folder, form="sidecar")
    captions = write_captions(
        folder, {name.upper(): caption for name, caption in CLEAN_CAPTIONS.items()}, "json"
    )
    report = check(folder, captions)
    assert report.valid, report.summary()
    assert {r.record.name for r in report.records} == set(CLEAN_CAPTIONS)


def test_a_captions_file_inside_the_image_folder_is_not_an_ignored_file(images: Path) -> None:
    captions = images / "captions.json"
    captions.write_text(json.dumps(CLEAN_CAPTIONS))
    for sidecar in images.glob("*.txt"):
        sidecar.unlink()
    scanned = scan(images, captions)
    assert scanned.ignored == []
    assert validate(scanned.records).valid


def test_other_files_are_reported_as_ignored_not_dropped(images: Path, tmp_path: Path) -> None:
    # Given a README and a sub-folder among the images
    (images / "README.md").write_text("my pets")
    (images / "old").mkdir()
    # When the folder is prepared, then the dataset is still valid and the report names both
    report = prepare.prepare_dataset(images, tmp_path / "out")
    assert report.valid
    assert report.warnings == [
        "ignored 2 entries that are not images or captions: old/ (sub-folders are not read), "
        "README.md"
    ]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("captions.csv", "file,text\na.jpg,x\n", "needs a header naming the columns filename"),
        ("captions.csv", "", "is empty"),
        ("captions.csv", 'filename,caption\na.jpg,"never closed\n', "is not valid CSV"),
        ("captions.json", "[1, 2]", "must hold one JSON object"),
        ("captions.json", "{nope", "is not valid JSON"),
        ("captions.txt", "a.jpg: x", "must be .csv (filename,caption) or .json"),
        ("missing.csv", None, "does not exist"),
    ],
)
def test_a_bad_captions_file_is_a_layout_error(
    images: Path, tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    captions = tmp_path / name
    if content is not None:
        captions.write_text(content)
    with pytest.raises(PrepareError, match=re.escape(message)):
        scan(images, captions)


# --------------------------------------------------------------------------- one case per rule


def truncated(path: Path) -> Path:
    # Noise does not compress: a cut-off file is missing real pixel data, like a partial copy.
    Image.effect_noise((640, 512), 80).convert("RGB").save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 9 // 10])
    return path


def cmyk_jpeg(path: Path) -> None:
    write_image(path, mode="CMYK")


RULE_CASES: dict[str, tuple[str, Callable[[Path], Any], str]] = {
    # rule: (file name, how to write it, words the finding's message must contain)
    "unreadable_image": ("broken.jpg", lambda p: p.write_bytes(b"not an image"), "not a readable"),
    "unsupported_format": ("shot.webp", lambda p: write_image(p), "holds WEBP data"),
    "extension_mismatch": (
        "shot.jpg",
        lambda p: write_image(p, image_format="PNG"),
        "holds PNG data but is named .jpg",
    ),
    "too_small": ("small.jpg", lambda p: write_image(p, (511, 600)), "511x600 px"),
    "too_large": ("wide.png", lambda p: write_image(p, (4200, 2100)), "at most 4,096 px"),
    # Sides within 4,096 px but 12,960,000 pixels; a flat colour keeps the file small.
    "too_many_pixels": (
        "huge.png",
        lambda p: write_image(p, (3600, 3600), compress_level=1),
        "12,960,000 pixels; at most 12,582,912",
    ),
    "aspect_ratio": ("banner.png", lambda p: write_image(p, (2100, 512)), "4.10:1"),
    "color_mode": ("print.jpg", cmyk_jpeg, "colour mode CMYK"),
}


@pytest.mark.parametrize("rule", sorted(RULE_CASES))
def test_each_image_rule_fails_only_its_file(images: Path, rule: str) -> None:
    # Given the clean set plus one captioned image that breaks exactly this rule
    name, write, words = RULE_CASES[rule]
    write(images / name)
    (images / name).with_suffix(".txt").write_text("Ron the dog asleep in the sun")
    # When the folder is validated
    report = check(images)
    # Then that file, and only it, fails with that rule and a message saying why
    assert failures(report) == {name: [rule]}
    [finding] = report.failing[0].findings
    assert words in finding.message
    assert not report.valid
    assert report.dataset_findings == []


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_truncated_image_is_unreadable(images: Path, suffix: str) -> None:
    # Given an image cut short (a partial download): Pillow still opens its header
    path = truncated(images / f"cut{suffix}")
    (images / f"cut{suffix}").with_suffix(".txt").write_text("Ron the dog on grass")
    with Image.open(path) as opened:
        assert opened.size == (640, 512)
    # Then decoding finds it
    assert failures(check(images)) == {f"cut{suffix}": ["unreadable_image"]}


def test_file_over_the_size_limit(images: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a 100 kB limit (50 MB files are slow to write) and a 640x512 noise PNG (~1 MB)
    monkeypatch.setattr(prepare, "MAX_IMAGE_BYTES", 100_000)
    Image.effect_noise((640, 512), 80).convert("RGB").save(images / "noise.png")
    (images / "noise.txt").write_text("Ron the dog in the snow")
    # Then it alone fails, naming its size and the limit
    report = check(images)
    assert failures(report) == {"noise.png": ["file_too_large"]}
    assert "at most 100,000" in report.failing[0].findings[0].message


@pytest.mark.parametrize(
    ("caption", "rule"),
    [("Ro", "caption_too_short"), ("", "caption_too_short"), ("x" * 1025, "caption_too_long")],
)
def test_caption_length_rules(images: Path, caption: str, rule: str) -> None:
    (images / "ron_01.txt").write_text(caption)
    assert failures(check(images)) == {"ron_01.jpg": [rule]}


@pytest.mark.parametrize("length", [3, 1024])
def test_caption_lengths_at_the_limits_pass(images: Path, length: int) -> None:
    (images / "ron_01.txt").write_text("R" * length)
    assert check(images).valid


def test_image_without_caption(images: Path) -> None:
    (images / "ron_01.txt").unlink()
    report = check(images)
    assert failures(report) == {"ron_01.jpg": ["missing_caption"]}
    assert "no ron_01.txt next to ron_01.jpg" in report.failing[0].findings[0].message


def test_caption_without_image(images: Path) -> None:
    (images / "ghost.txt").write_text("Ron the dog as a ghost")
    report = check(images)
    assert failures(report) == {"ghost.txt": ["missing_image"]}


def test_captions_file_rows_without_image_or_for_no_image(tmp_path: Path) -> None:
    # Given a captions file that misses one image and names one that does not exist
    folder = tmp_path / "pets"
    captions = make_dataset(folder, form="csv")
    assert captions is not None
    lines = captions.read_text().splitlines()
    captions.write_text("\n".join([lines[0], *lines[2:], "ghost.jpg,Ron the ghost dog"]) + "\n")
    # Then both are failures, each with its own rule
    report = check(folder, captions)
    assert failures(report) == {"ghost.jpg": ["missing_image"], "ron_01.jpg": ["missing_caption"]}


def test_a_caption_that_is_not_text_is_missing(tmp_path: Path) -> None:
    folder = tmp_path / "pets"
    make_dataset(folder, form="sidecar")
    captions = write_captions(folder, {**CLEAN_CAPTIONS, "ron_01.jpg": 7}, "json")  # type: ignore[dict-item]
    report = check(folder, captions)
    assert failures(report) == {"ron_01.jpg": ["missing_caption"]}
    assert "the caption is int, not text" in report.failing[0].findings[0].message


def test_duplicate_file_names_ignoring_case(tmp_path: Path) -> None:
    # Given two images whose names differ only in case, both captioned
    folder = tmp_path / "pets"
    captions = dict(CLEAN_CAPTIONS)
    captions["RON_01.jpg"] = "Ron the dog again"
    make_dataset(folder, captions, form="csv")
    report = check(folder, tmp_path / "captions.csv")
    # Then both fail: they would collide in the bucket on most file systems
    assert failures(report) == {
        "RON_01.jpg": ["duplicate_filename"],
        "ron_01.jpg": ["duplicate_filename"],
    }


def test_a_file_captioned_twice_is_a_duplicate(tmp_path: Path) -> None:
    folder = tmp_path / "pets"
    captions = make_dataset(folder, form="json")
    assert captions is not None
    captions.write_text(captions.read_text()[:-1] + ', "ron_02.jpg": "Ron the dog, second take"}')
    report = check(folder, captions)
    assert failures(report) == {"ron_02.jpg": ["duplicate_filename"]}
    assert "captioned 2 times" in report.failing[0].findings[0].message


def test_two_images_sharing_a_sidecar_are_duplicates(images: Path) -> None:
    # Given ron_01.jpg and ron_01.png next to one ron_01.txt: the caption is ambiguous
    write_image(images / "ron_01.png")
    report = check(images)
    assert failures(report) == {
        "ron_01.jpg": ["duplicate_filename"],
        "ron_01.png": ["duplicate_filename"],
    }


@pytest.mark.parametrize(
    ("mode", "suffix"), [("RGBA", ".png"), ("P", ".png"), ("L", ".jpg"), ("LA", ".png")]
)
def test_colour_modes_other_than_rgb_fail(images: Path, mode: str, suffix: str) -> None:
    write_image(images / f"odd{suffix}", mode=mode)
    (images / "odd.txt").write_text("Smila the cat in grey")
    report = check(images)
    assert failures(report) == {f"odd{suffix}": ["color_mode"]}
    assert mode in report.failing[0].findings[0].message


def test_a_file_breaking_two_rules_reports_both(images: Path) -> None:
    # Given an image that is both too small and too narrow (300x1300: 4.33:1)
    write_image(images / "strip.jpg", (300, 1300))
    (images / "strip.txt").write_text("Ron the dog, very tall")
    # Then the report names both rules for that one file
    report = check(images)
    assert failures(report) == {"strip.jpg": ["too_small", "aspect_ratio"]}
    assert report.rule_counts == {"aspect_ratio": 1, "too_small": 1}


def test_too_few_records(tmp_path: Path) -> None:
    folder = tmp_path / "pets"
    make_dataset(folder, dict(list(CLEAN_CAPTIONS.items())[:4]))
    report = check(folder)
    assert failures(report) == {}
    assert [str(f.rule) for f in report.dataset_findings] == ["too_few_records"]
    assert not report.valid


def test_too_many_records(images: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a lowered limit (10,000 images would be slow) and one image more than it
    monkeypatch.setattr(prepare, "MAX_RECORDS", 5)
    write_image(images / "extra.jpg")
    (images / "extra.txt").write_text("Ron the dog one more time")
    report = check(images)
    assert [str(f.rule) for f in report.dataset_findings] == ["too_many_records"]
    assert failures(report) == {}


def test_an_empty_folder_has_too_few_records(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    report = check(tmp_path / "empty")
    assert report.records == []
    assert [str(f.rule) for f in report.dataset_findings] == ["too_few_records"]


def test_limits_exactly_at_the_bounds_pass(images: Path) -> None:
    # 4096x1024 is 4:1 with the longest allowed side; 512x2048 is 1:4 with the shortest
    write_image(images / "edge_a.png", (4096, 1024))
    write_image(images / "edge_b.png", (512, 2048))
    for name in ("edge_a", "edge_b"):
        (images / f"{name}.txt").write_text("Ron the dog at the edge")
    assert check(images).valid


def test_short_captions_and_exif_rotation_warn_but_pass(images: Path) -> None:
    # Given a caption that is only a name, and a JPEG with an EXIF rotation
    (images / "ron_01.txt").write_text("Ron")
    exif = Image.Exif()
    exif[0x0112] = 6
    write_image(images / "ron_02.jpg", exif=exif.tobytes())
    # Then the dataset is valid, with a warning for each
    report = check(images)
    assert report.valid
    warnings = {r.record.name: r.warnings for r in report.records if r.warnings}
    assert set(warnings) == {"ron_01.jpg", "ron_02.jpg"}
    assert "'Ron'" in warnings["ron_01.jpg"][0]
    assert "EXIF orientation 6" in warnings["ron_02.jpg"][0]


# --------------------------------------------------------------------------- fix


def test_fix_converts_downscales_and_never_touches_the_originals(
    images: Path, tmp_path: Path
) -> None:
    # Given the clean set plus a WebP, an oversized PNG at exactly 4:1, a CMYK JPEG, a
    # transparent PNG, a PNG named .jpg, a rotated JPEG, and a too-small JPEG
    write_image(images / "web.webp")
    write_image(images / "wide.png", (4400, 1100))
    write_image(images / "print.jpg", mode="CMYK")
    transparent = Image.new("RGBA", (640, 512), (10, 200, 10, 0))
    transparent.paste((10, 200, 10, 255), (0, 0, 320, 512))
    transparent.save(images / "cutout.png")
    write_image(images / "named.jpg", image_format="PNG")
    exif = Image.Exif()
    exif[0x0112] = 6
    write_image(images / "turned.jpg", (800, 600), exif=exif.tobytes())
    write_image(images / "small.jpg", (400, 400))
    for name in ("web", "wide", "print", "cutout", "named", "turned", "small"):
        (images / f"{name}.txt").write_text(f"Ron the dog, {name} version")
    before = snapshot(images)
    staging = tmp_path / "staging"
    # When the records are fixed and validated again
    records = fix(scan(images).records, staging)
    report = validate(records)
    # Then only the too-small image still fails, and the user's folder is as it was
    assert failures(report) == {"small.jpg": ["too_small"]}
    assert snapshot(images) == before
    by_source = {r.record.original.name: r for r in report.records if r.record.original}
    fixed = {name: r.record for name, r in by_source.items() if r.record.fixes}
    assert set(fixed) == {"web.webp", "wide.png", "print.jpg", "cutout.png"} | {
        "named.jpg",
        "turned.jpg",
    }
    assert all(
        record.path is not None and record.path.parent == staging for record in fixed.values()
    )
    assert sorted(p.name for p in staging.iterdir()) == sorted(r.name for r in fixed.values())

    def opened(name: str) -> tuple[str | None, tuple[int, int], str]:
        path = fixed[name].path
        assert path is not None
        with Image.open(path) as image:
            return image.format, image.size, image.mode

    # WebP -> PNG, renamed
    assert fixed["web.webp"].name == "web.png"
    assert opened("web.webp") == ("PNG", (640, 512), "RGB")
    # Oversized: within the limits, the aspect ratio still exactly 4:1, the format kept
    assert opened("wide.png") == ("PNG", (4096, 1024), "RGB")
    # CMYK JPEG -> RGB JPEG; transparency flattened onto white
    assert opened("print.jpg") == ("JPEG", (640, 512), "RGB")
    assert opened("cutout.png") == ("PNG", (640, 512), "RGB")
    cutout = fixed["cutout.png"].path
    assert cutout is not None
    with Image.open(cutout) as image:
        assert image.getpixel((600, 10)) == (255, 255, 255)
        assert image.getpixel((10, 10)) == (10, 200, 10)
    # Lying extension: same bytes under the right name
    assert fixed["named.jpg"].name == "named.png"
    assert fixed["named.jpg"].path is not None
    assert fixed["named.jpg"].path.read_bytes() == (images / "named.jpg").read_bytes()
    # EXIF rotation applied: 800x600 stored, 600x800 shown
    assert opened("turned.jpg") == ("JPEG", (600, 800), "RGB")
    assert all("EXIF" not in warning for r in report.records for warning in r.warnings)
    # Each fix says what it did
    assert fixed["wide.png"].fixes == ("downscaled 4400x1100 to 4096x1024",)
    assert fixed["web.webp"].fixes == ("converted WEBP to PNG",)


def test_fix_downscales_above_the_pixel_limit_keeping_the_aspect_ratio(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a lowered pixel limit (a 12.6-megapixel resize is slow) and a 1000x700 JPEG over it
    monkeypatch.setattr(prepare, "MAX_PIXELS", 500_000)
    write_image(images / "big.jpg", (1000, 700))
    (images / "big.txt").write_text("Ron the dog, big picture")
    assert failures(check(images)) == {"big.jpg": ["too_many_pixels"]}
    # When fixed, then the copy is as large as the limit allows, with the same aspect ratio
    [record] = [r for r in fix(scan(images).records, tmp_path / "s") if r.fixes]
    assert record.path is not None
    with Image.open(record.path) as image:
        width, height = image.size
        assert image.format == "JPEG"
    assert (width, height) == (844, 591)
    assert 500_000 * 0.99 < width * height <= 500_000
    assert abs(width / height - 1000 / 700) < 0.01
    assert validate([record]).failing == []


def test_fix_reencodes_a_file_over_the_size_limit(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an uncompressed PNG over a lowered size limit
    monkeypatch.setattr(prepare, "MAX_IMAGE_BYTES", 200_000)
    write_image(images / "raw.png", compress_level=0)
    (images / "raw.txt").write_text("Ron the dog, uncompressed")
    assert failures(check(images)) == {"raw.png": ["file_too_large"]}
    # When fixed, then the copy is compressed below it and passes
    report = validate(fix(scan(images).records, tmp_path / "staging"))
    assert report.valid
    assert (tmp_path / "staging" / "raw.png").stat().st_size < 200_000


def test_fix_leaves_clean_and_unfixable_records_alone(images: Path, tmp_path: Path) -> None:
    write_image(images / "banner.png", (2100, 512))
    (images / "banner.txt").write_text("Ron the dog, panorama")
    (images / "broken.jpg").write_bytes(b"nope")
    (images / "broken.txt").write_text("Ron the dog, broken")
    records = scan(images).records
    fixed = fix(records, tmp_path / "staging")
    assert fixed == records
    assert not (tmp_path / "staging").exists()
    assert failures(validate(fixed)) == {
        "banner.png": ["aspect_ratio"],
        "broken.jpg": ["unreadable_image"],
    }


def test_cmyk_with_an_unusable_profile_falls_back_to_a_plain_conversion(
    images: Path, tmp_path: Path
) -> None:
    # Given a CMYK JPEG whose embedded ICC profile is garbage
    write_image(images / "print.jpg", mode="CMYK", icc_profile=b"not a profile" * 10)
    (images / "print.txt").write_text("Ron the dog in print")
    # When fixed, then it still becomes an RGB JPEG, and carries no CMYK profile
    [record] = [r for r in fix(scan(images).records, tmp_path / "s") if r.fixes]
    assert record.path is not None
    with Image.open(record.path) as image:
        assert (image.format, image.mode) == ("JPEG", "RGB")
        assert "icc_profile" not in image.info
    assert validate([record]).failing == []


def test_sixteen_bit_grey_is_scaled_not_clipped(images: Path, tmp_path: Path) -> None:
    Image.new("I;16", (640, 512), 40000).save(images / "grey.png")
    (images / "grey.txt").write_text("Smila the cat in grey")
    assert failures(check(images)) == {"grey.png": ["color_mode"]}
    [record] = [r for r in fix(scan(images).records, tmp_path / "s") if r.name == "grey.png"]
    assert record.path is not None
    with Image.open(record.path) as image:
        assert image.mode == "RGB"
        assert image.getpixel((0, 0)) == (156, 156, 156)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((4600, 2300), (4096, 2048)),
        ((2300, 4600), (2048, 4096)),
        ((4096, 4096), (3547, 3547)),
        ((5000, 1250), (4096, 1024)),
        ((640, 512), (640, 512)),
        ((300, 300), (300, 300)),
    ],
)
def test_fit_within_limits(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert fit_within_limits(*size) == expected


@given(st.integers(1, 30_000), st.integers(1, 30_000))
def test_fit_within_limits_never_grows_the_image_or_its_aspect_ratio(
    width: int, height: int
) -> None:
    new_width, new_height = fit_within_limits(width, height)
    assert max(new_width, new_height) <= MAX_SIDE or (new_width, new_height) == (width, height)
    assert new_width <= width
    assert new_height <= height
    if (new_width, new_height) != (width, height):
        assert new_width * new_height <= MAX_PIXELS
        assert max(new_width, new_height) <= MAX_SIDE
        # The aspect ratio never grows: an image within 4:1 stays within 4:1.
        long_new, short_new = max(new_width, new_height), min(new_width, new_height)
        assert long_new * min(width, height) <= max(width, height) * short_new


# --------------------------------------------------------------------------- manifest


def test_manifest_has_one_line_per_image_with_exact_keys_and_s3_refs(
    images: Path, tmp_path: Path
) -> None:
    # Given the clean set, when the manifest is written for a destination
    report = check(images)
    manifest = tmp_path / "manifest.jsonl"
    entries = write_manifest(report, parse_s3_uri(DESTINATION), manifest)
    # Then each line is exactly {"image-ref", "caption"}, with the image under images/
    text = manifest.read_text(encoding="utf-8")
    assert text.endswith("\n")
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == len(entries) == 5
    assert all(list(line) == ["image-ref", "caption"] for line in lines)
    assert {line["image-ref"]: line["caption"] for line in lines} == {
        f"{DESTINATION}images/{name}": caption for name, caption in CLEAN_CAPTIONS.items()
    }
    # Non-ASCII captions are written as UTF-8, not escaped
    assert "café" in text


def test_no_manifest_for_an_invalid_dataset(images: Path, tmp_path: Path) -> None:
    (images / "ron_01.txt").unlink()
    with pytest.raises(PrepareError, match="1 failing records"):
        write_manifest(check(images), parse_s3_uri(DESTINATION), tmp_path / "m.jsonl")
    assert not (tmp_path / "m.jsonl").exists()


def test_manifest_refs_use_the_fixed_names(images: Path, tmp_path: Path) -> None:
    write_image(images / "web.webp")
    (images / "web.txt").write_text("Smila the cat on the web")
    out = tmp_path / "out"
    assert (
        main(["--images", str(images), "--out", str(out), "--fix", "--s3-prefix", DESTINATION]) == 0
    )
    refs = [line["image-ref"] for line in manifest_lines(out)]
    assert f"{DESTINATION}images/web.png" in refs
    assert (out / "images" / "web.png").is_file()
    assert len(refs) == 6


@pytest.mark.parametrize(
    ("uri", "bucket", "prefix"),
    [
        ("s3://my-bucket/titan/data/", "my-bucket", "titan/data/"),
        ("s3://my-bucket/titan/data", "my-bucket", "titan/data/"),
        ("s3://my-bucket", "my-bucket", ""),
    ],
)
def test_s3_uri_parsing(uri: str, bucket: str, prefix: str) -> None:
    assert parse_s3_uri(uri) == S3Location(bucket, prefix)


@pytest.mark.parametrize("uri", ["bucket/x", "s3://", "s3://Bad_Bucket/x", "s3://bucket//x"])
def test_bad_s3_uris_are_refused(uri: str) -> None:
    with pytest.raises(PrepareError):
        parse_s3_uri(uri)


# --------------------------------------------------------------------------- hyperparameters


@pytest.mark.parametrize(
    ("count", "steps"),
    [(8, 1_000), (32, 4_000), (64, 8_000), (1_000, 10_000), (10_000, 12_000)],
)
def test_step_count_at_each_table_point(count: int, steps: int) -> None:
    assert recommended_step_count(count) == steps


@pytest.mark.parametrize(
    ("count", "steps"),
    [
        # Linear in the image count: 125 steps per image from 8 to 64 images
        (16, 2_000),
        (20, 2_500),
        (48, 6_000),
        (60, 7_500),
        (532, 9_000),
        (5_500, 11_000),
        # Rounded to 100 steps (8,077 and 11,999.8), ties to even (1,250 and 1,750)
        (100, 8_100),
        (9_999, 12_000),
        (10, 1_200),
        (14, 1_800),
    ],
)
def test_step_count_between_points_is_linear_in_the_image_count(count: int, steps: int) -> None:
    assert recommended_step_count(count) == steps


@pytest.mark.parametrize(("count", "steps"), [(1, 1_000), (5, 1_000), (7, 1_000)])
def test_below_eight_images_the_eight_image_value(count: int, steps: int) -> None:
    assert recommended_step_count(count) == steps


@pytest.mark.parametrize("count", [10_001, 50_000])
def test_above_ten_thousand_images_the_last_value(count: int) -> None:
    assert recommended_step_count(count) == 12_000


def test_step_count_never_falls_as_images_grow() -> None:
    counts = [*range(1, 2_000), *range(2_000, 12_000, 97)]
    steps = [recommended_step_count(count) for count in counts]
    assert steps == sorted(steps)


def test_the_workflow_manifest_check_recommends_the_same_step_count() -> None:
    # The Step Functions manifest check (Lambda asset) answers recommendedStepCount too: a user
    # must not be told two numbers for one dataset.
    from customization.logic.manifest import recommended_step_count as workflow_step_count

    counts = [*range(1, 1_100), *range(1_100, 12_000, 37)]
    assert [recommended_step_count(n) for n in counts] == [workflow_step_count(n) for n in counts]


def test_recommendation_is_a_map_of_strings_with_passes() -> None:
    # Given the reference's 60 images, when hyperparameters are recommended
    recommendation = recommend_hyperparameters(60)
    # Then Bedrock gets strings, and the cost is stated as image passes
    assert recommendation.hyper_parameters() == {
        "stepCount": "7500",
        "batchSize": "8",
        "learningRate": "0.00001",
    }
    assert recommendation.image_passes == 60_000
    assert recommendation.passes_per_image == 1_000
    assert recommendation.notes == ()
    assert "60,000 image passes, 1,000.0 per image" in recommendation.summary()


@pytest.mark.parametrize(
    ("options", "expected", "note"),
    [
        ({"step_count": 5}, {"stepCount": "10"}, "stepCount 5 is outside 10-40000"),
        ({"step_count": 50_000}, {"stepCount": "40000"}, "clamped to 40000"),
        ({"batch_size": 4}, {"batchSize": "8"}, "batchSize 4 is outside 8-192"),
        ({"batch_size": 500}, {"batchSize": "192"}, "clamped to 192"),
        ({"learning_rate": 1e-9}, {"learningRate": "0.0000001"}, "learningRate 1e-09"),
        ({"learning_rate": 3.0}, {"learningRate": "1"}, "clamped to 1.0"),
        ({"batch_size": 16, "learning_rate": 2e-4}, {"learningRate": "0.0002"}, None),
    ],
)
def test_recommendation_is_clamped_to_the_documented_bounds(
    options: dict[str, Any], expected: dict[str, str], note: str | None
) -> None:
    recommendation = recommend_hyperparameters(8, **options)
    assert expected.items() <= recommendation.hyper_parameters().items()
    if note is None:
        assert recommendation.notes == ()
    else:
        [written] = recommendation.notes
        assert note in written


def test_no_recommendation_for_no_images() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        recommend_hyperparameters(0)


# --------------------------------------------------------------------------- CLI


def test_cli_valid_dataset_exits_0_and_writes_everything(
    images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["--images", str(images), "--out", str(out), "--s3-prefix", DESTINATION]) == 0
    printed = capsys.readouterr().out
    assert "5 pass, 0 fail" in printed
    assert "stepCount 1000, batchSize 8, learningRate 0.00001 = 8,000 image passes" in printed
    assert "1,600.0 per image" in printed
    assert len(manifest_lines(out)) == 5
    assert json.loads((out / "hyperparameters.json").read_text()) == {
        "stepCount": "1000",
        "batchSize": "8",
        "learningRate": "0.00001",
    }
    report = json.loads((out / "report.json").read_text())
    assert report["valid"] is True
    assert report["counts"]["images"] == 5
    assert report["hyperparameters"]["imagePasses"] == 8_000
    assert not (out / "images").exists()


def test_a_destination_the_workflow_cannot_read_is_a_warning(images: Path, tmp_path: Path) -> None:
    # Given a destination outside titan/<name>/ of the bucket
    report = prepare.prepare_dataset(
        images, tmp_path / "out", destination=parse_s3_uri("s3://atelier-datasets/pets/")
    )
    # Then the manifest is written, with a warning that the workflow will not read it
    assert report.valid
    assert (tmp_path / "out" / "manifest.jsonl").is_file()
    [warning] = report.warnings
    assert "only reads manifests in titan/<name>/" in warning
    # And a destination inside it gets none
    inside = parse_s3_uri(DESTINATION)
    assert prepare.prepare_dataset(images, tmp_path / "out", destination=inside).warnings == []


def test_cli_without_destination_writes_no_manifest(
    images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["--images", str(images), "--out", str(out)]) == 0
    assert "No manifest written: pass --s3-prefix" in capsys.readouterr().out
    assert not (out / "manifest.jsonl").exists()
    assert (out / "hyperparameters.json").is_file()


def test_cli_failing_records_exit_2_naming_each_file_and_rule(
    images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a previous valid run's outputs, then a too-small image and a missing caption
    out = tmp_path / "out"
    assert main(["--images", str(images), "--out", str(out), "--s3-prefix", DESTINATION]) == 0
    write_image(images / "small.jpg", (300, 1300))
    (images / "ron_02.txt").unlink()
    capsys.readouterr()
    # When it runs again
    code = main(["--images", str(images), "--out", str(out), "--s3-prefix", DESTINATION])
    # Then it exits 2, names each file with each rule, and leaves no stale manifest behind
    assert code == 2
    err = capsys.readouterr().err
    assert "4 pass, 2 fail" in err
    assert "ron_02.jpg: missing_caption (no caption: no ron_02.txt next to ron_02.jpg)" in err
    assert "small.jpg: too_small (" in err
    assert "; aspect_ratio (" in err
    assert "; missing_caption (" in err
    assert "the dataset is not valid (2 of 6 records fail); no manifest written" in err
    assert not (out / "manifest.jsonl").exists()
    assert not (out / "hyperparameters.json").exists()
    report = json.loads((out / "report.json").read_text())
    assert report["valid"] is False
    assert {r["file"]: r["rules"] for r in report["records"] if not r["ok"]} == {
        "ron_02.jpg": ["missing_caption"],
        "small.jpg": ["too_small", "aspect_ratio", "missing_caption"],
    }


def test_cli_says_which_failures_fix_can_repair(
    images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_image(images / "web.webp")
    (images / "web.txt").write_text("Smila the cat on the web")
    out = tmp_path / "out"
    assert main(["--images", str(images), "--out", str(out)]) == 2
    assert "1 of the failing records can be repaired with --fix." in capsys.readouterr().err
    assert main(["--images", str(images), "--out", str(out), "--fix"]) == 0
    assert "Fixed 1 images" in capsys.readouterr().out


def test_cli_too_few_records_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "pets"
    make_dataset(folder, dict(list(CLEAN_CAPTIONS.items())[:2]))
    assert main(["--images", str(folder), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Dataset: too_few_records (2 images; a fine-tuning job needs at least 5)" in err
    assert "0 of 2 records fail, 1 dataset problems" in err


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "does not exist or is not a folder"),
        ("overlap", "overlaps the image folder"),
        ("captions", "must be .csv (filename,caption) or .json"),
    ],
)
def test_cli_wrong_layout_exits_2(
    images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, message: str
) -> None:
    argv = ["--images", str(images), "--out", str(tmp_path / "out")]
    if setup == "missing":
        argv = ["--images", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]
    elif setup == "overlap":
        argv = ["--images", str(images), "--out", str(images)]
    else:
        (tmp_path / "captions.xlsx").write_text("x")
        argv += ["--captions", str(tmp_path / "captions.xlsx")]
    before = snapshot(images)
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert snapshot(images) == before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--kms-key-id", "alias/x"], "--kms-key-id only applies with --upload"),
        (["--upload", "s3://b-1/x", "--s3-prefix", "s3://b-1/x"], "not allowed with argument"),
        (["--upload", "https://bucket/x"], "is not an S3 URI"),
        (["--s3-prefix", "s3://Bad_Bucket/x"], "not a valid S3 bucket name"),
        (["--upload", "s3://bucket/x", "--kms-key-id", "my key"], "is not a KMS key id"),
    ],
)
def test_cli_rejects_bad_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["--images", str(tmp_path), "--out", str(tmp_path / "out"), *extra])
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_runs_as_module_and_as_script_without_boto3(tmp_path: Path) -> None:
    assert_runs_without_torch_or_boto3("titan", "--s3-prefix", tmp_path)


# --------------------------------------------------------------------------- upload


BUCKET = "atelier-datasets"


@pytest.fixture
def s3() -> Iterator[Any]:
    with mocked_bucket(BUCKET) as client:
        yield client


def test_upload_sends_images_then_the_manifest_and_skips_unchanged(
    images: Path, tmp_path: Path, s3: Any
) -> None:
    # Given a valid dataset and its manifest
    destination = parse_s3_uri(f"s3://{BUCKET}/titan/pets")
    report = check(images)
    manifest = tmp_path / "manifest.jsonl"
    entries = write_manifest(report, destination, manifest)
    # When it is uploaded
    first = upload(entries, manifest, destination, client=s3)
    # Then every image is under images/, and the manifest comes last
    image_keys = sorted(f"titan/pets/images/{name}" for name in CLEAN_CAPTIONS)
    assert bucket_keys(s3, BUCKET) == sorted([*image_keys, "titan/pets/manifest.jsonl"])
    assert first.uploaded[-1] == "titan/pets/manifest.jsonl"
    assert first.unchanged == []
    body = s3.get_object(Bucket=BUCKET, Key="titan/pets/manifest.jsonl")["Body"].read()
    assert body == manifest.read_bytes()
    stored = s3.get_object(Bucket=BUCKET, Key="titan/pets/images/ron_01.jpg")
    assert stored["Body"].read() == (images / "ron_01.jpg").read_bytes()
    assert stored["ContentType"] == "image/jpeg"
    # When it is uploaded again, nothing is sent
    second = upload(entries, manifest, destination, client=s3)
    assert second.uploaded == []
    assert len(second.unchanged) == 6
    # When one image changes, only it is sent again
    write_image(images / "ron_02.jpg", colour=(1, 2, 3))
    third = upload(entries, manifest, destination, client=s3)
    assert third.uploaded == ["titan/pets/images/ron_02.jpg"]


def test_an_object_with_the_same_size_but_other_bytes_is_replaced(
    images: Path, tmp_path: Path, s3: Any
) -> None:
    destination = parse_s3_uri(f"s3://{BUCKET}/p/")
    entries = write_manifest(check(images), destination, tmp_path / "manifest.jsonl")
    original = (images / "ron_01.jpg").read_bytes()
    s3.put_object(Bucket=BUCKET, Key="p/images/ron_01.jpg", Body=bytes(len(original)))
    result = upload(entries, tmp_path / "manifest.jsonl", destination, client=s3)
    assert "p/images/ron_01.jpg" in result.uploaded
    stored = s3.get_object(Bucket=BUCKET, Key="p/images/ron_01.jpg")["Body"].read()
    assert hashlib.sha256(stored).digest() == hashlib.sha256(original).digest()


def test_cli_upload_with_kms_and_a_cheap_rerun(
    images: Path, tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a KMS key, and a bucket that already holds the images without it
    key_id = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["KeyId"]
    out = tmp_path / "out"
    base = ["--images", str(images), "--out", str(out), "--upload", f"s3://{BUCKET}/p/"]
    assert main(base) == 0
    capsys.readouterr()
    # When uploaded with the key, every object is rewritten encrypted with it
    assert main([*base, "--kms-key-id", key_id]) == 0
    printed = capsys.readouterr().out
    assert f"uploaded s3://{BUCKET}/p/images/ron_01.jpg" in printed
    assert (
        f"Uploaded 6 objects to s3://{BUCKET}/p/ (0 already there unchanged, skipped)." in printed
    )
    for key in bucket_keys(s3, BUCKET):
        head = s3.head_object(Bucket=BUCKET, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms"
        assert key_id in head["SSEKMSKeyId"]
    # And a re-run with the same key sends nothing
    assert main([*base, "--kms-key-id", key_id]) == 0
    printed = capsys.readouterr().out
    assert "Uploaded 0 objects" in printed
    assert "6 already there unchanged, skipped" in printed
    assert "uploaded s3://" not in printed


def test_cli_upload_failure_exits_1(
    images: Path, tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(["--images", str(images), "--out", str(out), "--upload", "s3://no-such-bucket/p/"])
    assert code == 1
    assert "upload of p/images/ron_01.jpg to s3://no-such-bucket failed" in capsys.readouterr().err
    assert (out / "manifest.jsonl").is_file()


def test_upload_takes_records_built_by_hand(tmp_path: Path, s3: Any) -> None:
    # Given records made without scan (the importable API), five valid images
    folder = tmp_path / "any"
    records = [
        Record(name=f"p{i}.png", path=write_image(folder / f"p{i}.png"), caption="Ron the dog")
        for i in range(5)
    ]
    destination = S3Location(BUCKET, "")
    entries = write_manifest(validate(records), destination, tmp_path / "m.jsonl")
    result = upload(entries, tmp_path / "m.jsonl", destination, client=s3)
    assert bucket_keys(s3, BUCKET) == sorted(
        [*(f"images/p{i}.png" for i in range(5)), "manifest.jsonl"]
    )
    assert len(result.uploaded) == 6
