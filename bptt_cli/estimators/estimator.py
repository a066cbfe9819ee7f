"""The gradient estimators measured against full BPTT, as settings: what ``--truncate``, ``--truncate-mode``,
``--keep-prob``, ``--draws`` and ``--clip`` ask for.

- ``window`` K (the chapter's regular truncation) and ``chunk`` K (truncated BPTT as training code
  does it), :mod:`bptt_cli.estimators.truncation`;
- ``random`` P (randomized truncation, Tallec & Ollivier 2017), the same module;
- ``clip`` theta (global norm clipping of the full gradient), :mod:`bptt_cli.estimators.clipping`.

:mod:`bptt_cli.estimators.measure` runs them and measures them against the full gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bptt_cli.errors import BadInput

KINDS = ("window", "chunk", "random", "clip")
MODES = ("window", "chunk")
CHAIN_PARAMS = ("W_hh", "W_hx", "b_h")  # the parameters truncation changes


@dataclass(frozen=True)
class Estimator:
    """One estimator: ``kind`` (window, chunk, random, clip), ``K``, ``keep_prob``, ``draws``, ``clip``."""

    kind: str
    K: int = 0
    keep_prob: float = 1.0
    draws: int = 1
    clip: float = math.inf

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BadInput(f"unknown estimator {self.kind!r} (choose from {', '.join(KINDS)})")
        if self.kind in MODES and self.K < 1:
            raise BadInput(f"--truncate K must be at least 1, got {self.K}")
        if self.kind == "random":
            p = self.keep_prob
            if not (math.isfinite(p) and 0 < p <= 1):
                raise BadInput(f"--keep-prob must be in (0, 1], got {p:g}")
            if self.draws < 1:
                raise BadInput(f"--draws must be at least 1, got {self.draws}")
        if self.kind == "clip" and not (math.isfinite(self.clip) and self.clip > 0):
            raise BadInput(f"--clip must be a finite number > 0, got {self.clip:g}")

    @property
    def label(self) -> str:
        """``window:10``, ``chunk:10``, ``random:0.5``, ``clip:1``."""
        value = {"window": self.K, "chunk": self.K, "random": self.keep_prob, "clip": self.clip}[self.kind]
        return f"{self.kind}:{value:g}"

    @property
    def columns(self) -> int:
        """Draws (random) or 1."""
        return self.draws if self.kind == "random" else 1


def estimators_from_options(
    truncate: str | None = None, mode: str | None = None, keep_prob: float | None = None,
    draws: int | None = None, clip: float | None = None,
) -> list[Estimator]:
    """The estimators of ``--truncate K|random --truncate-mode --keep-prob --draws --clip``.

    Options that do not apply (``--keep-prob`` without ``--truncate random``, ``--truncate-mode``
    with it) are errors rather than silently ignored.
    """
    out = []
    if mode is not None and mode not in MODES:
        raise BadInput(f"unknown --truncate-mode {mode!r} (choose from window, chunk)")
    if truncate is not None:
        text = truncate.strip().lower()
        if text == "random":
            if keep_prob is None:
                raise BadInput("--truncate random needs --keep-prob P")
            if mode is not None:
                raise BadInput("--truncate-mode applies to --truncate K, not to --truncate random")
            out.append(Estimator("random", keep_prob=keep_prob, draws=100 if draws is None else draws))
        else:
            try:
                K = int(text)
            except ValueError:
                msg = f"--truncate must be a positive integer K or 'random', got {truncate!r}"
                raise BadInput(msg) from None
            out.append(Estimator(mode or "window", K=K))
    if truncate is None or truncate.strip().lower() != "random":
        for flag, value in (("--keep-prob", keep_prob), ("--draws", draws)):
            if value is not None:
                raise BadInput(f"{flag} applies to --truncate random only")
    if truncate is None and mode is not None:
        raise BadInput("--truncate-mode applies to --truncate K only")
    if clip is not None:
        out.append(Estimator("clip", clip=clip))
    return out
