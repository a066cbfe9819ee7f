"""Figures for ``--plot`` and ``bptt plot``: pure functions of the JSON records (matplotlib).

Every figure is built from the dicts that ``--format json`` (analyze, spectrum) or the sweep
records hold, never from the computation, so a saved run redraws identically. Values that
are log10 of norms are drawn as numbers on a linear axis labelled ``log10 ...``: they are
never exponentiated (a norm of 10^500 is the number 500 here). ``null`` in a log10 series is an
exact zero and is left out of the curves.

- :func:`analysis_figure`: ``log10 ||dL/dh_t||`` against t (median, quartile and min-max
  bands over trials) beside the chapter's ``rho^(T-t)`` and the mean-field prediction; each
  parameter gradient's step terms by lag; the alignment with the leading eigenvector beside
  its prediction ``|lambda_2/lambda_1|^(T-t)``.
- :func:`spectrum_figure`: eigenvalues against the unit circle and the ensemble's law (the
  circular law's disk, ...); singular values beside the quarter-circle law.
- :func:`sweep_figure`: the phase diagram (a heat map of the median gain on a symmetric log
  colour scale, the verdict boundary ``|gain| = tolerance`` measured and predicted) and, when
  T is an axis of it, the gain against T, one curve per value of the other axis.

Uses the object-oriented API on an Agg canvas (no pyplot, no global state, no display).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import SymLogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from bptt_cli import __version__
from bptt_cli.analysis.stats import log10_array, over_trials
from bptt_cli.core.scaled import LN10, Array
from bptt_cli.io.points import Axis, cell_text
from bptt_cli.report.heatmap import layout

DPI = 150
ANALYZE_SIZE = (10.0, 7.5)  # inches
SPECTRUM_SIZE = (10.0, 4.8)
SWEEP_ROW_HEIGHT = 4.8
SWEEP_WIDTH = (7.0, 13.0)  # heat map alone, heat map and curves
STYLE: dict[str, Any] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
}
MEASURED, RHO, MEAN_FIELD, GATE = "#1f4e9c", "#d62728", "#2ca02c", "#9467bd"
VERDICT_SIGN = {"vanishing": -1.0, "stable": 0.0, "exploding": 1.0}
PREDICTED_BOUNDARY = "#22c55e"  # bright green: visible on the light and the dark cells
PARAM_LABELS = {"W_hh": "$W_{hh}$", "W_hx": "$W_{hx}$", "W_qh": "$W_{qh}$", "b_h": "$b_h$", "b_q": "$b_q$"}
AXIS_LABELS = {
    "T": "sequence length T (steps)",
    "radius": r"spectral radius $\rho(W_{hh})$",
    "gain": "ensemble gain",
    "norm": r"spectral norm $\|W_{hh}\|_2$",
    "hidden": "hidden size h",
    "bias": "bias std",
    "cell": "cell",
    "tolerance": "tolerance (orders of magnitude)",
}
GRAD_H = r"$\log_{10}\,\|\partial L/\partial h_t\|$"


def _rc() -> Any:
    """The figures' style (a ``matplotlib.rc_context``)."""
    import matplotlib

    return matplotlib.rc_context(STYLE)  # type: ignore[arg-type]


def _figure(size: tuple[float, float]) -> Figure:
    with _rc():
        fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _caption(fig: Figure, text: str) -> None:
    """The settings in a small line (wrapped) along the bottom edge, with room reserved for it."""
    width, height = fig.get_size_inches()
    lines = textwrap.wrap(text, width=int(width * 16))
    room = (0.16 * len(lines) + 0.08) / height
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.set(rect=(0.0, room, 1.0, 1.0 - room))  # type: ignore[call-arg]
    fig.text(0.01, 0.04 / height, "\n".join(lines), fontsize=7.5, color="0.3", ha="left", va="bottom")


SETTING_KEYS = ("cell", "loss", "criterion", "T", "hidden", "layers", "bidirectional", "h0", "inputs_dim",
                "outputs_dim", "ensemble", "gain", "radius",
                "norm", "bias", "forget_bias", "trials", "seed", "tolerance", "weights", "inputs", "targets")
GATED_CELLS = ("lstm", "gru")


def _settings(config: Mapping[str, Any], skip: Sequence[str] = ()) -> str:
    """``cell identity, loss last, T 200, ...``: the resolved settings worth naming."""
    parts = []
    for key in SETTING_KEYS:
        value = config.get(key)
        if key in skip or value is None:
            continue
        if key == "gain" and (config.get("radius") is not None or config.get("norm") is not None):
            continue
        if key in ("ensemble", "gain") and config.get("weights") is not None:
            continue
        if key in ("bias", "forget_bias") and value == 0:
            continue
        if (key, value) in (("criterion", "mse"), ("layers", 1), ("bidirectional", False), ("h0", "zeros")):
            continue  # the defaults of a one-layer network are not worth naming
        if key == "bidirectional":
            parts.append("bidirectional")
            continue
        if key == "forget_bias" and config.get("cell") != "lstm":
            continue
        parts.append(f"{key.replace('_', ' ')} {cell_text(value)}")
    drawn = config.get("drawn")
    from_files = any(config.get(k) is not None for k in ("weights", "inputs", "targets"))
    if drawn and from_files and "drawn" not in skip:
        parts.append(f"drawn at random: {' '.join(drawn)}")
    return ", ".join(parts)


def _sweep_settings(records: Sequence[Mapping[str, Any]], swept: Sequence[str]) -> str:
    """The settings of a sweep's caption: the first record's (:func:`_settings`, less the swept
    axes), except a setting whose resolved value differs between the records although it is not
    swept (a default that depends on the cell: ``ensemble`` gaussian for the Elman cells, uniform
    for lstm and gru), which is listed with the cells of each value."""
    configs = [r.get("config") or {} for r in records]
    varying = [
        key for key in SETTING_KEYS if key not in swept
        and len({cell_text(v) for c in configs if (v := c.get(key)) is not None}) > 1
    ]
    parts = [_settings(configs[0], [*swept, *varying])]
    for key in varying:
        groups: dict[str, list[str]] = {}
        for c in configs:
            if c.get(key) is not None:
                cells = groups.setdefault(cell_text(c[key]), [])
                if str(c.get("cell")) not in cells:
                    cells.append(str(c.get("cell")))
        listed = ", ".join(f"{value} ({', '.join(cells)})" for value, cells in groups.items())
        parts.append(f"{key.replace('_', ' ')} {listed}")
    return ", ".join(p for p in parts if p)


def _finite(values: Array) -> Array:
    v = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(v), v, np.nan)


def _median_over(values: Sequence[Any]) -> float:
    v = np.array([np.nan if x is None else float(x) for x in values], dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(np.median(v)) if v.size else math.nan


# ----------------------------------------------------------------------------- analyze
def analysis_figure(record: Mapping[str, Any]) -> Figure:
    """The figure of one ``bptt analyze --format json`` record (see the module doc)."""

    config, trials = record["config"], record["trials"]
    g = log10_array([tr["grad_h_log10"] for tr in trials])
    T = g.shape[1]
    terms = [tr.get("grad_param_terms_log10") for tr in trials]
    tans = [(tr.get("alignment") or {}).get("tan_log10") for tr in trials]
    has_terms = all(t is not None for t in terms)
    has_alignment = (
        T > 1 and all(t is not None for t in tans) and any(v is not None for t in tans for v in t or ())
    )
    with _rc():
        fig = _figure(ANALYZE_SIZE if (has_terms or has_alignment) else (10.0, 4.5))
        if has_terms or has_alignment:
            grid = fig.add_gridspec(2, 2, height_ratios=(1.15, 1.0))
            top = fig.add_subplot(grid[0, :])
            lower = [fig.add_subplot(grid[1, i]) for i in range(2 if has_terms and has_alignment else 1)]
            if len(lower) == 1:
                lower[0].remove()
                lower = [fig.add_subplot(grid[1, :])]
        else:
            top, lower = fig.add_subplot(1, 1, 1), []
        if len(trials[0].get("layers") or ()) > 1:
            _layers_panel(top, record)
        else:
            _gradient_panel(top, record, g)
        panels = iter(lower)
        if has_terms:
            _terms_panel(next(panels), terms, T, config.get("loss", "last"))
        if has_alignment:
            _alignment_panel(next(panels), trials, tans, T)
        cell = config.get("cell", "identity")
        title = "LSTM" if cell == "lstm" else "GRU" if cell == "gru" else f"Elman RNN ({cell} cell)"
        fig.suptitle(f"Backpropagation through time: {title}, T = {T}", fontsize=11)
        _caption(fig, f"bptt {record.get('version', __version__)} analyze: {_settings(config)}")
    return fig


def _gradient_panel(ax: Any, record: Mapping[str, Any], g: Array) -> None:
    trials, config = record["trials"], record["config"]
    n, T = g.shape
    t = np.arange(1, T + 1)
    lag = (T - t).astype(np.float64)
    median, q1, q3, lo, hi = over_trials(g, (0.5, 0.25, 0.75, 0.0, 1.0))
    if n > 1:
        ax.fill_between(t, _finite(lo), _finite(hi), color=MEASURED, alpha=0.10, lw=0,
                        label=f"min-max over {n} trials")
        ax.fill_between(t, _finite(q1), _finite(q3), color=MEASURED, alpha=0.25, lw=0, label="quartiles")
    gated = "gate_product_log10" in trials[0]
    grad_T = g[:, -1]
    if not gated:
        rho = np.array([tr["spectrum"]["spectral_radius"] for tr in trials], dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            predicted = over_trials(grad_T[:, None] + lag[None, :] * np.log10(rho)[:, None], (0.5,))[0]
        predicted[-1] = over_trials(grad_T[:, None], (0.5,))[0, 0]
        chain = "; for the last step's chain" if config.get("loss") == "mean" else ""
        ax.plot(t, _finite(predicted), "--", color=RHO, lw=1.4,
                label=rf"chapter: $\rho^{{T-t}}$ ($\rho$ = {np.median(rho):.3g}), from t = T{chain}")
        rates = [(tr.get("rates") or {}).get("mean_field") for tr in trials]
        if rates and all(r is not None for r in rates):
            mf = np.array(rates, dtype=np.float64) / LN10
            mf_line = over_trials(grad_T[:, None] + lag[None, :] * mf[:, None], (0.5,))[0]
            chi_1 = math.exp(2 * float(np.median(mf)) * LN10)
            ax.plot(t, _finite(mf_line), ":", color=MEAN_FIELD, lw=1.8,
                    label=rf"mean field: $\chi_1^{{(T-t)/2}}$ ($\chi_1$ = {chi_1:.3g})")
    else:
        product = log10_array([tr["gate_product_log10"] for tr in trials])
        anchor = over_trials(grad_T[:, None], (0.5,))[0, 0]
        tops = [((tr.get("lyapunov") or {}).get("exponents") or [None])[0] for tr in trials]
        if all(x is not None for x in tops):
            # the top Lyapunov exponent of the trajectory's step Jacobians: the measured rate
            top = np.array(tops, dtype=np.float64)
            line = over_trials(grad_T[:, None] + lag[None, :] * (top / LN10)[:, None], (0.5,))[0]
            line[-1] = anchor
            ax.plot(t, _finite(line), "--", color=RHO, lw=1.4,
                    label=rf"top Lyapunov exponent: $e^{{\lambda_1 (T-t)}}$ ($\lambda_1$ = "
                          rf"{np.median(top):.3g} per step), from t = T")
        gate, name = ("f", "forget") if config.get("cell") == "lstm" else ("z", "update")
        ax.plot(t, _finite(anchor + over_trials(product, (0.5,))[0]), ":", color=GATE, lw=1.6,
                label=rf"{name}-gate product ${gate}_{{t+1}} \cdots {gate}_T$ of the median unit, from t = T"
                      "\n(one typical unit's gate, not the rate of the norm)")
        if trials[0].get("grad_c_log10") is not None:
            c = over_trials(log10_array([tr["grad_c_log10"] for tr in trials]), (0.5,))[0]
            ax.plot(t, _finite(c), color="#ff7f0e", lw=1.2,
                    label=r"$\|\partial L/\partial c_t\|$ (cell state)")
    ax.plot(t, _finite(median), color=MEASURED, lw=2.0,
            label=r"measured $\|\partial L/\partial h_t\|$" + (" (median)" if n > 1 else ""))
    ax.set_xlim(1, max(T, 2))
    ax.set_xlabel("time step t")
    ax.set_ylabel(GRAD_H)
    summary = record.get("summary") or {}
    gain, verdict, tol = summary.get("gain_log10"), summary.get("verdict"), summary.get("tolerance")
    title = "Gradient norm along the sequence"
    if verdict is not None:
        if gain is not None:
            title += f": {verdict} (gain $10^{{{gain:+.2f}}}$ from t = T to 1, tolerance {tol:g})"
        elif verdict == "vanishing":
            title += ": vanishing (exactly zero by t = 1)"
        else:
            title += f": {verdict}"
    zeros = int(np.sum(np.isneginf(median)))
    if zeros:
        ax.text(0.01, 0.02, f"exactly zero at {zeros} of the {T} steps (not drawn)", transform=ax.transAxes,
                fontsize=8, color="0.3")
    ax.set_title(title, loc="left")
    # a gated cell's lines all fall from the top right: its lower right corner is free
    ax.legend(loc="lower right" if gated else "best", frameon=False)


def _layers_panel(ax: Any, record: Mapping[str, Any]) -> None:
    """A stacked or bidirectional network: the median ``||dL/dh_t^(l)||`` of every layer and
    direction (a reverse direction's gradient travels from t = 1 towards T)."""
    trials = record["trials"]
    entries = trials[0]["layers"]
    T = len(entries[0]["grad_h_log10"])
    t = np.arange(1, T + 1)
    colours = _colours(len(entries))
    for k, (entry, colour) in enumerate(zip(entries, colours, strict=True)):
        g = log10_array([tr["layers"][k]["grad_h_log10"] for tr in trials])
        median = over_trials(g, (0.5,))[0]
        gains = [tr["layers"][k].get("gain_log10") for tr in trials]
        gain = _median_over(gains)
        verdict = entry.get("verdict") if len(trials) == 1 else None
        label = f"layer {entry['layer']} {entry['direction']}"
        if math.isfinite(gain):
            label += f": gain $10^{{{gain:+.2f}}}$" + (f", {verdict}" if verdict else "")
        zeros = int(np.sum(np.isneginf(median)))
        if zeros:  # e.g. the top reverse layer under --loss last: only h_T reaches o_T
            label += f" (exactly zero at {zeros} of {T} steps)"
        style = "-" if entry["direction"] == "forward" else "--"
        few = T - zeros < 3
        ax.plot(t, _finite(median), style, color=colour, lw=1.8, label=label, marker="o" if few else None)
    ax.set_xlim(1, max(T, 2))
    ax.set_xlabel("time step t")
    ax.set_ylabel(GRAD_H)
    verdict = (record.get("summary") or {}).get("verdict")
    n = len(trials)
    title = "Gradient norm along the sequence, every layer" + (f" (median of {n} trials)" if n > 1 else "")
    ax.set_title(title + (f": worst {verdict}" if verdict else ""), loc="left")
    ax.legend(loc="best", frameon=False, fontsize=8)


def _colours(n: int) -> list[Any]:
    """``n`` distinct colours (viridis, dark to light)."""
    return [matplotlib_cmap("viridis")(x) for x in np.linspace(0.0, 0.85, n)]


def _terms_panel(ax: Any, terms: Sequence[Mapping[str, Any]], T: int, loss: str) -> None:
    lag = T - np.arange(1, T + 1)
    for name in terms[0]:
        median = over_trials(log10_array([tr[name] for tr in terms]), (0.5,))[0]
        finite = np.isfinite(median)
        label = PARAM_LABELS.get(name, name)
        if finite.sum() > 2:
            ax.plot(lag[finite], median[finite], lw=1.3, label=label)
        elif finite.any():
            ax.plot(lag[finite], median[finite], "o", ms=5, label=label + " (t = T)")
    ax.set_xlabel("lag T - t (steps back from t = T)")
    ax.set_ylabel(r"$\log_{10}$ norm of the step-$t$ term")
    ax.set_title("Each parameter gradient, term by term\n"
                 r"(e.g. $W_{hh}$: $\|\partial L/\partial a_t\|\,\|h_{t-1}\|$; the gradient is their sum)",
                 loc="left")
    ax.set_xlim(max(T - 1, 1), 0)  # lag grows to the left: t runs left to right as in the other panels
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False, ncol=5, handlelength=1.5,
              columnspacing=1.2)


def _alignment_panel(ax: Any, trials: Sequence[Mapping[str, Any]], tans: Sequence[Any], T: int) -> None:
    tan = log10_array(tans)
    tan = np.where(np.isneginf(tan), np.nan, tan)  # null here is undefined, not a zero
    t = np.arange(1, T + 1)
    median = over_trials(tan, (0.5,))[0]
    ratios = [(tr.get("alignment") or {}).get("ratio") for tr in trials]
    ratio = _median_over(ratios)
    dims = {(tr.get("alignment") or {}).get("dimension") for tr in trials}
    what = "leading complex pair's plane" if dims == {2} else "leading eigenvector"
    if math.isfinite(ratio) and ratio > 0 and math.isfinite(median[-1]):
        predicted = median[-1] + (T - t) * math.log10(ratio)
        ax.plot(t, predicted, "--", color=RHO, lw=1.4,
                label=rf"chapter: $\tan\theta_T\,|\lambda_2/\lambda_1|^{{T-t}}$, "
                      rf"$|\lambda_2/\lambda_1|$ = {ratio:.4g}")
    ax.plot(t, _finite(median), color=MEASURED, lw=1.8,
            label="measured" + (" (median)" if len(trials) > 1 else ""))
    ax.axhline(0.0, color="0.5", lw=0.8)
    ax.set_xlim(1, max(T, 2))
    finite = median[np.isfinite(median)]
    if finite.size:
        pad = 0.1 * max(float(np.ptp(finite)), 1.0)
        ax.set_ylim(float(finite.min()) - pad, float(finite.max()) + pad)
    ax.set_xlabel("time step t")
    ax.set_ylabel(r"$\log_{10}\tan\theta_t$  (0: 45$^\circ$, below: aligned)")
    layer = " (layer 0, forward)" if len(trials[0].get("layers") or ()) > 1 else ""
    ax.set_title(f"Alignment of $g_t$ with the {what} of $W_{{hh}}^T${layer}", loc="left")
    ax.legend(loc="best", frameon=False)


# ---------------------------------------------------------------------------- spectrum
def spectrum_figure(record: Mapping[str, Any]) -> Figure:
    """The figure of one ``bptt spectrum --format json`` record (see the module doc)."""

    config, trials, summary = record["config"], record["trials"], record.get("summary") or {}
    eig = np.concatenate([np.asarray(tr["spectrum"]["eigenvalues"], dtype=np.float64).reshape(-1, 2)
                          for tr in trials])
    sv = np.array([tr["spectrum"]["singular_values"] for tr in trials], dtype=np.float64)
    law, predicted = summary.get("law"), summary.get("predicted_radius")
    ensemble, gain = config.get("ensemble"), config.get("gain")
    n, h = sv.shape
    with _rc():
        fig = _figure(SPECTRUM_SIZE)
        left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        extent = max(1.0, float(np.max(np.hypot(eig[:, 0], eig[:, 1]))) if eig.size else 1.0,
                     predicted or 0.0) * 1.12
        if law == "circular law" and predicted:
            left.add_patch(Circle((0, 0), predicted, color="#f4a261", alpha=0.25, lw=0,
                                  label=f"circular law: uniform on the disk, radius {predicted:.3g}"))
        elif law is not None and law.startswith("Haar") and predicted:
            left.add_patch(Circle((0, 0), predicted, fill=False, ls="--", color="#e76f51", lw=1.4,
                                  label=rf"Haar orthogonal: every $|\lambda|$ = {predicted:.3g}"))
        elif law == "semicircle law" and predicted:
            left.plot([-predicted, predicted], [0, 0], color="#e76f51", lw=5, alpha=0.4,
                      solid_capstyle="butt", label=f"semicircle law on [-{predicted:.3g}, {predicted:.3g}]")
        elif law is not None and predicted is not None:
            left.plot([predicted], [0], "s", ms=9, mfc="none", color="#e76f51",
                      label=f"{law} = {predicted:.3g}")
        theta = np.linspace(0, 2 * np.pi, 721)
        left.plot(np.cos(theta), np.sin(theta), color="0.2", lw=1.1, label=r"unit circle $|\lambda| = 1$")
        rho = summary.get("spectral_radius")
        if rho is not None:
            left.plot(rho * np.cos(theta), rho * np.sin(theta), ":", color=RHO, lw=1.1,
                      label=rf"spectral radius $\rho$ = {rho:.4g}" + (" (median)" if n > 1 else ""))
        size = max(2.0, min(12.0, 3000.0 / max(len(eig), 1)))
        left.scatter(eig[:, 0], eig[:, 1], s=size, color=MEASURED, alpha=0.7 if len(eig) < 2000 else 0.35,
                     lw=0, label=f"eigenvalues ({len(eig)})", zorder=3)
        left.set_xlim(-extent, extent)
        left.set_ylim(-extent, extent)
        left.set_aspect("equal")
        left.set_xlabel(r"Re $\lambda$")
        left.set_ylabel(r"Im $\lambda$")
        left.set_title(r"Eigenvalues of $W_{hh}$", loc="left")
        left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), frameon=False, fontsize=7.5, ncol=2)

        index = np.arange(1, h + 1)
        for i, row in enumerate(sv):
            right.plot(index, row, color=MEASURED, lw=1.2 if n == 1 else 0.8, alpha=1.0 if n == 1 else 0.5,
                       label="measured" + (f" ({n} trials)" if n > 1 else "") if i == 0 else None)
        if law == "circular law" and predicted:
            right.plot(index, quarter_circle_quantiles(h, predicted), "--", color="#e76f51", lw=1.4,
                       label=rf"quarter-circle law on [0, {2 * predicted:.3g}]")
        elif law is not None and law.startswith("Haar") and predicted:
            right.axhline(predicted, ls="--", color="#e76f51", lw=1.4,
                          label=f"every singular value = {predicted:.3g}")
        if sv.size and sv.min() <= 1.0 <= sv.max():
            right.axhline(1.0, color="0.5", lw=0.8)
        positive = sv[sv > 0]
        if positive.size and positive.max() / positive.min() > 1e3:
            right.set_yscale("log")
        right.set_xlim(1, max(h, 2))
        right.set_xlabel("index i (decreasing order)")
        right.set_ylabel(r"singular value $\sigma_i$")
        sigma_max = summary.get("spectral_norm")
        right.set_title(r"Singular values" + (rf": $\|W_{{hh}}\|_2$ = {sigma_max:.4g}" if sigma_max else ""),
                        loc="left")
        right.legend(loc="best", frameon=False)
        what = f"{ensemble}, gain {gain:g}" if ensemble and gain is not None and law else "W_hh"
        fig.suptitle(f"Spectrum of $W_{{hh}}$ ({h} x {h}; {what})", fontsize=11)
        _caption(fig, f"bptt {record.get('version', __version__)} spectrum: {_settings(config)}")
    return fig


def quarter_circle_quantiles(h: int, radius: float) -> Array:
    """The ``h`` singular values, in decreasing order, that the quarter-circle law predicts for a
    square matrix with iid entries of variance ``radius^2 / h`` (the circular law's radius):
    density ``sqrt(4 r^2 - s^2) / (pi r^2)`` on ``[0, 2 r]``; the i-th largest at the quantile
    ``1 - (i - 1/2) / h``."""
    x = np.linspace(0.0, 1.0, 4001)  # s / (2 r)
    cdf = (2.0 / np.pi) * (x * np.sqrt(1.0 - x**2) + np.arcsin(x))
    wanted = 1.0 - (np.arange(1, h + 1) - 0.5) / h
    return np.asarray(2.0 * radius * np.interp(wanted, cdf, x), dtype=np.float64)


# ------------------------------------------------------------------------------- sweep
def sweep_axes(records: Sequence[Mapping[str, Any]]) -> list[Axis]:
    """The axes of a sweep, recovered from its records' ``point`` settings: every option, its
    values in increasing order (numbers) or first-seen order (text)."""
    names = list(records[0]["point"])
    axes = []
    for name in names:
        seen: dict[str, Any] = {}
        for r in records:
            value = r["point"].get(name)
            seen.setdefault(cell_text(value), value)
        values = list(seen.values())
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            values.sort()
        axes.append(Axis(name, "--" + name.replace("_", "-"), tuple(values)))
    return axes


def _predicted_gain(record: Mapping[str, Any]) -> float:
    """The theory's gain for a point: ``(T - 1) rate / ln 10`` with the Gelfand rate ``ln rho``
    for the identity cell (the chapter's powers of ``W_hh^T``; from the summary's spectral radius
    when the theory was not computed) and the mean-field rate for the other cells; NaN where
    there is none."""
    summary = record.get("summary") or {}
    rates = (summary.get("theory") or {}).get("rates") or {}
    cell = (record.get("config") or {}).get("cell") or record["point"].get("cell") or "identity"
    rate = rates.get("gelfand" if cell == "identity" else "mean_field")
    radius = summary.get("spectral_radius")
    if rate is None and cell == "identity" and isinstance(radius, int | float) and radius > 0:
        rate = math.log(radius)  # without the theory (--no-theory): ln of the median rho
    T = (record.get("config") or {}).get("T") or record["point"].get("T")
    if rate is None or T is None:
        return math.nan
    return (int(T) - 1) * float(rate) / LN10


def _gain(record: Mapping[str, Any]) -> float:
    summary = record["summary"]
    gain = summary.get("gain_log10")
    if gain is None:
        return math.nan if summary.get("verdict") == "undefined" else -math.inf
    return float(gain)


def sweep_figure(
    records: Sequence[Mapping[str, Any]], rows: str | None = None, cols: str | None = None
) -> Figure:
    """The phase diagram(s) of sweep records, and the gain against T when T is a heat-map axis."""

    axes = sweep_axes(records)
    plan = layout(axes, rows, cols)
    by_key = {tuple(sorted((k, cell_text(v)) for k, v in r["point"].items())): r for r in records}
    base = {a.name: a.values[0] for a in axes}
    tolerances = sorted({float(r["summary"]["tolerance"]) for r in records})
    unit = tolerances[0] if tolerances and tolerances[0] > 0 else 1.0
    finite = [abs(g) for g in map(_gain, records) if math.isfinite(g)]
    predicted_all = [abs(p) for p in map(_predicted_gain, records) if math.isfinite(p)]
    top = max([unit * 10, *finite])
    norm = SymLogNorm(linthresh=unit, linscale=1.0, vmin=-top, vmax=top, base=10)
    heat_axes = [a for a in (plan.rows, plan.cols) if a is not None]
    curve_T = next((a for a in heat_axes if a.name == "T"), None)
    combos = list(_combos(plan.others))
    with _rc():
        width = SWEEP_WIDTH[1] if curve_T is not None else SWEEP_WIDTH[0]
        fig = _figure((width, SWEEP_ROW_HEIGHT * len(combos) + 0.6))
        grid = fig.add_gridspec(len(combos), 2 if curve_T is not None else 1,
                                width_ratios=(1.0, 1.0) if curve_T is not None else None)
        for i, combo in enumerate(combos):
            fixed = dict(base)
            fixed.update(combo)

            def record_at(r: Any, c: Any, fixed: dict[str, Any] = fixed) -> Mapping[str, Any] | None:
                point = dict(fixed)
                if plan.rows is not None:
                    point[plan.rows.name] = r
                if plan.cols is not None:
                    point[plan.cols.name] = c
                return by_key.get(tuple(sorted((k, cell_text(v)) for k, v in point.items())))

            title = ", ".join(f"{a.flag.lstrip('-')} {cell_text(combo[a.name])}" for a in plan.others)
            heat = fig.add_subplot(grid[i, 0])
            image = _heat_panel(heat, plan.rows, plan.cols, record_at, norm, unit, title)
            fig.colorbar(image, ax=heat, label="log10 gain (orders of magnitude; symlog scale)",
                         ticks=_symlog_ticks(unit, top), format=_signed)
            if curve_T is not None:
                other = plan.cols if curve_T is plan.rows else plan.rows
                _curves_panel(fig.add_subplot(grid[i, 1]), curve_T, other, record_at, curve_T is plan.rows,
                              unit, title)
        swept = [a.name for a in axes if a.swept]
        n_points = len(records)
        shown = [a for a in (plan.rows, plan.cols, *plan.others) if a is not None and a.swept]
        shape = " x ".join(f"{len(a.values)} {a.name}" for a in shown)
        fig.suptitle(f"Phase diagram of the gradient's fate: {n_points} point{'s' if n_points != 1 else ''}"
                     + (f" ({shape})" if shape else ""), fontsize=11)
        cells = {(r.get("config") or {}).get("cell") or "identity" for r in records}
        how = []
        if "identity" in cells:
            how.append("(T-1) log10 rho (identity cell: the chapter's powers of W_hh^T)")
        if cells - {"identity", *GATED_CELLS}:
            how.append("(T-1)/2 log10 chi_1 (mean field; the other Elman cells)")
        gated = [c for c in GATED_CELLS if c in cells]
        if gated:
            how.append(f"none for {', '.join(gated)} (no mean-field theory of gated cells)")
        predicted_note = f"; predicted: {', '.join(how)}" if predicted_all else ""
        _caption(
            fig,
            f"bptt {records[0].get('version', __version__)} sweep: "
            f"{_sweep_settings(records, swept)}; "
            f"gain = median over trials of log10 ||dL/dh_1|| / ||dL/dh_T||{predicted_note}",
        )
    return fig


def _combos(others: Sequence[Axis]) -> list[dict[str, Any]]:
    import itertools

    return [dict(zip([a.name for a in others], values, strict=True))
            for values in itertools.product(*(a.values for a in others))]


def _symlog_ticks(unit: float, top: float) -> list[float]:
    ticks = [0.0]
    k = 0
    while unit * 10**k <= top * 1.0001:
        ticks += [unit * 10**k, -unit * 10**k]
        k += 1
    return sorted(ticks)


def _label(axis: Axis | None) -> str:
    if axis is None:
        return ""
    return AXIS_LABELS.get(axis.name, axis.name.replace("_", " "))


def _heat_panel(
    ax: Any, rows: Axis | None, cols: Axis | None, record_at: Any, norm: SymLogNorm, unit: float, title: str
) -> Any:
    row_values = rows.values if rows is not None else (None,)
    col_values = cols.values if cols is not None else (None,)
    R, C = len(row_values), len(col_values)
    gain = np.full((R, C), np.nan)
    predicted = np.full((R, C), np.nan)
    present = np.zeros((R, C), dtype=bool)
    verdict = np.full((R, C), np.nan)  # the records' own verdicts (each with its tolerance)
    predicted_verdict = np.full((R, C), np.nan)
    for i, rv in enumerate(row_values):
        for j, cv in enumerate(col_values):
            rec = record_at(rv, cv)
            if rec is not None:
                present[i, j] = True
                gain[i, j] = _gain(rec)
                predicted[i, j] = _predicted_gain(rec)
                verdict[i, j] = VERDICT_SIGN.get(rec["summary"].get("verdict"), np.nan)
                tolerance = float(rec["summary"].get("tolerance", unit))
                predicted_verdict[i, j] = _verdict_grid(np.array([[predicted[i, j]]]), tolerance)[0, 0]
    shown = np.where(np.isneginf(gain), -float(norm.vmax or 1.0), gain)
    cmap = matplotlib_cmap("RdBu_r")
    image = ax.imshow(np.ma.masked_invalid(shown), cmap=cmap, norm=norm, origin="lower", aspect="auto",
                      interpolation="nearest")
    ax.set_facecolor("0.85")
    if R * C <= 400:
        size = 8 if C <= 8 else 6.5
        for i in range(R):
            for j in range(C):
                g = gain[i, j]
                text = "not run" if not present[i, j] else "-" if math.isnan(g) else (
                    "zero" if math.isinf(g) else f"{g:+.1f}")
                dark = math.isfinite(g) and abs(norm(g) - 0.5) > 0.3
                ax.text(j, i, text, ha="center", va="center", fontsize=size, color="white" if dark else "0.1")
    _boundary(ax, verdict, color="black", lw=2.2, ls="-")
    if np.isfinite(predicted).any():
        _boundary(ax, predicted_verdict, color=PREDICTED_BOUNDARY, lw=1.8, ls=(0, (3, 2)))
    ax.set_xticks(range(C), [cell_text(v) for v in col_values] if cols is not None else [""])
    ax.set_yticks(range(R), [cell_text(v) for v in row_values] if rows is not None else [""])
    ax.set_xlabel(_label(cols))
    ax.set_ylabel(_label(rows))
    if rows is not None and not _numeric(rows.values):
        ax.invert_yaxis()  # categories top-down, in the order of the terminal's table (numbers grow upwards)
    ax.grid(False)
    predicted_note = ", predicted (green dashes)" if np.isfinite(predicted).any() else ""
    ax.set_title((f"{title}: " if title else "") + "median log10 gain; verdict boundary |gain| = tolerance:\n"
                 f"measured (black){predicted_note}", loc="left", fontsize=8.5)
    return image


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _signed(v: float, _: Any = None) -> str:
    """A tick label on a log10-gain axis: the number itself (``+1000``, ``-1``, ``0``)."""
    return f"{v:+g}" if v else "0"


def matplotlib_cmap(name: str) -> Any:
    import matplotlib

    return matplotlib.colormaps[name]


def _verdict_grid(gain: Array, unit: float) -> Array:
    """-1 vanishing, 0 stable, +1 exploding, NaN undefined/missing (the tolerance is ``unit``)."""
    out = np.full(gain.shape, np.nan)
    out[np.isneginf(gain) | (gain < -unit)] = -1
    out[np.isfinite(gain) & (np.abs(gain) <= unit)] = 0
    out[gain > unit] = 1
    return out


def _boundary(ax: Any, verdict: Array, **style: Any) -> None:
    """Lines along the cell edges between cells of different verdicts (both known)."""
    R, C = verdict.shape
    segments = []
    for i in range(R):
        for j in range(C - 1):
            a, b = verdict[i, j], verdict[i, j + 1]
            if np.isfinite(a) and np.isfinite(b) and a != b:
                segments.append(((j + 0.5, i - 0.5), (j + 0.5, i + 0.5)))
    for i in range(R - 1):
        for j in range(C):
            a, b = verdict[i, j], verdict[i + 1, j]
            if np.isfinite(a) and np.isfinite(b) and a != b:
                segments.append(((j - 0.5, i + 0.5), (j + 0.5, i + 0.5)))
    if segments:
        from matplotlib.collections import LineCollection

        ax.add_collection(LineCollection(segments, capstyle="projecting", **style))


def _curves_panel(
    ax: Any, T_axis: Axis, other: Axis | None, record_at: Any, T_is_rows: bool, unit: float, title: str
) -> None:
    values = other.values if other is not None else (None,)
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if numeric and len(values) > 1:
        cmap = matplotlib_cmap("coolwarm")
        lo, hi = float(min(values)), float(max(values))
        colours = [cmap((float(v) - lo) / (hi - lo) if hi > lo else 0.5) for v in values]
    else:
        cmap = matplotlib_cmap("tab10")
        colours = [cmap(k % 10) for k in range(len(values))]
    Ts = np.array([float(T) for T in T_axis.values])
    panel = [r for v in values for T in T_axis.values
             if (r := record_at(T, v) if T_is_rows else record_at(v, T)) is not None]
    tolerances = {float(r["summary"]["tolerance"]) for r in panel}
    if len(tolerances) == 1 and min(tolerances) > 0:  # this panel's own tolerance
        unit = tolerances.pop()
    any_predicted = False
    for v, colour in zip(values, colours, strict=True):
        recs = [record_at(T, v) if T_is_rows else record_at(v, T) for T in T_axis.values]
        gains = np.array([_gain(r) if r is not None else np.nan for r in recs])
        ok = np.isfinite(gains)
        name = "" if other is None else cell_text(v)
        ax.plot(Ts[ok], gains[ok], "o-", color=colour, lw=1.5, ms=3.5, label=name or "measured")
        predicted = np.array([_predicted_gain(r) if r is not None else np.nan for r in recs])
        okp = np.isfinite(predicted)
        if okp.any():
            any_predicted = True
            ax.plot(Ts[okp], predicted[okp], "--", color=colour, lw=1.0, alpha=0.9)
    ax.axhspan(-unit, unit, color="#2ca02c", alpha=0.12, lw=0,
               label=f"stable: |log10 gain| <= tolerance {unit:g}")
    ax.axhline(0.0, color="0.4", lw=0.7)
    if Ts.size and Ts.min() > 0 and Ts.max() / Ts.min() >= 100:
        ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=unit, base=10)
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(_signed))  # +1000, not 10^3: the axis is log10 gain itself
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(_label(T_axis))
    ax.set_ylabel("log10 gain (symlog: linear within the tolerance)")
    note = "; dashed: predicted" if any_predicted else ""
    ax.set_title((f"{title}: " if title else "") + f"gain against T\nsolid: measured{note}",
                 loc="left", fontsize=8.5)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
              title=None if other is None else other.flag.lstrip("-"))
