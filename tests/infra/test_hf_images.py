"""Hugging Face DLC images per region, and which instance types take a volume key."""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_cdk import App, Environment, Stack
from aws_cdk.assertions import Template

from infra.config import ConfigError
from infra.constructs.hf_images import REGISTRY_ACCOUNTS, TAGS, huggingface_image, image_from_uri
from infra.constructs.ml_instances import has_instance_storage

pytestmark = pytest.mark.infra


def _pinned(tmp_path: Path, region: str) -> Stack:
    return Stack(
        App(outdir=str(tmp_path)),
        "Pinned",
        env=Environment(account="123456789012", region=region),
    )


@pytest.mark.parametrize(
    ("region", "account"),
    [
        ("us-east-1", "763104351884"),
        ("eu-west-1", "763104351884"),
        ("af-south-1", "626614931356"),
        ("ap-east-1", "871362719292"),
        ("me-south-1", "217643126080"),
        ("eu-south-1", "692866216735"),
        ("ap-southeast-3", "907027046896"),
    ],
)
def test_a_pinned_region_gets_its_own_registry_account(
    tmp_path: Path, region: str, account: str
) -> None:
    stack = _pinned(tmp_path, region)
    image = huggingface_image(stack, kind="training", override=None, config_key="k")
    uri = stack.resolve(image.uri)
    rendered = "".join(p if isinstance(p, str) else "<suffix>" for p in uri["Fn::Join"][1])
    assert rendered == (
        f"{account}.dkr.ecr.{region}.<suffix>/huggingface-pytorch-training:{TAGS['training']}"
    )
    arn = stack.resolve(image.repository_arn)["Fn::Join"][1][-1]
    assert arn == f":ecr:{region}:{account}:repository/huggingface-pytorch-training"


def test_a_region_without_the_image_names_the_key_to_set(tmp_path: Path) -> None:
    # eu-central-2 publishes the inference image but not the training one.
    stack = _pinned(tmp_path, "eu-central-2")
    assert "eu-central-2" in REGISTRY_ACCOUNTS["inference"]
    with pytest.raises(ConfigError, match=r"set vqa\.training\.image_uri"):
        huggingface_image(
            stack, kind="training", override=None, config_key="vqa.training.image_uri"
        )
    assert huggingface_image(stack, kind="inference", override=None, config_key="k")


def test_an_agnostic_stack_maps_every_known_region(tmp_path: Path) -> None:
    stack = Stack(App(outdir=str(tmp_path)), "Agnostic")
    huggingface_image(stack, kind="inference", override=None, config_key="k")
    huggingface_image(stack, kind="inference", override=None, config_key="k")  # one mapping
    mappings = Template.from_stack(stack).to_json()["Mappings"]
    assert set(mappings) == {"HuggingFaceInferenceRegistries"}
    assert mappings["HuggingFaceInferenceRegistries"] == {
        region: {"account": account} for region, account in REGISTRY_ACCOUNTS["inference"].items()
    }


def test_a_configured_image_is_used_as_is_with_its_repository(tmp_path: Path) -> None:
    uri = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/team/vqa-serving:2026-08"
    stack = Stack(App(outdir=str(tmp_path)), "Agnostic")
    image = huggingface_image(stack, kind="inference", override=uri, config_key="k")
    assert image.uri == uri
    assert stack.resolve(image.repository_arn)["Fn::Join"][1][-1] == (
        ":ecr:eu-west-1:111122223333:repository/team/vqa-serving"
    )
    with pytest.raises(ConfigError):
        image_from_uri("docker.io/library/python:3.12")


@pytest.mark.parametrize(
    ("instance_type", "local_storage"),
    [
        ("ml.g5.2xlarge", True),
        ("ml.g4dn.xlarge", True),
        ("ml.g6.xlarge", True),
        ("ml.g6e.2xlarge", True),
        ("ml.p4d.24xlarge", True),
        ("ml.p5.48xlarge", True),
        ("ml.m5d.large", True),
        ("ml.c6id.xlarge", True),
        ("ml.r6gd.large", True),
        ("ml.trn1.2xlarge", True),
        ("ml.p6-b200.48xlarge", True),
        ("ml.m5.xlarge", False),
        ("ml.c5.xlarge", False),
        ("ml.p3.2xlarge", False),
        ("ml.g5g.xlarge", False),
        ("ml.inf2.xlarge", False),
        ("ml.t3.medium", False),
    ],
)
def test_instance_storage_decides_whether_a_volume_key_is_allowed(
    instance_type: str, local_storage: bool
) -> None:
    assert has_instance_storage(instance_type) is local_storage


def test_an_instance_type_must_be_a_sagemaker_one() -> None:
    with pytest.raises(ValueError, match="not a SageMaker instance type"):
        has_instance_storage("g5.2xlarge")
