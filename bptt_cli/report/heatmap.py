"""The terminal view of a sweep: a progress bar on stderr, then heat tables on stdout.

A heat table has one axis as rows and another as columns; each cell is the point's median
``gain_log10`` over its trials, coloured by its verdict and marked ``v`` (vanishing), ``=``
(stable), ``^`` (exploding) or ``?`` (undefined) so that it reads without colour too. Every
combination of the other swept axes gets its own table.

On a colour terminal (:func:`bptt_cli.report.terminal.fancy`) each cell's background is a colour
scale on the gain: green within the tolerance, then one shade per decade of ``|gain| /
tolerance`` (blue vanishing, red exploding, darker for more orders of magnitude), explained
by a colour bar under the tables. The palette follows the terminal's colour system: the
ColorBrewer shades on a true-colour terminal, the nearest entries of the xterm palette on a
256-colour one, and on an 8/16-colour terminal (``standard``, ``windows``, e.g. ``TERM=xterm``)
the three basic colours blue, green and red alone, one per verdict (the light shades would all
come out white there). Elsewhere the cells are plain text with their marks.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from bptt_cli.errors import BadInput
from bptt_cli.io.points import Axis, PointKey, cell_text, point_key
from bptt_cli.report.format import VERDICT_STYLE, fmt
from bptt_cli.report.terminal import fancy

ROW_PREFERENCE = ("radius", "gain", "norm", "hidden", "bias", "inputs_dim", "outputs_dim")
COL_PREFERENCE = ("T", "hidden", "cell", "ensemble", "loss")
MARK = {"vanishing": "v", "stable": "=", "exploding": "^", "undefined": "?"}
# background shades by decade of |gain| / tolerance: 1-10, 10-100, ..., beyond 10^5 (ColorBrewer Blues, Reds)
VANISHING_SHADES = ("#c6dbef", "#9ecae1", "#6baed6", "#3182bd", "#08519c", "#08306b")
EXPLODING_SHADES = ("#fcbba1", "#fc9272", "#fb6a4a", "#de2d26", "#a50f15", "#67000d")
STABLE_SHADE = "#c7e9c0"
# the same scales in the xterm 256-colour palette (rich's own nearest match turns the light green
# into khaki): 153 #afd7ff ... 17 #00005f, 151 #afd7af, 224 #ffd7d7 ... 52 #5f0000
VANISHING_256 = tuple(f"color({i})" for i in (153, 111, 75, 33, 25, 17))
EXPLODING_256 = tuple(f"color({i})" for i in (224, 217, 210, 196, 124, 52))
STABLE_256 = "color(151)"
# 8/16 colours: one basic colour per verdict (the eight every colour terminal has)
BASIC = {-1: "bold white on blue", 0: "bold black on green", 1: "bold white on red"}
COARSE_SYSTEMS = ("standard", "windows")
LIGHT_SHADES = 3  # the first shades take black text, the darker ones white


def decade(gain: float, tolerance: float) -> int:
    """The colour bin of a gain: 0 within the tolerance, else ``k >= 1`` for ``|gain|`` in
    ``(u 10^(k-1), u 10^k]`` (``u`` the tolerance, or 1 if it is 0), at most 6; an exact zero
    (``-inf``) is in the last bin. Signed: negative for vanishing. NaN gives 0."""
    if math.isnan(gain) or abs(gain) <= tolerance:
        return 0
    unit = tolerance if tolerance > 0 else 1.0
    k = 6 if math.isinf(gain) else min(max(math.ceil(math.log10(abs(gain) / unit)), 1), 6)
    return -k if gain < 0 else k


def shade_style(k: int, system: str | None = "truecolor") -> str:
    """The rich style of colour bin ``k`` (see :func:`decade`) on a terminal of colour system
    ``system`` (rich's ``Console.color_system``: ``truecolor``, ``256``, ``standard``, ``windows``)."""
    if system in COARSE_SYSTEMS:
        return BASIC[(k > 0) - (k < 0)]
    vanishing, stable, exploding = (
        (VANISHING_256, STABLE_256, EXPLODING_256) if system == "256"
        else (VANISHING_SHADES, STABLE_SHADE, EXPLODING_SHADES)
    )
    if k == 0:
        return f"bold black on {stable}"
    shades = vanishing if k < 0 else exploding
    fg = "black" if abs(k) <= LIGHT_SHADES else "white"
    return f"bold {fg} on {shades[abs(k) - 1]}"


def colour_bar(low: int, high: int, tolerance: float, system: str | None = "truecolor") -> Text:
    """The colour scale from bin ``low`` to ``high`` (``low <= 0 <= high``), with the bin
    edges in orders of magnitude between the swatches (on an 8/16-colour terminal, one swatch
    per verdict, the edges ``-tolerance`` and ``+tolerance``)."""
    unit = tolerance if tolerance > 0 else 1.0
    if system in COARSE_SYSTEMS:
        low, high = max(low, -1), min(high, 1)
    text = Text("colour: log10 gain ", style="dim")
    for k in range(low, high + 1):
        text.append("  ", style=shade_style(k, system))
        if k < high:
            edge = -unit * 10 ** (-k - 1) if k < 0 else unit * 10**k
            text.append(f" {edge:+g} ", style="dim")
    return text


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


def _gain(record: Mapping[str, Any]) -> float:
    summary = record["summary"]
    gain = summary["gain_log10"]
    if gain is None:  # null in a file read back: an exact zero (-inf) or undefined (NaN)
        return float("nan") if summary["verdict"] == "undefined" else float("-inf")
    return float(gain)


def _cell(record: Mapping[str, Any] | None, shaded: bool = False, system: str | None = None) -> Text:
    if record is None:
        return Text(not_run_mark(shaded), style="dim")
    summary = record["summary"]
    verdict = summary["verdict"]
    gain = _gain(record)
    style = VERDICT_STYLE.get(verdict, "")
    if shaded and verdict != "undefined":
        style = shade_style(decade(gain, float(summary["tolerance"])), system)
    return Text(f"{fmt(gain, 1)} {MARK.get(verdict, '?')}", style=style)


def not_run_mark(fancy_glyphs: bool) -> str:
    """The mark of a point not run (yet): a middle dot, or ``.`` in plain ASCII."""
    return "·" if fancy_glyphs else "."


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

    shaded = fancy(console)
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
                cells.append(_cell(by_key.get(point_key(point)), shaded, console.color_system))
            table.add_row(("default" if rv is None else cell_text(rv)) if plan.rows else "all", *cells)
        console.print(table)
    tolerances = next((a.values for a in axes if a.name == "tolerance"), ())
    tol = cell_text(tolerances[0]) if len(tolerances) == 1 else "tolerance"
    console.print("cells: median over the trials of log10 ||dL/dh_1|| / ||dL/dh_T||", style="dim")
    if any(len(r["summary"].get("layers") or ()) > 1 for r in records):
        console.print("stacked or bidirectional: the number is layer 0 forward's gain, the mark the worst "
                      "layer's verdict", style="dim")
    marks = f"v vanishing (< -{tol}), = stable, ^ exploding (> +{tol}), ? undefined"
    console.print(f"{marks}, {not_run_mark(shaded)} not run", style="dim")
    bins = [
        decade(_gain(r), float(r["summary"]["tolerance"])) for r in records
        if r["summary"]["verdict"] != "undefined"
    ]
    if shaded and bins and len(tolerances) <= 1:
        tolerance = float(records[0]["summary"]["tolerance"])
        console.print(colour_bar(min(0, *bins), max(0, *bins), tolerance, console.color_system))


@contextlib.contextmanager
def progress(total: int, done: int = 0, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """A progress bar on stderr (points done of ``total``, elapsed, estimated time left) when
    ``enabled`` and stderr is a terminal; yields the function that advances it (by one point, or
    by ``k``). The bar is redrawn at most 20 times a second, so a million points skipped on
    ``--resume`` cost no more than the skipping."""
    console = Console(stderr=True)
    if not enabled or not console.is_terminal or console.is_dumb_terminal or done >= total:
        yield lambda k=1: None
        return
    import time

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
        waiting = [0, time.monotonic()]

        def advance(k: int = 1) -> None:
            waiting[0] += k
            now = time.monotonic()
            if now - waiting[1] >= 0.05:
                bar.advance(task, waiting[0])
                waiting[0], waiting[1] = 0, now

        yield advance
        bar.advance(task, waiting[0])
