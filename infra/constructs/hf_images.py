"""Hugging Face Deep Learning Container images, resolved for the deployment region.

AWS publishes the DLCs from account 763104351884 in most regions and from an account of the
region's own in opt-in and newer regions. The accounts below are the sagemaker-python-sdk's
(`image_uri_config/huggingface.json`) for exactly the two images we use; the tags are those of the
aws/deep-learning-containers buildspecs:

- training: `huggingface-pytorch-training:2.8.0-transformers4.56.2-gpu-py312-cu129-ubuntu22.04`,
  the newest transformers 4.x training line (the next, 5.3, breaks our 4.57 code). It ships
  peft 0.17.1, accelerate 1.10.1 and bitsandbytes; `training/requirements.txt` lifts transformers
  to the 4.57.6 the tests run.
- inference: `huggingface-pytorch-inference:2.6.0-transformers4.51.3-gpu-py312-cu124-ubuntu22.04`,
  the newest transformers 4.x inference line; its toolkit does not import under transformers 5.

An environment-agnostic stack picks the account with a CloudFormation mapping on `AWS::Region`
(a region without the image fails the deployment in the mapping lookup); a stack pinned to a
region resolves it at synthesis and names the config key to set if the region has none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from aws_cdk import Aws, CfnMapping, Stack, Token
from constructs import Construct

from infra.config import ConfigError

ImageKind = Literal["training", "inference"]

REPOSITORIES: dict[ImageKind, str] = {
    "training": "huggingface-pytorch-training",
    "inference": "huggingface-pytorch-inference",
}
TAGS: dict[ImageKind, str] = {
    "training": "2.8.0-transformers4.56.2-gpu-py312-cu129-ubuntu22.04",
    "inference": "2.6.0-transformers4.51.3-gpu-py312-cu124-ubuntu22.04",
}


def training_image_python() -> str:
    """The CPython of the default training image, from its tag (`...-py312-...` → "3.12"): the
    training code's vendored wheels are downloaded for it."""
    match = re.search(r"-py3(\d+)-", TAGS["training"])
    assert match, TAGS["training"]
    return f"3.{match.group(1)}"


_DLC_ACCOUNT = "763104351884"
_STANDARD_REGIONS = (
    "ap-northeast-1", "ap-northeast-2", "ap-south-1", "ap-southeast-1", "ap-southeast-2",
    "ca-central-1", "eu-central-1", "eu-north-1", "eu-west-1", "eu-west-2", "eu-west-3",
    "sa-east-1", "us-east-1", "us-east-2", "us-west-1", "us-west-2",
)  # fmt: skip
_OWN_ACCOUNT_REGIONS = {
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-northeast-3": "364406365360",
    "ap-southeast-3": "907027046896",
    "ca-west-1": "204538143572",
    "eu-south-1": "692866216735",
    "il-central-1": "780543022126",
    "me-central-1": "914824155844",
    "me-south-1": "217643126080",
}
# Regions where only the inference image is published.
_INFERENCE_ONLY_REGIONS = {
    "ap-south-2": "772153158452",
    "ap-southeast-4": "457447274322",
    "eu-central-2": "380420809688",
    "eu-south-2": "503227376785",
}
REGISTRY_ACCOUNTS: dict[ImageKind, dict[str, str]] = {
    "training": {
        **dict.fromkeys(_STANDARD_REGIONS, _DLC_ACCOUNT),
        **_OWN_ACCOUNT_REGIONS,
    },
    "inference": {
        **dict.fromkeys(_STANDARD_REGIONS, _DLC_ACCOUNT),
        **_OWN_ACCOUNT_REGIONS,
        **_INFERENCE_ONLY_REGIONS,
    },
}

_IMAGE_URI = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com/"
    r"(?P<repository>[^:]+):(?P<tag>.+)$"
)


@dataclass(frozen=True)
class ContainerImage:
    """An ECR image and the repository a role must be allowed to pull it from."""

    uri: str
    repository_arn: str


def _repository_arn(*, region: str, account: str, repository: str) -> str:
    return f"arn:{Aws.PARTITION}:ecr:{region}:{account}:repository/{repository}"


def image_from_uri(uri: str) -> ContainerImage:
    """An image named in the config (already validated as an ECR URI)."""
    match = _IMAGE_URI.fullmatch(uri)
    if match is None:
        raise ConfigError(f"image URI {uri!r} is not an ECR image URI")
    return ContainerImage(
        uri=uri,
        repository_arn=_repository_arn(
            region=match["region"], account=match["account"], repository=match["repository"]
        ),
    )


def huggingface_image(
    scope: Construct, *, kind: ImageKind, override: str | None, config_key: str
) -> ContainerImage:
    """The configured image, else the Hugging Face PyTorch DLC of `kind` for the stack's region."""
    if override is not None:
        return image_from_uri(override)
    stack = Stack.of(scope)
    accounts = REGISTRY_ACCOUNTS[kind]
    if Token.is_unresolved(stack.region):
        mapping_id = f"HuggingFace{kind.capitalize()}Registries"
        existing = stack.node.try_find_child(mapping_id)
        mapping = (
            existing
            if isinstance(existing, CfnMapping)
            else CfnMapping(
                stack,
                mapping_id,
                mapping={region: {"account": account} for region, account in accounts.items()},
            )
        )
        account = mapping.find_in_map(Aws.REGION, "account")
    elif stack.region in accounts:
        account = accounts[stack.region]
    else:
        raise ConfigError(
            f"region {stack.region} has no Hugging Face PyTorch {kind} container; set "
            f"{config_key} to an image that exists there"
        )
    repository = REPOSITORIES[kind]
    return ContainerImage(
        uri=f"{account}.dkr.ecr.{stack.region}.{Aws.URL_SUFFIX}/{repository}:{TAGS[kind]}",
        repository_arn=_repository_arn(region=stack.region, account=account, repository=repository),
    )
