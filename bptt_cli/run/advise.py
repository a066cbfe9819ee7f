"""``bptt advise``: from the diagnosis to a remedy, each recommendation checked by measurement.

Given one experiment (:class:`~bptt_cli.run.experiment.Experiment`), :func:`advise` measures the
network as ``bptt analyze`` does (the diagnosis), then answers five questions, each with its
evidence and a measured check, re-running the exact analysis with the remedy applied:

- ``truncation``: the smallest window K whose truncated gradient of ``W_hh`` stays within a
  relative error ``budget`` (measured at K, K - 1 and K/2), its cost in backward steps against
  full BPTT, and randomized truncation at the same expected cost, keep probability ``1 - 1/K``
  (Tallec & Ollivier 2017).
- ``clip``: the ``quantile`` of the global gradient norm over ``draws`` input sequences of the
  same network as a clipping threshold, the fraction of sequences it clips and the bias it puts
  into the mean gradient, ``||E[clip(g)] - E[g]|| / ||E[g]||`` (Pascanu, Mikolov & Bengio 2013).
- ``init``: the scale of ``W_hh`` (gain, radius, norm, or a factor on the user's own) whose
  measured gain is 1, found by false position on measurements, beside the edge of chaos of the
  mean field, ``chi_1 = 1``, from the network's own weight, input and bias variances (Poole et al.
  2016; Chen, Pennington & Schoenholz 2018), measured at 0.8, 1 and 1.2 times it; for a relu cell
  also the identity and orthogonal initialisations (Le, Jaitly & Hinton 2015).
- ``forget_bias``: for an LSTM, the least forget-gate bias above the present one whose measured
  gain stays above ``10^-tolerance`` (Gers, Schmidhuber & Cummins 2000; Jozefowicz, Zaremba &
  Sutskever 2015); for a stack, the worst layer's gain.
- ``horizon``: the measured rate per step, the steps after which the gradient has vanished or
  exploded by ``tolerance`` orders of magnitude, against T; where the top Lyapunov exponent
  ``lambda_1 > 0`` (chaos), the predictability time ``ln 2 / lambda_1`` and a truncation or
  teacher-forcing interval below it (Mikhaeil, Monfared & Durstewitz 2022).

A piece that does not apply is ``None`` in :class:`Advice` with its reason in ``reasons``. Every
measurement uses the experiment's seed: the same options give the same advice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bptt_cli.analysis.analyze import analyze
from bptt_cli.analysis.result import Analysis
from bptt_cli.core.network import GatedSpec
from bptt_cli.errors import BadInput
from bptt_cli.estimators.estimator import Estimator
from bptt_cli.io.estimator_records import pow10_value
from bptt_cli.run.experiment import Experiment

LN10 = math.log(10.0)
SCALES = (0.8, 1.0, 1.2)  # the edge of chaos measured at these multiples of its scale
FORGET_STEPS = (1.0, 2.0, 4.0, 8.0, 16.0)  # forget biases tried above the present one, then bisected
FORGET_RESOLUTION = 0.05
KEEP_PROBS = (0.9, 0.7, 0.5, 0.3)
BOUNDED = ("tanh", "sigmoid", "lstm", "gru")  # cells whose states stay bounded: lambda_1 > 0 is chaos
NORM_QUANTILES = {"p10": 0.1, "median": 0.5, "p90": 0.9}  # of the gradient norms, in the clip's record
REFINE = 7  # window lengths measured per round of the search for K
RESCALE_STEPS = 10  # steps of the search for the scale whose measured gain is 1
ROOT_TOLERANCE = 0.02  # ... which stops within 0.02 orders of magnitude of gain 1
WIDEN = 4  # at most 2^4 = 16 times beyond the first bracket, each way


@dataclass
class Advice:
    """Each piece a JSON-ready dict (``None`` where it does not apply, the reason in ``reasons``);
    ``diagnosis``: the network as measured; ``network``: trial 0's parameters with the
    recommended rescaling or forget bias applied (what ``--apply`` writes), ``None`` if there is
    nothing to apply."""

    diagnosis: dict[str, Any]
    truncation: dict[str, Any] | None = None
    clip: dict[str, Any] | None = None
    init: dict[str, Any] | None = None
    forget_bias: dict[str, Any] | None = None
    horizon: dict[str, Any] | None = None
    reasons: dict[str, str] = field(default_factory=dict)
    network: dict[str, np.ndarray] | None = None

    def pieces(self) -> dict[str, Any]:
        """``advice`` of the JSON record: the five pieces and ``reasons``."""
        names = ("truncation", "clip", "init", "forget_bias", "horizon")
        return {**{name: getattr(self, name) for name in names}, "reasons": dict(self.reasons)}


def advise(exp: Experiment, budget: float = 0.05, quantile: float = 0.9, draws: int = 32) -> Advice:
    """Every recommendation for ``exp`` with its measured check (see the module doc).

    ``budget``: the relative error truncation may make (in (0, 1)); ``quantile``: of the global
    gradient norm, the clipping threshold (in (0, 1)); ``draws``: input sequences of the clipping
    statistics and draws of each randomized truncation (at least 2).
    """
    if not 0 < budget < 1:
        raise BadInput(f"--budget must be in (0, 1), got {budget}")
    if not 0 < quantile < 1:
        raise BadInput(f"--quantile must be in (0, 1), got {quantile}")
    if draws < 2:
        raise BadInput(f"--draws must be at least 2, got {draws}")
    base = analyze(
        exp.spec,
        exp.given,
        exp.tolerance,
        theory=True,
        lyapunov=1,
        checkpoint=exp.checkpoint,
        max_memory=exp.max_memory,
    )
    advice = Advice(diagnosis={"gain_log10": _gain(base), "verdict": base.verdict})
    for name, piece in (
        ("truncation", _truncation),
        ("clip", _clip),
        ("init", _init),
        ("forget_bias", _forget_bias),
        ("horizon", _horizon),
    ):
        result = piece(exp, base, budget=budget, quantile=quantile, draws=draws)
        if isinstance(result, str):
            advice.reasons[name] = result
        else:
            setattr(advice, name, result)
    advice.network = _applied(exp, base, advice)
    return advice


# -- measuring -------------------------------------------------------------------------------------
def _measure(exp: Experiment, changes: dict[str, Any], estimators: Sequence[Estimator] = ()) -> Analysis:
    """The exact analysis of ``exp`` with ``changes`` to its settings (``spec`` fields, or ``given``),
    no theory."""
    changes = dict(changes)
    given = changes.pop("given", exp.given)
    spec = replace(exp.spec, **changes)
    return analyze(
        spec,
        given,
        exp.tolerance,
        checkpoint=exp.checkpoint,
        max_memory=exp.max_memory,
        estimators=estimators,
    )


def _gain(an: Analysis) -> float:
    """Median over trials of the gain ``log10 ||dL/dh_1|| / ||dL/dh_T||``; for a stack, that of
    the worst layer and direction (whose verdict is the network's)."""
    return float(an.worst_layer().median_gain_log10 if len(an.layers) > 1 else an.median_gain_log10)


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


# -- truncation ------------------------------------------------------------------------------------
def _truncation(
    exp: Experiment, base: Analysis, *, budget: float, draws: int, **_: Any
) -> dict[str, Any] | str:
    spec = exp.spec
    if spec.stacked or isinstance(spec, GatedSpec):
        return "truncation is measured on one-layer Elman networks (bptt truncate)"
    T = spec.T
    if T < 2:
        return "T = 1: there is nothing to truncate"
    if np.all(np.isneginf(base.grad_params_log10["W_hh"])):
        return "dL/dW_hh is exactly zero (the states stay at 0): there is no error to keep small"
    errors: dict[int, float] = {}
    cost: dict[int, float] = {}

    def measure(Ks: Sequence[int]) -> None:
        new = sorted({k for k in Ks if 1 <= k < T and k not in errors})
        if not new:
            return
        an = _measure(exp, {}, [Estimator("window", K=k) for k in new])
        for k, res in zip(new, an.estimates, strict=True):
            errors[k], cost[k] = _error(res, "W_hh"), _cost(res)

    powers = [2**i for i in range(T.bit_length()) if 2**i < T]
    measure(powers)
    hi = next((k for k in sorted(errors) if errors[k] <= budget), T)  # T: full BPTT, exact
    lo = max((k for k in errors if k < hi), default=0)
    while hi - lo > 1:
        step = (hi - lo) / (REFINE + 1)
        measure([lo + max(1, round(step * i)) for i in range(1, REFINE + 1)])
        hi = next((k for k in sorted(errors) if lo < k <= hi and errors[k] <= budget), hi)
        lo = max((k for k in errors if k < hi), default=0)
    while True:  # the check's own points, K - 1 and K / 2, may themselves meet the budget
        measure([hi - 1, max(1, hi // 2)])
        least = next((k for k in sorted(errors) if errors[k] <= budget), T)
        if least == hi:
            break
        hi = least
    full_cost = 1.0
    K = hi
    result: dict[str, Any] = {
        "K": K,
        "budget": budget,
        "param": "W_hh",
        "loss": spec.loss,
        "relative_error": errors.get(K, 0.0),
        "cost_ratio": cost.get(K, full_cost),
        "relative_error_below": errors.get(K - 1),
        "K_below": K - 1 if K > 1 else None,
        "relative_error_half": errors.get(max(1, K // 2)) if K > 1 else None,
        "K_half": max(1, K // 2) if K > 1 else None,
        "measured": [{"K": k, "relative_error": errors[k]} for k in sorted(errors)],
        "full_bptt": K >= T,
        "cheaper_than_full": cost.get(K, full_cost) < full_cost,
    }
    # the keep probability whose expected chain is K steps long (1 / (1 - P) = K) beside the usual ones
    probs = sorted({*KEEP_PROBS, *([round(1 - 1 / K, 4)] if 2 <= K < T else [])}, reverse=True)
    an = _measure(exp, {}, [Estimator("random", keep_prob=p, draws=draws) for p in probs])
    randomized: list[dict[str, Any]] = [
        {
            "keep_prob": p,
            "relative_error": _error(res, "W_hh"),
            "cost_ratio": _cost(res),
            "relative_variance": _param(res, "W_hh", "relative_variance"),
        }
        for p, res in zip(probs, an.estimates, strict=True)
    ]
    # at the same expected cost: the P whose chains are K steps long on average; else the best of
    # those no dearer than the window
    same = [r for r in randomized if 2 <= K < T and r["keep_prob"] == round(1 - 1 / K, 4)]
    affordable = [r for r in randomized if r["cost_ratio"] <= result["cost_ratio"]]
    best = same[0] if same else min(affordable, key=lambda r: r["relative_error"], default=None)
    result["randomized"] = best
    beats = best is not None and best["relative_error"] < result["relative_error"]
    result["randomized_beats_window"] = bool(beats)
    return result


def _param(res: Any, param: str, key: str) -> float | None:
    from bptt_cli.io.estimator_records import estimate_summary

    value = estimate_summary(res)["params"][param].get(key)
    return None if value is None else float(value)


def _error(res: Any, param: str) -> float:
    """The median relative error of ``param``'s estimate over the trials."""
    value = _param(res, param, "relative_error")
    return math.inf if value is None else value


def _cost(res: Any) -> float:
    from bptt_cli.io.estimator_records import estimate_summary

    return float(estimate_summary(res)["cost_ratio"])


# -- clipping --------------------------------------------------------------------------------------
def _clip(exp: Experiment, base: Analysis, *, quantile: float, draws: int, **_: Any) -> dict[str, Any] | str:
    if getattr(exp.given, "x", None) is not None:
        return "--inputs gives one sequence: the clipping statistics need drawn inputs"
    if exp.spec.stacked:
        return "the bias of clipping needs every layer's gradient vector; bptt keeps layer 0's"
    weights = {name: np.asarray(value[0]) for name, value in _params(base.net).items()}
    # trial 0's network as given arrays (its forget bias already added), the data drawn per trial
    given: Any = exp.given
    changes = {"trials": draws, "radius": None, "norm": None, "given": replace(given, **weights)}
    if isinstance(exp.spec, GatedSpec):
        changes["forget_bias"] = 0.0
    an = _measure(exp, changes)
    vectors = [_flat(an, i) for i in range(draws)]
    log_norms = np.array([ln for _, ln in vectors])  # natural log of each draw's global norm
    top = float(np.max(log_norms[np.isfinite(log_norms)], initial=-np.inf))
    if not math.isfinite(top):
        return "the gradient is exactly zero for every drawn sequence"
    g = np.stack([v * math.exp(ln - top) if math.isfinite(ln) else np.zeros_like(v) for v, ln in vectors])
    norms = np.exp(log_norms - top)  # relative to the largest: in (0, 1]
    theta = float(np.quantile(norms, quantile))
    scale = np.minimum(1.0, theta / np.where(norms > 0, norms, np.inf))
    mean, clipped = g.mean(axis=0), (g * scale[:, None]).mean(axis=0)
    size = float(np.linalg.norm(mean))
    bias = float(np.linalg.norm(clipped - mean) / size) if size > 0 else None
    log10_norms = log_norms[np.isfinite(log_norms)] / LN10
    threshold_log10 = (math.log(theta) + top) / LN10 if theta > 0 else -math.inf
    return {  # the plain threshold is null beyond float64's range; its log10 carries it
        "threshold": pow10_value(threshold_log10),
        "threshold_log10": _finite(threshold_log10),
        "quantile": quantile,
        "draws": draws,
        "clipped_fraction": float(np.mean(norms > theta)),
        "relative_bias": bias,
        "norm_log10": {name: float(np.quantile(log10_norms, q)) for name, q in NORM_QUANTILES.items()},
    }


def _params(net: Any) -> dict[str, np.ndarray]:
    """The network's parameters by the names ``--weights`` reads, stacked over trials."""
    params = net.params
    return dict(params() if callable(params) else params)


def _flat(an: Analysis, i: int) -> tuple[np.ndarray, float]:
    """Trial ``i``'s whole gradient as one vector of norm 1 (or 0) and the natural log of its norm."""
    parts, scales = [], []
    for m, s in an.grads.params.values():
        parts.append(np.asarray(m[i], dtype=np.float64).ravel())
        scales.append(float(s[i]))
    top = max(scales)
    if not math.isfinite(top):
        return np.concatenate(parts) * 0.0, -math.inf
    v = np.concatenate([p * math.exp(s - top) for p, s in zip(parts, scales, strict=True)])
    size = float(np.linalg.norm(v))
    if size == 0:
        return v, -math.inf
    return v / size, top + math.log(size)


def snapshot_weights(source: Any) -> Any:
    """The weights the advice is about, for its remedy (``--apply``): a file's path as it is; arrays,
    a state_dict or a module copied now (as named numpy arrays), so that training the module after
    ``advise`` does not change what the remedy is applied to."""
    if source is None or isinstance(source, str | Path):
        return source
    from bptt_cli.io.weights import read_source

    raw, _ = read_source(source)
    return np.array(raw) if isinstance(raw, np.ndarray) else {k: np.array(v) for k, v in raw.items()}


# -- initialisation --------------------------------------------------------------------------------
def _init(exp: Experiment, base: Analysis, **_: Any) -> dict[str, Any] | str:
    spec = exp.spec
    if isinstance(spec, GatedSpec):
        better = "the forget-gate bias and the horizon" if spec.cell == "lstm" else "the horizon"
        return f"--cell {spec.cell}: no one matrix's scale sets a gated cell's gain (see {better})"
    if spec.stacked:
        return "the initial scale is advised for one-layer networks"
    if spec.T < 2:
        return "T = 1: no gradient travels back, whatever the scale"
    if not np.isfinite(base.median_gain_log10):
        return "the gradient is exactly zero at t = T or by t = 1: a scale cannot be measured"
    from_file = getattr(exp.given, "W_hh", None) is not None and spec.radius is None and spec.norm is None
    if from_file:
        knob, value = "rescale", 1.0
        if not np.any(np.asarray(exp.given.W_hh)):  # type: ignore[union-attr]
            return "W_hh is zero: no rescaling of it changes anything"
    else:
        knob = "radius" if spec.radius is not None else "norm" if spec.norm is not None else "gain"
        value = float(getattr(spec, knob))
        if value == 0:
            return f"--{knob} 0: W_hh is zero, no multiple of it changes anything"
    mf = _own_mean_field(spec.cell, base)
    factor = _edge_factor(spec.cell, mf) if mf is not None else math.nan
    edge = value * factor if math.isfinite(factor) else math.nan
    W = np.asarray(getattr(exp.given, "W_hh", None) if from_file else 0.0, dtype=np.float64)

    def gain(v: float) -> float:
        if from_file:  # the user's W_hh times v
            given: Any = exp.given
            return _gain(_measure(exp, {"given": replace(given, W_hh=W * v)}))
        return _gain(_measure(exp, {knob: v}))

    # the mean field's edge of chaos where it is defined, checked at 0.8, 1 and 1.2 times it; then
    # the scale whose measured gain is 1 (the recommendation: measured, not predicted)
    start = edge if math.isfinite(edge) and edge > 0 else value
    checks = [{"factor": s, "value": start * s, "gain_log10": gain(start * s)} for s in SCALES]
    known = {c["value"]: c["gain_log10"] for c in checks}
    chosen, after, bracketed = _measured_root(gain, start / 2, start * 2, known)
    result: dict[str, Any] = {
        "knob": knob,
        "value": chosen,
        "before": value,
        "gain": chosen if knob == "gain" else None,
        "rescale": chosen / value,
        "edge_of_chaos": _finite(edge),
        "chi_1": _chi_1_at(spec.cell, mf, chosen / value) if mf is not None else None,
        "chi_1_before": _median(mf.chi_1) if mf is not None else None,
        "mean_field_reason": None if mf is not None else _mean_field_reason(base),
        "gain_log10_before": _gain(base),
        "gain_log10_after": after,
        "checks": checks,
        "bracketed": bracketed,
        "alternatives": None,
    }
    if spec.cell == "relu" and not from_file:
        result["alternatives"] = {
            ens: _gain(_measure(exp, {"ensemble": ens, "gain": 1.0, "radius": None, "norm": None}))
            for ens in ("identity", "orthogonal")
        }
    return result


def _own_mean_field(cell: str, base: Analysis) -> Any:
    """The mean field of the network's own statistics (weight, input and bias variances): the
    theory's when it computed one, else computed here (the user's own weights: their statistics
    are what they are, iid or not); ``None`` where it is not defined (statistics beyond float64)."""
    from bptt_cli.core.cells import CELLS
    from bptt_cli.theory.meanfield import mean_field

    th = base.theory
    if th is not None and th.mean_field is not None:
        return th.mean_field
    net = base.net
    mf = mean_field(CELLS[cell], net.W_hh, net.W_hx, net.b_h, net.x)
    return mf if np.any(np.isfinite(mf.chi_1)) else None


def _mean_field_reason(base: Analysis) -> str:
    th = base.theory
    reason = getattr(th, "mean_field_reason", None) if th is not None else None
    return str(reason or "the network's statistics lie beyond float64")


def _chi_1_at(cell: str, mf: Any, c: float) -> float | None:
    """The mean field's ``chi_1`` with ``W_hh`` scaled by ``c`` (median over trials)."""
    from bptt_cli.core.cells import CELLS
    from bptt_cli.theory.meanfield import chi_1, fixed_point

    sigma = np.asarray(mf.weight_variance, dtype=np.float64) * c * c
    offset = np.asarray(mf.input_variance + mf.bias_variance, dtype=np.float64)
    ok = np.isfinite(sigma) & np.isfinite(offset)
    if not ok.any():
        return None
    phi = CELLS[cell]
    return _median(chi_1(phi, sigma[ok], fixed_point(phi, sigma[ok], offset[ok])))


def _median(values: Any) -> float | None:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else None


def _edge_factor(cell: str, mf: Any) -> float:
    """The factor c by which ``W_hh`` is scaled so that the mean-field ``chi_1 = 1`` (median over
    the trials), from each trial's weight, input and bias variances.

    At the edge ``sigma_w^2 E[phi'^2](q) = 1`` and ``q = sigma_w^2 E[phi^2](q) + offset``, so
    ``q`` solves ``E[phi^2](q) / E[phi'^2](q) + offset = q`` (bisection on ``ln q``) and
    ``sigma_w^2 = 1 / E[phi'^2](q)``. The identity cell's edge is ``sigma_w^2 = 1``, relu's 2
    (its variance diverges there when driven).
    """
    from bptt_cli.core.cells import CELLS
    from bptt_cli.theory.meanfield import BISECTIONS, LN_Q_RANGE, derivative_moment, second_moment

    offset = np.asarray(mf.input_variance + mf.bias_variance, dtype=np.float64)
    sigma = np.asarray(mf.weight_variance, dtype=np.float64)
    ok = np.isfinite(offset) & np.isfinite(sigma) & (sigma > 0)
    if not ok.any():
        return math.nan
    if cell in ("identity", "relu"):
        s_star = np.full(ok.sum(), 1.0 if cell == "identity" else 2.0)
    else:
        phi, u = CELLS[cell], offset[ok]

        def excess(ln_q: np.ndarray) -> np.ndarray:  # > 0 below the root
            q = np.exp(ln_q)
            return second_moment(phi, q) / derivative_moment(phi, q) + u - q

        lo, hi = np.full(u.shape, LN_Q_RANGE[0]), np.full(u.shape, LN_Q_RANGE[1])
        for _ in range(BISECTIONS):
            mid = 0.5 * (lo + hi)
            up = excess(mid) > 0
            lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
        s_star = 1.0 / derivative_moment(phi, np.exp(0.5 * (lo + hi)))
    return float(np.median(np.sqrt(s_star / sigma[ok])))


def _measured_root(
    gain: Callable[[float], float], lo: float, hi: float, known: dict[float, float] | None = None
) -> tuple[float, float, bool]:
    """The scale whose measured ``gain`` (log10, increasing in the scale on average, not always:
    one finite network fluctuates) is 0: ``[lo, hi]`` widened by factors of 2 (up to ``WIDEN``
    times each way) until it brackets 0, then bisected on the log scale. Returns ``(scale, its
    gain, whether 0 was bracketed)``; the scale is the measured one (``known`` gains included)
    whose gain is nearest 0."""
    seen = dict(known or {})

    def at(v: float) -> float:
        seen[v] = g = gain(v)
        return g

    g_lo, g_hi = at(lo), at(hi)
    for _ in range(WIDEN):
        if g_lo > 0:
            lo, hi, g_hi = lo / 2, lo, g_lo
            g_lo = at(lo)
        elif g_hi < 0:
            lo, hi, g_lo = hi, hi * 2, g_hi
            g_hi = at(hi)
        else:
            break
    bracketed = g_lo <= 0 <= g_hi
    if bracketed:  # false position on the log scale (Illinois: the stale end's gain halved)
        a, b, ga, gb, side = math.log(lo), math.log(hi), g_lo, g_hi, 0
        for _ in range(RESCALE_STEPS):
            mid = b - gb * (b - a) / (gb - ga) if gb != ga else 0.5 * (a + b)
            if not a < mid < b:
                mid = 0.5 * (a + b)
            g = at(math.exp(mid))
            if abs(g) <= ROOT_TOLERANCE:
                break
            if g < 0:
                a, ga = mid, g
                gb, side = (gb / 2, -1) if side == -1 else (gb, -1)
            else:
                b, gb = mid, g
                ga, side = (ga / 2, 1) if side == 1 else (ga, 1)
    finite = {v: g for v, g in seen.items() if math.isfinite(g)}
    best = min(finite.items() or seen.items(), key=lambda vg: abs(vg[1]))
    return best[0], best[1], bracketed


# -- LSTM forget bias ------------------------------------------------------------------------------
def _forget_bias(exp: Experiment, base: Analysis, **_: Any) -> dict[str, Any] | str:
    spec = exp.spec
    if spec.cell != "lstm":
        return "the forget-gate bias is an LSTM's"
    floor, before = -exp.tolerance, float(getattr(spec, "forget_bias", 0.0))
    now = _gain(base)
    if now > exp.tolerance:
        return f"the gradient explodes (gain 10^{now:+.3g}): a larger forget bias does not cure that"
    if now >= floor:
        return f"the gain 10^{now:+.3g} is already above 10^{floor:g} at --forget-bias {before:g}"

    def gain(b: float) -> float:
        return _gain(_measure(exp, {"forget_bias": b}))

    tried = {before: now}
    for step in FORGET_STEPS:  # up until one keeps the gain above the floor
        tried[before + step] = gain(before + step)
        if tried[before + step] >= floor:
            break
    ok = [b for b in sorted(tried) if tried[b] >= floor]
    if not ok:
        top = before + FORGET_STEPS[-1]
        return f"no forget bias up to {top:g} keeps the gain above 10^{floor:g} over T = {spec.T}"
    hi = ok[0]
    lo = max(b for b in tried if b < hi)
    while hi - lo > FORGET_RESOLUTION:
        mid = 0.5 * (lo + hi)
        tried[mid] = gain(mid)
        lo, hi = (mid, hi) if tried[mid] < floor else (lo, mid)
    return {
        "value": hi,
        "before": before,
        "gain_log10_before": now,
        "gain_log10_after": tried[hi],
        "floor_log10": floor,
        "measured": [{"forget_bias": b, "gain_log10": tried[b]} for b in sorted(tried)],
    }


# -- horizons --------------------------------------------------------------------------------------
def _horizon(exp: Experiment, base: Analysis, **_: Any) -> dict[str, Any]:
    T, tol = exp.spec.T, exp.tolerance
    gain = _gain(base)
    rate = gain / (T - 1) if T > 1 and math.isfinite(gain) else math.nan  # log10 per step back
    steps = tol / abs(rate) if math.isfinite(rate) and rate != 0 else math.inf
    lyap = _top_lyapunov(base)
    # chaos needs bounded dynamics: a linear (or relu) network with lambda_1 > 0 just grows
    chaos = lyap is not None and lyap > 0 and exp.spec.cell in BOUNDED
    predictability = math.log(2.0) / lyap if chaos else None  # type: ignore[operator]
    return {
        "T": T,
        "rate_log10_per_step": _finite(rate),
        "tolerance": tol,
        "vanish": _finite(steps) if rate < 0 else None,
        "explode": _finite(steps) if rate > 0 else None,
        "exceeds": bool(math.isfinite(steps) and steps < T - 1),
        "T_over_horizon": _finite((T - 1) / steps) if math.isfinite(steps) else 0.0,
        "lyapunov": lyap,
        "predictability_steps": predictability,
        # an interval below the predictability time: none when it is shorter than one step
        "interval": math.floor(predictability) if predictability and predictability >= 1 else None,
    }


def _top_lyapunov(an: Analysis) -> float | None:
    th = an.theory
    if th is None or th.lyapunov is None or th.lyapunov.exponents.shape[1] == 0:
        return None
    return _median(th.lyapunov.exponents[:, 0])


# -- the network with the remedy applied -----------------------------------------------------------
def remedied(
    arrays: dict[str, np.ndarray], advice: Advice, hidden: int, added: float = 0.0
) -> dict[str, np.ndarray]:
    """``arrays`` (named as ``--weights`` reads them, a module prefix allowed) with the advised scale
    of ``W_hh`` (``W_hh`` or ``weight_hh_l0``) or forget bias applied: the forget rows of every
    layer's ``bias_ih`` raised to the advised bias, less ``added`` (what they already hold of it).
    :class:`BadInput` if the arrays have nowhere to put it (an LSTM saved without biases)."""
    out = {k: np.array(v) for k, v in arrays.items()}
    names = {k: k.rsplit(".", 1)[-1] for k in out}
    init, forget = advice.init, advice.forget_bias
    if init is not None:
        for key, name in names.items():
            if name in ("W_hh", "weight_hh_l0"):
                out[key] = out[key] * init["rescale"]
    if forget is not None:
        biases = [key for key, name in names.items() if name.startswith("bias_ih_l")]
        if not biases:
            raise BadInput("--apply: the LSTM has no bias_ih (saved with bias=False): the forget bias "
                           "has nowhere to go")
        for key in biases:
            out[key][hidden : 2 * hidden] += forget["value"] - added
    return out


def _applied(exp: Experiment, base: Analysis, advice: Advice) -> dict[str, np.ndarray] | None:
    """Trial 0's parameters (the names ``--weights`` reads) with the advised scale of ``W_hh`` or
    forget bias applied (they already hold ``--forget-bias``); ``None`` if nothing is advised."""
    if advice.init is None and advice.forget_bias is None:
        return None
    params = {name: np.array(value[0], dtype=np.float64) for name, value in _params(base.net).items()}
    return remedied(params, advice, exp.spec.hidden, float(getattr(exp.spec, "forget_bias", 0.0)))
