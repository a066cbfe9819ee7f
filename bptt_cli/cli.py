"""The ``bptt`` command line: parse options, call the numerical core, render the result.

Errors are one line on stderr (``bptt: error: ...``) with exit status 2; ``--fail-on``
matches exit 1. Heavy modules (scipy, rich, the core) are imported inside the commands,
so ``bptt --help`` starts fast.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from typer.core import TyperGroup

from . import __version__
from .configs import CONFIG_HELP, config_callback
from .errors import BadInput, ExitStatus
from .sweep import SWEEP_HELP, sweep_command

Format = Literal["table", "json", "csv"]
FailOn = Literal["vanishing", "exploding", "unstable"]
CellName = Literal["identity", "tanh", "relu", "sigmoid"]
LossName = Literal["last", "mean"]
EnsembleName = Literal["gaussian", "orthogonal", "symmetric", "uniform", "identity"]
SUFFIX_FORMATS: dict[str, Format] = {".json": "json", ".csv": "csv", ".txt": "table"}
# analyze's parameters that say how and where to report, not what to compute. Every other one is
# passed to experiment.resolve, and is an axis of `bptt sweep` (whose command is built from analyze's).
NOT_AXES = ("fmt", "output", "fail_on", "config")


def _error(message: str) -> None:
    print(f"bptt: error: {message}", file=sys.stderr)


class _OneLineErrors(TyperGroup):
    """Run the app, turning every usage error and :class:`BadInput` into one stderr line."""

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


def _emit(text: str, output: Path | None) -> None:
    from .records import write_atomic

    if output is None:
        sys.stdout.write(text)
    else:
        try:
            write_atomic(output, text)
        except OSError as e:  # permissions, a full disk, ...: the temporary file is already gone
            raise BadInput(f"cannot write {output}: {e.strerror or e}") from None


def _check_output(output: Path | None, fmt: Format | None) -> Format:
    """The format: ``--format``, else from the ``--output`` suffix, else ``table``."""
    if output is not None:
        if not output.parent.is_dir():
            raise BadInput(f"cannot write {output}: directory {output.parent} does not exist")
        if output.is_dir():
            raise BadInput(f"cannot write {output}: it is a directory")
        if fmt is None:
            try:
                return SUFFIX_FORMATS[output.suffix.lower()]
            except KeyError:
                raise BadInput(
                    f"cannot tell the format of {output} from its suffix (use .json, .csv or .txt, or --format)"
                ) from None
    return fmt or "table"


@app.command()
def analyze(
    T: Annotated[int | None, typer.Option("--T", min=1, help="Sequence length (default 100, or from --inputs/--targets).")] = None,
    cell: Annotated[CellName, typer.Option(help="Activation phi of the Elman cell.")] = "identity",
    loss: Annotated[LossName, typer.Option(help="last: 1/2||o_T - y_T||^2; mean: average of 1/2||o_t - y_t||^2.")] = "last",
    hidden: Annotated[int | None, typer.Option(min=1, help="Hidden size h (default 64, or from --weights).")] = None,
    inputs_dim: Annotated[int | None, typer.Option(min=1, help="Input size d (default 8).")] = None,
    outputs_dim: Annotated[int | None, typer.Option(min=1, help="Output size q (default 8).")] = None,
    ensemble: Annotated[EnsembleName | None, typer.Option(help="Random W_hh ensemble (default gaussian).")] = None,
    gain: Annotated[float | None, typer.Option(help="Scale of the ensemble: about its spectral radius (default 1).")] = None,
    radius: Annotated[float | None, typer.Option(help="Rescale W_hh to this exact spectral radius.")] = None,
    norm: Annotated[float | None, typer.Option(help="Rescale W_hh to this exact spectral norm.")] = None,
    bias: Annotated[float, typer.Option(help="Standard deviation of b_h and b_q.")] = 0.0,
    trials: Annotated[int, typer.Option(min=1, help="Independent random draws.")] = 1,
    seed: Annotated[int, typer.Option(min=0, help="Root seed; trial i uses SeedSequence(seed).spawn(trials)[i].")] = 0,
    weights: Annotated[Path | None, typer.Option(help=".npz with W_hh [W_hx W_qh b_h b_q] or PyTorch nn.RNN names; .npy for W_hh.")] = None,
    inputs: Annotated[Path | None, typer.Option(help=".npy of inputs x_t, shape T x d.")] = None,
    targets: Annotated[Path | None, typer.Option(help=".npy of targets y_t, shape T x q.")] = None,
    tolerance: Annotated[float, typer.Option(help="Orders of magnitude of gain counted as stable.")] = 1.0,
    fmt: Annotated[Format | None, typer.Option("--format", help="table (default), json or csv.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write to this file (atomically); format from the suffix.")] = None,
    fail_on: Annotated[FailOn | None, typer.Option(help="Exit 1 if the verdict matches.")] = None,
    lyapunov: Annotated[int | None, typer.Option(min=0, help="How many Lyapunov exponents (default min(hidden, 4); 0 for none).")] = None,
    config: Annotated[Path | None, typer.Option(help=CONFIG_HELP, is_eager=True, callback=config_callback)] = None,
) -> None:
    """Exact BPTT gradients ||dL/dh_t|| for t = T..1, parameter gradients and the spectrum of W_hh."""
    # Every parameter but the output ones goes to resolve_experiment, as for each point of `bptt sweep`
    # (this must stay the first statement: locals() then holds exactly the parameters).
    options = {name: value for name, value in locals().items() if name not in NOT_AXES}
    from .experiment import resolve as resolve_experiment

    out_format = _check_output(output, fmt)
    exp = resolve_experiment(**options)
    an = exp.run()
    files = {**exp.report_config(an), "fail_on": fail_on}

    if out_format == "table":
        from rich.console import Console

        from .tables import render_analysis

        if output is None:
            # NO_COLOR (non-empty) or TERM=dumb: no escape codes at all. Rich's own NO_COLOR
            # support drops colours only and still writes bold/italic codes to a terminal.
            plain = bool(os.environ.get("NO_COLOR")) or os.environ.get("TERM") == "dumb"
            console = Console(color_system=None) if plain else Console()
            render_analysis(an, console, weights=None if weights is None else str(weights))
        else:
            console = Console(record=True, file=io.StringIO(), width=100)
            render_analysis(an, console, weights=None if weights is None else str(weights))
            _emit(console.export_text(), output)
    else:
        from .records import analysis_csv, analysis_record, dumps

        text = dumps(analysis_record(an, files)) + "\n" if out_format == "json" else analysis_csv(an)
        _emit(text, output)

    if an.fails(fail_on):
        print(f"bptt: verdict {an.summary()['verdict']} matches --fail-on {fail_on}", file=sys.stderr)
        raise typer.Exit(ExitStatus.VERDICT_MATCHED)


@app.command("spectrum")
def spectrum_command(
    hidden: Annotated[int | None, typer.Option(min=1, help="Hidden size h (default 64, or from --weights).")] = None,
    ensemble: Annotated[EnsembleName | None, typer.Option(help="Random W_hh ensemble (default gaussian).")] = None,
    gain: Annotated[float | None, typer.Option(help="Scale of the ensemble: about its spectral radius (default 1).")] = None,
    radius: Annotated[float | None, typer.Option(help="Rescale W_hh to this exact spectral radius.")] = None,
    norm: Annotated[float | None, typer.Option(help="Rescale W_hh to this exact spectral norm.")] = None,
    trials: Annotated[int, typer.Option(min=1, help="Independent random draws.")] = 1,
    seed: Annotated[int, typer.Option(min=0, help="Root seed; trial i uses SeedSequence(seed).spawn(trials)[i].")] = 0,
    weights: Annotated[Path | None, typer.Option(help=".npz with W_hh (or weight_hh_l0), or .npy of W_hh.")] = None,
    T: Annotated[int, typer.Option("--T", min=1, help="Horizon of the peak transient growth max_k ||W^k||_2, k <= T.")] = 100,
    fmt: Annotated[Format | None, typer.Option("--format", help="table (default), json or csv.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write to this file (atomically); format from the suffix.")] = None,
) -> None:
    """Eigenvalues, singular values and non-normality of W_hh, beside the random-matrix prediction."""
    from .files import given_from_files
    from .network import Spec
    from .spectral_report import spectrum_report

    out_format = _check_output(output, fmt)
    if gain is not None and (radius is not None or norm is not None):
        raise BadInput(f"--gain conflicts with --{'radius' if radius is not None else 'norm'}: give one of them")
    if weights is not None and (ensemble is not None or gain is not None):
        raise BadInput(f"--{'ensemble' if ensemble is not None else 'gain'} conflicts with --weights: W_hh comes from the file")
    given, fixed = given_from_files(weights, None, None)
    if hidden is not None and "hidden" in fixed and fixed["hidden"][0] != hidden:
        raise BadInput(f"--hidden {hidden} conflicts with {fixed['hidden'][1]}")
    defaults = Spec()
    spec = Spec(
        hidden=hidden if hidden is not None else fixed.get("hidden", (defaults.hidden, ""))[0],
        ensemble=ensemble or defaults.ensemble, gain=gain if gain is not None else defaults.gain,
        radius=radius, norm=norm, trials=trials, seed=seed, T=T,
    )
    rep = spectrum_report(spec, given if weights is not None else None)
    if out_format == "table":
        from rich.console import Console

        from .theory_tables import render_spectrum

        if output is None:
            render_spectrum(rep, Console())
        else:
            console = Console(record=True, file=io.StringIO(), width=100)
            render_spectrum(rep, console)
            _emit(console.export_text(), output)
    else:
        from .records import dumps, spectrum_csv, spectrum_record

        text = dumps(spectrum_record(rep, {"weights": weights})) + "\n" if out_format == "json" else spectrum_csv(rep)
        _emit(text, output)


# `bptt sweep` takes every option of analyze (but NOT_AXES) as an axis: its signature is built from analyze's.
app.command("sweep", help=SWEEP_HELP)(sweep_command(analyze, NOT_AXES))


def main() -> None:
    """Console-script entry point."""
    app()
