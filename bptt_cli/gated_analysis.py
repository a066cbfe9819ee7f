"""One gated-cell experiment end to end: the :class:`~bptt_cli.analysis.Analysis` of an LSTM or GRU.

The same object as for the Elman cell (``grad_h_log10``, ``gain_log10``, ``grad_params_log10``
keyed by PyTorch's parameter names, verdicts, ``summary()``), plus the LSTM's ``grad_c_log10``,
the gate product that keeps the gradient alive and the step Jacobians for the theory quantities.
``spectrum`` is that of the candidate block (``W_hg`` of the LSTM, ``W_hn`` of the GRU), the
matrix that plays the Elman ``W_hh``'s role.
"""

from __future__ import annotations

from dataclasses import dataclass

from .analysis import Analysis
from .gated import GatedForward, GatedGradients, StepJacobians, gate_product_log10, gated_bptt
from .gated_network import GatedGiven, GatedNetwork, GatedSpec, build_gated_network
from .scaled import LN10, Array
from .spectra import spectrum


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


def analyze_gated(spec: GatedSpec, given: GatedGiven | None = None, tolerance: float = 1.0) -> GatedAnalysis:
    """Draw every trial of ``spec``, compute its exact BPTT gradients and the candidate block's spectrum."""
    net = build_gated_network(spec, given)
    fwd, grads = gated_bptt(net, spec.loss)
    return GatedAnalysis(spec, net, grads, spectrum(net.W_hh), tolerance, fwd=fwd)
