"""Gradient estimators measured against full BPTT: truncation (regular, chunked, randomized) and clipping.

- ``window`` K (the chapter's regular truncation): every loss term keeps only the last K steps
  of its chain, ``dL/dh_t ~ sum_{s=t}^{t+K-1} (prod J^T) W_qh^T dL/do_s``; K = 1 keeps the
  local term ``W_qh^T dL/do_t`` alone.
- ``chunk`` K (truncated BPTT as training code does it): the sequence is cut into chunks of K
  steps from the start, the state carried forward, the gradient detached between chunks.
- ``random`` P (Tallec & Ollivier 2017): at each step the chain continues with probability P and
  is then reweighted by 1/P (``xi_t in {0, 1/P}``, ``E xi_t = 1``), an unbiased estimate; R
  independent draws, uniforms from the trial's ``SeedSequence`` (spawn key ``(*key, 1000, t // 256)``)
  shared by every P (common random numbers) and independent of workers and memory mode.
- ``clip`` theta: global norm clipping of the full gradient, scale ``min(1, theta / ||g||)``,
  ``||g||^2`` the sum over every parameter.

Everything runs in the scaled arithmetic of :mod:`bptt_cli.scaled` (mantissa, natural-log scale),
vectorised over trials ``n`` and draws, and segment by segment (works with checkpointing).
Only ``W_hh``, ``W_hx`` and ``b_h`` are affected by truncation; ``W_qh`` and ``b_q`` are exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .bptt import (
    Forward,
    Gradients,
    ParamSums,
    block_sum,
    local_terms,
    normalize,
    segments,
    through_phi,
    vector_sum,
)
from .cells import Cell
from .errors import BadInput
from .network import PARAMS, Network
from .scaled import LN10, Array, add, finite_or_zero, log_weights

KINDS = ("window", "chunk", "random", "clip")
MODES = ("window", "chunk")
RNG_BLOCK = 256  # steps per uniform-draw stream
RNG_KEY = 1000  # spawn-key component of the truncation streams (the network uses 0..6)


@dataclass(frozen=True)
class Estimator:
    """One estimator: ``kind`` (window, chunk, random, clip) and its ``K``, ``keep_prob``, ``draws``, ``clip``."""

    kind: str
    K: int | None = None
    keep_prob: float | None = None
    draws: int = 1
    clip: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BadInput(f"unknown estimator {self.kind!r} (choose from {', '.join(KINDS)})")
        if self.kind in MODES and (self.K is None or self.K < 1):
            raise BadInput(f"truncation length K must be at least 1, got {self.K}")
        if self.kind == "random":
            p = self.keep_prob
            if p is None or not (math.isfinite(p) and 0 < p <= 1):
                raise BadInput(f"--keep-prob must be in (0, 1], got {p}")
            if self.draws < 1:
                raise BadInput(f"--draws must be at least 1, got {self.draws}")
        if self.kind == "clip" and not (self.clip is not None and math.isfinite(self.clip) and self.clip > 0):
            raise BadInput(f"--clip must be a finite number > 0, got {self.clip}")

    @property
    def label(self) -> str:
        """``window:10``, ``chunk:10``, ``random:0.5``, ``clip:1``: the key under ``estimators``."""
        value = {"window": self.K, "chunk": self.K, "random": self.keep_prob, "clip": self.clip}[self.kind]
        return f"{self.kind}:{value:g}"


def estimators_from_options(
    truncate: str | None, mode: str = "window", keep_prob: float | None = None,
    draws: int = 100, clip: float | None = None,
) -> list[Estimator]:
    """The estimators asked for by ``--truncate K|random --truncate-mode --keep-prob --draws --clip``."""
    out = []
    if mode not in MODES:
        raise BadInput(f"unknown --truncate-mode {mode!r} (choose from window, chunk)")
    if truncate is not None:
        if truncate.strip().lower() == "random":
            if keep_prob is None:
                raise BadInput("--truncate random needs --keep-prob P")
            out.append(Estimator("random", keep_prob=keep_prob, draws=draws))
        else:
            try:
                K = int(truncate)
            except ValueError:
                msg = f"--truncate must be a positive integer or 'random', got {truncate!r}"
                raise BadInput(msg) from None
            out.append(Estimator(mode, K=K))
    if keep_prob is not None and (truncate is None or truncate.strip().lower() != "random"):
        raise BadInput("--keep-prob only applies to --truncate random")
    if clip is not None:
        out.append(Estimator("clip", clip=clip))
    return out


@dataclass
class Estimate:
    """Parameter gradients of an estimator: ``params[name] = (m (n, C, *shape), s (n, C))``, C draws.

    ``backward_steps (n,)``: vector-Jacobian products ``W_hh^T diag(phi') v`` applied (mean over
    draws); ``extra``: per-kind numbers (``memory_bytes``; clip ``scale_log10``, ``norm_log10``).
    """

    estimator: Estimator
    params: dict[str, tuple[Array, Array]]
    backward_steps: Array
    extra: dict[str, Array] = field(default_factory=dict)


def full_backward_steps(T: int) -> int:
    """Vector-Jacobian products of full BPTT: one chain from t = T to t = 1."""
    return T - 1


def _uniforms(net: Network, draws: int, rb: int) -> Array:
    """Uniforms ``(n, draws, RNG_BLOCK)`` of steps ``rb*RNG_BLOCK ...`` for every trial."""
    seeds = net.seeds or np.random.SeedSequence(0).spawn(net.shape[0])
    out = []
    for seq in seeds:
        child = np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, RNG_KEY, rb))
        out.append(np.random.default_rng(child).random((draws, RNG_BLOCK)))
    return np.stack(out)


def _accumulate(
    sums: ParamSums, net: Network, seg_h_m: Array, seg_h_s: Array, t0: int, b0: int, b1: int,
    da_m: Array, da_s: Array,
) -> None:
    """Add one block's ``W_hh``, ``W_hx``, ``b_h`` terms; ``da_m (n, C, L, h)``, ``da_s (n, C, L)``."""
    hp_m, hp_s = seg_h_m[:, None, b0 - t0 : b1 - t0], seg_h_s[:, None, b0 - t0 : b1 - t0]
    sums.add("W_hh", *block_sum(da_m, hp_m, da_s + hp_s))
    sums.add("W_hx", *block_sum(da_m, net.x[:, None, b0:b1], da_s))
    sums.add("b_h", *vector_sum(da_m, da_s))


def _blocks(t0: int, t1: int, block: int) -> range:
    """Starts of the absolute blocks of ``[t0, t1)``, last first (``t0`` a multiple of ``block``)."""
    return range(t0 + ((t1 - 1 - t0) // block) * block, t0 - 1, -block)


def _chain_estimate(net: Network, cell: Cell, loss: str, fwd: Forward, est: Estimator) -> Estimate:
    """Chunk and randomized truncation: ``dL/dh_{t-1} = local_{t-1} + xi_t J_t^T dL/dh_t``."""
    n, T, h, _, _ = net.shape
    C = est.draws if est.kind == "random" else 1
    p = est.keep_prob or 1.0
    sums = ParamSums()
    c_m, c_s = np.zeros((n, C, h)), np.full((n, C), -np.inf)
    steps = np.zeros((n, C))
    alive = np.ones((n, C), dtype=bool)
    rb_now, U = -1, np.empty(0)
    for seg in segments(net, cell, fwd):
        t0 = seg.t0
        for b0 in _blocks(t0, seg.t1, fwd.block):
            b1 = min(b0 + fwd.block, seg.t1)
            L = b1 - b0
            _, _, local_m, local_s = local_terms(
                net, seg.e_m[:, b0 - t0 : b1 - t0], seg.e_s[:, b0 - t0 : b1 - t0], loss, b1
            )
            da_m, da_s = np.empty((n, C, L, h)), np.empty((n, C, L))
            for k in range(L - 1, -1, -1):
                t = b0 + k
                if t == T - 1:
                    g_m = np.repeat(local_m[:, None, k], C, axis=1)
                    g_s = np.repeat(local_s[:, None, k], C, axis=1)
                elif loss == "mean":
                    g_m, g_s = add(c_m, c_s, local_m[:, None, k], local_s[:, None, k])
                else:
                    g_m, g_s = c_m, c_s
                dphi = None if seg.log_dphi is None else seg.log_dphi[:, t - t0]
                d_m, d_s = through_phi(dphi, g_m, g_s)
                da_m[:, :, k], da_s[:, :, k] = d_m, d_s
                if t == 0:
                    break
                if est.kind == "chunk":
                    keep = np.full((n, C), t % est.K != 0)  # type: ignore[operator]
                else:
                    rb = t // RNG_BLOCK
                    if rb != rb_now:
                        rb_now, U = rb, _uniforms(net, C, rb)
                    keep = U[:, :, t % RNG_BLOCK] < p
                c_m, c_s = normalize(np.matmul(d_m, net.W_hh), d_s)
                with np.errstate(divide="ignore"):
                    c_s = np.where(keep, c_s - math.log(p), -np.inf)
                c_m = np.where(keep[..., None], c_m, 0.0)
                alive &= keep if loss == "last" else True
                steps += alive if loss == "last" else keep
            _accumulate(sums, net, seg.h_m, seg.h_s, t0, b0, b1, da_m, da_s)
    extra = {}
    if est.kind == "chunk":
        extra["memory_bytes"] = np.full(n, 8.0 * (2 * min(est.K, T) + 1) * h)  # type: ignore[type-var]
    return Estimate(est, sums.sums, np.mean(steps, axis=1), extra)


def _window_estimate(net: Network, cell: Cell, loss: str, fwd: Forward, est: Estimator) -> Estimate:
    """Regular truncation: a ring of K chains; chain ``s`` gives way to ``local_t`` as it leaves the window."""
    n, T, h, _, _ = net.shape
    K = min(est.K, T)  # type: ignore[type-var]
    sums = ParamSums()
    r_m, r_s = np.zeros((n, K, h)), np.full((n, K), -np.inf)
    for seg in segments(net, cell, fwd):
        t0 = seg.t0
        for b0 in _blocks(t0, seg.t1, fwd.block):
            b1 = min(b0 + fwd.block, seg.t1)
            L = b1 - b0
            _, _, local_m, local_s = local_terms(
                net, seg.e_m[:, b0 - t0 : b1 - t0], seg.e_s[:, b0 - t0 : b1 - t0], loss, b1
            )
            da_m, da_s = np.empty((n, 1, L, h)), np.empty((n, 1, L))
            for k in range(L - 1, -1, -1):
                t = b0 + k
                r_m[:, t % K], r_s[:, t % K] = local_m[:, k], local_s[:, k]
                w, top = log_weights(r_s)
                g_m, g_s = normalize(np.einsum("nk,nki->ni", w, r_m), finite_or_zero(top))
                g_s = np.where(np.isneginf(top), -np.inf, g_s)
                dphi = None if seg.log_dphi is None else seg.log_dphi[:, t - t0]
                d_m, d_s = through_phi(dphi, g_m[:, None], g_s[:, None])
                da_m[:, :, k], da_s[:, :, k] = d_m, d_s
                if t == 0:
                    break
                dr_m, dr_s = through_phi(dphi, r_m, r_s)
                r_m, r_s = normalize(np.matmul(dr_m, net.W_hh), dr_s)
            _accumulate(sums, net, seg.h_m, seg.h_s, t0, b0, b1, da_m, da_s)
    s = np.arange(1, T + 1)
    steps = np.sum(np.minimum(K, s) - 1) if loss == "mean" else K - 1
    return Estimate(est, sums.sums, np.full(n, float(steps)))


def _log_sum_exp(x: Array, axis: int = -1) -> Array:
    """``ln sum exp x`` along ``axis``; ``-inf`` when every term is ``-inf``."""
    w, top = log_weights(x, axis=axis)
    with np.errstate(divide="ignore"):
        return finite_or_zero(top) + np.log(np.sum(w, axis=axis))


def _flat(m: Array, s: Array) -> tuple[Array, Array]:
    """Unit vector and natural-log norm of scaled parameters ``m (*lead, *shape)``, ``s (*lead)``."""
    return normalize(m.reshape(*s.shape, -1), s)


def global_norm_ln(params: dict[str, tuple[Array, Array]]) -> Array:
    """``ln ||g||`` over every parameter together (the clipping norm), ``(n,)``."""
    per = np.stack([_flat(*params[name])[1] for name in PARAMS], axis=-1)
    return 0.5 * _log_sum_exp(2.0 * per)


def clip_estimate(grads: Gradients, est: Estimator) -> Estimate:
    """Global norm clipping of the full gradient: every parameter times ``min(1, theta / ||g||)``."""
    norm_ln = global_norm_ln(grads.params)
    scale_ln = np.minimum(0.0, math.log(est.clip) - norm_ln)  # type: ignore[arg-type]
    scale_ln = np.where(np.isneginf(norm_ln), 0.0, scale_ln)
    params = {name: (m[:, None], (s + scale_ln)[:, None]) for name, (m, s) in grads.params.items()}
    extra = {"scale_log10": scale_ln / LN10, "norm_log10": norm_ln / LN10}
    return Estimate(est, params, np.full(grads.dL_dh_s.shape[0], float(grads.dL_dh_s.shape[1] - 1)), extra)


def estimate(
    net: Network, cell: Cell, loss: str, fwd: Forward, grads: Gradients, est: Estimator
) -> Estimate:
    """Run one estimator on every trial (``fwd`` stored or checkpointed; ``grads`` the full BPTT)."""
    if est.kind == "clip":
        return clip_estimate(grads, est)
    e = _window_estimate(net, cell, loss, fwd, est) if est.kind == "window" else _chain_estimate(
        net, cell, loss, fwd, est
    )
    for name in ("W_qh", "b_q"):  # not on the recurrent chain: exact
        m, s = grads.params[name]
        e.params[name] = (m[:, None], s[:, None])
    return e


def compare(full: tuple[Array, Array], hat: tuple[Array, Array]) -> dict[str, Array]:
    """Accuracy of ``hat (m (n, C, ...), s (n, C))`` against ``full (m (n, ...), s (n,))``, ``(n,)`` each.

    Natural logs: ``relative_error_ln`` (mean over draws of ``||g_hat - g|| / ||g||``),
    ``norm_ratio_ln`` (mean of ``||g_hat|| / ||g||``), ``cosine`` (mean), and over the draws
    ``relative_bias_ln`` (``||mean g_hat - g|| / ||g||``) and ``relative_variance_ln``
    (``mean ||g_hat - g||^2 / ||g||^2``).
    """
    u, ln_g = _flat(*full)
    v, ln_h = _flat(*hat)
    C = ln_h.shape[1]
    _, diff_ln = add(v, ln_h, -u[:, None], ln_g[:, None])
    with np.errstate(invalid="ignore"):
        rel_ln = diff_ln - ln_g[:, None]
        ratio_ln = ln_h - ln_g[:, None]
        cos = np.where(np.isneginf(ln_h) | np.isneginf(ln_g)[:, None], np.nan, np.einsum("nck,nk->nc", v, u))
        w, top = log_weights(ln_h)
        mean_m, mean_ln = normalize(np.einsum("nc,nck->nk", w, v), finite_or_zero(top) - math.log(C))
        mean_ln = np.where(np.isneginf(top), -np.inf, mean_ln)
        _, bias_ln = add(mean_m, mean_ln, -u, ln_g)
        return {
            "relative_error_ln": _log_sum_exp(rel_ln) - math.log(C),
            "norm_ratio_ln": _log_sum_exp(ratio_ln) - math.log(C),
            "cosine": np.mean(cos, axis=1),
            "relative_bias_ln": bias_ln - ln_g,
            "relative_variance_ln": _log_sum_exp(2.0 * rel_ln) - math.log(C),
        }


def _pow10(x: float) -> float:
    """``10**x`` with ``-inf`` -> 0, overflow -> inf (written as null), NaN kept."""
    if math.isnan(x):
        return math.nan
    return 0.0 if x == -math.inf else (10.0**x if x < 308 else math.inf)


def estimate_record(e: Estimate, metrics: dict[str, dict[str, Array]], i: int, T: int) -> dict[str, object]:
    """The JSON record of trial ``i`` under ``trials[i].estimators[label]`` (keys in the README)."""
    est = e.estimator
    rec: dict[str, object] = {"kind": est.kind}
    if est.kind in MODES:
        rec["K"] = est.K
    if est.kind == "random":
        rec["keep_prob"], rec["draws"] = est.keep_prob, est.draws
    if est.kind == "clip":
        rec["threshold"] = est.clip
        rec["scale"] = _pow10(float(e.extra["scale_log10"][i]))
        rec["scale_log10"] = e.extra["scale_log10"][i]
        rec["norm_log10"] = e.extra["norm_log10"][i]
    rec["backward_steps"] = e.backward_steps[i]
    rec["backward_steps_full"] = full_backward_steps(T)
    if "memory_bytes" in e.extra:
        rec["memory_bytes"] = e.extra["memory_bytes"][i]
    params: dict[str, dict[str, float]] = {}
    for name in PARAMS:
        m = metrics[name]
        p = {}
        keys = ["relative_error", "norm_ratio"] + (
            ["relative_bias", "relative_variance"] if est.kind == "random" else []
        )
        for key in keys:
            log10 = float(m[key + "_ln"][i]) / LN10
            p[key] = _pow10(log10)
            p[key + "_log10"] = log10
        p["cosine"] = float(m["cosine"][i])
        params[name] = p
    rec["params"] = params
    return rec


def run_estimators(
    net: Network, cell: Cell, loss: str, fwd: Forward, grads: Gradients, ests: list[Estimator]
) -> list[tuple[Estimate, dict[str, dict[str, Array]]]]:
    """Every estimator and its accuracy per parameter (``compare``)."""
    out = []
    for est in ests:
        e = estimate(net, cell, loss, fwd, grads, est)
        out.append((e, {name: compare(grads.params[name], e.params[name]) for name in PARAMS}))
    return out
