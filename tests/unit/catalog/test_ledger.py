"""The SQLite ledger: loaded from lines, looked up by record id, answered once."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from catalog.logic.ledger import Ledger
from tests.catalog_batch_support import ledger_record


def _lines(count: int) -> Iterator[bytes]:
    for n in range(count):
        yield ledger_record(n).model_dump_json().encode()


def test_records_are_found_by_id_and_answered_once(tmp_path: Path) -> None:
    # Given a ledger of 10,000 records
    with Ledger(str(tmp_path)) as ledger:
        assert ledger.load(_lines(10_000)) == 10_000

        # When some are looked up and answered, one of them twice
        found = ledger.get("R0000004321")
        first = ledger.mark_answered("R0000004321")
        again = ledger.mark_answered("R0000004321")
        for n in range(0, 10_000, 2):
            ledger.mark_answered(f"R{n:010d}")

        # Then lookups return the stored record, a second answer is refused, unknown ids are
        # None, and exactly the unanswered remain
        assert found == ledger_record(4321)
        assert (first, again) == (True, False)
        assert ledger.get("R9999999999") is None
        assert ledger.mark_answered("R9999999999") is False
        assert ledger.is_answered("R0000004321")
        remaining = [record.record_id for record in ledger.unanswered()]
        assert remaining == [f"R{n:010d}" for n in range(1, 10_000, 2) if n != 4321]


def test_the_file_is_removed_on_close(tmp_path: Path) -> None:
    with Ledger(str(tmp_path)) as ledger:
        ledger.load(_lines(3))
        path = ledger.path
        assert os.path.exists(path)

    assert not os.path.exists(path)


def test_a_repeated_record_id_is_refused(tmp_path: Path) -> None:
    line = ledger_record(1).model_dump_json().encode()

    with Ledger(str(tmp_path)) as ledger, pytest.raises(ValueError, match="repeats a record id"):
        ledger.load([line, line])


def test_a_malformed_ledger_line_raises(tmp_path: Path) -> None:
    with Ledger(str(tmp_path)) as ledger, pytest.raises(ValueError, match="record_id"):
        ledger.load([b'{"product_id": "P1"}'])


def _peak_bytes(count: int, directory: Path) -> int:
    tracemalloc.start()
    try:
        with Ledger(str(directory)) as ledger:
            ledger.load(_lines(count))
            for n in range(0, count, 3):
                ledger.mark_answered(f"R{n:010d}")
            assert sum(1 for _ in ledger.unanswered()) == count - len(range(0, count, 3))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_number_of_records(tmp_path: Path) -> None:
    # Given ledgers of 4,000 and 16,000 records, whose lines alone would take megabytes more if
    # they were held in memory
    line_bytes = len(ledger_record(0).model_dump_json())
    held_extra = 12_000 * line_bytes

    # When each is loaded, a third answered and the rest iterated
    small = _peak_bytes(4_000, tmp_path)
    large = _peak_bytes(16_000, tmp_path)

    # Then the larger ledger's peak is not a quarter of what holding its lines would add (what
    # remains is mostly pydantic-core's cache of parsed strings, which stops growing: measured
    # here, 20,000 records peak at 2.13 MB and 40,000 at 2.16 MB)
    assert large - small < held_extra / 4, (small, large, held_extra)
