"""`atelier describe IMAGE...`: product descriptions from photos, through the API (one signed
`POST /descriptions` per image) or, with `--async`, through the S3 upload path."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from atelier_cli.aws import translated_errors
from atelier_cli.errors import (
    AccessError,
    CliError,
    FailedError,
    NotDeployedError,
    ServiceError,
    UsageError,
)
from atelier_cli.local_files import CONTENT_TYPES, IMAGE_FORMATS, read_image
from atelier_cli.output import escape
from atelier_cli.runtime import JsonFlag, Run, command
from atelier_cli.signed_api import Api

# shared/models/descriptions.py PRODUCT_ID_PATTERN and the synchronous API's image limit
# (descriptions.image.max_bytes: at most 4 MiB, as a Lambda event carries 6 MB of base64).
PRODUCT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_SYNC_IMAGE_BYTES = 4 * 1024 * 1024
# lambdas/descriptions/logic/uploads.py: the metadata the upload worker reads.
PRODUCT_ID_METADATA = "product-id"
CATEGORY_METADATA = "category"
LANGUAGES_METADATA = "languages"


def register(root: typer.Typer) -> None:
    root.command("describe")(describe)
    root.command("description")(show_description)


@dataclass(frozen=True)
class Photo:
    """A checked product photo and the product it describes."""

    path: Path
    product_id: str
    data: bytes
    kind: str  # "jpeg", "png" or "webp"


def product_ids(images: list[Path], product_id: str | None) -> list[str]:
    if product_id is not None and len(images) > 1:
        raise UsageError(
            "--product-id names one product; it applies to one IMAGE only",
            fix="name each file after its product id (38642.jpg) and leave --product-id out",
        )
    ids = [product_id] if product_id is not None else [image.stem for image in images]
    for image, candidate in zip(images, ids, strict=True):
        if not PRODUCT_ID.fullmatch(candidate):
            raise UsageError(
                f"product id {candidate!r} (of {image}) is not 1-128 letters, digits, '.', '_' "
                "or '-' starting with a letter or digit",
                fix="rename the file to <product id>.jpg, or pass --product-id",
                code="invalid_product_id",
            )
    repeated = sorted({each for each in ids if ids.count(each) > 1})
    if repeated:
        raise UsageError(
            f"product id {repeated[0]} is given by two images",
            fix="describe one photo per product",
            code="duplicate_product_id",
        )
    return ids


def request_body(
    product_id: str, data: bytes, languages: list[str], category: str | None
) -> dict[str, Any]:
    import base64

    body: dict[str, Any] = {"productId": product_id, "image": base64.b64encode(data).decode()}
    if languages:
        body["languages"] = languages
    if category is not None:
        body["category"] = category
    return body


def describe(
    ctx: typer.Context,
    images: Annotated[list[Path], typer.Argument(help="Product photos (JPEG, PNG, WebP).")],
    language: Annotated[
        list[str] | None, typer.Option("--language", "-l", help="Repeatable (default: stage's).")
    ] = None,
    category: Annotated[
        str | None, typer.Option("--category", help="descriptions.categories key.")
    ] = None,
    product_id: Annotated[
        str | None, typer.Option("--product-id", help="With one IMAGE (default: file name).")
    ] = None,
    asynchronous: Annotated[
        bool,
        typer.Option("--async", help="Upload to the uploads bucket (incoming/) instead."),
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="With --async: wait for the descriptions.")
    ] = False,
    interval: Annotated[float, typer.Option("--interval", min=1)] = 10,
    timeout: Annotated[float, typer.Option("--timeout", min=1)] = 600,
    json_output: JsonFlag = False,
) -> None:
    """Describe products from their photos: attributes by the fine-tuned model, text by Claude.
    Exit 6 when some images failed (each failure is in the result)."""
    with command(ctx, "describe", json_output) as run:
        if wait and not asynchronous:
            raise UsageError("--wait applies to --async", fix="add --async, or leave --wait out")
        ids = product_ids(images, product_id)
        limit = None if asynchronous else MAX_SYNC_IMAGE_BYTES
        photos = [
            Photo(image, product, *read_image(image, option="IMAGE", max_bytes=limit))
            for image, product in zip(images, ids, strict=True)
        ]
        languages = language or []
        if asynchronous:
            uploaded = upload_for_description(run, photos, languages, category)
            result: dict[str, Any] = {"uploaded": uploaded}
            if wait:
                result["results"] = wait_for_descriptions(
                    run, ids, started=uploaded[0]["uploadedAt"], interval=interval, timeout=timeout
                )
            run.done(result, lambda console: _print_async(console, result))
            return
        results, errors = describe_now(run, photos, languages, category)
        finish(run, results, errors)


def describe_now(
    run: Run, photos: list[Photo], languages: list[str], category: str | None
) -> tuple[list[dict[str, Any]], list[CliError]]:
    """One call per image, going on past an image the API refused or could not describe."""
    api = Api(run)
    results: list[dict[str, Any]] = []
    errors: list[CliError] = []
    for photo in photos:
        run.note(f"describing {photo.path} as product {photo.product_id}")
        entry: dict[str, Any] = {"image": str(photo.path), "productId": photo.product_id}
        try:
            stored = api.call(
                "POST",
                "/descriptions",
                request_body(photo.product_id, photo.data, languages, category),
            )
        except (AccessError, NotDeployedError):
            # The stage cannot describe anything (no permission, no endpoint): stop at once.
            raise
        except (UsageError, ServiceError) as error:
            errors.append(error)
            results.append({**entry, "ok": False, "error": error.to_dict()})
            continue
        results.append({**entry, "ok": True, "description": stored})
    return results, errors


def finish(run: Run, results: list[dict[str, Any]], errors: list[CliError]) -> None:
    """All described: exit 0. One image: its own error. Several with failures: exit 6."""
    failed = len(errors)
    document = {"results": results, "described": len(results) - failed, "failed": failed}
    if errors and len(results) == 1:
        raise errors[0]
    if errors:
        raise FailedError(
            f"{failed} of {len(results)} images could not be described",
            fix="see each failure's code and message; fix those images and describe them again",
            code="some_failed",
            details=document,
        )
    run.done(document, lambda console: _print_descriptions(console, results))


def show_description(
    ctx: typer.Context,
    products: Annotated[list[str], typer.Argument(help="Product ids.")],
    json_output: JsonFlag = False,
) -> None:
    """Show stored descriptions (GET /descriptions/{productId}). Exit 3 if one is missing."""
    with command(ctx, "description", json_output) as run:
        for product in products:
            if not PRODUCT_ID.fullmatch(product):
                raise UsageError(f"product id {product!r} is not a valid product id")
        api = Api(run)
        results = [
            {
                "productId": product,
                "ok": True,
                "description": api.call("GET", f"/descriptions/{product}"),
            }
            for product in products
        ]
        run.done({"results": results}, lambda console: _print_descriptions(console, results))


# --- the S3 upload path ----------------------------------------------------------------------


def upload_for_description(
    run: Run, photos: list[Photo], languages: list[str], category: str | None
) -> list[dict[str, Any]]:
    """Each photo to `incoming/<productId>.<ext>` with the metadata the upload worker reads,
    encrypted with the stage's data key."""
    bucket = run.resources.published("data", "uploads-bucket")
    prefix = run.resources.published("api", "uploads-prefix")
    key_arn = run.resources.published("data", "kms-key-arn")
    s3 = run.aws.client("s3")
    metadata_base: dict[str, str] = {}
    if languages:
        metadata_base[LANGUAGES_METADATA] = ",".join(languages)
    if category is not None:
        metadata_base[CATEGORY_METADATA] = category
    uploaded: list[dict[str, Any]] = []
    for photo in photos:
        key = f"{prefix}{photo.product_id}{IMAGE_FORMATS[photo.kind]}"
        started = datetime.now(UTC).isoformat()
        with translated_errors(f"upload {photo.path} to s3://{bucket}/{key}"):
            s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=photo.data,
                ContentType=CONTENT_TYPES[photo.kind],
                Metadata={PRODUCT_ID_METADATA: photo.product_id, **metadata_base},
                ServerSideEncryption="aws:kms",
                SSEKMSKeyId=key_arn,
            )
        run.note(f"uploaded {photo.path} to s3://{bucket}/{key}")
        uploaded.append(
            {"image": str(photo.path), "productId": photo.product_id, "uri": f"s3://{bucket}/{key}",
             "uploadedAt": started}
        )  # fmt: skip
    return uploaded


def wait_for_descriptions(
    run: Run, ids: list[str], *, started: str, interval: float, timeout: float
) -> list[dict[str, Any]]:
    """Poll `GET /descriptions/{id}` until each product has a description newer than the
    upload (an older one from an earlier run does not count)."""
    api = Api(run)
    pending = list(ids)
    found: dict[str, Any] = {}
    began = run.hooks.clock()
    while pending:
        for product in list(pending):
            try:
                stored = api.call("GET", f"/descriptions/{product}")
            except NotDeployedError as error:
                if error.code != "not_found":
                    raise
                continue
            if isinstance(stored, dict) and created_since(stored.get("createdAt"), started):
                found[product] = stored
                pending.remove(product)
                run.note(f"described {product}")
        if not pending:
            break
        if run.hooks.clock() - began >= timeout:
            raise ServiceError(
                f"no new description after {timeout:g} s for: {', '.join(pending)}",
                fix="the upload worker may still be busy or may have parked the upload in the "
                "dead-letter queue with its reason (errorCode, errorMessage); "
                "look again later with --async --wait, or describe the photo synchronously",
                code="wait_timeout",
                details={"described": sorted(found), "pending": pending},
            )
        run.hooks.sleep(interval)
    return [{"productId": product, "ok": True, "description": found[product]} for product in ids]


def created_since(created_at: Any, started: str) -> bool:
    """Whether a stored description was written after `started` (both ISO 8601; the pipeline
    writes UTC with milliseconds)."""
    try:
        created = datetime.fromisoformat(str(created_at))
    except ValueError:
        return False
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    # The pipeline's clock and ours may differ by a little; a second of slack.
    return created >= datetime.fromisoformat(started) - timedelta(seconds=1)


# --- output --------------------------------------------------------------------------------------


def _print_descriptions(console: Console, results: list[dict[str, Any]]) -> None:
    table = Table(title="Descriptions")
    for column in ("product", "language", "title", "first bullets"):
        table.add_column(column)
    for entry in results:
        stored = entry.get("description") or {}
        for language, text in (stored.get("descriptions") or {}).items():
            bullets = "; ".join(text.get("bullets", [])[:2])
            table.add_row(
                entry["productId"], language, escape(text.get("title", "")), escape(bullets)
            )
    console.print(table)


def _print_async(console: Console, result: dict[str, Any]) -> None:
    for entry in result["uploaded"]:
        console.print(f"{entry['productId']}: uploaded to {escape(entry['uri'])}")
    if "results" in result:
        _print_descriptions(console, result["results"])
    else:
        console.print(
            "The upload worker describes them in the background; read them with "
            "atelier description <product id>."
        )
