"""The ``bptt`` command line: parse options, call the numerical core, render the result.

Errors are one line on stderr (``bptt: error: ...``) with exit status 2; ``--fail-on``
matches exit 1. Heavy modules (scipy, rich, the core) are imported inside the commands,
so ``bptt --help`` starts fast.
"""

from __future__ import annotations

import io
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
    no_args_is_help=True,
    help="Exact BPTT gradients and eigen-spectra of recurrent networks: see gradients vanish or explode.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"bptt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Exact BPTT gradients and eigen-spectra of recurrent networks."""


def _emit(text: str, output: Path | None) -> None:
    from .records import write_atomic

    if output is None:
        sys.stdout.write(text)
    else:
        write_atomic(output, text)


def _check_output(output: Path | None, fmt: Format | None) -> Format:
    """The format: ``--format``, else from the ``--output`` suffix, else ``table``."""
    if output is not None:
        if not output.parent.is_dir():
            raise BadInput(f"cannot write {output}: directory {output.parent} does not exist")
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
    files = {**exp.files, "fail_on": fail_on}

    if out_format == "table":
        from rich.console import Console

        from .tables import render_analysis

        if output is None:
            render_analysis(an, Console())
        else:
            console = Console(record=True, file=io.StringIO(), width=100)
            render_analysis(an, console)
            _emit(console.export_text(), output)
    else:
        from .records import analysis_csv, analysis_record, dumps

        text = dumps(analysis_record(an, files)) + "\n" if out_format == "json" else analysis_csv(an)
        _emit(text, output)

    if an.fails(fail_on):
        print(f"bptt: verdict {an.summary()['verdict']} matches --fail-on {fail_on}", file=sys.stderr)
        raise typer.Exit(ExitStatus.VERDICT_MATCHED)


# `bptt sweep` takes every option of analyze (but NOT_AXES) as an axis: its signature is built from analyze's.
app.command("sweep", help=SWEEP_HELP)(sweep_command(analyze, NOT_AXES))


def main() -> None:
    """Console-script entry point."""
    app()
