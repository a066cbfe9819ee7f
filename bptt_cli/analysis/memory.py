"""Memory of an analysis, estimated before anything is allocated: the checkpoint interval, the
budget, peak RSS.

The estimates count the float64 arrays of the computation (not the Python interpreter, not
the rendered output). Shared by both modes: the network's data ``x``, ``y`` (``T (d + q)``
floats per trial) and the per-t log scales ``h_s``, ``e_s``, ``dL_dh_s``, ``dL_da_s`` (4 T).
The stored pass adds every mantissa: h_0..h_T, ``ln|phi'(a_t)|``, dL/dh_t, dL/da_t (about
``4 T h`` floats) and the output errors (``T q``). The checkpointed pass with interval K adds
``ceil(T/K)`` states and the buffers of one segment of K steps (about ``K (2 h + q)`` floats).
Both need per-block working space (``BLOCK`` steps) and the parameter sums (``h^2`` and more).
Beyond the pass, the analysis keeps T-length arrays of its own (the step terms of the five
parameter gradients, the log10 arrays of the report, the theory's per-step series and their
temporaries: ``ANALYSIS T`` floats, measured), ``h x h`` matrices of the spectrum and the theory
(the transient growth's scan holds 64 powers at once) and the mean loss's theory runs a second
backward pass (``2 T`` scales, and ``2 T h`` mantissas when states are stored). Drawing the network holds
``x`` and ``y`` twice while the trials are stacked. Against ``tracemalloc``'s peak of the whole
``bptt analyze --format json`` the estimate is within 1.0 to 1.4 (``tests/test_memory.py``).
"""

from __future__ import annotations

import math
import resource
import sys
from dataclasses import dataclass

from bptt_cli.core.elman import BLOCK
from bptt_cli.core.network import GatedSpec, Spec
from bptt_cli.errors import BadInput
from bptt_cli.units import format_size

AUTO_BUDGET = 2**30  # `--checkpoint auto` stores every state while that needs at most 1 GiB
FLOAT = 8  # bytes per float64
ANALYSIS = 18  # floats per step and trial the analysis keeps beside the pass (measured, see above)
MATRICES = 4  # h x h matrices per trial of the spectrum and the theory (measured)
SEARCH = 3  # ... and of the peak-growth search's batched products (measured: n 32, h 128, T 5000)
SCAN = 96  # more of them while the transient growth scans W^k: 64 powers, stacked, their norms
FIXED = 820 * 2**10  # bytes whatever the sizes: the record's small arrays, the JSON pieces (measured)


@dataclass(frozen=True)
class Sizes:
    """``n`` trials, ``T`` steps, hidden ``h``, inputs ``d``, outputs ``q``; ``block`` steps per
    product; ``loss`` (``last`` or ``mean``: the mean loss's theory runs a second backward pass)."""

    n: int
    T: int
    h: int
    d: int
    q: int
    block: int
    loss: str = "last"

    def common(self) -> int:
        """Floats of both modes: data, per-t scales, per-block working space, parameter sums,
        the analysis's own T-length arrays."""
        n, T, h, d, q, B = self.n, self.T, self.h, self.d, self.q, self.block
        data = T * (d + q) + 6 * (T + 1)
        work = 8 * min(B, T) * h + 4 * min(B, T) * q
        sums = 4 * (h * h + h * d + q * h + h + q)
        analysis = ANALYSIS * T + (2 * T if self.loss == "mean" else 0) + self.matrices() * h * h
        return n * (data + work + sums + analysis)

    def matrices(self) -> int:
        """How many ``h x h`` matrices per trial the spectrum and the theory hold at once: the
        transient growth scans every power (``bptt_cli.theory.nonnormal``) or squares ``log2 T`` times
        and searches all trials in lockstep (``SEARCH`` more: each trial's power, factor, product
        and its renormalised copy)."""
        from bptt_cli.theory.nonnormal import SCAN_BUDGET, SCAN_MAX_T

        scan = self.T <= SCAN_MAX_T and self.h**3 * self.T <= SCAN_BUDGET
        return MATRICES + (SCAN if scan else self.T.bit_length() + SEARCH)

    def _at_least_drawing(self, floats: int) -> int:
        """Bytes of ``floats``, or of drawing the network if that is more (``x``, ``y`` twice),
        and ``FIXED``."""
        return FIXED + FLOAT * max(floats, 2 * self.n * self.T * (self.d + self.q))

    def stored(self) -> int:
        """Bytes of the stored pass (every state kept)."""
        n, T, h, q = self.n, self.T, self.h, self.q
        second = 2 * T * h if self.loss == "mean" else 0  # the theory's backward pass of the last loss
        return self._at_least_drawing(n * ((T + 1) * h + 3 * T * h + T * q + second) + self.common())

    def checkpointed(self, every: int) -> int:
        """Bytes of the checkpointed pass keeping every ``every``-th state."""
        n, T, h, q = self.n, self.T, self.h, self.q
        K = min(every, T)
        checkpoints = -(-T // every) * h
        segment = (K + 1) * h + K * (h + q)
        return self._at_least_drawing(n * (checkpoints + segment) + self.common())

    def describe(self) -> str:
        """``T 1000000, hidden 4[, 8 trials]``: the sizes that set the memory."""
        return f"T {self.T}, hidden {self.h}" + (f", {self.n} trials" if self.n > 1 else "")


@dataclass(frozen=True)
class MemoryPlan:
    """The chosen memory mode: ``checkpoint_every`` (``None``: store every state), its estimate."""

    checkpoint_every: int | None
    estimated_bytes: int
    budget: int | None

    @property
    def mode(self) -> str:
        """``storing every state`` or ``checkpointing every K steps``, for messages."""
        every = self.checkpoint_every
        return "storing every state" if every is None else f"checkpointing every {every} steps"


def _sqrt_interval(sizes: Sizes) -> int:
    """The multiple of ``block`` that minimises the checkpointed memory (about ``sqrt(T h / (2h + q))``)."""
    B = sizes.block
    best = B * max(1, round(math.sqrt(sizes.T * sizes.h / (2 * sizes.h + sizes.q)) / B))
    candidates = {max(B, best - B), best, best + B}
    return min(sorted(candidates), key=sizes.checkpointed)


def choose_checkpoint(setting: str, sizes: Sizes, max_memory: int | None = None) -> MemoryPlan:
    """The memory mode for ``--checkpoint auto|none|K`` and ``--max-memory`` (bytes or ``None``).

    ``auto`` stores every state when that fits in ``max_memory`` (default 1 GiB), else keeps
    every K-th state with K about ``sqrt(T)`` (the least memory), a multiple of ``block``.
    An explicit K is rounded up to a multiple of ``block`` (the stored and checkpointed passes
    then give the same numbers bit for bit); a K beyond T is the first such multiple from T (one
    segment: the same pass). Raises :class:`BadInput` if the pass needs more
    than ``max_memory``.
    """
    text = setting.strip().lower()
    if text == "none":
        every = None
        need = sizes.stored()
    elif text == "auto":
        budget = max_memory if max_memory is not None else AUTO_BUDGET
        if sizes.stored() <= budget:
            every, need = None, sizes.stored()
        else:
            every = _sqrt_interval(sizes)
            need = sizes.checkpointed(every)
    else:
        try:
            every = int(text)
        except ValueError:
            msg = f"--checkpoint must be auto, none or a positive integer, got {setting!r}"
            raise BadInput(msg) from None
        if every < 1:
            raise BadInput(f"--checkpoint interval must be at least 1, got {every}")
        every = -(-min(every, sizes.T) // sizes.block) * sizes.block  # one segment at most: all of T
        need = sizes.checkpointed(every)
    plan = MemoryPlan(every, need, max_memory)
    if max_memory is not None and need > max_memory:
        raise BadInput(
            f"--max-memory {format_size(max_memory)} is too small: {plan.mode} needs about "
            f"{format_size(need)} ({sizes.describe()})"
        )
    return plan


def check_default_budget(plan: MemoryPlan, sizes: Sizes) -> None:
    """Without ``--max-memory``, refuse a run whose estimate exceeds the default budget (1 GiB)
    rather than fail half-way with a ``MemoryError`` or swap (:class:`BadInput`)."""
    if plan.budget is None and plan.estimated_bytes > AUTO_BUDGET:
        raise BadInput(
            f"{sizes.describe()} needs about {format_size(plan.estimated_bytes)} ({plan.mode}), more "
            f"than the default --max-memory of {format_size(AUTO_BUDGET)}: raise --max-memory or shorten T"
        )


@dataclass(frozen=True)
class MemoryUse:
    """What an analysis used: ``checkpoint_every`` (``None``: stored), estimate, budget, peak RSS (bytes)."""

    checkpoint_every: int | None
    estimated_bytes: int
    max_memory: int | None
    peak_memory_bytes: int


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (``getrusage``; KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)

# -- gated cells: every state stored ----------------------------------------------------------

# Memory of a gated cell's BPTT pass, estimated before anything is allocated.
#
# Gated cells store every state (there is no checkpointing for them), so a long sequence is
# refused up front, with one line naming the estimate and the budget, rather than failing with a
# ``MemoryError`` or swapping half-way. Floats per trial (``G = 4`` LSTM, 3 GRU; ``B`` the block
# of ``min(BLOCK, T)`` steps):
#
# - data ``x``, ``y``: ``T (d + q)``;
# - forward: the pre-activations ``G T h``, ``h_t`` (and the LSTM's ``c_t``, the GRU's
#   ``W_hn h + b_hn``) ``2 T h``, the output errors ``T q`` (and as much again, briefly);
# - backward: ``dL/dh_t`` (and the LSTM's ``dL/dc_t``), ``T h`` each;
# - per-step log scales (``h_s``, ``e_s``, ``dL/dh``, ``dL/dc``, ``dL/da``, ``dL/dgh``; the theory's
#   chain and fit): ``16 T``;
# - per-block working space ``WORK B h + 4 B q`` (coefficients, records, parameter sums' terms),
#   the parameters with their gradient sums ``3 (G h (h + d + 2) + q (h + 1))`` and the spectrum
#   and theory's ``h x h`` matrices, ``16 h^2``.
#
# Measured with ``tracemalloc`` (every numpy allocation) the estimate is within 0.9 to 1.3 times
# the peak (``tests/test_gated_memory.py``).

WORK = 40  # floats of working space per step of a block and hidden unit (measured)


def gated_bytes(spec: GatedSpec) -> int:
    """Estimated bytes of the arrays of :func:`~bptt_cli.analysis.analyze.analyze` for ``spec``."""
    floats = _gated_floats(spec.cell, spec.T, spec.hidden, spec.inputs_dim, spec.outputs_dim)
    return FLOAT * spec.trials * floats


def _gated_floats(cell: str, T: int, h: int, d: int, q: int) -> int:
    """Floats per trial of one gated layer's stored pass (inputs ``d`` wide, ``q`` outputs)."""
    G = 4 if cell == "lstm" else 3
    B = min(BLOCK, T)
    stored = T * (d + q) + (G + 2) * T * h + 2 * h + 2 * T * q + (2 if cell == "lstm" else 1) * T * h + 16 * T
    work = WORK * B * h + 4 * B * q + 3 * (G * h * (h + d + 2) + q * (h + 1)) + 16 * h * h
    return stored + work


def check_gated_budget(spec: GatedSpec, max_memory: int | None) -> int:
    """The estimate of :func:`gated_bytes` (the theory quantities add only per-step scales and
    per-block space, both counted); a :class:`BadInput` if it exceeds ``max_memory`` (bytes;
    default 1 GiB, the budget of ``--checkpoint auto``, whatever ``--checkpoint`` says).
    """
    return _check_budget(gated_bytes(spec), max_memory, f"--cell {spec.cell}", _describe(spec))


# -- stacked and bidirectional networks: every layer's states stored -----------------------------
#
# A stack stores every state of every layer and direction (``L D`` of them). Floats per trial,
# fitted to ``tracemalloc``'s peak of ``bptt analyze --format json`` (T 4,000 to 20,000; hidden 1
# to 32; 1 to 3 layers; both directions; inputs and outputs 1 to 32; both losses): per step, ``U``
# floats per hidden unit of every layer-direction (6 for an Elman cell, ``3 G + 1`` for a gated
# one: its gates, states and gradients), 2 per input of every layer-direction (layer 0's x_t,
# the layer below's states for the others, and their gradients) and 5 per output (the head's
# outputs, errors and the report); ``16 h^2`` per layer-direction for the spectrum and theory.
# The estimate is within 0.95 to 1.55 times the measured peak (``tests/test_memory.py``).


def stack_bytes(spec: Spec) -> int:
    """Estimated bytes of the arrays of an analysis of the stacked or bidirectional ``spec``."""
    T, h, L, D = spec.T, spec.hidden, spec.layers, spec.directions
    unit = 3 * spec.gates + 1 if isinstance(spec, GatedSpec) else 6
    widths = spec.inputs_dim + (L - 1) * D * h  # inputs of the layers of one direction
    floats = T * (unit * h * L * D + 2 * D * widths + 5 * spec.outputs_dim) + 16 * h * h * L * D
    return FIXED + FLOAT * spec.trials * floats


def _check_budget(need: int, max_memory: int | None, what: str, sizes: str) -> int:
    """``need`` bytes against ``max_memory`` (default 1 GiB): :class:`BadInput` naming ``what``
    stores every state (``--cell lstm`` or ``a stacked network``)."""
    budget = AUTO_BUDGET if max_memory is None else max_memory
    if need <= budget:
        return need
    if max_memory is None:
        raise BadInput(
            f"{what} stores every state and needs about {format_size(need)} ({sizes}), "
            f"more than the default budget of {format_size(budget)}: raise --max-memory or shorten T"
        )
    raise BadInput(
        f"--max-memory {format_size(max_memory)} is too small: {what} stores every state "
        f"and needs about {format_size(need)} ({sizes})"
    )


def _describe(spec: Spec) -> str:
    """``T 1000000, hidden 4[, 2 layers][, 8 trials]``: the sizes that set the memory."""
    layers = f", {spec.layers} layers" if spec.layers > 1 else ""
    both = ", bidirectional" if spec.bidirectional else ""
    trials = f", {spec.trials} trials" if spec.trials > 1 else ""
    return f"T {spec.T}, hidden {spec.hidden}{layers}{both}{trials}"


def memory_plan(spec: Spec, checkpoint: str = "auto", max_memory: int | None = None) -> MemoryPlan:
    """How an analysis of ``spec`` will hold its arrays, for every cell: an Elman cell stores every
    state or checkpoints (:func:`choose_checkpoint`, within ``max_memory`` bytes or the default
    budget); a gated cell stores every state (:func:`check_gated_budget`). :class:`BadInput` if it
    cannot fit."""
    if spec.stacked:
        what = "a stacked or bidirectional network"
        need = _check_budget(stack_bytes(spec), max_memory, what, _describe(spec))
        return MemoryPlan(None, need, max_memory)
    if isinstance(spec, GatedSpec):
        if checkpoint.strip().lower() not in ("auto", "none"):
            raise BadInput(
                f"--truncate, --clip and --checkpoint K are not available for --cell {spec.cell} "
                "(it stores every state)"
            )
        return MemoryPlan(None, check_gated_budget(spec, max_memory), max_memory)
    sizes = Sizes(spec.trials, spec.T, spec.hidden, spec.inputs_dim, spec.outputs_dim, BLOCK, spec.loss)
    mode = choose_checkpoint(checkpoint, sizes, max_memory)
    check_default_budget(mode, sizes)
    return mode
