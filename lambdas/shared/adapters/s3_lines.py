"""JSON Lines in S3, read and written as streams.

Catalog files hold up to tens of thousands of lines (and, for Batch Transform input, an image per
line), so nothing here holds a whole file: reading yields line by line from the response body, and
writing spools to a temporary file on local disk that is uploaded (multipart when large) on close.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import IO, Any

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.aws import as_dependency_error, client

_CHUNK_BYTES = 1024 * 1024
_TRANSFER = TransferConfig(multipart_threshold=64 * 1024 * 1024, max_concurrency=4)


def iter_lines(bucket: str, key: str, *, s3: Any | None = None) -> Iterator[bytes]:
    """The object's lines without their line ends, blank lines skipped, streamed."""
    s3 = s3 or client("s3")
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except (ClientError, BotoCoreError) as error:
        raise as_dependency_error(error, code_prefix="s3", what=f"s3://{bucket}/{key}") from error
    pending = b""
    for chunk in body.iter_chunks(_CHUNK_BYTES):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            if line.strip():
                yield line.rstrip(b"\r")
    if pending.strip():
        yield pending.rstrip(b"\r")


class JsonLinesWriter:
    """Writes JSON documents as lines into a spool file and uploads it on `close()`.

    Use as a context manager: on an exception nothing is uploaded, so a step that fails leaves no
    half-written file behind for the next step to trust.
    """

    def __init__(
        self,
        bucket: str,
        key: str,
        *,
        s3: Any | None = None,
        content_type: str = "application/jsonl",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.bucket = bucket
        self.key = key
        self.lines = 0
        self.bytes = 0
        self._s3 = s3 or client("s3")
        self._content_type = content_type
        self._metadata = dict(metadata or {})
        self._spool: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()

    def write(self, document: Mapping[str, Any]) -> int:
        """Append one line; returns its size in bytes (line end included)."""
        return self.write_raw(json.dumps(document, ensure_ascii=False, separators=(",", ":")))

    def write_raw(self, line: str | bytes) -> int:
        data = (line.encode() if isinstance(line, str) else line) + b"\n"
        self._spool.write(data)
        self.lines += 1
        self.bytes += len(data)
        return len(data)

    def close(self, *, metadata: Mapping[str, str] | None = None) -> None:
        """Upload what was written (also when empty) and release the spool file."""
        try:
            self._spool.seek(0)
            extra = {"ContentType": self._content_type}
            merged = {**self._metadata, **(metadata or {})}
            if merged:
                extra["Metadata"] = merged  # type: ignore[assignment]
            self._s3.upload_fileobj(
                self._spool, self.bucket, self.key, ExtraArgs=extra, Config=_TRANSFER
            )
        except (ClientError, BotoCoreError) as error:
            raise as_dependency_error(
                error, code_prefix="s3", what=f"s3://{self.bucket}/{self.key}"
            ) from error
        finally:
            self._spool.close()

    def discard(self) -> None:
        self._spool.close()

    def __enter__(self) -> JsonLinesWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()
