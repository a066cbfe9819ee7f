"""Small plots drawn in the terminal with braille dots (or ASCII), as rich ``Text``.

A :class:`Canvas` is a grid of character cells, each 2 x 4 braille dots, over a rectangle
of data coordinates. Layers (points or curves) are drawn in order; a cell shows the dots of
every layer and takes the style (colour) of the last layer that touched it. Without a
UTF-8 terminal the cells fall back to each layer's ASCII character. Rich drops the styles by
itself when stdout is not a terminal, ``NO_COLOR`` is set or ``TERM=dumb``, and the plot
stays readable: every layer has its own dots, nothing depends on colour alone.

Used by ``bptt spectrum`` (eigenvalues against the unit circle); :func:`line_chart` serves
series such as ``log10 ||dL/dh_t||`` against ``t``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from rich.console import Console
from rich.text import Text

from .scaled import Array

# braille dot bits for (column, row) within a cell: columns 0-1, rows 0-3
_BITS = np.array([[0x01, 0x02, 0x04, 0x40], [0x08, 0x10, 0x20, 0x80]], dtype=np.uint8)


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

    def points(self, x: Array, y: Array, style: str = "", ascii_char: str = "*") -> None:
        """Set the dot under each point ``(x_i, y_i)``; points outside are dropped."""
        x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
        inside = (x >= self.x0) & (x <= self.x1) & (y >= self.y0) & (y <= self.y1)
        keep = np.isfinite(x) & np.isfinite(y) & inside
        x, y = x[keep], y[keep]
        nx, ny = 2 * self.width, 4 * self.height
        cols = np.minimum(((x - self.x0) / (self.x1 - self.x0) * nx).astype(int), nx - 1)
        rows = np.minimum(((self.y1 - y) / (self.y1 - self.y0) * ny).astype(int), ny - 1)
        index = len(self.styles)
        self.styles.append((style, ascii_char))
        cy, cx = rows // 4, cols // 2
        np.bitwise_or.at(self.dots, (cy, cx), _BITS[cols % 2, rows % 4])
        self.layer[cy, cx] = index

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

    def lines(self, unicode: bool = True) -> list[Text]:
        """The rows of the plot as rich ``Text``, top row first."""
        out = []
        for r in range(self.height):
            row = Text()
            for c in range(self.width):
                index = int(self.layer[r, c])
                if index < 0:
                    row.append(chr(0x2800) if unicode else " ")
                    continue
                style, ascii_char = self.styles[index]
                row.append(chr(0x2800 + int(self.dots[r, c])) if unicode else ascii_char, style=style)
            out.append(row)
        return out


def supports_braille(console: Console) -> bool:
    """Whether ``console`` writes UTF-8 (braille characters need it)."""
    return console.encoding.lower().replace("-", "").startswith("utf")


def framed(canvas: Canvas, console: Console, x_label: str = "", y_label: str = "") -> Text:
    """The canvas with tick labels: y at the top, middle and bottom rows, x at both ends."""
    unicode = supports_braille(console)
    rows = canvas.lines(unicode)
    ticks = {0: canvas.y1, canvas.height // 2: (canvas.y0 + canvas.y1) / 2, canvas.height - 1: canvas.y0}
    labels = {r: f"{v:+.3g}" for r, v in ticks.items()}
    pad = max(len(s) for s in labels.values())
    bar = "│" if unicode else "|"
    text = Text()
    if y_label:
        text.append(" " * (pad + 1) + y_label + "\n", style="dim")
    for r, row in enumerate(rows):
        text.append(labels.get(r, "").rjust(pad) + " " + bar, style="dim")
        text.append_text(row)
        text.append("\n")
    left, right = f"{canvas.x0:+.3g}", f"{canvas.x1:+.3g}"
    gap = max(canvas.width - len(left) - len(right), 1)
    text.append(" " * (pad + 2) + left + " " * gap + right, style="dim")
    if x_label:
        text.append("  " + x_label, style="dim")
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


def line_chart(
    x: Array, series: Sequence[tuple[Array, str, str]], console: Console,
    width: int = 60, height: int = 12, x_label: str = "", y_label: str = "",
) -> Text:
    """Series ``(y, style, ascii)`` against a common ``x``, on shared axes (non-finite values skipped)."""
    x = np.asarray(x, dtype=np.float64)
    ys = [np.asarray(y, dtype=np.float64) for y, _, _ in series]
    finite = np.concatenate([y[np.isfinite(y)] for y in ys]) if ys else np.zeros(0)
    y0, y1 = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    x0, x1 = float(np.min(x)), float(np.max(x))
    if x1 == x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    canvas = Canvas(width, height, x0, x1, y0, y1)
    for y, (_, style, ascii_char) in zip(ys, series, strict=True):
        ok = np.isfinite(y)
        canvas.curve(x[ok], y[ok], style, ascii_char)
    return framed(canvas, console, x_label=x_label, y_label=y_label)
