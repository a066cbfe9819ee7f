"""The points of a sweep's grid as data and text: an axis and its values, a setting written as text
(the same text whether it comes from the command line, JSON or CSV), and the key that identifies a
point."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any


@dataclass(frozen=True)
class Axis:
    """One option of ``bptt analyze`` and the values it takes in the sweep (in order)."""

    name: str
    flag: str
    values: tuple[Any, ...]

    @property
    def swept(self) -> bool:
        """More than one value: a dimension of the grid (else a fixed setting)."""
        return len(self.values) > 1


def plain(value: Any) -> Any:
    """A JSON-ready setting: paths as strings, everything else as it is."""
    return str(value) if isinstance(value, PurePath) else value


def cell_text(value: Any) -> str:
    """A setting as text: ``""`` for unset, ``repr`` for floats, ``true``/``false`` for booleans.

    The same text for a value read back from JSON or CSV, so it identifies grid points.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


PointKey = tuple[tuple[str, str], ...]


def point_key(point: Mapping[str, Any]) -> PointKey:
    """What identifies a grid point: every setting's text, by option name."""
    return tuple(sorted((name, cell_text(value)) for name, value in point.items()))


def describe(point: Mapping[str, Any], axes: Sequence[Axis]) -> str:
    """``point cell=tanh T=100 radius=0.9``: the point's values on the swept axes (``the single
    point`` without any)."""
    parts = [f"{a.flag.lstrip('-')}={cell_text(point.get(a.name))}" for a in axes if a.swept]
    return "point " + " ".join(parts) if parts else "the single point"
