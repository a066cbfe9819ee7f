"""The grid of a sweep: axes parsed from strings, their product, and a key per grid point.

:class:`Points` tells which grid points are the same experiment (equal resolved settings:
``--inputs-dim 8`` is the default's point) and which give the same numbers (they differ only in
options their cell ignores, e.g. ``--forget-bias`` but for the LSTM).

An axis is written as on the command line: a comma list (``10,100,1000``, ``identity,tanh``)
or, for a numeric option, a range ``START:STOP:COUNT`` (evenly spaced, ``numpy.linspace``) or
``START:STOP:COUNT:log`` (geometric, ``numpy.geomspace``); list items and ranges can be mixed
(``0.5:1.5:11,2``). Floats from a range are rounded to 12 significant digits (so ``0.6``, not
``0.6000000000000001``: a record's settings reproduce it exactly), integers are rounded to the
nearest integer, and repeated values are dropped. Every value is then checked by the
``analyze`` option's own type (range limits, choices), so an axis accepts exactly what
``bptt analyze`` accepts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import typer

from bptt_cli.errors import BadInput
from bptt_cli.io.points import Axis, PointKey, cell_text, describe, plain, point_key

RANGE_KINDS = ("lin", "log")


def flag_of(param: Any) -> str:
    """The option's command-line name, e.g. ``--inputs-dim``."""
    opts = [o for o in getattr(param, "opts", ()) if o.startswith("--")]
    return opts[0] if opts else "--" + str(param.name).replace("_", "-")


def value_kind(param: Any) -> type | None:
    """``int``, ``float`` or ``bool`` for a numeric or boolean option, else ``None``."""
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)  # typer >= 0.29
    if annotation in (int, float, bool):
        return annotation
    names = {"integer": int, "int range": int, "float": float, "float range": float, "boolean": bool}
    return names.get(getattr(param.type, "name", ""))  # typer < 0.29: the click type


def convert(
    param: Any, value: Any, ctx: typer.Context, flag: str | None = None, item: str | None = None
) -> Any:
    """``value`` checked and converted by ``param`` (an option of ``analyze``, whose context is
    ``ctx``), as a plain value. ``item``: how to name the value in the error (one value of an
    axis), unless the option's own message already quotes it."""
    try:
        return plain(param.process_value(ctx, value))
    except typer.BadParameter as e:
        named = "" if item is None or item in e.message else f" {item}:"
        raise BadInput(f"{flag or flag_of(param)}:{named} {e.message}") from None


def _number(text: str, what: str, flag: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadInput(f"{flag}: {what} {text!r} of the range is not a number") from None
    if not math.isfinite(value):
        raise BadInput(f"{flag}: {what} {text!r} of the range is not a finite number")
    return value


def parse_range(text: str, kind: type, flag: str) -> list[Any]:
    """``START:STOP:COUNT[:lin|log]`` to a list of ``COUNT`` numbers (see the module doc)."""
    import numpy as np

    parts = [p.strip() for p in text.split(":")]
    if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] not in RANGE_KINDS):
        raise BadInput(f"{flag}: range {text!r} must be START:STOP:COUNT or START:STOP:COUNT:log")
    start, stop = _number(parts[0], "start", flag), _number(parts[1], "stop", flag)
    try:
        count = int(parts[2])
    except ValueError:
        raise BadInput(f"{flag}: count {parts[2]!r} of range {text!r} is not an integer") from None
    if count < 1:
        raise BadInput(f"{flag}: count of range {text!r} must be a positive integer, got {count}")
    if len(parts) == 4 and parts[3] == "log":
        if start <= 0 or stop <= 0:
            raise BadInput(f"{flag}: a log range needs START and STOP > 0, got {text!r}")
        raw = np.geomspace(start, stop, count)
    else:
        raw = np.linspace(start, stop, count)
    if kind is int:
        return [round(float(v)) for v in raw]
    return [float(f"{float(v):.12g}") for v in raw]


def parse_axis(text: str, param: Any, ctx: typer.Context, flag: str | None = None) -> tuple[Any, ...]:
    """The values of one axis written as on the command line (see the module doc).

    Raises :class:`BadInput` (naming the option) for an empty axis, a malformed range or a
    value the ``analyze`` option would reject.
    """
    flag = flag or flag_of(param)
    kind = value_kind(param)
    if not text.strip():
        raise BadInput(f"{flag}: empty axis (give a value, a comma list or a range)")
    raw: list[tuple[Any, str]] = []  # each value, and how an error names it
    for piece in text.split(","):
        piece = piece.strip()
        if not piece:
            raise BadInput(f"{flag}: empty value in {text!r}")
        if kind in (int, float) and ":" in piece:
            raw.extend((v, f"{cell_text(v)} (of the range {piece})") for v in parse_range(piece, kind, flag))
        else:
            raw.append((piece, piece))
    return unique(convert(param, v, ctx, flag, item) for v, item in raw)


def unique(values: Iterable[Any]) -> tuple[Any, ...]:
    """``values`` without repeats, in first-seen order."""
    seen: dict[str, Any] = {}
    for v in values:
        seen.setdefault(cell_text(v), v)
    return tuple(seen.values())


def points(axes: Sequence[Axis]) -> list[dict[str, Any]]:
    """Every combination of the axes' values (the last axis varies fastest)."""
    names = [a.name for a in axes]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(a.values for a in axes))]


Point = dict[str, Any]


@dataclass
class Points:
    """The points of a sweep's grid (``points``, the product of ``axes``), each with the
    ``config`` its record will hold and the options its experiment ignores.

    ``identity[i]``: the point's settings with every resolved option filled in
    (:func:`bptt_cli.run.experiment.resolved_options`); points of equal identity are one point,
    ``unique`` lists the first of each. ``work[i]``: the identity without the ignored options;
    points of equal ``work`` have the same numbers (computed once).
    """

    points: list[Point]
    configs: list[Mapping[str, Any]]
    ignored: list[tuple[str, ...]]
    axes: Sequence[Axis]

    def __post_init__(self) -> None:
        normal = [self._normal(p, c) for p, c in zip(self.points, self.configs, strict=True)]
        self.normal = normal
        self.identity = [point_key(n) for n in normal]
        self.work = [
            point_key({k: v for k, v in n.items() if k not in ignored})
            for n, ignored in zip(normal, self.ignored, strict=True)
        ]
        self.index: dict[PointKey, int] = {}
        for i, key in enumerate(self.identity):
            self.index.setdefault(key, i)
        self.unique = [i for i, key in enumerate(self.identity) if self.index[key] == i]
        self.raw = {point_key(p): i for i, p in enumerate(self.points)}

    @staticmethod
    def _normal(point: Mapping[str, Any], config: Mapping[str, Any]) -> Point:
        from bptt_cli.run.experiment import resolved_options

        return {**point, **resolved_options(config)}

    def of(self, point: Mapping[str, Any]) -> int:
        """The index (in ``unique``'s terms: the first of its identity) of a point of the grid."""
        return self.index[self.identity[self.raw[point_key(point)]]]

    def locate(self, record: Mapping[str, Any]) -> int | None:
        """The grid point a record (of a file) is, as an index of ``unique``'s, or ``None``."""
        i = self.raw.get(point_key(record.get("point") or {}))
        if i is not None:
            return self.index[self.identity[i]]
        try:
            return self.index.get(point_key(self._normal(record["point"], record["config"])))
        except (KeyError, TypeError, ValueError):  # not a record of a sweep's (BadInput is a ValueError)
            return None

    def difference(self, record: Mapping[str, Any]) -> str:
        """Why a record (of a file) is no point of this grid, naming the first setting that differs."""
        point = record.get("point") or {}
        names = {a.name: a.flag for a in self.axes}
        unknown = sorted(set(point) - set(names))
        if unknown:
            return f"its point has settings bptt analyze does not have: {', '.join(unknown)}"
        try:
            normal = self._normal({**{n: None for n in names}, **point}, record["config"])
        except (KeyError, TypeError, ValueError) as e:
            return f"its config cannot be read ({e})"
        for a in self.axes:
            ours = unique(self.normal[i].get(a.name) for i in self.unique)
            value = normal.get(a.name)
            if cell_text(value) not in {cell_text(v) for v in ours}:
                theirs = "unset" if value is None else cell_text(value)
                listed = " or ".join("unset" if v is None else cell_text(v) for v in ours)
                return f"the file has {a.flag} {theirs} where this sweep has {listed}"
        return f"the file's {describe(normal, self.axes)} is no combination of this sweep's axes"
