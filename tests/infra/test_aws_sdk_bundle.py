"""The functions that call Converse carry their own, pinned botocore.

Lambda's Python runtime ships a boto3 of its own, usually months older than this project's pin.
Converse's `outputConfig` (json_schema structured output) is recent: a botocore that predates it
rejects the request in parameter validation, at run time, on the first description. So the
Converse callers bundle `lambdas/requirements/aws-sdk.txt`, and these tests read the synthesized
assets to prove the deployed code has a botocore that knows the field.
"""

from __future__ import annotations

import gzip
import json
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT, SynthesizedApp
from tests.templates import one

pytestmark = pytest.mark.infra

SDK_REQUIREMENTS = ROOT / "lambdas" / "requirements" / "aws-sdk.txt"
LOCK = ROOT / "requirements" / "lock.txt"
_PIN = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+)$")
CONVERSE_CALLERS = {"-api": ("ApiFunction", "UploadsFunction"), "-catalog": ("OnlineFunction",)}


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        found = _PIN.match(line.strip())
        if found:
            pins[found[1].lower()] = found[2]
    return pins


def _requirement_names(distribution: str) -> set[str]:
    names = set()
    for requirement in metadata.requires(distribution) or []:
        if "extra ==" in requirement:
            continue
        names.add(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower())
    return names


def test_the_bundle_pins_the_locked_sdk_and_its_whole_closure() -> None:
    bundle = _pins(SDK_REQUIREMENTS)
    lock = _pins(LOCK)
    # Same versions as the lock (so what the tests validate against is what ships)
    assert {name: lock.get(name) for name in bundle} == bundle
    # and, since pip installs it with --no-deps, every dependency of boto3 down the tree
    closure: set[str] = set()
    pending = ["boto3"]
    while pending:
        name = pending.pop()
        if name not in closure:
            closure.add(name)
            pending += sorted(_requirement_names(name))
    assert set(bundle) == closure


def _asset(app: SynthesizedApp, suffix: str, construct: str) -> Path:
    _, function = one(app.template(suffix), "AWS::Lambda::Function", construct)
    key: str = function["Code"]["S3Key"]
    return app.assembly_dir / f"asset.{key.removesuffix('.zip')}"


def _converse_input(asset: Path) -> dict[str, Any]:
    model_dir = asset / "botocore" / "data" / "bedrock-runtime"
    (version,) = sorted(model_dir.iterdir())[-1:]
    with gzip.open(version / "service-2.json.gz") as file:
        model: dict[str, Any] = json.load(file)
    shapes = model["shapes"]
    return {"shapes": shapes, "request": shapes[model["operations"]["Converse"]["input"]["shape"]]}


def test_every_converse_caller_ships_a_botocore_that_knows_output_config(
    dev_app: SynthesizedApp,
) -> None:
    pinned = _pins(SDK_REQUIREMENTS)["botocore"]
    for suffix, constructs in CONVERSE_CALLERS.items():
        for construct in constructs:
            asset = _asset(dev_app, suffix, construct)
            # The pinned botocore, at the asset root (before the runtime's on sys.path)
            assert (asset / f"botocore-{pinned}.dist-info").is_dir(), construct
            assert (asset / "boto3" / "__init__.py").is_file(), construct
            # whose Converse knows outputConfig.textFormat with a JSON schema
            converse = _converse_input(asset)
            shapes, request = converse["shapes"], converse["request"]
            assert "outputConfig" in request["members"], construct
            config = shapes[request["members"]["outputConfig"]["shape"]]
            text_format = shapes[config["members"]["textFormat"]["shape"]]
            kind = shapes[text_format["members"]["type"]["shape"]]
            assert "json_schema" in kind["enum"], construct
            # next to the function code itself
            assert (asset / "descriptions" / "logic" / "prompt.py").is_file(), construct


def test_the_lifecycle_check_ships_a_botocore_that_knows_the_lifecycle_dates(
    dev_app: SynthesizedApp,
) -> None:
    asset = _asset(dev_app, "-bedrock", "ModelLifecycleCheckFunction")
    pinned = _pins(SDK_REQUIREMENTS)["botocore"]
    assert (asset / f"botocore-{pinned}.dist-info").is_dir()
    model_dir = asset / "botocore" / "data" / "bedrock"
    (version,) = sorted(model_dir.iterdir())[-1:]
    with gzip.open(version / "service-2.json.gz") as file:
        shapes = json.load(file)["shapes"]
    lifecycle = shapes["FoundationModelLifecycle"]["members"]
    assert {"legacyTime", "publicExtendedAccessTime", "endOfLifeTime"} <= set(lifecycle)
    assert (asset / "lifecycle" / "handlers" / "check.py").is_file()


def test_functions_that_do_not_call_converse_stay_on_the_runtime_sdk(
    dev_app: SynthesizedApp,
) -> None:
    template = dev_app.template("-catalog")
    _, function = one(template, "AWS::Lambda::Function", "PlanFunction")
    asset = dev_app.assembly_dir / f"asset.{function['Code']['S3Key'].removesuffix('.zip')}"
    assert (asset / "catalog").is_dir()
    assert not (asset / "botocore").exists()
