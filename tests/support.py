"""Helpers shared by the tests: the real cdk.json context and a synthesized app."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# A model archive where the VQA workflow writes them (the bucket name is made up).
HOSTED_MODEL_DATA_URL = (
    "s3://atelier-models-example/vqa/training/atelier-dev-vqa-20260801-101010-abcdef12/output/"
    "model.tar.gz"
)
# Archives where the DreamBooth text-to-image and inpainting workflows write them.
DREAMBOOTH_MODEL_DATA_URL = (
    "s3://atelier-models-example/dreambooth/training/"
    "atelier-dev-dreambooth-20260801-101010-abcdef12/output/model.tar.gz"
)
STYLING_MODEL_DATA_URL = (
    "s3://atelier-models-example/inpainting/training/"
    "atelier-dev-inpainting-20260801-101010-abcdef12/output/model.tar.gz"
)
# The dev stage's overrides in the `variant_app` synthesis (see tests/conftest.py).
VARIANT_OVERRIDES: dict[str, Any] = {
    "vqa": {
        "training": {
            "use_spot": True,
            "max_wait_hours": 36,
            # EBS-backed (no NVMe instance storage): the volume gets the data key.
            "instance_type": "ml.p3.2xlarge",
        },
        "hosting": {"model_data_url": HOSTED_MODEL_DATA_URL, "max_instances": 3},
    },
    # A base model configured (the shipped null builds no customize workflow: no Bedrock image
    # model can be fine-tuned today), with terms and model units beyond the shipped limits
    # (titan.allowed_commitments: ["none"], titan.max_model_units: 1).
    "titan": {
        "base_model_id": "amazon.titan-image-generator-v2:0",
        "allowed_commitments": ["none", "OneMonth"],
        "max_model_units": 2,
    },
    # Both Stable Diffusion endpoints hosted; text-to-image runs without prior preservation on a
    # 16 GB T4 with the memory savers, on spot; prior-preservation runs move to the 24 GB A10G.
    "dreambooth": {
        "training": {
            "instance_type": "ml.g4dn.2xlarge",
            "use_spot": True,
            "max_wait_hours": 12,
            "hyperparameters": {"use_8bit_adam": True, "gradient_checkpointing": True},
        },
        "hosting": {"model_data_url": DREAMBOOTH_MODEL_DATA_URL},
    },
    "styling": {
        # EBS-backed for runs without prior preservation: the volume gets the data key then.
        "training": {"instance_type": "ml.p3.2xlarge"},
        "hosting": {"model_data_url": STYLING_MODEL_DATA_URL, "autoscaling": False},
    },
}


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


def synthesize(
    stage: str, outdir: Path, *, stage_overrides: dict[str, Any] | None = None
) -> SynthesizedApp:
    """The real app for `stage`; `stage_overrides` replace the stage's entry in cdk.json."""
    from aws_cdk import App

    from app import build_app

    context = copy.deepcopy(cdk_json_context())
    if stage_overrides is not None:
        context["atelier"]["stages"][stage] = stage_overrides
    app = App(context={**context, "stage": stage}, outdir=str(outdir))
    assembly = build_app(app).synth()
    templates = {stack.stack_name: stack.template for stack in assembly.stacks}
    return SynthesizedApp(stage=stage, assembly_dir=outdir, templates=templates)
