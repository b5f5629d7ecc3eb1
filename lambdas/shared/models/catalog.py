"""Settings and record shapes of the catalog workflow (`describe-catalog`).

The workflow moves products between files in S3; every file is JSON Lines and each line of every
kind is one of the models below, so each step reads exactly what the previous one wrote.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    # cache_strings="keys": a run parses millions of lines whose values (ids, keys, hashes) never
    # repeat; caching them as pydantic does by default fills its process-wide cache for nothing.
    model_config = ConfigDict(
        populate_by_name=True, frozen=True, extra="forbid", cache_strings="keys"
    )


class BedrockBatchLimits(_Model):
    """Bedrock batch inference quotas (Service Quotas, per model; defaults as documented)."""

    min_records_per_job: int = Field(alias="minRecordsPerJob", gt=0)
    max_records_per_job: int = Field(alias="maxRecordsPerJob", gt=0)
    max_records_per_file: int = Field(alias="maxRecordsPerFile", gt=0)
    max_file_bytes: int = Field(alias="maxFileBytes", gt=0)
    max_job_bytes: int = Field(alias="maxJobBytes", gt=0)


class CatalogSettings(_Model):
    """The `CATALOG_SETTINGS` environment variable, written by the Catalog stack from cdk.json."""

    results_bucket: str = Field(alias="resultsBucket", min_length=1)
    table_name: str = Field(alias="tableName", min_length=1)
    # Buckets a run may read images and manifests from (the stack grants exactly these).
    source_buckets: tuple[str, ...] = Field(alias="sourceBuckets", min_length=1)
    # Products per Batch Transform input file (one Distributed Map child batch).
    records_per_part: int = Field(alias="recordsPerPart", gt=0)
    # Products per group: one Batch Transform job and one Bedrock job.
    max_records_per_group: int = Field(alias="maxRecordsPerGroup", gt=0)
    # Fewer pending products than this take the online path (endpoint + Converse).
    online_threshold: int = Field(alias="onlineThreshold", ge=0)
    # One Batch Transform request (one JSON line with its base64 image) may not exceed this.
    transform_max_payload_bytes: int = Field(alias="transformMaxPayloadBytes", gt=0)
    bedrock: BedrockBatchLimits
    # Threads for the many small S3/DynamoDB calls of one step.
    io_concurrency: int = Field(alias="ioConcurrency", gt=0)


class Stage(StrEnum):
    """Where in the workflow a product was lost; the failures report names it."""

    INPUT = "input"  # bad manifest row, unreadable or invalid image
    ATTRIBUTES = "attributes"  # Batch Transform: no or malformed attributes
    DESCRIPTION = "description"  # Bedrock: error record, malformed or missing answer
    GROUNDING = "grounding"  # the text contradicts the attributes
    STORE = "store"  # DynamoDB/S3 writes kept failing
    ONLINE = "online"  # the online path (small catalogs) failed


class ProductRef(_Model):
    """One product as a manifest names it. Also the shape of a failures-report line's first
    three fields, so the report is itself a manifest for a re-run."""

    product_id: str = Field(min_length=1)
    # Always a full `s3://bucket/key` URI inside the workflow.
    image_key: str = Field(min_length=1)
    category: str | None = None


class IndexRecord(_Model):
    """A line of `transform-index/<part>.jsonl`: the products of the matching transform input
    part, in the same order, without the image."""

    product_id: str
    image_key: str
    category: str
    image_sha256: str


class LedgerRecord(_Model):
    """A line of `groups/<g>/ledger.jsonl`: what the results step needs besides the answer."""

    record_id: str
    product_id: str
    image_key: str
    category: str
    image_sha256: str
    attributes: dict[str, str]
    languages: tuple[str, ...]


class FailureRecord(_Model):
    """A line of the failures report."""

    product_id: str
    image_key: str
    category: str | None = None
    stage: Stage
    reason: str
