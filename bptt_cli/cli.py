"""The ``bptt`` command line: parse the options, call the Python API (:mod:`bptt_cli.api`), render.

Errors are one line on stderr (``bptt: error: ...``) with exit status 2; ``--fail-on``
matches exit 1. Heavy modules (numpy, scipy, rich, the core) are imported inside the commands,
so ``bptt --help`` starts fast. The options are declared once, in :mod:`bptt_cli.api.options`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from typer.core import TyperGroup

from bptt_cli import __version__
from bptt_cli.api import options as opt
from bptt_cli.errors import BadInput, ExitStatus, one_line
from bptt_cli.run.config import CONFIG_HELP, config_callback, make_config_callback

Format = Literal["table", "json", "csv"]
TruncateFormat = Literal["table", "json"]
SUFFIX_FORMATS: dict[str, Format] = {".json": "json", ".csv": "csv", ".txt": "table"}
PLOT_HELP = "Also draw the results into this image (.png, .svg or .pdf); needs bptt-cli[plot]."

FormatOpt = Annotated[Format | None, typer.Option("--format", help="table (default), json or csv.")]
OutputOpt = Annotated[Path | None, typer.Option(help="Write to this file (atomically; a FIFO or device in place); format from the suffix.")]
FailOnOpt = Annotated[opt.FailOn | None, typer.Option(help="Exit 1 if the verdict matches.")]
ConfigOpt = Annotated[list[Path] | None, typer.Option(metavar="FILE", help=CONFIG_HELP, is_eager=True, callback=config_callback)]
PlotOpt = Annotated[Path | None, typer.Option(metavar="FILE", help=PLOT_HELP)]
# analyze's options that say how and where to report, not what to compute: every other one is an
# option of opt.analyze_options, passed to the API, and an axis of `bptt sweep`
NOT_AXES = ("fmt", "output", "fail_on", "config", "plot", "layer", "steps", "summary_only")
LayerOpt = Annotated[str, typer.Option("--layer", metavar="K[:reverse]", help="The layer whose step table and chart the tables show: 0 (nearest the input, the default), 1, ...; K:reverse for its reverse direction. JSON has every layer.")]


def _error(message: str) -> None:
    message = message.replace(": Value error, ", ": ")  # the choice checker's own prefix
    print(f"bptt: error: {one_line(message)}", file=sys.stderr)


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
        except OSError as e:  # the files bptt writes name themselves (BadInput): this is stdout
            _quiet_stdout()
            _error(f"cannot write standard output: {e.strerror or e}")
            status = ExitStatus.BAD_INPUT
        except typer.Exit as e:  # typer's own exit inside a command
            status = e.exit_code
        try:  # what is still buffered goes out now, not in Python's exit (which would exit 120)
            sys.stdout.flush()
        except BrokenPipeError:
            _quiet_stdout()
            status = ExitStatus.BROKEN_PIPE
        except OSError as e:  # a full disk behind stdout
            _quiet_stdout()
            _error(f"cannot write standard output: {e.strerror or e}")
            status = ExitStatus.BAD_INPUT
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
    """Write ``text`` (or what a writer function writes, piece by piece) to stdout or to
    ``output`` (atomically if it is a file: :func:`bptt_cli.io.output.open_output`)."""
    from bptt_cli.io.output import open_output

    write_all = (lambda write: write(text)) if isinstance(text, str) else text
    if output is None:
        write_all(sys.stdout.write)
    else:
        with open_output(output) as f:
            write_all(f.write)


def _check_output(output: Path | None, fmt: str | None) -> str:
    """The format: ``--format``, else from the ``--output`` suffix, else ``table``; the file is
    checked to be writable now, before any work (:func:`bptt_cli.io.output.output_format`)."""
    from bptt_cli.io.output import output_format

    return output_format(output, fmt, SUFFIX_FORMATS)


def _render(
    result: Any, fmt: str, output: Path | None, width: int = 100, view: dict[str, Any] | None = None,
    **extra: Any,
) -> None:
    """A result to stdout or ``output``: its tables (``table``; ``view``: what they show, e.g. the
    layer), or its ``json``/``csv`` text."""
    if fmt == "table":
        if output is None:
            from bptt_cli.report.terminal import stdout_console

            result.render(stdout_console(), **(view or {}))
        else:
            _emit(result.text(width, **(view or {})), output)
    else:  # extra: what the record says of the command line (analyze's config.fail_on)
        _emit(lambda w: result.write(fmt, w, **extra), output)


def _plot(result: Any, plot: Path | None, fmt: str | None, rows: str | None = None, cols: str | None = None) -> None:
    """Draw ``result`` into the ``--plot`` file (checked before the computation, as ``fmt``)."""
    if plot is not None and fmt is not None:
        from bptt_cli.api.results import figure
        from bptt_cli.report.plotting import save_figure

        save_figure(figure(result, rows, cols), plot, fmt)


@app.command()
@opt.with_options(opt.analyze_options)
def analyze(
    options: dict[str, Any],
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    fail_on: FailOnOpt = None,
    config: ConfigOpt = None,
    plot: PlotOpt = None,
    layer: LayerOpt = "0",
    steps: opt.StepsOpt = 1,
    summary_only: opt.SummaryOnlyOpt = False,
) -> None:
    """Exact BPTT gradients ||dL/dh_t|| for t = T..1, parameter gradients and the spectrum of W_hh."""
    from bptt_cli.api.commands import analyze as run
    from bptt_cli.report.plotting import check_plot

    out_format = _check_output(output, fmt)
    if summary_only and out_format != "json":
        raise BadInput("--summary-only is for --format json (the CSV has one row per step)")
    plot_format = check_plot(plot)
    view = _layer(layer)
    result = run(**options)
    result.check_layer(**view)  # before anything is written, whatever the format
    _plot(result, plot, plot_format)  # first: a reader that stops early keeps it
    extra = {} if out_format == "table" else {"steps": steps, "summary_only": summary_only}
    _render(result, out_format, output, view=view, fail_on=fail_on, **extra)
    if result.fails(fail_on):
        print(f"bptt: verdict {result.analysis.matched(fail_on)} matches --fail-on {fail_on}", file=sys.stderr)
        raise typer.Exit(ExitStatus.VERDICT_MATCHED)


def _layer(text: str) -> dict[str, int]:
    """``--layer K`` or ``K:reverse`` as ``{"layer": K, "direction": 0 | 1}``."""
    number, _, side = text.strip().partition(":")
    if not number.strip().isdigit() or side.strip().lower() not in ("", "forward", "reverse"):
        raise BadInput(f"--layer {text!r}: give a layer number K (0 is nearest the input), or K:reverse")
    return {"layer": int(number), "direction": int(side.strip().lower() == "reverse")}


@app.command("spectrum")
@opt.with_options(opt.spectrum_options)
def spectrum_command(options: dict[str, Any], fmt: FormatOpt = None, output: OutputOpt = None, plot: PlotOpt = None) -> None:
    """Eigenvalues, singular values and non-normality of W_hh, beside the random-matrix prediction."""
    from bptt_cli.api.commands import spectrum as run
    from bptt_cli.report.plotting import check_plot

    out_format = _check_output(output, fmt)
    plot_format = check_plot(plot)
    result = run(**options)
    _plot(result, plot, plot_format)  # first: a reader that stops early keeps it
    _render(result, out_format, output)


@app.command()
@opt.with_options(opt.truncate_options)
def truncate(
    options: dict[str, Any],
    fmt: Annotated[TruncateFormat | None, typer.Option("--format", help="table (default) or json.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write to this file (atomically); format from the suffix (.json, .txt).")] = None,
) -> None:
    """Full, regular (several K) and randomized (several P) truncation side by side: cost, error, bias, variance."""
    from bptt_cli.api.commands import truncate as run

    out_format = _check_output(output, fmt)
    if out_format == "csv":
        raise BadInput("bptt truncate writes a table or JSON, not CSV")
    _render(run(**options), out_format, output, width=120)


@app.command()
@opt.with_options(opt.advise_options)
def advise(
    options: dict[str, Any],
    fmt: Annotated[TruncateFormat | None, typer.Option("--format", help="table (default) or json.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write to this file (atomically); format from the suffix (.json, .txt).")] = None,
    apply: Annotated[Path | None, typer.Option(metavar="FILE", help="Write the network with the recommended scale of W_hh or forget bias applied to FILE (.npz, or .pt with torch): the --weights file's arrays, or trial 0's drawn ones.")] = None,
    fail_on: FailOnOpt = None,
    config: ConfigOpt = None,
) -> None:
    """From the diagnosis to a remedy: truncation length, clipping threshold, initial scale, forget bias, horizons; each checked by measurement."""
    from bptt_cli.api.commands import advise as run

    out_format = _check_output(output, fmt)
    if out_format == "csv":
        raise BadInput("bptt advise writes a table or JSON, not CSV")
    if apply is not None:
        from bptt_cli.io.output import check_writable

        if apply.suffix.lower() not in (".npz", ".pt"):
            raise BadInput(f"--apply {apply}: the network is written as .npz or .pt")
        weights = options.get("weights")
        if weights is not None and apply.exists() and Path(weights).exists() and os.path.samefile(weights, apply):
            raise BadInput(f"--apply {apply} is the --weights file: write the remedied network elsewhere")
        check_writable(apply)
    result = run(**options)
    if apply is not None:
        result.apply(apply)
    _render(result, out_format, output, width=120)
    if result.fails(fail_on):
        print(f"bptt: verdict {result.verdict} matches --fail-on {fail_on}", file=sys.stderr)
        raise typer.Exit(ExitStatus.VERDICT_MATCHED)


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
    from bptt_cli.api.commands import plot as draw

    draw(results, plot, rows, cols)


def _sweep_command(options: dict[str, Any], **sweep_options: Any) -> None:
    """Run analyze over a grid (see :data:`bptt_cli.api.options.SWEEP_HELP`)."""
    from bptt_cli.analysis.result import FAIL_ON
    from bptt_cli.api.results import SweepResult
    from bptt_cli.io.output import target
    from bptt_cli.io.points import describe
    from bptt_cli.report.heatmap import layout
    from bptt_cli.report.plotting import check_plot
    from bptt_cli.report.terminal import stdout_console
    from bptt_cli.run.stream import EAGER_POINTS
    from bptt_cli.run.sweep import SweepInterrupted, grid_size, run_sweep, streams, sweep_format

    sweep_options.pop("config", None)
    output, fail_on, plot = sweep_options["output"], sweep_options["fail_on"], sweep_options["plot"]
    rows, cols = sweep_options["rows"], sweep_options["cols"]
    axes = opt.parse_axes(options)
    out_format = sweep_format(output, sweep_options["fmt"])
    dest = None if output is None else target(output)
    resumable = dest is not None and out_format != "table" and not dest.direct
    records_to_stdout = out_format != "table" and (dest is None or dest.fd == 1)  # --output /dev/stdout
    layout(axes, rows, cols)  # every check before anything runs or is written
    plot_format = check_plot(plot)
    if plot is not None and streams(axes):
        raise BadInput(f"--plot draws from every record, kept for grids of at most {EAGER_POINTS} points; "
                       f"this one has {grid_size(axes)}: draw the records afterwards (bptt plot FILE --plot {plot})")
    try:
        run = run_sweep(axes, workers=sweep_options["workers"], scheduler=sweep_options["scheduler"],
                        out_format=out_format, output=output, resume=sweep_options["resume"], fail_on=fail_on)
    except SweepInterrupted as e:
        if resumable:
            print(one_line(f"bptt: {e.done} of {e.total} points are in {output}; run again with --resume to finish"),
                  file=sys.stderr)
        raise KeyboardInterrupt from None
    result = SweepResult(run, opt.axis_defaults(), rows, cols)
    if run.streamed:
        if output is not None and not records_to_stdout:
            kept = f" ({run.done_before} were there already)" if run.done_before else ""
            print(one_line(f"bptt sweep: {run.total} points; {run.written} records written to {output}{kept}"))
    elif not records_to_stdout:  # the tables (records streamed to stdout: none)
        if output is not None and out_format == "table":
            _emit(result.text(120), output)
        else:
            console = stdout_console()
            if not console.is_terminal:
                console = stdout_console(width=max(console.width, 120))
            result.render(console)
    if run.records:
        _plot(result, plot, plot_format, rows, cols)
    matched = result.fails(fail_on)
    for record in matched:
        s = record["summary"]
        gain = s["gain_log10"]
        print(one_line(f"bptt: {describe(record['point'], axes)}: {s['verdict']} (median gain_log10 "
                       f"{'null' if gain is None else format(gain, '+.2f')}) matches --fail-on {fail_on}"),
              file=sys.stderr)
    if run.matched_count > len(matched):
        print(f"bptt: ... and {run.matched_count - len(matched)} more points match --fail-on {fail_on}", file=sys.stderr)
    if run.n_failed:
        failures = run.failures()
        for point, reason in failures:
            _error(f"{describe(point, axes)}: {reason}")
        if run.n_failed > len(failures):
            _error(f"... and {run.n_failed - len(failures)} more points failed")
        where = "; --resume with the same --output runs only them" if resumable else ""
        raise BadInput(f"{run.n_failed} of {run.total} points failed (listed above) and have no record{where}")
    if matched:
        raise typer.Exit(ExitStatus.VERDICT_MATCHED)
    assert set(FAIL_ON) >= {fail_on} - {None}


def _sweep() -> Callable[..., None]:
    """``bptt sweep``: one axis option per option of analyze, sweep's own options, ``--config``."""
    import inspect

    axes = opt.axis_parameters()
    names = [p.name for p in axes]
    config = typer.Option(metavar="FILE", help=CONFIG_HELP + " Lists are axes.", is_eager=True,
                          callback=make_config_callback(opt.axis_params(), opt.context(opt.analyze_options)))
    params = [*axes, *opt.parameters(opt.sweep_options),
              inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None,
                                annotation=Annotated[list[Path] | None, config])]

    def sweep(**values: Any) -> None:
        _sweep_command({name: values.pop(name) for name in names}, **values)

    sweep.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    sweep.__doc__ = opt.SWEEP_HELP
    return sweep


app.command("sweep", help=opt.SWEEP_HELP)(_sweep())


def _app_for(argv: list[str]) -> typer.Typer:
    """The app that runs ``bptt ARGV``: for ``bptt COMMAND ...`` the app with that command alone,
    else (no command, ``--help``, ``--version``, an unknown name) the whole app.

    Typer builds every command's click parameters before it parses anything (10 ms of every run,
    most of it for the other commands' options); with one command registered the run is the same,
    its usage errors and help included (they are the command's own).
    """
    import copy

    name = argv[0] if argv else None
    infos = [info for info in app.registered_commands
             if (info.name or typer.main.get_command_name(info.callback.__name__)) == name]  # type: ignore[union-attr]
    if not infos:
        return app
    one = copy.copy(app)
    one.registered_commands = infos
    return one


def main() -> None:
    """Console-script entry point."""
    for var in BLAS_THREAD_VARS:
        os.environ.setdefault(var, "1")
    _app_for(sys.argv[1:])()
