"""Benchmarks of the `atelier` command line (`make bench`), as ratios measured in one run.

1. Start-up: `atelier --help` and `atelier train --help` against a bare `python -c pass` and
   `python -c "import boto3"`, each the median of several runs in fresh processes: what typer
   and rich cost before any command runs (boto3, botocore's HTTP stack and the training code are
   imported only by the commands that use them).
2. Resume: a 64 MiB file in 8 MiB parts, its upload interrupted after half the parts, then run
   again. Target: the second run sends only the missing half (bytes sent / file size = 0.5).
   Against moto's S3 in this process: the bytes are counted, not timed.
3. Skip unchanged: uploading a folder of 200 files again after the first upload. Target: the
   second run sends no byte (one HEAD per file instead of a PUT). Its time against moto in this
   process is printed too, but says little: on a network both requests cost a round trip, and
   what the second run saves is the bytes.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "training")]
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
)

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

from atelier_cli.s3_transfer import MIB, Settings, upload_files  # noqa: E402

RUNS = 7


def median_seconds(command: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)  # noqa: S603
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def startup() -> None:
    """Help must not wait for the AWS SDK: compared with a bare interpreter and with importing
    boto3 alone (goal: at most 1.5x `import boto3`)."""
    atelier = str(Path(sys.executable).parent / "atelier")
    bare = median_seconds([sys.executable, "-c", "pass"])
    sdk = median_seconds([sys.executable, "-c", "import boto3"])
    helped = median_seconds([atelier, "--help"])
    group = median_seconds([atelier, "train", "--help"])
    print(f"start-up: atelier --help {helped:.2f} s, atelier train --help {group:.2f} s, "
          f"python -c pass {bare:.2f} s, python -c 'import boto3' {sdk:.2f} s "
          f"(--help {helped / sdk:.2f}x import boto3; median of {RUNS})")  # fmt: skip


class StopAfter:
    """An S3 client that fails after `parts` upload_part calls, as a dropped connection would,
    and counts the bytes of the parts it sends."""

    def __init__(self, client: Any, parts: int | None) -> None:
        self._client, self._parts, self.sent = client, parts, 0

    def upload_part(self, **arguments: Any) -> Any:
        if self._parts is not None and self._parts == 0:
            raise ConnectionResetError("interrupted")
        if self._parts is not None:
            self._parts -= 1
        self.sent += len(arguments["Body"])
        return self._client.upload_part(**arguments)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def resume(folder: Path) -> None:
    big = folder / "model.tar.gz"
    big.write_bytes(os.urandom(64 * MIB))
    settings = Settings(part_size=8 * MIB, multipart_threshold=16 * MIB)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="bench-models")
        first = StopAfter(s3, parts=4)
        with contextlib.suppress(ConnectionResetError):
            upload_files(first, "bench-models", [(big, "m.tar.gz")], settings=settings)
        second = StopAfter(s3, parts=None)
        upload_files(second, "bench-models", [(big, "m.tar.gz")], settings=settings)
    size = big.stat().st_size
    print(f"resume: interrupted after {first.sent / MIB:.0f} MiB, the second run sent "
          f"{second.sent / MIB:.0f} MiB of {size / MIB:.0f} MiB ({second.sent / size:.2f} of "
          "the file; target 0.50)")  # fmt: skip


def skip_unchanged(folder: Path) -> None:
    files = []
    for number in range(200):
        path = folder / f"img_{number:03d}.jpg"
        path.write_bytes(os.urandom(64 * 1024))
        files.append((path, f"ds/{path.name}"))
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="bench-datasets")
        started = time.perf_counter()
        first = upload_files(s3, "bench-datasets", files)
        assert len(first.uploaded) == len(files)
        first_seconds = time.perf_counter() - started
        started = time.perf_counter()
        second = upload_files(s3, "bench-datasets", files)
        second_seconds = time.perf_counter() - started
    total = sum(path.stat().st_size for path, _ in files)
    print(f"skip unchanged: 200 files ({total / MIB:.1f} MiB); the second run sent "
          f"{second.bytes_sent} bytes ({len(second.unchanged)} unchanged, target: 0 bytes); "
          f"in-process time {second_seconds:.2f} s vs {first_seconds:.2f} s")  # fmt: skip


def main() -> None:
    startup()
    with tempfile.TemporaryDirectory() as scratch:
        resume(Path(scratch))
    with tempfile.TemporaryDirectory() as scratch:
        skip_unchanged(Path(scratch))


if __name__ == "__main__":
    main()
