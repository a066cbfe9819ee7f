"""Rich tables of the theory quantities: the rates side by side, Lyapunov exponents,
horizons, non-normality, and the alignment with the dominant eigenvector; and the output
of ``bptt spectrum``.

Median over trials when there are several. Fits in 80 columns.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bptt_cli.analysis.result import Analysis, layer_name
from bptt_cli.analysis.spectrum import SpectrumReport
from bptt_cli.analysis.stats import median, nanmedian, quantiles
from bptt_cli.core.scaled import Array
from bptt_cli.report.format import pow10, report_steps


def _med(values: Array) -> float:
    """Median over trials, NaN (undefined) dropped, ``-inf`` kept."""
    return float(quantiles(np.asarray(values, dtype=np.float64), (0.5,))[0])


def _rate(x: float) -> str:
    if math.isnan(x):
        return "-"
    return f"{x:+.4f}" if math.isfinite(x) else ("-inf" if x < 0 else "+inf")


def _lag(values: Array) -> str:
    """Median lag, a horizon never reached counting as infinite; ``-`` when never."""
    med = float(median(np.where(np.isnan(values), np.inf, values)))
    if not math.isfinite(med):
        return "-"
    return f"{med:g}"


def render_theory(an: Analysis, console: Console, layer: Any = None) -> None:
    """Print the theory table (and the alignment table when it was computed); of ``layer`` (a
    :class:`~bptt_cli.analysis.result.LayerAnalysis` of a stack) when given."""
    th = an.theory if layer is None else layer.theory
    if th is None:
        return
    n, T = an.grad_h_log10.shape
    title = "Theory beside measurement: rates in natural log per step"
    if layer is not None:
        title += f" ({layer_name(layer.layer, layer.direction)})"
    title += f"; median over {n} trials" if n > 1 else ""
    table = Table(title=title, title_justify="left")
    table.add_column("quantity", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("note")

    lo, hi = th.window[:, 0], th.window[:, 1]
    window = f"lags {_lag(lo)}..{_lag(hi)}" if not np.all(np.isnan(hi)) else "< 2 nonzero lags"
    fitted = "ln||dL/dh_t||" if th.observed_of == "dL/dh_t" else "ln||last step's chain||"
    table.add_row("observed rate", _rate(_med(th.rates["observed"])), f"fit of {fitted}, {window}")
    M = th.matrix
    gamma = "1/4" if an.spec.cell == "sigmoid" else "1"
    for name, label, note in (
        ("gelfand", "Gelfand rate", f"ln rho({M})"),
        ("spectral_norm_bound", "spectral-norm bound", f"ln(gamma ||{M}||_2), gamma {gamma}"),
    ):
        reason = th.reasons.get(name)
        value = _rate(_med(th.rates[name]))
        table.add_row(label, value, note if reason is None else f"n/a: {reason}")
    mf = th.mean_field
    if mf is None:
        table.add_row("mean-field rate", "-", f"n/a: {th.mean_field_reason}")
    else:
        q = _med(mf.q_star)
        q_text = f"{q:.3g}" if math.isfinite(q) else "inf"
        table.add_row(
            "mean-field rate", _rate(_med(th.rates["mean_field"])),
            f"1/2 ln chi_1; chi_1 {_med(mf.chi_1):.4g}, q* {q_text}",
        )
    if th.lyapunov is not None:
        ly = th.lyapunov
        top = [_med(c) for c in ly.exponents.T]
        short = [f"{x:+.3f}".replace("0.", ".", 1) if math.isfinite(x) else _rate(x) for x in top[1:]]
        rest = f"{' '.join(short)}; " if short else ""
        table.add_row("Lyapunov exponent", _rate(top[0]), f"{rest}{ly.transient} skipped, {ly.steps} used")
    table.add_row("vanishing horizon", _lag(th.vanish), "lag of ||dL/dh|| < 1e-8 ||dL/dh_T||")
    table.add_row("exploding horizon", _lag(th.explode), "lag of ||dL/dh|| > 1e8 ||dL/dh_T||")
    memory = th.effective_memory
    table.add_row(
        "effective memory",
        "-" if np.all(np.isnan(memory)) else f"{float(nanmedian(memory)):g}",
        "steps giving dL/dW_hh to 5% (last loss)" if M == "W_hh"
        else "steps for dL/dweight_hh_l0 to 5% (last loss)",
    )
    table.add_row("Henrici departure", f"{_med(th.henrici):.3f}", f"0 for a normal {M}, at most 1")
    g = th.growth
    k = float(median(g.k))
    up_to = float(np.min(g.up_to))
    how = {"all": "every k", "search": "searched", "sampled": "sampled"}[g.method[0]] if n == 1 else "median"
    reach = f"k <= {up_to:g}" if up_to < T else "k <= T"
    table.add_row(f"peak ||{M}^k||_2", pow10(_med(g.peak_log10)), f"at k {k:g} ({how}, {reach})")
    table.add_row("numerical abscissa", f"{_med(th.abscissa):.4g}", f"max eig(({M} + {M}^T)/2)")
    if th.dominant is None and "alignment" in th.reasons:
        table.add_row("alignment", "-", f"n/a: {th.reasons['alignment']}")
    console.print(table)
    if layer is None or (layer.layer, layer.direction) == (0, 0):  # the alignment is layer 0's
        render_alignment(an, console)


def render_alignment(an: Analysis, console: Console) -> None:
    """``||P g_t|| / ||g_t||`` and ``log10 tan theta_t`` at the reported steps, beside the rate."""
    th = an.theory
    if th is None or th.dominant is None or th.projection is None or th.tan_log10 is None:
        return
    dom = th.dominant
    T = th.projection.shape[1]
    ratio = _med(dom.ratio)
    dims = set(dom.dimension.tolist())
    what = "leading complex pair's plane" if dims == {2} else "leading eigenvector"
    log_ratio = math.log10(ratio) if ratio > 0 else -math.inf
    title = (
        f"Alignment of g_t = dL/dh_t with the {what} of W_hh^T, |lambda_2/lambda_1| = {ratio:.4g}"
        if math.isfinite(ratio) else "Alignment of dL/dh_t: W_hh has no nonzero eigenvalue"
    )
    caption = "tan = ||(I-P) g_t|| / ||P g_t||; predicted: log10 tan at t=T + (T-t) log10 |lambda_2/lambda_1|"
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left", min_width=78)
    for col in ("t", "T-t", "||P g_t||/||g_t||", "log10 tan", "predicted"):
        table.add_column(col, justify="right")
    tan_T = _med(th.tan_log10[:, -1])
    for t in report_steps(T):
        lag = T - t
        proj = _med(th.projection[:, t - 1])
        tan = _med(th.tan_log10[:, t - 1])
        with np.errstate(invalid="ignore"):
            predicted = tan_T + lag * log_ratio if lag else tan_T
        table.add_row(
            str(t), str(lag), "-" if math.isnan(proj) else f"{proj:.6f}",
            _fmt_log(tan), _fmt_log(predicted),
        )
    console.print(table)


def _fmt_log(x: float) -> str:
    if math.isnan(x):
        return "-"
    return f"{x:+.2f}" if math.isfinite(x) else ("-inf" if x < 0 else "+inf")


def render_spectrum(rep: SpectrumReport, console: Console, top: int = 8) -> None:
    """Header, the spectrum's summary beside the prediction, the eigenvalue plot, the leading values."""
    from bptt_cli.report.termplot import complex_plane, legend

    spec, sp = rep.spec, rep.spectrum
    n, h = sp.eigenvalues.shape
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    scale = f"radius {spec.radius:g}" if spec.radius is not None else (
        f"norm {spec.norm:g}" if spec.norm is not None else f"gain {spec.gain:g}"
    )
    header.add_row("W_hh", f"{h} x {h}, " + (f"{spec.ensemble}, {scale}" if rep.seeds else "from file"))
    header.add_row("trials", f"{n} (seed {spec.seed})" + (", median over trials" if n > 1 else ""))
    stacked = len(rep.layers) > 1
    if stacked:
        sides = ", both directions" if spec.bidirectional else ""
        header.add_row("layers", f"{spec.layers}{sides}: layer 0 forward below, all in the last table")
    console.print(header)

    table = Table(title="Spectrum of W_hh" + (" (layer 0, forward)" if stacked else ""), title_justify="left")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("note")
    rho = _med(sp.spectral_radius)
    if rep.predicted_radius is not None:
        table.add_row("predicted radius", f"{rep.predicted_radius:.4g}", rep.law or "")
        off = f"{100 * _med(rep.relative_error):+.2f}% from the prediction"
        table.add_row("spectral radius rho", f"{rho:.4g}", off)
    else:
        table.add_row("spectral radius rho", f"{rho:.4g}", "no prediction: " + (
            "W_hh from a file" if not rep.seeds else "rescaled by --radius/--norm"
        ))
    table.add_row("spectral norm ||W||_2", f"{_med(sp.spectral_norm):.4g}", "largest singular value")
    cond = _med(sp.condition_number)
    cond_text = f"{cond:.4g}" if math.isfinite(cond) else "inf"
    table.add_row("condition number", cond_text, "sigma_max / sigma_min")
    table.add_row("Henrici departure", f"{_med(rep.henrici):.3f}", "0 for a normal matrix, up to 1")
    table.add_row("numerical abscissa", f"{_med(rep.abscissa):.4g}", "max eig((W + W^T)/2)")
    g = rep.growth
    table.add_row(
        "peak ||W^k||_2", pow10(_med(g.peak_log10)), f"at k = {float(median(g.k)):g}, k <= {spec.T}"
    )
    console.print(table)

    circles = [(1.0, "cyan", ".")]
    if rep.predicted_radius is not None and abs(rep.predicted_radius - 1.0) > 1e-9:
        circles.append((rep.predicted_radius, "magenta", ":"))
    what = "unit circle" + (", predicted radius" if len(circles) > 1 else "")
    console.print(Text(f"Eigenvalues in the complex plane ({n * h} points; {what})", style="italic"))
    console.print(complex_plane(sp.eigenvalues.ravel(), console, circles))
    entries = [("eigenvalues", "bold yellow", "*", False), ("unit circle", "cyan", ".", False)]
    if len(circles) > 1:
        entries.append((f"predicted radius {rep.predicted_radius:.3g}", "magenta", ":", False))
    console.print(legend(entries, console))

    title = "Largest eigenvalues, singular values" + (" (trial 0)" if n > 1 else "")
    values = Table(title=title, title_justify="left")
    for col in ("i", "eigenvalue", "|lambda|", "singular value"):
        values.add_column(col, justify="right")
    for i in range(min(top, h)):
        lam = complex(sp.eigenvalues[0, i])
        sigma = f"{sp.singular_values[0, i]:.4f}"
        values.add_row(str(i + 1), f"{lam.real:+.4f} {lam.imag:+.4f}i", f"{abs(lam):.4f}", sigma)
    console.print(values)
    if stacked:
        console.print(layer_spectra(rep))


def layer_spectra(rep: SpectrumReport) -> Table:
    """One row per layer and direction of a stacked or bidirectional network (medians over trials)."""
    many = rep.spectrum.eigenvalues.shape[0] > 1
    table = Table(title="Every layer's W_hh" + (", median over trials" if many else ""), title_justify="left")
    for col in ("layer", "direction", "rho", "||W||_2", "Henrici", "abscissa", "peak ||W^k||_2"):
        table.add_column(col, justify="right")
    for lay in rep.layers:
        sp = lay.spectrum
        table.add_row(
            str(lay.layer), ("forward", "reverse")[lay.direction], f"{_med(sp.spectral_radius):.4g}",
            f"{_med(sp.spectral_norm):.4g}", f"{_med(lay.henrici):.3f}", f"{_med(lay.abscissa):.4g}",
            pow10(_med(lay.growth.peak_log10)),
        )
    return table
