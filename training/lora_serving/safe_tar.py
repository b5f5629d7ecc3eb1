"""Read a few named files out of a training run's `model.tar.gz`, refusing unsafe archives.

The whole member list is checked before anything is written: an absolute name, a `..` part,
a link, a device or any other non-regular member refuses the archive, even if it is not one of
the wanted files (an archive built that way was not written by our training jobs). Wanted files
are taken from the archive's root (`name` or `./name`) and written by this code, never by
`tarfile.extract`, so nothing outside `target` can be created whatever the archive says.
"""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath


class UnsafeArchiveError(ValueError):
    pass


def _checked(member: tarfile.TarInfo) -> PurePosixPath:
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or "\\" in member.name:
        raise UnsafeArchiveError(f"member {member.name!r} points outside the archive")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"member {member.name!r} is a link or special file")
    return path


def extract_members(
    archive: Path, target: Path, *, wanted: Iterable[str], max_bytes: int
) -> list[str]:
    """Write the archive's root-level files named in `wanted` into `target`; their names."""
    names = set(wanted)
    found: list[str] = []
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            chosen = []
            for member in members:
                path = _checked(member)
                parts = [part for part in path.parts if part != "."]
                if member.isfile() and len(parts) == 1 and parts[0] in names:
                    if member.size > max_bytes:
                        raise UnsafeArchiveError(f"member {member.name!r} is {member.size} bytes")
                    chosen.append((member, parts[0]))
            for member, name in chosen:
                source = tar.extractfile(member)
                if source is None:  # pragma: no cover - isfile() members always have data
                    continue
                with source, (target / name).open("wb") as sink:
                    shutil.copyfileobj(source, sink, length=1024 * 1024)
                found.append(name)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise UnsafeArchiveError(f"cannot read or unpack it: {error}") from error
    return found
