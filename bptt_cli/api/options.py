"""The options of the commands, declared once: names, types, defaults, checks and help.

Each command's options are the parameters of a template function below (Typer's ``Annotated``
declarations). The CLI builds its commands from them (:func:`with_options`), and the Python API
builds its functions' signatures from them and checks its keyword arguments with the very same
click types (:func:`check`), so that ``bptt.analyze(T=0)`` raises the CLI's own message.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import typer

from bptt_cli.errors import BadInput

CellName = Literal["identity", "tanh", "relu", "sigmoid", "lstm", "gru"]
CriterionName = Literal["mse", "cross-entropy"]
ElmanCellName = Literal["identity", "tanh", "relu", "sigmoid"]
LossName = Literal["last", "mean"]
EnsembleName = Literal["gaussian", "orthogonal", "symmetric", "uniform", "identity"]
TruncateMode = Literal["window", "chunk"]
ParamName = Literal["W_hh", "W_hx", "W_qh", "b_h", "b_q"]

TOpt = Annotated[int | None, typer.Option("--T", min=1, help="Sequence length (default 100, or from --inputs/--targets).")]
HiddenOpt = Annotated[int | None, typer.Option(min=1, help="Hidden size h (default 64, or from --weights).")]
InputsDimOpt = Annotated[int | None, typer.Option(min=0, help="Input size d (default 8); 0: no input, the autonomous network h_t = phi(W_hh h_{t-1} + b_h).")]
CriterionOpt = Annotated[CriterionName, typer.Option(help="mse: 1/2||o_t - y_t||^2; cross-entropy: softmax over the q outputs and the NLL of an integer class per step (torch.nn.functional.cross_entropy).")]
H0Opt = Annotated[str, typer.Option("--h0", metavar="zeros|random|FILE", help="Initial state h_0: zeros; random, N(0, 1) per unit from the trial's own stream; or a .npy of shape (h,) or (layers x directions, h) (.npz with h0 and c0 for an LSTM).")]
OutputsDimOpt = Annotated[int | None, typer.Option(min=1, help="Output size q (default 8).")]
EnsembleOpt = Annotated[EnsembleName | None, typer.Option(help="Random W_hh ensemble (default gaussian).")]
GainOpt = Annotated[float | None, typer.Option(help="Scale of the ensemble: about its spectral radius (default 1).")]
RadiusOpt = Annotated[float | None, typer.Option(help="Rescale W_hh to this exact spectral radius.")]
NormOpt = Annotated[float | None, typer.Option(help="Rescale W_hh to this exact spectral norm.")]
BiasOpt = Annotated[float, typer.Option(help="Standard deviation of b_h and b_q.")]
SeedOpt = Annotated[int, typer.Option(min=0, help="Root seed; trial i uses SeedSequence(seed).spawn(trials)[i].")]
WeightsOpt = Annotated[Path | None, typer.Option(help=".npz with W_hh [W_hx W_qh b_h b_q] (or Dive into Deep Learning's W_xh W_hh b_h W_hq b_q), or a PyTorch nn.RNN/nn.LSTM/nn.GRU state_dict (.pt or .npz, any layers and directions, with a Linear head); .npy for W_hh.")]
InputsOpt = Annotated[Path | None, typer.Option(help=".npy of inputs x_t, shape T x d.")]
TargetsOpt = Annotated[Path | None, typer.Option(help=".npy of targets y_t, shape T x q (mse), or integer classes, shape T (cross-entropy).")]


def analyze_options(
    T: TOpt = None,
    cell: Annotated[CellName, typer.Option(help="Activation phi of the Elman cell (identity, tanh, relu, sigmoid), or a gated cell: lstm, gru (PyTorch's nn.LSTM, nn.GRU).")] = "identity",
    loss: Annotated[LossName, typer.Option(help="last: the loss of step T alone; mean: the average over t = 1..T.")] = "last",
    criterion: CriterionOpt = "mse",
    hidden: HiddenOpt = None,
    layers: Annotated[int | None, typer.Option(min=1, help="Stacked layers (default 1, or from --weights).")] = None,
    bidirectional: Annotated[bool | None, typer.Option("--bidirectional/--no-bidirectional", help="Both directions in every layer, as PyTorch's bidirectional=True (default: one, or from --weights).")] = None,
    inputs_dim: InputsDimOpt = None,
    outputs_dim: OutputsDimOpt = None,
    ensemble: EnsembleOpt = None,
    gain: GainOpt = None,
    radius: RadiusOpt = None,
    norm: NormOpt = None,
    bias: BiasOpt = 0.0,
    forget_bias: Annotated[float, typer.Option(help="lstm: added to the forget-gate rows of bias_ih_l0 (ignored by the other cells).")] = 0.0,
    trials: Annotated[int, typer.Option(min=1, help="Independent random draws.")] = 1,
    seed: SeedOpt = 0,
    weights: WeightsOpt = None,
    inputs: InputsOpt = None,
    targets: TargetsOpt = None,
    h0: H0Opt = "zeros",
    tolerance: Annotated[float, typer.Option(help="Orders of magnitude of gain counted as stable.")] = 1.0,
    theory: Annotated[bool, typer.Option("--theory/--no-theory", help="The theory beside the measurement: rates, mean field, Lyapunov exponents, horizons, effective memory, non-normality, alignment. --no-theory leaves it out (it often costs more than the gradients); the gradients, spectrum and verdict are the same.")] = True,
    lyapunov: Annotated[int | None, typer.Option(min=0, help="How many Lyapunov exponents (default min(hidden, 4); 0 for none).")] = None,
    truncate: Annotated[str | None, typer.Option(metavar="K|random", help="Also measure a truncated gradient: keep K steps of every chain, or 'random' (with --keep-prob).")] = None,
    truncate_mode: Annotated[TruncateMode | None, typer.Option(help="With --truncate K. window (default): each loss term keeps its last K steps (the chapter's regular truncation); chunk: chunks of K steps, gradient detached between chunks.")] = None,
    keep_prob: Annotated[float | None, typer.Option(metavar="P", help="With --truncate random: probability that a chain continues at each step, then reweighted by 1/P (unbiased).")] = None,
    draws: Annotated[int | None, typer.Option(min=1, help="With --truncate random: independent draws (default 100).")] = None,
    clip: Annotated[float | None, typer.Option(metavar="THETA", help="Also measure global norm clipping of the gradient at THETA.")] = None,
    checkpoint: Annotated[str, typer.Option(metavar="auto|none|K", help="auto: store every state if that fits in --max-memory (default 1 GiB), else keep about sqrt(T) checkpoints; none: store every state; K: keep every K-th state (rounded up to a multiple of 256). Same numbers in every mode.")] = "auto",
    max_memory: Annotated[str | None, typer.Option(metavar="SIZE", help="Memory budget of the computation, e.g. 512M or 2G (powers of 1024); exit 2 if it cannot fit.")] = None,
    eigenvalues: Annotated[str, typer.Option(metavar="all|none|K", help="Eigenvalues of W_hh (each layer's) listed per trial in the JSON: all (default), none, or the K of largest modulus. All are computed either way (the Henrici departure needs every one).")] = "all",
) -> None:
    """What ``bptt analyze`` computes: each option is a keyword of :func:`bptt_cli.analyze` and an
    axis of ``bptt sweep``."""


StepsOpt = Annotated[int, typer.Option(metavar="K", min=1, help="JSON and CSV: only every K-th step of the per-step arrays (t = T, T-K, ...).")]
SummaryOnlyOpt = Annotated[bool, typer.Option(help="JSON: config and summary only, no per-trial records.")]


def record_options(steps: StepsOpt = 1, summary_only: SummaryOnlyOpt = False) -> None:
    """How much of ``bptt analyze``'s record is written: options of ``bptt analyze`` (not axes of
    ``bptt sweep``, whose records hold summaries) and keywords of ``AnalyzeResult.to_dict``,
    ``record`` and ``write``."""


def spectrum_options(
    hidden: HiddenOpt = None,
    layers: Annotated[int | None, typer.Option(min=1, help="Stacked layers, each with its own W_hh (default 1, or from --weights).")] = None,
    bidirectional: Annotated[bool | None, typer.Option("--bidirectional/--no-bidirectional", help="Both directions in every layer (default: one, or from --weights).")] = None,
    ensemble: EnsembleOpt = None,
    gain: GainOpt = None,
    radius: RadiusOpt = None,
    norm: NormOpt = None,
    trials: Annotated[int, typer.Option(min=1, help="Independent random draws.")] = 1,
    seed: SeedOpt = 0,
    weights: Annotated[Path | None, typer.Option(help=".npz with W_hh (or weight_hh_l0, of every layer of an nn.RNN state_dict), or .npy of W_hh.")] = None,
    T: Annotated[int, typer.Option("--T", min=1, help="Horizon of the peak transient growth max_k ||W^k||_2, k <= T.")] = 100,
) -> None:
    """What ``bptt spectrum`` computes (:func:`bptt_cli.spectrum`)."""


DEFAULT_K = "1,2,5,10,20,50,100"
DEFAULT_KEEP_PROBS = "0.9,0.7,0.5,0.3"


def truncate_options(
    T: TOpt = None,
    cell: Annotated[ElmanCellName, typer.Option(help="Activation phi of the Elman cell.")] = "identity",
    loss: Annotated[LossName, typer.Option(help="mean (default here: the chapter's objective, 1/T sum_t l_t) or last.")] = "mean",
    criterion: CriterionOpt = "mse",
    hidden: HiddenOpt = None,
    inputs_dim: InputsDimOpt = None,
    outputs_dim: OutputsDimOpt = None,
    ensemble: EnsembleOpt = None,
    gain: GainOpt = None,
    radius: RadiusOpt = None,
    norm: NormOpt = None,
    bias: BiasOpt = 0.0,
    trials: Annotated[int, typer.Option(min=1, help="Independent random draws of the network (medians in the table).")] = 1,
    seed: SeedOpt = 0,
    weights: WeightsOpt = None,
    inputs: InputsOpt = None,
    targets: TargetsOpt = None,
    h0: H0Opt = "zeros",
    K: Annotated[str | None, typer.Option("--K", metavar="K1,K2,...", help=f"Truncation lengths of regular truncation (default {DEFAULT_K}, those below T).")] = None,
    truncate_mode: Annotated[TruncateMode, typer.Option(help="window: each loss term keeps its last K steps (the chapter's regular truncation); chunk: chunks of K steps, gradient detached between chunks.")] = "window",
    keep_prob: Annotated[str, typer.Option(metavar="P1,P2,...", help="Keep probabilities of randomized truncation.")] = DEFAULT_KEEP_PROBS,
    draws: Annotated[int, typer.Option(min=1, help="Independent draws of each randomized estimate.")] = 100,
    param: Annotated[ParamName, typer.Option(help="The parameter gradient the table compares (JSON has all).")] = "W_hh",
    checkpoint: Annotated[str, typer.Option(metavar="auto|none|K", help="As for analyze: store every state, or keep every K-th.")] = "auto",
    max_memory: Annotated[str | None, typer.Option(metavar="SIZE", help="Memory budget of the computation, e.g. 512M or 2G.")] = None,
) -> None:
    """What ``bptt truncate`` computes (:func:`bptt_cli.truncate`)."""


SweepFormat = Literal["table", "jsonl", "json", "csv"]
FailOn = Literal["vanishing", "exploding", "unstable"]


def advise_options(
    T: TOpt = None,
    cell: Annotated[CellName, typer.Option(help="Activation phi of the Elman cell (identity, tanh, relu, sigmoid), or a gated cell: lstm, gru.")] = "identity",
    loss: Annotated[LossName, typer.Option(help="last: the loss of step T alone; mean: the average over t = 1..T.")] = "last",
    criterion: CriterionOpt = "mse",
    hidden: HiddenOpt = None,
    layers: Annotated[int | None, typer.Option(min=1, help="Stacked layers (default 1, or from --weights).")] = None,
    bidirectional: Annotated[bool | None, typer.Option("--bidirectional/--no-bidirectional", help="Both directions in every layer (default: one, or from --weights).")] = None,
    inputs_dim: InputsDimOpt = None,
    outputs_dim: OutputsDimOpt = None,
    ensemble: EnsembleOpt = None,
    gain: GainOpt = None,
    radius: RadiusOpt = None,
    norm: NormOpt = None,
    bias: BiasOpt = 0.0,
    forget_bias: Annotated[float, typer.Option(help="lstm: added to the forget-gate rows of bias_ih_l0 (the advice starts from it).")] = 0.0,
    trials: Annotated[int, typer.Option(min=1, help="Independent random draws (medians).")] = 1,
    seed: SeedOpt = 0,
    weights: WeightsOpt = None,
    inputs: InputsOpt = None,
    targets: TargetsOpt = None,
    h0: H0Opt = "zeros",
    tolerance: Annotated[float, typer.Option(help="Orders of magnitude of gain counted as stable.")] = 1.0,
    budget: Annotated[float, typer.Option(help="Relative error of the gradient of W_hh that truncation may make, in (0, 1).")] = 0.05,
    quantile: Annotated[float, typer.Option(help="Quantile of the gradient norm over --draws sequences taken as the clipping threshold, in (0, 1).")] = 0.9,
    draws: Annotated[int, typer.Option(min=2, help="Input sequences of the clipping statistics, and draws of each randomized truncation.")] = 32,
    max_memory: Annotated[str | None, typer.Option(metavar="SIZE", help="Memory budget of each analysis, e.g. 512M or 2G.")] = None,
) -> None:
    """What ``bptt advise`` measures (:func:`bptt_cli.advise`)."""


def sweep_options(
    workers: Annotated[int | None, typer.Option(min=1, help="Local worker processes (default: the number of CPUs); 1 runs in this process.")] = None,
    scheduler: Annotated[str | None, typer.Option(envvar="BPTT_SCHEDULER", help="Run the points on this Dask scheduler (tcp://HOST:8786) instead; needs bptt-cli[dask].")] = None,
    fmt: Annotated[SweepFormat | None, typer.Option("--format", help="table (heat tables, the default), or records as jsonl, json or csv.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write the records here as points finish; format from the suffix (.jsonl .json .csv; .txt: the tables).")] = None,
    resume: Annotated[bool, typer.Option(help="Keep the records already in --output and run only the points missing there.")] = False,
    fail_on: Annotated[FailOn | None, typer.Option(help="Exit 1 if any point's verdict matches (the points are listed on stderr).")] = None,
    rows: Annotated[str | None, typer.Option(help="Axis for the heat table's rows (default: radius, gain or norm if swept).")] = None,
    cols: Annotated[str | None, typer.Option(help="Axis for the heat table's columns (default: T if swept).")] = None,
    plot: Annotated[Path | None, typer.Option(metavar="FILE", help="Also draw the phase diagram (and the gain against T) into this image (.png, .svg or .pdf); needs bptt-cli[plot].")] = None,
) -> None:
    """``bptt sweep``'s own options (besides one axis per option of ``analyze``)."""


def parameters(template: Callable[..., Any]) -> list[inspect.Parameter]:
    """The parameters of a template, keyword-only, as Typer reads them."""
    params = inspect.signature(template, eval_str=True).parameters.values()
    return [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params]


@functools.cache
def command(template: Callable[..., Any]) -> Any:
    """The click command Typer builds from ``template`` (its options, their types and checks)."""
    app = typer.Typer(add_completion=False)
    app.command(name=template.__name__.removesuffix("_options"))(template)
    return typer.main.get_command(app)


def context(template: Callable[..., Any]) -> typer.Context:
    """A click context of ``template``'s command (for checking values as the CLI does)."""
    cmd = command(template)
    return typer.Context(cmd, info_name=cmd.name)


def convert(param: Any, value: Any, ctx: typer.Context, flag: str | None = None) -> Any:
    """``value`` checked and converted by ``param``, as the command line would: :class:`BadInput`
    with click's own message (``Invalid value for '--T': 0 is not in the range x>=1.``)."""
    try:
        return param.process_value(ctx, value)
    except typer.BadParameter as e:
        if flag is not None:
            raise BadInput(f"{flag}: {e.message}") from None
        raise BadInput(e.format_message()) from None


IN_MEMORY = ("weights", "inputs", "targets", "h0")  # the API also takes arrays (and modules) for these


def _in_memory(name: str, value: Any) -> Any:
    """What the API takes in place of a file for ``name``: for ``weights`` arrays, a mapping of them
    or a module (the loaders check them); for ``inputs``, ``targets`` and ``h0`` an array or
    anything numpy reads as one (nested lists, a tensor). Numbers (an int would be read as a file
    descriptor) and other objects are :class:`BadInput`."""
    import numbers

    import numpy as np

    if name == "weights" and not isinstance(value, list | tuple):
        return value  # its loader says what it takes (bptt_cli.io.weights.read_source)
    if isinstance(value, numbers.Number | np.generic):
        raise BadInput(f"{name} takes a file path or an array, got {type(value).__name__} {value!r}")
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, list | tuple) or hasattr(value, "__array__"):
        try:
            return np.asarray(value.detach() if hasattr(value, "detach") else value)
        except (ValueError, TypeError, RuntimeError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise BadInput(f"{name}: not an array: {reason}") from None
    raise BadInput(f"{name} takes a file path or an array, got {type(value).__name__}")


def _boolean(param: Any, value: Any) -> Any:
    """A numpy bool for a true/false option as the Python bool (click reads only ``bool`` and text);
    an int, or anything else, :class:`BadInput` naming the option."""
    import numpy as np

    if getattr(getattr(param, "type", None), "name", None) != "boolean" or isinstance(value, str | bool):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    from bptt_cli.run.grid import flag_of

    raise BadInput(f"Invalid value for '{flag_of(param)}': {value!r} is not True or False.")


def _python(param: Any, value: Any) -> Any:
    """A value from Python for ``param``, checked as the command line would check its text: no
    fraction or bool for an integer, a bool (or numpy bool) for a true/false option."""
    if isinstance(value, str):
        return value
    _integral(param, value)
    return _boolean(param, value)


def _integral(param: Any, value: Any) -> None:
    """An integer option given a bool or a float with a fraction from Python: :class:`BadInput`, as
    the command line refuses ``--T 5.5`` (click's own check would truncate it to 5)."""
    import numbers

    if getattr(getattr(param, "type", None), "name", None) not in ("integer", "int range", "integer range"):
        return
    if isinstance(value, bool) or (
        isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral)
        and not float(value).is_integer()
    ):
        from bptt_cli.run.grid import flag_of

        raise BadInput(f"Invalid value for '{flag_of(param)}': {value!r} is not a valid integer.")


def check(template: Callable[..., Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """Every option of ``template``: the given ``values`` checked and converted as the CLI does,
    the others at their defaults. Arrays and modules given for ``weights``, ``inputs`` or
    ``targets`` pass as they are (the loaders check them)."""
    ctx = context(template)
    out = {}
    for param in command(template).params:
        name = param.name
        if name not in values:
            out[name] = param.default
            continue
        value = values[name]
        if value is None:
            out[name] = value
        elif name in IN_MEMORY and not isinstance(value, str | Path):
            out[name] = _in_memory(name, value)
        else:
            out[name] = convert(param, _python(param, value), ctx)
    return out


def plain_annotation(annotation: Any) -> Any:
    """``Annotated[X, typer.Option(...)]`` -> ``X``."""
    return get_args(annotation)[0] if get_origin(annotation) is Annotated else annotation


def help_of(template: Callable[..., Any]) -> dict[str, str]:
    """Each option's help text, by parameter name."""
    out = {}
    for p in parameters(template):
        info = next((a for a in get_args(p.annotation)[1:] if isinstance(a, typer.models.OptionInfo)), None)
        out[p.name] = (info.help or "") if info is not None else ""
    return out


def with_options(template: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A command whose options are ``template``'s (handed to it as one dict, ``options``) and its own.

    ``@with_options(analyze_options) def analyze(options, fmt=..., output=...)``: Typer sees
    every option of the template and of the function; the function gets the template's values
    together in ``options``, in their order.
    """
    shared = parameters(template)
    names = [p.name for p in shared]

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        own = [p for p in parameters(fn) if p.name != "options"]
        clash = set(names) & {p.name for p in own}
        if clash:
            raise RuntimeError(f"{fn.__name__}: options {sorted(clash)} are declared twice")

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            options = {name: kwargs.pop(name) for name in names}
            return fn(options, **kwargs)

        wrapper.__signature__ = inspect.Signature(shared + own)  # type: ignore[attr-defined]
        return wrapper

    return decorate


# -- sweeps: one axis per option of analyze -------------------------------------------------------

SWEEP_HELP = (
    "Run analyze over a grid: every analyze option takes a comma list or a range START:STOP:COUNT[:log] "
    "and the grid is their product. One record per point, written as each point finishes."
)


def axis_params() -> dict[str, Any]:
    """The click parameters of ``analyze``'s options, by name: each is an axis of ``bptt sweep``."""
    return {p.name: p for p in command(analyze_options).params}


def axis_defaults() -> dict[str, Any]:
    """Each axis's value when it is not swept: ``analyze``'s default."""
    from bptt_cli.io.points import plain

    return {name: plain(p.default) for name, p in axis_params().items()}


def _axis_help(param: Any) -> str:
    from bptt_cli.io.points import plain
    from bptt_cli.run.grid import value_kind

    kind = value_kind(param)
    how = "list or START:STOP:COUNT[:log]" if kind in (int, float) else "list"
    default = plain(param.default)
    shown = "" if default is None else f" Default {str(default).lower() if isinstance(default, bool) else default}."
    return f"{(param.help or '').rstrip('.')}. Axis: a value or a comma {how}.{shown}"


def axis_parameters() -> list[inspect.Parameter]:
    """The axis options of ``bptt sweep``: one text option per option of ``analyze``, same flag."""
    from bptt_cli.run.grid import flag_of

    out = []
    for p in axis_params().values():
        if p.multiple or p.nargs != 1:
            raise RuntimeError(f"analyze option {p.name} takes several values: it cannot be a sweep axis")
        info = typer.Option(flag_of(p), help=_axis_help(p), metavar="VALUES", show_default=False)
        out.append(inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                     annotation=Annotated[str | None, info]))
    return out


def parse_axes(values: Mapping[str, Any]) -> list[Any]:
    """Every axis (:class:`~bptt_cli.io.points.Axis`, in ``analyze``'s order) from its value: ``None``
    (the default, not swept), a string in the axis syntax, a list of values, or one value. Each value
    is checked by ``analyze``'s own option type (:class:`BadInput` naming the flag)."""
    from bptt_cli.io.points import Axis, cell_text, plain
    from bptt_cli.run.grid import convert as convert_axis
    from bptt_cli.run.grid import flag_of, parse_axis, unique

    ctx = context(analyze_options)
    axes = []
    for name, p in axis_params().items():
        value = values.get(name)
        if value is None:
            parsed: tuple[Any, ...] = (plain(p.default),)
        elif isinstance(value, str):
            parsed = parse_axis(value, p, ctx)
        elif isinstance(value, list | tuple | range) or hasattr(value, "tolist"):
            items = value.tolist() if hasattr(value, "tolist") else list(value)
            if not items:
                raise BadInput(f"{flag_of(p)}: empty axis (give a value, a list or a range)")
            parsed = unique(convert_axis(p, _python(p, v), ctx, flag_of(p), cell_text(v)) for v in items)
        else:
            parsed = (convert_axis(p, _python(p, value), ctx, flag_of(p)),)
        axes.append(Axis(name, flag_of(p), parsed))
    return axes


def markdown_table(template: Callable[..., Any]) -> str:
    """The options of ``template`` as a Markdown table (keyword, default, help): what docs/api.md
    shows, kept equal to the declarations by ``tests/test_api.py``."""
    lines = ["| keyword | default | what it sets |", "| --- | --- | --- |"]
    helps = help_of(template)
    for p in parameters(template):
        text = helps[p.name].replace("|", "\\|")
        lines.append(f"| `{p.name}` | `{p.default!r}` | {text} |")
    return "\n".join(lines)
