"""How a run's pending products are split into jobs, and which path they take.

A group is one Batch Transform job (or, with the vision attribute source, one Bedrock job for
the attributes) and one Bedrock batch inference job: it must hold at most
`max_records_per_group` products (Bedrock's per-job maximum), and at least Bedrock's per-job
minimum, or the Bedrock job is refused; with the vision source its images must also fit in one
Bedrock job's input bytes. Groups are whole batch parts, taken in key order, so a
group's manifest simply lists part files.

Packing: start with n = ceil(total / max) groups of ideal size T = total / n, and cut the
sequence of parts at the part boundary nearest to each multiple of T. Each cut is then at most
half a part away from its ideal, so every group lies within T ± P (P = the largest part). If a
group would exceed the maximum, pack again with one group more. Hence, when
max >= 3 P + 2 min and total >= min, every group holds at least min records: with n >= 2,
T > (max - P) / 2, so a group holds more than (max - 3 P) / 2 >= min.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise
from typing import Any

from catalog.logic.layout import (
    bedrock_input_prefix,
    bedrock_output_prefix,
    group_name,
    s3_uri,
    transform_input_prefix,
    transform_manifest_key,
    transform_output_prefix,
)


class Route(StrEnum):
    NONE = "none"  # nothing to describe
    ONLINE = "online"  # too few for a batch job: endpoint + Converse, product by product
    BATCH = "batch"  # Batch Transform + Bedrock batch inference, group by group


@dataclass(frozen=True)
class BatchPart:
    batch_id: str
    records: int
    # The part's transform input bytes (its images as base64); 0 where a summary predates it.
    bytes: int = 0

    @property
    def file_name(self) -> str:
        return f"{self.batch_id}.jsonl"


@dataclass(frozen=True)
class Group:
    name: str
    parts: tuple[BatchPart, ...]

    @property
    def records(self) -> int:
        return sum(part.records for part in self.parts)

    @property
    def bytes(self) -> int:
        return sum(part.bytes for part in self.parts)


def choose_route(records: int, *, online_threshold: int, min_records_per_job: int) -> Route:
    """Fewer records than the threshold go online; so do fewer than Bedrock's job minimum,
    whatever the threshold says, since such a job would be refused."""
    if records <= 0:
        return Route.NONE
    if records < max(online_threshold, min_records_per_job):
        return Route.ONLINE
    return Route.BATCH


def pack_groups(
    parts: Iterable[BatchPart],
    *,
    max_records_per_group: int,
    max_bytes_per_group: int | None = None,
    record_overhead_bytes: int = 0,
) -> list[Group]:
    """Balanced, contiguous groups of the non-empty parts in batch id (= key) order.

    `max_bytes_per_group`: with the vision attribute source each group's images go into one
    Bedrock job, whose input is bounded in bytes (`catalog.bedrock.max_job_mb`): a group's
    parts, plus `record_overhead_bytes` per record for the request around each image, must fit.
    More groups are cut until they do (balanced by records, which track bytes for a catalog's
    photos)."""
    ordered = sorted((part for part in parts if part.records > 0), key=lambda p: p.batch_id)
    if not ordered:
        return []
    too_large = [part for part in ordered if part.records > max_records_per_group]
    if too_large:
        raise ValueError(
            f"batch {too_large[0].batch_id} holds {too_large[0].records} records, more than a "
            f"group may ({max_records_per_group}); catalog records_per_part must not exceed "
            "max_records_per_group"
        )

    def weight(part: BatchPart) -> int:
        return part.bytes + part.records * record_overhead_bytes

    if max_bytes_per_group is not None:
        heavy = [part for part in ordered if weight(part) > max_bytes_per_group]
        if heavy:
            raise ValueError(
                f"batch {heavy[0].batch_id} holds {weight(heavy[0]):,} bytes of requests, more "
                f"than one Bedrock job may take ({max_bytes_per_group:,}, "
                "catalog.bedrock.max_job_mb); lower catalog.records_per_part"
            )
    cumulative = [0]
    heft = [0]
    for part in ordered:
        cumulative.append(cumulative[-1] + part.records)
        heft.append(heft[-1] + weight(part))
    total = cumulative[-1]
    count = min(len(ordered), math.ceil(total / max_records_per_group))
    if max_bytes_per_group is not None:
        count = min(len(ordered), max(count, math.ceil(heft[-1] / max_bytes_per_group)))
    while True:
        cuts = _cuts(cumulative, count)
        sizes = [cumulative[end] - cumulative[start] for start, end in pairwise(cuts)]
        weights = [heft[end] - heft[start] for start, end in pairwise(cuts)]
        fits = max(sizes) <= max_records_per_group and (
            max_bytes_per_group is None or max(weights) <= max_bytes_per_group
        )
        if fits or count == len(ordered):
            break
        count += 1
    return [
        Group(group_name(index), tuple(ordered[start:end]))
        for index, (start, end) in enumerate(pairwise(cuts))
    ]


def _cuts(cumulative: Sequence[int], count: int) -> list[int]:
    """Part indexes where groups start (plus the end), each at the boundary nearest to its
    ideal position, every group keeping at least one part."""
    parts = len(cumulative) - 1
    total = cumulative[-1]
    cuts = [0]
    for index in range(1, count):
        ideal = total * index / count
        above = bisect.bisect_left(cumulative, ideal)
        candidates = (above - 1, above)
        best = min(
            (c for c in candidates if 0 <= c <= parts),
            key=lambda c: (abs(cumulative[c] - ideal), c),
        )
        lowest, highest = cuts[-1] + 1, parts - (count - index)
        cuts.append(min(max(best, lowest), highest))
    cuts.append(parts)
    return cuts


def transform_manifest(results_bucket: str, run_id: str, group: Group) -> list[Any]:
    """The SageMaker ManifestFile document: a common prefix, then the part files' names."""
    prefix = s3_uri(results_bucket, transform_input_prefix(run_id))
    return [{"prefix": prefix}, *(part.file_name for part in group.parts)]


def group_state(results_bucket: str, run_id: str, group: Group) -> dict[str, Any]:
    """What the state machine carries for one group (no batch ids: thousands would not fit in
    a state's payload; the manifest lists them)."""
    return {
        "group": group.name,
        "records": group.records,
        "manifestUri": s3_uri(results_bucket, transform_manifest_key(run_id, group.name)),
        "outputUri": s3_uri(results_bucket, transform_output_prefix(run_id, group.name)),
        "bedrockInputUri": s3_uri(results_bucket, bedrock_input_prefix(run_id, group.name)),
        "bedrockOutputUri": s3_uri(results_bucket, bedrock_output_prefix(run_id, group.name)),
    }
