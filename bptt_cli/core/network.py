"""The network of an experiment: its settings, parameters and data, stacked over trials.

Elman cells (identity, tanh, relu, sigmoid)::

    a_t = W_hx x_t + W_hh h_{t-1} + b_h,   h_t = phi(a_t),   o_t = W_qh h_t + b_q,   t = 1..T, h_0 = 0

Gated cells (PyTorch's nn.LSTM and nn.GRU) carry PyTorch's names and layouts: ``weight_ih_l0 (G h,
d)``, ``weight_hh_l0 (G h, h)``, ``bias_ih_l0 (G h)``, ``bias_hh_l0 (G h)`` with the gate blocks
stacked in PyTorch's order (LSTM, G = 4: input i, forget f, cell g, output o; GRU, G = 3: reset r,
update z, new n), and the output layer ``W_qh (q, h)``, ``b_q (q)`` of the Elman network. Their
random initialisation is PyTorch's default, ``U(-1/sqrt(h), 1/sqrt(h))`` for every weight and bias
of the cell; ``--ensemble``/``--gain`` (and ``--radius``/``--norm``) act on each ``h x h`` gate
block of ``weight_hh_l0`` (drawn independently from the ensemble times the gain, or rescaled to the
radius/norm), ``--forget-bias`` is added to the LSTM's forget-gate rows of ``bias_ih_l0``.

Both families draw the output layer and the data from the same child streams of a trial's seed, so
every cell of a comparison sees the same ``W_qh``, ``b_q``, ``x_t`` and ``y_t``. :func:`build_network`
builds either from its :class:`Spec` (a :class:`GatedSpec` for the gated cells). Every array carries
a leading trial axis ``n``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, overload

import numpy as np
from numpy.typing import NDArray

from bptt_cli.core.cells import CELLS
from bptt_cli.core.ensembles import ENSEMBLES, random_W_hh, rescale
from bptt_cli.core.scaled import Array
from bptt_cli.errors import BadInput

LOSSES = ("last", "mean")
CRITERIA = ("mse", "cross-entropy")
INITIAL = ("zeros", "random")  # --h0, or a file
PARAMS = ("W_hh", "W_hx", "W_qh", "b_h", "b_q")
MAX_SCALE = 1e300  # the largest --gain, --radius, --norm or --bias: float64 stops near 1.8e308


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
    criterion: str = "mse"
    layers: int = 1
    bidirectional: bool = False
    h0: str = "zeros"  # zeros, random, or the file the initial states came from

    def __post_init__(self) -> None:
        def flag(name: str) -> str:  # messages name the command-line option
            return "--" + name.replace("_", "-")

        choose = (("cell", CELLS), ("loss", LOSSES), ("ensemble", ENSEMBLES), ("criterion", CRITERIA))
        for name, choices in choose:
            if getattr(self, name) not in choices:
                raise BadInput(
                    f"unknown {flag(name)} {getattr(self, name)!r} (choose from {', '.join(choices)})"
                )
        for name in ("T", "hidden", "outputs_dim", "trials", "layers"):
            if getattr(self, name) < 1:
                raise BadInput(f"{flag(name)} must be at least 1, got {getattr(self, name)}")
        if self.inputs_dim < 0:
            raise BadInput(f"--inputs-dim must be at least 0 (0: no input), got {self.inputs_dim}")
        if self.seed < 0:
            raise BadInput(f"--seed must be non-negative, got {self.seed}")
        if self.radius is not None and self.norm is not None:
            raise BadInput("--radius and --norm conflict: give at most one of them")
        for name in ("gain", "radius", "norm", "bias"):
            value = getattr(self, name)
            if value is not None and not (np.isfinite(value) and value >= 0):
                raise BadInput(f"{flag(name)} must be a finite number >= 0, got {value}")
            if value is not None and value > MAX_SCALE:
                raise BadInput(
                    f"{flag(name)} must be at most 1e300 (float64 needs room above it for the network's "
                    f"sums), got {value}"
                )


    @property
    def stacked(self) -> bool:
        """More than one layer, or both directions: a :class:`~bptt_cli.core.stack.StackNetwork`."""
        return self.layers > 1 or self.bidirectional

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1


@dataclass(frozen=True)
class Given:
    """Arrays supplied by the user (from files); ``None`` means draw at random (``h0``: zeros or
    random as ``Spec.h0`` says). ``y`` holds reals ``(T, q)`` or classes ``(T,)``."""

    W_hh: Array | None = None
    W_hx: Array | None = None
    W_qh: Array | None = None
    b_h: Array | None = None
    b_q: Array | None = None
    x: Array | None = None
    y: Array | None = None
    h0: Array | None = None


@dataclass(frozen=True)
class Network:
    """Parameters and data of ``n`` trials.

    Shapes: ``W_hh (n, h, h)``, ``W_hx (n, h, d)``, ``W_qh (n, q, h)``, ``b_h (n, h)``,
    ``b_q (n, q)``, ``x (n, T, d)``, ``y (n, T, q)`` (``mse``) or ``(n, T)`` classes
    (``cross-entropy``). ``h0 (n, h)``: the initial state (``None``: zeros). ``x_s (n, T)``: when
    set, the inputs are scaled, ``x_t = x[:, t] e^{x_s[:, t]}`` with unit rows ``x`` (the states of
    a layer below, which may lie beyond float64); else ``x`` holds plain floats. ``d = 0`` is the
    autonomous network (no input: ``W_hx`` and ``x`` have no columns).
    """

    W_hh: Array
    W_hx: Array
    W_qh: Array
    b_h: Array
    b_q: Array
    x: Array
    y: Array
    seeds: list[np.random.SeedSequence] = field(default_factory=list, compare=False)
    criterion: str = "mse"
    h0: Array | None = None
    x_s: Array | None = None

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(n, T, h, d, q)``."""
        n, T, d = self.x.shape
        return n, T, self.W_hh.shape[-1], d, self.W_qh.shape[-2]

    def params(self) -> dict[str, Array]:
        return {name: getattr(self, name) for name in PARAMS}

    def replace(self, **arrays: Any) -> Network:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(arrays)
        return Network(**values)

    def trials(self, g: slice) -> Network:
        """Trials ``g`` (views), every array with a trial axis sliced."""
        arrays = {name: getattr(self, name) for name in (*PARAMS, "x", "y", "h0", "x_s")}
        sliced = {k: None if v is None else v[g] for k, v in arrays.items()}
        return self.replace(**sliced, seeds=self.seeds[g])


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
            return value if name == "y" else np.asarray(value, dtype=np.float64)
        return draw(child_rng(seq, j))

    return {
        "W_hh": pick("W_hh", 0, lambda r: random_W_hh(r, h, spec.ensemble, spec.gain)),
        "W_hx": pick("W_hx", 1, lambda r: r.standard_normal((h, d)) / np.sqrt(max(d, 1))),
        "W_qh": pick("W_qh", 2, lambda r: r.standard_normal((q, h)) / np.sqrt(h)),
        "b_h": pick("b_h", 3, lambda r: r.standard_normal(h) * spec.bias),
        "b_q": pick("b_q", 4, lambda r: r.standard_normal(q) * spec.bias),
        "x": pick("x", 5, lambda r: r.standard_normal((T, d))),
        "y": pick("y", 6, lambda r: draw_targets(r, spec.criterion, T, q)),
    }


def draw_targets(r: np.random.Generator, criterion: str, T: int, q: int) -> NDArray[Any]:
    """Targets of one trial: ``N(0, 1)`` reals ``(T, q)`` (``mse``), or classes ``(T,)`` drawn
    uniformly from ``[0, q)`` (``cross-entropy``)."""
    if criterion == "cross-entropy":
        return r.integers(0, q, T)
    return r.standard_normal((T, q))


H0_STREAM, C0_STREAM = 11, 12  # child streams of a trial's initial states (--h0 random)


def initial_states(
    spec: Spec, given: Array | None, seqs: list[np.random.SeedSequence], count: int, stream: int = H0_STREAM
) -> Array | None:
    """The initial states of ``count`` layer-directions, ``(n, count, h)``, or ``None`` for zeros:
    ``given`` (``(h,)`` for every one, or ``(count, h)``), or ``N(0, 1)`` from the trial's own stream
    (``--h0 random``: its stream ``(stream, k)`` for layer-direction ``k``, so nothing else changes)."""
    h = spec.hidden
    if given is not None:
        rows = np.broadcast_to(np.asarray(given, dtype=np.float64).reshape(-1, h), (count, h))
        return np.broadcast_to(rows, (len(seqs), count, h)).copy()
    if spec.h0 != "random":
        return None
    out = np.empty((len(seqs), count, h))
    for i, seq in enumerate(seqs):
        for k in range(count):
            sub = np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, stream, k))
            out[i, k] = np.random.default_rng(sub).standard_normal(h)
    return out


@overload
def build_network(  # type: ignore[overload-overlap]
    spec: GatedSpec, given: GatedGiven | None = None, seeds: list[np.random.SeedSequence] | None = None
) -> GatedNetwork: ...


@overload
def build_network(
    spec: Spec, given: Given | None = None, seeds: list[np.random.SeedSequence] | None = None
) -> Network: ...


def build_network(
    spec: Spec, given: Given | GatedGiven | None = None, seeds: list[np.random.SeedSequence] | None = None
) -> Network | GatedNetwork:
    """Draw (or take) the parameters and data of every trial and stack them.

    ``seeds`` defaults to :func:`trial_seeds`; ``W_hh`` (each ``h x h`` block of a gated cell's
    ``weight_hh_l0``) is rescaled to ``spec.radius`` or ``spec.norm`` when one is set. A
    :class:`GatedSpec` gives a :class:`GatedNetwork` (``given`` a :class:`GatedGiven`), anything
    else a :class:`Network` (``given`` a :class:`Given`).
    """
    if isinstance(spec, GatedSpec):
        assert given is None or isinstance(given, GatedGiven)
        return _build_gated(spec, given, seeds)
    assert given is None or isinstance(given, Given)
    given = given or Given()
    seeds = seeds if seeds is not None else trial_seeds(spec.seed, spec.trials)
    trials = [draw_trial(spec, given, seq) for seq in seeds]
    stacked = {name: np.stack([tr[name] for tr in trials]) for name in trials[0]}
    stacked["W_hh"] = rescale(stacked["W_hh"], spec.radius, spec.norm)
    a = stacked
    h0 = initial_states(spec, given.h0, seeds, 1)
    return Network(a["W_hh"], a["W_hx"], a["W_qh"], a["b_h"], a["b_q"], a["x"], a["y"], seeds,
                   spec.criterion, None if h0 is None else h0[:, 0])


# -- gated cells (nn.LSTM, nn.GRU) --------------------------------------------------------------

GATED = ("lstm", "gru")
GATES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}
CANDIDATE = {"lstm": 2, "gru": 2}  # index of the block that plays W_hh's role (g, n)
GATED_PARAMS = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "W_qh", "b_q")
# child streams of a trial's SeedSequence: 2, 4, 5, 6 are the Elman network's W_qh, b_q, x, y
STREAMS = {"W_qh": 2, "b_q": 4, "x": 5, "y": 6,
           "weight_ih_l0": 7, "weight_hh_l0": 8, "bias_ih_l0": 9, "bias_hh_l0": 10}


@dataclass(frozen=True)
class GatedSpec(Spec):
    """:class:`Spec` for an LSTM or GRU cell.

    ``ensemble`` defaults to ``uniform`` (PyTorch's initialisation, with ``gain`` 1);
    ``forget_bias`` is added to the LSTM's forget-gate bias (the GRU has no forget gate and
    ignores it, so that it can be a sweep axis beside ``cell``). ``bias`` is the standard
    deviation of ``b_q`` (the gate biases follow PyTorch's initialisation).
    """

    cell: str = "lstm"
    ensemble: str = "uniform"
    forget_bias: float = 0.0

    def __post_init__(self) -> None:
        if self.cell not in GATED:
            raise BadInput(f"unknown gated cell {self.cell!r} (choose from {', '.join(GATED)})")
        if not np.isfinite(self.forget_bias):
            raise BadInput(f"forget_bias must be a finite number, got {self.forget_bias}")
        # every other setting is checked exactly as for the Elman network
        Spec(**{f.name: getattr(self, f.name) for f in fields(Spec) if f.name != "cell"})

    @property
    def gates(self) -> int:
        """G: 4 for the LSTM, 3 for the GRU."""
        return len(GATES[self.cell])


@dataclass(frozen=True)
class GatedGiven:
    """Arrays supplied by the user, PyTorch names; ``None`` means draw at random.

    ``bias_ih_l0``/``bias_hh_l0`` are zeros when a weights file has none (PyTorch's
    ``bias=False``); the loader fills them in.
    """

    weight_ih_l0: Array | None = None
    weight_hh_l0: Array | None = None
    bias_ih_l0: Array | None = None
    bias_hh_l0: Array | None = None
    W_qh: Array | None = None
    b_q: Array | None = None
    x: Array | None = None
    y: Array | None = None
    h0: Array | None = None
    c0: Array | None = None


@dataclass(frozen=True)
class GatedNetwork:
    """Parameters and data of ``n`` trials of an LSTM or GRU.

    Shapes: ``weight_ih_l0 (n, G h, d)``, ``weight_hh_l0 (n, G h, h)``, ``bias_ih_l0 (n, G h)``,
    ``bias_hh_l0 (n, G h)``, ``W_qh (n, q, h)``, ``b_q (n, q)``, ``x (n, T, d)``, ``y (n, T, q)``.
    """

    cell: str
    weight_ih_l0: Array
    weight_hh_l0: Array
    bias_ih_l0: Array
    bias_hh_l0: Array
    W_qh: Array
    b_q: Array
    x: Array
    y: Array
    seeds: list[np.random.SeedSequence] = field(default_factory=list, compare=False)
    criterion: str = "mse"
    h0: Array | None = None  # (n, h): h_0 (None: zeros)
    c0: Array | None = None  # (n, h): the LSTM's c_0 (None: zeros)

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(n, T, h, d, q)``."""
        n, T, d = self.x.shape
        return n, T, self.weight_hh_l0.shape[-1], d, self.W_qh.shape[-2]

    @property
    def gates(self) -> int:
        return len(GATES[self.cell])

    def block(self, name: str, gate: str) -> Array:
        """The ``(n, h, h)`` (or ``(n, h, d)``, ``(n, h)``) rows of parameter ``name`` for ``gate``."""
        h = self.shape[2]
        k = GATES[self.cell].index(gate)
        return getattr(self, name)[:, k * h : (k + 1) * h]

    @property
    def W_hh(self) -> Array:
        """The candidate block of ``weight_hh_l0`` (``W_hg`` of the LSTM, ``W_hn`` of the GRU),
        ``(n, h, h)``: the matrix that plays the Elman ``W_hh``'s role, whose spectrum is reported."""
        return self.block("weight_hh_l0", GATES[self.cell][CANDIDATE[self.cell]])

    def params(self) -> dict[str, Array]:
        return {name: getattr(self, name) for name in GATED_PARAMS}


def draw_gated_trial(spec: GatedSpec, given: GatedGiven, seq: np.random.SeedSequence) -> dict[str, Array]:
    """Parameters and data of one trial: the given arrays, the rest drawn from ``seq``."""
    h, d, q, T, G = spec.hidden, spec.inputs_dim, spec.outputs_dim, spec.T, spec.gates
    k = 1.0 / np.sqrt(h)

    def recurrent(r: np.random.Generator) -> Array:
        return np.concatenate([random_W_hh(r, h, spec.ensemble, spec.gain) for _ in range(G)])

    draws: dict[str, Callable[[np.random.Generator], Array]] = {
        "weight_ih_l0": lambda r: r.uniform(-k, k, (G * h, d)),
        "weight_hh_l0": recurrent,
        "bias_ih_l0": lambda r: r.uniform(-k, k, G * h),
        "bias_hh_l0": lambda r: r.uniform(-k, k, G * h),
        "W_qh": lambda r: r.standard_normal((q, h)) / np.sqrt(h),
        "b_q": lambda r: r.standard_normal(q) * spec.bias,
        "x": lambda r: r.standard_normal((T, d)),
        "y": lambda r: draw_targets(r, spec.criterion, T, q),
    }
    out = {}
    for name, draw in draws.items():
        value = getattr(given, name)
        if value is not None:
            out[name] = value if name == "y" else np.asarray(value, dtype=np.float64)
        else:
            out[name] = draw(child_rng(seq, STREAMS[name]))
    return out


def _build_gated(
    spec: GatedSpec, given: GatedGiven | None = None, seeds: list[np.random.SeedSequence] | None = None
) -> GatedNetwork:
    """Draw (or take) every trial's parameters and data and stack them.

    ``seeds`` defaults to ``SeedSequence(spec.seed).spawn(spec.trials)``. Each ``h x h`` block of
    ``weight_hh_l0`` is rescaled to ``spec.radius`` or ``spec.norm`` when one is set, and
    ``spec.forget_bias`` is added to the LSTM's forget rows of ``bias_ih_l0``.
    """
    given = given or GatedGiven()
    seeds = seeds if seeds is not None else trial_seeds(spec.seed, spec.trials)
    trials = [draw_gated_trial(spec, given, seq) for seq in seeds]
    stacked = {name: np.stack([tr[name] for tr in trials]) for name in trials[0]}
    n, h, G = len(seeds), spec.hidden, spec.gates
    blocks = stacked["weight_hh_l0"].reshape(n, G, h, h)
    stacked["weight_hh_l0"] = rescale(blocks, spec.radius, spec.norm).reshape(n, G * h, h)
    if spec.cell == "lstm" and spec.forget_bias:
        stacked["bias_ih_l0"] = stacked["bias_ih_l0"].copy()
        stacked["bias_ih_l0"][:, h : 2 * h] += spec.forget_bias
    a = stacked
    h0 = initial_states(spec, given.h0, seeds, 1)
    c0 = initial_states(spec, given.c0, seeds, 1, C0_STREAM) if spec.cell == "lstm" else None
    return GatedNetwork(spec.cell, a["weight_ih_l0"], a["weight_hh_l0"], a["bias_ih_l0"], a["bias_hh_l0"],
                        a["W_qh"], a["b_q"], a["x"], a["y"], seeds, spec.criterion,
                        None if h0 is None else h0[:, 0], None if c0 is None else c0[:, 0])


def state_size(cell: str, h: int) -> int:
    """``D``: the size of the state whose step Jacobians are multiplied: ``2h`` for the LSTM's
    joint ``(h, c)``, else ``h``."""
    return 2 * h if cell == "lstm" else h
