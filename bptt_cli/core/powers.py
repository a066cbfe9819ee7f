"""The linear cell's recursions a sub-block at a time: matrix-matrix products (BLAS-3).

For the identity cell both passes are linear recursions in row form,
``v_t = v_{t-1} M + z_t C``: the forward pass with ``M = W_hh^T`` and inputs
``z_t = [x_t, 1]``, ``C = [W_hx | b_h]^T``; the backward pass (t decreasing) with ``M = W_hh``,
``z_t = dL/do_t``, ``C = W_qh``. Unrolled over ``k`` steps,

    v_{t+k} = v_t M^k + sum_{m=0}^{k-1} z_{t+k-m} C M^m,

so the ``k`` vectors of a sub-block follow from the ``k`` vectors of the sub-block before with
two matrix-matrix products (``M^k``, and the ``k r`` rows ``C M^m`` against the inputs), instead
of ``k`` matrix-vector products: the arithmetic per step is about the same, but it runs at the
machine's dgemm rate instead of its (memory-bound) dgemv rate.

Everything is scaled: ``M^k`` and each ``C M^m`` are kept as a unit (Frobenius) mantissa and a
natural-log scale, and each new row gets its own frame (the larger of its two terms' bounds).
A row is kept only if it is at least ``1e-4`` of its frame (the products' rounding, ``eps``
relative to the frame, then stays below ``3e-12`` of the row) and finite; otherwise that trial's
sub-block is computed step by step. ``M^k`` comes from repeated squaring and is checked against
``k`` matrix-vector products on a test vector; a trial whose check fails (a strongly non-normal
``W_hh``, whose squares lose digits) never uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bptt_cli.core.scaled import LN10, Array, finite_or_zero, normalize, unit_rows

MIN_HIDDEN = 512  # below this, matrix-vector products per step are as fast (measured)
# M^k's squarings cost 2 log2(k) h^3 flops a pass, paid back by about h / 4 steps of faster products:
# break-even near T = 4 h (measured, mean loss: h 1024 T 4000 2.25 s vs 2.20 s step by step; h 512
# T 2000 0.35 s vs 0.35 s; at T = h the block products took 1.9x and 1.3x longer)
MIN_STEPS_PER_UNIT = 4
MAX_RANK = 0.25  # the inputs' rank r at most this fraction of h (the C M^m product costs 2 k r h)
MAX_BYTES = 2**29  # memory for M^k and the C M^m of every trial
KEEP_LN = -4.0 * LN10  # a row below 1e-4 of its frame is recomputed step by step
CHECK_TOL = 1e-10  # M^k against k matrix-vector products, relative
CHECK_SEED = 20260101


@dataclass(frozen=True)
class Powers:
    """``M^k`` and ``C M^m`` (``m < k``) of ``n`` trials, each a unit mantissa and a log scale.

    ``P_m (n, h, h)``, ``P_s (n,)``: ``M^k``; ``K_m (n, k r, h)``: the rows of ``C M^m`` for
    m = 0..k-1 (rows ``m r .. m r + r - 1``), each block scaled to unit norm and then by
    ``exp(K_s - max K_s)``; ``K_s (n, k)``: their log norms (``None`` without inputs);
    ``usable (n,)``: trials whose ``M^k`` passed the check.
    """

    k: int
    P_m: Array
    P_s: Array
    K_m: Array | None
    K_s: Array | None
    usable: NDArray[np.bool_]


def applies(linear: bool, n: int, T: int, h: int, r: int, k: int) -> bool:
    """Whether the block products pay off: the identity cell, a large enough ``h``, a sequence long
    enough to pay for the squarings, inputs of low rank."""
    return (
        linear
        and h >= MIN_HIDDEN
        and 2 * k < T
        and MIN_STEPS_PER_UNIT * h <= T
        and r <= MAX_RANK * h
        and 8 * n * h * (h + k * r) <= MAX_BYTES
    )


def _unit(A: Array) -> tuple[Array, Array]:
    """``A / ||A||_F`` over the last two axes and ``ln ||A||_F`` (zero matrices: 0 and ``-inf``)."""
    m, s = normalize(A.reshape(*A.shape[:-2], -1))
    return m.reshape(A.shape), s


def powers(M: Array, C: Array | None, k: int) -> Powers:
    """``M^k`` by repeated squaring (``k`` a power of 2) and ``C M^m`` step by step.

    ``M (n, h, h)``, ``C (n, r, h)`` or ``None``.
    """
    if k & (k - 1):
        raise ValueError(f"k must be a power of 2, got {k}")
    n, h, _ = M.shape
    M_m, M_s = _unit(M)
    P_m, P_s = M_m, M_s
    for _ in range(k.bit_length() - 1):
        P_m, s = _unit(np.matmul(P_m, P_m))
        P_s = 2 * P_s + s
    # the check: a test row through k matrix-vector products against one product with M^k
    v = np.random.default_rng(CHECK_SEED).standard_normal((1, 1, h)).repeat(n, axis=0)
    v_m, v_s = normalize(v)
    for _ in range(k):
        v_m, v_s = normalize(np.matmul(v_m, M_m), v_s + M_s[:, None])
    w_m, w_s = normalize(np.matmul(normalize(v)[0], P_m), P_s[:, None] + normalize(v)[1])
    with np.errstate(invalid="ignore"):
        usable = (np.abs(w_s - v_s)[:, 0] <= CHECK_TOL) & (np.abs(w_m - v_m).max(axis=(1, 2)) <= CHECK_TOL)
    usable &= np.isfinite(P_s)
    if C is None:
        return Powers(k, P_m, P_s, None, None, usable)
    r = C.shape[1]
    K_m, K_s = np.empty((n, k, r, h)), np.empty((n, k))
    m_, s_ = _unit(C)
    for j in range(k):
        K_m[:, j], K_s[:, j] = m_, s_
        m_, s = _unit(np.matmul(m_, M_m))
        s_ = s_ + M_s + s
    top = finite_or_zero(np.max(K_s, axis=1))
    with np.errstate(under="ignore"):
        K_m *= np.exp(K_s - top[:, None])[..., None, None]
    return Powers(k, P_m, P_s, K_m.reshape(n, k * r, h), K_s, usable)


def _hankel(k: int) -> NDArray[np.intp]:
    """``j[i, m] = k - 1 + i - m``: the input of term ``m`` of row ``i`` in a sequence of ``2k - 1``."""
    i = np.arange(k)
    return (k - 1) + i[:, None] - i[None, :]


def next_rows(
    pw: Powers, prev_m: Array, prev_s: Array, z_m: Array | None = None, z_s: Array | None = None
) -> tuple[Array, Array, NDArray[np.bool_]]:
    """The ``k`` rows that follow the ``k`` rows ``prev`` in the recursion (processing order).

    ``prev_m (n, k, h)`` unit rows with log norms ``prev_s (n, k)``; ``z_m (n, 2k-1, r)``,
    ``z_s (n, 2k-1)``: the inputs of the ``2k - 1`` steps ending with the new sub-block's last
    (``None``: no inputs). Returns the new unit rows, their log norms and which trials kept
    every digit (see the module docstring).
    """
    n, k, _ = prev_m.shape
    lead = pw.P_s[:, None] + prev_s  # ln of the bound of each row's first term
    if z_m is not None and pw.K_m is not None and pw.K_s is not None and z_s is not None:
        j = _hankel(k)
        top = finite_or_zero(np.max(pw.K_s, axis=1))
        term = top[:, None, None] + z_s[:, j]  # (n, k, k): ln bound of term m of row i
        frame = finite_or_zero(np.maximum(lead, np.max(pw.K_s[:, None, :] + z_s[:, j], axis=2)))
        with np.errstate(under="ignore", over="ignore", invalid="ignore"):  # checked below
            rows = np.matmul(prev_m * np.exp(lead - frame)[..., None], pw.P_m)
            Z = z_m[:, j] * np.exp(term - frame[..., None])[..., None]  # (n, k, k, r)
            rows += np.matmul(Z.reshape(n, k, -1), pw.K_m)
    else:
        frame = finite_or_zero(lead)
        with np.errstate(under="ignore"):
            rows = np.matmul(prev_m * np.exp(lead - frame)[..., None], pw.P_m)
    with np.errstate(invalid="ignore"):
        ln, fake = unit_rows(rows)
    ok = pw.usable & np.all((ln >= KEEP_LN) & (ln <= LN10 * 6) & ~fake, axis=1)
    return rows, ln + frame, ok
