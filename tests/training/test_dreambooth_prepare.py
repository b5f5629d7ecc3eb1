"""dreambooth.prepare: images + prompts -> a checked JumpStart-layout dataset, and its upload."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from PIL import Image

from dreambooth.prepare import (
    DatasetError,
    DatasetInfo,
    PrepareError,
    Report,
    Severity,
    build_dataset,
    check_dataset,
    class_image_paths,
    instance_image_paths,
    main,
    parse_s3_uri,
    read_dataset_info,
    upload_dataset,
)
from tests.dreambooth_data_support import (
    CLASS_PROMPT,
    INSTANCE_PROMPT,
    SIZE,
    make_dataset,
    snapshot,
    write_image,
    write_info,
)
from tests.prepare_support import assert_runs_without_torch_or_boto3, bucket_keys, mocked_bucket

ERROR, WARNING = Severity.ERROR, Severity.WARNING


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """The clean set: five 640x576 instance images and both prompts."""
    return make_dataset(tmp_path / "dog")


def errors(report: Report) -> dict[str, list[str]]:
    return report.rules(ERROR)


def warnings(report: Report) -> dict[str, list[str]]:
    return report.rules(WARNING)


def message(report: Report, file: str, rule: str) -> str:
    [found] = [f for f in report.all_findings if f.file == file and str(f.rule) == rule]
    return found.message


# --------------------------------------------------------------------------- reading helpers


def test_the_clean_set_passes_without_a_warning(dataset: Path) -> None:
    report = check_dataset(dataset, prior_preservation=True)
    assert report.valid, report.summary()
    assert report.all_findings == []
    assert len(report.instance_images) == 5


def test_instance_and_class_image_paths_are_what_training_reads(dataset: Path) -> None:
    # Given upper-case extensions, a non-image, a folder named like an image, class images
    write_image(dataset / "UPPER.JPG", SIZE)
    write_image(dataset / "b.JPEG", SIZE)
    (dataset / "notes.txt").write_text("x")
    (dataset / "folder.png").mkdir()
    write_image(dataset / "class_data_dir" / "c2.png", (512, 512))
    write_image(dataset / "class_data_dir" / "c1.jpg", (512, 512))
    (dataset / "class_data_dir" / "readme.md").write_text("x")
    # Then the instance images are the top-level .png/.jpg/.jpeg files, sorted
    assert [path.name for path in instance_image_paths(dataset)] == [
        "UPPER.JPG",
        "b.JPEG",
        "dog_00.jpg",
        "dog_01.png",
        "dog_02.jpg",
        "dog_03.png",
        "dog_04.jpg",
    ]
    assert [path.name for path in class_image_paths(dataset)] == ["c1.jpg", "c2.png"]
    # And a dataset without class_data_dir has no class images
    shutil.rmtree(dataset / "class_data_dir")
    assert class_image_paths(dataset) == []


def test_instance_image_paths_of_a_missing_folder_names_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        instance_image_paths(tmp_path / "nope")


def test_read_dataset_info_returns_the_prompts(dataset: Path) -> None:
    assert read_dataset_info(dataset, prior_preservation=True) == DatasetInfo(
        INSTANCE_PROMPT, CLASS_PROMPT
    )
    write_info(dataset, {"instance_prompt": "  a photo of sks dog "})
    assert read_dataset_info(dataset, prior_preservation=False) == DatasetInfo(
        INSTANCE_PROMPT, None
    )


@pytest.mark.parametrize(
    ("document", "prior_preservation", "expected"),
    [
        (None, False, "dataset_info.json is missing: add one like"),
        ("{not json", False, "is not valid JSON"),
        (["a photo of sks dog"], False, "holds a JSON list, not an object"),
        ({"class_prompt": CLASS_PROMPT}, False, "instance_prompt is missing"),
        ({"instance_prompt": "  "}, False, "instance_prompt is empty"),
        ({"instance_prompt": 3}, False, "instance_prompt is a JSON int"),
        ({"instance_prompt": INSTANCE_PROMPT}, True, "class_prompt is required with prior"),
        ({"instance_prompt": INSTANCE_PROMPT, "class_prompt": ""}, True, "class_prompt is empty"),
        (
            {"instance_prompt": CLASS_PROMPT, "class_prompt": CLASS_PROMPT.upper()},
            True,
            "class_prompt is the same as instance_prompt",
        ),
    ],
)
def test_read_dataset_info_raises_naming_the_file_and_the_fix(
    dataset: Path, document: Any, prior_preservation: bool, expected: str
) -> None:
    path = dataset / "dataset_info.json"
    path.unlink()
    if document is not None:
        write_info(dataset, document)
    with pytest.raises(DatasetError) as raised:
        read_dataset_info(dataset, prior_preservation=prior_preservation)
    assert isinstance(raised.value, ValueError)
    assert str(raised.value).startswith(f"{path}: ")
    assert expected in str(raised.value)


def test_read_dataset_info_tolerates_what_only_warns(dataset: Path) -> None:
    # An unknown key, and an empty class prompt without prior preservation, are warnings
    write_info(dataset, {"instance_prompt": INSTANCE_PROMPT, "class_prompt": "", "x": 1})
    assert read_dataset_info(dataset, prior_preservation=False) == DatasetInfo(
        INSTANCE_PROMPT, None
    )
    assert warnings(check_dataset(dataset)) == {
        "dataset_info.json": ["unknown_key", "class_prompt"]
    }


# --------------------------------------------------------------------------- image rules


def test_unreadable_files_are_errors(dataset: Path) -> None:
    (dataset / "text.jpg").write_text("not an image")
    truncated = (dataset / "dog_00.jpg").read_bytes()
    (dataset / "cut.jpg").write_bytes(truncated[: len(truncated) // 2])
    report = check_dataset(dataset)
    assert errors(report) == {"text.jpg": ["unreadable_image"], "cut.jpg": ["unreadable_image"]}
    assert "not a readable image" in message(report, "text.jpg", "unreadable_image")


def test_format_comes_from_the_content(dataset: Path) -> None:
    # Given WebP data named .png, and JPEG data named .png
    write_image(dataset / "webp.png", SIZE, image_format="WEBP")
    write_image(dataset / "jpeg.png", SIZE, image_format="JPEG", colour=(1, 1, 1))
    report = check_dataset(dataset)
    # Then WebP is an error and a mislabelled JPEG a warning, both repairable with --fix
    assert errors(report) == {"webp.png": ["unsupported_format"]}
    assert warnings(report) == {"jpeg.png": ["extension_mismatch"]}
    assert all(f.fixable for f in report.all_findings)
    assert "holds WEBP data" in message(report, "webp.png", "unsupported_format")


@pytest.mark.parametrize(
    ("mode", "suffix", "expected"),
    [
        ("RGBA", ".png", "with transparency: training drops the transparency"),
        ("I;16", ".png", "clips it to mostly white"),
        ("CMYK", ".jpg", "shifts its colours"),
        ("L", ".png", "training converts it to RGB"),
    ],
)
def test_colour_modes_other_than_rgb_warn(
    dataset: Path, mode: str, suffix: str, expected: str
) -> None:
    name = f"odd{suffix}"
    if mode == "I;16":
        Image.new("I;16", SIZE, 40000).save(dataset / name)
    else:
        write_image(dataset / name, SIZE, mode=mode)
    report = check_dataset(dataset)
    assert report.valid
    assert warnings(report) == {name: ["color_mode"]}
    assert expected in message(report, name, "color_mode")


def test_a_colour_mode_that_cannot_become_rgb_is_an_error(
    dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every mode a PNG or JPEG holds converts in today's Pillow: a release that cannot convert
    # one (simulated for LA) must fail the file, not the training job.
    write_image(dataset / "grey.png", SIZE, mode="LA")
    convert = Image.Image.convert

    def refuse_la(self: Image.Image, *args: Any, **kwargs: Any) -> Image.Image:
        if self.mode == "LA" and args[:1] == ("RGB",):
            raise ValueError("conversion from LA to RGB not supported")
        return convert(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "convert", refuse_la)
    report = check_dataset(dataset)
    assert errors(report) == {"grey.png": ["color_mode"]}
    assert "cannot be converted to RGB" in message(report, "grey.png", "color_mode")


@pytest.mark.parametrize(
    ("size", "resolution", "severity"),
    [
        ((127, 200), 512, ERROR),
        ((128, 256), 512, WARNING),
        ((600, 511), 512, WARNING),
        ((512, 512), 512, None),
        ((300, 300), 256, None),
        ((300, 300), 768, WARNING),
        ((191, 300), 768, ERROR),
    ],
)
def test_small_images_warn_below_the_resolution_and_fail_below_a_quarter(
    dataset: Path, size: tuple[int, int], resolution: int, severity: Severity | None
) -> None:
    write_image(dataset / "small.jpg", size)
    report = check_dataset(dataset, resolution=resolution)
    found = [f for f in report.all_findings if f.file == "small.jpg"]
    assert [(f.rule, f.severity) for f in found] == ([("too_small", severity)] if severity else [])


def test_far_from_square_images_warn_about_the_crop(dataset: Path) -> None:
    write_image(dataset / "wide.jpg", (1200, 560))
    write_image(dataset / "two_to_one.jpg", (1024, 512), colour=(9, 9, 9))
    report = check_dataset(dataset)
    assert warnings(report) == {"wide.jpg": ["aspect_ratio"]}
    assert "cutting 53% of the picture" in message(report, "wide.jpg", "aspect_ratio")


def test_exif_orientation_warns_and_uses_the_upright_size(dataset: Path) -> None:
    # Given a 1400x600 JPEG that viewers turn to 600x1400 (orientation 6)
    exif = Image.Exif()
    exif[0x0112] = 6
    write_image(dataset / "turned.jpg", (1400, 600), exif=exif.tobytes())
    report = check_dataset(dataset)
    assert warnings(report) == {"turned.jpg": ["aspect_ratio", "exif_orientation"]}
    assert "600x1400 px" in message(report, "turned.jpg", "aspect_ratio")


def test_duplicates_are_errors_also_across_instance_and_class_images(tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "dog", class_count=2)
    shutil.copyfile(folder / "dog_00.jpg", folder / "dog_99.jpg")
    shutil.copyfile(folder / "dog_01.png", folder / "class_data_dir" / "z.png")
    report = check_dataset(folder, prior_preservation=True)
    assert errors(report) == {
        "dog_99.jpg": ["duplicate_image"],
        "class_data_dir/z.png": ["duplicate_image"],
    }
    assert "same bytes as dog_00.jpg" in message(report, "dog_99.jpg", "duplicate_image")
    assert "works against prior preservation" in message(
        report, "class_data_dir/z.png", "duplicate_image"
    )


def test_files_training_ignores_are_warnings(tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "dog", class_count=1)
    (folder / "notes.txt").write_text("x")
    (folder / "extra").mkdir()
    write_image(folder / "photo.webp", SIZE)
    (folder / "class_data_dir" / "list.csv").write_text("x")
    report = check_dataset(folder, prior_preservation=True)
    assert report.valid
    assert warnings(report) == {
        "notes.txt": ["ignored_file"],
        "extra/": ["ignored_file"],
        "photo.webp": ["ignored_file"],
        "class_data_dir/list.csv": ["ignored_file"],
    }
    assert "convert it" in message(report, "photo.webp", "ignored_file")
    assert "not an image: ignored by training" in message(report, "notes.txt", "ignored_file")


# --------------------------------------------------------------------------- dataset rules


@pytest.mark.parametrize(
    ("count", "severity"),
    # The documented 4-20: a warning at 3 and at 21.
    [(0, ERROR), (3, WARNING), (4, None), (20, None), (21, WARNING)],
)
def test_image_count(tmp_path: Path, count: int, severity: Severity | None) -> None:
    folder = make_dataset(tmp_path / "dog", count, size=(72, 64))
    found = check_dataset(folder, resolution=64).all_findings
    assert [(f.rule, f.severity) for f in found] == (
        [("image_count", severity)] if severity else []
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "dataset_info.json is missing"),
        ("{", "is not valid JSON"),
        ('"a photo of sks dog"', "holds a JSON str, not an object"),
    ],
)
def test_dataset_info_must_be_a_json_object(dataset: Path, text: str | None, expected: str) -> None:
    (dataset / "dataset_info.json").unlink()
    if text is not None:
        write_info(dataset, text)
    report = check_dataset(dataset)
    assert errors(report) == {"dataset_info.json": ["dataset_info"]}
    assert expected in message(report, "dataset_info.json", "dataset_info")


def test_dataset_info_must_be_utf8(dataset: Path) -> None:
    (dataset / "dataset_info.json").write_bytes('{"instance_prompt": "caf\xe9"}'.encode("latin-1"))
    assert errors(check_dataset(dataset)) == {"dataset_info.json": ["dataset_info"]}


@pytest.mark.parametrize(
    ("document", "prior_preservation", "expected_errors", "expected_warnings"),
    [
        ({"class_prompt": CLASS_PROMPT}, False, ["instance_prompt"], []),
        ({"instance_prompt": ""}, False, ["instance_prompt"], []),
        ({"instance_prompt": ["a"]}, False, ["instance_prompt"], []),
        ({"instance_prompt": INSTANCE_PROMPT}, False, [], []),
        ({"instance_prompt": INSTANCE_PROMPT}, True, ["class_prompt"], []),
        ({"instance_prompt": INSTANCE_PROMPT, "class_prompt": None}, True, ["class_prompt"], []),
        ({"instance_prompt": INSTANCE_PROMPT, "class_prompt": 1}, True, ["class_prompt"], []),
        ({"instance_prompt": INSTANCE_PROMPT, "class_prompt": " "}, False, [], ["class_prompt"]),
        (
            {"instance_prompt": CLASS_PROMPT, "class_prompt": CLASS_PROMPT},
            True,
            ["class_prompt"],
            [],
        ),
        (
            {"instance_prompt": "A photo of  a dog", "class_prompt": CLASS_PROMPT},
            False,
            [],
            ["class_prompt"],
        ),
        ({"instance_prompt": "a dog", "class_prompt": CLASS_PROMPT}, True, [], ["identifier"]),
        ({"instance_prompt": "a photo of sks dog", "class_prompt": "a dog"}, True, [], []),
    ],
)
def test_prompt_rules(
    dataset: Path,
    document: dict[str, Any],
    prior_preservation: bool,
    expected_errors: list[str],
    expected_warnings: list[str],
) -> None:
    write_info(dataset, document)
    report = check_dataset(dataset, prior_preservation=prior_preservation)
    assert errors(report).get("dataset_info.json", []) == expected_errors
    assert warnings(report).get("dataset_info.json", []) == expected_warnings


def test_unknown_keys_warn_with_a_suggestion(dataset: Path) -> None:
    write_info(dataset, {"instance_prompt": INSTANCE_PROMPT, "class promt": "a dog", "n": 1})
    report = check_dataset(dataset)
    assert report.valid
    messages = [f.message for f in report.warnings if str(f.rule) == "unknown_key"]
    assert len(messages) == 2
    assert "did you mean 'class_prompt'?" in messages[0]
    assert "did you mean" not in messages[1]


def test_class_images_without_prior_preservation_are_unused(tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "dog", class_count=2)
    assert warnings(check_dataset(folder)) == {"class_data_dir/": ["class_images_unused"]}
    assert check_dataset(folder, prior_preservation=True).all_findings == []


@pytest.mark.parametrize(
    ("uri", "warned"),
    [
        ("s3://b-1/dreambooth/dog/", False),
        ("s3://b-1/dreambooth/", True),
        ("s3://b-1/titan/dog/", True),
        ("s3://b-1/", True),
    ],
)
def test_an_upload_outside_dreambooth_name_warns(dataset: Path, uri: str, warned: bool) -> None:
    report = check_dataset(dataset, destination=parse_s3_uri(uri))
    assert report.valid
    assert warnings(report) == ({"": ["destination"]} if warned else {})


def test_class_images_get_the_image_rules_too(tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "dog", class_count=1)
    write_image(folder / "class_data_dir" / "tiny.jpg", (100, 100))
    (folder / "class_data_dir" / "bad.png").write_bytes(b"\x89PNG broken")
    report = check_dataset(folder, prior_preservation=True)
    assert errors(report) == {
        "class_data_dir/tiny.jpg": ["too_small"],
        "class_data_dir/bad.png": ["unreadable_image"],
    }


def test_check_refuses_a_missing_folder_and_a_bad_resolution(tmp_path: Path) -> None:
    with pytest.raises(PrepareError, match="does not exist"):
        check_dataset(tmp_path / "nope")
    with pytest.raises(PrepareError, match="multiple of 8"):
        check_dataset(tmp_path, resolution=500)


# --------------------------------------------------------------------------- build


def test_build_writes_the_jumpstart_layout_and_leaves_the_originals(tmp_path: Path) -> None:
    # Given a folder of images without dataset_info.json, class images elsewhere and a stray file
    images = make_dataset(tmp_path / "photos", with_info=False)
    (images / "notes.txt").write_text("x")
    classes = tmp_path / "dogs"
    write_image(classes / "generic.jpg", (512, 512), colour=(5, 5, 5))
    before = snapshot(images)
    # When it is built with prompts for prior preservation
    out = tmp_path / "out"
    report = build_dataset(
        images,
        out,
        instance_prompt=INSTANCE_PROMPT,
        class_prompt=CLASS_PROMPT,
        class_images_dir=classes,
        prior_preservation=True,
    )
    # Then OUT/dataset holds the images (same bytes), the prompts and the class images
    assert report.valid, report.summary()
    dataset = out / "dataset"
    assert report.dataset_dir == dataset
    assert sorted(p.name for p in dataset.iterdir()) == sorted(
        [*(p.name for p in images.glob("dog_*")), "dataset_info.json", "class_data_dir"]
    )
    for image in images.glob("dog_*"):
        assert (dataset / image.name).read_bytes() == image.read_bytes()
    assert json.loads((dataset / "dataset_info.json").read_text()) == {
        "instance_prompt": INSTANCE_PROMPT,
        "class_prompt": CLASS_PROMPT,
    }
    assert [p.name for p in class_image_paths(dataset)] == ["generic.jpg"]
    # And the built dataset reads back as training reads it, and checks clean
    assert read_dataset_info(dataset, prior_preservation=True).class_prompt == CLASS_PROMPT
    assert check_dataset(dataset, prior_preservation=True).all_findings == []
    # And the originals are untouched; report.json names the ignored file
    assert snapshot(images) == before
    written = json.loads((out / "report.json").read_text())
    assert written["valid"] is True
    assert written["counts"]["instance_images"] == 5
    assert written["counts"]["class_images"] == 1
    assert written["warnings"] == [
        {
            "file": "notes.txt",
            "rule": "ignored_file",
            "severity": "warning",
            "message": message(report, "notes.txt", "ignored_file"),
            "fixable": False,
        }
    ]


def test_build_with_errors_writes_only_the_report(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert build_dataset(dataset, out).valid
    assert (out / "dataset").is_dir()
    # When an unreadable image appears, a rebuild removes the old dataset and reports why
    (dataset / "broken.jpg").write_bytes(b"\xff\xd8 nope")
    report = build_dataset(dataset, out)
    assert not report.valid
    assert not (out / "dataset").exists()
    written = json.loads((out / "report.json").read_text())
    assert written["valid"] is False
    assert [(e["file"], e["rule"]) for e in written["errors"]] == [
        ("broken.jpg", "unreadable_image")
    ]
    assert written["errors"][0]["message"].startswith("not a readable image")
    with pytest.raises(PrepareError, match="has errors"):
        report.dataset_files()


def test_build_reads_the_prompts_from_the_folder_unless_given(
    dataset: Path, tmp_path: Path
) -> None:
    write_info(dataset, {"instance_prompt": INSTANCE_PROMPT, "extra": "dropped"})
    build_dataset(dataset, tmp_path / "a")
    assert json.loads((tmp_path / "a" / "dataset" / "dataset_info.json").read_text()) == {
        "instance_prompt": INSTANCE_PROMPT
    }
    build_dataset(dataset, tmp_path / "b", instance_prompt="a photo of zwx dog")
    assert read_dataset_info(tmp_path / "b" / "dataset", prior_preservation=False) == DatasetInfo(
        "a photo of zwx dog", None
    )
    # A class prompt alone does not fall back to the file for the instance prompt
    report = build_dataset(dataset, tmp_path / "c", class_prompt=CLASS_PROMPT)
    assert errors(report) == {"dataset_info.json": ["instance_prompt"]}


def test_fix_writes_upright_rgb_copies(dataset: Path, tmp_path: Path) -> None:
    # Given a transparent PNG, a turned JPEG, a JPEG named .png, WebP named .png, and a file
    # that the rename would collide with
    clear = Image.new("RGBA", SIZE, (0, 0, 0, 0))
    clear.paste((200, 0, 0, 255), (100, 100, 300, 300))
    clear.save(dataset / "clear.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    write_image(dataset / "turned.jpg", (800, 600), exif=exif.tobytes(), colour=(1, 2, 3))
    write_image(dataset / "jpeg.png", SIZE, image_format="JPEG", colour=(4, 5, 6))
    write_image(dataset / "dog_01.jpg", SIZE, colour=(7, 8, 9))
    shutil.move(dataset / "dog_01.png", dataset / "webp.png")
    write_image(dataset / "webp.png", SIZE, image_format="WEBP", colour=(10, 11, 12))
    before = snapshot(dataset)
    assert not check_dataset(dataset).valid
    # When built with --fix
    report = build_dataset(dataset, tmp_path / "out", fix=True)
    # Then every fixable finding is gone and the copies are RGB, upright, named by content
    assert report.valid, report.summary()
    assert report.all_findings == []
    built = tmp_path / "out" / "dataset"
    with Image.open(built / "clear.png") as image:
        assert (image.format, image.mode) == ("PNG", "RGB")
        assert image.getpixel((0, 0)) == (255, 255, 255)
        assert image.getpixel((150, 150)) == (200, 0, 0)
    with Image.open(built / "turned.jpg") as image:
        assert image.size == (600, 800)
        assert image.getexif().get(0x0112, 1) == 1
    assert (built / "jpeg.jpg").read_bytes() == (dataset / "jpeg.png").read_bytes()
    with Image.open(built / "webp.png") as image:
        assert image.format == "PNG"
    fixes = {image.file: image.fixes for image in report.images if image.fixes}
    assert set(fixes) == {"clear.png", "turned.jpg", "jpeg.jpg", "webp.png"}
    assert fixes["jpeg.jpg"] == ("renamed jpeg.png to jpeg.jpg (JPEG content)",)
    assert "applied EXIF orientation 6" in fixes["turned.jpg"]
    assert not (built / "jpeg.png").exists()
    assert snapshot(dataset) == before


def test_fix_renames_around_a_name_already_taken(dataset: Path, tmp_path: Path) -> None:
    write_image(dataset / "rex.jpg", SIZE, colour=(1, 1, 1))
    write_image(dataset / "rex.png", SIZE, image_format="JPEG", colour=(2, 2, 2))
    report = build_dataset(dataset, tmp_path / "out", fix=True)
    assert report.valid
    assert (tmp_path / "out" / "dataset" / "rex-2.jpg").read_bytes() == (
        dataset / "rex.png"
    ).read_bytes()
    assert (tmp_path / "out" / "dataset" / "rex.jpg").read_bytes() == (
        dataset / "rex.jpg"
    ).read_bytes()


def test_fix_does_not_repair_what_needs_a_person(dataset: Path, tmp_path: Path) -> None:
    write_image(dataset / "tiny.jpg", (64, 64))
    report = build_dataset(dataset, tmp_path / "out", fix=True)
    assert errors(report) == {"tiny.jpg": ["too_small"]}
    assert not (tmp_path / "out" / "dataset").exists()


@pytest.mark.parametrize("out", ["dog/out", "dog", "."])
def test_build_refuses_an_output_overlapping_the_images(
    dataset: Path, tmp_path: Path, out: str
) -> None:
    # OUT inside (or equal to) the images, or the images inside OUT/dataset
    target = tmp_path / out if out != "." else dataset.parent
    if out == ".":
        moved = tmp_path / "dataset" / "dog"
        shutil.copytree(dataset, moved)
        dataset = moved
    with pytest.raises(PrepareError, match="overlaps the image folder"):
        build_dataset(dataset, target)


def test_build_accepts_an_output_beside_the_images(dataset: Path) -> None:
    report = build_dataset(dataset, dataset.parent)
    assert report.valid
    assert (dataset.parent / "dataset" / "dataset_info.json").is_file()


# --------------------------------------------------------------------------- CLI


def test_cli_builds_and_exits_0(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(["--images", str(dataset), "--instance-prompt", INSTANCE_PROMPT, "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "valid, 0 warnings" in printed
    assert f"The dataset is in {out / 'dataset'}" in printed


def test_cli_exits_2_and_says_what_to_fix(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (dataset / "broken.png").write_text("x")
    write_image(dataset / "jpeg.png", SIZE, image_format="WEBP")
    out = tmp_path / "out"
    assert main(["--images", str(dataset), "--out", str(out), "--prior-preservation"]) == 2
    err = capsys.readouterr().err
    assert "NOT valid: 2 errors to fix" in err
    assert "Error: broken.png: not a readable image" in err
    assert "1 of the errors can be repaired with --fix" in err
    assert f"no dataset built. Details: {out / 'report.json'}" in err
    assert (out / "report.json").is_file()


def test_cli_check_only_checks_the_folder_as_it_stands(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--images", str(dataset), "--check-only"]) == 0
    assert main(["--images", str(dataset), "--check-only", "--out", str(tmp_path / "r")]) == 0
    assert json.loads((tmp_path / "r" / "report.json").read_text())["mode"] == "check"
    assert not (tmp_path / "r" / "dataset").exists()
    (dataset / "dataset_info.json").unlink()
    assert main(["--images", str(dataset), "--check-only"]) == 2
    assert "dataset_info.json is missing" in capsys.readouterr().err
    assert main(["--images", str(dataset), "--check-only", "--out", str(dataset / "r")]) == 2
    assert "is inside the dataset" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ([], "--out is required to build a dataset"),
        (["--check-only", "--instance-prompt", "x"], "--instance-prompt only apply when building"),
        (["--check-only", "--fix"], "--fix only apply when building"),
        (["--out", "o", "--kms-key-id", "alias/x"], "only apply with --upload"),
        (["--out", "o", "--prune"], "only apply with --upload"),
        (["--out", "o", "--upload", "s3://bucket/dreambooth/dog"], "must end with '/'"),
        (["--out", "o", "--upload", "https://bucket/x/"], "is not an S3 URI"),
        (["--out", "o", "--upload", "s3://b-1/x/", "--kms-key-id", "my key"], "not a KMS key"),
        (["--out", "o", "--resolution", "big"], "'big' is not an integer"),
    ],
)
def test_cli_rejects_bad_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], expected: str
) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["--images", str(tmp_path), *extra])
    assert raised.value.code == 2
    assert expected in capsys.readouterr().err


def test_cli_layout_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--images", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def test_runs_as_module_and_as_script_without_boto3(tmp_path: Path) -> None:
    assert_runs_without_torch_or_boto3("dreambooth", "--check-only", tmp_path)


# --------------------------------------------------------------------------- upload


BUCKET = "atelier-datasets"
PREFIX = "dreambooth/dog/"


@pytest.fixture
def s3() -> Iterator[Any]:
    with mocked_bucket(BUCKET) as client:
        yield client


def test_upload_sends_images_then_dataset_info_and_skips_unchanged(tmp_path: Path, s3: Any) -> None:
    # Given a built dataset with a class image
    images = make_dataset(tmp_path / "dog", class_count=1)
    report = build_dataset(images, tmp_path / "out", prior_preservation=True)
    destination = parse_s3_uri(f"s3://{BUCKET}/{PREFIX}")
    # When it is uploaded
    first = upload_dataset(report, destination, client=s3)
    # Then the layout is under the prefix and dataset_info.json came last
    names = [*(p.name for p in images.glob("dog_*")), "class_data_dir/class_00.jpg"]
    expected = sorted(PREFIX + name for name in [*names, "dataset_info.json"])
    assert bucket_keys(s3, BUCKET) == expected
    assert first.uploaded[-1] == PREFIX + "dataset_info.json"
    stored = s3.get_object(Bucket=BUCKET, Key=PREFIX + "dog_00.jpg")
    assert stored["Body"].read() == (images / "dog_00.jpg").read_bytes()
    assert stored["ContentType"] == "image/jpeg"
    info = s3.get_object(Bucket=BUCKET, Key=PREFIX + "dataset_info.json")
    assert info["ContentType"] == "application/json"
    # When uploaded again, nothing is sent; when one image changes, only it is
    assert upload_dataset(report, destination, client=s3).uploaded == []
    write_image(tmp_path / "out" / "dataset" / "dog_02.jpg", SIZE, colour=(1, 2, 3))
    assert upload_dataset(report, destination, client=s3).uploaded == [PREFIX + "dog_02.jpg"]


def test_stale_images_under_the_prefix_are_listed_and_pruned(dataset: Path, s3: Any) -> None:
    # Given images (and a non-image) left under the prefix by an earlier upload
    for key in ("old.jpg", "class_data_dir/old.PNG", "notes/readme.txt", "deeper/x.jpg"):
        s3.put_object(Bucket=BUCKET, Key=PREFIX + key, Body=b"x")
    report = check_dataset(dataset)
    destination = parse_s3_uri(f"s3://{BUCKET}/{PREFIX}")
    # Then the images training would read are listed, and only pruning deletes them
    listed = upload_dataset(report, destination, client=s3)
    assert listed.stale == [PREFIX + "class_data_dir/old.PNG", PREFIX + "old.jpg"]
    assert listed.deleted == []
    pruned = upload_dataset(report, destination, client=s3, prune=True)
    assert pruned.deleted == listed.stale
    assert PREFIX + "old.jpg" not in bucket_keys(s3, BUCKET)
    assert PREFIX + "notes/readme.txt" in bucket_keys(s3, BUCKET)
    assert PREFIX + "deeper/x.jpg" in bucket_keys(s3, BUCKET)


def test_cli_check_only_upload_with_kms_and_a_cheap_rerun(
    dataset: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a KMS key, and a bucket already holding the dataset without it
    key_id = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["KeyId"]
    (dataset / "notes.txt").write_text("not uploaded")
    base = ["--images", str(dataset), "--check-only", "--upload", f"s3://{BUCKET}/{PREFIX}"]
    assert main(base) == 0
    capsys.readouterr()
    # When uploaded with the key, every object is rewritten encrypted with it
    assert main([*base, "--kms-key-id", key_id]) == 0
    printed = capsys.readouterr().out
    assert f"Uploaded 6 objects to s3://{BUCKET}/{PREFIX} (0 already there" in printed
    assert f"Train with the dataset s3://{BUCKET}/{PREFIX}" in printed
    assert PREFIX + "notes.txt" not in bucket_keys(s3, BUCKET)
    for key in bucket_keys(s3, BUCKET):
        head = s3.head_object(Bucket=BUCKET, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms"
        assert key_id in head["SSEKMSKeyId"]
    # And a re-run sends nothing
    assert main([*base, "--kms-key-id", key_id]) == 0
    assert "Uploaded 0 objects" in capsys.readouterr().out


def test_cli_warns_about_stale_images_without_prune(
    dataset: Path, tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "old.jpg", Body=b"x")
    base = [
        "--images",
        str(dataset),
        "--out",
        str(tmp_path / "o"),
        "--upload",
        f"s3://{BUCKET}/{PREFIX}",
    ]
    assert main(base) == 0
    assert "1 images under" in capsys.readouterr().err
    assert main([*base, "--prune"]) == 0
    assert PREFIX + "old.jpg" not in bucket_keys(s3, BUCKET)


def test_cli_upload_failure_exits_1(
    dataset: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--images", str(dataset), "--check-only", "--upload", "s3://no-such-bucket/p/"])
    assert code == 1
    assert "upload of p/dog_00.jpg to s3://no-such-bucket failed" in capsys.readouterr().err


def test_an_invalid_dataset_is_not_uploaded(dataset: Path, s3: Any) -> None:
    (dataset / "dataset_info.json").unlink()
    report = check_dataset(dataset)
    with pytest.raises(PrepareError, match="has errors"):
        upload_dataset(report, parse_s3_uri(f"s3://{BUCKET}/{PREFIX}"), client=s3)
    assert bucket_keys(s3, BUCKET) == []
