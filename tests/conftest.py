"""Test harness: hermetic AWS settings, and one synthesis of the whole app per session.

pytest-socket (configured in pyproject.toml) refuses every network socket; these variables make
sure no test could reach or sign for a real account even if it tried.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

_HERMETIC_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
}
for _name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "CDK_DEFAULT_ACCOUNT", "CDK_DEFAULT_REGION"):
    os.environ.pop(_name, None)
os.environ.update(_HERMETIC_ENV)


def cdk_json_context() -> dict[str, Any]:
    """The context block of the real cdk.json, exactly as `cdk synth` would pass it."""
    context: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]
    return context


@dataclass(frozen=True)
class SynthesizedApp:
    stage: str
    assembly_dir: Path
    templates: dict[str, dict[str, Any]]

    def template(self, suffix: str) -> dict[str, Any]:
        matches = [name for name in self.templates if name.endswith(suffix)]
        assert len(matches) == 1, f"expected one stack ending in {suffix!r}, got {matches}"
        return self.templates[matches[0]]


def synthesize(stage: str, outdir: Path) -> SynthesizedApp:
    from aws_cdk import App

    from app import build_app

    app = App(context={**cdk_json_context(), "stage": stage}, outdir=str(outdir))
    assembly = build_app(app).synth()
    templates = {stack.stack_name: stack.template for stack in assembly.stacks}
    return SynthesizedApp(stage=stage, assembly_dir=outdir, templates=templates)


@pytest.fixture(scope="session")
def synthesized_apps(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, SynthesizedApp]]:
    """Every configured stage synthesized once, with cdk-nag attached (it raises on a finding)."""
    stages = cdk_json_context()["atelier"]["stages"]
    return {
        stage: synthesize(stage, tmp_path_factory.mktemp(f"cdk-out-{stage}")) for stage in stages
    }


@pytest.fixture(scope="session")
def dev_app(synthesized_apps: dict[str, SynthesizedApp]) -> SynthesizedApp:
    return synthesized_apps["dev"]


@pytest.fixture(scope="session")
def prod_app(synthesized_apps: dict[str, SynthesizedApp]) -> SynthesizedApp:
    return synthesized_apps["prod"]
