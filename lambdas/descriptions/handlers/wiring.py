"""Builds the pipeline from the environment with real AWS adapters (once per cold start)."""

from __future__ import annotations

from descriptions.handlers.environment import Environment
from descriptions.logic.pipeline import DescriptionPipeline
from shared.adapters.bedrock_runtime import BedrockTextModel
from shared.adapters.sagemaker_runtime import SageMakerAttributeModel
from shared.adapters.storage import DynamoDescriptionTable, S3ResultsArchive


def build_pipeline(environment: Environment) -> DescriptionPipeline:
    return DescriptionPipeline(
        settings=environment.settings,
        attribute_model=SageMakerAttributeModel(environment.settings.endpoint_name),
        text_model=BedrockTextModel(),
        archive=S3ResultsArchive(environment.results_bucket),
        table=DynamoDescriptionTable(environment.table_name),
    )
