"""`atelier upload` and `atelier dataset vqa|titan|dreambooth`: the real dataset builders, real
S3 calls against moto, resumable multipart uploads."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from atelier_cli.errors import ExitCode
from atelier_cli.s3_transfer import MIB, Settings, upload_files
from tests.cli_support import REGION, invoke, json_document, publish
from tests.dreambooth_data_support import make_dataset as make_dreambooth_dataset
from tests.titan_data_support import make_dataset as make_titan_dataset
from tests.vqa_data_support import make_fashion_dataset

pytestmark = pytest.mark.integration

BUCKETS = {"datasets": "atelier-dev-datasets", "uploads": "atelier-dev-uploads",
           "models": "atelier-dev-models"}  # fmt: skip


@pytest.fixture
def stage() -> Iterator[str]:
    """The Data stack's buckets and key in moto, published as the stack does; yields the key."""
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        for kind, bucket in BUCKETS.items():
            s3.create_bucket(Bucket=bucket)
            publish("data", f"{kind}-bucket", bucket)
        key = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
        publish("data", "kms-key-arn", key)
        yield key


def keys(bucket: str) -> list[str]:
    listed = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def body(bucket: str, key: str) -> bytes:
    s3 = boto3.client("s3", region_name=REGION)
    data: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return data


# --- upload --------------------------------------------------------------------------------------


def test_upload_sends_folders_with_their_layout_encrypted_and_skips_unchanged(
    stage: str, tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    (folder / "code").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"w" * 1000)
    (folder / "code" / "inference.py").write_text("print('hi')\n")
    (folder / ".DS_Store").write_bytes(b"junk")
    single = tmp_path / "notes.json"
    single.write_text("{}")

    first = invoke(
        ["--json", "upload", str(folder), str(single), "--to", "models", "--prefix", "styling/v1"]
    )
    second = invoke(
        ["--json", "upload", str(folder), str(single), "--to", "models", "--prefix", "styling/v1/"]
    )

    assert first.exit_code == 0, first.output
    sent = json_document(first)["result"]
    assert sorted(sent["uploaded"]) == [
        "styling/v1/code/inference.py",
        "styling/v1/model.safetensors",
        "styling/v1/notes.json",
    ]
    assert keys("atelier-dev-models") == sorted(sent["uploaded"])
    head = boto3.client("s3", region_name=REGION).head_object(
        Bucket="atelier-dev-models", Key="styling/v1/model.safetensors"
    )
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == stage
    again = json_document(second)["result"]
    assert again["uploaded"] == []
    assert sorted(again["unchanged"]) == sorted(sent["uploaded"])
    assert again["bytesSkipped"] == sent["bytesSent"]


def test_upload_sends_a_changed_file_again(stage: str, tmp_path: Path) -> None:
    del stage
    file = tmp_path / "a.txt"
    file.write_text("one")
    invoke(["upload", str(file), "--to", "uploads"])
    file.write_text("two")

    result = invoke(["--json", "upload", str(file), "--to", "uploads"])

    assert json_document(result)["result"]["uploaded"] == ["a.txt"]
    assert body("atelier-dev-uploads", "a.txt") == b"two"


def test_dry_run_lists_and_sends_nothing(stage: str, tmp_path: Path) -> None:
    del stage
    (tmp_path / "a.jpg").write_bytes(b"x")

    result = invoke(["--json", "upload", str(tmp_path), "--to", "datasets", "--dry-run",
                     "--prefix", "vqa/x"])  # fmt: skip

    assert json_document(result)["result"]["planned"] == [
        {"path": str(tmp_path / "a.jpg"), "uri": "s3://atelier-dev-datasets/vqa/x/a.jpg"}
    ]
    assert keys("atelier-dev-datasets") == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--prefix", "/abs"], "must be a relative S3 folder"),
        (["--prefix", "a/../b"], "must be a relative S3 folder"),
        (["--to", "results"], None),
    ],
)
def test_upload_refuses_bad_destinations(
    tmp_path: Path, arguments: list[str], message: str | None
) -> None:
    (tmp_path / "a.txt").write_text("x")
    to = [] if "--to" in arguments else ["--to", "uploads"]

    result = invoke(["--json", "upload", str(tmp_path / "a.txt"), *to, *arguments])

    assert result.exit_code == ExitCode.USAGE
    if message:
        assert message in json_document(result)["error"]["message"]


def test_upload_refuses_two_files_for_one_key(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same.jpg").write_bytes(b"x")

    result = invoke(["--json", "upload", str(tmp_path / "a" / "same.jpg"),
                     str(tmp_path / "b" / "same.jpg"), "--to", "uploads"])  # fmt: skip

    assert result.exit_code == ExitCode.USAGE
    assert json_document(result)["error"]["code"] == "duplicate_key"


@mock_aws
def test_upload_without_the_data_stack_names_it(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")

    result = invoke(["--json", "upload", str(tmp_path / "a.txt"), "--to", "uploads"])

    assert result.exit_code == ExitCode.NOT_DEPLOYED
    assert "atelier-dev-data" in json_document(result)["error"]["message"]


# --- resumable multipart ------------------------------------------------------------------------


class FailingParts:
    """An S3 client that fails the `fail_at`-th upload_part call, as a dropped connection would."""

    def __init__(self, client: Any, fail_at: int) -> None:
        self._client = client
        self._fail_at = fail_at
        self.parts_sent: list[int] = []

    def upload_part(self, **arguments: Any) -> Any:
        if len(self.parts_sent) + 1 == self._fail_at:
            raise ConnectionResetError("connection reset by peer")
        self.parts_sent.append(arguments["PartNumber"])
        return self._client.upload_part(**arguments)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


SMALL_PARTS = Settings(part_size=5 * MIB, multipart_threshold=6 * MIB)


def test_an_interrupted_upload_resumes_with_the_missing_parts_only(tmp_path: Path) -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="bucket-m")
        big = tmp_path / "model.tar.gz"
        big.write_bytes(os.urandom(12 * MIB))  # 3 parts: 5 + 5 + 2 MiB
        done: list[int] = []

        # When the third part fails
        failing = FailingParts(s3, fail_at=3)
        with pytest.raises(ConnectionResetError):
            upload_files(failing, "bucket-m", [(big, "m/model.tar.gz")], settings=SMALL_PARTS)
        # Then the upload stays open with two parts, and no object exists yet
        (open_upload,) = s3.list_multipart_uploads(Bucket="bucket-m")["Uploads"]
        assert open_upload["Key"] == "m/model.tar.gz"
        assert keys("bucket-m") == []

        # When run again
        again = FailingParts(s3, fail_at=0)
        result = upload_files(
            again, "bucket-m", [(big, "m/model.tar.gz")], settings=SMALL_PARTS,
            progress=done.append,
        )  # fmt: skip

        # Then only the third part was sent, and the object is the file
        assert again.parts_sent == [3]
        assert result.resumed == ["m/model.tar.gz"]
        assert body("bucket-m", "m/model.tar.gz") == big.read_bytes()
        assert sum(done) == big.stat().st_size
        assert s3.list_multipart_uploads(Bucket="bucket-m").get("Uploads") is None
        # And a third run finds it unchanged (the MD5 is in its metadata)
        third = upload_files(s3, "bucket-m", [(big, "m/model.tar.gz")], settings=SMALL_PARTS)
        assert third.unchanged == ["m/model.tar.gz"]


def test_an_open_upload_of_an_older_version_is_not_trusted(tmp_path: Path) -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="bucket-m")
        big = tmp_path / "model.tar.gz"
        big.write_bytes(os.urandom(11 * MIB))
        with pytest.raises(ConnectionResetError):
            upload_files(FailingParts(s3, fail_at=2), "bucket-m", [(big, "k")],
                         settings=SMALL_PARTS)  # fmt: skip
        big.write_bytes(os.urandom(11 * MIB))  # the file changed since

        again = FailingParts(s3, fail_at=0)
        result = upload_files(again, "bucket-m", [(big, "k")], settings=SMALL_PARTS)

        assert again.parts_sent == [1, 2, 3]
        assert result.resumed == []
        assert body("bucket-m", "k") == big.read_bytes()


def test_an_upload_started_for_another_version_never_keeps_its_md5(tmp_path: Path) -> None:
    """The versions share their first part, so the open upload looks resumable; its metadata
    still names the old MD5, which would make the old file look unchanged later."""
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="bucket-m")
        big = tmp_path / "model.tar.gz"
        head = os.urandom(5 * MIB)
        big.write_bytes(head + os.urandom(6 * MIB))
        with pytest.raises(ConnectionResetError):
            upload_files(FailingParts(s3, fail_at=2), "bucket-m", [(big, "k")],
                         settings=SMALL_PARTS)  # fmt: skip
        new_version = head + os.urandom(6 * MIB)
        big.write_bytes(new_version)

        result = upload_files(s3, "bucket-m", [(big, "k")], settings=SMALL_PARTS)

        stored = s3.head_object(Bucket="bucket-m", Key="k")
        assert (
            stored["Metadata"]["md5"] == hashlib.md5(new_version, usedforsecurity=False).hexdigest()
        )
        assert body("bucket-m", "k") == new_version
        assert result.resumed == []
        assert s3.list_multipart_uploads(Bucket="bucket-m").get("Uploads") is None


def test_an_open_upload_without_checksums_is_aborted_not_resumed(tmp_path: Path) -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="bucket-m")
        foreign = s3.create_multipart_upload(Bucket="bucket-m", Key="k")["UploadId"]
        big = tmp_path / "model.tar.gz"
        big.write_bytes(os.urandom(7 * MIB))

        result = upload_files(s3, "bucket-m", [(big, "k")], settings=SMALL_PARTS)

        assert result.resumed == []
        assert body("bucket-m", "k") == big.read_bytes()
        open_uploads = s3.list_multipart_uploads(Bucket="bucket-m").get("Uploads") or []
        assert foreign not in [upload["UploadId"] for upload in open_uploads]


def test_parts_are_matched_by_the_checksum_s3_reports(tmp_path: Path) -> None:
    """Under SSE-KMS a part's ETag is not its MD5: S3's SHA-256 part checksum decides."""
    big = tmp_path / "x.bin"
    data = os.urandom(7 * MIB)
    big.write_bytes(data)
    first, second = data[: 5 * MIB], data[5 * MIB :]
    sha = [base64.b64encode(hashlib.sha256(part).digest()).decode() for part in (first, second)]
    s3 = boto3.client("s3", region_name=REGION)
    with Stubber(s3) as stub:
        stub.add_client_error("head_object", service_error_code="404", http_status_code=404)
        stub.add_response(
            "list_multipart_uploads",
            {
                "Uploads": [
                    {
                        "UploadId": "u1",
                        "Key": "x.bin",
                        "Initiated": datetime.now(UTC),
                        "ChecksumAlgorithm": "SHA256",
                    }
                ]
            },
            {"Bucket": "bucket-m", "Prefix": "x.bin"},
        )
        stub.add_response(
            "list_parts",
            {
                "Parts": [
                    # Part 1 arrived; its ETag is not an MD5 (KMS), its checksum matches
                    {"PartNumber": 1, "ETag": '"kms-etag"', "Size": 5 * MIB,
                     "ChecksumSHA256": sha[0]},
                ],
                "IsTruncated": False,
            },
            {"Bucket": "bucket-m", "Key": "x.bin", "UploadId": "u1", "PartNumberMarker": 0},
        )  # fmt: skip
        stub.add_response(
            "upload_part",
            {"ETag": '"e2"'},
            {
                "Bucket": "bucket-m", "Key": "x.bin", "UploadId": "u1", "PartNumber": 2,
                "Body": ANY, "ChecksumAlgorithm": "SHA256", "ChecksumSHA256": sha[1],
            },
        )  # fmt: skip
        stub.add_response(
            "complete_multipart_upload",
            {},
            {
                "Bucket": "bucket-m", "Key": "x.bin", "UploadId": "u1",
                "MultipartUpload": {"Parts": [
                    {"PartNumber": 1, "ETag": '"kms-etag"', "ChecksumSHA256": sha[0]},
                    {"PartNumber": 2, "ETag": '"e2"', "ChecksumSHA256": sha[1]},
                ]},
            },
        )  # fmt: skip
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        stub.add_response(
            "head_object", {"Metadata": {"md5": md5}}, {"Bucket": "bucket-m", "Key": "x.bin"}
        )

        result = upload_files(
            s3, "bucket-m", [(big, "x.bin")],
            settings=Settings(kms_key_id="arn:aws:kms:us-east-1:1:key/k", part_size=5 * MIB,
                              multipart_threshold=6 * MIB),
        )  # fmt: skip

        stub.assert_no_pending_responses()
    assert result.resumed == ["x.bin"]


# --- dataset vqa ---------------------------------------------------------------------------------


def test_dataset_vqa_builds_with_the_real_builder_and_uploads_where_training_reads(
    stage: str, tmp_path: Path
) -> None:
    del stage
    source = make_fashion_dataset(tmp_path / "fashion", products=12)
    out = tmp_path / "vqa-out"

    result = invoke(["--json", "dataset", "vqa", "--source", str(source), "--out", str(out),
                     "--article-types", "all", "--upload", "shirts"])  # fmt: skip

    assert result.exit_code == 0, result.output
    document = json_document(result)["result"]
    report = json.loads((out / "report.json").read_text())
    assert document["report"] == report
    assert document["uri"] == "s3://atelier-dev-datasets/vqa/shirts/"
    assert document["next"] == "atelier train vqa --dataset vqa/shirts/ --wait"
    local = sorted(
        "vqa/shirts/" + p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()
    )
    assert keys("atelier-dev-datasets") == local
    assert "vqa/shirts/train/rows.jsonl" in local
    assert (
        body("atelier-dev-datasets", "vqa/shirts/train/rows.jsonl")
        == (out / "train" / "rows.jsonl").read_bytes()
    )


def test_dataset_vqa_with_no_usable_product_is_exit_2_with_the_report(
    stage: str, tmp_path: Path
) -> None:
    del stage
    source = make_fashion_dataset(tmp_path / "fashion", products=3)

    result = invoke(["--json", "dataset", "vqa", "--source", str(source), "--out",
                     str(tmp_path / "o"), "--article-types", "Sarees",
                     "--upload", "x"])  # fmt: skip

    assert result.exit_code == ExitCode.USAGE
    error = json_document(result)["error"]
    assert error["code"] == "dataset_invalid"
    assert "no usable products" in error["message"]
    assert error["details"]["skipped"]
    assert keys("atelier-dev-datasets") == []


def test_dataset_vqa_without_upload_needs_no_aws(tmp_path: Path) -> None:
    source = make_fashion_dataset(tmp_path / "fashion", products=4)

    result = invoke(["dataset", "vqa", "--source", str(source), "--out", str(tmp_path / "o"),
                     "--article-types", "all"])  # fmt: skip

    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "train" / "rows.jsonl").is_file()


@pytest.mark.parametrize("name", ["../x", "a/b", ""])
def test_dataset_names_are_one_folder(tmp_path: Path, name: str) -> None:
    result = invoke(["--json", "dataset", "vqa", "--source", str(tmp_path), "--out",
                     str(tmp_path / "o"), "--upload", name])  # fmt: skip

    assert result.exit_code == ExitCode.USAGE
    assert "--upload" in json_document(result)["error"]["message"]


# --- dataset titan -------------------------------------------------------------------------------


def test_dataset_titan_uploads_images_and_a_manifest_naming_them(
    stage: str, tmp_path: Path
) -> None:
    del stage
    images = tmp_path / "pets"
    make_titan_dataset(images)
    out = tmp_path / "titan-out"

    result = invoke(["--json", "dataset", "titan", "--images", str(images), "--out", str(out),
                     "--upload", "pets"])  # fmt: skip

    assert result.exit_code == 0, result.output
    document = json_document(result)["result"]
    assert document["manifest"] == "titan/pets/manifest.jsonl"
    assert document["next"] == (
        "atelier customize titan --manifest titan/pets/manifest.jsonl --wait"
    )
    lines = [
        json.loads(line)
        for line in body("atelier-dev-datasets", "titan/pets/manifest.jsonl").splitlines()
    ]
    assert len(lines) == 5
    stored = set(keys("atelier-dev-datasets"))
    for line in lines:
        key = line["image-ref"].removeprefix("s3://atelier-dev-datasets/")
        assert key in stored
    head = boto3.client("s3", region_name=REGION).head_object(
        Bucket="atelier-dev-datasets", Key="titan/pets/manifest.jsonl"
    )
    assert head["ServerSideEncryption"] == "aws:kms"


def test_dataset_titan_refuses_too_few_images(stage: str, tmp_path: Path) -> None:
    del stage
    images = tmp_path / "pets"
    make_titan_dataset(images, {"a.jpg": "Ron the dog on a bed"})

    result = invoke(["--json", "dataset", "titan", "--images", str(images), "--out",
                     str(tmp_path / "o"), "--upload", "pets"])  # fmt: skip

    assert result.exit_code == ExitCode.USAGE
    assert json_document(result)["error"]["details"]["valid"] is False
    assert keys("atelier-dev-datasets") == []


# --- dataset dreambooth --------------------------------------------------------------------------


def test_dataset_dreambooth_uploads_the_jumpstart_layout(stage: str, tmp_path: Path) -> None:
    del stage
    images = make_dreambooth_dataset(tmp_path / "dog", count=4)
    out = tmp_path / "db-out"

    result = invoke(["--json", "dataset", "dreambooth", "--images", str(images), "--out",
                     str(out), "--upload", "dog"])  # fmt: skip

    assert result.exit_code == 0, result.output
    document = json_document(result)["result"]
    assert document["uri"] == "s3://atelier-dev-datasets/dreambooth/dog/"
    stored = keys("atelier-dev-datasets")
    assert "dreambooth/dog/dataset_info.json" in stored
    assert len([key for key in stored if key.endswith((".jpg", ".png"))]) == 4
    assert document["next"].startswith("atelier train dreambooth --dataset dreambooth/dog/")


def test_dataset_dreambooth_prune_needs_upload(tmp_path: Path) -> None:
    result = invoke(["dataset", "dreambooth", "--images", str(tmp_path), "--out",
                     str(tmp_path / "o"), "--prune"])  # fmt: skip

    assert result.exit_code == ExitCode.USAGE
