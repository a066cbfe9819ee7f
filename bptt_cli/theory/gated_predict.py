"""Theory beside measurement for the gated cells (LSTM, GRU): the quantities of
:mod:`bptt_cli.theory.predict` that apply to them, under the same names and JSON keys.

- observed rate and horizons: from the log norms of dL/dh_t (:mod:`.rates`, :mod:`.horizons`),
  as for the Elman cell (for the ``mean`` loss the rate is fitted to the last step's chain, a
  second backward pass with the ``last`` loss that keeps no per-step mantissas);
- Lyapunov exponents of the product of the step Jacobians ``J_t = ds_t/ds_{t-1}`` of the joint
  state ``s = (h, c)`` (LSTM, ``D = 2h``) or ``h`` (GRU, ``D = h``), by the QR (Benettin) method
  backwards from t = T, as :mod:`bptt_cli.theory.lyapunov` does for the Elman cell and with its window
  (:func:`~bptt_cli.theory.lyapunov.window` with the state size ``D`` in place of ``h``);
- effective memory of ``dL/dweight_hh_l0 = sum_t dL/d(W_hh h_{t-1} + b_hh) h_{t-1}^T`` (last
  loss), by :func:`bptt_cli.theory.horizons.effective_memory` on a recomputed backward pass (read
  block by block, last first, and only as far as needed);
- non-normality (Henrici departure, peak ``||W^k||_2``, numerical abscissa) of the candidate block
  ``W_hg`` / ``W_hn``, the matrix whose spectrum is reported: they describe that matrix;
- Gelfand rate, spectral-norm bound, mean field and alignment, which predict the gradient from
  ``W_hh`` alone: NaN (``null``), each with the reason in :data:`REASONS`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bptt_cli.core.elman import BackwardBlock
from bptt_cli.core.gated import (
    GatedBlock,
    GatedForward,
    GatedGradients,
    StepJacobians,
    backward,
    backward_blocks,
)
from bptt_cli.core.gated_network import CANDIDATE, GATES, GatedNetwork, GatedSpec
from bptt_cli.core.scaled import Array, finite_or_zero, normalize
from bptt_cli.theory.horizons import effective_memory, horizons
from bptt_cli.theory.lyapunov import CHUNK, REL_FLOOR, Lyapunov, start_frame, window
from bptt_cli.theory.nonnormal import henrici, numerical_abscissa, transient_growth
from bptt_cli.theory.predict import Theory
from bptt_cli.theory.rates import observed_rate
from bptt_cli.theory.spectra import Spectrum

TINY_LN = -600.0  # a QR step whose |R_ii| fell below e^-600 (or was not finite) is redone scaled

REASONS = {
    "gelfand": "no single matrix's rho sets the rate",
    "spectral_norm_bound": "the c or z path passes gain up to 1",
    "mean_field": "no mean-field theory of gated cells",
    "alignment": "not carried by powers of one matrix",
}
"""Why each quantity that predicts the gradient from ``W_hh`` alone is ``null`` for a gated cell
(short: they are table notes too; the README explains them): a gated step Jacobian is not
``diag(phi') W_hh`` (the gate blocks of ``weight_hh_l0`` and the gates' values enter it), so no
one matrix's spectral radius is the rate; the LSTM's cell path ``diag(f)`` and the GRU's update
path ``diag(z)`` pass the gradient with gain up to 1 whatever the weights, so a worst-case norm
bound is at least ``ln 1 = 0`` and can never prove vanishing; the mean-field theory of
:mod:`bptt_cli.theory.meanfield` is the Elman cell's; and the gradient is not multiplied by powers of
one fixed matrix, so nothing turns it towards an eigenvector of the candidate block.
"""


def candidate_name(cell: str) -> str:
    """``W_hg`` (LSTM) or ``W_hn`` (GRU): the block of ``weight_hh_l0`` in the Elman ``W_hh``'s place."""
    return "W_h" + GATES[cell][CANDIDATE[cell]]


def gated_theory(
    spec: GatedSpec, net: GatedNetwork, fwd: GatedForward, grads: GatedGradients, sp: Spectrum, lyapunov: int
) -> Theory:
    """Every prediction that applies to the trials of one LSTM/GRU experiment.

    ``sp``: the spectrum of the candidate block; ``lyapunov``: how many exponents (0 for none,
    at most the state size ``D``).
    """
    n, T, _, _, _ = net.shape
    chain = grads if spec.loss == "last" else backward(net, fwd, "last", keep=False)
    observed, fit = observed_rate(chain.dL_dh_s)
    rates = {"observed": observed, **{name: np.full(n, np.nan) for name in REASONS if name != "alignment"}}
    vanish, explode = horizons(grads.dL_dh_s)
    W = net.W_hh
    return Theory(
        rates=rates,
        window=fit,
        observed_of="dL/dh_t" if spec.loss == "last" else "last step's chain",
        mean_field=None,
        mean_field_reason=REASONS["mean_field"],
        lyapunov=gated_lyapunov(net, fwd, lyapunov) if lyapunov > 0 else None,
        vanish=vanish,
        explode=explode,
        effective_memory=gated_effective_memory(net, fwd, chain),
        henrici=henrici(W, sp.eigenvalues),
        abscissa=numerical_abscissa(W),
        growth=transient_growth(W, T, sp.spectral_norm),
        dominant=None,
        projection=None,
        tan_log10=None,
        reasons={k: v for k, v in REASONS.items() if k != "mean_field"},
        matrix=candidate_name(net.cell),
    )


# -- Lyapunov exponents -------------------------------------------------------------------------


def gated_lyapunov(
    net: GatedNetwork, fwd: GatedForward, K: int, transient: int | None = None, steps: int | None = None
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
    jac = StepJacobians(net, fwd)
    n, T = fwd.pre.shape[:2]
    D = jac.dim
    if transient is None or steps is None:
        transient, steps = window(T, D, K)
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
    return Lyapunov.from_sums(logs, steps, transient)


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


# -- effective memory ---------------------------------------------------------------------------


def _memory_blocks(net: GatedNetwork, fwd: GatedForward) -> Iterator[BackwardBlock]:
    """The last loss's backward pass as :class:`~bptt_cli.core.elman.BackwardBlock` s, the last block first:
    ``da`` is ``dL/d(W_hh h_{t-1} + b_hh)`` (the rows of ``weight_hh_l0``'s gradient) and ``h_m``
    the unit mantissas of ``h_{b0}..h_{b1}``."""
    blk: GatedBlock
    for blk in backward_blocks(net, fwd, "last"):
        h_m, h_s = normalize(fwd.h[:, blk.b0 : blk.b1 + 1])
        (dh_m, dh_s), (gh_m, gh_s) = blk.rec[0], blk.rec[-1]
        yield BackwardBlock(blk.b0, blk.b1, dh_m, dh_s, gh_m, gh_s, *blk.do, h_m, h_s, None)


def gated_effective_memory(net: GatedNetwork, fwd: GatedForward, chain: GatedGradients) -> Array:
    """Smallest ``k`` such that the last ``k`` steps give ``dL/dweight_hh_l0`` to within 5%, ``(n,)``.

    ``chain``: the gradients of the ``last`` loss (their ``dL_dgh_s`` and ``weight_hh_l0``);
    the blocks are recomputed, and only as many as the answer needs.
    """
    assert chain.dL_dgh_s is not None
    total_m, total_s = chain.params["weight_hh_l0"]
    return effective_memory(_memory_blocks(net, fwd), chain.dL_dgh_s, fwd.h_s, total_m, total_s)
