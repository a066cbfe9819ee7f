"""Small plots drawn in the terminal with braille dots (or ASCII), as rich ``Text``.

A :class:`Canvas` is a grid of character cells, each 2 x 4 braille dots, over a rectangle
of data coordinates. Layers (points, curves, bands) are drawn in order; a cell shows the dots
of every line layer and takes the style (colour) of the last one that touched it. A band is a
fill layer: it shows (as a light dot pattern) only in cells no line passes through, so a
curve stays visible inside its band. Where the terminal cannot show braille and colour
(:func:`bptt_cli.report.terminal.fancy`: a pipe, a file, a CI log, ``NO_COLOR``, ``TERM=dumb``) the
cells fall back to each layer's ASCII character, the last line's over a band's, and the
frame to ``|``: every layer has its own character, nothing depends on colour.

Used by ``bptt spectrum`` (eigenvalues against the unit circle) and ``bptt analyze`` (the
chart of ``log10 ||dL/dh_t||`` against ``t``, :func:`line_chart` with a band and
:func:`log_ticks`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from rich.console import Console
from rich.text import Text

from bptt_cli.core.scaled import Array
from bptt_cli.report.terminal import fancy

Index = NDArray[np.intp]

# braille dot bits for (column, row) within a cell: columns 0-1, rows 0-3
_BITS = np.array([[0x01, 0x02, 0x04, 0x40], [0x08, 0x10, 0x20, 0x80]], dtype=np.uint8)
FILL_PATTERN = 0x95  # a checkerboard of dots (col 0 rows 0 and 2, col 1 rows 1 and 3): shading
LINE_SAMPLE = chr(0x2800 + 0x12) * 2  # two cells of a horizontal braille line, for legends
FILL_SAMPLE = chr(0x2800 + FILL_PATTERN) * 2


@dataclass
class Canvas:
    """``width x height`` character cells covering ``[x0, x1] x [y0, y1]``."""

    width: int
    height: int
    x0: float
    x1: float
    y0: float
    y1: float
    styles: list[tuple[str, str]] = field(default_factory=list)  # (rich style, ASCII char) per layer

    def __post_init__(self) -> None:
        self.dots = np.zeros((self.height, self.width), dtype=np.uint8)
        self.layer = np.full((self.height, self.width), -1, dtype=np.int64)
        self.fill_dots = np.zeros((self.height, self.width), dtype=np.uint8)
        self.fill_layer = np.full((self.height, self.width), -1, dtype=np.int64)

    def _dot_indices(self, x: Array, y: Array) -> tuple[Index, Index]:
        """Dot columns and rows of the points inside the canvas (the others dropped)."""
        x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
        inside = (x >= self.x0) & (x <= self.x1) & (y >= self.y0) & (y <= self.y1)
        keep = np.isfinite(x) & np.isfinite(y) & inside
        x, y = x[keep], y[keep]
        nx, ny = 2 * self.width, 4 * self.height
        cols = np.minimum(((x - self.x0) / (self.x1 - self.x0) * nx).astype(np.intp), nx - 1)
        rows = np.minimum(((self.y1 - y) / (self.y1 - self.y0) * ny).astype(np.intp), ny - 1)
        return cols, rows

    def _set(self, cols: Index, rows: Index, style: str, ascii_char: str, fill: bool) -> None:
        index = len(self.styles)
        self.styles.append((style, ascii_char))
        cy, cx = rows // 4, cols // 2
        dots, layer = (self.fill_dots, self.fill_layer) if fill else (self.dots, self.layer)
        np.bitwise_or.at(dots, (cy, cx), _BITS[cols % 2, rows % 4])
        layer[cy, cx] = index

    def points(self, x: Array, y: Array, style: str = "", ascii_char: str = "*") -> None:
        """Set the dot under each point ``(x_i, y_i)``; points outside are dropped."""
        self._set(*self._dot_indices(x, y), style, ascii_char, fill=False)

    def curve(self, x: Array, y: Array, style: str = "", ascii_char: str = ".") -> None:
        """Join consecutive points with straight segments, sampled at dot resolution."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if x.size < 2:
            self.points(x, y, style, ascii_char)
            return
        dx = np.abs(np.diff(x)) / (self.x1 - self.x0) * 2 * self.width
        dy = np.abs(np.diff(y)) / (self.y1 - self.y0) * 4 * self.height
        steps = np.maximum(np.ceil(np.nan_to_num(np.maximum(dx, dy), nan=0.0)).astype(int), 1)
        xs = [x[:1]] + [np.linspace(x[i], x[i + 1], s + 1)[1:] for i, s in enumerate(steps)]
        ys = [y[:1]] + [np.linspace(y[i], y[i + 1], s + 1)[1:] for i, s in enumerate(steps)]
        self.points(np.concatenate(xs), np.concatenate(ys), style, ascii_char)

    def band(self, x: Array, lo: Array, hi: Array, style: str = "", ascii_char: str = ":") -> None:
        """Fill between ``lo`` and ``hi`` (linearly interpolated in ``x``, which must increase)
        at every dot column: a fill layer, shown only where no line is."""
        x, lo, hi = (np.asarray(v, dtype=np.float64) for v in (x, lo, hi))
        ok = np.isfinite(x) & np.isfinite(lo) & np.isfinite(hi)
        x, lo, hi = x[ok], np.minimum(lo[ok], hi[ok]), np.maximum(lo[ok], hi[ok])
        if x.size == 0:
            self.styles.append((style, ascii_char))
            return
        nx, ny = 2 * self.width, 4 * self.height
        centres = self.x0 + (np.arange(nx) + 0.5) / nx * (self.x1 - self.x0)
        cols: Index = np.flatnonzero((centres >= x[0]) & (centres <= x[-1]))
        if x.size == 1 or cols.size == 0:  # a single point: its own column
            cols = self._dot_indices(x[:1], lo[:1])[0]
            top, bottom = hi[:1], lo[:1]
        else:
            top, bottom = np.interp(centres[cols], x, hi), np.interp(centres[cols], x, lo)

        def row(y: Array) -> Index:
            return np.clip(((self.y1 - y) / (self.y1 - self.y0) * ny).astype(np.intp), 0, ny - 1)

        r0, r1 = row(top), row(bottom)
        counts = r1 - r0 + 1
        all_cols = np.repeat(cols, counts)
        starts = np.repeat(r0 - np.cumsum(counts) + counts, counts)
        all_rows = np.arange(all_cols.size) + starts
        self._set(all_cols, all_rows, style, ascii_char, fill=True)

    def lines(self, unicode: bool = True) -> list[Text]:
        """The rows of the plot as rich ``Text``, top row first."""
        out = []
        for r in range(self.height):
            row = Text()
            for c in range(self.width):
                index = int(self.layer[r, c])
                dots = int(self.dots[r, c])
                if index < 0 and self.fill_layer[r, c] >= 0:
                    index = int(self.fill_layer[r, c])
                    dots = int(self.fill_dots[r, c]) & FILL_PATTERN or int(self.fill_dots[r, c])
                if index < 0:
                    row.append(chr(0x2800) if unicode else " ")
                    continue
                style, ascii_char = self.styles[index]
                row.append(chr(0x2800 + dots) if unicode else ascii_char, style=style)
            out.append(row)
        return out


def supports_braille(console: Console) -> bool:
    """Whether ``console`` writes UTF-8 (braille characters need it)."""
    return console.encoding.lower().replace("-", "").startswith("utf")


def _signed(v: float) -> str:
    return f"{v:+.3g}"


def framed(
    canvas: Canvas, console: Console, x_label: str = "", y_label: str = "",
    y_ticks: Sequence[float] | None = None, y_format: Callable[[float], str] = _signed,
    x_format: Callable[[float], str] = _signed,
) -> Text:
    """The canvas with tick labels: y at ``y_ticks`` (default: the top, middle and bottom rows),
    x at both ends. Braille and a box-drawing frame only where :func:`bptt_cli.report.terminal.fancy`."""
    unicode = fancy(console)
    rows = canvas.lines(unicode)
    if y_ticks is None:
        y_ticks = (canvas.y1, (canvas.y0 + canvas.y1) / 2, canvas.y0)
    labels: dict[int, str] = {}
    span = canvas.y1 - canvas.y0
    for v in y_ticks:  # a label per row at most, none on the row next to a labelled one
        r = round((canvas.y1 - v) / span * (canvas.height - 1))
        if 0 <= r < canvas.height and all(abs(r - other) > 1 for other in labels):
            labels[r] = y_format(v)
    pad = max(len(s) for s in labels.values())
    bar = "│" if unicode else "|"
    text = Text()
    if y_label:
        text.append(" " * (pad + 1) + y_label + "\n", style="dim")
    for r, row in enumerate(rows):
        text.append(labels.get(r, "").rjust(pad) + " " + bar, style="dim")
        text.append_text(row)
        text.append("\n")
    left, right = x_format(canvas.x0), x_format(canvas.x1)
    gap = max(canvas.width - len(left) - len(right), 1)
    text.append(" " * (pad + 2) + left + " " * gap + right, style="dim")
    if x_label:
        text.append("  " + x_label, style="dim")
    return text


def legend(entries: Sequence[tuple[str, str, str, bool]], console: Console) -> Text:
    """One line naming each layer: ``(label, style, ascii char, is_band)``, drawn as the chart
    draws it (a braille line or shading in its colour, or its ASCII character)."""
    unicode = fancy(console)
    text = Text()
    for i, (label, style, ascii_char, is_band) in enumerate(entries):
        if i:
            text.append("   ")
        sample = (FILL_SAMPLE if is_band else LINE_SAMPLE) if unicode else ascii_char * 2
        text.append(sample, style=style)
        text.append(" " + label, style="dim")
    return text


def complex_plane(
    values: Sequence[complex] | np.ndarray, console: Console,
    circles: Sequence[tuple[float, str, str]] = ((1.0, "cyan", "."),), height: int = 21,
) -> Text:
    """Complex numbers as dots in a square region around 0, with circles ``(radius, style, ascii)``.

    Square in screen units (a braille dot is as wide as it is tall): ``2 height - 1`` columns
    plus labels, so ``height <= 34`` fits 80 columns. The height and width are made odd so
    that the axes fall on the middle row and column and conjugate pairs draw symmetrically.
    """
    height = height | 1
    z = np.asarray(values, dtype=np.complex128).ravel()
    extent = max([1e-300, *[r for r, _, _ in circles], *np.abs(z[np.isfinite(z)]).tolist()]) * 1.08
    canvas = Canvas(2 * height - 1, height, -extent, extent, -extent, extent)
    canvas.curve(np.array([-extent, extent]), np.zeros(2), "dim", "-")
    canvas.curve(np.zeros(2), np.array([-extent, extent]), "dim", "|")
    theta = np.linspace(0.0, 2.0 * np.pi, 721)
    for radius, style, ascii_char in circles:
        canvas.curve(radius * np.cos(theta), radius * np.sin(theta), style, ascii_char)
    canvas.points(z.real, z.imag, "bold yellow", "*")
    return framed(canvas, console, x_label="Re", y_label="Im")


def nice_ticks(lo: float, hi: float, most: int = 5) -> tuple[float, float, float]:
    """``(start, stop, step)``: ``[lo, hi]`` widened to multiples of the smallest step
    1, 2 or 5 x 10^k that needs at most ``most`` steps."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("nice_ticks needs finite bounds")
    most = max(most, 2)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    exponent = math.floor(math.log10((hi - lo) / most))
    while True:  # ends: a step of at least hi - lo needs at most 2 steps
        for mult in (1.0, 2.0, 5.0):
            step = mult * 10.0**exponent
            start, stop = math.floor(lo / step) * step, math.ceil(hi / step) * step
            # lo / step can round to a multiple of step just inside [lo, hi] (a subnormal lo):
            # one step more keeps the range covered
            start -= step if start > lo else 0.0
            stop += step if stop < hi else 0.0
            if round((stop - start) / step) <= most:
                return start, stop, step
        exponent += 1


def log_ticks(lo: float, hi: float, most: int = 5) -> tuple[float, float, list[float]]:
    """A range and ticks for log10 values (:func:`nice_ticks`), to be labelled by
    :func:`pow10_label`."""
    start, stop, step = nice_ticks(lo, hi, most)
    count = round((stop - start) / step)
    return start, stop, [start + k * step for k in range(count + 1)]


def pow10_label(log10: float, digits: int = 2) -> str:
    """The number ``10^log10`` as a tick label: ``1e-40`` for whole powers, else ``3.2e+5``
    (``digits`` significant digits); any exponent (``1e-500`` too: it is only text)."""
    if abs(log10 - round(log10)) < 1e-9:
        return f"1e{round(log10):+d}"
    exponent = math.floor(log10)
    mantissa = 10 ** (log10 - exponent)
    if round(mantissa, digits - 1) >= 10:
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{mantissa:.{digits - 1}f}e{exponent:+d}"


def tick_digits(step: float) -> int:
    """Significant digits that tell ticks ``step`` apart on a log10 axis (2 for a step of 0.1)."""
    return 2 if step >= 0.1 else min(2 + math.ceil(-math.log10(step)) - 1, 6)


def line_chart(
    x: Array, series: Sequence[tuple[Array, str, str]], console: Console,
    width: int = 60, height: int = 12, x_label: str = "", y_label: str = "",
    band: tuple[Array, Array, str, str] | None = None,
    y_range: tuple[float, float] | None = None, y_ticks: Sequence[float] | None = None,
    y_format: Callable[[float], str] = _signed, x_format: Callable[[float], str] = _signed,
) -> Text:
    """Series ``(y, style, ascii)`` against a common ``x``, on shared axes (non-finite values
    skipped), drawn in order over an optional ``band`` ``(lo, hi, style, ascii)``.

    ``y_range``: the vertical extent (default: the data's); ``y_ticks``, ``y_format``,
    ``x_format``: the tick labels (see :func:`framed`).
    """
    x = np.asarray(x, dtype=np.float64)
    ys = [np.asarray(y, dtype=np.float64) for y, _, _ in series]
    if y_range is None:
        everything = ys + ([np.asarray(band[0], dtype=np.float64), np.asarray(band[1], dtype=np.float64)]
                           if band is not None else [])
        finite = np.concatenate([y[np.isfinite(y)] for y in everything]) if everything else np.zeros(0)
        y0, y1 = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    else:
        y0, y1 = y_range
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    x0, x1 = float(np.min(x)), float(np.max(x))
    if x1 == x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    canvas = Canvas(width, height, x0, x1, y0, y1)
    if band is not None:
        canvas.band(x, band[0], band[1], band[2], band[3])
    for y, (_, style, ascii_char) in zip(ys, series, strict=True):
        ok = np.isfinite(y)
        canvas.curve(x[ok], y[ok], style, ascii_char)
    return framed(canvas, console, x_label, y_label, y_ticks, y_format, x_format)
