"""Helpers shared by the dataset builders' tests (vqa, titan and dreambooth `prepare`): a moto S3
bucket to upload into, and the check that a builder runs as a module and as a plain script
without importing torch or boto3 (the CLI must work on a laptop with only Pillow)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws

from tests.support import ROOT


@contextmanager
def mocked_bucket(bucket: str) -> Iterator[Any]:
    """An S3 client under moto, with `bucket` created (KMS is mocked too)."""
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=bucket)
        yield client


def bucket_keys(client: Any, bucket: str) -> list[str]:
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return sorted(item["Key"] for item in listed)


def assert_runs_without_torch_or_boto3(package: str, help_option: str, tmp_path: Path) -> None:
    """`python -m <package>.prepare --help` (from training/) and `python <package>/prepare.py
    --help` (from elsewhere) work, the help names `help_option`, and importing the module pulls
    in neither torch nor boto3."""
    training = ROOT / "training"
    module = subprocess.run(
        [sys.executable, "-m", f"{package}.prepare", "--help"],
        cwd=training,
        capture_output=True,
        text=True,
        check=False,
    )
    assert module.returncode == 0, module.stderr
    assert help_option in module.stdout
    script = subprocess.run(
        [sys.executable, str(training / package / "prepare.py"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert script.returncode == 0, script.stderr
    probe = f"import sys, {package}.prepare; print(sorted({{'torch', 'boto3'}} & set(sys.modules)))"
    imported = subprocess.run(
        [sys.executable, "-c", probe], cwd=training, capture_output=True, text=True, check=False
    )
    assert imported.stdout.strip() == "[]", imported.stderr
