"""Where adapters live: a local folder (tests, local runs, adapters staged in the archive) or an
S3 prefix (the endpoint).

An adapter named `<name>` is the pair of files a training run writes:
`<name>/adapter_model.safetensors` (the LoRA weights in the diffusers format that
`load_lora_weights` reads) and `<name>/adapter.json` (its metadata, optional here). In S3 the
pair may instead sit inside the run's archive, `<prefix><name>/model.tar.gz`, which is read with
every member checked first (see `safe_tar`).

`fetched(name)` is a context manager yielding a local folder holding the weights: the folder
store's own folder, or for S3 a staging folder under the download directory, removed when the
block ends. The loaded adapter on the pipeline is the cache; the staging folder only lives as
long as the load, so the disk never fills with adapters. A reused adapter that was evicted is
downloaded again (megabytes, from S3 in the same region).

Names are the only part of a key a caller controls: they are checked (`ADAPTER_NAME`) before any
file or S3 object is touched, so no request can reach outside the prefix.

Adapters are read once per load: a new version of an adapter must get a new name (or the
endpoint restarted), because a loaded adapter is not compared with S3 again.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from lora_serving.safe_tar import UnsafeArchiveError, extract_members

ADAPTER_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
WEIGHTS_FILE = "adapter_model.safetensors"
METADATA_FILE = "adapter.json"
ARCHIVE_FILE = "model.tar.gz"
# A LoRA adapter of SDXL is tens to hundreds of megabytes; anything far larger is not one.
MAX_ADAPTER_BYTES = 2 * 1024**3
_NOT_FOUND_CODES = ("NoSuchKey", "404", "NotFound")


class AdapterError(ValueError):
    """A request's adapter cannot be used. A ValueError, so the inference toolkit answers the
    caller with a 400 carrying the message (the API maps that to a 4xx), as for a bad field."""


class InvalidAdapterNameError(AdapterError):
    def __init__(self, name: object) -> None:
        super().__init__(
            f'"adapter" must be 1 to 63 lowercase letters, digits and hyphens, starting with a '
            f"letter or digit; got {name!r}"
        )


class UnknownAdapterError(AdapterError):
    def __init__(self, name: str, where: str) -> None:
        self.name = name
        super().__init__(
            f'unknown adapter "{name}": no {WEIGHTS_FILE} or {ARCHIVE_FILE} at {where}'
        )


class BrokenAdapterError(AdapterError):
    """The adapter exists but its files cannot be used (bad archive, bad metadata, bad weights)."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        super().__init__(f'adapter "{name}" cannot be used: {problem}')


def checked_name(name: object) -> str:
    if not isinstance(name, str) or not ADAPTER_NAME.fullmatch(name):
        raise InvalidAdapterNameError(name)
    return name


def read_metadata(folder: Path, name: str) -> dict[str, Any]:
    """`adapter.json` as a dict, `{}` when the adapter has none."""
    path = folder / METADATA_FILE
    if not path.is_file():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise BrokenAdapterError(name, f"{METADATA_FILE} is not valid JSON: {error}") from error
    if not isinstance(document, dict):
        raise BrokenAdapterError(name, f"{METADATA_FILE} must hold a JSON object")
    return document


class AdapterStore(Protocol):
    def describe(self, name: str) -> str:
        """Where adapter `name` is looked for (for messages)."""
        ...

    def fetched(self, name: str) -> Any:
        """A context manager yielding a local folder with the adapter's files."""
        ...


class FolderAdapterStore:
    """Adapters as sub-folders of a local folder: `<root>/<name>/adapter_model.safetensors`."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def describe(self, name: str) -> str:
        return str(self.root / name)

    @contextmanager
    def fetched(self, name: str) -> Iterator[Path]:
        folder = self.root / checked_name(name)
        if not (folder / WEIGHTS_FILE).is_file():
            raise UnknownAdapterError(name, self.describe(name))
        read_metadata(folder, name)
        yield folder


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/prefix/` → (bucket, "prefix/"); the prefix ends in "/" (or is empty)."""
    match = re.fullmatch(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/?(.*)", uri.strip())
    if match is None:
        raise ValueError(f"{uri!r} is not an S3 URI like s3://bucket/adapters/")
    bucket, prefix = match.groups()
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix


class S3AdapterStore:
    """Adapters under `s3://<bucket>/<prefix><name>/`, downloaded into `download_dir` to load."""

    def __init__(
        self, bucket: str, prefix: str, client: Any, *, download_dir: Path | str | None = None
    ) -> None:
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.bucket = bucket
        self.prefix = prefix
        self.client = client
        self.download_dir = Path(download_dir or tempfile.gettempdir())

    def key(self, name: str, file_name: str) -> str:
        return f"{self.prefix}{checked_name(name)}/{file_name}"

    def describe(self, name: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{name}/"

    @contextmanager
    def fetched(self, name: str) -> Iterator[Path]:
        checked_name(name)
        self.download_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=self.download_dir))
        try:
            if self._download(self.key(name, WEIGHTS_FILE), staging / WEIGHTS_FILE):
                self._download(self.key(name, METADATA_FILE), staging / METADATA_FILE)
            elif self._download(self.key(name, ARCHIVE_FILE), staging / ARCHIVE_FILE):
                self._unpack(name, staging)
            else:
                raise UnknownAdapterError(name, self.describe(name))
            read_metadata(staging, name)
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _download(self, key: str, target: Path) -> bool:
        """Whether the object exists; its body written to `target` when it does."""
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in _NOT_FOUND_CODES:
                return False
            if code in ("AccessDenied", "403"):
                # Without s3:ListBucket on the prefix S3 answers a missing key with 403, not 404.
                raise PermissionError(
                    f"access denied reading s3://{self.bucket}/{key}: the endpoint's role needs "
                    f"s3:GetObject on s3://{self.bucket}/{self.prefix}* and s3:ListBucket on the "
                    "prefix (without it a missing adapter reads as access denied)"
                ) from error
            raise
        size = int(response.get("ContentLength") or 0)
        if size > MAX_ADAPTER_BYTES:
            response["Body"].close()
            raise BrokenAdapterError(
                key.split("/")[-2],
                f"s3://{self.bucket}/{key} is {size} bytes, more than an adapter",
            )
        with target.open("wb") as sink:
            shutil.copyfileobj(response["Body"], sink, length=1024 * 1024)
        return True

    def _unpack(self, name: str, staging: Path) -> None:
        archive = staging / ARCHIVE_FILE
        try:
            extract_members(
                archive, staging, wanted=(WEIGHTS_FILE, METADATA_FILE), max_bytes=MAX_ADAPTER_BYTES
            )
        except UnsafeArchiveError as error:
            raise BrokenAdapterError(
                name, f"{self.describe(name)}{ARCHIVE_FILE}: {error}"
            ) from error
        finally:
            archive.unlink(missing_ok=True)
        if not (staging / WEIGHTS_FILE).is_file():
            raise BrokenAdapterError(
                name, f"{self.describe(name)}{ARCHIVE_FILE} holds no {WEIGHTS_FILE} at its root"
            )
