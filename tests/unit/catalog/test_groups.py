"""Routing a run and packing its parts into jobs: balanced, within Bedrock's per-job limits."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalog.logic.groups import (
    BatchPart,
    Group,
    Route,
    choose_route,
    group_state,
    pack_groups,
    transform_manifest,
)

RESULTS = "atelier-dev-results"
RUN = "20261122081645-0123abcd"


def _parts(sizes: list[int]) -> list[BatchPart]:
    # Batch ids are hex hashes; these sort in the order of the sizes given.
    return [BatchPart(f"{index:016x}", size) for index, size in enumerate(sizes)]


def _check_partition(groups: list[Group], parts: list[BatchPart]) -> None:
    """Every non-empty part in exactly one group, groups contiguous in batch id order."""
    flattened = [part for group in groups for part in group.parts]
    assert flattened == sorted((p for p in parts if p.records > 0), key=lambda p: p.batch_id)
    assert [group.name for group in groups] == [f"g{index:04d}" for index in range(len(groups))]
    assert all(group.parts for group in groups)


@pytest.mark.parametrize(
    ("records", "threshold", "minimum", "route"),
    [
        (0, 100, 100, Route.NONE),
        (1, 100, 100, Route.ONLINE),
        (99, 100, 100, Route.ONLINE),
        (100, 100, 100, Route.BATCH),
        (1_000_000, 100, 100, Route.BATCH),
        # A threshold below Bedrock's minimum cannot send a too-small job to Bedrock
        (50, 10, 100, Route.ONLINE),
        (150, 200, 100, Route.ONLINE),
        (150, 0, 100, Route.BATCH),
    ],
)
def test_route(records: int, threshold: int, minimum: int, route: Route) -> None:
    assert choose_route(records, online_threshold=threshold, min_records_per_job=minimum) is route


def test_no_parts_no_groups() -> None:
    assert pack_groups([], max_records_per_group=100) == []
    assert pack_groups(_parts([0, 0]), max_records_per_group=100) == []


def test_a_catalog_that_fits_is_one_group_of_every_part() -> None:
    parts = _parts([500] * 99 + [37])
    (group,) = pack_groups(list(reversed(parts)), max_records_per_group=50_000)
    assert group.parts == tuple(parts)
    assert group.records == 49_537


def test_a_million_products_split_into_equal_jobs() -> None:
    # Given 2,000 parts of 500 (1,000,000 products) and Bedrock's 50,000 records per job
    parts = _parts([500] * 2000)
    groups = pack_groups(parts, max_records_per_group=50_000)
    # Then 20 jobs of exactly 50,000
    assert [group.records for group in groups] == [50_000] * 20
    _check_partition(groups, parts)


def test_the_remainder_is_spread_not_left_at_the_end() -> None:
    # Given 1,001 records where filling groups up to their target (ceil(1001 / 2) = 501) would
    # leave a last group of one record, below any Bedrock job minimum
    parts = _parts([500, 500, 1])
    groups = pack_groups(parts, max_records_per_group=1_000)
    # Then the cut falls at the part boundary nearest the middle
    assert [group.records for group in groups] == [500, 501]
    _check_partition(groups, parts)


def test_uneven_parts_stay_within_a_part_of_the_ideal() -> None:
    parts = _parts([500] * 200 + [1])
    groups = pack_groups(parts, max_records_per_group=50_000)
    ideal = 100_001 / 3
    assert len(groups) == 3
    assert all(abs(group.records - ideal) <= 500 for group in groups)


def test_a_part_larger_than_a_group_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="records_per_part must not exceed max_records_per_group"):
        pack_groups(_parts([10, 200]), max_records_per_group=100)


@settings(max_examples=150, deadline=None)
@given(
    part_size=st.integers(1, 500),
    minimum=st.integers(1, 200),
    slack=st.integers(0, 20_000),
    total=st.integers(1, 400_000),
    ragged=st.lists(st.integers(0, 500), max_size=40),
    data=st.data(),
)
def test_groups_are_balanced_bounded_and_above_the_minimum(
    part_size: int,
    minimum: int,
    slack: int,
    total: int,
    ragged: list[int],
    data: st.DataObject,
) -> None:
    # Given parts of at most `part_size` records (full ones, then a ragged tail of partly
    # skipped or failed batches) and a group maximum of at least 3 parts + 2 minimums
    maximum = 3 * part_size + 2 * minimum + slack
    full, rest = divmod(total, part_size)
    sizes = [part_size] * full + ([rest] if rest else [])
    sizes += [min(size, part_size) for size in ragged]
    if data.draw(st.booleans()):
        sizes = data.draw(st.permutations(sizes))
    parts = _parts(sizes)
    records = sum(sizes)
    # When packed
    groups = pack_groups(parts, max_records_per_group=maximum)
    # Then every part is in one group, no group exceeds the maximum, each holds at least the
    # minimum when the catalog does, and they are balanced within two parts of each other
    _check_partition(groups, parts)
    if records == 0:
        assert groups == []
        return
    group_sizes = [group.records for group in groups]
    assert sum(group_sizes) == records
    assert max(group_sizes) <= maximum
    assert len(groups) >= math.ceil(records / maximum)
    if records >= minimum:
        assert min(group_sizes) >= minimum, (group_sizes, minimum)
    assert max(group_sizes) - min(group_sizes) <= 2 * part_size
    # ... and no more groups than the maximum forces, give or take one
    assert len(groups) <= math.ceil(records / (maximum - part_size)) + 1


@settings(max_examples=100, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 1_000), min_size=1, max_size=300),
    maximum=st.integers(1_000, 30_000),
)
def test_any_parts_fit_under_the_maximum(sizes: list[int], maximum: int) -> None:
    # Even with a maximum too small for the minimum guarantee, no job exceeds Bedrock's limit
    groups = pack_groups(_parts(sizes), max_records_per_group=maximum)
    _check_partition(groups, _parts(sizes))
    assert all(group.records <= maximum for group in groups)


def test_the_manifest_is_sagemakers_manifest_file_format() -> None:
    group = Group("g0001", tuple(_parts([3, 4])))
    assert transform_manifest(RESULTS, RUN, group) == [
        {"prefix": f"s3://{RESULTS}/catalog/{RUN}/transform-input/"},
        "0000000000000000.jsonl",
        "0000000000000001.jsonl",
    ]


def test_group_state_carries_uris_not_batch_ids() -> None:
    state = group_state(RESULTS, RUN, Group("g0002", tuple(_parts([3, 4]))))
    base = f"s3://{RESULTS}/catalog/{RUN}/groups/g0002/"
    assert state == {
        "group": "g0002",
        "records": 7,
        "manifestUri": f"{base}transform-manifest.json",
        "outputUri": f"{base}transform-output/",
        "bedrockInputUri": f"{base}bedrock-input/",
        "bedrockOutputUri": f"{base}bedrock-output/",
    }


def test_vision_groups_are_cut_so_their_photos_fit_one_bedrock_job() -> None:
    # Given 10 parts of 500 products and 100 MB of photos each (1 GB in all), with room for
    # 50,000 records but only 300 MB per job
    parts = [BatchPart(f"{index:016x}", 500, 100_000_000) for index in range(10)]
    # When packed by records alone, one group would hold every part
    assert len(pack_groups(parts, max_records_per_group=50_000)) == 1
    # When packed for the vision source (plus 8 KB of request per record)
    groups = pack_groups(
        parts,
        max_records_per_group=50_000,
        max_bytes_per_group=300_000_000,
        record_overhead_bytes=8_192,
    )
    # Then every group's photos and requests fit one job, and no part is lost
    _check_partition(groups, parts)
    assert all(group.bytes + group.records * 8_192 <= 300_000_000 for group in groups)
    # (two parts of 104 MB fit in 300 MB, three do not: five groups)
    assert len(groups) == 5


def test_a_part_whose_photos_exceed_one_bedrock_job_is_a_configuration_error() -> None:
    parts = [BatchPart("a" * 16, 500, 6_000_000_000)]
    with pytest.raises(ValueError, match=r"more than one Bedrock job may take.*records_per_part"):
        pack_groups(parts, max_records_per_group=50_000, max_bytes_per_group=5 * 2**30)
