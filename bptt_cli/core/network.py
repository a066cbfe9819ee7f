"""The Elman network of an experiment: its settings, parameters and data, stacked over trials.

``a_t = W_hx x_t + W_hh h_{t-1} + b_h``, ``h_t = phi(a_t)``, ``o_t = W_qh h_t + b_q``,
``t = 1..T``, ``h_0 = 0``. Every array carries a leading trial axis ``n``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields

import numpy as np

from bptt_cli.core.cells import CELLS
from bptt_cli.core.ensembles import ENSEMBLES, random_W_hh, rescale
from bptt_cli.core.scaled import Array
from bptt_cli.errors import BadInput

LOSSES = ("last", "mean")
PARAMS = ("W_hh", "W_hx", "W_qh", "b_h", "b_q")


@dataclass(frozen=True)
class Spec:
    """Every setting of one experiment (what ``config`` in the JSON output holds)."""

    cell: str = "identity"
    loss: str = "last"
    T: int = 100
    hidden: int = 64
    inputs_dim: int = 8
    outputs_dim: int = 8
    ensemble: str = "gaussian"
    gain: float = 1.0
    radius: float | None = None
    norm: float | None = None
    bias: float = 0.0
    trials: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        def flag(name: str) -> str:  # messages name the command-line option
            return "--" + name.replace("_", "-")

        for name, choices in (("cell", CELLS), ("loss", LOSSES), ("ensemble", ENSEMBLES)):
            if getattr(self, name) not in choices:
                raise BadInput(
                    f"unknown {flag(name)} {getattr(self, name)!r} (choose from {', '.join(choices)})"
                )
        for name in ("T", "hidden", "inputs_dim", "outputs_dim", "trials"):
            if getattr(self, name) < 1:
                raise BadInput(f"{flag(name)} must be at least 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise BadInput(f"--seed must be non-negative, got {self.seed}")
        if self.radius is not None and self.norm is not None:
            raise BadInput("--radius and --norm conflict: give at most one of them")
        for name in ("gain", "radius", "norm", "bias"):
            value = getattr(self, name)
            if value is not None and not (np.isfinite(value) and value >= 0):
                raise BadInput(f"{flag(name)} must be a finite number >= 0, got {value}")


@dataclass(frozen=True)
class Given:
    """Arrays supplied by the user (from files); ``None`` means draw at random."""

    W_hh: Array | None = None
    W_hx: Array | None = None
    W_qh: Array | None = None
    b_h: Array | None = None
    b_q: Array | None = None
    x: Array | None = None
    y: Array | None = None


@dataclass(frozen=True)
class Network:
    """Parameters and data of ``n`` trials.

    Shapes: ``W_hh (n, h, h)``, ``W_hx (n, h, d)``, ``W_qh (n, q, h)``, ``b_h (n, h)``,
    ``b_q (n, q)``, ``x (n, T, d)``, ``y (n, T, q)``.
    """

    W_hh: Array
    W_hx: Array
    W_qh: Array
    b_h: Array
    b_q: Array
    x: Array
    y: Array
    seeds: list[np.random.SeedSequence] = field(default_factory=list, compare=False)

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(n, T, h, d, q)``."""
        n, T, d = self.x.shape
        return n, T, self.W_hh.shape[-1], d, self.W_qh.shape[-2]

    def params(self) -> dict[str, Array]:
        return {name: getattr(self, name) for name in PARAMS}

    def replace(self, **arrays: Array) -> Network:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(arrays)
        return Network(**values)


def trial_seeds(seed: int, trials: int) -> list[np.random.SeedSequence]:
    """Trial ``i`` uses ``SeedSequence(seed).spawn(trials)[i]``."""
    return np.random.SeedSequence(seed).spawn(trials)


def child_rng(seq: np.random.SeedSequence, j: int) -> np.random.Generator:
    # Each quantity draws from its own stream, so that changing T or a size leaves the others alone.
    return np.random.default_rng(np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, j)))


def draw_trial(spec: Spec, given: Given, seq: np.random.SeedSequence) -> dict[str, Array]:
    """Parameters and data of one trial: the given arrays, the rest drawn from ``seq``."""
    h, d, q, T = spec.hidden, spec.inputs_dim, spec.outputs_dim, spec.T

    def pick(name: str, j: int, draw: Callable[[np.random.Generator], Array]) -> Array:
        value = getattr(given, name)
        if value is not None:
            return np.asarray(value, dtype=np.float64)
        return draw(child_rng(seq, j))

    return {
        "W_hh": pick("W_hh", 0, lambda r: random_W_hh(r, h, spec.ensemble, spec.gain)),
        "W_hx": pick("W_hx", 1, lambda r: r.standard_normal((h, d)) / np.sqrt(d)),
        "W_qh": pick("W_qh", 2, lambda r: r.standard_normal((q, h)) / np.sqrt(h)),
        "b_h": pick("b_h", 3, lambda r: r.standard_normal(h) * spec.bias),
        "b_q": pick("b_q", 4, lambda r: r.standard_normal(q) * spec.bias),
        "x": pick("x", 5, lambda r: r.standard_normal((T, d))),
        "y": pick("y", 6, lambda r: r.standard_normal((T, q))),
    }


def build_network(
    spec: Spec, given: Given | None = None, seeds: list[np.random.SeedSequence] | None = None
) -> Network:
    """Draw (or take) the parameters and data of every trial and stack them.

    ``seeds`` defaults to :func:`trial_seeds`; ``W_hh`` is rescaled to ``spec.radius`` or
    ``spec.norm`` when one is set.
    """
    given = given or Given()
    seeds = seeds if seeds is not None else trial_seeds(spec.seed, spec.trials)
    trials = [draw_trial(spec, given, seq) for seq in seeds]
    stacked = {name: np.stack([tr[name] for tr in trials]) for name in trials[0]}
    stacked["W_hh"] = rescale(stacked["W_hh"], spec.radius, spec.norm)
    return Network(**stacked, seeds=seeds)
