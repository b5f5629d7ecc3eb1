"""Limits of the services Atelier configures, and the shapes of the identifiers it accepts.

Each number here is a fact about AWS, a model or the code that uses the setting; the sections'
fields use them as bounds, so a limit is stated once.
"""

from __future__ import annotations

import re
from typing import Literal, get_args

CONTEXT_KEY = "atelier"
STAGE_CONTEXT_KEY = "stage"

# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip
RemovalPolicy = Literal["destroy", "retain"]
REMOVAL_POLICIES: tuple[RemovalPolicy, ...] = get_args(RemovalPolicy)
LambdaArchitecture = Literal["x86_64", "arm64"]
LAMBDA_ARCHITECTURES: tuple[LambdaArchitecture, ...] = get_args(LambdaArchitecture)
LogLevel = Literal["DEBUG", "INFO", "WARN", "ERROR"]
LOG_LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)
# Lambda runtimes the public Powertools v3 layer is published for.
LAMBDA_PYTHON_RUNTIMES = ("python3.12", "python3.13", "python3.14")

NAME_PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,18}[a-z0-9]$")
STAGE_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]{0,11}$")
ACCOUNT_PATTERN = re.compile(r"^\d{12}$")
# Commercial partition only: the public Powertools layer is published from another account in
# China and GovCloud.
REGION_PATTERN = re.compile(r"^(us|eu|ap|ca|sa|me|af|il|mx)-[a-z]+-\d$")
S3_PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*/$")
TAG_KEY_PATTERN = re.compile(r"^[\w.:/=+@ -]{1,128}$")
ENDPOINT_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
# `anthropic.claude-3-sonnet-20240229-v1:0`, `eu.anthropic.claude-...` (inference profile), or
# the ARN of a foundation model or a system-defined inference profile.
BEDROCK_MODEL_PATTERN = re.compile(
    r"^(arn:aws:bedrock:[a-z0-9-]+:(\d{12})?:(foundation-model|inference-profile)/)?"
    r"([a-z-]+\.)?[a-z0-9-]+\.[a-z0-9-]+(:\d+)?(:[a-z0-9-]+)?$"
)
USER_POOL_ARN_PATTERN = re.compile(
    r"^arn:aws:cognito-idp:[a-z0-9-]+:\d{12}:userpool/[\w-]+_[0-9a-zA-Z]+$"
)
ORIGIN_PATTERN = re.compile(r"^https://[a-z0-9.-]+(:\d{1,5})?$")
LANGUAGE_PATTERN = re.compile(r"^[a-z]{2}(-[A-Z]{2})?$")
ATTRIBUTE_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
CATEGORY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _&-]{0,63}$")
# `ml.g5.2xlarge`, `ml.p6-b200.48xlarge`: SageMaker instance types all start with `ml.`.
ML_INSTANCE_TYPE_PATTERN = re.compile(r"^ml\.[a-z0-9]+(-[a-z0-9]+)?\.[a-z0-9]+$")
# An ECR image with a tag: `<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>`.
ECR_IMAGE_URI_PATTERN = re.compile(
    r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/[a-z0-9]+([._/-][a-z0-9]+)*:[A-Za-z0-9_.-]{1,128}$"
)
# A model archive as training jobs write it: `s3://<bucket>/<key>.tar.gz`. No wildcards or spaces:
# the hosting role is granted exactly this object.
S3_MODEL_URI = re.compile(
    r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<key>[A-Za-z0-9!_.'()-]+"
    r"(/[A-Za-z0-9!_.'()-]+)*\.tar\.gz)$"
)
# A Hugging Face Hub model id, `organization/name`.
HUB_MODEL_ID_PATTERN = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$"
)
HUB_REVISION_PATTERN = re.compile(r"^[0-9a-f]{40}$")
MODULE_NAMES_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*(,[A-Za-z_][A-Za-z0-9_.]*)*$")

ApiAuth = Literal["iam", "cognito"]
API_AUTH_TYPES: tuple[ApiAuth, ...] = get_args(ApiAuth)
VqaPrecision = Literal["auto", "fp32", "bf16", "8bit"]
VQA_PRECISIONS: tuple[VqaPrecision, ...] = get_args(VqaPrecision)
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
Commitment = Literal["none", "OneMonth", "SixMonths"]
TITAN_COMMITMENTS: tuple[Commitment, ...] = get_args(Commitment)
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
EMAIL_PATTERN = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")

DreamBoothLrScheduler = Literal[
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"
]
DREAMBOOTH_LR_SCHEDULERS: tuple[DreamBoothLrScheduler, ...] = get_args(DreamBoothLrScheduler)
# auto: fp16 on a GPU, none on CPU.
DreamBoothMixedPrecision = Literal["auto", "no", "fp16", "bf16"]
DREAMBOOTH_MIXED_PRECISIONS: tuple[DreamBoothMixedPrecision, ...] = get_args(
    DreamBoothMixedPrecision
)
