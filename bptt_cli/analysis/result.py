"""The result of one experiment: every trial's exact gradients, spectrum, theory and estimators.

Everything here is log10 (orders of magnitude) unless named ``_ln``; ``-inf`` marks an exact zero
and NaN an undefined ratio (both become ``null`` in JSON). One class serves every cell:
:class:`GatedAnalysis` adds what only a gated cell has (its ``grad_c_log10``, the gate product
that keeps the gradient alive, the step Jacobians); its ``spectrum`` is that of the candidate block
(``W_hg`` of the LSTM, ``W_hn`` of the GRU), the matrix that plays the Elman ``W_hh``'s role.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bptt_cli.analysis.stats import quantiles
from bptt_cli.core.elman import Gradients
from bptt_cli.core.network import GatedNetwork, Spec
from bptt_cli.core.scaled import LN10, Array, log_norm
from bptt_cli.theory.spectra import Spectrum

if TYPE_CHECKING:
    from bptt_cli.analysis.memory import MemoryUse
    from bptt_cli.core.gated import GatedForward, GatedGradients, StepJacobians
    from bptt_cli.estimators.measure import EstimatorResult
    from bptt_cli.theory.predict import Theory

VERDICTS = ("vanishing", "stable", "exploding", "undefined")
FAIL_ON = {
    "vanishing": {"vanishing"},
    "exploding": {"exploding"},
    "unstable": {"vanishing", "exploding"},
}


def layer_name(layer: int, direction: int) -> str:
    """``layer 1, forward``: how messages and tables name a layer and direction."""
    from bptt_cli.core.stack import DIRECTIONS

    return f"layer {layer}, {DIRECTIONS[direction]}"


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


def log10_norms(params: dict[str, tuple[Array, Array]]) -> dict[str, Array]:
    """log10 Frobenius norm of each scaled parameter gradient, ``(n,)`` each; a parameter with no
    entries (``W_hx`` of a network without inputs) has none and is left out."""
    out = {}
    for name, (m, s) in params.items():
        if m[0].size:
            out[name] = (log_norm(m, s) if m.ndim == 3 else log_norm(m[..., None], s)) / LN10
    return out


def worst(verdicts: list[tuple[str, float]]) -> str:
    """The worst of several ``(verdict, median gain_log10)``: vanishing or exploding before stable
    before undefined, and between two unstable ones the larger ``|gain|``."""
    rank = {"undefined": 0, "stable": 1, "vanishing": 2, "exploding": 2}
    return max(verdicts, key=lambda vg: (rank[vg[0]], abs(vg[1]) if np.isfinite(vg[1]) else np.inf))[0]


@dataclass(frozen=True)
class LayerAnalysis:
    """One layer and direction of a network (the JSON's ``trials[i].layers[j]``), ``n`` trials.

    ``layer`` (0 nearest the input), ``direction`` (0 forward, 1 reverse); ``grad_h_log10 (n, T)``:
    ``log10 ||dL/dh_t||`` of its states, index 0 is t = 1 (real time, for either direction);
    ``gain_log10 (n,)``: the gain of its own chain, from its last step to its first (for the reverse
    direction, from t = 1 to t = T); ``spectrum``: of its ``W_hh`` (the candidate block of a gated
    cell); ``grad_params_log10``: its parameters' gradients under PyTorch's names; ``theory``: the
    predictions that apply to it (``None`` without theory).
    """

    layer: int
    direction: int
    grad_h_log10: Array
    gain_log10: Array
    spectrum: Spectrum
    grad_params_log10: dict[str, Array]
    tolerance: float
    theory: Theory | None = None

    @property
    def verdicts(self) -> list[str]:
        return [verdict(g, self.tolerance) for g in self.gain_log10]

    @property
    def median_gain_log10(self) -> float:
        return float(quantiles(self.gain_log10, (0.5,))[0])

    @property
    def verdict(self) -> str:
        return verdict(self.median_gain_log10, self.tolerance)


@dataclass(frozen=True)
class Analysis:
    """Results of every trial of one experiment (arrays have a leading trial axis ``n``).

    For a stacked or bidirectional network ``net`` is the :class:`~bptt_cli.core.stack.StackNetwork`,
    ``layers`` holds every layer-direction, and ``grads``, ``spectrum``, ``theory`` describe layer
    0, forward (the gradient that travels furthest), with the output layer's ``W_qh``, ``b_q``;
    ``first`` is that layer's own network. A one-layer network has one entry in ``layers``.
    """

    spec: Spec
    net: Any
    grads: Gradients
    spectrum: Spectrum
    tolerance: float
    theory: Theory | None = None  # the predictions beside the measurement (bptt_cli.theory.predict)
    estimates: tuple[EstimatorResult, ...] = ()  # truncation and clipping (bptt_cli.estimators)
    memory: MemoryUse | None = None
    # log10 norm of each parameter gradient's step-t term, (n, T) each (Elman only;
    # bptt_cli.theory.contributions)
    param_terms_log10: dict[str, Array] | None = None
    layers: tuple[LayerAnalysis, ...] = ()
    first: Any = None

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
        return log10_norms(self.grads.params)

    @property
    def verdicts(self) -> list[str]:
        return [verdict(g, self.tolerance) for g in self.gain_log10]

    @property
    def median_gain_log10(self) -> float:
        """The median over trials of :attr:`gain_log10` (``-inf`` counts as the smallest)."""
        return float(quantiles(self.gain_log10, (0.5,))[0])

    @property
    def verdict(self) -> str:
        """The verdict of the median gain (``summary.verdict``); the worst over the layers of a stack."""
        if len(self.layers) > 1:
            return worst([(lay.verdict, lay.median_gain_log10) for lay in self.layers])
        return verdict(self.median_gain_log10, self.tolerance)

    def fails(self, fail_on: str | None) -> bool:
        """Whether the verdict (of any layer) matches ``--fail-on``."""
        return self.matched(fail_on) is not None

    def matched(self, fail_on: str | None) -> str | None:
        """The verdict that matches ``--fail-on`` (``exploding``; for a stack, with the first layer
        whose verdict it is: ``exploding (layer 1, forward)``), or ``None``."""
        if fail_on is None:
            return None
        if len(self.layers) == 1:
            return self.verdict if self.verdict in FAIL_ON[fail_on] else None
        for lay in self.layers:
            if lay.verdict in FAIL_ON[fail_on]:
                return f"{lay.verdict} ({layer_name(lay.layer, lay.direction)})"
        return None

    def worst_layer(self) -> LayerAnalysis:
        """The layer (and direction) whose verdict is :attr:`verdict`, the furthest from stable."""
        ranked = [lay for lay in self.layers if lay.verdict == self.verdict] or list(self.layers)
        return max(ranked, key=lambda lay: abs(lay.median_gain_log10) if np.isfinite(lay.median_gain_log10)
                   else np.inf)


@dataclass(frozen=True)
class GatedAnalysis(Analysis):
    """Results of every trial of one LSTM/GRU experiment; ``fwd`` is the cached forward pass."""

    fwd: GatedForward | None = None

    @property
    def gated_net(self) -> GatedNetwork:
        """The gated network of layer 0, forward (the network itself for one layer)."""
        net = self.first if self.first is not None else self.net
        assert isinstance(net, GatedNetwork)
        return net

    @property
    def forward(self) -> GatedForward:
        assert self.fwd is not None
        return self.fwd

    @property
    def grad_c_log10(self) -> Array | None:
        """``log10 ||dL/dc_t||`` of the LSTM, ``(n, T)`` (``None`` for the GRU)."""
        grads: GatedGradients = self.grads  # type: ignore[assignment]
        return None if grads.dL_dc_s is None else grads.dL_dc_s / LN10

    @property
    def gate_product_log10(self) -> Array:
        """``log10 prod_{s>t} f_s`` (LSTM) or ``z_s`` (GRU), median over units, ``(n, T)``."""
        from bptt_cli.core.gated import gate_product_log10

        return gate_product_log10(self.gated_net, self.forward)

    @property
    def jacobians(self) -> StepJacobians:
        """The step Jacobians ``ds_t/ds_{t-1}`` (joint ``(h, c)`` for the LSTM)."""
        from bptt_cli.core.gated import StepJacobians

        return StepJacobians(self.gated_net, self.forward)
