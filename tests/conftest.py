"""Test harness: hermetic AWS settings, and one synthesis of the whole app per session.

pytest-socket (configured in pyproject.toml) refuses every network socket; these variables make
sure no test could reach or sign for a real account even if it tried.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
    # Powertools outside Lambda: no X-Ray daemon to talk to; metrics need a namespace.
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "AtelierTests",
    "POWERTOOLS_SERVICE_NAME": "descriptions",
}
for _name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "CDK_DEFAULT_ACCOUNT", "CDK_DEFAULT_REGION"):
    os.environ.pop(_name, None)
os.environ.update(_HERMETIC_ENV)

# The X-Ray SDK opens its UDP emitter's socket when it is first imported (nothing is sent). A
# Powertools Tracer built inside a test imports it there, where pytest-socket refuses sockets, so
# such a test passed only after another test had imported it: import it once, here, instead.
import aws_xray_sdk.core  # noqa: E402, F401

from tests.support import (  # noqa: E402
    VARIANT_OVERRIDES,
    SynthesizedApp,
    cdk_json_context,
    synthesize,
)


@pytest.fixture(scope="session")
def synthesized_apps(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, SynthesizedApp]:
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


@pytest.fixture(scope="session")
def tiny_blip2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny BLIP-2 and processor on disk (built once per session)."""
    from tests.vqa_model_support import build_tiny_blip2

    return build_tiny_blip2(tmp_path_factory.mktemp("tiny-blip2"))


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny Stable Diffusion text-to-image pipeline on disk (hub layout)."""
    from tests.sd_model_support import build_tiny_stable_diffusion

    return build_tiny_stable_diffusion(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def tiny_sd_inpainting(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny Stable Diffusion inpainting pipeline (9-channel UNet) on disk."""
    from tests.sd_model_support import build_tiny_stable_diffusion

    return build_tiny_stable_diffusion(
        tmp_path_factory.mktemp("tiny-sd-inpainting"), inpainting=True
    )


@pytest.fixture(scope="session")
def tiny_clipseg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny CLIPSeg and its processor on disk."""
    from tests.sd_model_support import build_tiny_clipseg

    return build_tiny_clipseg(tmp_path_factory.mktemp("tiny-clipseg"))


@pytest.fixture(scope="session")
def variant_app(tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    """The dev stage with what the shipped config leaves off: a hosted attribute model, and a spot
    training job on an EBS-backed instance (checkpoints, volume key); both Stable Diffusion
    endpoints hosted and DreamBooth training on other instance types (tests/support.py)."""
    return synthesize(
        "dev", tmp_path_factory.mktemp("cdk-out-variant"), stage_overrides=VARIANT_OVERRIDES
    )
