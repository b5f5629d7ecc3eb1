"""How a stack tells people and tools what it created: stack outputs and SSM parameters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_ssm as ssm

from infra.config import StageConfig


def publish_names(
    stack: Stack,
    *,
    config: StageConfig,
    section: str,
    names: Sequence[str],
    values: Mapping[str, str],
) -> None:
    """Expose each value as a stack output (for people) and as the SSM parameter
    `/<prefix>/<stage>/<section>/<name>` (for other stacks, tools and the CLI)."""
    assert tuple(values) == tuple(names), f"keep the {section} stack's published names in step"
    for name, value in values.items():
        construct_id = "".join(part.capitalize() for part in name.split("-"))
        parameter_name = f"{config.ssm_prefix}/{section}/{name}"
        ssm.StringParameter(
            stack,
            f"{construct_id}Parameter",
            parameter_name=parameter_name,
            string_value=value,
            description=f"Atelier {config.stage} {section} stack: {name}",
        )
        CfnOutput(
            stack,
            construct_id,
            value=value,
            description=f"Also in SSM parameter {parameter_name}",
        )
