"""Rich tables for the terminal: header, ||dL/dh_t|| by step, parameter gradients, verdict.

Numbers far outside float64 are printed from their log10 (``3.2e+512``). Rich writes no
escape codes when stdout is not a terminal or TERM=dumb; under NO_COLOR the CLI passes a
Console without a colour system (rich alone would still write bold and italic codes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bptt_cli.analysis.analyze import Analysis, quantiles
from bptt_cli.core.scaled import Array

VERDICT_STYLE = {
    "vanishing": "bold blue",
    "stable": "bold green",
    "exploding": "bold red",
    "undefined": "bold",
}


def pow10(log10: float, digits: int = 3) -> str:
    """``10**log10`` in scientific notation, for any finite ``log10``; ``0`` for ``-inf``."""
    if math.isnan(log10):
        return "-"
    if math.isinf(log10):
        return "0" if log10 < 0 else "inf"
    exponent = math.floor(log10)
    mantissa = 10 ** (log10 - exponent)
    if round(mantissa, digits - 1) >= 10:
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{mantissa:.{digits - 1}f}e{exponent:+d}"


def fmt(x: float, digits: int = 2) -> str:
    """A log10 value, with ``-inf`` (exact zero) as ``-inf`` and NaN as ``-``."""
    if math.isnan(x):
        return "-"
    return f"{x:+.{digits}f}" if math.isfinite(x) else ("-inf" if x < 0 else "+inf")


def _over_trials(values: Array) -> str:
    """Median of ``values``, and ``[q1, q3]`` when there are several trials."""
    if values.size == 1:
        return fmt(float(values[0]))
    med, q1, q3 = quantiles(values, (0.5, 0.25, 0.75))
    return f"{fmt(med)} [{fmt(q1)}, {fmt(q3)}]"


def report_steps(T: int) -> list[int]:
    """Steps t = T, T-1, T-2, T-5, T-10, T-20, T-50, ... and 1."""
    lags, k = [0], 1
    while k < T:
        lags += [lag for lag in (k, 2 * k, 5 * k) if lag < T]
        k *= 10
    return sorted({T - lag for lag in lags} | {1}, reverse=True)


@dataclass(frozen=True)
class GatedRows:
    """What the tables show for a gated cell besides the Elman cell's columns."""

    model: str
    block: str  # the spectrum's matrix
    forget_bias: str | None
    grad_c: Array | None  # log10 ||dL/dc_t||, (n, T)
    product: Array  # log10 of the gate product from t+1 to T, (n, T)
    product_title: str


def gated_rows(an: Analysis) -> GatedRows | None:
    """The gated cell's extra rows and columns, ``None`` for an Elman cell."""
    from bptt_cli.core.gated_network import GATED

    if an.spec.cell not in GATED:  # (before importing the gated modules: start-up time)
        return None
    from bptt_cli.analysis.gated_analysis import GatedAnalysis

    assert isinstance(an, GatedAnalysis)
    lstm = an.spec.cell == "lstm"
    forget_bias = getattr(an.spec, "forget_bias", 0.0)
    return GatedRows(
        model="LSTM (nn.LSTM: gates i, f, g, o)" if lstm else "GRU (nn.GRU: gates r, z, n)",
        block="W_hg" if lstm else "W_hn",
        forget_bias=f"{forget_bias:g} (added to the forget rows of bias_ih_l0)" if lstm else None,
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
    if gated is None:
        header.add_row("model", f"Elman RNN, cell {spec.cell}, loss {spec.loss}, T {T}")
    else:
        header.add_row("model", f"{gated.model}, loss {spec.loss}, T {T}")
    header.add_row("sizes", f"hidden {h}, inputs {d}, outputs {q}")
    W = "W_hh" if gated is None else "weight_hh_l0"
    header.add_row(W, Text(source))
    if drawn:
        header.add_row("drawn", Text(drawn_note(drawn, spec.seed)))
    if gated is not None and gated.forget_bias is not None:
        header.add_row("forget bias", gated.forget_bias)
    block = "W_hh" if gated is None else gated.block
    header.add_row(
        "spectrum",
        f"rho {_over_trials(sp.spectral_radius).replace('+', '')}, "
        f"||{block}||_2 {_over_trials(sp.spectral_norm).replace('+', '')}",
    )
    # Text, not a markup string: rich would swallow "[quartiles]" as a style tag
    header.add_row("trials", Text(f"{n} (seed {spec.seed})" + (", median [quartiles]" if n > 1 else "")))
    if an.memory is not None and an.memory.checkpoint_every is not None:
        header.add_row("memory", f"checkpoint every {an.memory.checkpoint_every} steps")
    console.print(header)


def top_lyapunov(an: Analysis) -> float | None:
    """The median over trials of the top Lyapunov exponent (natural log per step), if computed."""
    lyap = an.theory.lyapunov if an.theory is not None else None
    if lyap is None or lyap.exponents.shape[1] == 0:
        return None
    top = float(quantiles(lyap.exponents[:, 0], (0.5,))[0])
    return top if math.isfinite(top) else None


def render_gradient_chart(an: Analysis, console: Console, gated: GatedRows | None) -> None:
    """The chart of log10 ||dL/dh_t|| against t with the theory's line, anchored at t = T: the
    chapter's ``rho^(T-t)`` (the step table's last column) for an Elman cell; for a gated cell
    the top Lyapunov exponent's ``exp(lambda_1 (T-t))``, which predicts the measured rate (the
    table's gate product is one median unit's and falls faster), or without exponents
    (``--lyapunov 0``) that gate product, labelled as such."""
    from bptt_cli.report.charts import gradient_chart, rho_prediction

    g = an.grad_h_log10
    if g.shape[1] < 2:
        return
    if gated is None:
        rho = float(np.median(an.spectrum.spectral_radius))
        predicted = rho_prediction(g, rho)
        label = f"rho^(T-t), rho {rho:.3g}"
    else:
        anchor = rho_prediction(g, 1.0)  # the measured median at t = T, at every t
        top = top_lyapunov(an)
        if top is not None:
            lag = g.shape[1] - np.arange(1, g.shape[1] + 1)
            predicted = anchor + lag * (top / math.log(10))
            label = f"Lyapunov lambda_1 {top:+.3g}"  # the line e^(lambda_1 (T-t))
        else:
            predicted = anchor + np.median(gated.product, axis=0)
            label = "median unit's " + gated.product_title.replace("log10\n", "").replace("\n", " ")
    console.print(gradient_chart(g, console, predicted, label))


def render_analysis(
    an: Analysis, console: Console, weights: str | None = None, drawn: list[str] | None = None
) -> None:
    """Print the header, the step table, the parameter table, the estimators, the theory and
    the verdict. ``weights``: the file W_hh came from (``--weights``), if any; ``drawn``: the
    arrays drawn at random, named in the header (see :func:`render_header`).
    """
    from bptt_cli.report.truncation_report import render_estimates

    render_header(an, console, weights, drawn)
    gated = gated_rows(an)
    T = an.net.shape[1]
    rho = float(np.median(an.spectrum.spectral_radius))
    g = an.grad_h_log10
    steps = Table(title="Gradient of the loss w.r.t. the hidden state", title_justify="left")
    if gated is None:
        columns = ["t", "T-t", "||dL/dh_t||", "log10", "log10 ratio to t=T", "log10 rho^(T-t)"]
    else:  # more columns: two-line headers, and no 10^x column (it is the log10 column's number)
        columns = ["t", "T-t", "log10\n||dL/dh_t||", "log10\nratio to\nt=T"]
        if gated.grad_c is not None:
            columns.append("log10\n||dL/dc_t||")
        columns.append(gated.product_title)
    for col in columns:
        steps.add_column(col, justify="right")
    for t in report_steps(T):
        lag = T - t
        at_t = g[:, t - 1]
        with np.errstate(invalid="ignore"):
            ratio = at_t - g[:, -1]
        # a gated cell's extra columns, and its ratio, are medians over trials only (the JSON has
        # every trial): the table fits in 80 columns with --trials
        ratio_cell = _over_trials(ratio) if gated is None else fmt(float(quantiles(ratio, (0.5,))[0]))
        cells = [str(t), str(lag), *([pow10(float(np.median(at_t)))] if gated is None else []),
                 _over_trials(at_t), ratio_cell]
        if gated is None:
            cells.append(fmt(0.0 if lag == 0 else (lag * math.log10(rho) if rho > 0 else -math.inf)))
        else:
            if gated.grad_c is not None:
                cells.append(fmt(float(quantiles(gated.grad_c[:, t - 1], (0.5,))[0])))
            cells.append(fmt(float(np.median(gated.product[:, t - 1]))))
        steps.add_row(*cells)
    console.print(steps)
    render_gradient_chart(an, console, gated)

    params = Table(title="Parameter gradients (Frobenius norm)", title_justify="left")
    for col in ("parameter", "shape", "||dL/dparam||", "log10"):
        params.add_column(col, justify="right")
    shapes = {name: arr.shape[1:] for name, arr in an.net.params().items()}
    for name, values in an.grad_params_log10.items():
        params.add_row(
            name, " x ".join(map(str, shapes[name])), pow10(float(np.median(values))),
            _over_trials(values),
        )
    console.print(params)
    render_estimates(an, console)

    if an.theory is not None:
        from bptt_cli.report.theory_tables import render_theory

        render_theory(an, console)

    summary = an.summary()
    v = summary["verdict"]
    line = Text("verdict: ")
    line.append(v, style=VERDICT_STYLE[v])
    gain = summary["gain_log10"]
    if math.isnan(gain):
        line.append(" (dL/dh_T is exactly zero: no gradient to propagate)")
    elif math.isinf(gain):
        line.append(f" (the gradient from t={T} is exactly zero by t=1)")
    else:
        line.append(
            f" (the gradient from t={T} changes by 10^{gain:+.2f} on its way back to t=1; "
            f"tolerance {an.tolerance:g} order{'' if an.tolerance == 1 else 's'} of magnitude)"
        )
    console.print(line)
