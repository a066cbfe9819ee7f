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
import sys
from collections.abc import Callable, Collection, Hashable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bptt_cli import __version__
from bptt_cli.errors import BadInput
from bptt_cli.io.jsontext import dumps
from bptt_cli.io.output import write_atomic
from bptt_cli.io.points import cell_text

Record = dict[str, Any]
FORMATS = ("jsonl", "json", "csv")


class Sink(Protocol):
    """Where records go, one at a time."""

    def add(self, record: Record) -> None: ...

    def close(self) -> None: ...


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


def append(fd: int, text: str) -> None:
    """Append ``text`` with one ``os.write`` (looping only on a short write), then ``fsync``."""
    data = text.encode("utf-8")
    while data:
        written = os.write(fd, data)
        data = data[written:]
    os.fsync(fd)


@dataclass
class Existing:
    """Records read back from an output file, and the byte offset where its complete lines end."""

    records: list[Record]
    end: int
    columns: list[str] | None = None


def _complete_lines(data: bytes) -> tuple[list[bytes], int]:
    end = data.rfind(b"\n") + 1
    return data[:end].splitlines(), end


def read_records(path: Path, fmt: str) -> Existing:
    """The records in ``path`` (written by a sweep in format ``fmt``); empty if it does not exist."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Existing([], 0)
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror or e}") from None
    bad = f"cannot resume from {path}: it is not a bptt sweep {fmt} file"
    if fmt == "json":
        if not data.strip():
            return Existing([], len(data))
        try:
            doc = json.loads(data)
            records = doc["records"]
            if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise BadInput(bad) from None
        return Existing(records, len(data))
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
        return Existing(out, end)
    rows = list(csv.reader(io.StringIO(b"\n".join(lines).decode("utf-8"))))
    if not rows:
        return Existing([], 0)
    header, body = rows[0], rows[1:]
    if not any(c.startswith("point.") for c in header) or any(len(r) != len(header) for r in body):
        raise BadInput(bad)
    return Existing([unflatten(dict(zip(header, r, strict=True))) for r in body], end, header)


def scan_records(path: Path, fmt: str) -> tuple[Existing, Iterator[Record]]:
    """The records in ``path`` one at a time, without holding them (``--resume`` over a file of
    millions of records): the :class:`Existing` (``records`` left empty; ``end`` and the CSV
    ``columns``) and an iterator of the records, raising :class:`BadInput` as
    :func:`read_records` does. ``jsonl`` and ``csv`` only."""
    try:
        with open(path, "rb") as f:
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
        with open(path, newline="", encoding="utf-8") as text:
            columns = next(csv.reader(text), None)
        if not columns or not any(c.startswith("point.") for c in columns):
            raise BadInput(bad)

    def lines() -> Iterator[tuple[int, bytes]]:
        with open(path, "rb") as f:
            done = 0
            for i, line in enumerate(f, 1):
                done += len(line)
                if done > end:
                    return
                yield i, line

    def records() -> Iterator[Record]:
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
            row = next(csv.reader([line.decode("utf-8")]), [])
            if len(row) != len(columns):
                raise BadInput(bad)
            yield unflatten(dict(zip(columns, row, strict=True)))

    return Existing([], end, columns), records()


def _fast_loads() -> Callable[[bytes], Any]:
    """``orjson.loads`` if installed (a few times faster than ``json.loads``), else ``json.loads``."""
    try:
        import orjson
    except ImportError:  # pragma: no cover
        return json.loads
    return orjson.loads


class JsonLines:
    """jsonl records appended to a file (one ``os.write`` and ``fsync`` each), or to stdout."""

    def __init__(self, path: Path | None, existing: Existing | None) -> None:
        self.fd = _open_append(path, existing) if path is not None else None

    def add(self, record: Record) -> None:
        line = dumps(record) + "\n"
        if self.fd is None:
            sys.stdout.write(line)
            sys.stdout.flush()
        else:
            append(self.fd, line)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)


def _open_append(path: Path, existing: Existing | None) -> int:
    """An ``O_APPEND`` descriptor: the file emptied, or (resume) cut after its last whole line."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (0 if existing else os.O_TRUNC)
    try:
        fd = os.open(path, flags, 0o644)
        if existing is not None:
            os.truncate(fd, existing.end)  # drop a last line cut short
    except OSError as e:
        raise BadInput(f"cannot write {path}: {e.strerror or e}") from None
    return fd


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
        self.fd = _open_append(path, existing)

    def add(self, record: Record) -> None:
        flat = flatten(record)
        if not self.columns:
            self.columns = list(flat)
            append(self.fd, _csv_line(self.columns) + _row(self.columns, flat))
        elif set(flat) <= set(self.columns):
            append(self.fd, _row(self.columns, flat))
        else:
            self.columns = union_columns(self.columns, flat)
            self._rewrite(flat)

    def _rewrite(self, flat: Mapping[str, Any]) -> None:
        with open(self.path, newline="", encoding="utf-8") as f:
            header, *rows = list(csv.reader(f))
        text = _csv_line(self.columns) + "".join(
            _csv_line([dict(zip(header, row, strict=True)).get(c, "") for c in self.columns]) for row in rows
        ) + _row(self.columns, flat)
        write_atomic(self.path, text)
        os.close(self.fd)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def close(self) -> None:
        os.close(self.fd)


def _row(columns: list[str], flat: Mapping[str, Any]) -> str:
    return _csv_line([_csv_text(flat.get(c)) for c in columns])


class CsvStdout:
    """csv records printed to stdout as they come: rows are held only until a record of each of
    the ``kinds`` expected has come (``kind_of`` tells a record's), then the header (the union
    of their columns) and the rows go out, and every later row at once."""

    def __init__(self, kinds: Collection[Hashable], kind_of: Callable[[Record], Hashable]) -> None:
        self.waiting, self.kind_of = set(kinds), kind_of
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
        _print(_row(self.columns, flat))

    def _start(self) -> None:
        columns: list[str] = []
        for flat in self.held:
            columns = union_columns(columns, flat)
        self.columns = columns
        _print(_csv_line(columns) + "".join(_row(columns, f) for f in self.held))
        self.held = []

    def close(self) -> None:
        if self.columns is None and self.held:  # some kind never came (its points failed)
            self._start()


def _print(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


class JsonDocument:
    """All records as one JSON object, rewritten atomically after each record (or printed at
    the end when ``path`` is None)."""

    def __init__(self, path: Path | None, order: Callable[[Record], int], existing: Existing | None) -> None:
        self.path, self.order = path, order
        self.records: list[Record] = list(existing.records) if existing else []
        if path is not None:
            self._write()

    def text(self) -> str:
        records = sorted(self.records, key=self.order)
        return dumps({"version": __version__, "records": records}, indent=1) + "\n"

    def _write(self) -> None:
        assert self.path is not None
        try:
            write_atomic(self.path, self.text())
        except OSError as e:  # the temporary file is already gone; the file keeps its last records
            raise BadInput(f"cannot write {self.path}: {e.strerror or e}") from None

    def add(self, record: Record) -> None:
        self.records.append(record)
        if self.path is not None:
            self._write()

    def close(self) -> None:
        if self.path is None:
            sys.stdout.write(self.text())
            sys.stdout.flush()


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
        return CsvRows(path, existing) if path is not None else CsvStdout(kinds, kind_of)
    return JsonLines(path, existing)
