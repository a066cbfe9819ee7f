"""Memory of a gated cell's BPTT pass, estimated before anything is allocated.

Gated cells store every state (there is no checkpointing for them), so a long sequence is
refused up front, with one line naming the estimate and the budget, rather than failing with a
``MemoryError`` or swapping half-way. Floats per trial (``G = 4`` LSTM, 3 GRU; ``B`` the block
of ``min(BLOCK, T)`` steps):

- data ``x``, ``y``: ``T (d + q)``;
- forward: the pre-activations ``G T h``, ``h_t`` (and the LSTM's ``c_t``, the GRU's
  ``W_hn h + b_hn``) ``2 T h``, the output errors ``T q`` (and as much again, briefly);
- backward: ``dL/dh_t`` (and the LSTM's ``dL/dc_t``), ``T h`` each;
- per-step log scales (``h_s``, ``e_s``, ``dL/dh``, ``dL/dc``, ``dL/da``, ``dL/dgh``; the theory's
  chain and fit): ``16 T``;
- per-block working space ``WORK B h + 4 B q`` (coefficients, records, parameter sums' terms),
  the parameters with their gradient sums ``3 (G h (h + d + 2) + q (h + 1))`` and the spectrum
  and theory's ``h x h`` matrices, ``16 h^2``.

Measured with ``tracemalloc`` (every numpy allocation) the estimate is within 0.9 to 1.3 times
the peak (``tests/test_gated_memory.py``).
"""

from __future__ import annotations

from bptt_cli.analysis.memory import AUTO_BUDGET, FLOAT, format_size
from bptt_cli.core.elman import BLOCK
from bptt_cli.core.gated_network import GatedSpec
from bptt_cli.errors import BadInput

WORK = 40  # floats of working space per step of a block and hidden unit (measured)


def gated_bytes(spec: GatedSpec) -> int:
    """Estimated bytes of the arrays of :func:`~bptt_cli.analysis.gated_analysis.analyze_gated` for ``spec``."""
    T, h, d, q, G = spec.T, spec.hidden, spec.inputs_dim, spec.outputs_dim, spec.gates
    B = min(BLOCK, T)
    lstm = spec.cell == "lstm"
    stored = T * (d + q) + (G + 2) * T * h + 2 * h + 2 * T * q + (2 if lstm else 1) * T * h + 16 * T
    work = WORK * B * h + 4 * B * q + 3 * (G * h * (h + d + 2) + q * (h + 1)) + 16 * h * h
    return FLOAT * spec.trials * (stored + work)


def check_budget(spec: GatedSpec, max_memory: int | None) -> int:
    """The estimate of :func:`gated_bytes` (the theory quantities add only per-step scales and
    per-block space, both counted); a :class:`BadInput` if it exceeds ``max_memory`` (bytes;
    default 1 GiB, the budget of ``--checkpoint auto``, whatever ``--checkpoint`` says).
    """
    need = gated_bytes(spec)
    budget = AUTO_BUDGET if max_memory is None else max_memory
    if need > budget:
        sizes = f"T {spec.T}, hidden {spec.hidden}" + (f", {spec.trials} trials" if spec.trials > 1 else "")
        if max_memory is None:
            raise BadInput(
                f"--cell {spec.cell} stores every state and needs about {format_size(need)} ({sizes}), "
                f"more than the default budget of {format_size(budget)}: raise --max-memory or shorten T"
            )
        raise BadInput(
            f"--max-memory {format_size(max_memory)} is too small: --cell {spec.cell} stores every state "
            f"and needs about {format_size(need)} ({sizes})"
        )
    return need
