"""One gated-cell experiment end to end: the :class:`~bptt_cli.analysis.analyze.Analysis` of an LSTM or GRU.

The same object as for the Elman cell (``grad_h_log10``, ``gain_log10``, ``grad_params_log10``
keyed by PyTorch's parameter names, verdicts, ``summary()``, the theory quantities that apply,
the memory used), plus the LSTM's ``grad_c_log10``, the gate product that keeps the gradient
alive and the step Jacobians. ``spectrum`` is that of the candidate block (``W_hg`` of the LSTM,
``W_hn`` of the GRU), the matrix that plays the Elman ``W_hh``'s role.
"""

from __future__ import annotations

from dataclasses import dataclass

from bptt_cli.analysis.analyze import Analysis, lyapunov_count
from bptt_cli.analysis.gated_memory import check_budget
from bptt_cli.analysis.memory import MemoryUse, peak_rss_bytes
from bptt_cli.core.gated import GatedForward, GatedGradients, StepJacobians, gate_product_log10, gated_bptt
from bptt_cli.core.gated_network import GatedGiven, GatedNetwork, GatedSpec, build_gated_network
from bptt_cli.core.scaled import LN10, Array
from bptt_cli.theory.gated_predict import gated_theory
from bptt_cli.theory.spectra import spectrum


@dataclass(frozen=True)
class GatedAnalysis(Analysis):
    """Results of every trial of one LSTM/GRU experiment; ``fwd`` is the cached forward pass."""

    fwd: GatedForward | None = None

    @property
    def gated_net(self) -> GatedNetwork:
        assert isinstance(self.net, GatedNetwork)
        return self.net

    @property
    def forward(self) -> GatedForward:
        assert self.fwd is not None
        return self.fwd

    @property
    def grad_c_log10(self) -> Array | None:
        """``log10 ||dL/dc_t||`` of the LSTM, ``(n, T)`` (``None`` for the GRU)."""
        assert isinstance(self.grads, GatedGradients)
        return None if self.grads.dL_dc_s is None else self.grads.dL_dc_s / LN10

    @property
    def gate_product_log10(self) -> Array:
        """``log10 prod_{s>t} f_s`` (LSTM) or ``z_s`` (GRU), median over units, ``(n, T)``."""
        return gate_product_log10(self.gated_net, self.forward)

    @property
    def jacobians(self) -> StepJacobians:
        """The step Jacobians ``ds_t/ds_{t-1}`` (joint ``(h, c)`` for the LSTM)."""
        return StepJacobians(self.gated_net, self.forward)


def analyze_gated(
    spec: GatedSpec, given: GatedGiven | None = None, tolerance: float = 1.0, *,
    theory: bool = False, lyapunov: int | None = None, max_memory: int | None = None,
) -> GatedAnalysis:
    """Draw every trial of ``spec``, compute its exact BPTT gradients and the candidate block's spectrum.

    ``theory=True`` adds the predictions of :mod:`bptt_cli.theory.gated_predict` with the top
    ``lyapunov`` Lyapunov exponents (default ``min(hidden, 4)``, at most the state size: ``2h``
    for the LSTM, ``h`` for the GRU). Every state is stored: the run is refused (``BadInput``)
    before anything is allocated if the estimate exceeds ``max_memory`` (bytes; default 1 GiB).
    """
    K = lyapunov_count(spec.cell, spec.hidden, lyapunov)
    estimate = check_budget(spec, max_memory)
    net = build_gated_network(spec, given)
    fwd, grads = gated_bptt(net, spec.loss)
    sp = spectrum(net.W_hh)
    th = gated_theory(spec, net, fwd, grads, sp, K) if theory else None
    memory = MemoryUse(None, estimate, max_memory, peak_rss_bytes())
    return GatedAnalysis(spec, net, grads, sp, tolerance, th, (), memory, fwd=fwd)
