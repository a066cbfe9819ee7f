"""Writing sweep records as they come, and reading them back for ``--resume``.

Every write leaves a file that parses, even if the process is killed (``kill -9``) at any
moment:

- ``jsonl``: one line per record, appended with a single ``os.write`` on an ``O_APPEND``
  descriptor, then ``fsync``;
- ``csv``: likewise one row per record (the header goes out with the first record, in the
  same write; a record with new columns has the file rewritten atomically with the wider
  header); values are flattened to dotted columns (``summary.spread.gain_log10.q1``), lists
  are JSON text in one cell. To stdout, which cannot be rewritten, rows are printed as points
  finish too: a record's columns follow from its kind (:func:`bptt_cli.run.sweep.shape`: Elman or
  gated cell, which estimators), so the rows wait only until one record of every kind in the
  grid has come, and the header is their union (one kind, the usual case: the first record);
- ``json``: one object ``{"version", "records": [...]}`` (records in grid order), rewritten
  through a temporary file and ``os.replace`` after each record.

The file is held under an advisory lock while the sweep writes it (:class:`bptt_cli.io.output.Held`):
a second sweep on it is refused. A write that fails (a full disk) cuts the file back to its whole
records and stops the sweep (:class:`BadInput`, which says ``--resume`` finishes it). An
``--output`` that is not a file (a FIFO, a character device, a socket, ``/dev/stdout``) is
streamed to as stdout is: jsonl lines and csv rows as points finish, the json document at the end.

Reading back tolerates a last line cut short (only possible if the kernel stopped a write
midway); :func:`read_records` reports where the complete lines end, and resuming truncates
the file there before appending.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import stat
import sys
from collections.abc import Callable, Collection, Hashable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from bptt_cli import __version__
from bptt_cli.errors import BadInput
from bptt_cli.io.jsontext import dumps
from bptt_cli.io.output import Held, Stamp, Stream, kind_of_mode, stamp, target
from bptt_cli.io.points import cell_text

Record = dict[str, Any]
FORMATS = ("jsonl", "json", "csv")


class Sink(Protocol):
    """Where records go, one at a time."""

    def add(self, record: Record) -> None: ...

    def close(self) -> None: ...


class Out(Protocol):
    """A stream that text goes to in pieces: stdout, or an ``--output`` that is not a file."""

    def write(self, text: str) -> None: ...

    def close(self) -> None: ...


class Stdout:
    """This process's stdout, flushed after every piece."""

    def write(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def close(self) -> None:
        pass


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts to one level, keys joined with dots."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _csv_text(value: Any) -> str:
    """A CSV cell: empty for None and non-finite numbers (as in JSON's null); a list as JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    if isinstance(value, list | tuple):
        return dumps(value)
    return cell_text(value)


def _parse_cell(text: str) -> Any:
    """A CSV cell back to a value: empty -> None, a JSON list, int, float, true/false, else text."""
    if text == "":
        return None
    if text in ("true", "false"):
        return text == "true"
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            return text
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def unflatten(row: Mapping[str, str]) -> Record:
    """A CSV row (dotted columns) back to a nested record.

    An empty cell whose column is also the parent of other columns (a value that was ``null``
    in some records and an object in others) is skipped.
    """
    out: Record = {}
    for name, text in row.items():
        *parents, leaf = name.split(".")
        value = _parse_cell(text)
        node: Any = out
        for p in parents:
            if not isinstance(node.get(p), dict):
                if value is None and p in node:  # the parent is a null: keep it
                    break
                node[p] = {}
            node = node[p]
        else:
            if not (value is None and isinstance(node.get(leaf), dict)):
                node[leaf] = value
    return out


def union_columns(columns: list[str], flat: Mapping[str, Any]) -> list[str]:
    """``columns`` with the keys of ``flat`` that it lacks, each placed after its predecessor
    in ``flat`` (so new columns sit beside their section)."""
    out = list(columns)
    previous: str | None = None
    for key in flat:
        if key not in out:
            at = out.index(previous) + 1 if previous in out else len(out)
            parents = [i for i, c in enumerate(out) if key.startswith(c + ".")]
            out.insert(max([at, *(i + 1 for i in parents)]), key)
        previous = key
    return out


def _csv_line(values: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


@dataclass
class Existing:
    """Records read back from an output file, the byte offset where its complete lines end, and
    the file's :func:`~bptt_cli.io.output.stamp` as it was read (None: there was no file)."""

    records: list[Record]
    end: int
    columns: list[str] | None = None
    stamp: Stamp | None = None
    count: int | None = None  # the records in the file, when they are not held (scan_records)

    @property
    def whole(self) -> int:
        """How many whole records the file holds."""
        return len(self.records) if self.count is None else self.count


def _complete_lines(data: bytes) -> tuple[list[bytes], int]:
    end = data.rfind(b"\n") + 1
    return data[:end].splitlines(), end


def _not_records(path: Path, mode: int) -> BadInput:
    return BadInput(f"cannot resume from {path}: it is {kind_of_mode(mode)}, not a file of records")


def _open_records(path: Path) -> IO[bytes]:
    """``path`` opened to read, if it is a regular file (a FIFO would wait for a writer, a device
    might never end: :class:`BadInput`, never opened); ``FileNotFoundError`` if there is none."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise _not_records(path, mode)
    f = open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb")  # noqa: SIM115 (returned) - no wait if it changed
    st = os.fstat(f.fileno())
    if not stat.S_ISREG(st.st_mode):
        f.close()
        raise _not_records(path, st.st_mode)
    return f


def read_records(path: Path, fmt: str) -> Existing:
    """The records in ``path`` (written by a sweep in format ``fmt``); empty if it does not exist.
    Only a regular file is read (a FIFO or a device is refused, never opened)."""
    try:
        with _open_records(path) as f:
            st = os.fstat(f.fileno())
            data = f.read()
    except FileNotFoundError:
        return Existing([], 0)
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror or e}") from None
    read = stamp(st)
    bad = f"cannot resume from {path}: it is not a bptt sweep {fmt} file"
    if fmt == "json":
        if not data.strip():
            return Existing([], len(data), stamp=read)
        try:
            doc = json.loads(data)
            records = doc["records"]
            if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise BadInput(bad) from None
        return Existing(records, len(data), stamp=read)
    lines, end = _complete_lines(data)
    if fmt == "jsonl":
        out = []
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise BadInput(f"{bad} (line {i})") from None
            if not isinstance(record, dict) or "point" not in record:
                raise BadInput(f"{bad} (line {i})")
            out.append(record)
        return Existing(out, end, stamp=read)
    try:
        rows = list(csv.reader(io.StringIO(b"\n".join(lines).decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error):
        raise BadInput(bad) from None
    if not rows:
        return Existing([], 0, stamp=read)
    header, body = rows[0], rows[1:]
    if not any(c.startswith("point.") for c in header) or any(len(r) != len(header) for r in body):
        raise BadInput(bad)
    return Existing([unflatten(dict(zip(header, r, strict=True))) for r in body], end, header, read)


def hold(path: Path, existing: Existing | None) -> Held:
    """The file ``path``, held under its lock for this sweep (:meth:`Held.take`; a resumed file
    must not have changed since it was read) and cut to its whole records (emptied if new)."""
    held = Held.take(path, existing.stamp if existing is not None else False)
    try:
        held.cut(existing.end if existing is not None else 0)  # drop a last line cut short
    except OSError as e:
        held.release()
        raise BadInput(f"cannot write {path}: {e.strerror or e}") from None
    return held


def _whole(n: int) -> str:
    return f"{n} whole record{'' if n == 1 else 's'}"


def full(path: Path, e: OSError, kept: int) -> BadInput:
    """The one line of a write that failed (a full disk) with ``kept`` records whole in ``path``."""
    return BadInput(
        f"cannot write {path}: {e.strerror or e}; it holds {_whole(kept)}: make room, then run the "
        "same sweep with --resume to finish it"
    )


def _stream(path: Path | None) -> Out:
    """Stdout (``path`` None), or the device, FIFO, socket or descriptor ``path``, opened now."""
    return Stdout() if path is None else Stream(target(path))


def scan_records(path: Path, fmt: str) -> tuple[Existing, Iterator[Record]]:
    """The records in ``path`` one at a time, without holding them (``--resume`` over a file of
    millions of records): the :class:`Existing` (``records`` left empty; ``end``, the CSV
    ``columns``, the file's ``stamp`` as the scan began, and ``count``, advanced as the iterator
    goes) and an iterator of the records, raising :class:`BadInput` as :func:`read_records` does
    (a FIFO or a device is refused, never opened). ``jsonl`` and ``csv`` only."""
    try:
        with _open_records(path) as f:
            read = stamp(os.fstat(f.fileno()))
            size = f.seek(0, os.SEEK_END)
            end = 0
            while size > end:  # the end of the last complete line, read backwards
                start = max(end, size - 2**16)
                f.seek(start)
                chunk = f.read(size - start)
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    end = start + cut + 1
                    break
                size = start
    except FileNotFoundError:
        return Existing([], 0), iter(())
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror or e}") from None
    bad = f"cannot resume from {path}: it is not a bptt sweep {fmt} file"
    columns: list[str] | None = None
    if fmt == "csv" and end:
        try:
            with open(path, newline="", encoding="utf-8") as text:
                columns = next(csv.reader(text), None)
        except (UnicodeDecodeError, csv.Error):
            raise BadInput(bad) from None
        except OSError as e:
            raise BadInput(f"cannot read {path}: {e.strerror or e}") from None
        if not columns or not any(c.startswith("point.") for c in columns):
            raise BadInput(bad)
    existing = Existing([], end, columns, read, count=0)

    def lines() -> Iterator[tuple[int, bytes]]:
        with open(path, "rb") as f:
            done = 0
            for i, line in enumerate(f, 1):
                done += len(line)
                if done > end:
                    return
                yield i, line

    def parsed() -> Iterator[Record]:
        if fmt == "jsonl":
            loads = _fast_loads()
            for i, line in lines():
                if not line.strip():
                    continue
                try:
                    record = loads(line)
                except ValueError:
                    raise BadInput(f"{bad} (line {i})") from None
                if not isinstance(record, dict) or "point" not in record:
                    raise BadInput(f"{bad} (line {i})")
                yield record
            return
        assert columns is not None
        for i, line in lines():
            if i == 1:
                continue
            try:
                row = next(csv.reader([line.decode("utf-8")]), [])
            except (UnicodeDecodeError, csv.Error):
                raise BadInput(f"{bad} (line {i})") from None
            if len(row) != len(columns):
                raise BadInput(bad)
            yield unflatten(dict(zip(columns, row, strict=True)))

    def records() -> Iterator[Record]:
        for record in parsed():
            assert existing.count is not None
            existing.count += 1
            yield record

    return existing, records()


def _fast_loads() -> Callable[[bytes], Any]:
    """``orjson.loads`` if installed (a few times faster than ``json.loads``), else ``json.loads``."""
    try:
        import orjson
    except ImportError:  # pragma: no cover
        return json.loads
    return orjson.loads


class JsonLines:
    """jsonl records appended to a file (one ``os.write`` and ``fsync`` each), or streamed to
    stdout (``path`` None) or to an ``--output`` that is not a file."""

    def __init__(self, path: Path | None, existing: Existing | None) -> None:
        self.path = path
        self.held: Held | None = None
        self.out: Out | None = None
        if path is not None and not target(path).direct:
            self.held = hold(path, existing)
            self.count = existing.whole if existing is not None else 0
        else:
            self.out = _stream(path)

    def add(self, record: Record) -> None:
        line = dumps(record) + "\n"
        if self.out is not None:
            self.out.write(line)
            return
        assert self.held is not None and self.path is not None
        try:
            self.held.append(line.encode("utf-8"))
        except OSError as e:
            raise full(self.path, e, self.count) from None
        self.count += 1

    def close(self) -> None:
        if self.held is not None:
            self.held.release()
        if self.out is not None:
            self.out.close()


class CsvRows:
    """csv records: one row per record appended to a file (one ``os.write`` and ``fsync`` each).

    The columns are the union over the records (a record may bring a key the first one lacked):
    when one does, the file is rewritten with the wider header through a temporary file and
    ``os.replace``, so it parses at every moment. The rows already written are read back from
    the file for that (their cells as they are), not held in memory.
    """

    def __init__(self, path: Path, existing: Existing | None) -> None:
        self.path = path
        self.columns: list[str] = list(existing.columns or []) if existing else []
        self.count = existing.whole if existing is not None else 0
        self.held = hold(path, existing)

    def add(self, record: Record) -> None:
        flat = flatten(record)
        columns = self.columns or list(flat)
        try:
            if not self.columns:
                self.held.append((_csv_line(columns) + _row(columns, flat)).encode("utf-8"))
            elif set(flat) <= set(columns):
                self.held.append(_row(columns, flat).encode("utf-8"))
            else:
                columns = union_columns(columns, flat)
                self.held.replace(self._widened(columns, flat))
        except OSError as e:
            raise full(self.path, e, self.count) from None
        self.columns = columns
        self.count += 1

    def _widened(self, columns: list[str], flat: Mapping[str, Any]) -> str:
        """The file's text under the wider header ``columns``, with ``flat`` appended: the rows
        already written are read back from the file (their cells as they are), not held."""
        with open(self.held.real, newline="", encoding="utf-8") as f:
            header, *rows = list(csv.reader(f))
        return _csv_line(columns) + "".join(
            _csv_line([dict(zip(header, row, strict=True)).get(c, "") for c in columns]) for row in rows
        ) + _row(columns, flat)

    def close(self) -> None:
        self.held.release()


def _row(columns: list[str], flat: Mapping[str, Any]) -> str:
    return _csv_line([_csv_text(flat.get(c)) for c in columns])


class CsvStdout:
    """csv records printed to stdout (or ``out``, an ``--output`` that is not a file) as they come:
    rows are held only until a record of each of the ``kinds`` expected has come (``kind_of``
    tells a record's), then the header (the union of their columns) and the rows go out, and
    every later row at once."""

    def __init__(
        self, kinds: Collection[Hashable], kind_of: Callable[[Record], Hashable], out: Out | None = None
    ) -> None:
        self.waiting, self.kind_of = set(kinds), kind_of
        self.out = out or Stdout()
        self.held: list[dict[str, Any]] = []
        self.columns: list[str] | None = None
        self.warned = False

    def add(self, record: Record) -> None:
        flat = flatten(record)
        if self.columns is None:
            self.held.append(flat)
            self.waiting.discard(self.kind_of(record))
            if not self.waiting:
                self._start()
            return
        if not self.warned and not set(flat) <= set(self.columns):
            self.warned = True
            print(
                "bptt: warning: a record has columns the CSV header lacks; they are left out of "
                "stdout (--output FILE.csv or --format jsonl keep them)",
                file=sys.stderr,
            )
        self.out.write(_row(self.columns, flat))

    def _start(self) -> None:
        columns: list[str] = []
        for flat in self.held:
            columns = union_columns(columns, flat)
        self.columns = columns
        self.out.write(_csv_line(columns) + "".join(_row(columns, f) for f in self.held))
        self.held = []

    def close(self) -> None:
        try:
            if self.columns is None and self.held:  # some kind never came (its points failed)
                self._start()
        finally:
            self.out.close()


class JsonDocument:
    """All records as one JSON object, rewritten atomically after each record (or written once at
    the end to stdout, ``path`` None, or to an ``--output`` that is not a file)."""

    def __init__(self, path: Path | None, order: Callable[[Record], int], existing: Existing | None) -> None:
        self.path, self.order = path, order
        self.records: list[Record] = list(existing.records) if existing else []
        self.held: Held | None = None
        self.out: Out | None = None
        if path is not None and not target(path).direct:
            self.held = hold(path, existing)
            try:
                self.held.replace(self.text())
            except OSError as e:  # not even an empty document fits: a file made here goes again
                self.held.release(remove=self.held.created)
                raise full(path, e, len(self.records)) from None
        else:
            self.out = _stream(path)

    def text(self) -> str:
        records = sorted(self.records, key=self.order)
        return dumps({"version": __version__, "records": records}, indent=1) + "\n"

    def add(self, record: Record) -> None:
        self.records.append(record)
        if self.held is not None:
            assert self.path is not None
            try:
                self.held.replace(self.text())
            except OSError as e:  # the temporary file is already gone; the file keeps its last records
                self.records.pop()
                raise full(self.path, e, len(self.records)) from None

    def close(self) -> None:
        if self.held is not None:
            self.held.release()
        if self.out is not None:
            try:
                self.out.write(self.text())
            finally:
                self.out.close()


def open_sink(
    fmt: str,
    path: Path | None,
    existing: Existing | None,
    order: Callable[[Record], int],
    kinds: Collection[Hashable] = (),
    kind_of: Callable[[Record], Hashable] = lambda record: None,
) -> Sink:
    """A sink for records in ``fmt`` to ``path`` (stdout if None), keeping ``existing`` ones
    (resume) or starting an empty file, which parses (no record yet), at once. ``kinds`` and
    ``kind_of``: the kinds of record to come, for CSV to stdout (see :class:`CsvStdout`)."""
    if fmt == "json":
        return JsonDocument(path, order, existing)
    if fmt == "csv":
        if path is not None and not target(path).direct:
            return CsvRows(path, existing)
        return CsvStdout(kinds, kind_of, _stream(path))
    return JsonLines(path, existing)
