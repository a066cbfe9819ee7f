"""Vectors and matrices beyond float64's range, carried as a mantissa and a log scale.

A scaled array stands for ``m * exp(s)``: the mantissa ``m`` has shape ``(..., k)`` and
unit 2-norm along its last axis, and the scale ``s`` (natural log) has shape ``(...)``.
An exact zero is ``m = 0, s = -inf``; no other value of ``s`` is infinite, so every norm
``exp(s)`` is reported exactly in log form, however far outside float64 it lies.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]
LN10 = float(np.log(10.0))


def normalize(m: Array, s: Array | float = 0.0) -> tuple[Array, Array]:
    """Return ``(m / ||m||, s + ln ||m||)`` along the last axis, zeros as ``(0, -inf)``.

    The norm is taken after dividing by the largest entry, so that mantissas up to
    float64's maximum never overflow when squared.
    """
    peak = np.max(np.abs(m), axis=-1) if m.shape[-1] else np.zeros(m.shape[:-1])
    zero = peak == 0
    peak = np.where(zero, 1.0, peak)
    m = m / peak[..., None]
    norm = np.sqrt(np.einsum("...i,...i->...", m, m))
    m = m / np.where(zero, 1.0, norm)[..., None]
    with np.errstate(divide="ignore"):
        s = np.where(zero, -np.inf, s + np.log(peak) + np.log(norm))
    return m, s


def pow2_scale(A: Array) -> Array:
    """Powers of two ``2^e``, one per matrix of ``A (..., r, c)``, with ``max |A| / 2^e`` in
    ``[0.5, 1)`` (1 for a zero matrix; in ``[1, 2)`` for entries of ``2^1023`` or more, as ``2^1024``
    is beyond float64): dividing by them is exact, and the entries' squares and products then stay
    inside float64. Shape ``(...)``."""
    peak = np.max(np.abs(A), axis=(-2, -1), initial=0.0)
    _, e = np.frexp(peak)
    return np.ldexp(1.0, np.where(peak > 0, np.minimum(e, 1023), 0))


def unit_rows(x: Array) -> tuple[Array, NDArray[np.bool_]]:
    """Divide the rows of ``x`` (last axis) by their 2-norms in place: ``(ln norm, fake_zero)``.

    The fast counterpart of :func:`normalize` for vectors known to lie well inside float64's
    range (norms within about 1e+-150): squares are summed directly. ``ln norm`` is ``-inf`` for
    a zero row; ``fake_zero`` marks rows whose squares underflowed although the row is not
    zero (the caller must not trust those).
    """
    sq = np.einsum("...i,...i->...", x, x)
    zero = sq == 0
    with np.errstate(divide="ignore"):
        ln = 0.5 * np.log(sq)
    x /= np.sqrt(np.where(zero, 1.0, sq))[..., None]
    fake = zero & np.any(x != 0, axis=-1) if zero.any() else zero
    return ln, np.asarray(fake)


def finite_or_zero(s: Array) -> Array:
    """``s`` with ``-inf`` (exact zeros) replaced by 0, for use as a reference scale."""
    return np.where(np.isfinite(s), s, 0.0)


def add(a: Array, sa: Array, b: Array, sb: Array) -> tuple[Array, Array]:
    """Sum of two scaled arrays, ``a e^sa + b e^sb``, log-sum-exp style.

    Both are rescaled to the larger scale before adding, so the smaller term only loses
    what float64 rounding would lose anyway; the result is renormalised.
    """
    top = finite_or_zero(np.maximum(sa, sb))
    m = a * np.exp(sa - top)[..., None] + b * np.exp(sb - top)[..., None]
    return normalize(m, top)


def log_weights(s: Array, axis: int = -1) -> tuple[Array, Array]:
    """Split scales ``s`` into ``exp(s - top)`` (at most 1) and ``top = max s`` along ``axis``.

    Used to sum scaled terms with one matrix product: ``sum_t w_t m_t`` times ``exp(top)``.
    ``top`` is ``-inf`` where every term is an exact zero.
    """
    top = np.max(s, axis=axis, keepdims=True) if s.shape[axis] else np.full_like(s, -np.inf)
    w = np.exp(s - finite_or_zero(top))
    return w, np.squeeze(top, axis=axis)


def log_sum_exp(x: Array, axis: int = -1) -> Array:
    """``ln sum exp x`` along ``axis``; ``-inf`` when every term is ``-inf``; NaN stays NaN."""
    w, top = log_weights(x, axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return finite_or_zero(top) + np.log(np.sum(w, axis=axis))


def log_norm(m: Array, s: Array) -> Array:
    """Natural log of the Frobenius norm of ``m * exp(s)`` over the last two axes.

    ``m`` has shape ``(..., r, c)``, ``s`` shape ``(...)``; exact zeros give ``-inf``.
    """
    flat = m.reshape(*m.shape[:-2], -1)
    _, ln = normalize(flat, s)
    return ln


def to_float(m: Array, s: Array) -> Array:
    """``m * exp(s)`` as plain floats (overflows to inf if it does not fit)."""
    s = np.asarray(s)
    with np.errstate(over="ignore"):
        return m * np.exp(s).reshape(s.shape + (1,) * (m.ndim - s.ndim))
