"""What a catalog run reads: its request, and the products its source names.

A run's source is an S3 prefix of images or a manifest (CSV or JSON Lines) in a bucket the
deployment may read. The start step checks the request once; the Distributed Map then hands the
source to the build step in batches of items: S3 listing entries for a prefix, rows for a
manifest. Each item becomes a `ProductRef` or a `FailureRecord` whose reason tells the user what
to change; the only items dropped without a record are folder markers (keys ending in `/`),
which name no file at all.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from catalog.logic.errors import CatalogInputError
from catalog.logic.layout import parse_s3_uri, s3_uri
from descriptions.logic.requests import DEFAULT_CATEGORY, Question, languages_for, questions_for
from shared.models.catalog import FailureRecord, ProductRef, Stage
from shared.models.descriptions import PRODUCT_ID_PATTERN, PipelineSettings
from shared.models.errors import RequestError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
MANIFEST_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl"}
START_FIELDS = ("source", "languages", "attributeSet", "force")
BATCH_ID_HEX_CHARS = 16

_PRODUCT_ID = re.compile(PRODUCT_ID_PATTERN)
_ID_RULE = "use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
_SHOWN_CHARS = 200


class SourceKind(StrEnum):
    PREFIX = "prefix"
    CSV = "csv"
    JSONL = "jsonl"


@dataclass(frozen=True)
class CatalogSource:
    kind: SourceKind
    bucket: str
    # The prefix (ends with "/", or "" for a whole bucket) or the manifest's key.
    path: str

    @property
    def uri(self) -> str:
        return s3_uri(self.bucket, self.path)


@dataclass(frozen=True)
class StartRequest:
    source: CatalogSource
    languages: tuple[str, ...]
    attribute_set: str
    force: bool


@dataclass(frozen=True)
class BatchOptions:
    """What the state machine passes to every Distributed Map child (`BatchInput`)."""

    run_id: str
    kind: SourceKind
    # The source bucket: manifest rows may name images by key within it.
    bucket: str
    languages: tuple[str, ...]
    attribute_set: str
    force: bool


@dataclass(frozen=True)
class PendingProduct:
    """A product that passed every check that needs no I/O, with its category's questions."""

    ref: ProductRef
    category: str
    questions: tuple[Question, ...]


@dataclass(frozen=True)
class ScreenedBatch:
    products: tuple[PendingProduct, ...]
    failures: tuple[FailureRecord, ...]


# --- the start request ----------------------------------------------------------------------


def parse_start_request(
    document: Any, *, source_buckets: Sequence[str], descriptions: PipelineSettings
) -> StartRequest:
    """The execution input, checked; CatalogInputError names the first bad field and the fix."""
    if not isinstance(document, Mapping):
        raise CatalogInputError(
            "input_malformed",
            'the execution input must be a JSON object, e.g. {"source": "s3://bucket/images/"}',
        )
    unknown = [name for name in document if name not in START_FIELDS]
    if unknown:
        raise CatalogInputError(
            "input_unknown_field",
            f"unknown field {str(unknown[0])[:_SHOWN_CHARS]!r} in the execution input; "
            f"allowed fields: {', '.join(START_FIELDS)}",
        )
    source = parse_source(document.get("source"), source_buckets)
    languages = _languages(document.get("languages"), descriptions)
    attribute_set = _attribute_set(document.get("attributeSet"), descriptions)
    force = document.get("force", False)
    if not isinstance(force, bool):
        raise CatalogInputError(
            "force_invalid",
            f"force must be true or false (JSON booleans), not {json.dumps(force)[:50]}",
        )
    return StartRequest(source, tuple(languages), attribute_set, force)


def parse_source(value: Any, source_buckets: Sequence[str]) -> CatalogSource:
    example = (
        "e.g. s3://bucket/images/ (a prefix of images), s3://bucket/products.csv or "
        "s3://bucket/products.jsonl (a manifest)"
    )
    if value is None:
        raise CatalogInputError("source_missing", f"source is required; {example}")
    if not isinstance(value, str):
        raise CatalogInputError("source_invalid", f"source must be an s3:// URI; {example}")
    try:
        bucket, path = parse_s3_uri(value.strip())
    except ValueError as error:
        raise CatalogInputError("source_invalid", f"source: {error}; {example}") from None
    if bucket not in source_buckets:
        raise CatalogInputError(
            "source_bucket_not_allowed",
            f"source bucket {bucket[:_SHOWN_CHARS]!r} is not one the catalog workflow may read "
            f"(allowed: {', '.join(source_buckets)}); copy the images or the manifest into one "
            "of them",
        )
    if path == "" or path.endswith("/"):
        return CatalogSource(SourceKind.PREFIX, bucket, path)
    for extension, kind in MANIFEST_EXTENSIONS.items():
        if path.lower().endswith(extension):
            return CatalogSource(SourceKind(kind), bucket, path)
    raise CatalogInputError(
        "source_invalid",
        f"source {value[:_SHOWN_CHARS]!r} is neither a prefix (ending with '/') nor a .csv or "
        f".jsonl manifest; {example}",
    )


def _languages(value: Any, descriptions: PipelineSettings) -> list[str]:
    if value is not None and (
        not isinstance(value, list) or not all(isinstance(code, str) for code in value)
    ):
        raise CatalogInputError(
            "languages_invalid", 'languages must be a list of language codes, e.g. ["en", "de"]'
        )
    try:
        return languages_for(descriptions, value)
    except RequestError as error:
        raise CatalogInputError(error.code, f"languages: {error.message}") from None


def _attribute_set(value: Any, descriptions: PipelineSettings) -> str:
    if value is not None and not isinstance(value, str):
        raise CatalogInputError(
            "attribute_set_invalid",
            'attributeSet must be the name of a configured category, e.g. "default"',
        )
    try:
        category, _ = questions_for(descriptions, value)
    except RequestError as error:
        raise CatalogInputError(
            "attribute_set_unknown",
            f"attributeSet: {error.message}; add the category to descriptions.categories in "
            "cdk.json to use it",
        ) from None
    return category


def empty_source_error(source: CatalogSource) -> CatalogInputError:
    if source.kind is SourceKind.PREFIX:
        return CatalogInputError(
            "source_empty",
            f"{source.uri} holds no objects; put the images there or check the prefix "
            "(it is case-sensitive and must end with '/')",
        )
    return CatalogInputError(
        "manifest_missing",
        f"the manifest {source.uri} does not exist; upload it first or check the key "
        "(it is case-sensitive)",
    )


def empty_manifest_error(source: CatalogSource) -> CatalogInputError:
    return CatalogInputError(
        "manifest_empty",
        f"the manifest {source.uri} is empty; it needs a line per product with product_id "
        "and image_key (a CSV needs a header row naming those columns)",
    )


def run_id_for(execution_name: str, start_time: str) -> str:
    """`<YYYYMMDDHHMMSS>-<8 hex>`: sorts by start time, and the same execution always gets the
    same id, so a retried start step writes over its own files."""
    try:
        started = datetime.fromisoformat(start_time)
    except ValueError:
        raise ValueError(
            f"startTime {start_time[:_SHOWN_CHARS]!r} is not ISO-8601; the state machine passes "
            "$states.context.Execution.StartTime"
        ) from None
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    stamp = started.astimezone(UTC).strftime("%Y%m%d%H%M%S")
    return f"{stamp}-{hashlib.sha256(execution_name.encode()).hexdigest()[:8]}"


def start_result(run_id: str, request: StartRequest) -> dict[str, Any]:
    """What the start step returns; the state machine passes it on to the map and plan."""
    location = "prefix" if request.source.kind is SourceKind.PREFIX else "key"
    return {
        "runId": run_id,
        "kind": request.source.kind.value,
        "bucket": request.source.bucket,
        location: request.source.path,
        "languages": list(request.languages),
        "attributeSet": request.attribute_set,
        "force": request.force,
    }


# --- one Distributed Map batch --------------------------------------------------------------


def parse_batch_options(document: Any) -> BatchOptions:
    """The map's `BatchInput`; anything missing is a state machine bug, not a client's."""
    if not isinstance(document, Mapping):
        raise ValueError("BatchInput is missing; the state machine must pass the start result")
    try:
        return BatchOptions(
            run_id=str(document["runId"]),
            kind=SourceKind(document["kind"]),
            bucket=str(document["bucket"]),
            languages=tuple(str(code) for code in document["languages"]),
            attribute_set=str(document["attributeSet"]),
            force=bool(document["force"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"BatchInput is malformed ({error!r}); expected the start result"
        ) from None


def batch_id_for(items: Sequence[Any]) -> str:
    """The first 16 hex characters of SHA-256 over the items' canonical JSON: a retried child
    gets the same items, hence the same id, and writes over its own files."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(json.dumps(item, sort_keys=True, separators=(",", ":"), default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:BATCH_ID_HEX_CHARS]


def product_from_listing(
    entry: Any, *, bucket: str, attribute_set: str
) -> ProductRef | FailureRecord | None:
    """An S3 listing entry of a prefix source: `<prefix>/<productId>.<ext>`. None for folder
    markers, which are not files."""
    key = entry.get("Key") if isinstance(entry, Mapping) else None
    if not isinstance(key, str) or not key:
        return _failure("", "", attribute_set, "the S3 listing entry names no Key")
    if key.endswith("/"):
        return None
    uri = s3_uri(bucket, key)
    name = key.rsplit("/", 1)[-1]
    stem, dot, extension = name.rpartition(".")
    if not dot or f".{extension.lower()}" not in IMAGE_EXTENSIONS:
        return _failure(
            "",
            uri,
            attribute_set,
            f"{name[:_SHOWN_CHARS]!r} is not an image file name: only "
            f"{', '.join(IMAGE_EXTENSIONS)} files under the source prefix are described; move "
            "other files out of the prefix, or list the images in a manifest",
        )
    if not _PRODUCT_ID.fullmatch(stem):
        return _failure(
            stem[:_SHOWN_CHARS],
            uri,
            attribute_set,
            f"product id {stem[:_SHOWN_CHARS]!r} (the file name without its extension) is not "
            f"valid: {_ID_RULE}; rename the file, e.g. 38642.jpg",
        )
    return ProductRef(product_id=stem, image_key=uri, category=attribute_set)


def product_from_row(
    row: Any, *, manifest_bucket: str, source_buckets: Sequence[str], attribute_set: str
) -> ProductRef | FailureRecord:
    """A manifest row: CSV (every value a string, empty meaning missing) or a JSON Lines object.
    Columns other than product_id, image_key and category are ignored, so a failures report
    (which adds stage and reason) is itself a manifest."""
    if not isinstance(row, Mapping):
        return _failure(
            "",
            "",
            attribute_set,
            "the manifest line is not an object with product_id and image_key; write one JSON "
            'object per line, e.g. {"product_id": "38642", "image_key": "images/38642.jpg"}',
        )
    raw_id, id_problem = _text(row.get("product_id"), allow_number=True)
    raw_image, image_problem = _text(row.get("image_key"))
    raw_category, category_problem = _text(row.get("category"))
    category = raw_category or attribute_set
    image_uri = _image_uri(raw_image, manifest_bucket) if raw_image else ""
    product_id = raw_id or ""
    if id_problem or not raw_id:
        reason = f"product_id {id_problem}" if id_problem else "the manifest row has no product_id"
        return _failure(product_id, image_uri, category, f"{reason}; add one: {_ID_RULE}")
    if not _PRODUCT_ID.fullmatch(raw_id):
        return _failure(
            raw_id[:_SHOWN_CHARS],
            image_uri,
            category,
            f"product_id {raw_id[:_SHOWN_CHARS]!r} is not valid: {_ID_RULE}",
        )
    if image_problem or not raw_image:
        return _failure(
            raw_id,
            "",
            category,
            (f"image_key {image_problem}" if image_problem else "the manifest row has no image_key")
            + "; give the image's key in the manifest's bucket or a full s3://bucket/key URI",
        )
    if category_problem:
        return _failure(raw_id, image_uri, attribute_set, f"category {category_problem}")
    problem = _image_uri_problem(image_uri, source_buckets)
    if problem:
        return _failure(raw_id, image_uri, category, problem)
    return ProductRef(product_id=raw_id, image_key=image_uri, category=category)


def _text(value: Any, *, allow_number: bool = False) -> tuple[str | None, str | None]:
    """(stripped text or None when missing/empty, problem or None)."""
    if value is None:
        return None, None
    if allow_number and isinstance(value, int) and not isinstance(value, bool):
        return str(value), None
    if not isinstance(value, str):
        return None, f"must be text, not {type(value).__name__}"
    stripped = value.strip()
    return (stripped or None), None


def _image_uri(image_key: str, manifest_bucket: str) -> str:
    if image_key.startswith("s3://"):
        return image_key
    return s3_uri(manifest_bucket, image_key.lstrip("/"))


def _image_uri_problem(uri: str, source_buckets: Sequence[str]) -> str | None:
    try:
        bucket, key = parse_s3_uri(uri)
    except ValueError as error:
        return f"image_key: {error}; use s3://bucket/key or a key in the manifest's bucket"
    if not key or key.endswith("/"):
        return (
            f"image_key {uri[:_SHOWN_CHARS]!r} names a folder, not an image file; give the "
            "image's full key"
        )
    if bucket not in source_buckets:
        return (
            f"image bucket {bucket[:_SHOWN_CHARS]!r} is not one the catalog workflow may read "
            f"(allowed: {', '.join(source_buckets)}); copy the image into one of them"
        )
    return None


def _failure(product_id: str, image_key: str, category: str | None, reason: str) -> FailureRecord:
    return FailureRecord(
        product_id=product_id,
        image_key=image_key,
        category=category,
        stage=Stage.INPUT,
        reason=reason,
    )


def input_failure(ref: ProductRef, reason: str) -> FailureRecord:
    """A product that was well named but whose image or request cannot be used."""
    return _failure(ref.product_id, ref.image_key, ref.category, reason)


def screen_batch(
    items: Iterable[Any],
    options: BatchOptions,
    *,
    source_buckets: Sequence[str],
    descriptions: PipelineSettings,
) -> ScreenedBatch:
    """Every check of a batch's items that needs no I/O, in item order: names, buckets,
    categories, and duplicates (the first occurrence of a product id in the batch wins)."""
    products: list[PendingProduct] = []
    failures: list[FailureRecord] = []
    first_image: dict[str, str] = {}
    questions_by_category: dict[str, tuple[str, tuple[Question, ...]] | str] = {}
    for item in items:
        if options.kind is SourceKind.PREFIX:
            parsed = product_from_listing(
                item, bucket=options.bucket, attribute_set=options.attribute_set
            )
        else:
            parsed = product_from_row(
                item,
                manifest_bucket=options.bucket,
                source_buckets=source_buckets,
                attribute_set=options.attribute_set,
            )
        if parsed is None:
            continue
        if isinstance(parsed, FailureRecord):
            failures.append(parsed)
            continue
        category = parsed.category or DEFAULT_CATEGORY
        if category not in questions_by_category:
            questions_by_category[category] = _questions(descriptions, category)
        resolved = questions_by_category[category]
        if isinstance(resolved, str):
            failures.append(input_failure(parsed, resolved))
            continue
        if parsed.product_id in first_image:
            failures.append(
                input_failure(
                    parsed,
                    f"product id {parsed.product_id!r} appears more than once in this batch "
                    f"(first with image {first_image[parsed.product_id]}); give each product "
                    "one row (one image) and remove the duplicate",
                )
            )
            continue
        first_image[parsed.product_id] = parsed.image_key
        products.append(PendingProduct(parsed, resolved[0], resolved[1]))
    return ScreenedBatch(tuple(products), tuple(failures))


def _questions(
    descriptions: PipelineSettings, category: str
) -> tuple[str, tuple[Question, ...]] | str:
    try:
        chosen, questions = questions_for(descriptions, category)
    except RequestError as error:
        return (
            f"{error.message}; fix the row's category or add it to descriptions.categories in "
            "cdk.json"
        )
    return chosen, tuple(questions)


def already_described(
    stored_languages: Mapping[str, frozenset[str]], product_id: str, languages: Iterable[str]
) -> bool:
    """True when the stored description of `product_id` covers every requested language."""
    stored = stored_languages.get(product_id)
    return stored is not None and all(code in stored for code in languages)
