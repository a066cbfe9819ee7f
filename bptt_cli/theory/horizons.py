"""How far back in time the gradient reaches: vanishing/exploding horizons and effective memory.

Lags ``k = T - t`` count steps back from the last one. Results are float arrays holding
whole numbers, NaN for "never within T" or "undefined" (``null`` in JSON). The effective memory
of a gated cell (:func:`gated_effective_memory`) is that of ``dL/dweight_hh_l0 = sum_t
dL/d(W_hh h_{t-1} + b_hh) h_{t-1}^T`` (last loss), on a recomputed backward pass read block by
block, last first, and only as far as needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from bptt_cli.core.elman import BackwardBlock, Local
from bptt_cli.core.network import GatedNetwork
from bptt_cli.core.scaled import Array, normalize

if TYPE_CHECKING:
    from bptt_cli.core.gated import GatedBlock, GatedForward, GatedGradients

HORIZON_FACTOR = 1e8
MEMORY_TOLERANCE = 0.05


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
    blocks: Iterable[BackwardBlock], a_s: Array, h_s: Array, total_m: Array, total_s: Array,
    tolerance: float = MEMORY_TOLERANCE,
) -> Array:
    """Smallest ``k`` such that the last ``k`` steps give ``dL/dW_hh`` to within ``tolerance``.

    ``dL/dW_hh = sum_t a_t h_{t-1}^T`` with ``a_t = dL/da_t``. ``blocks``: the backward pass
    block by block, the last block first (:func:`bptt_cli.core.elman.gradient_blocks`: ``da_m`` and
    ``h_m[:, :-1]`` are the unit mantissas of ``a_t`` and ``h_{t-1}``); ``a_s (n, T)`` and
    ``h_s (n, T+1)``: their log norms for every t (known before the blocks are read);
    ``total_m (n, h, h)``, ``total_s (n,)``: the whole sum (any mantissa norm). The answer is
    the smallest ``k`` with ``||sum_{t <= T-k} a_t h_{t-1}^T||_F <= tolerance ||dL/dW_hh||_F``
    (``k = T`` always qualifies; NaN when ``dL/dW_hh = 0``).

    Scanning ``k = 0, 1, ...`` (newest terms first) the head ``R_k = total - tail_k`` is
    updated one block at a time with one matrix product; inside a block its norm at every
    step comes from ``||R||^2``, the cross terms ``a_t^T R h_{t-1}`` and the Gram matrix of the
    block's terms. A block is only resolved step by step where the triangle inequality cannot
    rule it out, and the scan stops (reading no more blocks) once every trial has its ``k``.
    All terms are measured against one reference scale per trial (the largest term's).
    """
    n, T = a_s.shape
    out = np.full(n, np.nan)
    term_s = a_s + h_s[:, :T]  # ln ||a_t h_{t-1}^T||_F, (n, T)
    ref = np.max(term_s, axis=1)
    # a sum whose mantissa underflowed to 0 while its scale did not (a saturated gated cell) times
    # a scale far above the terms': no head to scan (NaN, as for dL/dW_hh = 0)
    with np.errstate(under="ignore", invalid="ignore", over="ignore"):
        w = np.exp(term_s - ref[:, None])  # term norms relative to the largest
        R = total_m * np.exp(total_s - ref)[:, None, None]
        norm2 = np.sum(R * R, axis=(1, 2))
    active = np.isfinite(ref) & np.isfinite(total_s) & np.isfinite(norm2) & (norm2 > 0)
    R = np.where(active[:, None, None], R, 0.0)
    threshold = tolerance * np.sqrt(np.where(active, norm2, 0.0))
    for blk in blocks:
        if not active.any():
            break
        for i in np.flatnonzero(active):
            found, R[i], norm2[i] = _scan_block(blk, int(i), w[i], R[i], norm2[i], threshold[i])
            if found is not None:
                out[i], active[i] = T - found, False
    out[active] = T  # every term was needed
    return out


def _scan_block(
    blk: BackwardBlock, i: int, w: Array, R: Array, norm2: float, threshold: float
) -> tuple[int | None, Array, float]:
    """One block of :func:`effective_memory` for trial ``i``.

    Returns the number of terms kept (``j``: the head is the sum over ``t < j``) if the head
    falls to ``threshold`` within or just before the block, and the head after the block.
    """
    b0, b1 = blk.b0, blk.b1
    if norm2 <= threshold**2:  # the head before this block's terms are removed
        return b1, R, norm2
    X = blk.da_m[i] * w[b0:b1, None]  # rows: a_t (relative scale), t in the block
    Y = blk.h_m[i, :-1]  # rows: h_{t-1}
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
            return b0 + int(hit[-1]), R, norm2  # largest j: the fewest steps removed
    R = R - X.T @ Y
    return None, R, float(np.sum(R * R))


# -- gated cells --------------------------------------------------------------------------------


def _memory_blocks(
    net: GatedNetwork, fwd: GatedForward, local: Local | str = "last"
) -> Iterator[BackwardBlock]:
    """The last loss's backward pass as :class:`~bptt_cli.core.elman.BackwardBlock` s, the last block first:
    ``da`` is ``dL/d(W_hh h_{t-1} + b_hh)`` (the rows of ``weight_hh_l0``'s gradient) and ``h_m``
    the unit mantissas of ``h_{b0}..h_{b1}``."""
    from bptt_cli.core.gated import backward_blocks

    blk: GatedBlock
    for blk in backward_blocks(net, fwd, local):
        h_m, h_s = normalize(fwd.h[:, blk.b0 : blk.b1 + 1])
        (dh_m, dh_s), (gh_m, gh_s) = blk.rec[0], blk.rec[-1]
        yield BackwardBlock(blk.b0, blk.b1, dh_m, dh_s, gh_m, gh_s, *blk.do, h_m, h_s, None)


def gated_effective_memory(
    net: GatedNetwork, fwd: GatedForward, chain: GatedGradients, local: Local | str = "last"
) -> Array:
    """Smallest ``k`` such that the last ``k`` steps give ``dL/dweight_hh_l0`` to within 5%, ``(n,)``.

    ``chain``: the gradients of the ``last`` loss (their ``dL_dgh_s`` and ``weight_hh_l0``);
    the blocks are recomputed, and only as many as the answer needs. ``local``: the local terms at
    t = T only that ``chain`` was computed with (default the output layer's, last loss).
    """
    assert chain.dL_dgh_s is not None
    total_m, total_s = chain.params["weight_hh_l0"]
    return effective_memory(_memory_blocks(net, fwd, local), chain.dL_dgh_s, fwd.h_s, total_m, total_s)
