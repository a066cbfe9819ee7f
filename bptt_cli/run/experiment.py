"""From the option values of ``bptt analyze`` to one experiment: checked settings and given arrays.

``bptt analyze`` and every grid point of ``bptt sweep`` go through :func:`resolve`, with the
same keyword arguments (the parameter names of the ``analyze`` command, less its output
options), then :meth:`Experiment.run`, so that a sweep record is exactly what ``bptt analyze``
reports for those settings. A new ``analyze`` option is handled here (a parameter of
:func:`resolve`, carried by :class:`Experiment` into :meth:`Experiment.run`) and nowhere else:
whatever ``analyze`` computes beyond this path, a sweep would not see.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bptt_cli.core.network import GatedGiven, Given, Spec
from bptt_cli.core.stack import StackGiven
from bptt_cli.errors import BadInput

if TYPE_CHECKING:
    from bptt_cli.analysis.result import Analysis
    from bptt_cli.estimators.estimator import Estimator


@dataclass(frozen=True)
class Experiment:
    """One experiment, checked: the settings (``spec``), the user's arrays (``given``), the
    verdict tolerance (orders of magnitude), the input files, the number of Lyapunov exponents
    (``None``: the default), the truncation and clipping estimators, the memory plan
    (``checkpoint``, ``max_memory`` in bytes), for the JSON ``config``, the estimator
    options as given (``estimator_options``), which eigenvalues the records list
    (``eigenvalues``: ``all``, ``none`` or a count, :func:`bptt_cli.theory.spectra.check_eigenvalues`),
    and whether the theory's predictions are computed (``theory``, ``--theory/--no-theory``).
    ``weights_source``: the weights as given (a file's path, or what the API was handed), for
    ``advise --apply``."""

    spec: Spec
    given: Given | GatedGiven | StackGiven
    tolerance: float
    files: dict[str, Path | str | None]
    lyapunov: int | None = None
    estimators: tuple[Estimator, ...] = ()
    checkpoint: str = "auto"
    max_memory: int | None = None
    estimator_options: dict[str, Any] = field(default_factory=dict)
    eigenvalues: str = "all"
    theory: bool = True
    weights_source: Any = field(default=None, repr=False, compare=False)

    def run(self) -> Analysis:
        """Compute the experiment: ``analysis.analyze``, with the theory's predictions unless
        ``theory`` is off.

        What ``bptt analyze`` reports and what each ``bptt sweep`` point records.
        """
        from bptt_cli.analysis.analyze import analyze
        from bptt_cli.theory.spectra import eigenvalue_count

        return analyze(
            self.spec,
            self.given,
            self.tolerance,
            theory=self.theory,
            lyapunov=self.lyapunov,
            checkpoint=self.checkpoint,
            max_memory=self.max_memory,
            estimators=self.estimators,
            eigenvalues=eigenvalue_count(self.eigenvalues, self.spec.hidden),
        )

    @property
    def drawn(self) -> list[str]:
        """The arrays drawn at random from the seed (:func:`drawn_arrays`)."""
        return drawn_arrays(self.given, self.spec.inputs_dim)

    def config(self) -> dict[str, Any]:
        """``config`` of the JSON record, known before running: ``spec``'s settings, the
        tolerance and :meth:`report_config` (the Lyapunov count as :func:`analysis.plan` settles it;
        0 without the theory)."""
        from bptt_cli.analysis.analyze import lyapunov_count

        spec = self.spec
        return {
            **{k: getattr(spec, k) for k in spec.__dataclass_fields__},
            "tolerance": self.tolerance,
            **self.files,
            "drawn": self.drawn,
            "lyapunov": lyapunov_count(spec.cell, spec.hidden, self.lyapunov) if self.theory else 0,
            **self.estimator_options,
            "checkpoint": self.checkpoint,
            "max_memory": self.max_memory,
            "eigenvalues": self.eigenvalues,
            "theory": self.theory,
        }

    def resolved_options(self) -> dict[str, Any]:
        """:func:`resolved_options` of this experiment's :meth:`config`."""
        from bptt_cli.io.jsontext import jsonable

        return resolved_options(jsonable(self.config()))

    def ignored_options(self) -> tuple[str, ...]:
        """The ``analyze`` options this experiment does not read: ``--forget-bias`` but for the LSTM."""
        return () if self.spec.cell == "lstm" else ("forget_bias",)

    def report_config(self, an: Analysis) -> dict[str, Any]:
        """What ``config`` in the JSON output holds beside ``spec`` and ``tolerance``: the input
        files, the arrays drawn at random, the number of Lyapunov exponents computed, the
        estimator and memory options, the eigenvalues listed, whether the theory was computed."""
        th = an.theory
        count = th.lyapunov.exponents.shape[1] if th is not None and th.lyapunov is not None else 0
        return {
            **self.files,
            "drawn": self.drawn,
            "lyapunov": count,
            **self.estimator_options,
            "checkpoint": self.checkpoint,
            "max_memory": self.max_memory,
            "eigenvalues": self.eigenvalues,
            "theory": self.theory,
        }


def drawn_arrays(given: Given | GatedGiven | StackGiven, inputs_dim: int | None = None) -> list[str]:
    """The arrays not given in a file, so drawn at random from the seed (``W_qh``, ..., ``x``,
    ``y``; PyTorch's names for a gated cell), in the order of the dataclass's fields; for a stack,
    ``parameters`` unless a file gave them, ``x``, ``y``. The autonomous network (``inputs_dim``
    0) has no inputs and no input weights to draw."""
    skip = {"h0", "c0"} | ({"x", "W_hx", "weight_ih_l0"} if inputs_dim == 0 else set())
    if isinstance(given, StackGiven):
        data = [k for k in ("x", "y") if getattr(given, k) is None and k not in skip]
        return [*([] if given.params else ["parameters"]), *data]
    return [f.name for f in fields(given) if getattr(given, f.name) is None and f.name not in skip]


def network_spec(
    T: int | None, cell: str, loss: str, hidden: int | None, inputs_dim: int | None, outputs_dim: int | None,
    ensemble: str | None, gain: float | None, radius: float | None, norm: float | None, bias: float,
    trials: int, seed: int, weights: Any, inputs: Any, targets: Any,
    forget_bias: float = 0.0, *, criterion: str = "mse", layers: int | None = None,
    bidirectional: bool | None = None, h0: Any = "zeros",
) -> tuple[Spec, Given | GatedGiven | StackGiven]:
    """The network's settings from its options, and the arrays given in files (checked against
    each other). ``None`` means "not given": sizes, T, layers and directions then come from the
    files, else from :class:`Spec`. A gated cell (lstm, gru) gives a
    :class:`~bptt_cli.core.network.GatedSpec` and reads ``--weights`` with PyTorch's nn.LSTM/nn.GRU
    names; a stacked or bidirectional network a :class:`~bptt_cli.core.stack.StackGiven`. ``h0``:
    ``zeros``, ``random``, a file (or an array) of initial states.
    """
    import math

    from bptt_cli.core.network import GATED, INITIAL, MAX_SCALE, GatedSpec
    from bptt_cli.io.arrays import fit_initial
    from bptt_cli.io.weights import given_from_files

    if not math.isfinite(forget_bias):
        raise BadInput(f"--forget-bias must be a finite number, got {forget_bias}")
    if abs(forget_bias) > MAX_SCALE:  # ln f summed over T steps must stay within float64
        raise BadInput(f"--forget-bias must be within +-1e300 (the log of the gate product sums it over "
                       f"the steps), got {forget_bias}")
    if gain is not None and (radius is not None or norm is not None):
        other = "radius" if radius is not None else "norm"
        raise BadInput(f"--gain conflicts with --{other}: give one of them")
    if weights is not None and (ensemble is not None or gain is not None):
        which = "ensemble" if ensemble is not None else "gain"
        raise BadInput(f"--{which} conflicts with --weights: W_hh comes from the file")
    h0_file = None if isinstance(h0, str) and h0 in INITIAL else h0
    if isinstance(h0_file, str):
        h0_file = Path(h0_file)
        if not h0_file.exists():
            raise BadInput(f"--h0 {h0!r}: not zeros, random, or a file that exists "
                           "(choose from zeros, random, FILE)")
    gated = cell in GATED
    given, fixed = given_from_files(weights, inputs, targets, cell=cell, criterion=criterion, layers=layers,
                                    bidirectional=bidirectional, h0=h0_file)
    asked: dict[str, Any] = {
        "T": T, "hidden": hidden, "inputs_dim": inputs_dim, "outputs_dim": outputs_dim, "layers": layers,
        "bidirectional": bidirectional,
    }
    for name, value in asked.items():
        if value is not None and name in fixed and fixed[name][0] != value:
            shown = f"--{name.replace('_', '-')} {value}"
            if name == "bidirectional":
                shown = "--bidirectional" if value else "--no-bidirectional"
            raise BadInput(f"{shown} conflicts with {fixed[name][1]}")
    defaults = GatedSpec() if gated else Spec()
    sizes = {
        name: value if value is not None else fixed.get(name, (getattr(defaults, name), ""))[0]
        for name, value in asked.items()
    }
    settings: dict[str, Any] = dict(
        cell=cell, loss=loss, ensemble=ensemble or defaults.ensemble,
        gain=gain if gain is not None else defaults.gain, radius=radius, norm=norm, bias=bias, trials=trials,
        seed=seed, criterion=criterion, h0=str(source_label(h0_file) or h0), **sizes,
    )
    spec = GatedSpec(**settings, forget_bias=forget_bias) if gated else Spec(**settings)
    if criterion == "cross-entropy" and given.y is not None and np.max(given.y) >= spec.outputs_dim:
        t = int(np.argmax(given.y >= spec.outputs_dim)) + 1
        where = source_label(targets) or "targets"
        raise BadInput(f"targets in {where}: class {int(given.y[t - 1])} at t = {t} is not below the "
                       f"{spec.outputs_dim} outputs (classes run 0..q-1)")
    if given.h0 is not None or getattr(given, "c0", None) is not None:  # shaped now that h is known
        count, where = spec.layers * spec.directions, str(source_label(h0_file))
        h0s = fit_initial(given.h0, count, spec.hidden, "h0", where)
        c0s = fit_initial(getattr(given, "c0", None), count, spec.hidden, "c0", where)
        if c0s is not None and cell != "lstm":
            raise BadInput(f"--h0 {where}: c0 is for an LSTM, not --cell {cell}")
        if isinstance(given, StackGiven):
            given = replace(given, h0=h0s, c0=c0s)
        elif isinstance(given, GatedGiven):
            given = replace(given, h0=None if h0s is None else h0s[0], c0=None if c0s is None else c0s[0])
        else:
            given = replace(given, h0=None if h0s is None else h0s[0])
    return spec, given


def resolve(
    *,
    T: int | None,
    cell: str,
    loss: str,
    hidden: int | None,
    inputs_dim: int | None,
    outputs_dim: int | None,
    ensemble: str | None,
    gain: float | None,
    radius: float | None,
    norm: float | None,
    bias: float,
    forget_bias: float,
    trials: int,
    seed: int,
    weights: Path | str | Any,
    inputs: Path | str | Any,
    targets: Path | str | Any,
    tolerance: float,
    lyapunov: int | None,
    truncate: str | None,
    truncate_mode: str | None,
    keep_prob: float | None,
    draws: int | None,
    clip: float | None,
    checkpoint: str,
    max_memory: str | None,
    criterion: str = "mse",
    layers: int | None = None,
    bidirectional: bool | None = None,
    h0: Any = "zeros",
    eigenvalues: str = "all",
    theory: bool = True,
) -> Experiment:
    """Check the options of ``bptt analyze`` (all but the output ones) and fill in the defaults.

    ``weights``, ``inputs``, ``targets``: files, or (from the Python API) arrays in memory, or a
    PyTorch module for ``weights``. Raises :class:`BadInput` for conflicting options or unusable files.
    """
    import math

    from bptt_cli.estimators.estimator import estimators_from_options
    from bptt_cli.theory.spectra import check_eigenvalues
    from bptt_cli.units import parse_size

    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise BadInput(f"--tolerance must be a finite number >= 0, got {tolerance}")
    try:
        listed = check_eigenvalues(eigenvalues)
    except ValueError as e:
        raise BadInput(str(e)) from None
    if not theory and lyapunov:
        raise BadInput(
            f"--lyapunov {lyapunov} conflicts with --no-theory: the Lyapunov exponents are part of the theory"
        )
    estimators = estimators_from_options(truncate, truncate_mode, keep_prob, draws, clip)
    budget = None if max_memory is None else parse_size(max_memory)
    sources = {
        name: Path(p) if isinstance(p, str | Path) else p
        for name, p in (("weights", weights), ("inputs", inputs), ("targets", targets))
    }
    files = {name: source_label(src) for name, src in sources.items()}
    spec, given = network_spec(
        T, cell, loss, hidden, inputs_dim, outputs_dim, ensemble, gain, radius, norm, bias, trials, seed,
        sources["weights"], sources["inputs"], sources["targets"], forget_bias, criterion=criterion,
        layers=layers, bidirectional=bidirectional, h0=h0,
    )
    from bptt_cli.analysis.analyze import plan

    plan(spec, lyapunov, checkpoint, budget, estimators)  # every cheap check, before any point runs
    options = {
        "truncate": truncate,
        "truncate_mode": truncate_mode,
        "keep_prob": keep_prob,
        "draws": draws,
        "clip": clip,
    }
    return Experiment(
        spec, given, tolerance, files, lyapunov, tuple(estimators), checkpoint, budget, options, listed,
        theory, sources["weights"],
    )



def source_label(source: Any) -> Path | str | None:
    """How ``config`` names where an array came from: the file's path, or ``<nn.LSTM in memory>``,
    ``<arrays in memory>`` for what the Python API was handed."""
    if source is None or isinstance(source, Path):
        return source
    if hasattr(source, "state_dict"):
        return f"<{type(source).__name__} in memory>"
    return "<arrays in memory>"


# options whose value an experiment resolves and its config holds as resolved
RESOLVED = (
    "T", "hidden", "inputs_dim", "outputs_dim", "ensemble", "gain",
    "weights", "inputs", "targets", "lyapunov", "layers", "bidirectional", "h0",
)


LATER = {"layers": 1, "bidirectional": False, "h0": "zeros"}  # added in 0.3: older records (or their
# empty cells in a CSV file rewritten with the wider header since) mean these


def resolved_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``analyze`` options whose value an experiment resolves, by option name, read from its
    ``config`` (that of the JSON record): sizes, T, ensemble and gain filled in (from the files or
    the defaults), the number of Lyapunov exponents, the estimator options as the estimators read
    them (``--truncate-mode window`` for a K, 100 ``--draws``), ``--checkpoint`` in lower case,
    ``--max-memory`` in bytes, ``--theory``. Two sets of options with the same resolved values (and the
    same other values) are the same experiment. :class:`BadInput`, ``KeyError`` or ``ValueError`` for
    a ``config`` that is not one.
    """
    from bptt_cli.estimators.estimator import estimators_from_options
    from bptt_cli.theory.spectra import check_eigenvalues

    truncate = config["truncate"]
    estimators = estimators_from_options(
        None if truncate is None else str(truncate), config["truncate_mode"], config["keep_prob"],
        config["draws"], config["clip"],
    )
    trunc = next((e for e in estimators if e.kind != "clip"), None)
    random = trunc is not None and trunc.kind == "random"
    return {
        **{name: _given(config, name, LATER[name]) if name in LATER else config[name] for name in RESOLVED},
        "truncate": None if trunc is None else "random" if random else str(trunc.K),
        "truncate_mode": None if trunc is None or random else trunc.kind,
        "keep_prob": trunc.keep_prob if random and trunc is not None else None,
        "draws": trunc.draws if random and trunc is not None else None,
        "clip": next((e.clip for e in estimators if e.kind == "clip"), None),
        "checkpoint": str(config["checkpoint"]).strip().lower(),
        "max_memory": config["max_memory"],
        # records written before the option (issue 17) listed every eigenvalue, and those written
        # before --no-theory computed the theory; in a CSV file rewritten with the wider header
        # since, their cells are empty (None)
        "eigenvalues": check_eigenvalues(_given(config, "eigenvalues", "all")),
        "theory": _flag(_given(config, "theory", True), "theory"),
    }


def _given(config: Mapping[str, Any], name: str, before: Any) -> Any:
    """``config[name]``, or ``before`` (what records written before the option meant) where it is
    absent or ``None``."""
    value = config.get(name)
    return before if value is None else value


def _flag(value: Any, name: str) -> bool:
    """A boolean setting of a record's ``config`` (``true``/``false``), else ``ValueError``."""
    if not isinstance(value, bool):
        raise ValueError(f"config.{name} must be true or false, got {value!r}")
    return value
