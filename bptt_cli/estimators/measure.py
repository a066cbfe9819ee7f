"""The estimators run on every trial and measured against full BPTT: accuracy per parameter, cost in
backward steps, the chunk mode's memory, the clipping scale; and how many draws fit in a memory budget."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from bptt_cli.core.cells import Cell
from bptt_cli.core.elman import Forward, Gradients
from bptt_cli.core.network import PARAMS, Network
from bptt_cli.core.scaled import Array
from bptt_cli.errors import BadInput
from bptt_cli.estimators.accuracy import Accuracy, Agreement, exact
from bptt_cli.estimators.clipping import clip_gradients
from bptt_cli.estimators.estimator import CHAIN_PARAMS, MODES, Estimator
from bptt_cli.estimators.truncation import truncated_gradients
from bptt_cli.units import format_size

DRAW_BUDGET = 256 * 2**20  # bytes of per-draw working space per batch of draws (by default)


@dataclass(frozen=True)
class EstimatorResult:
    """One estimator on every trial: accuracy per parameter, cost and (chunk, clip) extras, ``(n,)`` each.

    ``backward_steps``: mean over draws; ``backward_steps_full = T - 1``; ``memory_bytes``
    (chunk mode): the states one chunk keeps for its backward pass, ``8 h (2 min(K, T) + 1)``
    bytes per trial, against ``memory_bytes_full = 8 h (2 T + 1)``; clip: ``clip_scale_ln``
    and the norm before clipping ``clip_norm_ln`` (natural logs).
    """

    estimator: Estimator
    accuracy: dict[str, Accuracy]
    backward_steps: Array
    backward_steps_full: int
    memory_bytes: int | None = None
    memory_bytes_full: int | None = None
    clip_scale_ln: Array | None = None
    clip_norm_ln: Array | None = None


def bytes_per_column(est: Estimator, h: int, d: int, block: int) -> int:
    """Working bytes per column (draw, or ring slot) of :func:`truncated_gradients`, per trial."""
    if est.kind == "window":
        return 8 * 6 * h  # the ring: chains, their products and weights
    return 8 * (5 * h * h + 3 * h * d + 3 * block * h + 6 * h)


def draw_batch(est: Estimator, n: int, T: int, h: int, d: int, block: int, budget: int | None = None) -> int:
    """Draws per pass of a random estimator within ``budget`` bytes (default ``DRAW_BUDGET``).

    Raises :class:`BadInput` when an explicit ``budget`` cannot hold one draw (or the window
    ring); draws beyond one batch run in further passes over the sequence.
    """
    per = n * bytes_per_column(est, h, d, block)
    if est.kind == "window":
        need = per * min(est.K, T)
        if budget is not None and need > budget:
            raise BadInput(
                f"--max-memory is too small for --truncate {est.K}: "
                f"its ring needs about {format_size(need)} more"
            )
        return 1
    if est.kind != "random":
        return 1
    if budget is not None and per > budget:
        raise BadInput(
            f"--max-memory is too small for --truncate random: one draw needs about {format_size(per)} more"
        )
    return max(1, min(est.draws, (budget or DRAW_BUDGET) // per))


def run_estimator(
    net: Network, cell: Cell, loss: str, fwd: Forward, grads: Gradients, est: Estimator,
    batch: int | None = None,
) -> EstimatorResult:
    """Run ``est`` on every trial and measure it against the full gradients ``grads``.

    ``batch``: draws per pass (random; default :func:`draw_batch`). A window or chunk of
    ``K >= T`` truncates nothing: the estimate is full BPTT itself (``T - 1`` backward steps,
    zero error exactly), not recomputed.
    """
    n, T, h, d, _ = net.shape
    full = grads.params
    memory = memory_full = None
    if est.kind == "chunk":
        memory, memory_full = 8 * h * (2 * min(est.K, T) + 1), 8 * h * (2 * T + 1)
    if est.kind in MODES and est.K >= T:
        acc = {name: exact(full[name]) for name in PARAMS}
        return EstimatorResult(est, acc, np.full(n, float(max(T - 1, 0))), max(T - 1, 0), memory, memory_full)
    if est.kind == "clip":
        clipped, scale_ln, norm_ln = clip_gradients(full, est.clip)
        acc = {}
        for name in PARAMS:
            a = Agreement(full[name])
            m, s = clipped[name]
            a.add((m[:, None], s[:, None]))
            acc[name] = a.result()
        return EstimatorResult(est, acc, np.full(n, float(max(T - 1, 0))), max(T - 1, 0),
                               clip_scale_ln=scale_ln, clip_norm_ln=norm_ln)
    agree = {name: Agreement(full[name]) for name in CHAIN_PARAMS}
    size = batch or draw_batch(est, n, T, h, d, fwd.block)
    steps = []
    for r0 in range(0, est.columns, size):
        tr = truncated_gradients(net, cell, loss, fwd, est, range(r0, min(r0 + size, est.columns)))
        for name in CHAIN_PARAMS:
            agree[name].add(tr.params[name])
        steps.append(tr.backward_steps)
    acc = {name: agree[name].result() for name in CHAIN_PARAMS}
    for name in PARAMS:
        if name not in acc:  # not on the chain: the estimate is the full gradient itself
            acc[name] = exact(full[name])
    return EstimatorResult(
        est, acc, np.mean(np.concatenate(steps, axis=1), axis=1), max(T - 1, 0), memory, memory_full
    )


def run_estimators(
    net: Network, cell: Cell, loss: str, fwd: Forward, grads: Gradients, ests: list[Estimator],
    budget: int | None = None,
) -> Iterator[EstimatorResult]:
    """Every estimator in turn (draws batched within ``budget`` bytes)."""
    n, T, h, d, _ = net.shape
    for est in ests:
        yield run_estimator(net, cell, loss, fwd, grads, est, draw_batch(est, n, T, h, d, fwd.block, budget))
