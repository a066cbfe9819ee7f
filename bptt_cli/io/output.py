"""Where output goes: its format from ``--format`` or the file's suffix, checked before any work,
and how every file the tool writes is written (:func:`open_output`):

- a regular file, or a new path: through a temporary file beside it, fsynced and renamed over
  it, so it is never half-written (a file replaced keeps its permissions);
- a symbolic link: followed, and the file it leads to replaced so (the link stays a link);
- a character device, a FIFO or a socket, and a descriptor of this process (``/dev/stdout``,
  ``/dev/fd/N``): written in place, as a stream; nothing is created, removed or renamed (a FIFO
  is opened only to write, which waits for a reader);
- a directory or a block device: refused.

A sweep's records file is also held under an advisory lock while it is written (:class:`Held`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import socket
import stat
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bptt_cli.errors import BadInput

BUSY = "another bptt sweep is writing it (wait for it to end, or give another --output)"
_FD_DIR = re.compile(r"/proc/(\d+)(?:/task/\d+)?/fd")
_STREAM_NAMES = {0: "standard input", 1: "standard output", 2: "standard error"}
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL)  # a filesystem without flock
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC


@dataclass(frozen=True)
class Target:
    """Where ``path`` (as given) is written: ``real``, the file replaced (``path`` with its links
    followed), or in place (``kind`` other than ``file``; ``fd``: a descriptor of this process)."""

    path: Path
    real: Path
    kind: str = "file"
    fd: int | None = None

    @property
    def direct(self) -> bool:
        """Written in place (a device, FIFO, socket or descriptor), not replaced."""
        return self.kind != "file"


def _own_descriptor(path: Path) -> int | None:
    """The descriptor of this process that ``path`` names through its links (``/dev/stdout``,
    ``/dev/fd/2``, ``/proc/self/fd/1``), if any."""
    p = os.path.abspath(path)
    for _ in range(40):  # the kernel's own bound on a chain of links
        head, name = os.path.split(p)
        where = os.path.realpath(head)
        m = _FD_DIR.fullmatch(where)
        if m is not None:
            return int(name) if name.isdigit() and int(m.group(1)) == os.getpid() else None
        full = os.path.join(where, name)
        try:
            p = os.path.join(where, os.readlink(full))
        except OSError:  # not a link (or not one we may read): a path of its own
            return None
    return None


def target(path: Path) -> Target:
    """Where and how ``path`` is written (see the module doc); :class:`BadInput` for a path that
    cannot be (a directory, a block device, a missing directory, a loop of links). Opens nothing."""
    path = Path(path)
    fd = _own_descriptor(path)
    if fd is not None:
        return Target(path, path, _STREAM_NAMES.get(fd, f"descriptor {fd}"), fd)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        real = Path(os.path.realpath(path))
        shown = real.parent if os.path.islink(path) else path.parent
        if not real.parent.is_dir():
            raise BadInput(f"cannot write {path}: directory {shown} does not exist") from None
        return Target(path, real)
    except OSError as e:  # a loop of links, a file where a directory should be, no permission
        raise BadInput(f"cannot write {path}: {e.strerror or e}") from None
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return Target(path, Path(os.path.realpath(path)))
    kind = kind_of_mode(mode)
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return Target(path, path, kind)
    if stat.S_ISDIR(mode):
        raise BadInput(f"cannot write {path}: it is a directory")
    raise BadInput(f"cannot write {path}: it is {kind}")


def check_writable(path: Path) -> Target:
    """:class:`BadInput` unless ``path`` can be written (see :func:`target`). A file's directory must
    take a new file (a temporary one is made and removed there, where the write makes its own); a
    device, FIFO or socket is only checked for permission, never opened (a FIFO would wait)."""
    t = target(path)
    if t.fd is not None:
        try:
            flags = fcntl.fcntl(t.fd, fcntl.F_GETFL)
        except OSError as e:
            raise BadInput(f"cannot write {path}: {e.strerror or e}") from None
        if (flags & os.O_ACCMODE) == os.O_RDONLY:
            raise BadInput(f"cannot write {path}: {t.kind} is not open for writing")
    elif t.direct:
        if not os.access(path, os.W_OK):
            raise BadInput(f"cannot write {path}: {os.strerror(errno.EACCES)}")
    else:
        try:
            fd, tmp = tempfile.mkstemp(dir=t.real.parent, prefix=f".{t.real.name}.", suffix=".tmp")
        except OSError as e:
            raise BadInput(f"cannot write {path}: {e.strerror or e}") from None
        os.close(fd)
        os.unlink(tmp)
    return t


def output_format(
    output: Path | None, fmt: str | None, suffixes: Mapping[str, str], default: str = "table"
) -> str:
    """The format of a command's output: ``--format``, else from the ``--output`` suffix (one of
    ``suffixes``), else ``default``; :class:`BadInput` if the two disagree (``--format csv
    --output m.jsonl``; ``.txt``, plain text, takes any format) or ``output`` cannot be written
    (checked now, before any work)."""
    if output is None:
        return fmt or default
    t = check_writable(output)
    known = suffixes.get(output.suffix.lower())
    if fmt is None:
        if known is None and t.direct:
            names = list(dict.fromkeys([default, *suffixes.values()]))
            listed = ", ".join(names[:-1]) + f" or {names[-1]}"
            raise BadInput(
                f"cannot tell the format of {output} ({t.kind}) from its name: give --format ({listed})"
            )
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


def kind_of_mode(mode: int) -> str:
    """What a file of ``mode`` (``st_mode``) is, in words: ``a FIFO``, ``a directory``, ..."""
    kinds = ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISBLK, "a block device"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


# -- writing ---------------------------------------------------------------------------------------


def _new_file_mode(real: Path) -> int:
    """The permissions of the file written at ``real``: those of the file it replaces, else those
    of any new file (``mkstemp`` alone would make it private)."""
    try:
        return stat.S_IMODE(os.stat(real).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextmanager
def atomic_open(path: Path, binary: bool = False) -> Iterator[IO[Any]]:
    """A file to write the regular file (or new path) ``path`` through: a temporary file beside
    the file ``path`` leads to, fsynced and renamed over it when the block ends, removed if it
    fails. Never half-written; a file replaced keeps its permissions."""
    real = Path(os.path.realpath(path))
    fd, tmp = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), _new_file_mode(real))
            os.fsync(f.fileno())
        os.replace(tmp, real)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def open_direct(t: Target) -> int:
    """A descriptor to write the device, FIFO, socket or descriptor ``t`` in place (a FIFO: waits
    for a reader)."""
    if t.fd is not None:
        for stream in (sys.stdout, sys.stderr):  # what this process printed goes first
            with contextlib.suppress(Exception):
                stream.flush()
        return os.dup(t.fd)
    if t.kind == "a socket":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(t.path))
        except BaseException:
            s.close()
            raise
        return s.detach()
    return os.open(t.path, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)


def write_all(fd: int, data: bytes) -> None:
    """All of ``data`` to ``fd`` (a short write continues)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_error(path: Path, e: OSError, fd: int | None = None) -> Exception:
    """The exception for a failed write of ``path``: the reader of this process's own stdout going
    away stays a :class:`BrokenPipeError` (exit 141, as for stdout); anything else is one line."""
    if isinstance(e, BrokenPipeError) and fd is not None:
        return e
    return BadInput(f"cannot write {path}: {e.strerror or e}")


@contextmanager
def open_output(path: Path, binary: bool = False) -> Iterator[IO[Any]]:
    """A file to write ``path`` through, as the module doc says: atomically for a file (or a link
    to one), in place for a device, FIFO, socket or descriptor. Every failure to write is a
    :class:`BadInput` naming ``path`` (a file keeps its old content)."""
    t = target(path)
    if not t.direct:
        try:
            with atomic_open(path, binary) as f:
                yield f
        except OSError as e:  # permissions, a full disk, ...: the temporary file is already gone
            raise write_error(path, e) from None
        return
    try:
        fd = open_direct(t)
    except OSError as e:
        raise write_error(path, e) from None
    f = os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8")
    try:
        yield f
        f.flush()
    except OSError as e:
        with contextlib.suppress(OSError):
            f.close()  # what is still buffered cannot go either
        raise write_error(path, e, t.fd) from None
    except BaseException:
        with contextlib.suppress(OSError):
            f.close()
        raise
    f.close()


def write_output(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through :func:`open_output`."""
    with open_output(path) as f:
        f.write(text)


class Stream:
    """A device, FIFO, socket or descriptor written in place, piece by piece (one ``write`` each,
    nothing buffered): where a sweep streams its records when ``--output`` is not a file."""

    def __init__(self, t: Target) -> None:
        self.target = t
        try:
            self.fd: int | None = open_direct(t)
        except OSError as e:
            raise write_error(t.path, e) from None

    def write(self, text: str) -> None:
        assert self.fd is not None
        try:
            write_all(self.fd, text.encode("utf-8"))
        except OSError as e:
            raise write_error(self.target.path, e, self.target.fd) from None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


# -- a file held by one writer ---------------------------------------------------------------------

Stamp = tuple[int, int, int, int]  # what identifies a file's content: device, inode, size, mtime


def stamp(st: os.stat_result) -> Stamp:
    """The :data:`Stamp` of a file from its ``stat``."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _lock(fd: int) -> bool:
    """Take the advisory lock of ``fd``'s file at once: False if another holds it (a filesystem
    without locks counts as free)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno not in _NO_LOCKS:
            raise
    return True


class Held:
    """A regular file held by this writer under an exclusive advisory lock (``flock``) until
    :meth:`release`: another :meth:`take` of it (another sweep) is refused, as long as this
    process lives (the kernel drops the lock of a killed process). Appends go through
    :attr:`fd`; :meth:`replace` rewrites the file atomically, locking the new file before it
    takes the path, so the lock never lapses."""

    def __init__(self, path: Path, real: Path, fd: int, created: bool = False) -> None:
        self.path, self.real, self.fd, self.created = path, real, fd, created
        self.size = os.fstat(fd).st_size

    @classmethod
    def take(cls, path: Path, expect: Stamp | bool | None = False) -> Held:
        """Open (or create) and lock the file ``path`` leads to; :class:`BadInput` if another
        writer holds it. ``expect``: the :func:`stamp` of the file as it was read (None: it did
        not exist), refused if the file changed since; False: not checked."""
        real = Path(os.path.realpath(path))
        for _ in range(100):
            created = False
            try:
                fd = os.open(real, _APPEND)
            except FileNotFoundError:
                try:
                    fd = os.open(real, _APPEND | os.O_CREAT | os.O_EXCL, 0o666)
                except FileExistsError:
                    continue  # another writer made it meanwhile
                except OSError as e:
                    raise BadInput(f"cannot write {path}: {e.strerror or e}") from None
                created = True
            except OSError as e:
                raise BadInput(f"cannot write {path}: {e.strerror or e}") from None
            if not _lock(fd):
                os.close(fd)
                raise BadInput(f"cannot write {path}: {BUSY}")
            st = os.fstat(fd)
            try:
                now = os.stat(real)
            except FileNotFoundError:
                now = None
            if now is None or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                os.close(fd)  # replaced or removed before the lock was ours: take the file there now
                continue
            if expect is not False and (None if created else stamp(st)) != expect:
                if created:
                    os.unlink(real)
                os.close(fd)
                raise BadInput(f"cannot write {path}: it changed while it was read ({BUSY})")
            return cls(path, real, fd, created)
        raise BadInput(f"cannot write {path}: {BUSY}")

    def append(self, data: bytes) -> None:
        """Append ``data`` and fsync; if that fails (a full disk), the file is cut back to what it
        held, so that no record is left cut short, and the :class:`OSError` raised."""
        try:
            write_all(self.fd, data)
            os.fsync(self.fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.size)
            raise
        self.size += len(data)

    def cut(self, size: int) -> None:
        """Cut the file to its first ``size`` bytes (a resumed file, to its whole records)."""
        os.ftruncate(self.fd, size)
        self.size = size

    def replace(self, text: str) -> None:
        """Rewrite the file with ``text`` atomically (a new file, fsynced, locked, renamed over it):
        :class:`OSError` if that fails, with the file as it was."""
        data = text.encode("utf-8")
        fd, tmp = tempfile.mkstemp(dir=self.real.parent, prefix=f".{self.real.name}.", suffix=".tmp")
        try:
            write_all(fd, data)
            os.fchmod(fd, stat.S_IMODE(os.fstat(self.fd).st_mode))
            os.fsync(fd)
            _lock(fd)  # a file nobody else has seen: free
            os.replace(tmp, self.real)
        except BaseException:
            os.close(fd)
            Path(tmp).unlink(missing_ok=True)
            raise
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
        os.close(self.fd)  # the old file's lock: the path is the new file's now
        self.fd, self.size = fd, len(data)

    def release(self, remove: bool = False) -> None:
        """Close the file and drop the lock (once); ``remove``: remove the file first."""
        if self.fd >= 0:
            if remove:
                with contextlib.suppress(OSError):
                    os.unlink(self.real)
            os.close(self.fd)
            self.fd = -1
