"""Helpers for the tests of output files: what a complete document of each format is, FIFO
readers, clones of ``/dev/full``, and a guard for the tests that write to the real ``/dev``."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import stat
import threading
from pathlib import Path

import pytest

# the format of an output file, from its suffix
FORMAT_OF = {
    ".json": "json", ".jsonl": "jsonl", ".csv": "csv", ".txt": "table",
    ".png": "png", ".svg": "svg", ".pdf": "pdf",
}  # fmt: skip


def check_complete(data: bytes, fmt: str) -> None:
    """Assert that ``data`` is a whole document of ``fmt`` (nothing cut short)."""
    if fmt in ("png", "svg", "pdf"):
        ends = {"png": b"IEND\xaeB`\x82", "svg": b"</svg>", "pdf": b"%%EOF"}
        starts = {"png": b"\x89PNG", "svg": b"<?xml", "pdf": b"%PDF"}
        assert data.startswith(starts[fmt]) and data.rstrip().endswith(ends[fmt]), data[-40:]
        return
    text = data.decode("utf-8")
    assert text.endswith("\n"), f"{fmt} output cut short: {text[-60:]!r}"
    if fmt == "json":
        json.loads(text)
    elif fmt == "jsonl":
        for line in text.splitlines():
            assert isinstance(json.loads(line), dict)
    elif fmt == "csv":
        rows = list(csv.reader(io.StringIO(text)))
        assert rows and all(len(r) == len(rows[0]) for r in rows), "ragged CSV"
    else:
        assert text.strip(), "empty table"


def temporary_files(directory: Path) -> list[str]:
    """The temporary files an atomic write left in ``directory`` (there should be none)."""
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


class FifoReader(threading.Thread):
    """Read a FIFO to its end in a thread (started before the writer opens it)."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.data = b""

    def run(self) -> None:
        with open(self.path, "rb") as f:
            self.data = f.read()

    def result(self, timeout: float = 30) -> bytes:
        """What was read; fails (and unblocks the reader) if no writer came and went in time."""
        self.join(timeout)
        if self.is_alive():
            with contextlib.suppress(OSError):  # no writer came: open and close one, to end the thread
                os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
            raise AssertionError(f"nothing wrote {self.path} and closed it within {timeout} s")
        return self.data


def full_device(directory: Path) -> Path:
    """A character device that behaves as ``/dev/full`` (a clone, major 1 minor 7, made in
    ``directory``), so that no test needs the real one; skipped where nodes cannot be made."""
    path = directory / "full"
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    except OSError as e:
        pytest.skip(f"cannot make a device node here ({e.strerror})")
    return path


def is_full_device(path: Path) -> bool:
    st = os.lstat(path)
    return stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 7)


def guard_real_device(path: str) -> None:
    """Fail (rather than run) a test that writes to ``path`` in the real ``/dev`` unless the code
    under test writes it in place: an older ``bptt`` replaced the node by a file (as root, the
    machine lost ``/dev/full``)."""
    from bptt_cli.io.output import target  # absent from the code that replaced device nodes

    assert target(Path(path)).direct, f"{path} would be replaced"
