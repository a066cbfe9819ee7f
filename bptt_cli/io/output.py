"""Where output goes: its format from ``--format`` or the file's suffix, checked before any work, and
files written atomically (a temporary file renamed over the target: never half-written)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from bptt_cli.errors import BadInput


@contextmanager
def atomic_open(path: Path, binary: bool = False) -> Iterator[IO[Any]]:
    """A file to write ``path`` through: a temporary file in the same directory, fsynced and
    renamed over ``path`` when the block ends, removed if it fails. Never half-written; the new
    file gets the permissions of any new file (``mkstemp`` alone would make it private)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent or Path("."), prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def output_format(
    output: Path | None, fmt: str | None, suffixes: Mapping[str, str], default: str = "table"
) -> str:
    """The format of a command's output: ``--format``, else from the ``--output`` suffix (one of
    ``suffixes``), else ``default``; :class:`BadInput` if the two disagree (``--format csv
    --output m.jsonl``; ``.txt``, plain text, takes any format) or ``output`` cannot be written
    (checked now, before any work)."""
    if output is None:
        return fmt or default
    check_writable(output)
    known = suffixes.get(output.suffix.lower())
    if fmt is None:
        if known is None:
            listed = ", ".join(s for s in suffixes)
            raise BadInput(f"cannot tell the format of {output} from its suffix (use {listed}, or --format)")
        return known
    if known is not None and known != fmt and output.suffix.lower() != ".txt":
        raise BadInput(
            f"--format {fmt} conflicts with --output {output} (a {output.suffix} file is {known}): "
            "drop --format or give the file a matching suffix"
        )
    return fmt


def check_writable(path: Path) -> None:
    """:class:`BadInput` unless a file can be written at ``path`` (its directory exists and takes
    a new file, and ``path`` is not a directory). Leaves nothing behind."""
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise BadInput(f"cannot write {path}: directory {parent} does not exist")
    if path.is_dir():
        raise BadInput(f"cannot write {path}: it is a directory")
    try:  # the same temporary file atomic_open writes through
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise BadInput(f"cannot write {path}: {e.strerror or e}") from None
    os.close(fd)
    os.unlink(tmp)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through :func:`atomic_open`: never half-written."""
    with atomic_open(path) as f:
        f.write(text)
