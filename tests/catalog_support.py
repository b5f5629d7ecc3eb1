"""Builders shared by the catalog workflow's tests: settings, images, moto resources, events."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws
from PIL import Image

from catalog.handlers.environment import CatalogEnvironment
from infra.config import load_stage_config
from infra.stacks.catalog import catalog_settings as stack_catalog_settings
from shared.adapters.storage import DynamoDescriptionTable
from shared.models.catalog import BedrockBatchLimits, CatalogSettings
from shared.models.descriptions import (
    GroundingReport,
    LocalizedDescription,
    PipelineSettings,
    StoredDescription,
)
from tests.descriptions_support import create_products_table, grounded_entry
from tests.descriptions_support import settings as pipeline_settings
from tests.support import cdk_json_context

RESULTS_BUCKET = "atelier-dev-results"
UPLOADS_BUCKET = "atelier-dev-uploads"
DATASETS_BUCKET = "atelier-dev-datasets"
TABLE_NAME = "atelier-dev-products"
# A bucket no catalog run may read: its images and manifests must be refused.
FOREIGN_BUCKET = "someone-elses-bucket"


def _stack_settings() -> dict[str, Any]:
    """Exactly what the Catalog stack puts into CATALOG_SETTINGS for the dev stage (with these
    bucket and table names)."""
    return stack_catalog_settings(
        load_stage_config(cdk_json_context(), "dev"),
        results_bucket=RESULTS_BUCKET,
        table_name=TABLE_NAME,
        source_buckets=[UPLOADS_BUCKET, DATASETS_BUCKET, RESULTS_BUCKET],
    )


# Bedrock batch inference quotas as configured (camelCase, as in CATALOG_SETTINGS).
BEDROCK_LIMITS: dict[str, int] = dict(_stack_settings()["bedrock"])


def catalog_settings(**overrides: Any) -> CatalogSettings:
    """The dev stage's catalog settings; keyword overrides use the JSON names (camelCase, e.g.
    `onlineThreshold=3`) or the field names."""
    document = _stack_settings()
    aliases = {
        name: field.alias for name, field in CatalogSettings.model_fields.items() if field.alias
    }
    for name, value in overrides.items():
        if isinstance(value, BedrockBatchLimits):
            value = value.model_dump(by_alias=True)
        document[aliases.get(name, name)] = value
    return CatalogSettings.model_validate(document)


def descriptions_settings(**overrides: Any) -> PipelineSettings:
    """The description pipeline's settings exactly as the Api stack writes them (dev stage)."""
    return pipeline_settings(**overrides)


def catalog_environ(
    catalog: CatalogSettings | None = None, descriptions: PipelineSettings | None = None
) -> dict[str, str]:
    """The environment variables of a catalog Lambda."""
    return {
        "CATALOG_SETTINGS": (catalog or catalog_settings()).model_dump_json(by_alias=True),
        "DESCRIPTIONS_SETTINGS": (descriptions or descriptions_settings()).model_dump_json(
            by_alias=True
        ),
    }


def make_image(
    width: int = 96, height: int = 72, *, image_format: str = "JPEG", seed: int = 0
) -> bytes:
    """A real image file; `seed` varies the colour so different products hash differently."""
    buffer = io.BytesIO()
    colour = (seed * 37 % 256, seed * 91 % 256, seed * 53 % 256)
    Image.new("RGB", (width, height), colour).save(buffer, format=image_format)
    return buffer.getvalue()


def make_jpeg(width: int = 96, height: int = 72, *, seed: int = 0) -> bytes:
    return make_image(width, height, image_format="JPEG", seed=seed)


def make_png(width: int = 96, height: int = 72, *, seed: int = 0) -> bytes:
    return make_image(width, height, image_format="PNG", seed=seed)


def create_catalog_resources(s3: Any, dynamodb: Any, settings: CatalogSettings) -> None:
    """In moto: the results bucket, every allowed source bucket, a foreign bucket, the products
    table (pk/sk as the Data stack defines it)."""
    buckets = dict.fromkeys((settings.results_bucket, *settings.source_buckets, FOREIGN_BUCKET))
    for bucket in buckets:
        s3.create_bucket(Bucket=bucket)
    create_products_table(dynamodb, settings.table_name)


def read_json(s3: Any, bucket: str, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def read_jsonl(s3: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return sorted(keys)


@dataclass
class CatalogAws:
    """moto clients with the catalog's buckets and table, and settings that name them."""

    s3: Any
    dynamodb: Any
    catalog: CatalogSettings
    descriptions: PipelineSettings

    def environment(self, **catalog_overrides: Any) -> CatalogEnvironment:
        """The functions' environment; overrides change the default catalog settings (the
        buckets and table stay those created here)."""
        catalog = catalog_settings(**catalog_overrides) if catalog_overrides else self.catalog
        return CatalogEnvironment(catalog=catalog, descriptions=self.descriptions)


@pytest.fixture
def catalog_aws() -> Iterator[CatalogAws]:
    """Import this fixture into a test module to use it (moto, fresh per test)."""
    with mock_aws():
        aws = CatalogAws(
            s3=boto3.client("s3"),
            dynamodb=boto3.client("dynamodb"),
            catalog=catalog_settings(),
            descriptions=descriptions_settings(),
        )
        create_catalog_resources(aws.s3, aws.dynamodb, aws.catalog)
        yield aws


def listing_items(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    """The prefix's objects as the Distributed Map's S3 listing reader hands them to a child."""
    items: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", []):
            items.append(
                {
                    "Key": entry["Key"],
                    "Size": entry["Size"],
                    "Etag": entry["ETag"],
                    "LastModified": entry["LastModified"].isoformat(),
                    "StorageClass": entry.get("StorageClass", "STANDARD"),
                }
            )
    return items


def csv_items(text: str) -> list[dict[str, str]]:
    """A CSV manifest's rows as the Distributed Map's CSV reader (header in the first row)
    hands them over: every value a string."""
    return [dict(row) for row in csv.DictReader(io.StringIO(text))]


def batch_event(
    items: Sequence[Any],
    *,
    run_id: str = "20261122081645-0123abcd",
    kind: str = "prefix",
    bucket: str = UPLOADS_BUCKET,
    languages: Sequence[str] = ("en",),
    attribute_set: str = "default",
    force: bool = False,
) -> dict[str, Any]:
    """The event of one Distributed Map child (ItemBatcher with BatchInput)."""
    return {
        "Items": list(items),
        "BatchInput": {
            "runId": run_id,
            "kind": kind,
            "bucket": bucket,
            "languages": list(languages),
            "attributeSet": attribute_set,
            "force": force,
        },
    }


def store_description(
    dynamodb: Any, table_name: str, product_id: str, languages: Sequence[str] = ("en",)
) -> None:
    """A product's stored description in `languages`, as the pipeline writes it."""
    entries: Mapping[str, LocalizedDescription] = {
        code: LocalizedDescription.model_validate(grounded_entry(code)) for code in languages
    }
    DynamoDescriptionTable(table_name, dynamodb=dynamodb).put(
        StoredDescription(
            product_id=product_id,
            category="default",
            image_key=f"s3://{UPLOADS_BUCKET}/images/{product_id}.jpg",
            image_sha256="0" * 64,
            attributes={"fabric": "Fabric: Cotton"},
            descriptions=dict(entries),
            grounding=GroundingReport(
                checked_language="en", covered=["fabric"], missing=[], contradictions=[]
            ),
            attribute_model="endpoint",
            text_model="model",
            timings_ms={"total": 1},
            usage={"inputTokens": 1, "outputTokens": 1},
            result_key=f"descriptions/{product_id}.json",
            created_at="2026-11-22T08:00:00.000+00:00",
            version="1",
        )
    )
