"""Theory beside measurement: every prediction of one experiment, per trial.

Gathers the rates (:mod:`.rates`, :mod:`.meanfield`), Lyapunov exponents (:mod:`.lyapunov`),
horizons and effective memory (:mod:`.horizons`), non-normality (:mod:`.nonnormal`) and the
alignment with the dominant eigenvector (:mod:`.alignment`) from a forward pass, its exact
gradients and the spectrum. Arrays carry the trial axis ``n`` first; natural log per step
unless named ``log10``; NaN marks "not defined / does not apply" (``null`` in JSON).

The gated cells (LSTM, GRU) get the quantities that apply to them, under the same names and JSON
keys: the observed rate and horizons from the log norms of dL/dh_t; the Lyapunov exponents of
their step Jacobians (:func:`bptt_cli.theory.lyapunov.gated_lyapunov`); the effective memory of
``dL/dweight_hh_l0``; the non-normality of the candidate block ``W_hg`` / ``W_hn`` (the matrix whose
spectrum is reported). The Gelfand rate, the spectral-norm bound, the mean field and the alignment,
which predict the gradient from ``W_hh`` alone, are NaN (``null``), each with the reason in
:data:`REASONS`.

``effective_memory`` and ``alignment`` read the per-step mantissas block by block
(:func:`bptt_cli.core.elman.gradient_blocks`: from the stored pass, or recomputed after a
checkpointed one, bit for bit the same); everything else uses the per-step log scales, the
spectrum, ``W_hh``, and ``bptt.segments`` for the Lyapunov exponents.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from bptt_cli.core.cells import CELLS, Cell
from bptt_cli.core.elman import Forward, Gradients, Local, backward, gradient_blocks, head_local, segments
from bptt_cli.core.network import CANDIDATE, GATES, GatedNetwork, GatedSpec, Network, Spec
from bptt_cli.core.scaled import Array
from bptt_cli.theory.alignment import Dominant, alignment, dominant_subspace
from bptt_cli.theory.horizons import effective_memory, gated_effective_memory, horizons
from bptt_cli.theory.lyapunov import (
    DphiBlock,
    Lyapunov,
    gated_lyapunov,
    lyapunov_exponents,
    stored_dphi,
    warmup_steps,
)
from bptt_cli.theory.meanfield import MeanField, mean_field
from bptt_cli.theory.nonnormal import TransientGrowth, henrici, numerical_abscissa, transient_growth
from bptt_cli.theory.rates import gelfand_rate, observed_rate, spectral_norm_bound
from bptt_cli.theory.spectra import Spectrum

if TYPE_CHECKING:  # the gated machinery is imported only for a gated cell
    from bptt_cli.core.gated import GatedForward, GatedGradients

MEAN_FIELD_ENSEMBLES = ("gaussian", "uniform")  # iid zero-mean entries

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


@dataclass(frozen=True)
class Theory:
    """Predictions for ``n`` trials (see the README section "Theory beside measurement").

    ``rates[name] (n,)`` for ``observed``, ``gelfand``, ``spectral_norm_bound``,
    ``mean_field``; ``window (n, 2)``: the lags of the observed fit; ``observed_of``: which
    gradient was fitted; ``mean_field``: the fixed point and chi_1, or ``None`` with
    ``mean_field_reason``; ``vanish``, ``explode``, ``effective_memory (n,)``: lags;
    ``henrici``, ``abscissa (n,)``; ``growth``: peak transient growth; ``dominant`` and
    ``projection``, ``tan_log10 (n, T)``: the alignment (``None`` when not computed);
    ``reasons``: why a quantity is null for every trial (keys ``gelfand``,
    ``spectral_norm_bound``, ``alignment``; gated cells, :data:`REASONS`);
    ``matrix``: the matrix of the spectral quantities (``W_hh``; ``W_hg``/``W_hn`` for gated cells).
    """

    rates: dict[str, Array]
    window: Array
    observed_of: str
    mean_field: MeanField | None
    mean_field_reason: str | None
    lyapunov: Lyapunov | None
    vanish: Array
    explode: Array
    effective_memory: Array
    henrici: Array
    abscissa: Array
    growth: TransientGrowth
    dominant: Dominant | None
    projection: Array | None
    tan_log10: Array | None
    reasons: dict[str, str] = field(default_factory=dict)
    matrix: str = "W_hh"


def mean_field_applies(spec: Spec, W_hh_from_file: bool) -> str | None:
    """``None`` when the mean-field theory applies, else the reason it does not."""
    if W_hh_from_file:
        return "W_hh comes from a file: its entries are not known to be iid"
    if spec.ensemble not in MEAN_FIELD_ENSEMBLES:
        return f"the {spec.ensemble} ensemble does not have iid entries"
    return None


def _dphi_blocks(net: Network, cell: Cell, fwd: Forward) -> Iterable[DphiBlock]:
    if fwd.checkpoints is None:
        return stored_dphi(fwd.dphi, fwd.e_s.shape[1])
    return ((seg.t0, seg.t1, seg.dphi) for seg in segments(net, cell, fwd))


def theory(
    spec: Spec, net: Network | GatedNetwork, fwd: Forward | GatedForward, grads: Gradients, sp: Spectrum,
    lyapunov: int, W_hh_from_file: bool = False, local: Local | None = None,
    mean_field_reason: str | None = None,
) -> Theory:
    """Every prediction for the trials of one experiment, for any cell.

    ``net``, ``fwd``, ``grads``: the network and its exact BPTT (:mod:`bptt_cli.core.elman`, or
    :mod:`bptt_cli.core.gated` for a :class:`GatedSpec`); ``sp``: the spectrum of ``W_hh`` (of the
    candidate block for a gated cell); ``lyapunov``: how many exponents (0 for none, at most the
    state size); ``W_hh_from_file``: the mean field then does not apply. For the mean loss a
    second backward pass with the last loss gives the last step's chain ``(dh_T/dh_t)^T dL/dh_T``.
    ``local``: the local terms the gradients were computed with (a layer of a stack: those of the
    layer above; default the network's own output layer and ``spec.loss``); ``mean_field_reason``:
    why the mean field does not apply, when the caller knows (a layer driven by the layer below).
    """
    if isinstance(spec, GatedSpec):
        assert isinstance(net, GatedNetwork) and not isinstance(fwd, Forward)
        return _gated_theory(spec, net, fwd, grads, sp, lyapunov, local)  # type: ignore[arg-type]
    assert isinstance(net, Network) and isinstance(fwd, Forward)
    cell = CELLS[spec.cell]
    n, T, _, _, _ = net.shape
    local = local or head_local(net, spec.loss)
    last = local.last()
    # the last step's chain: only its dL/dh_t, dL/da_t and W_hh's gradient are used
    chain = grads if not local.every_step else backward(net, fwd, cell, last, params=("W_hh",))
    observed, window = observed_rate(chain.dL_dh_s)
    reason = mean_field_reason or mean_field_applies(spec, W_hh_from_file)
    mf = None if reason else mean_field(cell, net.W_hh, net.W_hx, net.b_h, net.x)
    rates = {
        "observed": observed,
        "gelfand": gelfand_rate(sp.spectral_radius),
        "spectral_norm_bound": spectral_norm_bound(cell.gamma, sp.spectral_norm),
        "mean_field": mf.rate if mf is not None else np.full(n, np.nan),
    }
    lyap = None
    if lyapunov > 0:
        blocks = _dphi_blocks(net, cell, fwd)
        lyap = lyapunov_exponents(net.W_hh, blocks, T, lyapunov, warmup=warmup_steps(T, spec.inputs_dim == 0))
    vanish, explode = horizons(grads.dL_dh_s)
    memory = effective_memory(
        gradient_blocks(net, fwd, cell, last, chain), chain.dL_da_s, fwd.h_s, *chain.params["W_hh"]
    )
    dominant = dominant_subspace(net.W_hh, sp.eigenvalues)
    projection, tan = alignment(gradient_blocks(net, fwd, cell, local, grads), T, dominant)
    return Theory(
        rates=rates,
        window=window,
        observed_of="dL/dh_t" if not local.every_step else "last step's chain",
        mean_field=mf,
        mean_field_reason=reason,
        lyapunov=lyap,
        vanish=vanish,
        explode=explode,
        effective_memory=memory,
        henrici=henrici(net.W_hh, sp.eigenvalues),
        abscissa=numerical_abscissa(net.W_hh),
        growth=transient_growth(net.W_hh, T, sp.spectral_norm),
        dominant=dominant,
        projection=projection,
        tan_log10=tan,
    )


def candidate_name(cell: str) -> str:
    """``W_hg`` (LSTM) or ``W_hn`` (GRU): the block of ``weight_hh_l0`` in the Elman ``W_hh``'s place."""
    return "W_h" + GATES[cell][CANDIDATE[cell]]


def _gated_theory(
    spec: GatedSpec, net: GatedNetwork, fwd: GatedForward, grads: GatedGradients, sp: Spectrum, lyapunov: int,
    local: Local | None = None,
) -> Theory:
    """Every prediction that applies to the trials of one LSTM/GRU experiment.

    ``sp``: the spectrum of the candidate block; ``lyapunov``: how many exponents (0 for none,
    at most the state size ``D``).
    """
    n, T, _, _, _ = net.shape
    from bptt_cli.core.gated import backward as gated_backward
    from bptt_cli.core.gated import head_local as gated_head_local

    local = local or gated_head_local(net, fwd, spec.loss)
    last = local.last()
    chain = grads if not local.every_step else gated_backward(net, fwd, last, keep=False)
    observed, fit = observed_rate(chain.dL_dh_s)
    rates = {"observed": observed, **{name: np.full(n, np.nan) for name in REASONS if name != "alignment"}}
    vanish, explode = horizons(grads.dL_dh_s)
    W = net.W_hh
    return Theory(
        rates=rates,
        window=fit,
        observed_of="dL/dh_t" if not local.every_step else "last step's chain",
        mean_field=None,
        mean_field_reason=REASONS["mean_field"],
        lyapunov=(gated_lyapunov(net, fwd, lyapunov, warmup=warmup_steps(T, spec.inputs_dim == 0))
                  if lyapunov > 0 else None),
        vanish=vanish,
        explode=explode,
        effective_memory=gated_effective_memory(net, fwd, chain, last),
        henrici=henrici(W, sp.eigenvalues),
        abscissa=numerical_abscissa(W),
        growth=transient_growth(W, T, sp.spectral_norm),
        dominant=None,
        projection=None,
        tan_log10=None,
        reasons={k: v for k, v in REASONS.items() if k != "mean_field"},
        matrix=candidate_name(net.cell),
    )
