"""Rendering of the gradient estimators (truncation, clipping): JSON records, summaries, rich tables.

Values are log10 unless plain: every relative quantity has a plain value and a ``_log10``
companion; the plain value is ``null`` when it is undefined or outside float64's range (the
``_log10`` key then still carries it), ``0`` for an exact zero (whose ``_log10`` is ``null``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from bptt_cli.core.network import PARAMS
from bptt_cli.core.scaled import LN10, Array
from bptt_cli.estimators.truncation import CHAIN_PARAMS, MODES, Accuracy, Estimator, EstimatorResult

if TYPE_CHECKING:
    from rich.console import Console

    from bptt_cli.analysis.analyze import Analysis

RELATIVE = ("relative_error", "norm_ratio")
RANDOM_ONLY = ("relative_bias", "relative_variance", "relative_spread")


def pow10_value(log10: float) -> float:
    """``10**log10`` as a float: 0 for ``-inf``; NaN (written ``null``) when undefined or out of range."""
    if log10 == -math.inf:
        return 0.0
    if not math.isfinite(log10) or not -307.0 < log10 < 308.0:
        return math.nan
    return float(10.0**log10)


def role(est: Estimator) -> str:
    """The key under ``trials[i].estimators`` in ``bptt analyze``: ``truncation`` or ``clip``."""
    return "clip" if est.kind == "clip" else "truncation"


def _describe(est: Estimator) -> dict[str, Any]:
    out: dict[str, Any] = {"label": est.label, "kind": est.kind}
    if est.kind in MODES:
        out["K"] = est.K
    if est.kind == "random":
        out["keep_prob"], out["draws"] = est.keep_prob, est.draws
    if est.kind == "clip":
        out["threshold"] = est.clip
    return out


def _log10_fields(acc: Accuracy, kind: str) -> dict[str, Array]:
    """Per-trial log10 arrays (and cosine) of one parameter, by JSON key."""
    keys = RELATIVE + (RANDOM_ONLY if kind == "random" else ())
    out = {key: getattr(acc, key + "_ln") / LN10 for key in keys}
    out["cosine"] = acc.cosine
    return out


def _param_record(values: dict[str, float]) -> dict[str, float]:
    rec: dict[str, float] = {}
    for key, v in values.items():
        if key == "cosine":
            rec[key] = v
        else:
            rec[key] = pow10_value(v)
            rec[key + "_log10"] = v
    return rec


def _median(values: Array) -> float:
    from bptt_cli.analysis.analyze import spread

    return spread(np.asarray(values, dtype=float))["median"]


def _record(res: EstimatorResult, pick: Any) -> dict[str, Any]:
    """A record with every per-trial array reduced by ``pick`` (one trial, or the median)."""
    est = res.estimator
    rec = _describe(est)
    steps = pick(res.backward_steps)
    rec["backward_steps"] = steps
    rec["backward_steps_full"] = res.backward_steps_full
    rec["cost_ratio"] = steps / res.backward_steps_full if res.backward_steps_full else math.nan
    if res.memory_bytes is not None:
        rec["memory_bytes"], rec["memory_bytes_full"] = res.memory_bytes, res.memory_bytes_full
    if res.clip_scale_ln is not None and res.clip_norm_ln is not None:
        scale_log10 = pick(res.clip_scale_ln / LN10)
        rec["scale"], rec["scale_log10"] = pow10_value(scale_log10), scale_log10
        rec["norm_log10"] = pick(res.clip_norm_ln / LN10)
    rec["params"] = {
        name: _param_record({k: pick(v) for k, v in _log10_fields(res.accuracy[name], est.kind).items()})
        for name in PARAMS
    }
    return rec


def estimate_record(res: EstimatorResult, i: int) -> dict[str, Any]:
    """Trial ``i``'s record of one estimator (keys in the README)."""
    return _record(res, lambda a: float(np.asarray(a)[i]))


def estimate_summary(res: EstimatorResult) -> dict[str, Any]:
    """The same record with medians over trials (log10 values; plain values from the median log10)."""
    return _record(res, _median)


def estimates_summary(estimates: tuple[EstimatorResult, ...]) -> dict[str, Any]:
    """``summary.estimators`` of ``bptt analyze``: by role (``truncation``, ``clip``)."""
    return {role(res.estimator): estimate_summary(res) for res in estimates}


def trial_estimates(estimates: tuple[EstimatorResult, ...], i: int) -> dict[str, Any]:
    """``trials[i].estimators`` of ``bptt analyze``: by role (``truncation``, ``clip``)."""
    return {role(res.estimator): estimate_record(res, i) for res in estimates}


# --- tables ----------------------------------------------------------------------------------


def _num(log10: float, digits: int = 3) -> str:
    from bptt_cli.report.tables import pow10

    return pow10(log10, digits)


def _cost(res: EstimatorResult) -> str:
    steps = _median(res.backward_steps)
    full = res.backward_steps_full
    ratio = f" ({steps / full:.2f}x full)" if full else ""
    return f"{res.estimator.label}: {steps:.4g} backward steps{ratio}"


def render_estimates(an: Analysis, console: Console) -> None:
    """The estimator table of ``bptt analyze`` (medians over trials) and notes on cost and clipping."""
    from rich.table import Table

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
            f = {k: _median(v) for k, v in _log10_fields(acc, est.kind).items()}
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
                f"{est.label}: ||g|| {_num(_median(res.clip_norm_ln / LN10))}, "
                f"scale {_num(_median(res.clip_scale_ln / LN10))}"
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


def comparison_rows(an: Analysis, param: str) -> list[dict[str, Any]]:
    """Rows of ``bptt truncate``: full, then every estimator (medians over trials) for ``param``.

    ``bias``: ``||E g_hat - g|| / ||g||`` (a deterministic estimate's bias is its error);
    ``variance``: ``E ||g_hat - E g_hat||^2 / ||g||^2`` (0 for a deterministic estimate).
    """
    T = an.net.shape[1]
    rows: list[dict[str, Any]] = [{
        "label": "full", "kind": "full", "backward_steps": max(T - 1, 0),
        "cost_ratio": 1.0 if T > 1 else math.nan, "relative_error_log10": -math.inf,
        "bias_log10": -math.inf, "variance_log10": -math.inf, "cosine": 1.0,
    }]
    for res in an.estimates:
        est = res.estimator
        f = {k: _median(v) for k, v in _log10_fields(res.accuracy[param], est.kind).items()}
        rec = _describe(est)
        steps = _median(res.backward_steps)
        rec.update(
            backward_steps=steps,
            cost_ratio=steps / res.backward_steps_full if res.backward_steps_full else math.nan,
            relative_error_log10=f["relative_error"],
            bias_log10=f["relative_bias"] if est.kind == "random" else f["relative_error"],
            variance_log10=f["relative_spread"] if est.kind == "random" else -math.inf,
            cosine=f["cosine"],
        )
        if res.memory_bytes is not None and res.memory_bytes_full:
            rec["memory_ratio"] = res.memory_bytes / res.memory_bytes_full
        rows.append(rec)
    return rows


def render_comparison(
    an: Analysis, param: str, console: Console, weights: str | None = None, drawn: list[str] | None = None
) -> None:
    """The table of ``bptt truncate``: full, regular (several K) and randomized (several P).
    ``weights``, ``drawn``: as for :func:`bptt_cli.report.tables.render_header`."""
    from rich.table import Table

    from bptt_cli.report.tables import render_header

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


def comparison_record(an: Analysis, param: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The JSON object of ``bptt truncate --format json`` (keys documented in the README)."""
    from bptt_cli import __version__
    from bptt_cli.io.records import memory_record

    spec = an.spec
    rows = []
    for r in comparison_rows(an, param):
        row = {k: v for k, v in r.items() if not k.endswith("_log10")}
        for key in ("relative_error", "bias", "variance"):
            row[key], row[key + "_log10"] = pow10_value(r[key + "_log10"]), r[key + "_log10"]
        rows.append(row)
    params = an.grad_params_log10
    trials = [
        {
            "trial": i,
            "seed_spawn_key": list(an.net.seeds[i].spawn_key) if an.net.seeds else None,
            "grad_params_log10": {k: v[i] for k, v in params.items()},
            "estimators": [estimate_record(res, i) for res in an.estimates],
        }
        for i in range(an.net.shape[0])
    ]
    record: dict[str, Any] = {
        "version": __version__,
        "config": {**{k: getattr(spec, k) for k in spec.__dataclass_fields__}, **settings},
        "param": param,
        "rows": rows,
        "estimators": [estimate_summary(res) for res in an.estimates],
        "trials": trials,
    }
    if an.memory is not None:
        record["memory"] = memory_record(an.memory)
    return record
