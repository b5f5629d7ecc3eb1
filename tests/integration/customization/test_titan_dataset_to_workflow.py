"""What titan.prepare uploads is what the customization workflow's manifest check accepts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from customization.logic.manifest import ManifestChecker
from shared.adapters.datasets import S3Datasets
from tests.titan_data_support import make_dataset
from titan import prepare

pytestmark = pytest.mark.integration

BUCKET = "atelier-dev-datasets"


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client


def test_a_prepared_and_uploaded_dataset_passes_the_workflows_manifest_check(
    s3: Any, tmp_path: Path
) -> None:
    # Given six captioned images, one of them WebP, which only --fix makes acceptable
    captions = {f"ron_{index:02}.png": f"Ron the dog in scene {index}" for index in range(5)}
    captions["smila_00.webp"] = "Smila the cat on a white sofa"
    images = tmp_path / "pets"
    make_dataset(images, captions)

    # When the builder fixes, writes the manifest and uploads under titan/pets/
    exit_code = prepare.main(
        [
            "--images", str(images),
            "--out", str(tmp_path / "out"),
            "--fix",
            "--upload", f"s3://{BUCKET}/titan/pets/",
        ]
    )  # fmt: skip
    assert exit_code == 0

    # Then the workflow's check finds every record and image, and both recommend the same steps
    report = ManifestChecker(store=S3Datasets(BUCKET, s3=s3), bucket=BUCKET).check(
        "titan/pets/manifest.jsonl"
    )
    assert report.problems == []
    assert (report.records, report.images) == (6, 6)
    recommended = json.loads((tmp_path / "out" / "hyperparameters.json").read_text())
    assert recommended["stepCount"] == str(report.as_dict()["recommendedStepCount"])
