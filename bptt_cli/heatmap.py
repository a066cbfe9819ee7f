"""The terminal view of a sweep: a progress bar on stderr, then heat tables on stdout.

A heat table has one axis as rows and another as columns; each cell is the point's median
``gain_log10`` over its trials, coloured by its verdict and marked ``v`` (vanishing), ``=``
(stable), ``^`` (exploding) or ``?`` (undefined) so that it reads without colour too. Every
combination of the other swept axes gets its own table.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .errors import BadInput
from .grid import Axis, PointKey, cell_text, point_key
from .tables import VERDICT_STYLE, fmt

ROW_PREFERENCE = ("radius", "gain", "norm", "hidden", "bias", "inputs_dim", "outputs_dim")
COL_PREFERENCE = ("T", "hidden", "cell", "ensemble", "loss")
MARK = {"vanishing": "v", "stable": "=", "exploding": "^", "undefined": "?"}


@dataclass(frozen=True)
class Layout:
    """Which swept axes are the rows and the columns of the heat tables; ``others`` get one
    table per combination of their values."""

    rows: Axis | None
    cols: Axis | None
    others: tuple[Axis, ...]


def axis_named(name: str, axes: Sequence[Axis], what: str) -> Axis:
    """The axis called ``name`` (``T``, ``--T``, ``inputs-dim`` or ``inputs_dim``)."""
    wanted = name.lstrip("-").replace("-", "_")
    for a in axes:
        if wanted in (a.name, a.flag.lstrip("-").replace("-", "_")):
            return a
    raise BadInput(f"{what} {name!r} is not an option of bptt analyze")


def layout(axes: Sequence[Axis], rows: str | None = None, cols: str | None = None) -> Layout:
    """Rows: ``--rows``, else radius, gain, norm, ... if swept; columns: ``--cols``, else T, ...

    A named axis need not be swept (it is then a single row or column).
    """
    r = axis_named(rows, axes, "--rows") if rows else None
    c = axis_named(cols, axes, "--cols") if cols else None
    if r is not None and c is not None and r.name == c.name:
        raise BadInput(f"--rows and --cols both name {r.flag}")
    swept = [a for a in axes if a.swept]

    def pick(preference: Sequence[str], taken: Axis | None) -> Axis | None:
        free = [a for a in swept if taken is None or a.name != taken.name]
        ranked = [a for name in preference for a in free if a.name == name]
        return ranked[0] if ranked else None

    if c is None:
        c = pick(COL_PREFERENCE, r)
    if r is None:
        r = pick(ROW_PREFERENCE, c) or next((a for a in swept if c is None or a.name != c.name), None)
    if c is None:
        c = next((a for a in swept if r is None or a.name != r.name), None)
    used = {a.name for a in (r, c) if a is not None}
    return Layout(r, c, tuple(a for a in swept if a.name not in used))


def _cell(record: Mapping[str, Any] | None) -> Text:
    if record is None:
        return Text("·", style="dim")
    summary = record["summary"]
    verdict = summary["verdict"]
    gain = summary["gain_log10"]
    if gain is None:  # null in a file read back: an exact zero (-inf) or undefined (NaN)
        gain = float("nan") if verdict == "undefined" else float("-inf")
    return Text(f"{fmt(gain, 1)} {MARK.get(verdict, '?')}", style=VERDICT_STYLE.get(verdict, ""))


def _label(axis: Axis) -> str:
    return axis.flag.lstrip("-")


def render_sweep(
    records: Sequence[Mapping[str, Any]],
    axes: Sequence[Axis],
    plan: Layout,
    console: Console,
    fixed: Mapping[str, Any] | None = None,
) -> None:
    """Print a header, the heat tables and a legend. ``fixed``: settings to list in the header."""
    by_key: dict[PointKey, Mapping[str, Any]] = {point_key(r["point"]): r for r in records}
    base = {a.name: a.values[0] for a in axes}
    swept = [a for a in (plan.rows, plan.cols, *plan.others) if a is not None and a.swept]
    n = 1
    for a in swept:
        n *= len(a.values)
    shape = " x ".join(f"{len(a.values)} {_label(a)}" for a in swept)
    head = Text(
        f"bptt sweep: {n} point{'s' if n != 1 else ''}" + (f" ({shape})" if shape else ""), style="bold"
    )
    console.print(head)
    if fixed:
        console.print("fixed: " + ", ".join(f"{k} {cell_text(v)}" for k, v in fixed.items()))

    row_values = plan.rows.values if plan.rows else (None,)
    col_values = plan.cols.values if plan.cols else (None,)
    for combo in itertools.product(*(a.values for a in plan.others)):
        title = ", ".join(f"{_label(a)} {cell_text(v)}" for a, v in zip(plan.others, combo, strict=True))
        table = Table(title=title or None, title_justify="left")
        corner = " \\ ".join(_label(a) for a in (plan.rows, plan.cols) if a is not None)
        table.add_column(corner or "point", justify="right", style="bold")
        for v in col_values:
            table.add_column(cell_text(v) if plan.cols else "gain", justify="right")
        for rv in row_values:
            cells = []
            for cv in col_values:
                point = dict(base)
                point.update({a.name: v for a, v in zip(plan.others, combo, strict=True)})
                if plan.rows:
                    point[plan.rows.name] = rv
                if plan.cols:
                    point[plan.cols.name] = cv
                cells.append(_cell(by_key.get(point_key(point))))
            table.add_row(cell_text(rv) if plan.rows else "all", *cells)
        console.print(table)
    tolerances = next((a.values for a in axes if a.name == "tolerance"), ())
    tol = cell_text(tolerances[0]) if len(tolerances) == 1 else "tolerance"
    console.print("cells: median over the trials of log10 ||dL/dh_1|| / ||dL/dh_T||", style="dim")
    console.print(
        f"v vanishing (< -{tol}), = stable, ^ exploding (> +{tol}), ? undefined, · not run", style="dim"
    )


@contextlib.contextmanager
def progress(total: int, done: int = 0) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr (points done, elapsed, ETA) when stderr is a terminal; yields
    the function that advances it by one point."""
    console = Console(stderr=True)
    if not console.is_terminal or console.is_dumb_terminal or done >= total:
        yield lambda: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("points"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("sweep", total=total, completed=done)
        yield lambda: bar.advance(task)
