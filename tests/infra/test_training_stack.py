"""The Training stack: the VQA workflow, its roles and its code, asserted on the templates."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from infra.config import VQA_HYPERPARAMETER_NAMES, ConfigError, StageConfig, load_stage_config
from infra.constructs.source_archive import write_archive
from infra.stacks.training import PUBLISHED_NAMES, TRAINING_DIR
from infra.training_specs.metrics import MAX_METRIC_DEFINITIONS
from infra.training_specs.vqa import VQA_METRICS, metric_definitions
from tests.support import VARIANT_OVERRIDES, SynthesizedApp, cdk_json_context
from tests.templates import (
    assembly_artifacts,
    exports,
    listed,
    one,
    published_output_id,
    render,
    resources,
    role_statements,
    ssm_parameters,
    stack_dependencies,
    state_machine_definition,
    statements_granting,
)
from vqa.metrics import (
    BATCH_LOSS,
    TRAIN_LOSS,
    VALIDATION_EXACT_MATCH,
    VALIDATION_LOSS,
    attribute_metric_name,
    metric_line,
)

pytestmark = pytest.mark.infra

STAGES = ("dev", "prod")
# The VQA workflow's state machine (the stack also holds the DreamBooth ones).
VQA_MACHINE = "VqaTraining"
TRAINING_IMAGE = (
    "${HuggingFaceTrainingRegistries[${AWS::Region}].account}.dkr.ecr.${AWS::Region}."
    "${AWS::URLSuffix}/huggingface-pytorch-training:"
    "2.8.0-transformers4.56.2-gpu-py312-cu129-ubuntu22.04"
)


def _config(stage: str) -> StageConfig:
    return load_stage_config(cdk_json_context(), stage)


def _bucket(app: SynthesizedApp, name: str) -> str:
    (logical_id,) = [
        logical_id
        for logical_id in resources(app.template("-data"), "AWS::S3::Bucket")
        if logical_id.startswith(name)
    ]
    return logical_id


def _key(app: SynthesizedApp) -> str:
    (logical_id,) = resources(app.template("-data"), "AWS::KMS::Key")
    return f"{logical_id}.Arn"


def _follow_imports(text: str, app: SynthesizedApp) -> str:
    """`${import:<export>}` markers in a rendered definition → what the export holds."""
    exported = exports(app)
    return re.sub(r"\$\{import:([^}]+)\}", lambda m: render(exported[m[1]], exported), text)


def _train_arguments(app: SynthesizedApp) -> dict[str, Any]:
    definition = state_machine_definition(app.template("-training"), VQA_MACHINE)
    arguments: dict[str, Any] = json.loads(
        _follow_imports(json.dumps(definition["States"]["Train"]["Arguments"]), app)
    )
    return arguments


def _resources_of(statement: dict[str, Any], app: SynthesizedApp) -> set[str]:
    return {render(resource, exports(app)) for resource in listed(statement["Resource"])}


# ---------------------------------------------------------------------------------------------
# The workflow
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_the_workflow_validates_trains_and_records(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    template = synthesized_apps[stage].template("-training")
    _, properties = one(template, "AWS::StepFunctions::StateMachine", VQA_MACHINE)
    definition = state_machine_definition(template, VQA_MACHINE)

    assert properties["StateMachineName"] == f"atelier-{stage}-vqa-training"
    assert definition["QueryLanguage"] == "JSONata"
    assert definition["StartAt"] == "Validate input"
    states = definition["States"]
    assert set(states) == {
        "Validate input",
        "InvalidInput",
        "InvalidDataset",
        "InvalidHyperparameters",
        "InvalidBaseModel",
        "InvalidStartFrom",
        "Prepare training job",
        "Start from an earlier run?",
        "Read staged base model",
        "BaseModelNotStaged",
        "BaseModelLookupFailed",
        "Describe earlier job",
        "StartFromNotFound",
        "Earlier job completed?",
        "StartFromNotCompleted",
        "Train",
        "TrainingFailed",
        "Record model artifact",
        "RecordFailed",
    }
    choice = states["Validate input"]
    invalid = [
        "InvalidInput",
        "InvalidDataset",
        "InvalidHyperparameters",
        "InvalidBaseModel",
        "InvalidStartFrom",
    ]
    assert [rule["Next"] for rule in choice["Choices"]] == invalid
    assert choice["Default"] == "Prepare training job"
    for name in invalid:
        assert states[name]["Type"] == "Fail"
        assert states[name]["Error"] == name
    # The base model comes from its staged record, or from an earlier run: both lead to Train.
    assert states["Prepare training job"]["Next"] == "Start from an earlier run?"
    assert states["Read staged base model"]["Next"] == "Train"
    assert states["Earlier job completed?"]["Choices"][0]["Next"] == "Train"
    assert states["Read staged base model"]["Catch"][0] == {
        "ErrorEquals": ["Ssm.ParameterNotFoundException"],
        "Next": "BaseModelNotStaged",
    }
    # Every hyperparameter name is allowed by the check and listed in the error.
    for name in VQA_HYPERPARAMETER_NAMES:
        assert f'"{name}"' in choice["Choices"][2]["Condition"]
        assert name in states["InvalidHyperparameters"]["Cause"]

    train = states["Train"]
    assert train["Resource"] == "arn:${AWS::Partition}:states:::sagemaker:createTrainingJob.sync"
    assert train["Next"] == "Record model artifact"
    assert train["Catch"] == [{"ErrorEquals": ["States.ALL"], "Next": "TrainingFailed"}]
    # The failure names the job and SageMaker's own FailureReason when there is one.
    assert "FailureReason" in states["TrainingFailed"]["Cause"]
    assert "$jobName" in states["TrainingFailed"]["Cause"]
    assert train["Assign"] == {
        "modelDataUrl": "{% $states.result.ModelArtifacts.S3ModelArtifacts %}"
    }


@pytest.mark.parametrize("stage", STAGES)
def test_the_model_archive_is_recorded_in_ssm(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    states = state_machine_definition(synthesized_apps[stage].template("-training"), VQA_MACHINE)[
        "States"
    ]
    record = states["Record model artifact"]
    parameter = f"/atelier/{stage}/vqa/model-data-url"
    assert record["Resource"] == "arn:${AWS::Partition}:states:::aws-sdk:ssm:putParameter"
    assert record["Arguments"]["Name"] == parameter
    assert record["Arguments"]["Value"] == "{% $modelDataUrl %}"
    assert record["Arguments"]["Overwrite"] is True
    assert record["Arguments"]["Type"] == "String"
    assert record["Output"] == {
        "trainingJobName": "{% $jobName %}",
        "modelDataUrl": "{% $modelDataUrl %}",
        "modelDataUrlParameter": parameter,
    }
    assert record["End"] is True
    assert record["Catch"] == [{"ErrorEquals": ["States.ALL"], "Next": "RecordFailed"}]


def test_the_job_name_is_unique_per_run_and_valid(dev_app: SynthesizedApp) -> None:
    states = state_machine_definition(dev_app.template("-training"), VQA_MACHINE)["States"]
    name = states["Prepare training job"]["Assign"]["jobName"]
    assert "$uuid()" in name
    assert "$now(" in name
    # The longest name the config allows still fits SageMaker's 63 characters:
    # prefix (20) + stage (12) + "-vqa" + "-yyyymmdd-hhmmss" + "-" + 8 hex.
    longest = f"{'a' * 20}-{'b' * 12}-vqa" + "-20260101-000000" + "-0123abcd"
    assert len(longest) <= 63
    assert re.fullmatch(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$", longest)
    assert states["Train"]["Arguments"]["TrainingJobName"] == "{% $jobName %}"


def test_hyperparameters_are_the_config_defaults_with_overrides(dev_app: SynthesizedApp) -> None:
    config = _config("dev")
    states = state_machine_definition(dev_app.template("-training"), VQA_MACHINE)["States"]
    expression = states["Prepare training job"]["Assign"]["hyperparameters"]
    defaults = config.vqa.training.hyperparameters.as_strings()
    assert json.dumps(defaults) in expression
    assert defaults["learning_rate"] == "0.0001"
    assert '"sagemaker_program": "vqa/train.py"' in expression
    assert "$states.input.hyperparameters" in expression
    # The base model's hyperparameters come from its staged record, read after this state.
    assert "base_model" not in expression
    record = states["Read staged base model"]
    assert json.dumps(config.vqa.training.base_model) in record["Arguments"]["Name"]
    assert "base_model_manifest_sha256" in record["Assign"]["baseHyperparameters"]
    assert (
        states["Train"]["Arguments"]["HyperParameters"]
        == "{% $merge([$hyperparameters, $baseHyperparameters]) %}"
    )


def _code_archive(app: SynthesizedApp) -> Path:
    """The code asset the job's `code` channel reads, whose file sagemaker_submit_directory
    names inside the job."""
    template = app.template("-training")
    states = state_machine_definition(template, VQA_MACHINE)["States"]
    channels = {
        channel["ChannelName"]: channel["DataSource"]["S3DataSource"]["S3Uri"]
        for channel in states["Train"]["Arguments"]["InputDataConfig"]
    }
    (key,) = re.findall(
        r"^s3://cdk-hnb659fds-assets-\$\{AWS::AccountId\}-\$\{AWS::Region\}/(\w+\.gz)$",
        channels["code"],
    )
    expression = states["Prepare training job"]["Assign"]["hyperparameters"]
    assert f'"sagemaker_submit_directory": "/opt/ml/input/data/code/{key}"' in expression
    manifest = json.loads((app.assembly_dir / "atelier-dev-training.assets.json").read_text())
    (asset,) = [
        entry
        for entry in manifest["files"].values()
        if entry["destinations"][next(iter(entry["destinations"]))]["objectKey"] == key
    ]
    return app.assembly_dir / asset["source"]["path"]


def test_the_code_is_the_training_folder_as_a_tar_gz(dev_app: SynthesizedApp) -> None:
    archive = _code_archive(dev_app)
    # The asset is a gzipped tar of the training folder's contents, vqa/ at its root
    with tarfile.open(archive, mode="r:gz") as tar:  # the toolkit's own call
        names = tar.getnames()
    assert "vqa/train.py" in names
    assert "vqa/metrics.py" in names
    assert "requirements.txt" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.split("/")[0] in ("training", "tests")]


def _offline_install(folder: Path) -> subprocess.CompletedProcess[str]:
    """What the training toolkit runs at job start (`pip install -r requirements.txt` in the
    code folder), without this machine's pip settings (its extra index and wheel folders), as a
    dry run: it resolves only if the archive carries every pinned package."""
    return subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps",
            "--ignore-installed", "--disable-pip-version-check", "--requirement",
            str(folder / "requirements.txt"),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=folder,
        env={**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1"},
    )  # fmt: skip


def test_the_job_installs_its_packages_from_the_archive_only(
    dev_app: SynthesizedApp, tmp_path: Path
) -> None:
    # Given the code archive, extracted as the toolkit does
    with tarfile.open(_code_archive(dev_app), mode="r:gz") as tar:
        tar.extractall(tmp_path, filter="data")
    requirements = (tmp_path / "requirements.txt").read_text().splitlines()
    # Then its requirements install from the wheels beside them and never from an index
    assert "--no-index" in requirements
    assert "--find-links wheels" in requirements
    pins = [line for line in requirements if line and not line.startswith(("#", "--"))]
    wheels = sorted(path.name for path in (tmp_path / "wheels").iterdir())
    assert [w.split("-")[0] for w in wheels] == sorted(p.split("==")[0] for p in pins)
    result = _offline_install(tmp_path)
    assert result.returncode == 0, result.stderr
    for pin in pins:
        name, version = pin.split("==")
        assert f"{name}-{version}" in result.stdout
    # And without one of the wheels the install fails at once, naming the package
    (tmp_path / "wheels" / wheels[0]).unlink()
    failed = _offline_install(tmp_path)
    assert failed.returncode != 0
    assert wheels[0].split("-")[0] in failed.stderr


def test_the_code_archive_is_reproducible(tmp_path: Path) -> None:
    first, second = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    write_archive(TRAINING_DIR, first)
    write_archive(TRAINING_DIR, second)
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(first.read_bytes()), mode="r:gz") as tar:
        members = tar.getmembers()
    assert {(m.uid, m.gid, m.mtime) for m in members} == {(0, 0, 0)}


def test_training_requirements_lift_what_the_dlc_lacks() -> None:
    lines = [
        line.strip()
        for line in (TRAINING_DIR / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines == [
        "transformers==4.57.6",
        "peft==0.17.1",
        "diffusers==0.35.2",
        "accelerate==1.11.0",
    ]


@pytest.mark.parametrize("stage", STAGES)
def test_the_job_reads_its_channels_and_writes_encrypted_output(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    app, config = synthesized_apps[stage], _config(stage)
    arguments = _train_arguments(app)
    datasets, models = _bucket(app, "Datasets"), _bucket(app, "Models")
    assert arguments["AlgorithmSpecification"]["TrainingImage"] == TRAINING_IMAGE
    assert arguments["AlgorithmSpecification"]["TrainingInputMode"] == "File"
    assert (
        arguments["RoleArn"]
        == "${" + one(app.template("-training"), "AWS::IAM::Role", "VqaExecutionRole")[0] + ".Arn}"
    )
    channels = {channel["ChannelName"]: channel for channel in arguments["InputDataConfig"]}
    assert set(channels) == {"train", "validation", "model", "code"}
    for channel in channels.values():
        source = channel["DataSource"]["S3DataSource"]
        assert source["S3DataType"] == "S3Prefix"
        assert source["S3DataDistributionType"] == "FullyReplicated"
        assert channel["InputMode"] == "File"
    for name in ("train", "validation"):
        source = channels[name]["DataSource"]["S3DataSource"]
        assert source["S3Uri"] == f"{{% 's3://{datasets}/' & $dataset & '{name}/' %}}"
    # The base model from the bucket, set by the state that read its record; no internet.
    assert channels["model"]["DataSource"]["S3DataSource"]["S3Uri"] == "{% $modelUri %}"
    assert arguments["EnableNetworkIsolation"] is True
    assert arguments["Environment"] == {"HF_HUB_OFFLINE": "1"}
    assert arguments["OutputDataConfig"] == {
        "S3OutputPath": f"s3://{models}/vqa/training/",
        "KmsKeyId": _key(app),
    }
    training = config.vqa.training
    # ml.g5 keeps its data on NVMe instance storage, which rejects a volume key.
    assert arguments["ResourceConfig"] == {
        "InstanceType": training.instance_type,
        "InstanceCount": training.instance_count,
        "VolumeSizeInGB": training.volume_size_gb,
    }
    assert arguments["StoppingCondition"] == {
        "MaxRuntimeInSeconds": training.max_runtime_hours * 3600
    }
    for absent in (
        "EnableManagedSpotTraining",
        "CheckpointConfig",
        "EnableInterContainerTrafficEncryption",
    ):
        assert absent not in arguments
    assert {"Key": "atelier:stage", "Value": stage} in arguments["Tags"]
    assert {"Key": "project", "Value": "atelier"} in arguments["Tags"]


def test_spot_training_checkpoints_per_job_and_encrypts_what_it_may(
    variant_app: SynthesizedApp,
) -> None:
    arguments = _train_arguments(variant_app)
    models = _bucket(variant_app, "Models")
    training = VARIANT_OVERRIDES["vqa"]["training"]
    assert arguments["EnableManagedSpotTraining"] is True
    assert arguments["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 24 * 3600,
        "MaxWaitTimeInSeconds": training["max_wait_hours"] * 3600,
    }
    assert arguments["CheckpointConfig"] == {
        "S3Uri": f"{{% 's3://{models}/vqa/checkpoints/' & $jobName & '/' %}}",
        "LocalPath": "/opt/ml/checkpoints",
    }
    # EBS-backed instances get the data key on their volume; one instance, no inter-container
    # traffic to encrypt.
    assert arguments["ResourceConfig"]["InstanceType"] == "ml.p3.2xlarge"
    assert arguments["ResourceConfig"]["InstanceCount"] == 1
    assert arguments["ResourceConfig"]["VolumeKmsKeyId"] == _key(variant_app)
    assert "EnableInterContainerTrafficEncryption" not in arguments
    definition = state_machine_definition(variant_app.template("-training"), VQA_MACHINE)
    # The workflow outlives the job's wait (capacity + run) with room to start and upload.
    assert definition["TimeoutSeconds"] == (training["max_wait_hours"] + 2) * 3600


@pytest.mark.parametrize("stage", STAGES)
def test_the_workflow_logs_everything_and_traces(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    template = synthesized_apps[stage].template("-training")
    _, properties = one(template, "AWS::StepFunctions::StateMachine", VQA_MACHINE)
    log_group_id, log_group = one(template, "AWS::Logs::LogGroup", f"{VQA_MACHINE}Logs")
    assert properties["LoggingConfiguration"] == {
        "Destinations": [
            {"CloudWatchLogsLogGroup": {"LogGroupArn": {"Fn::GetAtt": [log_group_id, "Arn"]}}}
        ],
        "IncludeExecutionData": True,
        "Level": "ALL",
    }
    assert properties["TracingConfiguration"] == {"Enabled": True}
    assert log_group["RetentionInDays"] == _config(stage).log_retention_days
    # Step Functions checks log delivery when it creates the machine: policies come first.
    (machine,) = [
        machine
        for logical_id, machine in resources(template, "AWS::StepFunctions::StateMachine").items()
        if logical_id.startswith(VQA_MACHINE)
    ]
    policies = set(resources(template, "AWS::IAM::Policy"))
    workflow_policies = {p for p in policies if p.startswith("VqaWorkflow")}
    assert workflow_policies <= set(machine["DependsOn"])


# ---------------------------------------------------------------------------------------------
# Metric definitions: the regexes the job uses read the lines train.py prints
# ---------------------------------------------------------------------------------------------


def _metric_regexes(app: SynthesizedApp) -> dict[str, re.Pattern[str]]:
    definitions = _train_arguments(app)["AlgorithmSpecification"]["MetricDefinitions"]
    return {d["Name"]: re.compile(d["Regex"]) for d in definitions}


def test_metric_definitions_cover_every_logged_metric(dev_app: SynthesizedApp) -> None:
    attributes = list(_config("dev").descriptions.questions)
    regexes = _metric_regexes(dev_app)
    assert set(VQA_METRICS) == {BATCH_LOSS, TRAIN_LOSS, VALIDATION_LOSS, VALIDATION_EXACT_MATCH}
    assert list(regexes) == [
        *VQA_METRICS,
        *(attribute_metric_name(attribute) for attribute in attributes),
    ]


def test_metric_regexes_read_the_training_log_lines(dev_app: SynthesizedApp) -> None:
    regexes = _metric_regexes(dev_app)
    attributes = list(_config("dev").descriptions.questions)
    epoch = metric_line(
        epoch=1, **{TRAIN_LOSS: 0.25, VALIDATION_LOSS: 0.31, VALIDATION_EXACT_MATCH: 0.5}
    )
    batch = metric_line(epoch=1, step=40, **{BATCH_LOSS: 0.2})
    per_attribute = {
        attribute: metric_line(epoch=1, **{attribute_metric_name(attribute): 0.75})
        for attribute in attributes
    }
    log = [epoch, batch, *per_attribute.values()]

    def values(name: str) -> list[str]:
        return [m[1] for line in log if (m := regexes[name].search(line))]

    assert values(TRAIN_LOSS) == ["0.25"]
    assert values(VALIDATION_LOSS) == ["0.31"]
    # ` validation_exact_match=` is not the start of ` validation_exact_match_fabric=`.
    assert values(VALIDATION_EXACT_MATCH) == ["0.5"]
    assert values(BATCH_LOSS) == ["0.2"]
    for attribute in attributes:
        assert values(attribute_metric_name(attribute)) == ["0.75"], attribute
    # A NaN loss is reported as such, not skipped.
    nan_line = metric_line(epoch=2, **{TRAIN_LOSS: float("nan")})
    match = regexes[TRAIN_LOSS].search(nan_line)
    assert match is not None
    assert match[1] == "nan"


def test_an_attribute_named_like_the_start_of_another_reads_only_its_own_value() -> None:
    definitions = metric_definitions(["fit", "fit_type"])
    regexes = {d["Name"]: re.compile(d["Regex"]) for d in definitions}
    line = metric_line(epoch=1, **{attribute_metric_name("fit_type"): 0.9})
    assert regexes[attribute_metric_name("fit")].search(line) is None
    match = regexes[attribute_metric_name("fit_type")].search(line)
    assert match is not None
    assert match[1] == "0.9"


def test_more_metrics_than_a_training_job_takes_is_a_config_error() -> None:
    allowed = MAX_METRIC_DEFINITIONS - len(VQA_METRICS)
    assert len(metric_definitions([f"a{i}" for i in range(allowed)])) == MAX_METRIC_DEFINITIONS
    with pytest.raises(ConfigError, match="at most 40 metric definitions") as caught:
        metric_definitions([f"a{i}" for i in range(allowed + 1)])
    assert "\n" not in str(caught.value)


# ---------------------------------------------------------------------------------------------
# Least privilege
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_only_acknowledged_policies_grant_on_every_resource(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    template = synthesized_apps[stage].template("-training")
    wildcard_actions = {}
    for logical_id, policy in resources(template, "AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if "*" in listed(statement["Resource"]):
                wildcard_actions[logical_id.rstrip("0123456789ABCDEF")] = listed(
                    statement["Action"]
                )
    # The same four per workflow: VQA, DreamBooth text-to-image and inpainting, SDXL LoRA.
    assert wildcard_actions == {
        f"{workflow}{policy}": actions
        for workflow in ("Vqa", "Dreambooth", "Inpainting", "Lora")
        for policy, actions in {
            "EcrAuthPolicy": ["ecr:GetAuthorizationToken"],
            "MetricsPolicy": ["cloudwatch:PutMetricData"],
            "WorkflowLoggingPolicy": [
                "logs:CreateLogDelivery",
                "logs:DeleteLogDelivery",
                "logs:DescribeLogGroups",
                "logs:DescribeResourcePolicies",
                "logs:GetLogDelivery",
                "logs:ListLogDeliveries",
                "logs:PutResourcePolicy",
                "logs:UpdateLogDelivery",
            ],
            "WorkflowTracingPolicy": [
                "xray:GetSamplingRules",
                "xray:GetSamplingTargets",
                "xray:PutTelemetryRecords",
                "xray:PutTraceSegments",
            ],
        }.items()
    }
    for role in (
        "VqaExecutionRole",
        "DreamboothExecutionRole",
        "InpaintingExecutionRole",
        "LoraExecutionRole",
    ):
        (metrics,) = statements_granting(template, role, "cloudwatch:PutMetricData")
        assert metrics["Condition"] == {
            "StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}
        }


def test_the_execution_role_reads_datasets_and_writes_models_under_vqa(
    dev_app: SynthesizedApp,
) -> None:
    template = dev_app.template("-training")
    datasets, models = _bucket(dev_app, "Datasets"), _bucket(dev_app, "Models")
    reads = statements_granting(template, "VqaExecutionRole", "s3:GetObject")
    read_resources = set().union(*(_resources_of(s, dev_app) for s in reads))
    code_key = re.compile(
        r"arn:\$\{AWS::Partition\}:s3:::cdk-hnb659fds-assets-\$\{AWS::AccountId\}-"
        r"\$\{AWS::Region\}/\w+\.gz"
    )
    # Its datasets, its checkpoints, staged base models and (to start from one) its own archives.
    assert {r for r in read_resources if not code_key.fullmatch(r)} == {
        f"{datasets}.Arn/vqa/*",
        f"{models}.Arn/vqa/checkpoints/*",
        f"{models}.Arn/base-models/*",
        f"{models}.Arn/vqa/training/*",
    }
    assert len([r for r in read_resources if code_key.fullmatch(r)]) == 1
    (writes,) = statements_granting(template, "VqaExecutionRole", "s3:PutObject")
    assert sorted(listed(writes["Action"])) == ["s3:AbortMultipartUpload", "s3:PutObject"]
    assert _resources_of(writes, dev_app) == {
        f"{models}.Arn/vqa/training/*",
        f"{models}.Arn/vqa/checkpoints/*",
    }
    listings = sorted(
        (render(s["Resource"], exports(dev_app)), s["Condition"]["StringLike"]["s3:prefix"])
        for s in statements_granting(template, "VqaExecutionRole", "s3:ListBucket")
    )
    (code_listing,) = [listing for listing in listings if "cdk-hnb659fds-assets" in listing[0]]
    # The code channel lists exactly the code object's key.
    assert re.fullmatch(r"\w+\.gz\*", code_listing[1][0])
    assert [listing for listing in listings if listing != code_listing] == sorted(
        [
            (f"{datasets}.Arn", ["vqa/*"]),
            (f"{models}.Arn", ["base-models/*"]),
            (f"{models}.Arn", ["vqa/checkpoints/*"]),
            (f"{models}.Arn", ["vqa/training/*"]),
        ]
    )
    actions = {
        action
        for statements in role_statements(template, "VqaExecutionRole").values()
        for statement in statements
        for action in listed(statement["Action"])
    }
    assert not {a for a in actions if a.startswith("s3:") and "*" in a}
    assert "s3:DeleteObject" not in actions


def test_the_execution_role_uses_the_key_only_through_s3_and_sagemaker(
    dev_app: SynthesizedApp,
) -> None:
    template = dev_app.template("-training")
    (use,) = statements_granting(template, "VqaExecutionRole", "kms:Decrypt")
    assert _resources_of(use, dev_app) == {_key(dev_app)}
    assert [render(s) for s in use["Condition"]["StringEquals"]["kms:ViaService"]] == [
        "s3.${AWS::Region}.amazonaws.com",
        "sagemaker.${AWS::Region}.amazonaws.com",
    ]
    (grant,) = statements_granting(template, "VqaExecutionRole", "kms:CreateGrant")
    assert grant["Action"] == "kms:CreateGrant"
    assert grant["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}


def test_the_execution_role_pulls_only_the_training_image_and_writes_its_logs(
    dev_app: SynthesizedApp,
) -> None:
    template = dev_app.template("-training")
    (pull,) = statements_granting(template, "VqaExecutionRole", "ecr:BatchGetImage")
    assert _resources_of(pull, dev_app) == {
        "arn:${AWS::Partition}:ecr:${AWS::Region}:"
        "${HuggingFaceTrainingRegistries[${AWS::Region}].account}:"
        "repository/huggingface-pytorch-training"
    }
    (streams,) = statements_granting(template, "VqaExecutionRole", "logs:PutLogEvents")
    assert _resources_of(streams, dev_app) == {
        "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:"
        "log-group:/aws/sagemaker/TrainingJobs:*"
    }
    _, role = one(template, "AWS::IAM::Role", "VqaExecutionRole")
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
        }
    ]
    assert "ManagedPolicyArns" not in role


def test_the_workflow_role_passes_only_the_execution_role_to_sagemaker(
    dev_app: SynthesizedApp,
) -> None:
    template = dev_app.template("-training")
    execution_role_id, _ = one(template, "AWS::IAM::Role", "VqaExecutionRole")
    (pass_role,) = statements_granting(template, "VqaWorkflowRole", "iam:PassRole")
    assert pass_role["Resource"] == {"Fn::GetAtt": [execution_role_id, "Arn"]}
    assert pass_role["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }
    (jobs,) = statements_granting(template, "VqaWorkflowRole", "sagemaker:CreateTrainingJob")
    assert sorted(listed(jobs["Action"])) == [
        "sagemaker:AddTags",
        "sagemaker:CreateTrainingJob",
        "sagemaker:DescribeTrainingJob",
        "sagemaker:ListTags",
        "sagemaker:StopTrainingJob",
    ]
    assert _resources_of(jobs, dev_app) == {
        "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:"
        "training-job/atelier-dev-vqa-*"
    }
    (events,) = statements_granting(template, "VqaWorkflowRole", "events:PutRule")
    assert _resources_of(events, dev_app) == {
        "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:"
        "rule/StepFunctionsGetEventsForSageMakerTrainingJobsRule"
    }
    (ssm,) = statements_granting(template, "VqaWorkflowRole", "ssm:PutParameter")
    assert _resources_of(ssm, dev_app) == {
        "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:"
        "parameter/atelier/dev/vqa/model-data-url"
    }
    # It reads the staged base models' records, and nothing else of SSM.
    (records,) = statements_granting(template, "VqaWorkflowRole", "ssm:GetParameter")
    assert _resources_of(records, dev_app) == {
        "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:"
        "parameter/atelier/dev/base-models/*"
    }
    # Nothing else: CDK added no statements of its own to the workflow role.
    actions = sorted(
        action
        for logical_id, statements in role_statements(template, "VqaWorkflowRole").items()
        if logical_id.startswith("VqaWorkflowPolicy")
        for statement in statements
        for action in listed(statement["Action"])
    )
    assert actions == sorted(
        [
            "sagemaker:AddTags",
            "sagemaker:CreateTrainingJob",
            "sagemaker:DescribeTrainingJob",
            "sagemaker:ListTags",
            "sagemaker:StopTrainingJob",
            "iam:PassRole",
            "events:DescribeRule",
            "events:PutRule",
            "events:PutTargets",
            "ssm:PutParameter",
            "ssm:GetParameter",
        ]
    )
    assert len(role_statements(template, "VqaWorkflowRole")) == 3


# ---------------------------------------------------------------------------------------------
# Published names, stack relations
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PUBLISHED_NAMES)
def test_names_are_published(dev_app: SynthesizedApp, name: str) -> None:
    template = dev_app.template("-training")
    parameters = ssm_parameters(template)
    assert f"/atelier/dev/training/{name}" in parameters
    assert published_output_id(name) in template["Outputs"]
    assert parameters["/atelier/dev/training/vqa-model-data-url-parameter"]["Value"] == (
        "/atelier/dev/vqa/model-data-url"
    )


@pytest.mark.parametrize("stage", STAGES)
def test_the_training_stack_depends_on_data_only(
    synthesized_apps: dict[str, SynthesizedApp], stage: str
) -> None:
    app = synthesized_apps[stage]
    assert stack_dependencies(app, f"atelier-{stage}-training") == [f"atelier-{stage}-data"]
    training = assembly_artifacts(app)[f"atelier-{stage}-training"]
    assert training["properties"]["terminationProtection"] is (stage == "prod")
    # The SSM parameter the workflow writes is not a stack resource: redeploying or destroying
    # the stack never reverts or deletes a recorded model.
    names = [
        p["Properties"]["Name"]
        for p in resources(app.template("-training"), "AWS::SSM::Parameter").values()
    ]
    assert f"/atelier/{stage}/vqa/model-data-url" not in names
