"""The ``bptt`` command line: parse options, call the numerical core, render the result.

Errors are one line on stderr (``bptt: error: ...``) with exit status 2; ``--fail-on``
matches exit 1. Heavy modules (scipy, rich, the core) are imported inside the commands,
so ``bptt --help`` starts fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from typer.core import TyperGroup

from bptt_cli import __version__
from bptt_cli.errors import BadInput, ExitStatus
from bptt_cli.run.config import CONFIG_HELP, config_callback
from bptt_cli.run.sweep import SWEEP_HELP, sweep_command

if TYPE_CHECKING:
    from bptt_cli.core.gated_network import GatedGiven
    from bptt_cli.core.network import Given, Spec

Format = Literal["table", "json", "csv"]
FailOn = Literal["vanishing", "exploding", "unstable"]
ElmanCellName = Literal["identity", "tanh", "relu", "sigmoid"]
CellName = Literal["identity", "tanh", "relu", "sigmoid", "lstm", "gru"]
LossName = Literal["last", "mean"]
EnsembleName = Literal["gaussian", "orthogonal", "symmetric", "uniform", "identity"]
TruncateMode = Literal["window", "chunk"]
TruncateFormat = Literal["table", "json"]
ParamName = Literal["W_hh", "W_hx", "W_qh", "b_h", "b_q"]
SUFFIX_FORMATS: dict[str, Format] = {".json": "json", ".csv": "csv", ".txt": "table"}

# Options shared by analyze, truncate and spectrum (one declaration each)
TOpt = Annotated[int | None, typer.Option("--T", min=1, help="Sequence length (default 100, or from --inputs/--targets).")]
HiddenOpt = Annotated[int | None, typer.Option(min=1, help="Hidden size h (default 64, or from --weights).")]
InputsDimOpt = Annotated[int | None, typer.Option(min=1, help="Input size d (default 8).")]
OutputsDimOpt = Annotated[int | None, typer.Option(min=1, help="Output size q (default 8).")]
EnsembleOpt = Annotated[EnsembleName | None, typer.Option(help="Random W_hh ensemble (default gaussian).")]
GainOpt = Annotated[float | None, typer.Option(help="Scale of the ensemble: about its spectral radius (default 1).")]
RadiusOpt = Annotated[float | None, typer.Option(help="Rescale W_hh to this exact spectral radius.")]
NormOpt = Annotated[float | None, typer.Option(help="Rescale W_hh to this exact spectral norm.")]
BiasOpt = Annotated[float, typer.Option(help="Standard deviation of b_h and b_q.")]
SeedOpt = Annotated[int, typer.Option(min=0, help="Root seed; trial i uses SeedSequence(seed).spawn(trials)[i].")]
WeightsOpt = Annotated[Path | None, typer.Option(help=".npz with W_hh [W_hx W_qh b_h b_q] or PyTorch nn.RNN names; .npy for W_hh.")]
InputsOpt = Annotated[Path | None, typer.Option(help=".npy of inputs x_t, shape T x d.")]
TargetsOpt = Annotated[Path | None, typer.Option(help=".npy of targets y_t, shape T x q.")]
PLOT_HELP = "Also draw the results into this image (.png, .svg or .pdf); needs bptt-cli[plot]."
# analyze's parameters that say how and where to report, not what to compute. Every other one is
# passed to experiment.resolve, and is an axis of `bptt sweep` (whose command is built from analyze's).
NOT_AXES = ("fmt", "output", "fail_on", "config", "plot")


def _error(message: str) -> None:
    message = message.replace(": Value error, ", ": ")  # the choice checker's own prefix
    print(f"bptt: error: {message}", file=sys.stderr)


class _ReaderGone(Exception):
    """stdout's reader went away (EPIPE), carried past click's own handler (which exits 1)."""


def _quiet_stdout() -> None:
    """Point stdout at /dev/null: what is still buffered for a reader that went away is dropped,
    with no second error when Python flushes it at exit."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class _OneLineErrors(TyperGroup):
    """Run the app, turning every usage error and :class:`BadInput` into one stderr line."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError as e:  # click.main would turn it into sys.exit(1)
            raise _ReaderGone from e

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            status = super().main(*args, **kwargs)
        except BadInput as e:
            _error(str(e))
            status = ExitStatus.BAD_INPUT
        except typer.TyperException as e:  # click's usage errors
            format_message = getattr(e, "format_message", None)
            _error(format_message() if format_message else str(e))
            status = getattr(e, "exit_code", ExitStatus.BAD_INPUT)
        except (typer.Abort, KeyboardInterrupt):
            _error("interrupted")
            status = ExitStatus.INTERRUPTED
        except (BrokenPipeError, _ReaderGone):  # the reader went away: no message
            _quiet_stdout()
            status = ExitStatus.BROKEN_PIPE
        except MemoryError:  # the last resort: the budgets (--max-memory) should refuse it first
            _error("out of memory: lower T, --hidden or --trials, or --max-memory to checkpoint")
            status = ExitStatus.BAD_INPUT
        except typer.Exit as e:  # typer's own exit inside a command
            status = e.exit_code
        try:  # what is still buffered goes out now, not in Python's exit (which would exit 120)
            sys.stdout.flush()
        except BrokenPipeError:
            _quiet_stdout()
            status = ExitStatus.BROKEN_PIPE
        sys.exit(int(status) if isinstance(status, int) else 0)


app = typer.Typer(
    cls=_OneLineErrors,
    rich_markup_mode=None,
    add_completion=False,
    help="Exact BPTT gradients and eigen-spectra of recurrent networks: see gradients vanish or explode.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"bptt {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Exact BPTT gradients and eigen-spectra of recurrent networks."""
    if ctx.invoked_subcommand is None:
        # bare `bptt`: the usage, as --help gives it (click's no_args_is_help would make the
        # whole help text one multi-line "bptt: error:" message, exit 2)
        print(ctx.get_help())
        raise typer.Exit()


def _emit(text: str | Callable[[Callable[[str], object]], None], output: Path | None) -> None:
    """Write ``text`` (or what a writer function writes, piece by piece) to stdout or
    atomically to ``output``."""
    from bptt_cli.io.records import atomic_open

    write_all = (lambda write: write(text)) if isinstance(text, str) else text
    if output is None:
        write_all(sys.stdout.write)
    else:
        try:
            with atomic_open(output) as f:
                write_all(f.write)
        except OSError as e:  # permissions, a full disk, ...: the temporary file is already gone
            raise BadInput(f"cannot write {output}: {e.strerror or e}") from None


def _check_output(output: Path | None, fmt: Format | None) -> Format:
    """The format: ``--format``, else from the ``--output`` suffix, else ``table``; the file is
    checked to be writable now, before any work (:func:`bptt_cli.io.records.output_format`)."""
    from bptt_cli.io.records import output_format

    return output_format(output, fmt, SUFFIX_FORMATS)  # type: ignore[return-value]


@app.command()
def analyze(
    T: TOpt = None,
    cell: Annotated[CellName, typer.Option(help="Activation phi of the Elman cell (identity, tanh, relu, sigmoid), or a gated cell: lstm, gru (PyTorch's nn.LSTM, nn.GRU).")] = "identity",
    loss: Annotated[LossName, typer.Option(help="last: 1/2||o_T - y_T||^2; mean: average of 1/2||o_t - y_t||^2.")] = "last",
    hidden: HiddenOpt = None,
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
    tolerance: Annotated[float, typer.Option(help="Orders of magnitude of gain counted as stable.")] = 1.0,
    fmt: Annotated[Format | None, typer.Option("--format", help="table (default), json or csv.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write to this file (atomically); format from the suffix.")] = None,
    fail_on: Annotated[FailOn | None, typer.Option(help="Exit 1 if the verdict matches.")] = None,
    lyapunov: Annotated[int | None, typer.Option(min=0, help="How many Lyapunov exponents (default min(hidden, 4); 0 for none).")] = None,
    truncate: Annotated[str | None, typer.Option(metavar="K|random", help="Also measure a truncated gradient: keep K steps of every chain, or 'random' (with --keep-prob).")] = None,
    truncate_mode: Annotated[TruncateMode | None, typer.Option(help="With --truncate K. window (default): each loss term keeps its last K steps (the chapter's regular truncation); chunk: chunks of K steps, gradient detached between chunks.")] = None,
    keep_prob: Annotated[float | None, typer.Option(metavar="P", help="With --truncate random: probability that a chain continues at each step, then reweighted by 1/P (unbiased).")] = None,
    draws: Annotated[int | None, typer.Option(min=1, help="With --truncate random: independent draws (default 100).")] = None,
    clip: Annotated[float | None, typer.Option(metavar="THETA", help="Also measure global norm clipping of the gradient at THETA.")] = None,
    checkpoint: Annotated[str, typer.Option(metavar="auto|none|K", help="auto: store every state if that fits in --max-memory (default 1 GiB), else keep about sqrt(T) checkpoints; none: store every state; K: keep every K-th state (rounded up to a multiple of 256). Same numbers in every mode.")] = "auto",
    max_memory: Annotated[str | None, typer.Option(metavar="SIZE", help="Memory budget of the computation, e.g. 512M or 2G (powers of 1024); exit 2 if it cannot fit.")] = None,
    config: Annotated[list[Path] | None, typer.Option(metavar="FILE", help=CONFIG_HELP, is_eager=True, callback=config_callback)] = None,
    plot: Annotated[Path | None, typer.Option(metavar="FILE", help=PLOT_HELP)] = None,
) -> None:
    """Exact BPTT gradients ||dL/dh_t|| for t = T..1, parameter gradients and the spectrum of W_hh."""
    # Every parameter but the output ones goes to resolve_experiment, as for each point of `bptt sweep`
    # (this must stay the first statement: locals() then holds exactly the parameters).
    options = {name: value for name, value in locals().items() if name not in NOT_AXES}
    from bptt_cli.report.plotting import check_plot
    from bptt_cli.run.experiment import resolve as resolve_experiment

    out_format = _check_output(output, fmt)
    plot_format = check_plot(plot)
    exp = resolve_experiment(**options)
    an = exp.run()
    files = {**exp.report_config(an), "fail_on": fail_on}
    if plot is not None and plot_format is not None:  # first: a reader that stops early keeps it
        from bptt_cli.io.records import analysis_record, dumps
        from bptt_cli.report.plotting import write_plot

        write_plot("analyze", json.loads(dumps(analysis_record(an, files))), plot, plot_format)

    if out_format == "table":
        from bptt_cli.report.tables import render_analysis
        from bptt_cli.report.terminal import stdout_console, text_console

        source = None if weights is None else str(weights)
        drawn = exp.drawn if any(exp.files.values()) else None  # named when files gave the rest
        if output is None:
            render_analysis(an, stdout_console(), weights=source, drawn=drawn)
        else:
            console = text_console(100)
            render_analysis(an, console, weights=source, drawn=drawn)
            _emit(console.export_text(), output)
    else:
        from bptt_cli.io.records import analysis_record, write_analysis_csv, write_json

        if out_format == "json":
            record = analysis_record(an, files)

            def write_record(write: Callable[[str], object]) -> None:
                write_json(record, write)
                write("\n")

            _emit(write_record, output)
        else:
            _emit(lambda write: write_analysis_csv(an, write), output)

    if an.fails(fail_on):
        print(f"bptt: verdict {an.summary()['verdict']} matches --fail-on {fail_on}", file=sys.stderr)
        raise typer.Exit(ExitStatus.VERDICT_MATCHED)


@app.command("spectrum")
def spectrum_command(
    hidden: HiddenOpt = None,
    ensemble: EnsembleOpt = None,
    gain: GainOpt = None,
    radius: RadiusOpt = None,
    norm: NormOpt = None,
    trials: Annotated[int, typer.Option(min=1, help="Independent random draws.")] = 1,
    seed: SeedOpt = 0,
    weights: Annotated[Path | None, typer.Option(help=".npz with W_hh (or weight_hh_l0), or .npy of W_hh.")] = None,
    T: Annotated[int, typer.Option("--T", min=1, help="Horizon of the peak transient growth max_k ||W^k||_2, k <= T.")] = 100,
    fmt: Annotated[Format | None, typer.Option("--format", help="table (default), json or csv.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write to this file (atomically); format from the suffix.")] = None,
    plot: Annotated[Path | None, typer.Option(metavar="FILE", help=PLOT_HELP)] = None,
) -> None:
    """Eigenvalues, singular values and non-normality of W_hh, beside the random-matrix prediction."""
    from bptt_cli.analysis.spectrum import spectrum_report
    from bptt_cli.core.network import Spec
    from bptt_cli.io.arrays import given_from_files
    from bptt_cli.report.plotting import check_plot

    out_format = _check_output(output, fmt)
    plot_format = check_plot(plot)
    if gain is not None and (radius is not None or norm is not None):
        raise BadInput(f"--gain conflicts with --{'radius' if radius is not None else 'norm'}: give one of them")
    if weights is not None and (ensemble is not None or gain is not None):
        raise BadInput(f"--{'ensemble' if ensemble is not None else 'gain'} conflicts with --weights: W_hh comes from the file")
    given, fixed = given_from_files(weights, None, None, command="spectrum")
    if hidden is not None and "hidden" in fixed and fixed["hidden"][0] != hidden:
        raise BadInput(f"--hidden {hidden} conflicts with {fixed['hidden'][1]}")
    defaults = Spec()
    spec = Spec(
        hidden=hidden if hidden is not None else fixed.get("hidden", (defaults.hidden, ""))[0],
        ensemble=ensemble or defaults.ensemble, gain=gain if gain is not None else defaults.gain,
        radius=radius, norm=norm, trials=trials, seed=seed, T=T,
    )
    rep = spectrum_report(spec, given if weights is not None else None)
    if plot is not None and plot_format is not None:  # first: a reader that stops early keeps it
        from bptt_cli.io.records import dumps, spectrum_record
        from bptt_cli.report.plotting import write_plot

        write_plot("spectrum", json.loads(dumps(spectrum_record(rep, {"weights": weights}))), plot, plot_format)

    if out_format == "table":
        from bptt_cli.report.terminal import stdout_console, text_console
        from bptt_cli.report.theory_tables import render_spectrum

        if output is None:
            render_spectrum(rep, stdout_console())
        else:
            console = text_console(100)
            render_spectrum(rep, console)
            _emit(console.export_text(), output)
    else:
        from bptt_cli.io.records import dumps, spectrum_csv, spectrum_record

        text = dumps(spectrum_record(rep, {"weights": weights})) + "\n" if out_format == "json" else spectrum_csv(rep)
        _emit(text, output)


DEFAULT_K = "1,2,5,10,20,50,100"
DEFAULT_KEEP_PROBS = "0.9,0.7,0.5,0.3"


@app.command()
def truncate(
    T: TOpt = None,
    cell: Annotated[ElmanCellName, typer.Option(help="Activation phi of the Elman cell.")] = "identity",
    loss: Annotated[LossName, typer.Option(help="mean (default here: the chapter's objective, 1/T sum_t l_t) or last.")] = "mean",
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
    K: Annotated[str | None, typer.Option("--K", metavar="K1,K2,...", help=f"Truncation lengths of regular truncation (default {DEFAULT_K}, those below T).")] = None,
    truncate_mode: Annotated[TruncateMode, typer.Option(help="window: each loss term keeps its last K steps (the chapter's regular truncation); chunk: chunks of K steps, gradient detached between chunks.")] = "window",
    keep_prob: Annotated[str, typer.Option(metavar="P1,P2,...", help="Keep probabilities of randomized truncation.")] = DEFAULT_KEEP_PROBS,
    draws: Annotated[int, typer.Option(min=1, help="Independent draws of each randomized estimate.")] = 100,
    param: Annotated[ParamName, typer.Option(help="The parameter gradient the table compares (JSON has all).")] = "W_hh",
    checkpoint: Annotated[str, typer.Option(metavar="auto|none|K", help="As for analyze: store every state, or keep every K-th.")] = "auto",
    max_memory: Annotated[str | None, typer.Option(metavar="SIZE", help="Memory budget of the computation, e.g. 512M or 2G.")] = None,
    fmt: Annotated[TruncateFormat | None, typer.Option("--format", help="table (default) or json.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write to this file (atomically); format from the suffix (.json, .txt).")] = None,
) -> None:
    """Full, regular (several K) and randomized (several P) truncation side by side: cost, error, bias, variance."""
    from bptt_cli.analysis.analyze import analyze as run_analysis
    from bptt_cli.analysis.memory import parse_size
    from bptt_cli.estimators.truncation import Estimator

    out_format = _check_output(output, fmt)
    if out_format == "csv":
        raise BadInput("bptt truncate writes a table or JSON, not CSV")
    spec, given = _resolve_spec(
        T, cell, loss, hidden, inputs_dim, outputs_dim, ensemble, gain, radius, norm, bias, trials, seed,
        weights, inputs, targets,
    )
    Ks = _int_list(K, "--K") if K is not None else [k for k in _int_list(DEFAULT_K, "--K") if k < spec.T] or [1]
    probs = _float_list(keep_prob, "--keep-prob")
    estimators = [Estimator(truncate_mode, K=k) for k in Ks]
    estimators += [Estimator("random", keep_prob=p, draws=draws) for p in probs]
    budget = None if max_memory is None else parse_size(max_memory)
    an = run_analysis(spec, given, 1.0, checkpoint=checkpoint, max_memory=budget, estimators=estimators)
    from bptt_cli.run.experiment import drawn_arrays

    drawn = drawn_arrays(given)
    settings = {
        "weights": weights, "inputs": inputs, "targets": targets, "drawn": drawn, "K": Ks, "truncate_mode": truncate_mode,
        "keep_prob": probs, "draws": draws, "param": param, "checkpoint": checkpoint, "max_memory": budget,
    }
    if out_format == "table":
        from bptt_cli.report.terminal import stdout_console, text_console
        from bptt_cli.report.truncation_report import render_comparison

        source = None if weights is None else str(weights)
        named = drawn if weights or inputs or targets else None  # named when files gave the rest
        if output is None:
            render_comparison(an, param, stdout_console(), source, named)
        else:
            console = text_console(120)
            render_comparison(an, param, console, source, named)
            _emit(console.export_text(), output)
    else:
        from bptt_cli.io.records import dumps
        from bptt_cli.report.truncation_report import comparison_record

        _emit(dumps(comparison_record(an, param, settings)) + "\n", output)


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


def _resolve_spec(
    T: int | None, cell: str, loss: str, hidden: int | None, inputs_dim: int | None, outputs_dim: int | None,
    ensemble: str | None, gain: float | None, radius: float | None, norm: float | None, bias: float,
    trials: int, seed: int, weights: Path | None, inputs: Path | None, targets: Path | None,
    forget_bias: float = 0.0,
) -> tuple[Spec, Given | GatedGiven]:
    """The experiment's settings from the network options, and the arrays given in files
    (:func:`bptt_cli.run.experiment.network_spec`, shared with ``analyze`` and ``sweep``)."""
    from bptt_cli.run.experiment import network_spec

    return network_spec(
        T, cell, loss, hidden, inputs_dim, outputs_dim, ensemble, gain, radius, norm, bias, trials, seed,
        weights, inputs, targets, forget_bias,
    )


# The core's products are small (one h-vector times W_hh per step): BLAS threads only add
# synchronisation (3.4x the CPU time at h = 256 on 2 cores). One thread unless the user says
# otherwise; set before numpy is first imported (the commands import it lazily).
BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@app.command("plot")
def plot_command(
    results: Annotated[Path, typer.Argument(metavar="RESULTS", help="JSON of bptt analyze or spectrum (--format json), or sweep records (.jsonl, .json, .csv).")],
    plot: Annotated[Path, typer.Option(metavar="FILE", help="The image to write (.png, .svg or .pdf); needs bptt-cli[plot].")],
    rows: Annotated[str | None, typer.Option(help="Sweep records: the axis of the heat map's rows (default as bptt sweep).")] = None,
    cols: Annotated[str | None, typer.Option(help="Sweep records: the axis of the heat map's columns.")] = None,
) -> None:
    """Draw saved results into an image, without recomputing: the command is told by the record."""
    from bptt_cli.report.plotting import check_plot, load_results, write_plot

    plot_format = check_plot(plot)
    assert plot_format is not None
    kind, data = load_results(results)
    write_plot(kind, data, plot, plot_format, rows, cols)


# `bptt sweep` takes every option of analyze (but NOT_AXES) as an axis: its signature is built from analyze's.
app.command("sweep", help=SWEEP_HELP)(sweep_command(analyze, NOT_AXES))


def main() -> None:
    """Console-script entry point."""
    for var in BLAS_THREAD_VARS:
        os.environ.setdefault(var, "1")
    app()
