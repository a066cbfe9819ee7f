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

The gated cells (LSTM, GRU) have the same exponents of their step Jacobians ``J_t = ds_t/ds_{t-1}``
of the joint state ``s = (h, c)`` (LSTM, ``D = 2h``) or ``h`` (GRU, ``D = h``), by the same QR
method backwards from t = T and with the same window (:func:`window` with the state size ``D`` in
place of ``h``): :func:`gated_lyapunov`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bptt_cli.core.elman import Dphi
from bptt_cli.core.network import GatedNetwork
from bptt_cli.core.scaled import Array, finite_or_zero, normalize, pow2_scale

if TYPE_CHECKING:
    from bptt_cli.core.gated import GatedForward, StepJacobians

MAX_TRANSIENT = 100  # steps discarded: min(T // 10, MAX_TRANSIENT)
STEP_BUDGET = 2**30  # steps averaged: min(T - transient, max(MIN_STEPS, STEP_BUDGET // (h^2 K + 2^17)))
MIN_STEPS = 500  # (a fraction of a second: 500 steps at h = 1024, 2730 at 256, 7281 at 64)
CHUNK = 256  # steps whose derivatives are prepared at once
START_SEED = 20130101  # the fixed random start Q_0 (same for every trial and run)
REORTH = 8  # Elman cells: steps between re-orthonormalisations of the frame (see _chunk)
REORTH_RATIO = 1e-4  # ... a block whose |R_ii| spread wider than this is redone step by step
REL_FLOOR = -700.0  # nonzero |phi'| more than e^700 below the step's largest are raised to it
TINY_LN = -600.0  # a gated QR step whose |R_ii| fell below e^-600 (or was not finite) is redone scaled


@dataclass(frozen=True)
class Lyapunov:
    """``exponents (n, K)``: natural log per step, largest first, ``-inf`` for an exactly
    singular product; ``transient`` steps discarded, ``steps`` averaged (the steps
    t = T - transient, ..., T - transient - steps + 1).
    """

    exponents: Array
    transient: int
    steps: int
    warmup: int = 0  # steps from t = 1 before the averaged ones: the approach to the attractor

    @classmethod
    def from_sums(cls, logs: Array, steps: int, transient: int, T: int) -> Lyapunov:
        """From the sums of ``ln |R_ii|`` over ``steps`` steps ``(n, K)``: QR's columns come
        out in decreasing order only up to finite-time noise, so they are sorted."""
        return cls(-np.sort(-logs / max(steps, 1), axis=1), transient, steps, T - transient - steps)


def window(T: int, h: int, K: int, warmup: int = 0) -> tuple[int, int]:
    """``(transient, steps)`` for a sequence of length ``T``, ``h`` units, ``K`` exponents.

    ``transient = min(T // 10, 100)``; ``steps = min(T - transient - warmup, max(500, 2^30 //
    (h^2 K + 2^17)))``: all the remaining steps when that is cheap, else a budget of a fraction
    of a second (the ``h^2 K`` term is the matrix product, ``2^17`` the fixed cost of a step),
    leaving at least ``warmup`` steps after ``h_0`` out (:func:`warmup_steps`).
    """
    transient = min(T // 10, MAX_TRANSIENT)
    room = max(1, T - transient - warmup)
    return transient, min(room, max(MIN_STEPS, STEP_BUDGET // (h * h * K + 2**17)))


def warmup_steps(T: int, autonomous: bool) -> int:
    """The steps after ``h_0`` left out of the average, as the state approaches its attractor:
    ``min(T // 10, 100)`` for the autonomous network (nothing else moves it from its start), 0 for
    a driven one (as before the autonomous network existed: its numbers are unchanged)."""
    return min(T // 10, MAX_TRANSIENT) if autonomous else 0


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
    transient: int | None = None, steps: int | None = None, warmup: int = 0,
) -> Lyapunov:
    """Top ``K`` Lyapunov exponents of every trial's Jacobian product.

    ``W_hh (n, h, h)``; ``blocks`` yields ``ln |phi'(a_t)|`` in blocks, the LAST block first
    (as :func:`bptt_cli.core.elman.segments` does), together covering the steps that are used;
    ``transient`` and ``steps`` default to :func:`window`.
    """
    n, h, _ = W_hh.shape
    if transient is None or steps is None:
        transient, steps = window(T, h, K, warmup)
    Q = np.broadcast_to(start_frame(h, K), (n, h, K)).copy()
    W_hh_T = np.ascontiguousarray(np.swapaxes(W_hh, -1, -2))
    unit = pow2_scale(W_hh)  # exact: W_hh / 2^e has entries below 1, so REORTH products cannot overflow
    W_unit = W_hh_T / unit[:, None, None]
    ln_unit = np.log(unit)
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
                u = max(0, min(c1, first_used) - c0)  # steps c0 .. c0+u-1 are averaged
                Q = _chunk(W_hh_T, W_unit, ln_unit, d, Q, u, logs, c1 - c0)
                scale += np.sum(top[:, :u], axis=1)
                c1 = c0
            if t0 <= stop:
                break
    return Lyapunov.from_sums(logs + scale[:, None], steps, transient, T)


def _chunk(
    W_hh_T: Array, W_unit: Array, ln_unit: Array, d: Array | None, Q: Array, u: int, logs: Array, L: int
) -> Array:
    """The ``L`` steps of one chunk, last first, from the frame ``Q``: ``ln |R_ii|`` of the steps
    ``k < u`` added to ``logs``; returns the new frame.

    The frame is re-orthonormalised every ``REORTH`` steps rather than every step (blocks never
    straddle ``u``): the QR of the product of the block's steps has ``R`` equal to the product of
    the steps' ``R`` factors, so the sums of ``ln |R_ii|`` are the same but for rounding. The
    products run on ``W_hh / 2^e`` (exact, :func:`~bptt_cli.core.scaled.pow2_scale`), ``e ln 2`` a
    step added back. A block whose ``R`` has a diagonal entry not finite, zero, or below
    ``REORTH_RATIO`` times its largest (the columns too close to parallel for the weaker ones'
    digits) is redone one step at a time, as every step was before.
    """
    k = L - 1
    while k >= 0:
        lo = max(k - REORTH + 1, 0)
        if k >= u > lo:
            lo = u
        Y = Q
        for j in range(k, lo - 1, -1):
            Y = np.matmul(W_unit, Y if d is None else d[:, j, :, None] * Y)
        Q_new, R = np.linalg.qr(Y)
        r = np.abs(np.diagonal(R, axis1=-2, axis2=-1))
        good = np.isfinite(r).all() and bool(np.all(r.min(axis=1) > REORTH_RATIO * r.max(axis=1)))
        if good:
            if lo < u:
                logs += np.log(r) + (k - lo + 1) * ln_unit[:, None]
            Q = Q_new
        else:
            for j in range(k, lo - 1, -1):
                Q, R = np.linalg.qr(np.matmul(W_hh_T, Q if d is None else d[:, j, :, None] * Q))
                if j < u:
                    logs += np.log(np.abs(np.diagonal(R, axis1=-2, axis2=-1)))
        k = lo - 1
    return Q


def _relative_dphi(dphi: Dphi | None, n: int, L: int) -> tuple[Array | None, Array]:
    """``|phi'|`` relative to each step's largest, ``(n, L, h)``, and that largest's log ``(n, L)``.

    Nonzero ratios below ``e^REL_FLOOR`` are raised to it; zeros (dead relu units, and ratios
    below float64's range) stay 0.
    """
    if dphi is None:
        return None, np.zeros((n, L))
    return np.where(dphi.w > 0, np.maximum(dphi.w, np.exp(REL_FLOOR)), 0.0), dphi.top


# -- gated cells --------------------------------------------------------------------------------


def gated_lyapunov(
    net: GatedNetwork, fwd: GatedForward, K: int, transient: int | None = None, steps: int | None = None,
    warmup: int = 0,
) -> Lyapunov:
    """Top ``K`` Lyapunov exponents of every trial's product of step Jacobians.

    ``Q_T = Q_0`` (the fixed start of :func:`~bptt_cli.theory.lyapunov.start_frame`, ``D x K``), then
    ``J_t^T Q_t = Q_{t-1} R_t`` for t = T, T-1, ...; ``lambda_i = (1/N) sum ln |R_t[i, i]|``
    over the ``N = steps`` steps after the first ``transient`` (both default to
    :func:`~bptt_cli.theory.lyapunov.window` ``(T, D, K)``). ``J_t^T`` is applied with the kernel's
    backward step on coefficients prepared ``CHUNK`` steps at a time, in plain float64 (gates
    and their derivatives are at most 1); a trial whose step lost its frame (a non-finite entry,
    or ``|R_ii| < e^-600``: derivatives of gates saturated beyond float64's range) is redone with
    every coefficient in log form (:meth:`~bptt_cli.core.gated.StepJacobians.apply_T_scaled`), the
    parts of the state joined by :func:`_joint` (a part below ``e^-700`` of the other is raised
    to it): the exponents stay finite, and are exact while the gates' derivatives stay within
    float64's range.
    """
    from bptt_cli.core.gated import StepJacobians

    jac = StepJacobians(net, fwd)
    n, T = fwd.pre.shape[:2]
    D = jac.dim
    if transient is None or steps is None:
        transient, steps = window(T, D, K, warmup)
    Q = np.broadcast_to(start_frame(D, K), (n, D, K)).copy()
    logs = np.zeros((n, K))
    stop = T - transient - steps  # first 0-based step not used
    first_used = T - transient  # steps t < first_used are averaged
    c1 = T
    while c1 > stop:  # chunks of steps at absolute multiples of CHUNK, last first
        c0 = max((c1 - 1) // CHUNK * CHUNK, stop)
        co = jac.coefficients(c0, c1)
        diag = np.empty((n, c1 - c0, K))
        for k in range(c1 - c0 - 1, -1, -1):
            Q, diag[:, k] = _qr_step(jac, co, k, c0 + k + 1, Q)
        used = slice(0, max(0, min(c1, first_used) - c0))  # steps c0 .. first_used-1
        logs += np.sum(diag[:, used], axis=1)
        c1 = c0
    return Lyapunov.from_sums(logs, steps, transient, T)


def _qr_step(jac: StepJacobians, co: dict[str, Array], k: int, t: int, Q: Array) -> tuple[Array, Array]:
    """``Q <- qr(J_t^T Q)`` for every trial, ``Q (n, D, K)``: the new ``Q`` and ``ln |R_ii| (n, K)``.

    ``co`` holds the coefficients of a chunk whose ``k``-th step is step ``t``.
    """
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        Y = np.swapaxes(jac.apply_T_with(co, k, np.swapaxes(Q, -1, -2)), -1, -2)  # (n, D, K)
    finite = np.isfinite(Y).all(axis=(1, 2))
    Y[~finite] = 0.0
    Q_new, R = np.linalg.qr(Y)
    with np.errstate(divide="ignore"):
        ln = np.log(np.abs(np.diagonal(R, axis1=-2, axis2=-1)))
    bad = np.flatnonzero(~(finite & np.all(ln >= TINY_LN, axis=1)))
    if bad.size:
        with np.errstate(divide="ignore", under="ignore"):
            m, s = _joint(jac.apply_T_scaled(t, bad, np.swapaxes(Q[bad], -1, -2)))
            Q_bad, R_bad = np.linalg.qr(np.swapaxes(m, -1, -2))
            # Y = m^T diag(e^s) = Q_bad R_bad diag(e^s): the same Q, R_ii scaled by e^s_i
            ln[bad] = np.log(np.abs(np.diagonal(R_bad, axis1=-2, axis2=-1))) + s
        Q_new[bad] = Q_bad
    return Q_new, ln


def _joint(parts: list[tuple[Array, Array]]) -> tuple[Array, Array]:
    """The rows of the joint state from its scaled parts: mantissa ``(b, k, D)`` of unit rows and
    log scale ``(b, k)``. A part more than ``e^700`` below its row's largest is raised to that
    (:data:`~bptt_cli.theory.lyapunov.REL_FLOOR`, as the Elman cell's ``ln |phi'|``), so that it is not
    lost to float64's range: exact within that range, a finite approximation beyond it."""
    if len(parts) == 1:
        return parts[0]
    top = finite_or_zero(np.max(np.stack([s for _, s in parts]), axis=0))
    rel = [np.where(np.isfinite(s), np.maximum(s - top, REL_FLOOR), -np.inf) for _, s in parts]
    return normalize(np.concatenate([m * np.exp(r)[..., None] for (m, _), r in zip(parts, rel, strict=True)],
                                    axis=-1), top)
