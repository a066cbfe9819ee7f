"""The gradient estimators (truncation, clipping) in the JSON records: per trial, summaries over trials,
and the rows of ``bptt truncate``.

Values are log10 unless plain: every relative quantity has a plain value and a ``_log10``
companion; the plain value is ``null`` when it is undefined or outside float64's range (the
``_log10`` key then still carries it), ``0`` for an exact zero (whose ``_log10`` is ``null``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from bptt_cli.analysis.stats import spread
from bptt_cli.core.network import PARAMS
from bptt_cli.core.scaled import LN10, Array
from bptt_cli.estimators.estimator import MODES, Estimator

if TYPE_CHECKING:  # (the estimators' machinery loads only when a run has estimators)
    from bptt_cli.analysis.result import Analysis
    from bptt_cli.estimators.accuracy import Accuracy
    from bptt_cli.estimators.measure import EstimatorResult

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


def describe_estimator(est: Estimator) -> dict[str, Any]:
    out: dict[str, Any] = {"label": est.label, "kind": est.kind}
    if est.kind in MODES:
        out["K"] = est.K
    if est.kind == "random":
        out["keep_prob"], out["draws"] = est.keep_prob, est.draws
    if est.kind == "clip":
        out["threshold"] = est.clip
    return out


def log10_fields(acc: Accuracy, kind: str) -> dict[str, Array]:
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


def median(values: Array) -> float:
    """The median over trials of one estimator quantity (``-inf`` counts as the smallest)."""
    return spread(np.asarray(values, dtype=float))["median"]


def _record(res: EstimatorResult, pick: Any) -> dict[str, Any]:
    """A record with every per-trial array reduced by ``pick`` (one trial, or the median)."""
    est = res.estimator
    rec = describe_estimator(est)
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
        name: _param_record({k: pick(v) for k, v in log10_fields(res.accuracy[name], est.kind).items()})
        for name in PARAMS
    }
    return rec


def estimate_record(res: EstimatorResult, i: int) -> dict[str, Any]:
    """Trial ``i``'s record of one estimator (keys in the README)."""
    return _record(res, lambda a: float(np.asarray(a)[i]))


def estimate_summary(res: EstimatorResult) -> dict[str, Any]:
    """The same record with medians over trials (log10 values; plain values from the median log10)."""
    return _record(res, median)


def estimates_summary(estimates: tuple[EstimatorResult, ...]) -> dict[str, Any]:
    """``summary.estimators`` of ``bptt analyze``: by role (``truncation``, ``clip``)."""
    return {role(res.estimator): estimate_summary(res) for res in estimates}


def trial_estimates(estimates: tuple[EstimatorResult, ...], i: int) -> dict[str, Any]:
    """``trials[i].estimators`` of ``bptt analyze``: by role (``truncation``, ``clip``)."""
    return {role(res.estimator): estimate_record(res, i) for res in estimates}


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
        f = {k: median(v) for k, v in log10_fields(res.accuracy[param], est.kind).items()}
        rec = describe_estimator(est)
        steps = median(res.backward_steps)
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
