"""`atelier endpoint list|use|remove`: the archive each endpoint serves lives in cdk.json."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from atelier_cli.errors import ExitCode
from tests.cli_support import REGION, invoke, json_document, publish

pytestmark = pytest.mark.integration

REPOSITORY_CDK_JSON = Path(__file__).resolve().parents[2] / "cdk.json"
ARCHIVE = "s3://atelier-dev-models/vqa/training/job-1/output/model.tar.gz"


@pytest.fixture
def cdk_json(tmp_path: Path) -> Path:
    path = tmp_path / "cdk.json"
    shutil.copy(REPOSITORY_CDK_JSON, path)
    return path


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def trained_archive(aws: None) -> None:
    """A models bucket holding a trained VQA archive, recorded by the training workflow."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="atelier-dev-models")
    s3.put_object(
        Bucket="atelier-dev-models", Key="vqa/training/job-1/output/model.tar.gz", Body=b"x"
    )
    publish("vqa", "model-data-url", ARCHIVE)


def setting(path: Path, stage: str, model: str) -> object:
    stages = json.loads(path.read_text())["context"]["atelier"]["stages"]
    return stages[stage][model]["hosting"]["model_data_url"]


def test_cdk_json_is_kept_in_the_form_the_cli_writes() -> None:
    """`endpoint use` rewrites cdk.json with json.dumps(indent=2): in any other form its edit
    would reformat the whole file."""
    text = REPOSITORY_CDK_JSON.read_text(encoding="utf-8")
    assert json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n" == text


@pytest.mark.usefixtures("trained_archive")
def test_use_writes_the_recorded_archive_for_the_stage_only(cdk_json: Path) -> None:
    before = json.loads(cdk_json.read_text())

    result = invoke(["--json", "endpoint", "use", "vqa", "--cdk-json", str(cdk_json)])

    assert result.exit_code == 0
    document = json_document(result)
    assert document["result"] == {
        "model": "vqa",
        "cdkJson": str(cdk_json),
        "setting": "stages.dev.vqa.hosting.model_data_url",
        "archive": ARCHIVE,
        "previousArchive": None,
        "next": "make deploy STAGE=dev",
    }
    after = json.loads(cdk_json.read_text())
    assert setting(cdk_json, "dev", "vqa") == ARCHIVE
    # Nothing else changed
    after["context"]["atelier"]["stages"]["dev"].pop("vqa")
    assert after == before


@pytest.mark.usefixtures("trained_archive")
def test_the_written_cdk_json_configures_the_endpoint(cdk_json: Path) -> None:
    """The edit is one the app's config loader reads as hosting that archive."""
    from infra.config import load_stage_config

    invoke(["endpoint", "use", "vqa", "--cdk-json", str(cdk_json)])

    context = json.loads(cdk_json.read_text())["context"]
    config = load_stage_config({"atelier": context["atelier"]}, "dev")
    assert config.vqa.hosting.model_data_url == ARCHIVE


@mock_aws
def test_use_with_an_archive_that_does_not_exist_changes_nothing(cdk_json: Path) -> None:
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="atelier-dev-models")
    before = cdk_json.read_text()

    result = invoke(
        ["--json", "endpoint", "use", "styling", "--archive", ARCHIVE, "--cdk-json", str(cdk_json)]
    )

    assert result.exit_code == ExitCode.NOT_DEPLOYED
    assert json_document(result)["error"]["code"] == "archive_missing"
    assert cdk_json.read_text() == before


@mock_aws
def test_use_without_a_recorded_archive_says_how_to_train_one(cdk_json: Path) -> None:
    result = invoke(["endpoint", "use", "styling", "--cdk-json", str(cdk_json)])

    assert result.exit_code == ExitCode.NOT_DEPLOYED
    assert "/atelier/dev/styling/model-data-url" in result.stderr
    assert "atelier train styling" in result.stderr


@pytest.mark.parametrize("archive", ["vqa/model.tar.gz", "s3://bucket/model.zip", "s3://bucket/"])
def test_use_refuses_what_is_not_an_s3_archive(cdk_json: Path, archive: str) -> None:
    result = invoke(["endpoint", "use", "vqa", "--archive", archive, "--cdk-json", str(cdk_json)])

    assert result.exit_code == ExitCode.USAGE
    assert "--archive" in result.stderr or "names no object" in result.stderr


def test_an_unknown_stage_lists_the_known_ones(cdk_json: Path) -> None:
    result = invoke(["--stage", "qa", "endpoint", "remove", "vqa", "--cdk-json", str(cdk_json)])

    assert result.exit_code == ExitCode.USAGE
    assert "stage 'qa' is not in" in result.stderr
    assert "dev, prod" in result.stderr


def test_a_file_that_is_not_an_atelier_cdk_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cdk.json"
    path.write_text('{"app": "python app.py"}')

    result = invoke(["--json", "endpoint", "remove", "vqa", "--cdk-json", str(path)])

    assert result.exit_code == ExitCode.USAGE
    assert json_document(result)["error"]["code"] == "cdk_json_unreadable"


def test_an_unknown_model_is_a_usage_error(cdk_json: Path) -> None:
    result = invoke(["endpoint", "use", "titan", "--cdk-json", str(cdk_json)])

    assert result.exit_code == ExitCode.USAGE


@pytest.mark.usefixtures("trained_archive")
def test_remove_sets_null_and_reports_what_it_replaced(cdk_json: Path) -> None:
    invoke(["endpoint", "use", "vqa", "--cdk-json", str(cdk_json)])

    result = invoke(["--json", "endpoint", "remove", "vqa", "--cdk-json", str(cdk_json)])

    assert result.exit_code == 0
    assert json_document(result)["result"]["previousArchive"] == ARCHIVE
    assert setting(cdk_json, "dev", "vqa") is None
    leftovers = [p.name for p in cdk_json.parent.iterdir() if p.name != "cdk.json"]
    assert leftovers == []


@pytest.mark.usefixtures("trained_archive")
def test_list_shows_configured_recorded_and_live_state(cdk_json: Path) -> None:
    # Given the three endpoint names published, and only the VQA endpoint live
    for model in ("vqa", "dreambooth", "styling"):
        publish("hosting", f"{model}-endpoint-name", f"atelier-dev-{model}")
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    sagemaker.create_model(
        ModelName="m",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
        PrimaryContainer={"Image": "img", "ModelDataUrl": ARCHIVE},
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="c",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "m",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName="atelier-dev-vqa", EndpointConfigName="c")

    result = invoke(["--json", "endpoint", "list", "--cdk-json", str(cdk_json)])

    assert result.exit_code == 0
    endpoints = {e["model"]: e for e in json_document(result)["result"]["endpoints"]}
    assert endpoints["vqa"]["status"] == "InService"
    assert endpoints["vqa"]["recordedArchive"] == ARCHIVE
    assert endpoints["vqa"]["configuredArchive"] is None
    assert endpoints["styling"]["status"] is None
    assert endpoints["styling"]["instances"] == 0

    text = invoke(["endpoint", "list", "--cdk-json", str(cdk_json)]).stdout
    assert "newer trained" in text
    assert "not deployed" in text


def test_the_rewrite_keeps_the_files_permissions(cdk_json: Path) -> None:
    cdk_json.chmod(0o644)

    invoke(["endpoint", "remove", "vqa", "--cdk-json", str(cdk_json)])

    assert cdk_json.stat().st_mode & 0o777 == 0o644


def test_a_setting_that_is_not_an_object_is_named_not_a_traceback(cdk_json: Path) -> None:
    document = json.loads(cdk_json.read_text())
    document["context"]["atelier"]["stages"]["dev"]["vqa"] = None
    cdk_json.write_text(json.dumps(document, indent=2) + "\n")

    result = invoke(["--json", "endpoint", "remove", "vqa", "--cdk-json", str(cdk_json)])

    assert result.exit_code == ExitCode.USAGE
    error = json_document(result)["error"]
    assert (
        "stages.dev.vqa.hosting holds" in error["message"] or "stages.dev.vqa" in error["message"]
    )


def test_an_unwritable_cdk_json_is_a_clear_error_and_stays_as_it_was(
    cdk_json: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = cdk_json.read_text()

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("atelier_cli.commands.endpoint.os.fsync", full_disk)

    result = invoke(["--json", "endpoint", "remove", "vqa", "--cdk-json", str(cdk_json)])

    assert result.exit_code == ExitCode.USAGE
    error = json_document(result)["error"]
    assert error["code"] == "cdk_json_unwritable"
    assert "No space left on device" in error["message"]
    assert cdk_json.read_text() == before
    assert [p.name for p in cdk_json.parent.iterdir()] == ["cdk.json"]
