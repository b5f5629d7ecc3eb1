"""Where one catalog run keeps its files, all under `catalog/<runId>/` in the results bucket.

```
catalog/<runId>/request.json                  the normalized request (start step)
catalog/<runId>/batches/<batchId>.json         one Distributed Map child's counts
catalog/<runId>/transform-input/<batchId>.jsonl    Batch Transform requests (with images)
catalog/<runId>/transform-index/<batchId>.jsonl    the same products, same order, no images
catalog/<runId>/groups/<group>/transform-manifest.json
catalog/<runId>/groups/<group>/transform-output/<batchId>.jsonl.out   (written by SageMaker)
catalog/<runId>/groups/<group>/attribute-input/records-<n>.jsonl   (vision-llm source only)
catalog/<runId>/groups/<group>/attribute-ledger.jsonl
catalog/<runId>/groups/<group>/attribute-output/<jobId>/records-<n>.jsonl.out   (by Bedrock)
catalog/<runId>/groups/<group>/ledger.jsonl
catalog/<runId>/groups/<group>/bedrock-input/records-<n>.jsonl
catalog/<runId>/groups/<group>/bedrock-output/<jobId>/records-<n>.jsonl.out   (by Bedrock)
catalog/<runId>/groups/<group>/result.json
catalog/<runId>/failures/<step>/<name>.jsonl   failures as each step finds them
catalog/<runId>/map-results/                   the Distributed Map's result writer
catalog/<runId>/failures.jsonl                 the failures report (a manifest for a re-run)
catalog/<runId>/summary.json
```
"""

from __future__ import annotations

ROOT = "catalog/"


def run_prefix(run_id: str) -> str:
    return f"{ROOT}{run_id}/"


def request_key(run_id: str) -> str:
    return f"{run_prefix(run_id)}request.json"


def batch_summary_key(run_id: str, batch_id: str) -> str:
    return f"{run_prefix(run_id)}batches/{batch_id}.json"


def transform_input_prefix(run_id: str) -> str:
    return f"{run_prefix(run_id)}transform-input/"


def transform_input_key(run_id: str, batch_id: str) -> str:
    return f"{transform_input_prefix(run_id)}{batch_id}.jsonl"


def transform_index_key(run_id: str, batch_id: str) -> str:
    return f"{run_prefix(run_id)}transform-index/{batch_id}.jsonl"


def group_name(index: int) -> str:
    return f"g{index:04d}"


def groups_prefix(run_id: str) -> str:
    return f"{run_prefix(run_id)}groups/"


def group_prefix(run_id: str, group: str) -> str:
    return f"{groups_prefix(run_id)}{group}/"


def holds_photos(key: str) -> bool:
    """A group file with copies of the photos: an attributes job's input or Bedrock's output
    of it (each output line repeats its record's input)."""
    return "/attribute-input/" in key or "/attribute-output/" in key


def transform_manifest_key(run_id: str, group: str) -> str:
    return f"{group_prefix(run_id, group)}transform-manifest.json"


def transform_output_prefix(run_id: str, group: str) -> str:
    return f"{group_prefix(run_id, group)}transform-output/"


def transform_output_key(run_id: str, group: str, batch_id: str) -> str:
    # Batch Transform names each output after its input file, plus `.out`.
    return f"{transform_output_prefix(run_id, group)}{batch_id}.jsonl.out"


def attribute_input_prefix(run_id: str, group: str) -> str:
    return f"{group_prefix(run_id, group)}attribute-input/"


def attribute_input_key(run_id: str, group: str, index: int) -> str:
    return f"{attribute_input_prefix(run_id, group)}records-{index:04d}.jsonl"


def attribute_ledger_key(run_id: str, group: str) -> str:
    return f"{group_prefix(run_id, group)}attribute-ledger.jsonl"


def attribute_output_prefix(run_id: str, group: str) -> str:
    return f"{group_prefix(run_id, group)}attribute-output/"


def ledger_key(run_id: str, group: str) -> str:
    return f"{group_prefix(run_id, group)}ledger.jsonl"


def bedrock_input_prefix(run_id: str, group: str) -> str:
    return f"{group_prefix(run_id, group)}bedrock-input/"


def bedrock_input_key(run_id: str, group: str, index: int) -> str:
    return f"{bedrock_input_prefix(run_id, group)}records-{index:04d}.jsonl"


def bedrock_output_prefix(run_id: str, group: str) -> str:
    return f"{group_prefix(run_id, group)}bedrock-output/"


def group_result_key(run_id: str, group: str) -> str:
    return f"{group_prefix(run_id, group)}result.json"


def failures_prefix(run_id: str) -> str:
    return f"{run_prefix(run_id)}failures/"


def failures_key(run_id: str, step: str, name: str) -> str:
    return f"{failures_prefix(run_id)}{step}/{name}.jsonl"


def map_results_prefix(run_id: str) -> str:
    return f"{run_prefix(run_id)}map-results/"


def report_key(run_id: str) -> str:
    return f"{run_prefix(run_id)}failures.jsonl"


def summary_key(run_id: str) -> str:
    return f"{run_prefix(run_id)}summary.json"


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of `s3://bucket/key`; ValueError naming the problem otherwise."""
    if not uri.startswith("s3://"):
        raise ValueError(f"{uri[:200]!r} is not an s3:// URI")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"{uri[:200]!r} names no bucket")
    return bucket, key
