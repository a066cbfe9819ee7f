"""JSON text of the records: numpy values unwrapped, non-finite numbers written as ``null``.

Non-finite numbers never reach the JSON text: ``-inf`` (an exact zero on the log scale) and NaN
(undefined) are written as ``null`` on purpose, and ``allow_nan=False`` guards it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def jsonable(obj: Any) -> Any:
    """Plain Python values for ``json``: numpy scalars and arrays unwrapped, non-finite to None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps(obj: Any, indent: int | None = None) -> str:
    return json.dumps(jsonable(obj), allow_nan=False, indent=indent)


CHUNK = 8192  # array entries formatted at a time by write_json


def write_json(obj: Any, write: Callable[[str], object]) -> None:
    """``obj`` as the JSON text ``dumps`` gives, written in pieces.

    numpy arrays are formatted a chunk of entries at a time, so a record with millions of
    numbers (``grad_h_log10`` at T = 1e6) never exists as one Python list or one string.
    """
    if isinstance(obj, dict):
        write("{")
        for j, (k, v) in enumerate(obj.items()):
            write(("" if j == 0 else ", ") + json.dumps(str(k)) + ": ")
            write_json(v, write)
        write("}")
    elif (isinstance(obj, np.ndarray) and obj.ndim > 1) or isinstance(obj, list | tuple):
        write("[")
        for j, v in enumerate(obj):
            if j:
                write(", ")
            write_json(v, write)
        write("]")
    elif isinstance(obj, np.ndarray) and obj.ndim == 1 and obj.dtype.kind in "fiub":
        write("[")
        for j in range(0, len(obj), CHUNK):
            values = jsonable(obj[j : j + CHUNK].tolist())
            write(("" if j == 0 else ", ") + json.dumps(values, allow_nan=False)[1:-1])
        write("]")
    else:
        write(json.dumps(jsonable(obj), allow_nan=False))
