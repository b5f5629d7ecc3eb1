"""The DreamBooth training workflows in the Training stack, asserted on the templates: job
fields, metric definitions, spot, instance choice, least-privilege roles, published names."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from dreambooth.metrics import (
    DREAMBOOTH_METRICS as LOGGED_METRICS,
)
from dreambooth.metrics import (
    EPOCH_LOSS,
    INSTANCE_LOSS,
    LEARNING_RATE,
    PRIOR_LOSS,
    STEP_LOSS,
)
from infra.config import DREAMBOOTH_HYPERPARAMETER_NAMES, StageConfig, load_stage_config
from infra.constructs.training_workflow import MAX_JOB_NAME_PREFIX_LENGTH, job_name_prefix
from infra.stacks.training import PUBLISHED_NAMES
from infra.training_specs.dreambooth import DREAMBOOTH_BOOLEAN_HYPERPARAMETERS, DREAMBOOTH_METRICS
from metric_lines import metric_line
from tests.support import VARIANT_OVERRIDES, SynthesizedApp, cdk_json_context
from tests.templates import (
    exports,
    listed,
    one,
    render,
    resources,
    role_statements,
    ssm_parameters,
    state_machine_definition,
    statements_granting,
)

pytestmark = pytest.mark.infra

STAGES = ("dev", "prod")
# (id prefix of the workflow's resources, state machine suffix, models prefix, SSM parameter).
WORKFLOWS = {
    "Dreambooth": ("dreambooth", "dreambooth", "dreambooth/model-data-url"),
    "Inpainting": ("inpainting", "inpainting", "styling/model-data-url"),
}


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


def _definition(app: SynthesizedApp, workflow: str) -> dict[str, Any]:
    return state_machine_definition(app.template("-training"), f"{workflow}Training")


def _arguments(app: SynthesizedApp, workflow: str) -> dict[str, Any]:
    """The Train state's arguments, imports followed to the Data stack's logical ids."""
    exported = exports(app)
    text = json.dumps(_definition(app, workflow)["States"]["Train"]["Arguments"])
    text = re.sub(r"\$\{import:([^}]+)\}", lambda m: render(exported[m[1]], exported), text)
    arguments: dict[str, Any] = json.loads(text)
    return arguments


def _resources_of(statement: dict[str, Any], app: SynthesizedApp) -> set[str]:
    return {render(resource, exports(app)) for resource in listed(statement["Resource"])}


# ---------------------------------------------------------------------------------------------
# The workflows
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("workflow", list(WORKFLOWS))
def test_each_workflow_validates_trains_and_records(
    synthesized_apps: dict[str, SynthesizedApp], stage: str, workflow: str
) -> None:
    _, name, _, parameter = (workflow, *WORKFLOWS[workflow])
    template = synthesized_apps[stage].template("-training")
    _, properties = one(template, "AWS::StepFunctions::StateMachine", f"{workflow}Training")
    definition = _definition(synthesized_apps[stage], workflow)

    assert properties["StateMachineName"] == f"atelier-{stage}-{name}-training"
    assert definition["QueryLanguage"] == "JSONata"
    states = definition["States"]
    assert [rule["Next"] for rule in states["Validate input"]["Choices"]] == [
        "InvalidInput",
        "InvalidDataset",
        "InvalidHyperparameters",
        "InvalidBaseModel",
        "InvalidStartFrom",
    ]
    assert states["Validate input"]["Default"] == "Prepare training job"
    assert states["Prepare training job"]["Next"] == "Start from an earlier run?"
    # Styling reads its staged CLIPSeg after the base model, whichever way that came.
    after_base = "Read staged CLIPSeg" if workflow == "Inpainting" else "Train"
    assert states["Read staged base model"]["Next"] == after_base
    assert states["Earlier job completed?"]["Choices"][0]["Next"] == after_base
    assert states["Train"]["Next"] == "Record model artifact"
    assert states["Train"]["Catch"] == [{"ErrorEquals": ["States.ALL"], "Next": "TrainingFailed"}]
    record = states["Record model artifact"]
    assert record["Arguments"]["Name"] == f"/atelier/{stage}/{parameter}"
    assert record["Arguments"]["Value"] == "{% $modelDataUrl %}"
    assert record["End"] is True
    # Every user-settable name is allowed and listed in the cause; the booleans' spelling too.
    check = states["Validate input"]["Choices"][2]["Condition"]
    for hyperparameter in DREAMBOOTH_HYPERPARAMETER_NAMES:
        assert f'"{hyperparameter}"' in check
        assert hyperparameter in states["InvalidHyperparameters"]["Cause"]
    assert "'boolean'" in check
    assert set(DREAMBOOTH_BOOLEAN_HYPERPARAMETERS) == {
        "with_prior_preservation",
        "center_crop",
        "train_text_encoder",
        "gradient_checkpointing",
        "use_8bit_adam",
    }


@pytest.mark.parametrize("workflow", list(WORKFLOWS))
def test_the_job_reads_one_dreambooth_channel_and_writes_its_own_prefix(
    dev_app: SynthesizedApp, workflow: str
) -> None:
    _, models_prefix, _ = WORKFLOWS[workflow]
    arguments = _arguments(dev_app, workflow)
    datasets, models = _bucket(dev_app, "Datasets"), _bucket(dev_app, "Models")
    channels = {channel["ChannelName"]: channel for channel in arguments["InputDataConfig"]}
    companions = {"clipseg"} if workflow == "Inpainting" else set()
    assert set(channels) == {"training", "model", "code", *companions}
    for companion in companions:
        assert channels[companion]["DataSource"]["S3DataSource"]["S3Uri"] == (
            f"{{% ${companion}Uri %}}"
        )
    assert arguments["EnableNetworkIsolation"] is True
    channel = channels["training"]
    assert channel["DataSource"]["S3DataSource"] == {
        "S3DataType": "S3Prefix",
        "S3Uri": f"{{% 's3://{datasets}/' & $dataset & '' %}}",
        "S3DataDistributionType": "FullyReplicated",
    }
    assert arguments["OutputDataConfig"] == {
        "S3OutputPath": f"s3://{models}/{models_prefix}/training/",
        "KmsKeyId": _key(dev_app),
    }
    assert (
        arguments["RoleArn"]
        == "${"
        + one(dev_app.template("-training"), "AWS::IAM::Role", f"{workflow}ExecutionRole")[0]
        + ".Arn}"
    )
    assert arguments["StoppingCondition"] == {"MaxRuntimeInSeconds": 8 * 3600}
    assert "EnableManagedSpotTraining" not in arguments
    assert "CheckpointConfig" not in arguments
    assert {"Key": "atelier:stage", "Value": "dev"} in arguments["Tags"]


def test_only_the_dataset_prefix_under_dreambooth_is_accepted(dev_app: SynthesizedApp) -> None:
    for workflow in WORKFLOWS:
        states = _definition(dev_app, workflow)["States"]
        dataset_check = states["Validate input"]["Choices"][1]["Condition"]
        assert r"/^dreambooth\/([A-Za-z0-9][A-Za-z0-9._-]*\/)+$/" in dataset_check


@pytest.mark.parametrize("workflow", list(WORKFLOWS))
def test_hyperparameters_are_the_sections_defaults_with_what_the_workflow_fixes(
    dev_app: SynthesizedApp, workflow: str
) -> None:
    config = _config("dev")
    training = config.styling.training if workflow == "Inpainting" else config.dreambooth.training
    expression = _definition(dev_app, workflow)["States"]["Prepare training job"]["Assign"][
        "hyperparameters"
    ]
    assert json.dumps(training.hyperparameters.as_strings()) in expression
    assert '"sagemaker_program": "dreambooth/train.py"' in expression
    states = _definition(dev_app, workflow)["States"]
    record_name = states["Read staged base model"]["Arguments"]["Name"]
    assert json.dumps(training.base_model) in record_name
    assert json.dumps(training.base_model_revision) in record_name
    if workflow == "Inpainting":
        assert '"mode": "inpainting"}' in expression
        # CLIPSeg is staged like the base model, its record at the configured commit.
        clipseg = states["Read staged CLIPSeg"]
        assert clipseg["Arguments"]["Name"] == (
            "/atelier/dev/base-models/CIDAS/clipseg-rd64-refined/"
            "999e0328d9e10b484360c477313983f9afdd7050"
        )
        assert "'clipseg_model_manifest_sha256'" in clipseg["Assign"]["baseHyperparameters"]
        assert clipseg["Catch"][0]["Next"] == "CLIPSegNotStaged"
    else:
        assert '"mode": "text-to-image"}' in expression
        assert "Read staged CLIPSeg" not in states


@pytest.mark.parametrize("workflow", list(WORKFLOWS))
def test_the_instance_follows_prior_preservation(
    variant_app: SynthesizedApp, workflow: str
) -> None:
    resource_config = _arguments(variant_app, workflow)["ResourceConfig"]
    # One JSONata choice over the merged hyperparameters, each side a complete ResourceConfig.
    assert resource_config.startswith(
        "{% ($lowercase($hyperparameters.with_prior_preservation) in ['true', '1']) ? "
    )
    model = "styling" if workflow == "Inpainting" else "dreambooth"
    configured = VARIANT_OVERRIDES[model]["training"]["instance_type"]
    alternative, default = resource_config.removesuffix(" %}").split(" ? ", 1)[1].split(" : ")
    assert json.loads(alternative)["InstanceType"] == "ml.g5.2xlarge"
    assert json.loads(default)["InstanceType"] == configured
    # ml.g5 and ml.g4dn keep data on NVMe and refuse a volume key; ml.p3 gets the data key.
    assert "VolumeKmsKeyId" not in json.loads(alternative)
    assert ("VolumeKmsKeyId" in json.loads(default)) is (configured == "ml.p3.2xlarge")


def test_spot_training_checkpoints_under_the_workflows_prefix(variant_app: SynthesizedApp) -> None:
    arguments = _arguments(variant_app, "Dreambooth")
    models = _bucket(variant_app, "Models")
    training = VARIANT_OVERRIDES["dreambooth"]["training"]
    assert arguments["EnableManagedSpotTraining"] is True
    assert arguments["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 8 * 3600,
        "MaxWaitTimeInSeconds": training["max_wait_hours"] * 3600,
    }
    assert arguments["CheckpointConfig"] == {
        "S3Uri": f"{{% 's3://{models}/dreambooth/checkpoints/' & $jobName & '/' %}}",
        "LocalPath": "/opt/ml/checkpoints",
    }
    definition = _definition(variant_app, "Dreambooth")
    assert definition["TimeoutSeconds"] == (training["max_wait_hours"] + 2) * 3600
    # The inpainting workflow stays on demand.
    assert "EnableManagedSpotTraining" not in _arguments(variant_app, "Inpainting")


def test_job_names_fit_sagemakers_limit_with_the_longest_prefix_and_stage() -> None:
    context = cdk_json_context()
    context["atelier"]["defaults"]["name_prefix"] = "a" * 20
    context["atelier"]["stages"]["longeststage"] = {}
    config = load_stage_config(context, "longeststage")
    for name, short in (("dreambooth", "db"), ("inpainting", "dbi"), ("vqa", "vqa")):
        prefix = job_name_prefix(config, name, short_name=short)
        assert len(prefix) <= MAX_JOB_NAME_PREFIX_LENGTH
        longest = f"{prefix}-20260101-000000-0123abcd"
        assert len(longest) <= 63
        assert re.fullmatch(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$", longest)
    assert job_name_prefix(config, "dreambooth", short_name="db") == f"{'a' * 20}-longeststage-db"
    # The readable name wherever it fits (the shipped stages).
    assert job_name_prefix(_config("prod"), "dreambooth", short_name="db") == (
        "atelier-prod-dreambooth"
    )


# ---------------------------------------------------------------------------------------------
# Metric definitions: the regexes read the lines dreambooth/train.py prints
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("workflow", list(WORKFLOWS))
def test_metric_definitions_read_every_logged_metric(
    dev_app: SynthesizedApp, workflow: str
) -> None:
    definitions = _arguments(dev_app, workflow)["AlgorithmSpecification"]["MetricDefinitions"]
    regexes = {d["Name"]: re.compile(d["Regex"]) for d in definitions}
    assert tuple(regexes) == DREAMBOOTH_METRICS == LOGGED_METRICS
    step = metric_line(
        epoch=1,
        step=12,
        **{STEP_LOSS: 0.11, INSTANCE_LOSS: 0.08, PRIOR_LOSS: 0.03, LEARNING_RATE: 2e-06},
    )
    epoch = metric_line(epoch=1, **{EPOCH_LOSS: 0.12})

    def values(name: str) -> list[str]:
        return [m[1] for line in (step, epoch) if (m := regexes[name].search(line))]

    assert values(STEP_LOSS) == ["0.11"]
    assert values(INSTANCE_LOSS) == ["0.08"]
    assert values(PRIOR_LOSS) == ["0.03"]
    # ` step_loss=` is not the end of ` epoch_loss=`, nor the other way round.
    assert values(EPOCH_LOSS) == ["0.12"]
    assert float(values(LEARNING_RATE)[0]) == pytest.approx(2e-6)
    # A run without prior preservation logs no prior_loss: nothing is read for it.
    assert regexes[PRIOR_LOSS].search(metric_line(epoch=1, step=1, **{STEP_LOSS: 0.2})) is None


# ---------------------------------------------------------------------------------------------
# Least privilege: one execution role per workflow
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("workflow", list(WORKFLOWS))
def test_the_execution_role_reads_dreambooth_datasets_and_writes_only_its_models(
    dev_app: SynthesizedApp, workflow: str
) -> None:
    _, models_prefix, _ = WORKFLOWS[workflow]
    template = dev_app.template("-training")
    role = f"{workflow}ExecutionRole"
    datasets, models = _bucket(dev_app, "Datasets"), _bucket(dev_app, "Models")
    reads = statements_granting(template, role, "s3:GetObject")
    read_resources = set().union(*(_resources_of(s, dev_app) for s in reads))
    code = {r for r in read_resources if "cdk-hnb659fds-assets" in r}
    assert len(code) == 1
    # Its datasets and checkpoints, staged base models, and its own archives (to start from).
    assert read_resources - code == {
        f"{datasets}.Arn/dreambooth/*",
        f"{models}.Arn/{models_prefix}/checkpoints/*",
        f"{models}.Arn/base-models/*",
        f"{models}.Arn/{models_prefix}/training/*",
    }
    (writes,) = statements_granting(template, role, "s3:PutObject")
    assert _resources_of(writes, dev_app) == {
        f"{models}.Arn/{models_prefix}/training/*",
        f"{models}.Arn/{models_prefix}/checkpoints/*",
    }
    listings = sorted(
        (render(s["Resource"], exports(dev_app)), s["Condition"]["StringLike"]["s3:prefix"])
        for s in statements_granting(template, role, "s3:ListBucket")
        if "cdk-hnb659fds-assets" not in render(s["Resource"], exports(dev_app))
    )
    assert listings == sorted(
        [
            (f"{datasets}.Arn", ["dreambooth/*"]),
            (f"{models}.Arn", ["base-models/*"]),
            (f"{models}.Arn", [f"{models_prefix}/checkpoints/*"]),
            (f"{models}.Arn", [f"{models_prefix}/training/*"]),
        ]
    )
    actions = {
        action
        for statements in role_statements(template, role).values()
        for statement in statements
        for action in listed(statement["Action"])
    }
    assert not {a for a in actions if a.startswith("s3:") and "*" in a}
    assert "s3:DeleteObject" not in actions
    (pull,) = statements_granting(template, role, "ecr:BatchGetImage")
    assert _resources_of(pull, dev_app) == {
        "arn:${AWS::Partition}:ecr:${AWS::Region}:"
        "${HuggingFaceTrainingRegistries[${AWS::Region}].account}:"
        "repository/huggingface-pytorch-training"
    }
    (use,) = statements_granting(template, role, "kms:Decrypt")
    assert _resources_of(use, dev_app) == {_key(dev_app)}
    assert "kms:ViaService" in use["Condition"]["StringEquals"]


def test_neither_dreambooth_role_can_touch_the_others_archives(dev_app: SynthesizedApp) -> None:
    template = dev_app.template("-training")
    models = _bucket(dev_app, "Models")
    for workflow, other in (("Dreambooth", "inpainting"), ("Inpainting", "dreambooth")):
        granted = {
            resource
            for statements in role_statements(template, f"{workflow}ExecutionRole").values()
            for statement in statements
            for resource in _resources_of(statement, dev_app)
        }
        assert not [r for r in granted if r.startswith(f"{models}.Arn/{other}/")]
        assert not [r for r in granted if "/vqa/" in r]
    # And the VQA role none of theirs.
    vqa = {
        resource
        for statements in role_statements(template, "VqaExecutionRole").values()
        for statement in statements
        for resource in _resources_of(statement, dev_app)
    }
    assert not [r for r in vqa if "dreambooth" in r or "inpainting" in r]


@pytest.mark.parametrize("workflow", list(WORKFLOWS))
def test_the_workflow_role_passes_only_its_execution_role(
    dev_app: SynthesizedApp, workflow: str
) -> None:
    name, _, parameter = WORKFLOWS[workflow]
    template = dev_app.template("-training")
    execution_role_id, _ = one(template, "AWS::IAM::Role", f"{workflow}ExecutionRole")
    (pass_role,) = statements_granting(template, f"{workflow}WorkflowRole", "iam:PassRole")
    assert pass_role["Resource"] == {"Fn::GetAtt": [execution_role_id, "Arn"]}
    assert pass_role["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }
    (jobs,) = statements_granting(
        template, f"{workflow}WorkflowRole", "sagemaker:CreateTrainingJob"
    )
    assert _resources_of(jobs, dev_app) == {
        "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:"
        f"training-job/atelier-dev-{name}-*"
    }
    (ssm,) = statements_granting(template, f"{workflow}WorkflowRole", "ssm:PutParameter")
    assert _resources_of(ssm, dev_app) == {
        "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:"
        f"parameter/atelier/dev/{parameter}"
    }
    # The task policy, logging and tracing: nothing CDK added on its own.
    assert len(role_statements(template, f"{workflow}WorkflowRole")) == 3


# ---------------------------------------------------------------------------------------------
# Published names
# ---------------------------------------------------------------------------------------------


def test_the_dreambooth_workflows_are_published(dev_app: SynthesizedApp) -> None:
    template = dev_app.template("-training")
    parameters = ssm_parameters(template)
    for name in PUBLISHED_NAMES:
        assert f"/atelier/dev/training/{name}" in parameters
    assert parameters["/atelier/dev/training/dreambooth-model-data-url-parameter"]["Value"] == (
        "/atelier/dev/dreambooth/model-data-url"
    )
    assert parameters["/atelier/dev/training/inpainting-model-data-url-parameter"]["Value"] == (
        "/atelier/dev/styling/model-data-url"
    )
    machine_id, _ = one(template, "AWS::StepFunctions::StateMachine", "DreamboothTraining")
    assert parameters["/atelier/dev/training/dreambooth-state-machine-arn"]["Value"] == {
        "Ref": machine_id
    }
    # The parameters the workflows write are not stack resources: a redeploy never reverts them.
    assert "/atelier/dev/dreambooth/model-data-url" not in parameters
    assert "/atelier/dev/styling/model-data-url" not in parameters
