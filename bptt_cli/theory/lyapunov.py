"""Lyapunov exponents of the product of step Jacobians, by the QR (Benettin) method.

The step Jacobian is ``J_t = dh_t/dh_{t-1} = diag(phi'(a_t)) W_hh``; backpropagation applies
``J_t^T`` for t = T, T-1, ..., 1. The product of the transposes has the same singular values
as ``J_T ... J_1``, hence the same Lyapunov exponents, so the exponents are measured along the
way the gradient travels, backwards from t = T:

    Q_T = Q_0 (K orthonormal columns),   W_hh^T diag(phi'(a_t)) Q_t = Q_{t-1} R_t,
    lambda_i = (1 / N) sum_t ln |R_t[i, i]|      (natural log per step)

over ``N`` steps after the first ``transient`` ones (while ``Q`` turns towards the most
expanding directions) are discarded. The product itself is never formed: only ``ln |R_ii|``
is accumulated, and ``diag(phi'(a_t))`` is applied as ``exp(ln|phi'| - max ln|phi'|)`` with
the maximum added to the sums, so nothing overflows or underflows.

Running backwards also suits a checkpointed forward pass, whose segments come last first.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from bptt_cli.core.elman import Dphi
from bptt_cli.core.scaled import Array

MAX_TRANSIENT = 100  # steps discarded: min(T // 10, MAX_TRANSIENT)
STEP_BUDGET = 2**30  # steps averaged: min(T - transient, max(MIN_STEPS, STEP_BUDGET // (h^2 K + 2^17)))
MIN_STEPS = 500  # (a fraction of a second: 500 steps at h = 1024, 2730 at 256, 7281 at 64)
CHUNK = 256  # steps whose derivatives are prepared at once
START_SEED = 20130101  # the fixed random start Q_0 (same for every trial and run)
REL_FLOOR = -700.0  # nonzero |phi'| more than e^700 below the step's largest are raised to it


@dataclass(frozen=True)
class Lyapunov:
    """``exponents (n, K)``: natural log per step, largest first, ``-inf`` for an exactly
    singular product; ``transient`` steps discarded, ``steps`` averaged (the steps
    t = T - transient, ..., T - transient - steps + 1).
    """

    exponents: Array
    transient: int
    steps: int

    @classmethod
    def from_sums(cls, logs: Array, steps: int, transient: int) -> Lyapunov:
        """From the sums of ``ln |R_ii|`` over ``steps`` steps ``(n, K)``: QR's columns come
        out in decreasing order only up to finite-time noise, so they are sorted."""
        return cls(-np.sort(-logs / max(steps, 1), axis=1), transient, steps)


def window(T: int, h: int, K: int) -> tuple[int, int]:
    """``(transient, steps)`` for a sequence of length ``T``, ``h`` units, ``K`` exponents.

    ``transient = min(T // 10, 100)``; ``steps = min(T - transient, max(500, 2^30 // (h^2 K +
    2^17)))``: all the remaining steps when that is cheap, else a budget of a fraction of a
    second (the ``h^2 K`` term is the matrix product, ``2^17`` the fixed cost of a step).
    """
    transient = min(T // 10, MAX_TRANSIENT)
    return transient, min(T - transient, max(MIN_STEPS, STEP_BUDGET // (h * h * K + 2**17)))


def start_frame(h: int, K: int) -> Array:
    """The fixed orthonormal start ``Q_0 (h, K)``."""
    q, _ = np.linalg.qr(np.random.default_rng(START_SEED).standard_normal((h, K)))
    return q


DphiBlock = tuple[int, int, Dphi | None]
"""``(t0, t1, dphi)``: ``|phi'(a_t)|`` (:class:`bptt_cli.core.elman.Dphi`) for 0-based steps
``t0..t1-1``, or ``None`` for the identity cell."""


def stored_dphi(dphi: Dphi | None, T: int) -> Iterator[DphiBlock]:
    """The whole of a stored forward pass as one block."""
    yield 0, T, dphi


def lyapunov_exponents(
    W_hh: Array, blocks: Iterable[DphiBlock], T: int, K: int,
    transient: int | None = None, steps: int | None = None,
) -> Lyapunov:
    """Top ``K`` Lyapunov exponents of every trial's Jacobian product.

    ``W_hh (n, h, h)``; ``blocks`` yields ``ln |phi'(a_t)|`` in blocks, the LAST block first
    (as :func:`bptt_cli.core.elman.segments` does), together covering the steps that are used;
    ``transient`` and ``steps`` default to :func:`window`.
    """
    n, h, _ = W_hh.shape
    if transient is None or steps is None:
        transient, steps = window(T, h, K)
    Q = np.broadcast_to(start_frame(h, K), (n, h, K)).copy()
    W_hh_T = np.ascontiguousarray(np.swapaxes(W_hh, -1, -2))
    logs = np.zeros((n, K))
    scale = np.zeros(n)
    stop = T - transient - steps  # first 0-based step not used
    first_used = T - transient  # steps t < first_used are averaged
    with np.errstate(divide="ignore", under="ignore"):
        for t0, t1, dphi in blocks:
            c1 = t1
            while c1 > max(t0, stop):  # chunks of steps at absolute multiples of CHUNK, last first
                c0 = max((c1 - 1) // CHUNK * CHUNK, t0, stop)
                chunk = None if dphi is None else dphi.steps(c0 - t0, c1 - t0)
                d, top = _relative_dphi(chunk, n, c1 - c0)
                diag = np.empty((n, c1 - c0, K))
                for k in range(c1 - c0 - 1, -1, -1):
                    Y = Q if d is None else d[:, k, :, None] * Q
                    Q, R = np.linalg.qr(np.matmul(W_hh_T, Y))
                    diag[:, k] = np.diagonal(R, axis1=-2, axis2=-1)
                used = slice(0, max(0, min(c1, first_used) - c0))  # steps c0 .. first_used-1
                logs += np.sum(np.log(np.abs(diag[:, used])), axis=1)
                scale += np.sum(top[:, used], axis=1)
                c1 = c0
            if t0 <= stop:
                break
    return Lyapunov.from_sums(logs + scale[:, None], steps, transient)


def _relative_dphi(dphi: Dphi | None, n: int, L: int) -> tuple[Array | None, Array]:
    """``|phi'|`` relative to each step's largest, ``(n, L, h)``, and that largest's log ``(n, L)``.

    Nonzero ratios below ``e^REL_FLOOR`` are raised to it; zeros (dead relu units, and ratios
    below float64's range) stay 0.
    """
    if dphi is None:
        return None, np.zeros((n, L))
    return np.where(dphi.w > 0, np.maximum(dphi.w, np.exp(REL_FLOOR)), 0.0), dphi.top
