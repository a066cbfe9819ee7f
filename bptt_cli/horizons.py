"""How far back in time the gradient reaches: vanishing/exploding horizons and effective memory.

Lags ``k = T - t`` count steps back from the last one. Results are float arrays holding
whole numbers, NaN for "never within T" or "undefined" (``null`` in JSON).
"""

from __future__ import annotations

import numpy as np

from .scaled import Array

HORIZON_FACTOR = 1e8
MEMORY_TOLERANCE = 0.05
BLOCK = 256  # steps per matrix product in effective_memory


def horizons(log_norms: Array, factor: float = HORIZON_FACTOR) -> tuple[Array, Array]:
    """Smallest lags at which ``||g_{T-k}||`` falls below ``||g_T|| / factor`` or exceeds ``factor ||g_T||``.

    ``log_norms (n, T)``: ``ln ||g_t||`` for t = 1..T, ``-inf`` for an exact zero (which
    counts as vanished). Returns ``(vanish (n,), explode (n,))``: lags, NaN when the
    threshold is never crossed within T, or when ``g_T = 0`` (no reference).
    """
    y = log_norms[:, ::-1]  # y[:, k] = ln ||g_{T-k}||
    ref = y[:, :1]
    defined = np.isfinite(ref[:, 0])
    rel = np.where(np.isfinite(ref), y - np.where(np.isfinite(ref), ref, 0.0), np.nan)
    ln_f = np.log(factor)
    out = []
    for hit in (np.nan_to_num(rel, nan=np.inf) < -ln_f, np.nan_to_num(rel, nan=-np.inf) > ln_f):
        first = np.argmax(hit, axis=1).astype(np.float64)
        out.append(np.where(defined & hit.any(axis=1), first, np.nan))
    return out[0], out[1]


def effective_memory(
    a_m: Array, a_s: Array, h_m: Array, h_s: Array, total_m: Array, total_s: Array,
    tolerance: float = MEMORY_TOLERANCE, block: int = BLOCK,
) -> Array:
    """Smallest ``k`` such that the last ``k`` steps give ``dL/dW_hh`` to within ``tolerance``.

    ``dL/dW_hh = sum_t a_t h_{t-1}^T`` with ``a_t = dL/da_t``: ``a_m (n, T, h)``,
    ``a_s (n, T)`` for t = 1..T; ``h_m (n, T+1, h)``, ``h_s (n, T+1)`` for h_0..h_T;
    ``total_m (n, h, h)``, ``total_s (n,)`` the whole sum (any mantissa norm). The answer is
    the smallest ``k`` with ``||sum_{t <= T-k} a_t h_{t-1}^T||_F <= tolerance ||dL/dW_hh||_F``
    (``k = T`` always qualifies; NaN when ``dL/dW_hh = 0``).

    Scanning ``k = 0, 1, ...`` (newest terms first) the head ``R_k = total - tail_k`` is
    updated one block of ``block`` steps at a time with one matrix product; inside a block its
    norm at every step comes from ``||R||^2``, the cross terms ``a_t^T R h_{t-1}`` and the
    Gram matrix of the block's terms. A block is only resolved step by step where the
    triangle inequality cannot rule it out, and the scan stops at the first qualifying ``k``.
    All terms are measured against one reference scale per trial (the largest term's).
    """
    n, T, _ = a_m.shape
    out = np.full(n, np.nan)
    term_s = a_s + h_s[:, :T]  # ln ||a_t h_{t-1}^T||_F, (n, T)
    for i in range(n):
        ref = float(np.max(term_s[i]))
        if not np.isfinite(ref) or not np.isfinite(total_s[i]):
            continue
        with np.errstate(under="ignore"):
            w = np.exp(term_s[i] - ref)  # term norms relative to the largest
            R = total_m[i] * np.exp(total_s[i] - ref)
        total_norm = float(np.linalg.norm(R))
        if total_norm == 0.0:
            continue
        threshold = tolerance * total_norm
        out[i] = _scan(a_m[i], w, h_m[i], R, threshold, block)
    return out


def _scan(a_m: Array, w: Array, h_m: Array, R: Array, threshold: float, block: int) -> float:
    """The smallest lag whose head norm is at most ``threshold`` (see :func:`effective_memory`)."""
    T = a_m.shape[0]
    R = np.array(R)
    norm2 = float(np.sum(R * R))
    for b1 in range(T, 0, -block):
        b0 = max(b1 - block, 0)
        if norm2 <= threshold**2:  # the head at lag T - b1 (j = b1 terms)
            return float(T - b1)
        X = a_m[b0:b1] * w[b0:b1, None]  # rows: a_t (relative scale), t in the block
        Y = h_m[b0:b1]  # rows: h_{t-1}
        if np.sqrt(norm2) - np.sum(w[b0:b1]) <= threshold:
            # resolve every step: head after removing terms b1-1 .. j, for j = b1-1 .. b0
            cross = np.einsum("ti,ti->t", X @ R, Y)  # <R, x_t y_t^T>
            gram = (X @ X.T) * (Y @ Y.T)
            # suffix sums over the square [j, b1) x [j, b1)
            rev = gram[::-1, ::-1]
            square = np.diagonal(np.cumsum(np.cumsum(rev, axis=0), axis=1))[::-1]
            head2 = norm2 - 2.0 * np.cumsum(cross[::-1])[::-1] + square
            hit = np.nonzero(head2 <= threshold**2)[0]
            if hit.size:
                j = b0 + int(hit[-1])  # largest j: the fewest steps removed
                return float(T - j)
        R = R - X.T @ Y
        norm2 = float(np.sum(R * R))
    return float(T)
