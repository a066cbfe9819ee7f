"""The Python API: each command of the CLI as a function, with the same options (Python names, same
defaults, same checks and messages) returning a typed result.

    import bptt_cli as bptt
    result = bptt.analyze(T=200, cell="tanh", gain=1.5, trials=8)
    result.verdict, result.trials[0].grad_h_log10        # 'vanishing', an array of 200 values
    result.to_dict()                                      # what `bptt analyze --format json` prints

Bad input raises :class:`bptt_cli.BadInput` (a ``ValueError``) with the CLI's one-line message.
``weights``, ``inputs`` and ``targets`` also take arrays in memory, and ``weights`` a PyTorch
module (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``, or a model holding one and a Linear head) or a
state_dict. ``config`` takes TOML files of defaults, as ``--config`` does.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bptt_cli.api import options as opt
from bptt_cli.api.results import AdviseResult, AnalyzeResult, SpectrumResult, SweepResult, TruncateResult
from bptt_cli.errors import BadInput

R = TypeVar("R")
ConfigFiles = str | Path | Sequence[str | Path] | None


def _config_defaults(template: Callable[..., Any], config: ConfigFiles, axes: bool = False) -> dict[str, Any]:
    """The defaults that TOML ``config`` files set for ``template``'s options (later files win), checked
    as ``--config`` checks them."""
    from bptt_cli.run.config import load_defaults

    if config is None:
        return {}
    paths = [config] if isinstance(config, str | Path) else list(config)
    axis_ctx = opt.context(opt.analyze_options) if axes else None
    return load_defaults([Path(p) for p in paths], opt.command(template), opt.context(template),
                         opt.axis_params() if axes else None, axis_ctx)


def _api(template: Callable[..., Any]) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Give an API function ``fn(options)`` the keyword signature of ``template`` (and ``config``)
    and a numpydoc parameter list from the options' help; check what it is called with, as the
    command line would, and hand ``fn`` every option's value."""
    params = [p.replace(annotation=opt.plain_annotation(p.annotation)) for p in opt.parameters(template)]
    names = {p.name for p in params}
    helps = opt.help_of(template)
    config = inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ConfigFiles)

    def decorate(fn: Callable[..., R]) -> Callable[..., R]:
        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> R:
            unknown = sorted(set(kwargs) - names - {"config"})
            if unknown:
                raise TypeError(f"{fn.__name__}() got an unexpected keyword argument {unknown[0]!r}")
            defaults = _config_defaults(template, kwargs.pop("config", None))
            return fn(opt.check(template, {**defaults, **kwargs}))

        lines = [f"{p.name} : default {p.default!r}\n    {helps[p.name]}" for p in params]
        lines.append("config : default None\n    TOML files of defaults, keys named as the options; "
                     "keyword arguments override them.")
        doc = (fn.__doc__ or "").rstrip()
        wrapper.__doc__ = doc + "\n\nParameters\n----------\n" + "\n".join(lines) + "\n"
        returns = inspect.signature(fn).return_annotation
        wrapper.__signature__ = inspect.Signature([*params, config], return_annotation=returns)  # type: ignore[attr-defined]
        return wrapper

    return decorate


@_api(opt.analyze_options)
def analyze(options: dict[str, Any]) -> AnalyzeResult:
    """Exact BPTT gradients ``||dL/dh_t||`` for t = T..1, parameter gradients, the spectrum of
    ``W_hh`` and the theory's predictions, for every trial: ``bptt analyze``."""
    from bptt_cli.run.experiment import resolve

    exp = resolve(**options)
    return AnalyzeResult(exp.run(), exp)


@_api(opt.spectrum_options)
def spectrum(options: dict[str, Any]) -> SpectrumResult:
    """Eigenvalues, singular values and non-normality of ``W_hh``, beside the random-matrix
    prediction: ``bptt spectrum``."""
    from bptt_cli.analysis.spectrum import spectrum_report
    from bptt_cli.core.network import GatedGiven, Spec
    from bptt_cli.io.weights import given_from_files
    from bptt_cli.run.experiment import source_label

    weights, gain, ensemble = options["weights"], options["gain"], options["ensemble"]
    radius, norm, hidden = options["radius"], options["norm"], options["hidden"]
    if gain is not None and (radius is not None or norm is not None):
        other = "radius" if radius is not None else "norm"
        raise BadInput(f"--gain conflicts with --{other}: give one of them")
    if weights is not None and (ensemble is not None or gain is not None):
        which = "ensemble" if ensemble is not None else "gain"
        raise BadInput(f"--{which} conflicts with --weights: W_hh comes from the file")
    layers, bidirectional = options["layers"], options["bidirectional"]
    given, fixed = given_from_files(
        weights, None, None, command="spectrum", layers=layers, bidirectional=bidirectional
    )
    for name, value in (("hidden", hidden), ("layers", layers), ("bidirectional", bidirectional)):
        if value is not None and name in fixed and fixed[name][0] != value:
            flag = f"--{name} {value}" if name != "bidirectional" else (
                "--bidirectional" if value else "--no-bidirectional")
            raise BadInput(f"{flag} conflicts with {fixed[name][1]}")
    defaults = Spec()
    size = {k: v if v is not None else fixed.get(k, (getattr(defaults, k), ""))[0]
            for k, v in (("hidden", hidden), ("layers", layers), ("bidirectional", bidirectional))}
    spec = Spec(
        **size, ensemble=ensemble or defaults.ensemble, gain=gain if gain is not None else defaults.gain,
        radius=radius, norm=norm, trials=options["trials"], seed=options["seed"], T=options["T"],
    )
    assert not isinstance(given, GatedGiven)  # spectrum reads W_hh only
    report = spectrum_report(spec, given if weights is not None else None)
    return SpectrumResult(report, {"weights": source_label(weights)})


@_api(opt.truncate_options)
def truncate(options: dict[str, Any]) -> TruncateResult:
    """Full, regular (several K) and randomized (several P) truncation side by side: cost, error,
    bias and variance of each estimate of the gradient: ``bptt truncate``."""
    from bptt_cli.analysis.analyze import analyze as run_analysis
    from bptt_cli.estimators.estimator import Estimator
    from bptt_cli.run.experiment import drawn_arrays, network_spec, source_label
    from bptt_cli.units import parse_size

    o = options
    spec, given = network_spec(
        o["T"], o["cell"], o["loss"], o["hidden"], o["inputs_dim"], o["outputs_dim"], o["ensemble"],
        o["gain"], o["radius"], o["norm"], o["bias"], o["trials"], o["seed"], o["weights"], o["inputs"],
        o["targets"], criterion=o["criterion"], h0=o["h0"],
    )
    if spec.stacked:
        both = " in both directions" if spec.bidirectional else ""
        raise BadInput(
            f"bptt truncate measures truncation on one-layer, one-direction networks; the weights have "
            f"{spec.layers} layer{'s' if spec.layers > 1 else ''}{both} (bptt analyze reads them)"
        )
    Ks = (_int_list(o["K"], "--K") if o["K"] is not None
          else [k for k in _int_list(opt.DEFAULT_K, "--K") if k < spec.T] or [1])
    probs = _float_list(o["keep_prob"], "--keep-prob")
    estimators = [Estimator(o["truncate_mode"], K=k) for k in Ks]
    estimators += [Estimator("random", keep_prob=p, draws=o["draws"]) for p in probs]
    budget = None if o["max_memory"] is None else parse_size(o["max_memory"])
    an = run_analysis(spec, given, 1.0, checkpoint=o["checkpoint"], max_memory=budget, estimators=estimators)
    files = {name: source_label(o[name]) for name in ("weights", "inputs", "targets")}
    drawn = drawn_arrays(given, spec.inputs_dim)
    settings = {
        **files, "drawn": drawn, "K": Ks, "truncate_mode": o["truncate_mode"], "keep_prob": probs,
        "draws": o["draws"], "param": o["param"], "checkpoint": o["checkpoint"], "max_memory": budget,
    }
    weights = files["weights"]
    named = drawn if any(files.values()) else None  # named when files gave the rest
    return TruncateResult(an, o["param"], settings, None if weights is None else str(weights), named)


@_api(opt.advise_options)
def advise(options: dict[str, Any]) -> AdviseResult:
    """From the diagnosis to a remedy: a truncation length, a clipping threshold, the scale of
    ``W_hh`` at the edge of chaos, an LSTM's forget bias and the horizons, each checked by
    re-running the exact analysis with it applied: ``bptt advise``."""
    import dataclasses

    from bptt_cli.run.advise import advise as run_advice
    from bptt_cli.run.advise import snapshot_weights
    from bptt_cli.run.experiment import resolve

    o = dict(options)
    settings = {k: o.pop(k) for k in ("budget", "quantile", "draws")}
    exp = resolve(**o, lyapunov=1, truncate=None, truncate_mode=None, keep_prob=None, draws=None, clip=None,
                  checkpoint="auto")
    exp = dataclasses.replace(exp, weights_source=snapshot_weights(exp.weights_source))
    return AdviseResult(run_advice(exp, **settings), exp, settings)


def _int_list(text: str, flag: str, least: int = 1) -> list[int]:
    """``1,2,5`` -> [1, 2, 5] (a repeated value once); anything else, or a value below
    ``least``, is a :class:`BadInput` naming ``flag``."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BadInput(f"{flag} must be a comma-separated list of integers, got {text!r}") from None
    if not values:
        raise BadInput(f"{flag} needs at least one value")
    for v in values:
        if v < least:
            raise BadInput(f"{flag}: {v} is below {least}")
    return list(dict.fromkeys(values))


def _float_list(text: str, flag: str) -> list[float]:
    """``0.9,0.5`` -> [0.9, 0.5] (a repeated value once); anything else is a :class:`BadInput`
    naming ``flag``."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BadInput(f"{flag} must be a comma-separated list of numbers, got {text!r}") from None
    if not values:
        raise BadInput(f"{flag} needs at least one value")
    return list(dict.fromkeys(values))


class SweepFailed(BadInput):
    """Some points of a sweep failed while they ran (bad input found only then): ``result`` holds
    the records of the others and ``result.failed`` the reasons."""

    def __init__(self, message: str, result: SweepResult) -> None:
        super().__init__(message)
        self.result = result


def sweep(
    *, workers: int | None = None, scheduler: str | None = None, output: str | Path | None = None,
    format: str | None = None, resume: bool = False, rows: str | None = None, cols: str | None = None,
    progress: bool = False, config: ConfigFiles = None, **axes: Any,
) -> SweepResult:
    """``analyze`` over a grid: ``bptt sweep``. Every keyword of :func:`analyze` is an axis, given as
    one value, a list of values, or a string in the command line's axis syntax (``"0.5:1.5:11"``,
    ``"10:10000:4:log"``, ``"tanh,lstm"``); the grid is their product.

    ``workers``: local processes (default: the CPUs; 1 runs here); ``scheduler``: a Dask scheduler's
    address instead; ``output``: also stream the records to this file as they finish (``format``
    from its suffix, ``.jsonl``, ``.json`` or ``.csv``), with ``resume`` keeping the records already
    there; ``rows``, ``cols``: the axes of the heat table the result renders; ``progress``: a
    progress bar on a terminal. Raises :class:`SweepFailed` if points failed while running.
    """
    from bptt_cli.report.heatmap import layout
    from bptt_cli.run.sweep import run_sweep, sweep_format

    unknown = sorted(set(axes) - {p.name for p in opt.axis_params().values()})
    if unknown:
        raise TypeError(f"sweep() got an unexpected keyword argument {unknown[0]!r}")
    for name in opt.IN_MEMORY:
        value: Any = axes.get(name)
        items = value.tolist() if hasattr(value, "tolist") else value  # an array of paths too
        if value is not None and not isinstance(value, str | Path) and not (
            isinstance(items, list | tuple) and all(isinstance(v, str | Path) for v in items)
        ):
            raise BadInput(f"sweep({name}=...) takes files (a path or a list of paths), not arrays or "
                           f"modules in memory: save them (numpy.savez, torch.save) or use analyze()")
    defaults = _config_defaults(opt.analyze_options, config, axes=True)
    parsed = opt.parse_axes({**defaults, **axes})
    path = None if output is None else Path(output)
    out_format = sweep_format(path, format) if path is not None else "table"
    if out_format == "table" and path is not None:
        raise BadInput("sweep(output=...) writes records: give a .jsonl, .json or .csv file")
    layout(parsed, rows, cols)  # checked before anything runs
    run = run_sweep(parsed, workers=workers, scheduler=scheduler, out_format=out_format, output=path,
                    resume=resume, progress=progress)
    result = SweepResult(run, opt.axis_defaults(), rows, cols)
    if run.n_failed:
        raise SweepFailed(f"{run.n_failed} of {run.total} points failed: {result.failed}", result)
    return result


def plot(
    result: Any, path: str | Path | None = None, rows: str | None = None, cols: str | None = None
) -> Any:
    """The figure ``--plot`` draws, for a result of :func:`analyze`, :func:`spectrum` or :func:`sweep`
    (or saved results: a path to their JSON, JSONL or CSV). With ``path`` (``.png``, ``.svg``,
    ``.pdf``) it is written there atomically; the matplotlib ``Figure`` is returned either way.
    Needs ``bptt-cli[plot]``."""
    from bptt_cli.api.results import figure
    from bptt_cli.report.plotting import check_plot, save_figure

    fmt = None if path is None else check_plot(Path(path))
    fig = figure(result, rows, cols)
    if path is not None and fmt is not None:
        save_figure(fig, Path(path), fmt)
    return fig
