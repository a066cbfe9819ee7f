"""Byte sizes as text: ``512M`` read as bytes, bytes written as ``1.5 GiB`` (powers of 1024)."""

from __future__ import annotations

import math
import re

from bptt_cli.errors import BadInput

UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_SIZE = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(?:([KMGT])(?:i?B)?|B)?\s*", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``512M``, ``2G``, ``1.5GiB``, ``100000`` (bytes; K/M/G/T are powers of 1024) -> bytes."""
    match = _SIZE.fullmatch(text)
    if not match:
        raise BadInput(f"cannot read memory size {text!r} (use e.g. 512M, 2G or a number of bytes)")
    value = float(match.group(1)) * UNITS[(match.group(2) or "").upper()]
    if not (math.isfinite(value) and value >= 1):
        raise BadInput(f"memory size must be at least 1 byte, got {text!r}")
    return int(value)


def format_size(n_bytes: float) -> str:
    """``1.5 GiB``, ``320 MiB``, ``12 KiB``, ``100 B``."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n_bytes >= size:
            return f"{n_bytes / size:.3g} {unit}"
    return f"{n_bytes:.0f} B"
