"""Builds the pipeline from the environment with real AWS adapters (once per cold start)."""

from __future__ import annotations

from descriptions.handlers.environment import ATTRIBUTE_STRUCTURED_OUTPUT, Environment
from descriptions.logic.pipeline import DescriptionPipeline
from descriptions.logic.ports import AttributeSource
from descriptions.logic.vision import VisionAttributeSource
from shared.adapters.bedrock_runtime import BedrockTextModel
from shared.adapters.sagemaker_runtime import SageMakerAttributeModel
from shared.adapters.storage import DynamoDescriptionTable, S3ResultsArchive
from shared.environment import DeploymentError


def attribute_source(environment: Environment) -> AttributeSource:
    """The source the function's variables name: the endpoint, or the vision model on Bedrock."""
    chosen = environment.attributes
    if chosen.kind == "endpoint":
        return SageMakerAttributeModel(environment.settings.endpoint_name)
    if chosen.model_id is None:  # attribute_source_settings requires it; a hand-built one may not
        raise DeploymentError("the vision-llm attribute source needs ATTRIBUTE_MODEL_ID")
    return VisionAttributeSource(
        model_id=chosen.model_id,
        structured_output=chosen.structured_output or environment.settings.structured_output,
        model=BedrockTextModel(code_prefix="attribute_model", setting=ATTRIBUTE_STRUCTURED_OUTPUT),
    )


def build_pipeline(environment: Environment) -> DescriptionPipeline:
    return DescriptionPipeline(
        settings=environment.settings,
        attribute_model=attribute_source(environment),
        text_model=BedrockTextModel(),
        archive=S3ResultsArchive(environment.results_bucket),
        table=DynamoDescriptionTable(environment.table_name),
    )
