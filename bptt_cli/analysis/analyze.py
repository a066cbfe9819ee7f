"""One experiment end to end, for any cell: check its plan, draw the network, run the exact BPTT,
measure the spectrum, the theory's predictions and the estimators
(:class:`~bptt_cli.analysis.result.Analysis`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bptt_cli.analysis.memory import MemoryPlan
from bptt_cli.analysis.result import Analysis, GatedAnalysis, LayerAnalysis
from bptt_cli.core.elman import BLOCK
from bptt_cli.core.network import GatedGiven, GatedSpec, Given, Spec, build_network, state_size
from bptt_cli.core.stack import StackGiven
from bptt_cli.errors import BadInput
from bptt_cli.theory.spectra import spectrum

if TYPE_CHECKING:
    from bptt_cli.estimators.estimator import Estimator
    from bptt_cli.estimators.measure import EstimatorResult


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

    ``lyapunov``: how many exponents; ``memory``: how the arrays are held (every state stored, or
    checkpoints; gated cells store every state); ``batches``: draws per pass of each estimator.
    """

    lyapunov: int
    memory: MemoryPlan
    batches: tuple[int, ...]

    @property
    def estimated_bytes(self) -> int:
        return self.memory.estimated_bytes


def plan(
    spec: Spec, lyapunov: int | None = None, checkpoint: str = "auto", max_memory: int | None = None,
    estimators: Sequence[Estimator] = (),
) -> Plan:
    """Every check of an experiment that needs no computation: the Lyapunov count, the memory
    mode and budget, the estimators' memory, what gated cells cannot do. :class:`BadInput`
    if one fails. ``bptt sweep`` runs it on every point before it writes anything."""
    from bptt_cli.analysis.memory import memory_plan

    K = lyapunov_count(spec.cell, spec.hidden, lyapunov)
    if spec.stacked and (estimators or checkpoint.strip().lower() not in ("auto", "none")):
        raise BadInput(
            "--truncate, --clip and --checkpoint K are not available for stacked or bidirectional networks "
            "(every layer's states are stored)"
        )
    if isinstance(spec, GatedSpec) and estimators:
        raise BadInput(
            f"--truncate, --clip and --checkpoint K are not available for --cell {spec.cell} "
            "(it stores every state)"
        )
    mode = memory_plan(spec, checkpoint, max_memory)
    n, T, h, d = spec.trials, spec.T, spec.hidden, spec.inputs_dim
    room = None if max_memory is None else max(0, max_memory - mode.estimated_bytes)
    batches: tuple[int, ...] = ()
    if estimators:
        from bptt_cli.estimators.measure import draw_batch

        batches = tuple(draw_batch(est, n, T, h, d, BLOCK, room) for est in estimators)
    return Plan(K, mode, batches)


def analyze(
    spec: Spec, given: Given | GatedGiven | StackGiven | None = None, tolerance: float = 1.0, *,
    theory: bool = False, lyapunov: int | None = None,
    checkpoint: str = "auto", max_memory: int | None = None, estimators: Sequence[Estimator] = (),
    eigenvalues: int | None = None,
) -> Analysis:
    """Draw every trial of ``spec``, compute its exact BPTT gradients and its spectrum.

    ``theory=True`` adds the predictions of :mod:`bptt_cli.theory.predict` with the top ``lyapunov``
    Lyapunov exponents (default ``min(hidden, 4)``; 0 for none). ``checkpoint`` (``auto``,
    ``none`` or an interval K) and ``max_memory`` (bytes) choose between storing every state
    and checkpointing (the same numbers either way, see
    :func:`bptt_cli.analysis.memory.choose_checkpoint`); ``estimators`` (truncation, clipping) are run
    and measured against the full gradients. A :class:`~bptt_cli.core.network.GatedSpec`
    (LSTM, GRU) gives a :class:`~bptt_cli.analysis.result.GatedAnalysis`: it stores every state
    (``checkpoint`` ``auto`` or ``none``, no estimators), within ``max_memory`` (default 1 GiB).
    ``eigenvalues``: how many eigenvalues the records list (``None``: all; all are computed).
    """
    from bptt_cli.analysis.memory import MemoryUse, peak_rss_bytes

    settled = plan(spec, lyapunov, checkpoint, max_memory, estimators)
    mode = settled.memory
    if spec.stacked:
        return _analyze_stack(spec, given, tolerance, theory, settled.lyapunov, mode.estimated_bytes,
                              max_memory, eigenvalues)
    if isinstance(spec, GatedSpec):
        from bptt_cli.core.gated import gated_bptt

        assert given is None or isinstance(given, GatedGiven)
        gated = build_network(spec, given)
        gated_fwd, gated_grads = gated_bptt(gated, spec.loss)
        sp = spectrum(gated.W_hh, eigenvalues)
        th = _theory(spec, gated, gated_fwd, gated_grads, sp, settled.lyapunov, given) if theory else None
        memory = MemoryUse(None, mode.estimated_bytes, max_memory, peak_rss_bytes())
        layer = _only_layer(gated_grads, gated_grads.params, sp, tolerance, th, gated=True)
        return GatedAnalysis(spec, gated, gated_grads, sp, tolerance, th, (), memory, layers=(layer,),
                             fwd=gated_fwd)
    assert given is None or isinstance(given, Given)
    net = build_network(spec, given)
    from bptt_cli.core.cells import CELLS
    from bptt_cli.core.elman import bptt
    from bptt_cli.theory.contributions import param_terms_log10

    cell = CELLS[spec.cell]
    fwd, grads = bptt(net, cell, spec.loss, mode.checkpoint_every)
    estimates: tuple[EstimatorResult, ...] = ()
    if estimators:
        from bptt_cli.estimators.measure import run_estimator

        estimates = tuple(
            run_estimator(net, cell, spec.loss, fwd, grads, est, batch)
            for est, batch in zip(estimators, settled.batches, strict=True)
        )
    terms = param_terms_log10(grads.dL_da_s, fwd.h_s, fwd.e_s, net.x, spec.loss)
    sp = spectrum(net.W_hh, eigenvalues)
    th = _theory(spec, net, fwd, grads, sp, settled.lyapunov, given) if theory else None
    del fwd
    memory = MemoryUse(mode.checkpoint_every, mode.estimated_bytes, max_memory, peak_rss_bytes())
    layer = _only_layer(grads, grads.params, sp, tolerance, th, gated=False)
    return Analysis(spec, net, grads, sp, tolerance, th, estimates, memory, terms, layers=(layer,))


def _pytorch_names(params: dict[str, Any], k: int, d: int, gated: bool) -> dict[str, Any]:
    """One layer's parameter gradients under PyTorch's names (an Elman layer's ``b_h`` as both
    biases), without the output layer's."""
    from bptt_cli.core.stack import param_name

    if gated:
        pairs = {kind: params[f"{kind}_l0"] for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    else:
        pairs = {"weight_ih": params["W_hx"], "weight_hh": params["W_hh"],
                 "bias_ih": params["b_h"], "bias_hh": params["b_h"]}
    return {param_name(kind, k, d): v for kind, v in pairs.items()}


def _only_layer(
    grads: Any, params: dict[str, Any], sp: Any, tolerance: float, th: Any, gated: bool
) -> LayerAnalysis:
    """The one layer of a one-layer network, as ``layers[0]``."""
    from bptt_cli.analysis.result import log10_norms
    from bptt_cli.core.scaled import LN10

    named = log10_norms(_pytorch_names(params, 0, 0, gated))
    return LayerAnalysis(0, 0, grads.dL_dh_s / LN10, grads.gain_ln / LN10, sp, named, tolerance, th)


def _analyze_stack(
    spec: Spec, given: Any, tolerance: float, theory: bool, K: int, estimated_bytes: int,
    max_memory: int | None, eigenvalues: int | None = None,
) -> Analysis:
    """A stacked or bidirectional network: every layer-direction's exact BPTT, spectrum and theory;
    the top-level quantities of layer 0, forward, with the output layer's gradients. ``eigenvalues``:
    how many of each layer's eigenvalues the records list (``None``: all)."""
    from dataclasses import replace

    from bptt_cli.analysis.memory import MemoryUse, peak_rss_bytes
    from bptt_cli.analysis.result import log10_norms
    from bptt_cli.core.network import GATED
    from bptt_cli.core.scaled import LN10
    from bptt_cli.core.stack import build_stack, stack_bptt
    from bptt_cli.theory.predict import mean_field_applies
    from bptt_cli.theory.predict import theory as predict

    net = build_stack(spec, given)
    sg = stack_bptt(net, spec.loss)
    gated = spec.cell in GATED
    from_file = given is not None and bool(given.params)
    layers = []
    for row in sg.runs:
        for run in row:
            sp = spectrum(run.net.W_hh, eigenvalues)
            th = None
            if theory:
                reason = ("driven by the layer below: its inputs are that layer's states, not iid"
                          if run.layer else mean_field_applies(spec, from_file))
                th = predict(spec, run.net, run.fwd, run.grads, sp, K, from_file, run.local, reason)
            layers.append(LayerAnalysis(run.layer, run.direction, run.grad_h_s / LN10,
                                        run.grads.gain_ln / LN10, sp, log10_norms(run.params), tolerance, th))
    first = sg.runs[0][0]
    own = {k: v for k, v in first.grads.params.items() if k not in ("W_qh", "b_q")}
    order = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "W_qh", "b_q") if gated else (
        "W_hh", "W_hx", "W_qh", "b_h", "b_q")
    merged = {**own, **sg.head}
    grads = replace(first.grads, params={k: merged[k] for k in order}, loss_ln=sg.loss_ln)
    memory = MemoryUse(None, estimated_bytes, max_memory, peak_rss_bytes())
    top = layers[0]
    if gated:
        return GatedAnalysis(spec, net, grads, top.spectrum, tolerance, top.theory, (), memory, None,
                             tuple(layers), first.net, fwd=first.fwd)
    return Analysis(spec, net, grads, top.spectrum, tolerance, top.theory, (), memory, None, tuple(layers),
                    first.net)


def _theory(
    spec: Spec, net: Any, fwd: Any, grads: Any, sp: Any, K: int, given: Given | GatedGiven | None
) -> Any:
    """The theory's predictions (:func:`bptt_cli.theory.predict.theory`); the mean field does not apply
    to a ``W_hh`` from a file."""
    from bptt_cli.theory.predict import theory

    from_file = isinstance(given, Given) and given.W_hh is not None
    return theory(spec, net, fwd, grads, sp, K, from_file)
