"""One group's input for a Bedrock batch job, as both catalog steps that start one write it:
the description job (bedrock_input.py) and the vision attributes job (attribute_input.py).

Records stream in; each goes to a file picked by the per-file record and byte quotas (spooled
on local disk and uploaded once complete), its ledger line to the group's ledger, and every
product that cannot be sent to the failures file. A group left with fewer records than a Bedrock
job accepts is not sent: its products become failures. A retried invocation first removes an
earlier attempt's input files, and a failed one removes what it uploaded, so a partial input is
never mistaken for a complete one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from catalog.logic import layout
from catalog.logic.bedrock_records import FileRotation
from shared.adapters.run_files import RunFiles
from shared.adapters.s3_lines import JsonLinesWriter
from shared.models.catalog import BedrockBatchLimits, FailureRecord, LedgerRecord


@dataclass
class RotatedFiles:
    """A Bedrock job's input files while records stream in; `key_of(n)` names file n."""

    files: RunFiles
    key_of: Callable[[int], str]
    writers: list[JsonLinesWriter] = field(default_factory=list)
    uploaded: int = 0

    def writer(self, index: int) -> JsonLinesWriter:
        while len(self.writers) <= index:
            key = self.key_of(len(self.writers))
            self.writers.append(JsonLinesWriter(self.files.bucket, key, s3=self.files.s3))
        return self.writers[index]

    def upload_finished(self) -> None:
        """Upload every file before the one being written (they are complete)."""
        while self.uploaded < len(self.writers) - 1:
            self.writers[self.uploaded].close()
            self.uploaded += 1

    def upload_all(self) -> None:
        for writer in self.writers[self.uploaded :]:
            writer.close()
        self.uploaded = len(self.writers)

    def discard(self) -> None:
        for writer in self.writers[self.uploaded :]:
            writer.discard()


@dataclass(frozen=True)
class JobRecord:
    """One record of the job's input: its line, the line's size (line end included) and its
    ledger line."""

    line: bytes
    size: int
    ledger_line: bytes


@dataclass(frozen=True)
class WrittenInput:
    records: int
    files: int
    bytes: int
    failed: int


class GroupInput:
    """The files of one group's job input. `rotation` is there before any record is written:
    the record builders number records after it."""

    def __init__(
        self,
        files: RunFiles,
        *,
        limits: BedrockBatchLimits,
        input_key: Callable[[int], str],
        input_prefix: str,
        failures_key: str,
        ledger: Callable[[], JsonLinesWriter],
    ) -> None:
        self.files, self.limits = files, limits
        self.input_prefix = input_prefix
        self.failures_key = failures_key
        self.new_ledger = ledger
        self.rotation = FileRotation(limits)
        self.output = RotatedFiles(files, input_key)

    def write(
        self,
        items: Iterable[JobRecord | FailureRecord],
        *,
        below_minimum: Callable[[LedgerRecord, int], str],
        ledger_below_minimum: Literal["deleted", "empty"],
    ) -> WrittenInput:
        """Write every item; below the job minimum, send nothing and report each held product
        with `below_minimum(record, records)`. The ledger is then removed (`deleted`: the next
        step must find no products to read) or written empty (`empty`)."""
        files, rotation, output = self.files, self.rotation, self.output
        minimum = self.limits.min_records_per_job
        # Kept only until the job minimum is reached: these become failures if it never is.
        held: list[LedgerRecord] = []
        failures = JsonLinesWriter(files.bucket, self.failures_key, s3=files.s3)
        ledger = self.new_ledger()
        # A retried invocation must not leave an earlier attempt's extra files for the job.
        files.delete_prefix(self.input_prefix)
        try:
            for item in items:
                if isinstance(item, FailureRecord):
                    failures.write_raw(item.model_dump_json())
                    continue
                index = rotation.place(item.size)
                output.writer(index).write_raw(item.line)
                ledger.write_raw(item.ledger_line)
                if rotation.records < minimum:
                    held.append(LedgerRecord.model_validate_json(item.ledger_line))
                else:
                    held.clear()
                    # The job will run: each completed file is uploaded now, so local disk holds
                    # one file at a time.
                    output.upload_finished()
            records = rotation.records
            if records < minimum:
                output.discard()
                ledger.discard()
                if ledger_below_minimum == "deleted":
                    # Nor an earlier attempt's ledger.
                    files.delete_keys([ledger.key])
                else:
                    self.new_ledger().close()
                for record in held:
                    failures.write_raw(below_minimum(record, records))
                records = 0
            else:
                output.upload_all()
                ledger.close()
        except BaseException:
            output.discard()
            ledger.discard()
            failures.discard()
            # Files already uploaded (rotated out) must not be mistaken for a complete input.
            files.delete_prefix(self.input_prefix)
            raise
        failed = failures.lines
        if failed:
            failures.close()
        else:
            failures.discard()
        return WrittenInput(
            records=records,
            files=rotation.files if records else 0,
            bytes=rotation.bytes if records else 0,
            failed=failed,
        )


def transform_batch_ids(files: RunFiles, run_id: str, group: str) -> list[str]:
    """The group's parts from its SageMaker manifest: `[{"prefix": ...}, "<id>.jsonl", ...]`."""
    manifest = files.get_json(layout.transform_manifest_key(run_id, group))
    if not isinstance(manifest, list) or not manifest:
        raise ValueError(f"group {group} of run {run_id} has no transform manifest")
    return [str(name).removesuffix(".jsonl") for name in manifest[1:]]
