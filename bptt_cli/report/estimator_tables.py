"""The gradient estimators (truncation, clipping) in tables: the estimator table of ``bptt analyze``
and the comparison of ``bptt truncate`` (medians over trials)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.table import Table

from bptt_cli.core.scaled import LN10
from bptt_cli.estimators.estimator import CHAIN_PARAMS
from bptt_cli.io.estimator_records import comparison_rows, log10_fields, median
from bptt_cli.report.format import pow10 as _num
from bptt_cli.report.header import render_header

if TYPE_CHECKING:
    from rich.console import Console

    from bptt_cli.analysis.result import Analysis
    from bptt_cli.estimators.measure import EstimatorResult


def _cost(res: EstimatorResult) -> str:
    steps = median(res.backward_steps)
    full = res.backward_steps_full
    ratio = f" ({steps / full:.2f}x full)" if full else ""
    return f"{res.estimator.label}: {steps:.4g} backward steps{ratio}"


def render_estimates(an: Analysis, console: Console) -> None:
    """The estimator table of ``bptt analyze`` (medians over trials) and notes on cost and clipping."""
    if not an.estimates:
        return
    n = an.net.shape[0]
    title = "Gradient estimators against full BPTT" + (f" (median over {n} trials)" if n > 1 else "")
    table = Table(title=title, title_justify="left")
    for col in ("estimator", "param", "rel. error", "cosine", "bias", "variance"):
        table.add_column(col, justify="right")
    for res in an.estimates:
        est = res.estimator
        names: tuple[str, ...] = ("all",) if est.kind == "clip" else CHAIN_PARAMS
        for name in names:
            acc = res.accuracy["W_hh" if name == "all" else name]
            f = {k: median(v) for k, v in log10_fields(acc, est.kind).items()}
            random = est.kind == "random"
            table.add_row(
                est.label, name, _num(f["relative_error"]), f"{f['cosine']:.4f}",
                _num(f["relative_bias"]) if random else "-", _num(f["relative_spread"]) if random else "-",
            )
    console.print(table)
    notes = []
    for res in an.estimates:
        est = res.estimator
        if res.clip_scale_ln is not None and res.clip_norm_ln is not None:
            notes.append(
                f"{est.label}: ||g|| {_num(median(res.clip_norm_ln / LN10))}, "
                f"scale {_num(median(res.clip_scale_ln / LN10))}"
            )
            continue
        note = _cost(res)
        if res.memory_bytes is not None and res.memory_bytes_full:
            note += f", memory {res.memory_bytes / res.memory_bytes_full:.3g}x full"
        notes.append(note + "; W_qh, b_q exact")
        if est.kind == "random":
            notes.append(f"bias ||mean g_hat - g||/||g||, variance mean ||g_hat - mean||^2/||g||^2 "
                         f"over {est.draws} draws")
    for note in notes:
        console.print(note)


def render_comparison(
    an: Analysis, param: str, console: Console, weights: str | None = None, drawn: list[str] | None = None
) -> None:
    """The table of ``bptt truncate``: full, regular (several K) and randomized (several P).
    ``weights``, ``drawn``: as for :func:`bptt_cli.report.header.render_header`."""
    render_header(an, console, weights, drawn)
    rows = comparison_rows(an, param)
    n = an.net.shape[0]
    title = f"Truncation against full BPTT: dL/d{param}" + (f" (median over {n} trials)" if n > 1 else "")
    table = Table(title=title, title_justify="left")
    chunk = any("memory_ratio" in r for r in rows)
    cols = ["estimator", "steps (cost)", "error", "bias", "variance", "cosine"]
    for col in cols + (["memory"] if chunk else []):
        table.add_column(col, justify="right")
    for r in rows:
        kind = r["kind"]
        setting = f" K={r['K']}" if "K" in r else (f" P={r['keep_prob']:g}" if "keep_prob" in r else "")
        steps = r["backward_steps"]
        cost = "" if math.isnan(r["cost_ratio"]) else f" ({r['cost_ratio']:.2f}x)"
        count = f"{steps:.0f}" if steps >= 100 or steps == int(steps) else f"{steps:.1f}"
        cells = [
            kind + setting, count + cost,
            _num(r["relative_error_log10"], 2), _num(r["bias_log10"], 2), _num(r["variance_log10"], 2),
            "-" if math.isnan(r["cosine"]) else f"{r['cosine']:.3f}",
        ]
        if chunk:
            kept = f"{r['memory_ratio']:.2g}x" if "memory_ratio" in r else ("1x" if kind == "full" else "-")
            cells.append(kept)
        table.add_row(*cells)
    console.print(table)
    draws = {r["draws"] for r in rows if "draws" in r}
    console.print(
        "steps: backward steps J^T v, cost relative to full BPTT; "
        + ("memory: states kept, relative to full; " if chunk else "")
        + "error: mean ||g_hat - g||/||g||; bias: ||mean g_hat - g||/||g||; "
        + "variance: mean ||g_hat - mean g_hat||^2/||g||^2"
        + (f" over {', '.join(map(str, sorted(draws)))} draws" if draws else "")
    )


