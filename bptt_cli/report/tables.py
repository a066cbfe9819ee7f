"""The analysis in rich tables: header, ||dL/dh_t|| by step, its chart, parameter gradients, the
estimators, the theory, and the verdict.

Numbers far outside float64 are printed from their log10 (``3.2e+512``). Rich writes no
escape codes when stdout is not a terminal or TERM=dumb; under NO_COLOR the CLI passes a
Console without a colour system (rich alone would still write bold and italic codes).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bptt_cli.analysis.result import Analysis, LayerAnalysis, layer_name
from bptt_cli.analysis.stats import median, quantiles
from bptt_cli.core.stack import DIRECTIONS
from bptt_cli.errors import BadInput
from bptt_cli.report.charts import gradient_chart, rho_prediction
from bptt_cli.report.estimator_tables import render_estimates
from bptt_cli.report.format import VERDICT_STYLE, fmt, over_trials, pow10, report_steps
from bptt_cli.report.header import GatedRows, gated_rows, render_header
from bptt_cli.report.theory_tables import render_theory


def top_lyapunov(an: Analysis | LayerAnalysis) -> float | None:
    """The median over trials of the top Lyapunov exponent (natural log per step), if computed."""
    lyap = an.theory.lyapunov if an.theory is not None else None
    if lyap is None or lyap.exponents.shape[1] == 0:
        return None
    top = float(quantiles(lyap.exponents[:, 0], (0.5,))[0])
    return top if math.isfinite(top) else None


def render_gradient_chart(lay: LayerAnalysis, console: Console, gated: GatedRows | None) -> None:
    """The chart of one layer's log10 ||dL/dh_t|| against t with the theory's line, anchored at
    t = T: the chapter's ``rho^(T-t)`` (the step table's last column) for an Elman cell; for a gated
    cell the top Lyapunov exponent's ``exp(lambda_1 (T-t))``, which predicts the measured rate (the
    table's gate product is one median unit's and falls faster), or without exponents
    (``--lyapunov 0``) that gate product, labelled as such."""
    g = lay.grad_h_log10
    if g.shape[1] < 2:
        return
    if gated is None:
        rho = float(median(lay.spectrum.spectral_radius))
        predicted = rho_prediction(g, rho)
        label = f"rho^(T-t), rho {rho:.3g}"
    else:
        anchor = rho_prediction(g, 1.0)  # the measured median at t = T, at every t
        top = top_lyapunov(lay)
        if top is not None:
            lag = g.shape[1] - np.arange(1, g.shape[1] + 1)
            predicted = anchor + lag * (top / math.log(10))
            label = f"Lyapunov lambda_1 {top:+.3g}"  # the line e^(lambda_1 (T-t))
        elif gated.product is not None:
            predicted = anchor + median(gated.product, axis=0)
            label = "median unit's " + gated.product_title.replace("log10\n", "").replace("\n", " ")
        else:
            predicted, label = anchor, "t = T's level"
    console.print(gradient_chart(g, console, predicted, label))


def layer_index(an: Analysis, layer: int = 0, direction: int = 0) -> int:
    """The index in ``an.layers`` of layer ``layer``, direction ``direction``; :class:`BadInput`
    naming ``--layer`` when the network has no such layer."""
    for i, lay in enumerate(an.layers):
        if (lay.layer, lay.direction) == (layer, direction):
            return i
    L = max(lay.layer for lay in an.layers) + 1
    D = max(lay.direction for lay in an.layers) + 1
    what = f"{L} layer{'s' if L > 1 else ''}" + (", each in both directions" if D == 2 else ", one direction")
    name = f"{layer}" + (":reverse" if direction else "")
    raise BadInput(f"--layer {name}: the network has {what} (layers 0..{L - 1})")


def render_analysis(
    an: Analysis, console: Console, weights: str | None = None, drawn: list[str] | None = None,
    layer: int = 0, direction: int = 0,
) -> None:
    """Print the header, the step table and chart (of ``layer``, ``direction``: 0, forward by
    default), the parameter table, the estimators, the theory (or a line saying it was not
    computed) and the verdict. ``weights``: the
    file W_hh came from (``--weights``), if any; ``drawn``: the arrays drawn at random, named in the
    header (see :func:`render_header`).
    """
    index = layer_index(an, layer, direction)
    lay = an.layers[index]
    render_header(an, console, weights, drawn)
    gated = gated_rows(an)
    if gated is not None and index:  # the gate columns are layer 0's: not shown for another layer
        gated = replace(gated, grad_c=None, product=None)
    T = an.net.shape[1]
    rho = float(median(lay.spectrum.spectral_radius))
    g = lay.grad_h_log10
    title = "Gradient of the loss w.r.t. the hidden state"
    if len(an.layers) > 1:
        title += f" of layer {lay.layer}" + (f", {DIRECTIONS[lay.direction]}" if len(an.layers) > 1 else "")
    steps = Table(title=title, title_justify="left")
    if gated is None:
        columns = ["t", "T-t", "||dL/dh_t||", "log10", "log10 ratio to t=T", "log10 rho^(T-t)"]
    else:  # more columns: two-line headers, and no 10^x column (it is the log10 column's number)
        columns = ["t", "T-t", "log10\n||dL/dh_t||", "log10\nratio to\nt=T"]
        if gated.grad_c is not None:
            columns.append("log10\n||dL/dc_t||")
        if gated.product is not None:
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
        ratio_cell = over_trials(ratio) if gated is None else fmt(float(quantiles(ratio, (0.5,))[0]))
        cells = [str(t), str(lag), *([pow10(float(median(at_t)))] if gated is None else []),
                 over_trials(at_t), ratio_cell]
        if gated is None:
            cells.append(fmt(0.0 if lag == 0 else (lag * math.log10(rho) if rho > 0 else -math.inf)))
        else:
            if gated.grad_c is not None:
                cells.append(fmt(float(quantiles(gated.grad_c[:, t - 1], (0.5,))[0])))
            if gated.product is not None:
                cells.append(fmt(float(median(gated.product[:, t - 1]))))
        steps.add_row(*cells)
    console.print(steps)
    render_gradient_chart(lay, console, gated)

    params = Table(title="Parameter gradients (Frobenius norm)", title_justify="left")
    for col in ("parameter", "shape", "||dL/dparam||", "log10"):
        params.add_column(col, justify="right")
    shapes = {name: arr.shape[1:] for name, arr in an.net.params().items()}
    rows = dict(an.grad_params_log10)
    if len(an.layers) > 1:  # every layer's parameters by PyTorch's name, then the output layer's
        rows = {k: v for lay in an.layers for k, v in lay.grad_params_log10.items()}
        rows.update({k: an.grad_params_log10[k] for k in ("W_qh", "b_q")})
    for name, values in rows.items():
        params.add_row(
            name, " x ".join(map(str, shapes[name])), pow10(float(median(values))),
            over_trials(values),
        )
    console.print(params)
    render_estimates(an, console)

    if an.theory is not None:  # of the layer the step table shows
        render_theory(an, console, lay if len(an.layers) > 1 else None)
    else:
        console.print(Text("theory: not computed (--no-theory)", style="dim"))

    v = an.verdict
    line = Text("verdict: ")
    line.append(v, style=VERDICT_STYLE[v])
    gain, which, start, end = an.median_gain_log10, "", T, 1
    if len(an.layers) > 1:  # the worst layer's verdict: say whose, with its own gain
        worst = an.worst_layer()
        gain = worst.median_gain_log10
        which = f"worst of the layers: {layer_name(worst.layer, worst.direction)}; "
        if worst.direction == 1:  # a reverse direction's gradient travels from t = 1 towards T
            start, end = 1, T
    if math.isnan(gain):
        line.append(f" ({which}dL/dh_{start} is exactly zero: no gradient to propagate)")
    elif math.isinf(gain):
        line.append(f" ({which}the gradient from t={start} is exactly zero by t={end})")
    else:
        line.append(
            f" ({which}the gradient from t={start} changes by 10^{gain:+.2f} on its way "
            f"{'back ' if start == T else ''}to t={end}; "
            f"tolerance {an.tolerance:g} order{'' if an.tolerance == 1 else 's'} of magnitude)"
        )
    console.print(line)
