"""Statistics over trials of per-step series, vectorised over the steps (numpy only).

Used by the terminal chart and the plot files alike: medians and quartiles of
``log10 ||dL/dh_t||`` and friends over the trial axis, with ``-inf`` (an exact zero) ordered
below every number and NaN (undefined) dropped, as :func:`quantiles` does for one
vector; :func:`spread` summarises one value per trial.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bptt_cli.core.scaled import Array


def over_trials(values: Array, qs: Sequence[float]) -> Array:
    """Linear-interpolation quantiles ``qs`` of ``values (n, T)`` over the trial axis, ``(len(qs), T)``.

    ``-inf`` counts as the smallest value (a quantile between ``-inf`` and a number is
    ``-inf``); NaNs are dropped; a column with no number left gives NaN.
    """
    v = np.sort(np.asarray(values, dtype=np.float64), axis=0)  # NaN sorts last
    valid = np.sum(~np.isnan(v), axis=0)
    out = np.full((len(qs), v.shape[1]), np.nan)
    some = valid > 0
    for j, q in enumerate(qs):
        pos = q * np.maximum(valid - 1, 0)
        lo, hi = np.floor(pos).astype(int), np.ceil(pos).astype(int)
        a = np.take_along_axis(v, lo[None, :], axis=0)[0]
        b = np.take_along_axis(v, hi[None, :], axis=0)[0]
        f = pos - lo
        with np.errstate(invalid="ignore"):
            res = np.where((f == 0) | np.isneginf(a), a, a + (b - a) * f)
        out[j] = np.where(some, res, np.nan)
    return out


def log10_array(rows: Sequence[Sequence[Any] | None]) -> Array:
    """Per-trial lists of log10 values from a JSON record to an ``(n, T)`` array: ``null`` is an
    exact zero (``-inf``), as the JSON contract says for log10 norms."""
    return np.array(
        [[-np.inf if v is None else float(v) for v in (row or [])] for row in rows], dtype=np.float64
    )


def quantiles(values: Array, qs: tuple[float, ...]) -> Array:
    """Linear-interpolation quantiles (as ``numpy.quantile``) that let ``-inf`` through.

    NaNs are dropped; with nothing left every quantile is NaN.
    """
    v = np.sort(values[~np.isnan(values)])
    if v.size == 0:
        return np.full(len(qs), np.nan)
    pos = np.asarray(qs) * (v.size - 1)
    lo, hi = np.floor(pos).astype(int), np.ceil(pos).astype(int)
    a, b, f = v[lo], v[hi], pos - lo
    with np.errstate(invalid="ignore"):
        return np.where((f == 0) | np.isneginf(a), a, a + (b - a) * f)


def spread(values: Array) -> dict[str, float]:
    """Median, quartiles and extremes over trials."""
    q = quantiles(values, (0.5, 0.25, 0.75, 0.0, 1.0))
    return dict(zip(("median", "q1", "q3", "min", "max"), map(float, q), strict=True))


def median(values: Any, axis: int | None = None) -> Any:
    """``numpy.median(values, axis)``, the same numbers bit for bit, without importing ``numpy.ma``.

    ``numpy.median`` imports ``numpy.ma`` on its first call (its NaN check asks whether the
    array is masked): 10 ms of every ``bptt analyze``. This is its algorithm (a partition at the
    same positions, the mean of the middle one or two, NaN if any NaN) on plain arrays; an empty
    array goes to ``numpy.median`` itself.
    """
    a = np.asarray(values)
    size = a.size if axis is None else a.shape[axis]
    if size == 0:
        return np.median(a, axis=axis)
    half = size // 2
    kth = [half - 1, half] if size % 2 == 0 else [(size - 1) // 2]
    nans = a.dtype.kind in "fc"
    part = np.partition(a, [*kth, -1] if nans else kth, axis=axis)
    if part.shape == ():
        return part.item()
    ax = 0 if axis is None else axis
    middle = slice(half - 1, half + 1) if size % 2 == 0 else slice(half, half + 1)
    index = tuple(middle if i == ax else slice(None) for i in range(part.ndim))
    out = np.mean(part[index], axis=ax)
    if not nans:
        return out
    top = part.take(-1, axis=ax)  # NaN if any (partitioned last)
    last = np.isnan(top)
    if np.ndim(out) == 0:
        return top if last else out
    return np.where(last, top, out)


def nanmedian(values: Array) -> Any:
    """``numpy.nanmedian`` of a 1-D array, bit for bit, without importing ``numpy.ma``: the
    median of its numbers (NaN, with no warning, when there is none; callers check first)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    return median(v) if v.size else np.nan
