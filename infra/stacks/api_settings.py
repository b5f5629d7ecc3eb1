"""What the Api stack's functions read from their environment: the pipeline, images and diffusion
settings, as compact JSON built from the stage config and the model registry."""

from __future__ import annotations

import json
from typing import Any

from infra.config import ConfigError, StageConfig
from infra.models import DREAMBOOTH, STYLING, VQA, Model

# Lambda allows 4 KB for all environment variables together; leave room for the others.
MAX_SETTINGS_BYTES = 3_500
# Seconds the images function keeps after its last Titan call to store PNGs and answer
# (lambdas/images/handlers/api.py keeps the same margin).
IMAGES_RESPONSE_MARGIN_SECONDS = 3
# Seconds the diffusion function keeps after its last endpoint call to store images and answer
# (lambdas/diffusion/handlers/api.py keeps the same margin).
DIFFUSION_RESPONSE_MARGIN_SECONDS = 3


def settings_json(settings: dict[str, Any]) -> str:
    """Compact, key-sorted JSON: the same settings always give the same template."""
    return json.dumps(settings, separators=(",", ":"), sort_keys=True)


def descriptions_settings(config: StageConfig) -> dict[str, Any]:
    """The pipeline settings both functions read from `DESCRIPTIONS_SETTINGS`."""
    d = config.descriptions
    return {
        "endpointName": VQA.endpoint_name(config),
        "modelId": d.model_id,
        "structuredOutput": d.structured_output,
        "maxTokensPerLanguage": d.max_tokens_per_language,
        "temperature": d.temperature,
        "languages": list(d.languages),
        "defaultLanguages": list(d.default_languages),
        "maxLanguagesPerRequest": d.max_languages_per_request,
        "questions": dict(d.questions),
        "categories": {name: list(attributes) for name, attributes in d.categories.items()},
        "image": {
            "maxBytes": d.image.max_bytes,
            "maxPixels": d.image.max_pixels,
            "maxSide": d.image.max_side,
            "minSide": d.image.min_side,
        },
        "groundingRetries": d.grounding_retries,
    }


def images_settings(config: StageConfig) -> dict[str, Any]:
    """What the images function reads from `IMAGES_SETTINGS`."""
    i = config.images
    return {
        "maxPromptCharacters": i.max_prompt_characters,
        "maxImagesPerRequest": i.max_images_per_request,
        "sizes": [f"{width}x{height}" for width, height in i.sizes],
        "modelArnCacheSeconds": i.model_arn_cache_seconds,
        "presignedUrlSeconds": i.presigned_url_seconds,
        "modelReadTimeoutSeconds": i.api_timeout_seconds - IMAGES_RESPONSE_MARGIN_SECONDS,
    }


def base64_length(size: int) -> int:
    """Characters of standard, padded base64 for `size` bytes."""
    return (size + 2) // 3 * 4


def diffusion_model_settings(config: StageConfig, model: Model, *, label: str) -> dict[str, str]:
    """Which endpoint serves one diffusion route, and what to tell a caller when it is absent."""
    return {
        "endpointName": model.endpoint_name(config),
        "configKey": f"{model.config_key}.model_data_url",
        "modelDataParameter": model.model_data_parameter(config),
        "label": label,
    }


def diffusion_settings(config: StageConfig) -> dict[str, Any]:
    """What the diffusion function reads from `DIFFUSION_SETTINGS`."""
    d = config.diffusion
    return {
        # The function's names for its two models (POST /generations and POST /styling).
        "generation": diffusion_model_settings(
            config, DREAMBOOTH, label="DreamBooth text-to-image"
        ),
        "styling": diffusion_model_settings(config, STYLING, label="styling"),
        "maxPromptCharacters": d.max_prompt_characters,
        "maxImagesPerRequest": d.max_images_per_request,
        "minSide": d.min_side,
        "maxSide": d.max_side,
        "maxPixels": d.max_pixels,
        "defaultSize": d.default_size,
        "defaultSteps": d.default_steps,
        "maxSteps": d.max_steps,
        "defaultGuidanceScale": d.default_guidance_scale,
        "maxGuidanceScale": d.max_guidance_scale,
        "imageLengths": list(d.image_lengths),
        "defaultImageLength": d.default_image_length,
        "image": {
            "maxBytes": d.image.max_bytes,
            "maxPixels": d.image.max_pixels,
            "maxSide": d.image.max_side,
            "minSide": d.image.min_side,
        },
        "maxInlineImageBytes": d.max_inline_image_bytes,
        "presignedUrlSeconds": d.presigned_url_seconds,
        "modelReadTimeoutSeconds": d.api_timeout_seconds - DIFFUSION_RESPONSE_MARGIN_SECONDS,
    }


def descriptions_settings_json(config: StageConfig) -> str:
    text = settings_json(descriptions_settings(config))
    size = len(text.encode("utf-8"))
    if size > MAX_SETTINGS_BYTES:
        raise ConfigError(
            f"descriptions.questions and descriptions.categories are too large for a Lambda "
            f"environment: the settings take {size} bytes of JSON, at most {MAX_SETTINGS_BYTES} "
            "fit; shorten the questions or ask fewer"
        )
    return text
