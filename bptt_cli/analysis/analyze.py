"""One experiment end to end, for any cell: check its plan, draw the network, run the exact BPTT,
measure the spectrum, the theory's predictions and the estimators
(:class:`~bptt_cli.analysis.result.Analysis`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bptt_cli.analysis.memory import MemoryPlan
from bptt_cli.analysis.result import Analysis, GatedAnalysis
from bptt_cli.core.elman import BLOCK
from bptt_cli.core.network import GatedGiven, GatedSpec, Given, Spec, build_network, state_size
from bptt_cli.errors import BadInput
from bptt_cli.theory.spectra import spectrum

if TYPE_CHECKING:
    from bptt_cli.estimators.estimator import Estimator


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
    from bptt_cli.estimators.measure import draw_batch

    K = lyapunov_count(spec.cell, spec.hidden, lyapunov)
    if isinstance(spec, GatedSpec) and estimators:
        raise BadInput(
            f"--truncate, --clip and --checkpoint K are not available for --cell {spec.cell} "
            "(it stores every state)"
        )
    mode = memory_plan(spec, checkpoint, max_memory)
    n, T, h, d = spec.trials, spec.T, spec.hidden, spec.inputs_dim
    room = None if max_memory is None else max(0, max_memory - mode.estimated_bytes)
    batches = tuple(draw_batch(est, n, T, h, d, BLOCK, room) for est in estimators)
    return Plan(K, mode, batches)


def analyze(
    spec: Spec, given: Given | GatedGiven | None = None, tolerance: float = 1.0, *,
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
    if isinstance(spec, GatedSpec):
        from bptt_cli.core.gated import gated_bptt

        assert given is None or isinstance(given, GatedGiven)
        gated = build_network(spec, given)
        gated_fwd, gated_grads = gated_bptt(gated, spec.loss)
        sp = spectrum(gated.W_hh, eigenvalues)
        th = _theory(spec, gated, gated_fwd, gated_grads, sp, settled.lyapunov, given) if theory else None
        memory = MemoryUse(None, mode.estimated_bytes, max_memory, peak_rss_bytes())
        return GatedAnalysis(spec, gated, gated_grads, sp, tolerance, th, (), memory, fwd=gated_fwd)
    assert given is None or isinstance(given, Given)
    net = build_network(spec, given)
    from bptt_cli.core.cells import CELLS
    from bptt_cli.core.elman import bptt
    from bptt_cli.estimators.measure import run_estimator
    from bptt_cli.theory.contributions import param_terms_log10

    cell = CELLS[spec.cell]
    fwd, grads = bptt(net, cell, spec.loss, mode.checkpoint_every)
    estimates = tuple(
        run_estimator(net, cell, spec.loss, fwd, grads, est, batch)
        for est, batch in zip(estimators, settled.batches, strict=True)
    )
    terms = param_terms_log10(grads.dL_da_s, fwd.h_s, fwd.e_s, net.x, spec.loss)
    sp = spectrum(net.W_hh, eigenvalues)
    th = _theory(spec, net, fwd, grads, sp, settled.lyapunov, given) if theory else None
    del fwd
    memory = MemoryUse(mode.checkpoint_every, mode.estimated_bytes, max_memory, peak_rss_bytes())
    return Analysis(spec, net, grads, sp, tolerance, th, estimates, memory, terms)


def _theory(
    spec: Spec, net: Any, fwd: Any, grads: Any, sp: Any, K: int, given: Given | GatedGiven | None
) -> Any:
    """The theory's predictions (:func:`bptt_cli.theory.predict.theory`); the mean field does not apply
    to a ``W_hh`` from a file."""
    from bptt_cli.theory.predict import theory

    from_file = isinstance(given, Given) and given.W_hh is not None
    return theory(spec, net, fwd, grads, sp, K, from_file)
