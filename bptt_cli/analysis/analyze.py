"""One experiment end to end: draw the network, run BPTT, measure spectra, summarise.

Everything here is log10 (orders of magnitude) unless named ``_ln``; ``-inf`` marks an
exact zero and NaN an undefined ratio (both become ``null`` in JSON).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bptt_cli.core.cells import CELLS
from bptt_cli.core.elman import BLOCK, Gradients, bptt
from bptt_cli.core.gated_network import GatedGiven, GatedNetwork, GatedSpec, state_size
from bptt_cli.core.network import Given, Network, Spec, build_network
from bptt_cli.core.scaled import LN10, Array, log_norm
from bptt_cli.errors import BadInput
from bptt_cli.theory.spectra import Spectrum, spectrum

if TYPE_CHECKING:
    from bptt_cli.analysis.memory import MemoryUse
    from bptt_cli.estimators.truncation import Estimator, EstimatorResult
    from bptt_cli.theory.predict import Theory

VERDICTS = ("vanishing", "stable", "exploding", "undefined")
FAIL_ON = {
    "vanishing": {"vanishing"},
    "exploding": {"exploding"},
    "unstable": {"vanishing", "exploding"},
}


def verdict(gain_log10: float, tolerance: float) -> str:
    """``vanishing`` below ``-tolerance`` orders of magnitude, ``exploding`` above, else ``stable``.

    An exact zero (``-inf``) vanishes; NaN (the last step's gradient is itself zero) is
    ``undefined``.
    """
    if np.isnan(gain_log10):
        return "undefined"
    if gain_log10 < -tolerance:
        return "vanishing"
    if gain_log10 > tolerance:
        return "exploding"
    return "stable"


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


@dataclass(frozen=True)
class Analysis:
    """Results of every trial of one experiment (arrays have a leading trial axis ``n``)."""

    spec: Spec
    net: Network | GatedNetwork
    grads: Gradients
    spectrum: Spectrum
    tolerance: float
    theory: Theory | None = None  # the predictions beside the measurement (bptt_cli.theory.predict)
    estimates: tuple[EstimatorResult, ...] = ()  # truncation and clipping (bptt_cli.estimators.truncation)
    memory: MemoryUse | None = None
    # log10 norm of each parameter gradient's step-t term, (n, T) each (Elman only; bptt_cli.theory.contributions)
    param_terms_log10: dict[str, Array] | None = None

    @property
    def grad_h_log10(self) -> Array:
        """``log10 ||dL/dh_t||``, ``(n, T)``, index 0 is t = 1."""
        return self.grads.dL_dh_s / LN10

    @property
    def gain_log10(self) -> Array:
        """``log10 ||J^T g|| - log10 ||g||``, ``(n,)``."""
        return self.grads.gain_ln / LN10

    @property
    def grad_params_log10(self) -> dict[str, Array]:
        """log10 Frobenius norm of each parameter gradient, ``(n,)`` each, in the network's order."""
        out = {}
        for name, (m, s) in self.grads.params.items():
            out[name] = (log_norm(m, s) if m.ndim == 3 else log_norm(m[..., None], s)) / LN10
        return out

    @property
    def verdicts(self) -> list[str]:
        return [verdict(g, self.tolerance) for g in self.gain_log10]

    def summary(self) -> dict[str, Any]:
        """Median verdict and the spread over trials (the sweep's per-point record too)."""
        gain = spread(self.gain_log10)
        verdicts = self.verdicts
        out = {
            "gain_log10": gain["median"],
            "verdict": verdict(gain["median"], self.tolerance),
            "tolerance": self.tolerance,
            "trials": len(verdicts),
            "spread": {"gain_log10": gain, "grad_h1_log10": spread(self.grad_h_log10[:, 0])},
            "verdict_fractions": {v: verdicts.count(v) / len(verdicts) for v in VERDICTS},
            "spectral_radius": float(np.median(self.spectrum.spectral_radius)),
            "spectral_norm": float(np.median(self.spectrum.spectral_norm)),
            "grad_params_log10": {
                k: spread(v)["median"] for k, v in self.grad_params_log10.items()
            },
        }
        if self.estimates:
            from bptt_cli.report.truncation_report import estimates_summary

            out["estimators"] = estimates_summary(self.estimates)
        return out

    def fails(self, fail_on: str | None) -> bool:
        """Whether the median verdict matches ``--fail-on``."""
        return fail_on is not None and self.summary()["verdict"] in FAIL_ON[fail_on]


def lyapunov_count(cell: str, h: int, lyapunov: int | None) -> int:
    """How many Lyapunov exponents: ``lyapunov``, or ``min(h, 4)``; at most the state size
    (``2h`` for the LSTM's joint (h, c), else ``h``), else :class:`BadInput`."""
    K = min(h, 4) if lyapunov is None else lyapunov
    D = state_size(cell, h)
    if not 0 <= K <= D:
        what = f"the state size {D} (h and c)" if cell == "lstm" else f"the hidden size {h}"
        raise BadInput(f"--lyapunov {K} must be between 0 and {what}")
    return K


@dataclass(frozen=True)
class Plan:
    """What :func:`plan` settled before anything is drawn or allocated.

    ``lyapunov``: how many exponents; ``checkpoint``: the Elman cell's memory mode
    (:class:`bptt_cli.analysis.memory.Plan`; ``None`` for gated cells, which store every state);
    ``estimated_bytes``; ``batches``: draws per pass of each estimator.
    """

    lyapunov: int
    checkpoint: Any
    estimated_bytes: int
    batches: tuple[int, ...]


def plan(
    spec: Spec, lyapunov: int | None = None, checkpoint: str = "auto", max_memory: int | None = None,
    estimators: Sequence[Estimator] = (),
) -> Plan:
    """Every check of an experiment that needs no computation: the Lyapunov count, the memory
    mode and budget, the estimators' memory, what gated cells cannot do. :class:`BadInput`
    if one fails. ``bptt sweep`` runs it on every point before it writes anything."""
    K = lyapunov_count(spec.cell, spec.hidden, lyapunov)
    if isinstance(spec, GatedSpec):
        from bptt_cli.analysis.gated_memory import check_budget

        if estimators or checkpoint.strip().lower() not in ("auto", "none"):
            raise BadInput(
                f"--truncate, --clip and --checkpoint K are not available for --cell {spec.cell} "
                "(it stores every state)"
            )
        return Plan(K, None, check_budget(spec, max_memory), ())
    from bptt_cli.analysis.memory import Sizes, check_default_budget, choose_checkpoint
    from bptt_cli.estimators.truncation import draw_batch

    n, T, h, d, q = spec.trials, spec.T, spec.hidden, spec.inputs_dim, spec.outputs_dim
    sizes = Sizes(n, T, h, d, q, BLOCK, spec.loss)
    mode = choose_checkpoint(checkpoint, sizes, max_memory)
    check_default_budget(mode, sizes)
    room = None if max_memory is None else max(0, max_memory - mode.estimated_bytes)
    batches = tuple(draw_batch(est, n, T, h, d, BLOCK, room) for est in estimators)
    return Plan(K, mode, mode.estimated_bytes, batches)


def analyze(
    spec: Spec, given: Given | GatedGiven | None = None, tolerance: float = 1.0, *,
    theory: bool = False, lyapunov: int | None = None,
    checkpoint: str = "auto", max_memory: int | None = None, estimators: Sequence[Estimator] = (),
) -> Analysis:
    """Draw every trial of ``spec``, compute its exact BPTT gradients and its spectrum.

    ``theory=True`` adds the predictions of :mod:`bptt_cli.theory.predict` with the top ``lyapunov``
    Lyapunov exponents (default ``min(hidden, 4)``; 0 for none). ``checkpoint`` (``auto``,
    ``none`` or an interval K) and ``max_memory`` (bytes) choose between storing every state
    and checkpointing (the same numbers either way, see
    :func:`bptt_cli.analysis.memory.choose_checkpoint`); ``estimators`` (truncation, clipping) are run
    and measured against the full gradients. A :class:`~bptt_cli.core.gated_network.GatedSpec`
    (LSTM, GRU) gives a :class:`~bptt_cli.analysis.gated_analysis.GatedAnalysis`: it stores every state
    (``checkpoint`` ``auto`` or ``none``, no estimators), within ``max_memory`` (default 1 GiB).
    """
    from bptt_cli.analysis.memory import MemoryUse, peak_rss_bytes
    from bptt_cli.estimators.truncation import run_estimator
    from bptt_cli.theory.contributions import param_terms_log10

    settled = plan(spec, lyapunov, checkpoint, max_memory, estimators)
    if isinstance(spec, GatedSpec):
        from bptt_cli.analysis.gated_analysis import analyze_gated

        assert given is None or isinstance(given, GatedGiven)
        return analyze_gated(spec, given, tolerance, theory=theory, lyapunov=lyapunov, max_memory=max_memory)
    assert given is None or isinstance(given, Given)
    net = build_network(spec, given)
    K, mode = settled.lyapunov, settled.checkpoint
    cell = CELLS[spec.cell]
    fwd, grads = bptt(net, cell, spec.loss, mode.checkpoint_every)
    estimates = tuple(
        run_estimator(net, cell, spec.loss, fwd, grads, est, batch)
        for est, batch in zip(estimators, settled.batches, strict=True)
    )
    terms = param_terms_log10(grads.dL_da_s, fwd.h_s, fwd.e_s, net.x, spec.loss)
    sp = spectrum(net.W_hh)
    th = None
    if theory:
        from bptt_cli.theory.predict import theory as predict

        from_file = given is not None and given.W_hh is not None
        th = predict(spec, net, cell, fwd, grads, sp, K, from_file)
    del fwd
    memory = MemoryUse(mode.checkpoint_every, mode.estimated_bytes, max_memory, peak_rss_bytes())
    return Analysis(spec, net, grads, sp, tolerance, th, estimates, memory, terms)
