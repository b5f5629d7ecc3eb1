"""Benchmarks of the catalog workflow's builders and parsers (`make bench`).

A catalog run moves every product through four streaming stages, each a generator over JSON
lines that one Lambda invocation runs over a whole part or group:

1. transform input: a product and its image → the Batch Transform request line and index line;
2. Bedrock input: index lines zipped with Batch Transform's output → Bedrock records + ledger;
3. Bedrock output: Converse answers (and error records, malformed lines) → parsed outcomes;
4. results: the ledger (SQLite) joined with the parsed outcomes, grounding-checked, → stored
   descriptions or failures, then a failure for every record left unanswered.

Target: each stage's peak Python heap (tracemalloc) for 100,000 records is at most 1.2x that for
10,000, that is, memory does not grow with the catalog. Synthetic lines are generated one at a
time and every output line is written to a file, as the Lambdas do, so nothing but the stage
itself can hold records. SQLite's page cache lives outside the Python heap; the ledger bounds it
with `PRAGMA cache_size`, and the process's peak RSS is printed beside the heap figures.
Records per second are measured in the same run (with tracemalloc off, which slows Python).
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "lambdas")]

from catalog.logic.bedrock_records import (  # noqa: E402
    BedrockRecord,
    build_bedrock_lines,
    parse_output_lines,
    record_id,
)
from catalog.logic.ledger import Ledger  # noqa: E402
from catalog.logic.results import BedrockJob, ResultCounts, describe_outputs  # noqa: E402
from catalog.logic.transform_output import TransformJob  # noqa: E402
from catalog.logic.transform_records import build_transform_record  # noqa: E402
from descriptions.logic.requests import questions_for  # noqa: E402
from tests.catalog_batch_support import (  # noqa: E402
    answer_line,
    error_line,
    index_line,
    index_record,
    ledger_record,
    transform_output_line,
)
from tests.catalog_support import descriptions_settings, make_jpeg  # noqa: E402

SIZES = (10_000, 100_000)
WARM_UP = 1_000
TARGET_RATIO = 1.2
SETTINGS = descriptions_settings()
LANGUAGES = ("en",)
# Every 1,000th Bedrock output is an error record and every 1,000th (offset) a malformed line,
# and every 1,000th record gets no answer: the paths that write failures run at scale too.
EVERY = 1000


def _transform_input(count: int, sink: Path) -> int:
    category, questions = questions_for(SETTINGS, None)
    image = make_jpeg(64, 64)
    with sink.open("wb") as lines, (sink.with_suffix(".index")).open("wb") as index:
        for number in range(count):
            record = build_transform_record(
                product_id=f"P{number:06d}",
                image_key=f"s3://uploads/catalog/P{number:06d}.jpg",
                category=category,
                questions=questions,
                image=image,
            )
            lines.write(record.line + b"\n")
            index.write(record.index.model_dump_json().encode() + b"\n")
    return count


def _bedrock_input(count: int, sink: Path) -> int:
    def index_lines() -> Iterator[bytes]:
        return (index_line(index_record(number)) for number in range(count))

    def output_lines() -> Iterator[bytes]:
        return (transform_output_line(index_record(number)) for number in range(count))

    written = 0
    with sink.open("wb") as inputs, (sink.with_suffix(".ledger")).open("wb") as ledger:
        for outcome in build_bedrock_lines(
            index_lines(),
            output_lines(),
            settings=SETTINGS,
            languages=LANGUAGES,
            job=TransformJob("bench-transform"),
            part="bench.jsonl",
        ):
            if isinstance(outcome, BedrockRecord):
                inputs.write(outcome.input_line + b"\n")
                ledger.write(outcome.ledger_line + b"\n")
                written += 1
    return written


def _bedrock_outputs(count: int) -> Iterator[bytes]:
    for number in range(count):
        identifier = record_id(number)
        if number % EVERY == 1:
            yield error_line(identifier)
        elif number % EVERY == 2:
            yield b'{"recordId": "' + identifier.encode() + b'", "modelOutput": {'
        elif number % EVERY != 3:
            yield answer_line(identifier, languages=LANGUAGES)


def _bedrock_output(count: int, sink: Path) -> int:
    parsed = 0
    with sink.open("w") as kinds:
        for outcome in parse_output_lines(_bedrock_outputs(count)):
            kinds.write(type(outcome).__name__ + "\n")
            parsed += 1
    return parsed


def _results(count: int, sink: Path) -> int:
    stored = 0
    now = datetime(2026, 11, 22, tzinfo=UTC)
    with Ledger(directory=str(sink.parent)) as ledger, sink.open("w") as out:
        ledger.load(ledger_record(number).model_dump_json().encode() for number in range(count))
        for outcome in describe_outputs(
            parse_output_lines(_bedrock_outputs(count)),
            ledger,
            settings=SETTINGS,
            attribute_model="bench-transform",
            job=BedrockJob(arn="arn:bench", status="Completed"),
            now=lambda: now,
            counts=ResultCounts(),
        ):
            out.write(outcome.model_dump_json() + "\n")
            stored += 1
    return stored


STAGES: dict[str, Callable[[int, Path], int]] = {
    "transform input (request + index lines)": _transform_input,
    "Bedrock input (zip transform output, build records + ledger)": _bedrock_input,
    "Bedrock output (parse answers, errors, malformed lines)": _bedrock_output,
    "results (SQLite ledger join, grounding, failures)": _results,
}


def _peak_heap(stage: Callable[[int, Path], int], count: int, directory: Path) -> tuple[int, int]:
    """(peak traced bytes above the start, records handled)."""
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    handled = stage(count, directory / "out.jsonl")
    peak = tracemalloc.get_traced_memory()[1] - baseline
    tracemalloc.stop()
    return peak, handled


def _rate(stage: Callable[[int, Path], int], count: int, directory: Path) -> float:
    started = time.perf_counter()
    handled = stage(count, directory / "rate.jsonl")
    return handled / (time.perf_counter() - started)


def main() -> int:
    failed = False
    print(f"{'stage':<62} {'10k peak':>10} {'100k peak':>10} {'ratio':>6} {'records/s':>10}")
    for name, stage in STAGES.items():
        with tempfile.TemporaryDirectory() as folder:
            directory = Path(folder)
            # First use fills caches once per process (compiled patterns, validators); that is
            # not a cost of the records, so it is paid before measuring.
            stage(WARM_UP, directory / "warm-up.jsonl")
            small, _ = _peak_heap(stage, SIZES[0], directory)
            large, _ = _peak_heap(stage, SIZES[1], directory)
            rate = _rate(stage, SIZES[0], directory)
        ratio = large / small
        failed |= ratio > TARGET_RATIO
        print(
            f"{name:<62} {small / 2**20:>8.2f}MB {large / 2**20:>8.2f}MB "
            f"{ratio:>5.2f}x {rate:>10,.0f}"
        )
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS over all runs: {peak_rss_mb:.0f} MB")
    print(f"target: every ratio <= {TARGET_RATIO}x: {'FAILED' if failed else 'met'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
