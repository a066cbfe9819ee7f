"""The header of the analysis tables: the model, its sizes, where ``W_hh`` came from, its spectrum, the
trials and the memory mode, one per line; and what a gated cell shows besides the Elman columns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bptt_cli.analysis.result import Analysis, GatedAnalysis
from bptt_cli.analysis.stats import median
from bptt_cli.core.scaled import Array
from bptt_cli.core.stack import DIRECTIONS
from bptt_cli.report.format import over_trials


@dataclass(frozen=True)
class GatedRows:
    """What the tables show for a gated cell besides the Elman cell's columns."""

    model: str
    block: str  # the spectrum's matrix
    forget_bias: str | None
    grad_c: Array | None  # log10 ||dL/dc_t||, (n, T)
    product: Array | None  # log10 of the gate product from t+1 to T, (n, T)
    product_title: str


def gated_rows(an: Analysis) -> GatedRows | None:
    """The gated cell's extra rows and columns, ``None`` for an Elman cell."""
    if not isinstance(an, GatedAnalysis):
        return None
    lstm = an.spec.cell == "lstm"
    forget_bias = getattr(an.spec, "forget_bias", 0.0)
    return GatedRows(
        model="LSTM (nn.LSTM: gates i, f, g, o)" if lstm else "GRU (nn.GRU: gates r, z, n)",
        block="W_hg" if lstm else "W_hn",
        forget_bias=(f"{forget_bias:g} (added to the forget rows of "
                     f"{'every layer' + chr(39) + 's bias_ih' if an.spec.stacked else 'bias_ih_l0'})")
        if lstm else None,
        grad_c=an.grad_c_log10,
        product=an.gate_product_log10,
        product_title="log10\nprod f_s,\ns>t" if lstm else "log10\nprod z_s,\ns>t",
    )


def drawn_note(drawn: list[str], seed: int) -> str:
    """``W_qh, b_q drawn (seed 0): not in the files``: what a run with files drew at random."""
    return f"{', '.join(drawn)} drawn at random (seed {seed}): not in the files"


def render_header(
    an: Analysis, console: Console, weights: str | None = None, drawn: list[str] | None = None
) -> None:
    """The model, sizes, W_hh, spectrum and trials, one per line.

    ``weights``: the file W_hh came from (``--weights``), if any; ``drawn``: the arrays drawn at
    random, to be named on a line of their own (the caller passes them when files gave others).
    """
    spec, sp = an.spec, an.spectrum
    n, T, h, d, q = an.net.shape
    rescaled = f"radius {spec.radius:g}" if spec.radius is not None else (
        f"norm {spec.norm:g}" if spec.norm is not None else None
    )
    if weights is not None:
        source = f"from {weights}" + (f", rescaled to {rescaled}" if rescaled else "")
    else:
        source = f"{spec.ensemble}, {rescaled or f'gain {spec.gain:g}'}"
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    gated = gated_rows(an)
    depth = ""
    if spec.layers > 1 or spec.bidirectional:
        depth = f", {spec.layers} layer{'s' if spec.layers > 1 else ''}"
        depth += ", bidirectional" if spec.bidirectional else ""
    loss = f"loss {spec.loss}" + (f" {spec.criterion}" if spec.criterion != "mse" else "")
    if gated is None:
        header.add_row("model", f"Elman RNN, cell {spec.cell}{depth}, {loss}, T {T}")
    else:
        header.add_row("model", f"{gated.model}{depth}, {loss}, T {T}")
    inputs = f"{d}" + (" (autonomous)" if d == 0 else "")
    header.add_row("sizes", f"hidden {h}, inputs {inputs}, outputs {q}")
    W = "W_hh" if gated is None else "weight_hh_l0"
    header.add_row(W, Text(source))
    if drawn:
        header.add_row("drawn", Text(drawn_note(drawn, spec.seed)))
    if gated is not None and gated.forget_bias is not None:
        header.add_row("forget bias", gated.forget_bias)
    if spec.h0 != "zeros":
        header.add_row("h0", Text("N(0, 1) per unit" if spec.h0 == "random" else f"from {spec.h0}"))
    elif d == 0:  # nothing moves the autonomous network off h = 0 but its bias
        header.add_row("h0", Text("zeros, and no input: unless b_h moves it the state stays at the fixed "
                                  "point 0 (--h0 random starts it elsewhere)"))
    block = "W_hh" if gated is None else gated.block
    header.add_row(
        "spectrum",
        f"rho {over_trials(sp.spectral_radius).replace('+', '')}, "
        f"||{block}||_2 {over_trials(sp.spectral_norm).replace('+', '')}",
    )
    if len(an.layers) > 1:  # one line per layer and direction: its spectrum, gain and verdict
        for lay in an.layers:
            name = f"layer {lay.layer}" + (f" {DIRECTIONS[lay.direction]}" if spec.bidirectional else "")
            gain = lay.median_gain_log10
            shown = (f"10^{gain:+.2f}" if np.isfinite(gain) else "0 (exactly zero by the end)"
                     if gain == -np.inf else "- (no gradient at its start)")
            rho = float(median(lay.spectrum.spectral_radius))
            header.add_row(name, f"rho {rho:.3g}, gain {shown}, {lay.verdict}")
    # Text, not a markup string: rich would swallow "[quartiles]" as a style tag
    header.add_row("trials", Text(f"{n} (seed {spec.seed})" + (", median [quartiles]" if n > 1 else "")))
    if an.memory is not None and an.memory.checkpoint_every is not None:
        header.add_row("memory", f"checkpoint every {an.memory.checkpoint_every} steps")
    console.print(header)
