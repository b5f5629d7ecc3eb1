"""The manifest check's handler and S3 adapter against moto S3: good and bad manifests."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from PIL import Image

from customization.handlers.manifest import check
from customization.logic.manifest import ManifestChecker
from shared.adapters.datasets import S3Datasets

pytestmark = pytest.mark.integration

BUCKET = "atelier-dev-datasets"


def png(size: tuple[int, int] = (512, 512)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (120, 80, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client


def upload_dataset(s3: Any, folder: str, count: int) -> str:
    lines = []
    for index in range(count):
        key = f"{folder}smila_{index:02}.png"
        s3.put_object(Bucket=BUCKET, Key=key, Body=png())
        lines.append(
            json.dumps({"image-ref": f"s3://{BUCKET}/{key}", "caption": "Smila the cat on a sofa"})
        )
    manifest = f"{folder}manifest.jsonl"
    s3.put_object(Bucket=BUCKET, Key=manifest, Body=("\n".join(lines) + "\n").encode())
    return manifest


def checker(s3: Any) -> ManifestChecker:
    return ManifestChecker(store=S3Datasets(BUCKET, s3=s3), bucket=BUCKET)


def test_a_good_manifest_passes(s3: Any) -> None:
    # Given 8 PNG images and their manifest in the datasets bucket
    manifest = upload_dataset(s3, "titan/cats/", 8)
    # When the workflow's task event reaches the handler
    report = check({"manifest": manifest}, checker(s3))
    # Then it is valid, with its counts and the recommended steps for 8 images
    assert report["valid"] is True, report["problems"]
    assert (report["records"], report["images"]) == (8, 8)
    assert report["totalBytes"] == 8 * len(png())
    assert report["recommendedStepCount"] == 1_000


def test_missing_images_and_a_missing_manifest_are_reported(s3: Any) -> None:
    manifest = upload_dataset(s3, "titan/cats/", 6)
    s3.delete_object(Bucket=BUCKET, Key="titan/cats/smila_03.png")
    report = check({"manifest": manifest}, checker(s3))
    assert report["valid"] is False
    assert report["problems"] == [f"line 4: s3://{BUCKET}/titan/cats/smila_03.png does not exist"]

    gone = check({"manifest": "titan/dogs/manifest.jsonl"}, checker(s3))
    assert gone["problems"] == [f"s3://{BUCKET}/titan/dogs/manifest.jsonl does not exist"]


def test_a_malformed_event_is_a_report_not_a_crash(s3: Any) -> None:
    report = check({"dataset": "titan/cats/"}, checker(s3))
    assert report["valid"] is False
    assert report["problems"] == ['the event must be {"manifest": "titan/<name>/<file>.jsonl"}']


def test_a_missing_bucket_is_a_dependency_failure(s3: Any) -> None:
    from shared.models.errors import DependencyError

    store = S3Datasets("no-such-bucket", s3=s3)
    with pytest.raises(DependencyError) as caught:
        store.size("titan/cats/x.png")
    assert caught.value.code == "datasets_bucket_failed"
