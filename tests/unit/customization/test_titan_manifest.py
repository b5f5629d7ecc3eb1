"""The Titan manifest check, on manifests held in memory (no AWS)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from customization.logic.manifest import (
    MAX_IMAGE_BYTES,
    MAX_REPORTED_PROBLEMS,
    ManifestChecker,
    manifest_folder,
    recommended_step_count,
)

BUCKET = "atelier-dev-datasets"


class MemoryStore:
    def __init__(self, objects: dict[str, bytes | int]) -> None:
        # bytes: an object's content; int: only its size (an image).
        self.objects = objects
        self.sized: list[str] = []

    def read(self, key: str, *, max_bytes: int) -> bytes | None:
        value = self.objects.get(key)
        if value is None:
            return None
        assert isinstance(value, bytes)
        if len(value) > max_bytes:
            raise ValueError("too large")
        return value

    def size(self, key: str) -> int | None:
        self.sized.append(key)
        value = self.objects.get(key)
        return len(value) if isinstance(value, bytes) else value


def line(key: str, caption: str = "Ron the dog on a white bed", **extra: Any) -> str:
    return json.dumps({"image-ref": f"s3://{BUCKET}/{key}", "caption": caption, **extra})


def dataset(count: int, *, folder: str = "titan/dogs/") -> dict[str, bytes | int]:
    images: dict[str, bytes | int] = {f"{folder}ron_{i:02}.jpg": 200_000 for i in range(count)}
    manifest = "\n".join(line(key) for key in images) + "\n"
    return {f"{folder}manifest.jsonl": manifest.encode(), **images}


def check(
    objects: dict[str, bytes | int], key: str = "titan/dogs/manifest.jsonl"
) -> dict[str, Any]:
    return ManifestChecker(store=MemoryStore(objects), bucket=BUCKET).check(key).as_dict()


def test_a_good_manifest_is_valid_with_counts_and_a_step_recommendation() -> None:
    # Given 60 captioned images under the manifest's folder
    report = check(dataset(60))
    # Then it is valid, counted, and steps follow the recommended table
    # (between 32 → 4,000 and 64 → 8,000)
    assert report["valid"] is True
    assert report["problems"] == []
    assert (report["records"], report["images"]) == (60, 60)
    assert report["totalBytes"] == 60 * 200_000
    assert report["recommendedStepCount"] == 7_500
    assert report["manifestUri"] == f"s3://{BUCKET}/titan/dogs/manifest.jsonl"


@pytest.mark.parametrize(
    ("images", "steps"),
    [(1, 1_000), (5, 1_000), (8, 1_000), (32, 4_000), (64, 8_000), (1_000, 10_000),
     (10_000, 12_000), (20, 2_500), (532, 9_000)],
)  # fmt: skip
def test_recommended_steps_follow_the_spec_table(images: int, steps: int) -> None:
    assert recommended_step_count(images) == steps


@pytest.mark.parametrize(
    ("key", "folder"),
    [
        ("titan/dogs/manifest.jsonl", "titan/dogs/"),
        ("titan/a/b/train.jsonl", "titan/a/b/"),
        ("titan/manifest.jsonl", None),
        ("vqa/dogs/manifest.jsonl", None),
    ],
)
def test_a_manifest_lives_in_a_folder_under_titan(key: str, folder: str | None) -> None:
    assert manifest_folder(key) == folder


def test_too_few_records_is_a_problem() -> None:
    report = check(dataset(4))
    assert report["valid"] is False
    assert report["problems"][0] == (
        "the manifest has 4 records; Titan Image Generator takes 5-10,000"
    )


def test_too_many_records_stops_before_checking_images() -> None:
    objects = dataset(0)
    objects["titan/dogs/manifest.jsonl"] = "\n".join(
        line(f"titan/dogs/{i}.png") for i in range(10_001)
    ).encode()
    store = MemoryStore(objects)
    report = ManifestChecker(store=store, bucket=BUCKET).check("titan/dogs/manifest.jsonl")
    assert report.problems == [
        "the manifest has 10,001 records; Titan Image Generator takes 5-10,000"
    ]
    assert store.sized == []


def test_every_bad_line_is_reported_with_its_number() -> None:
    objects = dataset(6)
    lines = objects["titan/dogs/manifest.jsonl"].decode().splitlines()  # type: ignore[union-attr]
    lines[1] = "{not json"
    lines[2] = json.dumps(["a list"])
    lines[3] = line("titan/dogs/ron_03.jpg", caption="Ro")
    lines[4] = json.dumps({"image-ref": "s3://another-bucket/titan/dogs/x.jpg", "caption": "abc"})
    lines[5] = json.dumps({"image-ref": f"s3://{BUCKET}/titan/cats/x.jpg", "caption": "abcd"})
    lines.append(line("titan/dogs/ron.gif"))
    lines.append(json.dumps({"caption": 3}))
    lines.append("")  # blank lines are skipped
    objects["titan/dogs/manifest.jsonl"] = "\n".join(lines).encode()
    report = check(objects)
    assert report["valid"] is False
    problems = report["problems"]
    assert problems[0].startswith("line 2: not valid JSON")
    assert problems[1] == 'line 3: expected an object with "image-ref" and "caption"'
    assert problems[2] == "line 4: the caption has 2 characters; 3-1,024 allowed"
    assert problems[3].startswith("line 5:")
    assert "outside the datasets bucket" in problems[3]
    assert "is not under the manifest's folder titan/dogs/" in problems[4]
    assert problems[5].startswith("line 7:")
    assert "is not a .jpg, .jpeg or .png file" in problems[5]
    assert problems[6] == 'line 8: "image-ref" must be an s3:// URI string'
    assert problems[7] == 'line 8: "caption" must be a string'
    assert report["problemCount"] == 8
    # Lines that are JSON objects count as records, as Bedrock would count them.
    assert report["records"] == 6


def test_missing_empty_and_oversized_images_are_problems() -> None:
    objects = dataset(6)
    del objects["titan/dogs/ron_01.jpg"]
    objects["titan/dogs/ron_02.jpg"] = 0
    objects["titan/dogs/ron_03.jpg"] = MAX_IMAGE_BYTES + 1
    report = check(objects)
    assert report["problems"] == [
        f"line 2: s3://{BUCKET}/titan/dogs/ron_01.jpg does not exist",
        f"line 3: s3://{BUCKET}/titan/dogs/ron_02.jpg is empty",
        f"line 4: s3://{BUCKET}/titan/dogs/ron_03.jpg is 50,000,001 bytes; at most 50,000,000 "
        "allowed",
    ]


def test_an_image_used_twice_is_checked_once() -> None:
    objects = dataset(5)
    manifest = (
        objects["titan/dogs/manifest.jsonl"] + (line("titan/dogs/ron_00.jpg") + "\n").encode()
    )  # type: ignore[operator]
    objects["titan/dogs/manifest.jsonl"] = manifest
    store = MemoryStore(objects)
    report = ManifestChecker(store=store, bucket=BUCKET).check("titan/dogs/manifest.jsonl")
    assert (report.records, report.images) == (6, 5)
    assert sorted(store.sized) == sorted(set(store.sized))


def test_only_the_first_problems_are_listed_but_all_are_counted() -> None:
    objects = dataset(30)
    for i in range(30):
        del objects[f"titan/dogs/ron_{i:02}.jpg"]
    report = check(objects)
    assert report["problemCount"] == 30
    assert len(report["problems"]) == MAX_REPORTED_PROBLEMS


@pytest.mark.parametrize(
    ("objects", "problem"),
    [
        ({}, "does not exist"),
        ({"titan/dogs/manifest.jsonl": b"\xff\xfe"}, "is not UTF-8 text"),
    ],
)
def test_an_unreadable_manifest_is_one_problem(
    objects: dict[str, bytes | int], problem: str
) -> None:
    report = check(objects)
    assert report["valid"] is False
    assert len(report["problems"]) == 1
    assert problem in report["problems"][0]


def test_a_manifest_outside_titan_is_refused_before_reading() -> None:
    report = check(dataset(6), key="vqa/manifest.jsonl")
    assert "must lie in a folder under titan/" in report["problems"][0]
