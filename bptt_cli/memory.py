"""Memory of the BPTT pass: sizes like ``512M``, byte estimates, the checkpoint interval, peak RSS.

Stored pass: h_0..h_T, ln|phi'(a_t)|, dL/dh_t and dL/da_t as mantissas (about ``4 T h``
floats per trial) plus ``T q`` output errors. Checkpointed pass with interval K: ``ceil(T/K)``
states plus buffers of one segment (``K`` steps) and of one block. Both keep the per-t log
scales (``h_s``, ``e_s``, ``dL_dh_s``, ``dL_da_s``: 4 T floats per trial).
"""

from __future__ import annotations

import math
import re
import resource
import sys

from .errors import BadInput

UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
AUTO_BUDGET = 2**30  # `--checkpoint auto` stores every state while that needs at most 1 GiB
FLOAT = 8


def parse_size(text: str) -> int:
    """``512M``, ``2G``, ``1.5G``, ``100000`` (bytes; K/M/G/T are powers of 1024) -> bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not match:
        raise BadInput(f"cannot read memory size {text!r} (use e.g. 512M or 2G)")
    value = float(match.group(1)) * UNITS[match.group(2).upper()]
    if not (math.isfinite(value) and value >= 1):
        raise BadInput(f"memory size must be at least 1 byte, got {text!r}")
    return int(value)


def per_t_bytes(n: int, T: int) -> int:
    """The per-t log scales kept in every mode, and their copies in the output (about 4 per t)."""
    return FLOAT * n * (T + 1) * 8


def stored_bytes(n: int, T: int, h: int, q: int) -> int:
    """Estimated bytes of the stored pass (every state kept)."""
    return FLOAT * n * ((T + 1) * h + 3 * T * h + T * q) + per_t_bytes(n, T)


def checkpointed_bytes(n: int, T: int, h: int, q: int, every: int, block: int) -> int:
    """Estimated bytes of the checkpointed pass with interval ``every``."""
    checkpoints = -(-T // every) * h
    segment = (every + 1) * h + every * (h + q)
    buffers = 6 * block * h
    return FLOAT * n * (checkpoints + segment + buffers) + per_t_bytes(n, T)


def choose_checkpoint(
    setting: str, n: int, T: int, h: int, q: int, block: int, max_memory: int | None = None
) -> int | None:
    """The checkpoint interval for ``--checkpoint auto|none|K`` (``None``: store every state).

    ``auto`` stores every state when that fits in ``max_memory`` (default 1 GiB), else keeps
    every K-th state with K about ``sqrt(T)`` (the smallest memory), a multiple of ``block``.
    An explicit K is rounded up to a multiple of ``block``.
    """
    setting = setting.strip().lower()
    stored = stored_bytes(n, T, h, q)
    if setting == "none":
        if max_memory is not None and stored > max_memory:
            raise BadInput(
                f"--checkpoint none needs about {stored} bytes, more than --max-memory {max_memory}"
            )
        return None
    if setting == "auto":
        if stored <= (max_memory if max_memory is not None else AUTO_BUDGET):
            return None
        every = block * max(1, round(math.sqrt(T / 2) / block))
    else:
        try:
            every = int(setting)
        except ValueError:
            msg = f"--checkpoint must be auto, none or a positive integer, got {setting!r}"
            raise BadInput(msg) from None
        if every < 1:
            raise BadInput(f"--checkpoint interval must be at least 1, got {every}")
        every = -(-every // block) * block
    need = checkpointed_bytes(n, T, h, q, every, block)
    if max_memory is not None and need > max_memory:
        raise BadInput(
            f"checkpointing every {every} steps needs about {need} bytes, more than --max-memory {max_memory}"
        )
    return every


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (``getrusage``; KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)
