"""Arrays from ``.npz``/``.npy`` files (or handed over in memory), checked before use.

Files are data, never code: they are read with ``allow_pickle=False``. Every problem
(unreadable file, pickled objects, NaN, a wrong or mismatched shape) is a
:class:`~bptt_cli.errors.BadInput` whose message names the file and the shapes.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from bptt_cli.core.scaled import Array
from bptt_cli.errors import BadInput

LABELS = {"x": "inputs", "y": "targets"}
NDIM = {"W_hh": 2, "W_hx": 2, "W_qh": 2, "b_h": 1, "b_q": 1, "inputs": 2, "targets": 2}


def check_array(value: np.ndarray, name: str, path: Path | str, ndim: int | None = None) -> Array:
    """``value`` as float64, checked: real numbers, ``ndim`` dimensions (default ``NDIM[name]``),
    no NaN or inf; every problem is a :class:`BadInput` naming ``name`` and ``path``.
    """
    ndim = NDIM[name] if ndim is None else ndim
    if value.dtype.kind not in "biuf":
        raise BadInput(f"{name} in {path} has dtype {value.dtype}; expected real numbers")
    if value.ndim != ndim:
        raise BadInput(f"{name} in {path} has shape {value.shape}; expected a {ndim}-D array")
    with np.errstate(over="ignore", invalid="ignore"):  # a wider float beyond float64: said below
        as64 = value.astype(np.float64)
    if not np.all(np.isfinite(as64)):
        if np.any(np.isnan(value)):
            raise BadInput(f"{name} in {path} contains NaN")
        if not np.all(np.isfinite(value)):
            raise BadInput(f"{name} in {path} contains inf")
        largest = np.format_float_scientific(np.max(np.abs(value)), precision=3, trim="-")
        raise BadInput(
            f"{name} in {path} ({value.dtype}) holds values beyond float64's range (up to {largest} in "
            f"magnitude, float64 stops at 1.8e308); bptt computes in float64"
        )
    return as64


NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # .npz files are zip archives


def load_arrays(path: Path) -> np.ndarray | dict[str, np.ndarray]:
    """Read a .npy or .npz file without pickle; every failure is a BadInput naming the file.

    The file is opened here (not by ``np.load``) so that it is closed even when numpy fails
    half-way, and anything without the .npy/.npz signature is refused before numpy would try
    to read it as a pickle.
    """
    try:
        with open(path, "rb") as f:
            magic = f.read(len(NPY_MAGIC))
            if not (magic.startswith(NPY_MAGIC) or magic.startswith(ZIP_MAGIC)):
                why = "it is empty" if not magic else "no .npy/.npz signature; pickles are never loaded"
                raise BadInput(f"{path} is not a valid .npy/.npz file ({why})")
            f.seek(0)
            loaded = np.load(f, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                return loaded
            with loaded:
                return {k: loaded[k] for k in loaded.files}
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        if isinstance(e, BadInput):
            raise
        if "pickle" in str(e):
            raise BadInput(
                f"{path} holds Python objects that need pickle; bptt only loads plain numeric arrays"
            ) from None
        raise BadInput(f"{path} is not a valid .npy/.npz file: {e}") from None
    except (zipfile.BadZipFile, EOFError) as e:
        raise BadInput(f"{path} is not a valid .npy/.npz file: {e}") from None


def load_series(source: Path | np.ndarray, name: str, label: str | None = None) -> Array:
    """A ``(T, k)`` array (``inputs`` or ``targets``) from a ``.npy`` file, or given as an array
    (``label`` names it in messages)."""
    if isinstance(source, np.ndarray):
        return check_array(source, name, label or f"the given {name}")
    loaded = load_arrays(source)
    if not isinstance(loaded, np.ndarray):
        raise BadInput(f"{name} file {source} must be a .npy array of shape (T, k), not an archive")
    return check_array(loaded, name, source)


SizeAxes = tuple[tuple[str, tuple[str | None, ...]], ...]
"""For each array, the size each axis fixes (``None``: an axis no other array shares)."""

def fixed_sizes(arrays: Mapping[str, Array], axes: SizeAxes) -> dict[str, tuple[int, str]]:
    """The sizes (``hidden``, ``inputs_dim``, ``outputs_dim``, ``T``) that ``arrays`` fix.

    ``axes`` names the size of each axis of each array, in the order they are checked. Returns
    each size as ``(size, description of the first array that fixes it)``; an array that
    disagrees with an earlier one, or a series without time steps, is a :class:`BadInput`.
    """
    sizes: dict[str, tuple[int, str]] = {}
    for key, names in axes:
        if key not in arrays:
            continue
        what = f"{LABELS.get(key, key)} of shape {arrays[key].shape}"
        for size, value in zip(names, arrays[key].shape, strict=False):
            if size is None:
                continue
            if size in sizes and sizes[size][0] != value:
                raise BadInput(
                    f"{what} does not match {sizes[size][1]}: {size} {value} against {sizes[size][0]}"
                )
            sizes.setdefault(size, (value, what))
    if "T" in sizes and sizes["T"][0] < 1:
        raise BadInput(f"{sizes['T'][1]} has no time steps")
    return sizes




def load_classes(source: Path | np.ndarray, label: str | None = None) -> NDArray[np.int64]:
    """Integer classes ``(T,)`` (the targets of ``--criterion cross-entropy``) from a ``.npy`` file or
    an array: one non-negative integer per step (the upper bound, q, is checked by the caller)."""
    if isinstance(source, np.ndarray):
        value, where = source, label or "the given targets"
    else:
        loaded = load_arrays(source)
        if not isinstance(loaded, np.ndarray):
            raise BadInput(f"targets file {source} must be a .npy array of shape (T,), not an archive")
        value, where = loaded, str(source)
    if value.dtype.kind not in "iu":
        raise BadInput(
            f"targets in {where} have dtype {value.dtype}; --criterion cross-entropy needs integer classes "
            "(shape (T,))"
        )
    if value.ndim != 1 or value.shape[0] < 1:
        raise BadInput(
            f"targets in {where} have shape {value.shape}; --criterion cross-entropy needs (T,) classes"
        )
    if np.any(value < 0):
        t = int(np.argmax(value < 0)) + 1
        raise BadInput(f"targets in {where}: class {int(value[t - 1])} at t = {t} is negative")
    return value.astype(np.int64)


def load_initial(source: Path | np.ndarray) -> tuple[Array, Array | None]:
    """Initial states from ``--h0 FILE``: a ``.npy`` of ``h_0`` (``(h,)`` or one row per layer and
    direction), or a ``.npz`` with ``h0`` and, for an LSTM, ``c0``; or an array. Shapes are checked
    against the network by the caller."""
    if isinstance(source, np.ndarray):
        return check_array(source, "h0", "the given h0", source.ndim), None
    loaded = load_arrays(source)
    if isinstance(loaded, np.ndarray):
        return check_array(loaded, "h0", source, loaded.ndim), None
    unknown = sorted(set(loaded) - {"h0", "c0"})
    if unknown or "h0" not in loaded:
        found = ", ".join(sorted(loaded)) or "nothing"
        raise BadInput(f"--h0 {source} must hold h0 (and c0 for an LSTM), found {found}")
    c0 = loaded.get("c0")
    return (check_array(loaded["h0"], "h0", source, loaded["h0"].ndim),
            None if c0 is None else check_array(c0, "c0", source, c0.ndim))


def fit_initial(value: Array | None, count: int, h: int, name: str, where: str) -> Array | None:
    """``value`` checked to be ``(h,)`` (every layer-direction) or ``(count, h)``: as ``(count, h)``."""
    if value is None:
        return None
    if value.shape == (h,) or value.shape == (count, h):
        return np.broadcast_to(value, (count, h)).copy()
    rows = f" or ({count}, {h}), one row per layer and direction" if count > 1 else ""
    raise BadInput(f"{name} in {where} has shape {value.shape}; expected ({h},){rows}")
