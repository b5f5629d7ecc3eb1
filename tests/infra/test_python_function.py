"""The shared Lambda construct: logging, tracing, least privilege, and Docker-free bundling."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_lambda as lambda_

from infra.config import StageConfig, load_stage_config
from infra.constructs import python_function
from infra.constructs.local_bundling import BundlingError, LocalPipBundling, pip_install_command
from infra.constructs.python_function import PythonFunction, powertools_layer_arn
from infra.nag import attach_nag
from tests.support import cdk_json_context

pytestmark = pytest.mark.infra


@pytest.fixture(scope="module")
def config() -> StageConfig:
    return load_stage_config(cdk_json_context(), "dev")


def _synth_function(
    outdir: Path, config: StageConfig, **kwargs: Any
) -> tuple[dict[str, Any], Path]:
    app = App(outdir=str(outdir))
    stack = Stack(app, "FunctionTest")
    PythonFunction(
        stack,
        "Describe",
        config=config,
        handler="descriptions.handlers.api.handler",
        description="describes products",
        service_name="descriptions",
        environment={"TABLE_NAME": "products"},
        **kwargs,
    )
    attach_nag(app)  # raises on any unacknowledged finding
    assembly = app.synth()
    return assembly.get_stack_by_name("FunctionTest").template, outdir


def _one(template: dict[str, Any], resource_type: str) -> dict[str, Any]:
    (resource,) = [r for r in template["Resources"].values() if r["Type"] == resource_type]
    return resource


@pytest.fixture(scope="module")
def function_template(
    tmp_path_factory: pytest.TempPathFactory, config: StageConfig
) -> dict[str, Any]:
    template, _ = _synth_function(tmp_path_factory.mktemp("function"), config)
    return template


def test_function_uses_configured_runtime_layer_and_json_logs(
    function_template: dict[str, Any], config: StageConfig
) -> None:
    properties = _one(function_template, "AWS::Lambda::Function")["Properties"]
    assert properties["Runtime"] == config.lambdas.runtime
    assert properties["Architectures"] == [config.lambdas.architecture]
    assert properties["TracingConfig"] == {"Mode": "Active"}
    assert properties["LoggingConfig"]["LogFormat"] == "JSON"
    assert properties["LoggingConfig"]["ApplicationLogLevel"] == config.lambdas.log_level
    layer = json.dumps(properties["Layers"])
    assert (
        f":017000801446:layer:AWSLambdaPowertoolsPythonV3-python314-x86_64:"
        f"{config.lambdas.powertools_layer_version}" in layer
    )
    assert properties["Environment"]["Variables"] == {
        "POWERTOOLS_SERVICE_NAME": "descriptions",
        "POWERTOOLS_METRICS_NAMESPACE": "Atelier",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "ATELIER_STAGE": "dev",
        "TABLE_NAME": "products",
    }


def test_function_logs_to_its_own_group_with_stage_retention(
    function_template: dict[str, Any],
) -> None:
    log_groups = {
        logical_id: r
        for logical_id, r in function_template["Resources"].items()
        if r["Type"] == "AWS::Logs::LogGroup"
    }
    ((log_group_id, log_group),) = log_groups.items()
    assert log_group["Properties"]["RetentionInDays"] == 30
    properties = _one(function_template, "AWS::Lambda::Function")["Properties"]
    assert properties["LoggingConfig"]["LogGroup"] == {"Ref": log_group_id}


def test_role_may_write_its_logs_and_traces_and_nothing_else(
    function_template: dict[str, Any],
) -> None:
    role = _one(function_template, "AWS::IAM::Role")["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
        }
    ]
    assert "ManagedPolicyArns" not in role
    statements = [
        statement
        for resource in function_template["Resources"].values()
        if resource["Type"] == "AWS::IAM::Policy"
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]
    ]
    by_actions = {json.dumps(s["Action"]): s["Resource"] for s in statements}
    log_group_id = next(
        logical_id
        for logical_id, r in function_template["Resources"].items()
        if r["Type"] == "AWS::Logs::LogGroup"
    )
    assert by_actions == {
        '["logs:CreateLogStream", "logs:PutLogEvents"]': {"Fn::GetAtt": [log_group_id, "Arn"]},
        # X-Ray has no resource-level permissions; acknowledged in the construct.
        '["xray:PutTraceSegments", "xray:PutTelemetryRecords"]': "*",
    }


def test_arm64_selects_the_arm_layer_and_architecture(tmp_path: Path, config: StageConfig) -> None:
    arm = replace(config, lambdas=replace(config.lambdas, architecture="arm64"))
    template, _ = _synth_function(tmp_path, arm)
    properties = _one(template, "AWS::Lambda::Function")["Properties"]
    assert properties["Architectures"] == ["arm64"]
    assert "AWSLambdaPowertoolsPythonV3-python314-arm64:" in json.dumps(properties["Layers"])


def test_layer_arn_format() -> None:
    assert powertools_layer_arn(
        region="eu-west-1", runtime="python3.13", architecture="arm64", version=36
    ) == (
        "arn:aws:lambda:eu-west-1:017000801446:layer:AWSLambdaPowertoolsPythonV3-python313-arm64:36"
    )


# ---------------------------------------------------------------------------------------------
# Docker-free bundling, run for real with pip against a local wheel (no network).
# ---------------------------------------------------------------------------------------------


def _write_wheel(directory: Path, name: str, version: str, module_source: str) -> Path:
    """A minimal, valid pure-Python wheel, built by hand so the test needs no build backend."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": module_source,
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: atelier-tests\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record_lines = []
    for path, content in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(content.encode()).digest()).rstrip(b"=")
        record_lines.append(f"{path},sha256={digest.decode()},{len(content.encode())}")
    record_lines.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = "\n".join(record_lines) + "\n"
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, content in files.items():
            archive.writestr(path, content)
    return wheel


@pytest.fixture
def lambdas_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A stand-in `lambdas/` folder with one handler and a requirements file, plus a wheelhouse."""
    source = tmp_path / "lambdas"
    (source / "greeter" / "__pycache__").mkdir(parents=True)
    (source / "greeter" / "__init__.py").write_text("")
    (source / "greeter" / "handler.py").write_text(
        "import tinydep\n\ndef handler(event, context):\n    return tinydep.GREETING\n"
    )
    (source / "greeter" / "__pycache__" / "handler.cpython-311.pyc").write_bytes(b"stale")
    (source / "requirements").mkdir()
    (source / "requirements" / "greeter.txt").write_text("tinydep==1.0\n")
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    _write_wheel(wheelhouse, "tinydep", "1.0", "GREETING = 'hello'\n")
    monkeypatch.setattr(python_function, "LAMBDAS_DIR", source)
    monkeypatch.setattr(python_function, "REQUIREMENTS_DIR", source / "requirements")
    return source, wheelhouse


def _asset_dir(outdir: Path, template: dict[str, Any]) -> Path:
    code = _one(template, "AWS::Lambda::Function")["Properties"]["Code"]
    asset_hash = code["S3Key"].removesuffix(".zip")
    return outdir / f"asset.{asset_hash}"


def test_requirements_are_bundled_with_the_source_without_docker(
    tmp_path: Path, config: StageConfig, lambdas_tree: tuple[Path, Path]
) -> None:
    # Given a function that needs a package beyond the Powertools layer
    _, wheelhouse = lambdas_tree
    outdir = tmp_path / "cdk.out"
    # When the stack synthesizes (local pip, offline against the wheelhouse)
    template, _ = _synth_function(
        outdir,
        config,
        requirements="greeter",
        extra_pip_args=["--no-index", "--find-links", str(wheelhouse)],
    )
    # Then the asset holds the package, the handler source, and no caches
    asset = _asset_dir(outdir, template)
    assert (asset / "tinydep" / "__init__.py").read_text() == "GREETING = 'hello'\n"
    assert (asset / "tinydep-1.0.dist-info" / "METADATA").is_file()
    assert (asset / "greeter" / "handler.py").is_file()
    assert not list(asset.rglob("__pycache__"))


def test_each_distinct_bundle_gets_its_own_asset(
    tmp_path: Path, config: StageConfig, lambdas_tree: tuple[Path, Path]
) -> None:
    # The local bundler is not part of CDK's asset hash by itself: a second requirements file or
    # another architecture must still produce another asset, never reuse the first one.
    source, wheelhouse = lambdas_tree
    (source / "requirements" / "other.txt").write_text("tinydep==1.0\n")
    offline = ["--no-index", "--find-links", str(wheelhouse)]
    arm = replace(config, lambdas=replace(config.lambdas, architecture="arm64"))

    def asset_key(outdir: Path, stage_config: StageConfig, requirements: str) -> str:
        template, _ = _synth_function(
            outdir, stage_config, requirements=requirements, extra_pip_args=offline
        )
        key: str = _one(template, "AWS::Lambda::Function")["Properties"]["Code"]["S3Key"]
        return key

    keys = {
        asset_key(tmp_path / "a", config, "greeter"),
        asset_key(tmp_path / "b", config, "other"),
        asset_key(tmp_path / "c", arm, "greeter"),
    }
    assert len(keys) == 3
    # And the same inputs give the same asset (deploys do not churn).
    assert asset_key(tmp_path / "d", config, "greeter") in keys


def test_a_dependency_pip_cannot_resolve_fails_synth_with_pips_reason(
    tmp_path: Path, config: StageConfig, lambdas_tree: tuple[Path, Path]
) -> None:
    source, wheelhouse = lambdas_tree
    (source / "requirements" / "greeter.txt").write_text("tinydep==2.0\n")
    with pytest.raises(
        RuntimeError,
        match=r"(?s)pip could not bundle greeter\.txt .*No matching distribution found for "
        r"tinydep==2\.0",
    ):
        _synth_function(
            tmp_path / "cdk.out",
            config,
            requirements="greeter",
            extra_pip_args=["--no-index", "--find-links", str(wheelhouse)],
        )


def test_missing_requirements_file_is_named(config: StageConfig, tmp_path: Path) -> None:
    with pytest.raises(BundlingError, match=r"requirements file not found: .*nothing\.txt"):
        LocalPipBundling(
            source_dir=tmp_path,
            requirements_file=tmp_path / "nothing.txt",
            python_version="3.14",
            architecture="x86_64",
        )


@pytest.mark.parametrize(
    ("architecture", "platform"),
    [("x86_64", "manylinux2014_x86_64"), ("arm64", "manylinux2014_aarch64")],
)
def test_pip_targets_the_lambda_platform(architecture: str, platform: str) -> None:
    command = pip_install_command(
        requirements_file=Path("r.txt"),
        output_dir=Path("out"),
        python_version="3.14",
        architecture=architecture,
    )
    assert command[command.index("--platform") + 1] == platform
    assert command[command.index("--python-version") + 1] == "3.14"
    assert "--only-binary=:all:" in command


def test_unknown_architecture_is_refused() -> None:
    with pytest.raises(BundlingError, match="unknown Lambda architecture 'sparc'"):
        pip_install_command(
            requirements_file=Path("r.txt"),
            output_dir=Path("out"),
            python_version="3.14",
            architecture="sparc",
        )


def test_runtime_table_covers_every_allowed_runtime() -> None:
    from infra.config import LAMBDA_PYTHON_RUNTIMES

    for runtime in LAMBDA_PYTHON_RUNTIMES:
        assert isinstance(python_function._RUNTIMES[runtime], lambda_.Runtime)
