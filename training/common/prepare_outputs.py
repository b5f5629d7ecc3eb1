"""What the dataset builders (`vqa.prepare`, `titan.prepare`, `dreambooth.prepare`) share about
their output folder and their command line, so the three behave alike where a user meets them.

A run replaces only the entries it writes in the output folder (never the user's other files),
writes JSON as indented UTF-8, and ends with the same exit statuses: 0 done, 2 for what the user
must fix (the data, the layout or the options; argparse also exits 2), 1 for a failed upload
(the dataset itself is fine: run again). Only the standard library.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

EXIT_OK = 0
EXIT_UPLOAD_FAILED = 1
EXIT_INVALID = 2


def clear_outputs(out_dir: Path, entries: Iterable[str]) -> None:
    """Remove a previous run's `entries` from `out_dir` (a link is removed, not followed)."""
    for name in entries:
        path = out_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def write_json(path: Path, document: object) -> None:
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def print_error(program: str, error: object) -> None:
    print(f"{program}: error: {error}", file=sys.stderr)


def error_exit(program: str, error: object, status: int) -> int:
    """Print the error as `<program>: error: ...` (argparse's form) and return the exit status."""
    print_error(program, error)
    return status


def argument_parser(program: str, description: str) -> argparse.ArgumentParser:
    """A builder's parser; its usage line says how it is run (`python -m vqa.prepare`)."""
    return argparse.ArgumentParser(prog=f"python -m {program}", description=description)


def add_input_folder(parser: argparse.ArgumentParser, flag: str, help_text: str) -> None:
    """The folder a builder reads (required)."""
    parser.add_argument(flag, type=Path, required=True, help=help_text)


def add_upload_option(options: argparse._ActionsContainer, help_text: str) -> None:
    """`--upload S3_URI`, on the parser or on a group (one exclusive with another destination)."""
    options.add_argument("--upload", metavar="S3_URI", help=help_text)


def add_kms_key_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kms-key-id", help="KMS key for SSE-KMS on the uploaded objects")


def upload_summary(uploaded: int, unchanged: int, uri: str) -> str:
    return f"Uploaded {uploaded} objects to {uri} ({unchanged} already there unchanged, skipped)."
