"""The terminal chart of ``bptt analyze``: ``log10 ||dL/dh_t||`` against ``t``.

A few rows of braille (or ASCII, see :mod:`bptt_cli.report.terminal`) as wide as the terminal: the
median over trials, the band between the quartiles when there are several trials, and the
prediction (``rho^(T-t)`` for the Elman cell, anchored at the measured ``t = T``). The vertical
axis is logarithmic: tick labels are powers of ten (``1e-40``), computed from the log10 values,
so norms far outside float64 chart as well as any other.
"""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.text import Text

from bptt_cli.analysis.stats import over_trials
from bptt_cli.core.scaled import Array
from bptt_cli.report.termplot import legend, line_chart, log_ticks, pow10_label, tick_digits

MEDIAN = ("bold yellow", "o")
BAND = ("blue", ":")
PREDICTED = ("magenta", ".")
HEIGHT = 10


def gradient_chart(
    grad_h_log10: Array, console: Console, predicted: Array | None = None,
    predicted_label: str = "predicted", width: int | None = None, height: int = HEIGHT,
) -> Text:
    """The chart of ``grad_h_log10 (n, T)`` (log10 ||dL/dh_t||, index 0 is t = 1) against t.

    ``predicted (T,)``: log10 of the theory's prediction at every t (drawn under the median);
    ``width``: columns of the plot area (default: the console's width less the labels);
    ``height``: about this many rows (made one more than a multiple of the tick steps).
    """
    g = np.asarray(grad_h_log10, dtype=np.float64)
    n, T = g.shape
    t = np.arange(1, T + 1, dtype=np.float64)
    median, q1, q3 = over_trials(g, (0.5, 0.25, 0.75))
    shown = [median] + ([q1, q3] if n > 1 else []) + ([predicted] if predicted is not None else [])
    finite = np.concatenate([v[np.isfinite(v)] for v in shown])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
    y0, y1, ticks = log_ticks(lo, hi, most=6)
    # a whole number of rows per tick step, so that every tick label sits on its value's row
    steps = len(ticks) - 1
    height = steps * max(1, round(height / steps)) + 1
    digits = tick_digits(ticks[1] - ticks[0])

    def label(v: float) -> str:
        return pow10_label(v, digits)

    label_width = max(len(label(v)) for v in ticks)
    if width is None:
        width = max(20, console.width - label_width - 2 - len("  t") - 1)
    series: list[tuple[Array, str, str]] = []
    entries: list[tuple[str, str, str, bool]] = []
    band = None
    if n > 1:
        band = (q1, q3, *BAND)
        entries.append((f"quartiles over {n} trials", *BAND, True))
    if predicted is not None:
        series.append((np.asarray(predicted, dtype=np.float64), *PREDICTED))
        entries.append((predicted_label, *PREDICTED, False))
    series.append((median, *MEDIAN))
    entries.insert(0, ("median ||dL/dh_t||" if n > 1 else "||dL/dh_t||", *MEDIAN, False))
    zeros = int(np.sum(np.isneginf(median)))
    text = Text("||dL/dh_t|| against t (log scale)", style="italic")
    text.append("\n")
    text.append_text(
        line_chart(
            t, series, console, width=width, height=height, x_label="t", band=band,
            y_range=(y0, y1), y_ticks=ticks, y_format=label, x_format=lambda v: f"{v:g}",
        )
    )
    text.append("\n")
    text.append_text(legend(entries, console))
    if zeros:
        text.append(f"   ({zeros} exact zeros not drawn)", style="dim")
    return text


def rho_prediction(grad_h_log10: Array, rho: float) -> Array:
    """``log10 ||dL/dh_T|| + (T - t) log10 rho`` for t = 1..T, the median over trials of the
    measured ``t = T`` as the anchor: the chapter's powers of ``W_hh^T``."""
    g = np.asarray(grad_h_log10, dtype=np.float64)
    T = g.shape[1]
    anchor = float(over_trials(g[:, -1:], (0.5,))[0, 0])
    lag = T - np.arange(1, T + 1, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.log10(rho) if rho > 0 else -np.inf
        out = anchor + lag * slope
    out[-1] = anchor
    return np.asarray(out, dtype=np.float64)
