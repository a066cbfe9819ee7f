"""JSON text of the records: numpy values unwrapped, non-finite numbers written as ``null``.

Non-finite numbers never reach the JSON text: ``-inf`` (an exact zero on the log scale) and NaN
(undefined) are written as ``null`` on purpose, and ``allow_nan=False`` guards it.

Numbers are written as Python's ``json`` writes them (``repr`` of the float: the shortest text
that reads back to the same float, e.g. ``0.1``, ``1e-05``, ``1e+16``), and the text is byte
for byte that of ``json.dumps`` with its default separators (``", "``, ``": "``). Arrays, which
hold nearly all the numbers of a record, are formatted in bulk (:func:`number_tokens`): by
``orjson`` (its ``OPT_SERIALIZE_NUMPY``) when it is installed, whose digits are the same
shortest ones but whose notation differs below ``1e-4`` (``0.00001`` and ``1e-8`` where
Python writes ``1e-05`` and ``1e-08``): those entries, and the non-finite ones, are rewritten
one by one. Without ``orjson`` the entries go through ``float.__repr__`` (the same text, about
15 times slower).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPR_BELOW = 1e-4  # orjson's notation differs from repr's for nonzero |x| below this
# values either side of every switch of notation (repr: scientific from 1e16 and below 1e-4)
PROBE = (0.0, -0.0, 0.1, 1.5, -123.456, 1e15, 9999999999999998.0, 1e16, 1.5e16, 1e22, 1e300,
         1.7976931348623157e308, 1e-4, 0.00012345, 2.5e-10, 5e-324, -7.25e-100)


def _orjson_writer() -> Callable[[np.ndarray], bytes] | None:
    """orjson's writer of a numpy array (``OPT_SERIALIZE_NUMPY``), if orjson is installed and
    writes the probe values as ``repr`` does (above ``REPR_BELOW``: checked once, so that an
    orjson version that changed its notation falls back to ``repr`` rather than changing the
    output)."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is a dependency; the plain path is tested directly
        return None

    def dumps_numpy(a: np.ndarray) -> bytes:
        return orjson.dumps(a, option=orjson.OPT_SERIALIZE_NUMPY)

    probe = [v for v in PROBE if not 0 < abs(v) < REPR_BELOW]
    ok = dumps_numpy(np.array(probe)).decode() == "[" + ",".join(map(repr, probe)) + "]"
    return dumps_numpy if ok else None


_BULK = _orjson_writer()  # None: every number through repr


def jsonable(obj: Any) -> Any:
    """Plain Python values for ``json``: numpy scalars and arrays unwrapped, non-finite to None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _array_values(obj)
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _array_values(a: np.ndarray) -> Any:
    """``a.tolist()`` with every non-finite float as None (no per-entry Python call but for those)."""
    if a.ndim == 0:
        return jsonable(a.item())
    if a.ndim > 1:
        return [_array_values(row) for row in a]
    values = a.tolist()
    if a.dtype.kind == "f":
        for i in np.flatnonzero(~np.isfinite(a)).tolist():
            values[i] = None
    elif a.dtype.kind not in "iub":
        return [jsonable(v) for v in values]
    return values


def dumps(obj: Any, indent: int | None = None) -> str:
    return json.dumps(jsonable(obj), allow_nan=False, indent=indent)


def number_tokens(a: np.ndarray, null: str = "null") -> list[str]:
    """The text of every entry of the float or integer array ``a`` (in C order), as ``json.dumps``
    writes it (``repr`` of the float), non-finite entries as ``null``."""
    flat = np.ascontiguousarray(a).ravel()
    if flat.dtype.kind in "iu":
        return [str(v) for v in flat.tolist()]
    flat = flat.astype(np.float64, copy=False)
    if _BULK is None:
        return [repr(v) if math.isfinite(v) else null for v in flat.tolist()]
    tokens = _BULK(flat)[1:-1].decode().split(",") if flat.size else []
    for i in _rewrite(flat).tolist():
        v = float(flat[i])
        tokens[i] = repr(v) if math.isfinite(v) else null
    return tokens


def _rewrite(flat: np.ndarray) -> np.ndarray:
    """Indices of the entries orjson does not write as ``json.dumps`` does: non-finite, and
    nonzero below ``REPR_BELOW`` in magnitude."""
    with np.errstate(invalid="ignore"):
        mag = np.abs(flat)
        return np.flatnonzero(~np.isfinite(flat) | ((mag < REPR_BELOW) & (mag > 0)))


def _nest(tokens: list[str], shape: tuple[int, ...]) -> str:
    """The JSON array of ``shape`` whose entries, in C order, are ``tokens``."""
    if len(shape) == 1:
        return "[" + ", ".join(tokens) + "]"
    step = math.prod(shape[1:])
    parts = (_nest(tokens[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0]))
    return "[" + ", ".join(parts) + "]"


def array_text(a: np.ndarray) -> str:
    """The JSON text of a numeric (float, integer or boolean) array of any shape, exactly as
    ``json.dumps(jsonable(a))`` writes it."""
    if a.dtype.kind == "b":
        return json.dumps(a.tolist())
    if a.ndim == 0:
        return json.dumps(jsonable(a.item()), allow_nan=False)
    if _BULK is not None and a.dtype.kind == "f":
        data = np.ascontiguousarray(a, dtype=np.float64)
        if not _rewrite(data.ravel()).size:  # orjson's text is json.dumps's but for the separators
            return _BULK(data).decode().replace(",", ", ")
    return _nest(number_tokens(a), a.shape)


CHUNK = 8192  # array entries formatted at a time by write_json


def write_json(obj: Any, write: Callable[[str], object]) -> None:
    """``obj`` as the JSON text ``dumps`` gives, written in pieces.

    numpy arrays are formatted a chunk of entries at a time (:func:`array_text`), so a record
    with millions of numbers (``grad_h_log10`` at T = 1e6) never exists as one Python list or
    one string.
    """
    if isinstance(obj, dict):
        write("{")
        for j, (k, v) in enumerate(obj.items()):
            write(("" if j == 0 else ", ") + json.dumps(str(k)) + ": ")
            write_json(v, write)
        write("}")
    elif isinstance(obj, np.ndarray) and obj.dtype.kind in "fiub":
        if obj.ndim == 1 and len(obj) > CHUNK:
            write("[")
            for j in range(0, len(obj), CHUNK):
                write(("" if j == 0 else ", ") + array_text(obj[j : j + CHUNK])[1:-1])
            write("]")
        elif obj.ndim > 1 and obj.size > CHUNK:
            write("[")
            for j, row in enumerate(obj):
                if j:
                    write(", ")
                write_json(row, write)
            write("]")
        else:
            write(array_text(obj))
    elif (isinstance(obj, np.ndarray) and obj.ndim >= 1) or isinstance(obj, list | tuple):
        write("[")
        for j, v in enumerate(obj):
            if j:
                write(", ")
            write_json(v, write)
        write("]")
    else:
        write(json.dumps(jsonable(obj), allow_nan=False))
