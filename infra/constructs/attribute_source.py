"""The stage's attribute source, as the description functions receive it: their environment
(`ATTRIBUTE_SOURCE`, and the vision model with `vision-llm`) and the one grant it needs (invoke
the VQA endpoint, or invoke the vision model on Bedrock). A function gets only the grant of the
source the stage uses, so switching the source is a deploy, never a wider role."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam

from infra.config import StageConfig
from infra.constructs.bedrock_models import invoke_model_statements
from infra.constructs.sagemaker_endpoint import SageMakerEndpoint, grant_invoke_endpoint
from infra.models import VQA


def attribute_source_environment(config: StageConfig) -> dict[str, str]:
    """`ATTRIBUTE_SOURCE`, and with `vision-llm` the model and its structured-output mode."""
    if config.attribute_source == "endpoint":
        return {"ATTRIBUTE_SOURCE": "endpoint"}
    attributes = config.descriptions.attributes
    return {
        "ATTRIBUTE_SOURCE": "vision-llm",
        "ATTRIBUTE_MODEL_ID": attributes.model_id,
        "ATTRIBUTE_STRUCTURED_OUTPUT": attributes.structured_output,
    }


def bedrock_model_ids(config: StageConfig) -> list[str]:
    """The Bedrock models a description function calls: the description model, and the vision
    model when it reads the attributes and is another model (what its nag acknowledgments and
    the lifecycle check name)."""
    models = [config.descriptions.model_id]
    attributes = config.descriptions.attributes
    if config.attribute_source == "vision-llm" and attributes.model_id not in models:
        models.append(attributes.model_id)
    return models


def grant_attribute_source(
    stack: Stack,
    role: iam.IRole,
    config: StageConfig,
    *,
    endpoint: SageMakerEndpoint | None = None,
) -> None:
    """Let `role` ask the stage's attribute source. `endpoint`: the Hosting stack's VQA endpoint
    when this app hosts it (it grants itself); otherwise the endpoint is granted by name.

    The vision model is granted only when it differs from the description model, which the
    caller grants in any case (one statement for one model)."""
    if config.attribute_source == "endpoint":
        if endpoint is not None:
            endpoint.grant_invoke(role)
        else:
            grant_invoke_endpoint(role, stack=stack, endpoint_name=VQA.endpoint_name(config))
        return
    for model_id in bedrock_model_ids(config)[1:]:
        for statement in invoke_model_statements(stack, model_id):
            role.add_to_principal_policy(statement)
