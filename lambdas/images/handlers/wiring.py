"""Builds the image service from the environment with real AWS adapters (once per cold start)."""

from __future__ import annotations

from images.handlers.environment import Environment
from images.logic.service import ImageService
from shared.adapters.bedrock_runtime import BedrockImageModel
from shared.adapters.image_store import S3ImageStore
from shared.adapters.parameters import CachedParameter


def build_service(environment: Environment) -> ImageService:
    settings = environment.settings
    return ImageService(
        settings=settings,
        model_arn=CachedParameter(
            environment.model_arn_parameter, ttl_seconds=settings.model_arn_cache_seconds
        ),
        image_model=BedrockImageModel(read_timeout=settings.model_read_timeout_seconds),
        store=S3ImageStore(environment.results_bucket),
    )
