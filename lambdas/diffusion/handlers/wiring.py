"""Builds the diffusion service from the environment with real AWS adapters (once per cold
start)."""

from __future__ import annotations

from diffusion.handlers.environment import Environment
from diffusion.logic.service import DiffusionService
from shared.adapters.diffusion_images import S3InputImages, S3OutputImages
from shared.adapters.sagemaker_diffusion import SageMakerDiffusionModel


def build_service(environment: Environment) -> DiffusionService:
    settings = environment.settings
    return DiffusionService(
        settings=settings,
        uploads=S3InputImages(environment.uploads_bucket),
        model=SageMakerDiffusionModel(read_timeout=settings.model_read_timeout_seconds),
        store=S3OutputImages(environment.results_bucket),
    )
