"""Every custom CloudWatch metric the functions emit: one list read by the emitters (through
`shared.telemetry`) and by the stage dashboard (infra/constructs/dashboard.py loads this file).

Plain constants, no imports: infra loads the file by path without the Lambda asset's packages.
Latency names are built from a stage name (`TotalLatency`, `ImageModelLatency`, ...), so they are
functions here, used by both sides too.
"""

from __future__ import annotations

# Powertools reads the namespace from POWERTOOLS_METRICS_NAMESPACE (set by PythonFunction) and adds
# the function's POWERTOOLS_SERVICE_NAME as the `service` dimension of every metric.
NAMESPACE = "Atelier"
SERVICE_DIMENSION = "service"

# Service names (POWERTOOLS_SERVICE_NAME) of the functions that emit the metrics below.
DESCRIPTIONS_SERVICE = "descriptions"
IMAGES_SERVICE = "images"
DIFFUSION_SERVICE = "diffusion"
CUSTOMIZATION_SERVICE = "titan-customization"
LIFECYCLE_SERVICE = "model-lifecycle"
CATALOG_SERVICE = "catalog"

# Descriptions (API and upload queue).
DESCRIPTIONS_CREATED = "DescriptionsCreated"
DESCRIPTION_FAILURES = "DescriptionFailures"  # dimensions cause, path
INPUT_TOKENS = "InputTokens"
OUTPUT_TOKENS = "OutputTokens"
UPLOAD_STATUSES = ("described", "duplicate", "ignored", "parked", "retry")

# Titan image generation.
IMAGE_REQUESTS = "ImageRequests"
IMAGES_GENERATED = "ImagesGenerated"
IMAGE_FAILURES = "ImageFailures"  # dimension cause

# DreamBooth generation and styling.
DIFFUSION_REQUESTS = "DiffusionRequests"  # dimension route
DIFFUSION_IMAGES_GENERATED = "DiffusionImagesGenerated"
DIFFUSION_FAILURES = "DiffusionFailures"  # dimensions route, cause
DIFFUSION_ROUTES = ("generations", "styling")

# Throughput cost guard (the sweeper); dimension deployment.
THROUGHPUTS_RELEASED = "ThroughputsReleased"
THROUGHPUT_EXPIRY_NOTICES = "ThroughputExpiryNotices"
THROUGHPUT_SWEEP_ERRORS = "ThroughputSweepErrors"

# Model lifecycle check; dimension deployment (and model for the per-model ones).
MODELS_NEEDING_ATTENTION = "ModelsNeedingAttention"
LIFECYCLE_STAGE = "LifecycleStage"
NEEDS_ATTENTION = "NeedsAttention"
DAYS_TO_END_OF_LIFE = "DaysToEndOfLife"
DEPLOYMENT_DIMENSION = "deployment"


def _title(word: str) -> str:
    return word[:1].upper() + word[1:]


def description_latency(stage: str) -> str:
    """`validate`, `attributes`, `description`, `total` → `TotalLatency`, ..."""
    return f"{stage.capitalize()}Latency"


def image_latency(stage: str) -> str:
    """`model`, `store`, `total` → `ImageModelLatency`, ..."""
    return f"Image{stage.capitalize()}Latency"


def diffusion_latency(route: str, stage: str) -> str:
    """(`generations`, `total`) → `GenerationsTotalLatency`, ..."""
    return f"{route.capitalize()}{stage.capitalize()}Latency"


def usage_metric(name: str) -> str:
    """Bedrock usage keys (`inputTokens`) → `InputTokens`."""
    return _title(name)


def upload_outcome(status: str) -> str:
    """`described` → `UploadsDescribed`."""
    return f"Uploads{status.capitalize()}"
