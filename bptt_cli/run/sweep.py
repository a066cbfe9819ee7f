"""``bptt sweep``: ``bptt analyze`` over a grid of settings.

The command is built from ``analyze`` itself: every option of ``analyze`` (but its output
options) becomes an option of ``sweep`` that takes an axis (see :mod:`bptt_cli.run.grid`), checked
by ``analyze``'s own option types. An option added to ``analyze`` is an axis with no change here.
Each grid point is computed by :func:`bptt_cli.run.runner.run_point` (``experiment.resolve``, then
``analysis.analyze(...).summary()``, as ``bptt analyze``), and its record is written as soon as
it is done (:mod:`bptt_cli.io.sweep_records`); the terminal gets heat tables (:mod:`bptt_cli.report.heatmap`).
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from bptt_cli.errors import BadInput, ExitStatus
from bptt_cli.run.config import CONFIG_HELP, make_config_callback
from bptt_cli.run.grid import Axis, flag_of, parse_axis, plain, value_kind

SWEEP_HELP = (
    "Run analyze over a grid: every analyze option takes a comma list or a range START:STOP:COUNT[:log] "
    "and the grid is their product. One record per point, written as each point finishes."
)
SweepFormat = Literal["table", "jsonl", "json", "csv"]
FailOn = Literal["vanishing", "exploding", "unstable"]
SUFFIX_FORMATS: dict[str, SweepFormat] = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".txt": "table"}


def _sweep_options(
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, help="Local worker processes (default: the number of CPUs); 1 runs in this process."
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            envvar="BPTT_SCHEDULER",
            help="Run the points on this Dask scheduler (tcp://HOST:8786) instead; needs bptt-cli[dask].",
        ),
    ] = None,
    fmt: Annotated[
        SweepFormat | None,
        typer.Option("--format", help="table (heat tables, the default), or records as jsonl, json or csv."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            help="Write the records here as points finish; format from the suffix "
            "(.jsonl .json .csv; .txt: the tables)."
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Keep the records already in --output and run only the points missing there.")
    ] = False,
    fail_on: Annotated[
        FailOn | None,
        typer.Option(help="Exit 1 if any point's verdict matches (the points are listed on stderr)."),
    ] = None,
    rows: Annotated[
        str | None,
        typer.Option(help="Axis for the heat table's rows (default: radius, gain or norm if swept)."),
    ] = None,
    cols: Annotated[
        str | None, typer.Option(help="Axis for the heat table's columns (default: T if swept).")
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Also draw the phase diagram (and the gain against T) into this image "
            "(.png, .svg or .pdf); needs bptt-cli[plot].",
        ),
    ] = None,
) -> None:
    """The options of ``bptt sweep`` that are not ``analyze`` options (a template for the signature)."""


SWEEP_OPTIONS = tuple(inspect.signature(_sweep_options, eval_str=True).parameters.values())


def analyze_command(analyze: Callable[..., Any]) -> Any:
    """The click command Typer builds for ``analyze`` (its options, their types and checks)."""
    app = typer.Typer(add_completion=False)
    app.command()(analyze)
    return typer.main.get_command(app)


def _axis_help(param: Any) -> str:
    kind = value_kind(param)
    how = "list or START:STOP:COUNT[:log]" if kind in (int, float) else "list"
    default = plain(param.default)
    shown = (
        ""
        if default is None
        else f" Default {str(default).lower() if isinstance(default, bool) else default}."
    )
    return f"{(param.help or '').rstrip('.')}. Axis: a value or a comma {how}.{shown}"


def sweep_command(analyze: Callable[..., Any], not_axes: Collection[str]) -> Callable[..., None]:
    """The ``sweep`` command function for Typer, with one axis option per ``analyze`` option."""
    command = analyze_command(analyze)
    axis_params = {p.name: p for p in command.params if p.name not in not_axes}
    own = {p.name for p in SWEEP_OPTIONS} | {"config"}
    clash = own & set(axis_params)
    if clash:
        raise RuntimeError(f"analyze options {sorted(clash)} clash with sweep's own options")
    for p in axis_params.values():
        if p.multiple or p.nargs != 1:
            raise RuntimeError(f"analyze option {p.name} takes several values: it cannot be a sweep axis")
    axes_ctx = typer.Context(command)

    parameters = []
    for p in axis_params.values():
        info = typer.Option(flag_of(p), help=_axis_help(p), metavar="VALUES", show_default=False)
        parameters.append(
            inspect.Parameter(
                p.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[str | None, info]
            )
        )
    config = typer.Option(
        metavar="FILE",
        help=CONFIG_HELP + " Lists are axes.",
        is_eager=True,
        callback=make_config_callback(axis_params, axes_ctx),
    )
    parameters += [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in SWEEP_OPTIONS]
    parameters.append(
        inspect.Parameter(
            "config",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[list[Path] | None, config],
        )
    )

    def sweep(**options: Any) -> None:
        options.pop("config", None)
        axes_text = {name: options.pop(name) for name in axis_params}
        axes = [
            Axis(
                name,
                flag_of(p),
                (plain(p.default),) if axes_text[name] is None else parse_axis(axes_text[name], p, axes_ctx),
            )
            for name, p in axis_params.items()
        ]
        defaults = {name: plain(p.default) for name, p in axis_params.items()}
        run_sweep(axes, defaults, **options)

    sweep.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    sweep.__doc__ = SWEEP_HELP
    return sweep


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _format(output: Path | None, fmt: SweepFormat | None) -> SweepFormat:
    from bptt_cli.io.records import output_format

    return output_format(output, fmt, SUFFIX_FORMATS)  # type: ignore[return-value]


def shape(exp: Any) -> Hashable:
    """What a record's columns depend on (the kind of cell, Elman or gated, and the estimators):
    records of one shape flatten to the same CSV columns."""
    return type(exp.spec).__name__, tuple(e.kind for e in exp.estimators)


def copy_record(
    record: Mapping[str, Any], point: Mapping[str, Any], config: Mapping[str, Any]
) -> dict[str, Any]:
    """The record of ``point``, whose numbers are ``record``'s (they differ only in options the
    cell ignores): its own ``point`` and ``config``, ``record``'s ``summary``, no wall time of
    its own (``wall_time_s`` 0)."""
    return {
        "point": dict(point),
        "config": dict(config),
        "summary": record["summary"],
        "wall_time_s": 0.0,
        "version": record["version"],
    }


def run_sweep(
    axes: Sequence[Axis],
    defaults: Mapping[str, Any],
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    fmt: SweepFormat | None = None,
    output: Path | None = None,
    resume: bool = False,
    fail_on: str | None = None,
    rows: str | None = None,
    cols: str | None = None,
    plot: Path | None = None,
) -> None:
    """Check everything, run the missing points, stream their records, then show the tables
    (and draw the ``plot`` file).

    ``axes``: one per ``analyze`` option, in its order; ``defaults``: ``analyze``'s defaults.
    Points whose numbers another point of the grid gives (they differ only in options the cell
    ignores) are computed once. A point that fails while it runs (bad input found only then) is
    listed on stderr at the end, with nothing written for it, and the sweep exits 2 after the
    others are done: ``--resume`` then runs only the points missing from ``--output``.
    """
    from bptt_cli.analysis.analyze import FAIL_ON
    from bptt_cli.io.records import jsonable
    from bptt_cli.io.sweep_records import open_sink, read_records
    from bptt_cli.report.heatmap import layout, progress
    from bptt_cli.report.plotting import check_plot
    from bptt_cli.run.experiment import resolve
    from bptt_cli.run.grid import Points, describe, points
    from bptt_cli.run.runner import Failure, PointFailed, running

    out_format = _format(output, fmt)
    if resume and (output is None or out_format == "table"):
        raise BadInput("--resume needs --output FILE with records (.jsonl, .json or .csv)")
    plan = layout(axes, rows, cols)
    plot_format = check_plot(plot)
    product = points(axes)
    experiments = []
    for p in product:  # every point is checked before anything is run or written
        try:
            experiments.append(resolve(**p))
        except BadInput as e:
            raise BadInput(f"{describe(p, axes)}: {e}") from None
    configs = [jsonable(exp.config()) for exp in experiments]
    grid = Points(product, configs, [exp.ignored_options() for exp in experiments], axes)

    existing = None
    done: dict[int, dict[str, Any]] = {}  # grid index -> its record, kept from the file
    if resume and output is not None:
        existing = read_records(output, out_format)
        foreign = []
        for r in existing.records:
            i = grid.locate(r)
            if i is None:
                foreign.append(r)
            else:
                done.setdefault(i, r)
        if foreign:
            raise BadInput(
                f"cannot resume from {output}: {len(foreign)} of its records are not points of this sweep "
                f"({grid.difference(foreign[0])}); use another --output"
            )

    # what is left: one point computed per set of points with the same numbers, the others copied
    known = {grid.work[i]: r for i, r in done.items()}
    copies_now: list[int] = []
    to_run: list[int] = []
    followers: dict[int, list[int]] = {}
    runs_of: dict[Any, int] = {}
    for i in grid.unique:
        if i in done:
            continue
        work = grid.work[i]
        if work in known:
            copies_now.append(i)
        elif work in runs_of:
            followers[runs_of[work]].append(i)
        else:
            runs_of[work] = i
            followers[i] = []
            to_run.append(i)
    n_workers = workers if workers is not None else _cpus()
    if n_workers > 1 or scheduler:
        cost = [
            exp.spec.trials * (exp.spec.T * exp.spec.hidden**2 + 10 * exp.spec.hidden**3)
            for exp in experiments
        ]
        to_run.sort(key=lambda i: -cost[i])  # longest first, so that the last ones to finish are short

    records_out = out_format != "table"
    records: dict[int, dict[str, Any]] = dict(done)
    failed: dict[int, str] = {}
    shapes = {shape(experiments[i]) for i in grid.unique}

    def order(record: dict[str, Any]) -> int:
        i = grid.locate(record)
        return -1 if i is None else i

    def kind_of(record: dict[str, Any]) -> Hashable:
        return shape(experiments[grid.of(record["point"])])

    try:
        with running([product[i] for i in to_run], n_workers, scheduler) as results:
            # the output is created (or cut to its whole records) before anything is computed
            sink = open_sink(out_format, output, existing, order, shapes, kind_of) if records_out else None
            try:
                with progress(len(grid.unique), len(done)) as advance:

                    def emit(i: int, record: dict[str, Any]) -> None:
                        records[i] = record
                        if sink is not None:
                            sink.add(record)
                        advance()

                    for i in copies_now:
                        emit(i, copy_record(known[grid.work[i]], product[i], configs[i]))
                    for outcome in results:
                        if isinstance(outcome, Failure):
                            i = grid.of(outcome.point)
                            for j in (i, *followers[i]):
                                failed[j] = outcome.reason
                                advance()
                            continue
                        i = grid.of(outcome["point"])
                        emit(i, outcome)
                        for j in followers[i]:
                            emit(j, copy_record(outcome, product[j], configs[j]))
            finally:
                if sink is not None:
                    sink.close()
    except PointFailed as e:
        raise BadInput(f"{describe(e.point, axes)}: {e}") from None
    except KeyboardInterrupt:
        if output is not None and records_out:
            print(
                f"bptt: {len(records)} of {len(grid.unique)} points are in {output}; "
                "run again with --resume to finish",
                file=sys.stderr,
            )
        raise

    # every point of the product, for the tables: a point equal to an earlier one shows its record
    shown = [
        {**records[grid.index[key]], "point": p}
        for p, key in zip(product, grid.identity, strict=True)
        if grid.index[key] in records
    ]
    if not records_out or output is not None:
        _show(shown, axes, defaults, plan, output if out_format == "table" else None)
    if plot is not None and plot_format is not None and records:
        import json

        from bptt_cli.io.records import dumps
        from bptt_cli.report.plotting import write_plot

        ordered = [{**records[i], "point": product[i]} for i in sorted(records)]  # as spelled here
        write_plot("sweep", json.loads(dumps(ordered)), plot, plot_format, rows, cols)
    matched = []
    if fail_on is not None:
        matched = [i for i in sorted(records) if records[i]["summary"]["verdict"] in FAIL_ON[fail_on]]
        for i in matched:
            s = records[i]["summary"]
            gain = s["gain_log10"]
            print(
                f"bptt: {describe(product[i], axes)}: {s['verdict']} (median gain_log10 "
                f"{'null' if gain is None else format(gain, '+.2f')}) matches --fail-on {fail_on}",
                file=sys.stderr,
            )
    if failed:
        for i in sorted(failed):
            print(f"bptt: error: {describe(product[i], axes)}: {failed[i]}", file=sys.stderr)
        where = (
            "; --resume with the same --output runs only them" if output is not None and records_out else ""
        )
        raise BadInput(
            f"{len(failed)} of {len(grid.unique)} points failed (listed above) and have no record{where}"
        )
    if matched:
        raise typer.Exit(ExitStatus.VERDICT_MATCHED)


def _show(
    records: Sequence[Mapping[str, Any]],
    axes: Sequence[Axis],
    defaults: Mapping[str, Any],
    plan: Any,
    path: Path | None,
) -> None:
    """The heat tables on stdout, or into ``path`` (written atomically)."""
    from bptt_cli.io.records import write_atomic
    from bptt_cli.report.heatmap import render_sweep
    from bptt_cli.report.terminal import stdout_console, text_console

    fixed = {
        a.flag.lstrip("-"): a.values[0]
        for a in axes
        if not a.swept
        and a.values[0] is not None
        and (a.values[0] != defaults.get(a.name) or a.name in ("trials", "seed"))
    }
    if path is not None:
        console = text_console(120)
        render_sweep(records, axes, plan, console, fixed)
        write_atomic(path, console.export_text())
        return
    console = stdout_console()
    if not console.is_terminal:
        console = stdout_console(width=max(console.width, 120))
    render_sweep(records, axes, plan, console, fixed)
