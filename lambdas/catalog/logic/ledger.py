"""The group's ledger, looked up by record id while Bedrock's outputs stream past.

Bedrock's output files hold the records in no promised order, so the results step needs the
ledger by record id; a dictionary of 50,000 ledger records would be hundreds of megabytes. An
SQLite file in the function's temporary storage gives the same lookups with memory that does not
grow with the group: lines are loaded in chunks, rows are read one at a time, and the page cache
is bounded.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from itertools import islice
from types import TracebackType

from shared.models.catalog import LedgerRecord

_CHUNK = 1000
# Negative: KiB. Bounds SQLite's page cache whatever the number of rows.
_CACHE_KIB = 4096


class Ledger:
    """Ledger records in a temporary SQLite file; use as a context manager."""

    def __init__(self, directory: str | None = None) -> None:
        handle, self.path = tempfile.mkstemp(prefix="ledger-", suffix=".sqlite3", dir=directory)
        os.close(handle)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        self._db.execute("PRAGMA temp_store=FILE")
        self._db.execute(
            "CREATE TABLE records (record_id TEXT PRIMARY KEY, line BLOB NOT NULL, "
            "answered INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID"
        )
        self.size = 0

    def load(self, lines: Iterable[bytes]) -> int:
        """Add ledger lines (validated); returns how many. A repeated record id raises."""
        rows = ((LedgerRecord.model_validate_json(line).record_id, bytes(line)) for line in lines)
        added = 0
        while chunk := list(islice(rows, _CHUNK)):
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT INTO records (record_id, line) VALUES (?, ?)", chunk)
            except sqlite3.IntegrityError as error:
                self._db.execute("ROLLBACK")
                raise ValueError(f"the ledger repeats a record id: {error}") from None
            self._db.execute("COMMIT")
            added += len(chunk)
        self.size += added
        return added

    def get(self, record_id: str) -> LedgerRecord | None:
        row = self._db.execute(
            "SELECT line FROM records WHERE record_id = ?", (record_id,)
        ).fetchone()
        return None if row is None else LedgerRecord.model_validate_json(row[0])

    def is_answered(self, record_id: str) -> bool:
        row = self._db.execute(
            "SELECT answered FROM records WHERE record_id = ?", (record_id,)
        ).fetchone()
        return bool(row and row[0])

    def mark_answered(self, record_id: str) -> bool:
        """Mark a record answered; False when it was already (a repeated output line) or unknown."""
        cursor = self._db.execute(
            "UPDATE records SET answered = 1 WHERE record_id = ? AND answered = 0", (record_id,)
        )
        return cursor.rowcount == 1

    def unanswered(self) -> Iterator[LedgerRecord]:
        """The records no output answered, in record id order, streamed."""
        cursor = self._db.execute("SELECT line FROM records WHERE answered = 0 ORDER BY record_id")
        while rows := cursor.fetchmany(_CHUNK):
            for (line,) in rows:
                yield LedgerRecord.model_validate_json(line)

    def close(self) -> None:
        self._db.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
