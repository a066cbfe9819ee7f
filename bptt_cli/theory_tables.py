"""Rich tables of the theory quantities: the rates side by side, Lyapunov exponents,
horizons, non-normality, and the alignment with the dominant eigenvector.

Median over trials when there are several. Fits in 80 columns.
"""

from __future__ import annotations

import math

import numpy as np
from rich.console import Console
from rich.table import Table

from .analysis import Analysis, quantiles
from .scaled import Array
from .tables import pow10, report_steps


def _med(values: Array) -> float:
    """Median over trials, NaN (undefined) dropped, ``-inf`` kept."""
    return float(quantiles(np.asarray(values, dtype=np.float64), (0.5,))[0])


def _rate(x: float) -> str:
    if math.isnan(x):
        return "-"
    return f"{x:+.4f}" if math.isfinite(x) else ("-inf" if x < 0 else "+inf")


def _lag(values: Array) -> str:
    """Median lag, a horizon never reached counting as infinite; ``-`` when never."""
    med = float(np.median(np.where(np.isnan(values), np.inf, values)))
    if not math.isfinite(med):
        return "-"
    return f"{med:g}"


def render_theory(an: Analysis, console: Console) -> None:
    """Print the theory table (and the alignment table when it was computed)."""
    th = an.theory
    if th is None:
        return
    n, T = an.grad_h_log10.shape
    cell = an.spec.cell
    title = "Theory beside measurement (natural log per step"
    title += f"; median over {n} trials)" if n > 1 else ")"
    table = Table(title=title, title_justify="left")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("what it is")

    lo, hi = th.window[:, 0], th.window[:, 1]
    window = (
        f"lags {_lag(lo)}..{_lag(hi)}" if not np.all(np.isnan(hi)) else "fewer than 2 nonzero lags"
    )
    fitted = "ln||dL/dh_t||" if th.observed_of == "dL/dh_t" else "ln||chain from T||"
    table.add_row("observed rate", _rate(_med(th.rates["observed"])), f"slope of {fitted}, {window}")
    table.add_row("Gelfand rate", _rate(_med(th.rates["gelfand"])), "ln rho(W_hh)")
    gamma = {"sigmoid": "1/4"}.get(cell, "1")
    table.add_row(
        "spectral-norm bound", _rate(_med(th.rates["spectral_norm_bound"])),
        f"ln(gamma ||W_hh||_2), gamma = {gamma}",
    )
    mf = th.mean_field
    if mf is None:
        table.add_row("mean-field rate", "-", f"n/a: {th.mean_field_reason}")
    else:
        q = _med(mf.q_star)
        q_text = f"{q:.3g}" if math.isfinite(q) else "inf"
        table.add_row(
            "mean-field rate", _rate(_med(th.rates["mean_field"])),
            f"1/2 ln chi_1, chi_1 = {_med(mf.chi_1):.4g}, q* = {q_text}",
        )
    if th.lyapunov is not None:
        ly = th.lyapunov
        values = " ".join(_rate(_med(c)).replace("+0.", "+.").replace("-0.", "-.") for c in ly.exponents.T)
        table.add_row(
            "Lyapunov exponents", values,
            f"QR method, {ly.transient} steps discarded, {ly.steps} averaged",
        )
    table.add_row("vanishing horizon", _lag(th.vanish), "first lag with ||dL/dh|| < 1e-8 ||dL/dh_T||")
    table.add_row("exploding horizon", _lag(th.explode), "first lag with ||dL/dh|| > 1e8 ||dL/dh_T||")
    memory = th.effective_memory
    table.add_row(
        "effective memory",
        "-" if np.all(np.isnan(memory)) else f"{float(np.nanmedian(memory)):g}",
        "last k steps give dL/dW_hh within 5% (last loss)",
    )
    table.add_row("Henrici departure", f"{_med(th.henrici):.3f}", "0 for a normal W_hh, up to 1")
    g = th.growth
    peak = _med(g.peak_log10)
    k = float(np.median(g.k))
    up_to = float(np.min(g.up_to))
    how = {"all": "every k", "search": "searched", "sampled": "sampled"}[g.method[0]] if n == 1 else "median"
    reach = f"k <= {up_to:g}" if up_to < T else "k <= T"
    table.add_row("peak ||W_hh^k||_2", pow10(peak), f"at k = {k:g} ({how}, {reach})")
    table.add_row("numerical abscissa", f"{_med(th.abscissa):.4g}", "max eig((W_hh + W_hh^T)/2)")
    console.print(table)
    render_alignment(an, console)


def render_alignment(an: Analysis, console: Console) -> None:
    """``||P g_t|| / ||g_t||`` and ``log10 tan theta_t`` at the reported steps, beside the rate."""
    th = an.theory
    if th is None or th.projection is None or th.tan_log10 is None:
        return
    dom = th.dominant
    T = th.projection.shape[1]
    ratio = _med(dom.ratio)
    dims = set(dom.dimension.tolist())
    what = "plane of the leading complex pair" if dims == {2} else "leading eigenvector"
    log_ratio = math.log10(ratio) if ratio > 0 else -math.inf
    title = (
        f"Alignment of dL/dh_t with the {what} of W_hh^T; |lambda_2/lambda_1| = {ratio:.4g}"
        if math.isfinite(ratio) else "Alignment of dL/dh_t: W_hh has no nonzero eigenvalue"
    )
    table = Table(title=title, title_justify="left")
    for col in ("t", "T-t", "||P g_t||/||g_t||", "log10 tan", "log10 tan_T + (T-t) log10|l2/l1|"):
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
