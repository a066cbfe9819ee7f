"""Gradient estimators measured against full BPTT: truncation (window, chunk, randomized) and clipping.

Index ``t = 0..T-1`` is time step ``t + 1``; ``l_t = W_qh^T dL/do_t`` is the local term and
``J_t^T v = W_hh^T diag(phi'(a_t)) v`` one backward step. Full BPTT runs one chain
``g_t = l_t + J_{t+1}^T g_{t+1}`` from ``t = T-1`` down, and every parameter gradient is a
sum over t of ``dL/da_t = diag(phi'(a_t)) g_t`` times ``h_{t-1}``, ``x_t`` or 1. The estimators
replace ``g_t`` by:

- ``window`` K (the chapter's regular truncation): every loss term keeps the last K steps of
  its chain, ``g_t = sum_{s=t}^{t+K-1} J_{t+1}^T ... J_s^T l_s``; K = 1 keeps ``l_t`` alone,
  K >= T is full BPTT. For the ``mean`` loss the chains of the last K loss terms run side by
  side (a ring of K columns): ``T min(K, T)`` backward steps.
- ``chunk`` K (truncated BPTT as training code does it): the sequence is cut into chunks of K
  steps from t = 1, the state carried forward, the gradient detached between chunks:
  ``g_t = l_t + J_{t+1}^T g_{t+1}`` within a chunk, ``g_t = l_t`` at a chunk's last step.
- ``random`` P (Tallec & Ollivier 2017): ``g_t = l_t + xi_{t+1} J_{t+1}^T g_{t+1}`` with
  independent ``xi in {0, 1/P}``, ``P(xi = 1/P) = P``, so ``E xi = 1`` and, by induction from
  ``t = T-1`` down (``xi_{t+1}`` is independent of ``g_{t+1}``), ``E g_t`` is the full gradient:
  the estimate is unbiased. Draw r's ``xi_{t+1}`` is ``1/P`` when its uniform ``U[r, t+1] < P``;
  the uniforms come from the trial's ``SeedSequence`` (spawn key ``(*key, 1000, t // 256)``,
  row r), so they do not depend on workers, memory mode, how draws are batched or on P
  (every P sees the same uniforms: common random numbers).
- ``clip`` theta: global norm clipping of the full gradient, every parameter times
  ``min(1, theta / ||g||)``, ``||g||^2`` summed over every parameter.

``W_qh`` and ``b_q`` do not depend on the chain: truncation leaves them exact.
Arithmetic: each column of chains is a mantissa renormalised at every step and a natural-log
scale carried with compensated (Kahan) summation, so nothing overflows and 3000 exploding
steps lose no more than the core does; arrays carry a leading trial axis ``n`` and a column
axis (draws, or the ring); one Python step advances every trial and column. Sums over time use the same
absolute blocks as :mod:`bptt_cli.core.elman`, and the forward values come from
:func:`bptt_cli.core.elman.segments`, so a stored and a checkpointed pass give the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bptt_cli.analysis.memory import format_size
from bptt_cli.core.cells import Cell
from bptt_cli.core.elman import Forward, Gradients, ParamSums, block_sum, local_terms, segments, vector_sum
from bptt_cli.core.network import PARAMS, Network
from bptt_cli.core.scaled import Array, add, finite_or_zero, log_weights, normalize
from bptt_cli.errors import BadInput

KINDS = ("window", "chunk", "random", "clip")
MODES = ("window", "chunk")
CHAIN_PARAMS = ("W_hh", "W_hx", "b_h")  # the parameters truncation changes
RNG_BLOCK = 256  # steps per stream of uniforms
RNG_KEY = 1000  # spawn-key component of the truncation streams (the network uses 0..6)
DRAW_BUDGET = 256 * 2**20  # bytes of per-draw working space per batch of draws (by default)
SAFE = 1e150  # a live chain's norm in (1/SAFE, SAFE) is taken as is, else by the careful path

Uniforms = Callable[[NDArray[np.int64], int, int], Array]


@dataclass(frozen=True)
class Estimator:
    """One estimator: ``kind`` (window, chunk, random, clip), ``K``, ``keep_prob``, ``draws``, ``clip``."""

    kind: str
    K: int = 0
    keep_prob: float = 1.0
    draws: int = 1
    clip: float = math.inf

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BadInput(f"unknown estimator {self.kind!r} (choose from {', '.join(KINDS)})")
        if self.kind in MODES and self.K < 1:
            raise BadInput(f"--truncate K must be at least 1, got {self.K}")
        if self.kind == "random":
            p = self.keep_prob
            if not (math.isfinite(p) and 0 < p <= 1):
                raise BadInput(f"--keep-prob must be in (0, 1], got {p:g}")
            if self.draws < 1:
                raise BadInput(f"--draws must be at least 1, got {self.draws}")
        if self.kind == "clip" and not (math.isfinite(self.clip) and self.clip > 0):
            raise BadInput(f"--clip must be a finite number > 0, got {self.clip:g}")

    @property
    def label(self) -> str:
        """``window:10``, ``chunk:10``, ``random:0.5``, ``clip:1``."""
        value = {"window": self.K, "chunk": self.K, "random": self.keep_prob, "clip": self.clip}[self.kind]
        return f"{self.kind}:{value:g}"

    @property
    def columns(self) -> int:
        """Draws (random) or 1."""
        return self.draws if self.kind == "random" else 1


def estimators_from_options(
    truncate: str | None = None, mode: str | None = None, keep_prob: float | None = None,
    draws: int | None = None, clip: float | None = None,
) -> list[Estimator]:
    """The estimators of ``--truncate K|random --truncate-mode --keep-prob --draws --clip``.

    Options that do not apply (``--keep-prob`` without ``--truncate random``, ``--truncate-mode``
    with it) are errors rather than silently ignored.
    """
    out = []
    if mode is not None and mode not in MODES:
        raise BadInput(f"unknown --truncate-mode {mode!r} (choose from window, chunk)")
    if truncate is not None:
        text = truncate.strip().lower()
        if text == "random":
            if keep_prob is None:
                raise BadInput("--truncate random needs --keep-prob P")
            if mode is not None:
                raise BadInput("--truncate-mode applies to --truncate K, not to --truncate random")
            out.append(Estimator("random", keep_prob=keep_prob, draws=100 if draws is None else draws))
        else:
            try:
                K = int(text)
            except ValueError:
                msg = f"--truncate must be a positive integer K or 'random', got {truncate!r}"
                raise BadInput(msg) from None
            out.append(Estimator(mode or "window", K=K))
    if truncate is None or truncate.strip().lower() != "random":
        for flag, value in (("--keep-prob", keep_prob), ("--draws", draws)):
            if value is not None:
                raise BadInput(f"{flag} applies to --truncate random only")
    if truncate is None and mode is not None:
        raise BadInput("--truncate-mode applies to --truncate K only")
    if clip is not None:
        out.append(Estimator("clip", clip=clip))
    return out


# --- the truncated chains --------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """How the chains of one estimator run: ``columns`` chains side by side.

    ``arrivals(b0, b1)`` gives, for every index ``t`` of ``b0..b1-1`` (below T-1), the natural
    log of the factor applied to the chain arriving at t from t+1, ``(n or 1, columns, L)``
    (0 keeps it, ``-ln P`` reweights it, ``-inf`` cuts it). ``local_cols(t)`` ``(1, columns)``
    says which columns receive the local term ``l_t`` (``None``: every column). ``summed``:
    ``g_t`` is the sum of the columns (the window ring), else each column is one estimate.
    """

    columns: int
    summed: bool
    arrivals: Callable[[int, int], Array]
    local_cols: Callable[[int], NDArray[np.bool_]] | None = None


def default_uniforms(net: Network, draws: int) -> Uniforms:
    """The uniforms ``U[r, t]`` of draws ``r0..r1-1`` at indices ``t``: ``(n, r1 - r0, len(t))``.

    Index t of trial i is entry ``t % 256`` of row r of ``default_rng(SeedSequence(entropy,
    spawn_key=(*key_i, 1000, t // 256))).random((draws, 256))``.
    """
    seeds = net.seeds or np.random.SeedSequence(0).spawn(net.shape[0])
    cache: dict[int, Array] = {}

    def stream(rb: int) -> Array:
        if rb not in cache:
            if len(cache) > 4:
                cache.clear()
            cache[rb] = np.stack([
                np.random.default_rng(
                    np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, RNG_KEY, rb))
                ).random((draws, RNG_BLOCK))
                for seq in seeds
            ])
        return cache[rb]

    def uniforms(t: NDArray[np.int64], r0: int, r1: int) -> Array:
        out = np.empty((len(seeds), r1 - r0, t.size))
        for rb in np.unique(t // RNG_BLOCK):
            at = t // RNG_BLOCK == rb
            out[:, :, at] = stream(int(rb))[:, r0:r1, t[at] % RNG_BLOCK]
        return out

    return uniforms


def _plan(net: Network, loss: str, est: Estimator, draws: range, uniforms: Uniforms | None) -> _Plan:
    """The chains of ``est`` (``draws``: the rows of uniforms of this batch, random only)."""
    T = net.shape[1]
    if est.kind == "chunk":
        K = est.K

        def chunk(b0: int, b1: int) -> Array:
            t = np.arange(b0, b1)
            return np.where((t + 1) % K == 0, -np.inf, 0.0)[None, None, :]

        return _Plan(1, False, chunk)
    if est.kind == "window" and loss == "last":
        K = est.K

        def window_last(b0: int, b1: int) -> Array:
            return np.where(np.arange(b0, b1) >= T - K, 0.0, -np.inf)[None, None, :]

        return _Plan(1, False, window_last)
    if est.kind == "window":
        C = min(est.K, T)
        cols = np.arange(C)

        def ring(b0: int, b1: int) -> Array:
            t = np.arange(b0, b1)
            return np.where(cols[:, None] == t[None, :] % C, -np.inf, 0.0)[None]

        def ring_cols(t: int) -> NDArray[np.bool_]:
            return (cols == t % C)[None]

        return _Plan(C, True, ring, ring_cols)
    if est.kind == "random":
        draw = uniforms or default_uniforms(net, draws.stop)
        keep_ln = -math.log(est.keep_prob)

        def random(b0: int, b1: int) -> Array:
            U = draw(np.arange(b0 + 1, b1 + 1), draws.start, draws.stop)
            return np.where(est.keep_prob > U, keep_ln, -np.inf)

        return _Plan(len(draws), False, random)
    raise ValueError(f"no chain for estimator {est.kind!r}")


def _blocks(t0: int, t1: int, block: int) -> range:
    """Starts of the absolute blocks of ``[t0, t1)``, last first (``t0`` a multiple of ``block``)."""
    return range(t0 + ((t1 - 1 - t0) // block) * block, t0 - 1, -block)


@dataclass(frozen=True)
class Truncated:
    """Estimates of one estimator: ``params[name] = (m (n, C, *shape), s (n, C))`` for C columns.

    ``backward_steps (n, C)``: the products ``J_t^T v`` each estimate needed (a product is
    counted when its result is kept: a chain cut at a step costs nothing there).
    """

    params: dict[str, tuple[Array, Array]]
    backward_steps: Array


def truncated_gradients(
    net: Network, cell: Cell, loss: str, fwd: Forward, est: Estimator,
    draws: range | None = None, uniforms: Uniforms | None = None,
) -> Truncated:
    """``W_hh``, ``W_hx``, ``b_h`` gradients of a window, chunk or random estimator.

    ``fwd`` stored or checkpointed (the same numbers either way). ``draws``: which draws of a
    random estimator (default all); ``uniforms`` replaces :func:`default_uniforms` (tests).
    """
    n, T, h, _, _ = net.shape
    plan = _plan(net, loss, est, draws if draws is not None else range(est.columns), uniforms)
    C, mean = plan.columns, loss == "mean"
    out_C = 1 if plan.summed else C
    sums = ParamSums()
    x = np.zeros((n, C, h))  # a column with s = -inf is an exact zero, whatever its x
    s = np.full((n, C), -np.inf)
    comp = np.zeros((n, C))  # Kahan compensation of s: the scale grows by a little every step
    alive = np.zeros((n, C), dtype=bool)
    steps = np.zeros((n, C))
    all_cols = np.ones((1, C), dtype=bool)
    done = False
    for seg in segments(net, cell, fwd):
        t0 = seg.t0
        for b0 in _blocks(t0, seg.t1, fwd.block):
            b1 = min(b0 + fwd.block, seg.t1)
            L = b1 - b0
            _, _, loc_m, loc_s = local_terms(
                net, seg.e_m[:, b0 - t0 : b1 - t0], seg.e_s[:, b0 - t0 : b1 - t0], loss, b1
            )
            if seg.dphi is None:
                w, tphi = None, np.zeros((n, L))
            else:
                w, tphi = seg.dphi.w[:, b0 - t0 : b1 - t0], seg.dphi.top[:, b0 - t0 : b1 - t0]
            arrive = plan.arrivals(b0 - 1, b1 - 1)  # entry k: the factor of the step from b0+k to b0+k-1
            D_m, D_s = np.zeros((n, out_C, L, h)), np.full((n, out_C, L), -np.inf)
            for k in range(L - 1, -1, -1):
                t = b0 + k
                if mean or t == T - 1:
                    cols = all_cols if plan.local_cols is None else plan.local_cols(t)
                    ls = np.where(cols, loc_s[:, k, None], -np.inf)
                    hi = np.maximum(s, ls)
                    top = finite_or_zero(hi)
                    x = x * np.exp(s - top)[..., None] + loc_m[:, None, k] * np.exp(ls - top)[..., None]
                    new = np.where(np.isneginf(hi), -np.inf, top)
                    comp = np.where(new == s, comp, 0.0)  # a new scale is exact
                    s = new
                    alive |= cols
                elif not alive.any():  # the last loss: every chain is cut, the rest is zero
                    done = True
                    break
                xw = x if w is None else x * w[:, None, k]
                if plan.summed:
                    hi = np.max(s, axis=1)
                    top = finite_or_zero(hi)
                    D_m[:, 0, k] = np.einsum("nc,nci->ni", np.exp(s - top[:, None]), xw)
                    D_s[:, 0, k] = np.where(np.isneginf(hi), -np.inf, top + tphi[:, k])
                else:
                    D_m[:, :, k], D_s[:, :, k] = xw, s + tphi[:, k, None]
                if t == 0:
                    break
                a = arrive[:, :, k]  # (n or 1, C): 0 keeps, -ln P reweights, -inf cuts
                kept = np.isfinite(a)
                steps += alive & kept
                alive &= kept
                x = np.matmul(xw, net.W_hh)  # rows (W_hh^T diag(phi') v)^T
                norm = np.sqrt(np.einsum("nci,nci->nc", x, x))
                if np.all(np.isneginf(s) | ((norm > 1 / SAFE) & (norm < SAFE))):
                    x /= np.where(norm > 0, norm, 1.0)[..., None]  # cut columns too: kept bounded
                    with np.errstate(divide="ignore"):
                        ln_norm = np.log(norm)
                else:  # a live chain far from 1, or zero: the careful path
                    x, ln_norm = normalize(x)
                y = (tphi[:, k, None] + a + ln_norm) - comp
                total = s + y
                with np.errstate(invalid="ignore"):
                    comp = np.where(np.isfinite(total), (total - s) - y, 0.0)
                s = total
            hp = slice(b0 - t0, b1 - t0)
            sums.add("W_hh", *block_sum(D_m, seg.h_m[:, None, hp], D_s + seg.h_s[:, None, hp]))
            sums.add("W_hx", *block_sum(D_m, net.x[:, None, b0:b1], D_s))
            sums.add("b_h", *vector_sum(D_m, D_s))
            if done:
                break
        if done:
            break
    params = sums.sums
    if plan.summed:
        steps = np.sum(steps, axis=1, keepdims=True)
    return Truncated(params, steps)


# --- clipping --------------------------------------------------------------------------------


def _flat(m: Array, s: Array) -> tuple[Array, Array]:
    """Unit vector and natural-log norm of scaled parameters ``m (*lead, *shape)``, ``s (*lead)``."""
    return normalize(m.reshape(*s.shape, -1), s)


def _log_sum_exp(x: Array, axis: int = -1) -> Array:
    """``ln sum exp x`` along ``axis``; ``-inf`` when every term is ``-inf``; NaN stays NaN."""
    w, top = log_weights(x, axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return finite_or_zero(top) + np.log(np.sum(w, axis=axis))


def global_norm_ln(params: dict[str, tuple[Array, Array]]) -> Array:
    """``ln ||g||`` over every parameter together (the clipping norm), ``(n,)``."""
    per = np.stack([_flat(*params[name])[1] for name in PARAMS], axis=-1)
    return 0.5 * _log_sum_exp(2.0 * per)


def clip_gradients(
    params: dict[str, tuple[Array, Array]], theta: float
) -> tuple[dict[str, tuple[Array, Array]], Array, Array]:
    """Global norm clipping: every parameter times ``min(1, theta / ||g||)``.

    Returns the clipped ``params`` (same shapes), ``ln`` of the scale and ``ln ||g||``, ``(n,)``
    each (a zero gradient has scale 1).
    """
    norm_ln = global_norm_ln(params)
    scale_ln = np.where(np.isneginf(norm_ln), 0.0, np.minimum(0.0, math.log(theta) - norm_ln))
    return {name: (m, s + scale_ln) for name, (m, s) in params.items()}, scale_ln, norm_ln


# --- accuracy against full BPTT --------------------------------------------------------------


@dataclass(frozen=True)
class Accuracy:
    """One parameter's estimate against full BPTT, per trial ``(n,)``, natural logs.

    ``relative_error_ln``: ln of the mean over draws of ``||g_hat - g|| / ||g||``;
    ``norm_ratio_ln``: ln of the mean of ``||g_hat|| / ||g||``; ``cosine``: mean cosine;
    ``relative_bias_ln``: ``ln ||mean g_hat - g|| / ||g||``; ``relative_variance_ln``:
    ``ln mean ||g_hat - g||^2 / ||g||^2``; ``relative_spread_ln``:
    ``ln mean ||g_hat - mean g_hat||^2 / ||g||^2`` (the draws' variance about their mean).
    """

    relative_error_ln: Array
    norm_ratio_ln: Array
    cosine: Array
    relative_bias_ln: Array
    relative_variance_ln: Array
    relative_spread_ln: Array


class _Agreement:
    """Accumulates one parameter's accuracy over batches of draws (Chan's pairwise variance)."""

    def __init__(self, full: tuple[Array, Array]) -> None:
        self.u, self.ln_g = _flat(*full)
        self.count = 0
        self.rel: list[Array] = []
        self.ratio: list[Array] = []
        self.cos: list[Array] = []
        self.mean: tuple[Array, Array] | None = None
        self.m2_ln = np.full(self.ln_g.shape, -np.inf)

    def add(self, hat: tuple[Array, Array]) -> None:
        """Draws ``hat = (m (n, C, *shape), s (n, C))``."""
        u, ln_g = self.u[:, None], self.ln_g[:, None]
        v, ln_h = _flat(*hat)
        C = ln_h.shape[1]
        diff_ln = add(v, ln_h, -u, ln_g)[1]
        with np.errstate(invalid="ignore"):
            self.rel.append(diff_ln - ln_g)
            self.ratio.append(ln_h - ln_g)
        undefined = np.isneginf(ln_h) | np.isneginf(ln_g)
        self.cos.append(np.where(undefined, np.nan, np.einsum("nck,nck->nc", v, np.broadcast_to(u, v.shape))))
        w, top = log_weights(ln_h)
        with np.errstate(divide="ignore"):
            mean_m, mean_s = normalize(np.einsum("nc,nck->nk", w, v), finite_or_zero(top) - math.log(C))
        mean_s = np.where(np.isneginf(top), -np.inf, mean_s)
        m2_ln = _log_sum_exp(2.0 * add(v, ln_h, -mean_m[:, None], mean_s[:, None])[1])
        if self.mean is None:
            self.mean, self.m2_ln, self.count = (mean_m, mean_s), m2_ln, C
            return
        na, nb = self.count, C
        am, as_ = self.mean
        _, delta_ln = add(mean_m, mean_s, -am, as_)
        cross_ln = 2.0 * delta_ln + math.log(na * nb / (na + nb))
        self.m2_ln = _log_sum_exp(np.stack([self.m2_ln, m2_ln, cross_ln], axis=-1))
        self.mean = add(am, as_ + math.log(na / (na + nb)), mean_m, mean_s + math.log(nb / (na + nb)))
        self.count = na + nb

    def result(self) -> Accuracy:
        assert self.mean is not None
        R = math.log(self.count)
        rel, ratio, cos = (np.concatenate(a, axis=1) for a in (self.rel, self.ratio, self.cos))
        defined = ~np.isnan(cos)
        n_def = np.sum(defined, axis=1)
        cos_sum = np.sum(np.where(defined, cos, 0.0), axis=1)
        cos_mean = np.where(n_def > 0, cos_sum / np.maximum(n_def, 1), np.nan)
        _, bias_ln = add(*self.mean, -self.u, self.ln_g)
        with np.errstate(invalid="ignore"):
            return Accuracy(
                relative_error_ln=_log_sum_exp(rel) - R,
                norm_ratio_ln=_log_sum_exp(ratio) - R,
                cosine=cos_mean,
                relative_bias_ln=bias_ln - self.ln_g,
                relative_variance_ln=_log_sum_exp(2.0 * rel) - R,
                relative_spread_ln=self.m2_ln - R - 2.0 * self.ln_g,
            )


def _exact(full: tuple[Array, Array]) -> Accuracy:
    """The accuracy of an estimate equal to ``full``: zero error, ratio and cosine 1 (NaN if it is 0)."""
    ln_g = _flat(*full)[1]
    zero = np.where(np.isneginf(ln_g), np.nan, -np.inf)
    return Accuracy(zero, np.where(np.isneginf(ln_g), np.nan, 0.0), np.where(np.isneginf(ln_g), np.nan, 1.0),
                    zero, zero, zero)


@dataclass(frozen=True)
class EstimatorResult:
    """One estimator on every trial: accuracy per parameter, cost and (chunk, clip) extras, ``(n,)`` each.

    ``backward_steps``: mean over draws; ``backward_steps_full = T - 1``; ``memory_bytes``
    (chunk mode): the states one chunk keeps for its backward pass, ``8 h (2 min(K, T) + 1)``
    bytes per trial, against ``memory_bytes_full = 8 h (2 T + 1)``; clip: ``clip_scale_ln``
    and the norm before clipping ``clip_norm_ln`` (natural logs).
    """

    estimator: Estimator
    accuracy: dict[str, Accuracy]
    backward_steps: Array
    backward_steps_full: int
    memory_bytes: int | None = None
    memory_bytes_full: int | None = None
    clip_scale_ln: Array | None = None
    clip_norm_ln: Array | None = None


def bytes_per_column(est: Estimator, h: int, d: int, block: int) -> int:
    """Working bytes per column (draw, or ring slot) of :func:`truncated_gradients`, per trial."""
    if est.kind == "window":
        return 8 * 6 * h  # the ring: chains, their products and weights
    return 8 * (5 * h * h + 3 * h * d + 3 * block * h + 6 * h)


def draw_batch(est: Estimator, n: int, T: int, h: int, d: int, block: int, budget: int | None = None) -> int:
    """Draws per pass of a random estimator within ``budget`` bytes (default ``DRAW_BUDGET``).

    Raises :class:`BadInput` when an explicit ``budget`` cannot hold one draw (or the window
    ring); draws beyond one batch run in further passes over the sequence.
    """
    per = n * bytes_per_column(est, h, d, block)
    if est.kind == "window":
        need = per * min(est.K, T)
        if budget is not None and need > budget:
            raise BadInput(
                f"--max-memory is too small for --truncate {est.K}: "
                f"its ring needs about {format_size(need)} more"
            )
        return 1
    if est.kind != "random":
        return 1
    if budget is not None and per > budget:
        raise BadInput(
            f"--max-memory is too small for --truncate random: one draw needs about {format_size(per)} more"
        )
    return max(1, min(est.draws, (budget or DRAW_BUDGET) // per))


def run_estimator(
    net: Network, cell: Cell, loss: str, fwd: Forward, grads: Gradients, est: Estimator,
    batch: int | None = None,
) -> EstimatorResult:
    """Run ``est`` on every trial and measure it against the full gradients ``grads``.

    ``batch``: draws per pass (random; default :func:`draw_batch`). A window or chunk of
    ``K >= T`` truncates nothing: the estimate is full BPTT itself (``T - 1`` backward steps,
    zero error exactly), not recomputed.
    """
    n, T, h, d, _ = net.shape
    full = grads.params
    memory = memory_full = None
    if est.kind == "chunk":
        memory, memory_full = 8 * h * (2 * min(est.K, T) + 1), 8 * h * (2 * T + 1)
    if est.kind in MODES and est.K >= T:
        acc = {name: _exact(full[name]) for name in PARAMS}
        return EstimatorResult(est, acc, np.full(n, float(max(T - 1, 0))), max(T - 1, 0), memory, memory_full)
    if est.kind == "clip":
        clipped, scale_ln, norm_ln = clip_gradients(full, est.clip)
        acc = {}
        for name in PARAMS:
            a = _Agreement(full[name])
            m, s = clipped[name]
            a.add((m[:, None], s[:, None]))
            acc[name] = a.result()
        return EstimatorResult(est, acc, np.full(n, float(max(T - 1, 0))), max(T - 1, 0),
                               clip_scale_ln=scale_ln, clip_norm_ln=norm_ln)
    agree = {name: _Agreement(full[name]) for name in CHAIN_PARAMS}
    size = batch or draw_batch(est, n, T, h, d, fwd.block)
    steps = []
    for r0 in range(0, est.columns, size):
        tr = truncated_gradients(net, cell, loss, fwd, est, range(r0, min(r0 + size, est.columns)))
        for name in CHAIN_PARAMS:
            agree[name].add(tr.params[name])
        steps.append(tr.backward_steps)
    acc = {name: agree[name].result() for name in CHAIN_PARAMS}
    for name in PARAMS:
        if name not in acc:  # not on the chain: the estimate is the full gradient itself
            acc[name] = _exact(full[name])
    return EstimatorResult(
        est, acc, np.mean(np.concatenate(steps, axis=1), axis=1), max(T - 1, 0), memory, memory_full
    )


def run_estimators(
    net: Network, cell: Cell, loss: str, fwd: Forward, grads: Gradients, ests: list[Estimator],
    budget: int | None = None,
) -> Iterator[EstimatorResult]:
    """Every estimator in turn (draws batched within ``budget`` bytes)."""
    n, T, h, d, _ = net.shape
    for est in ests:
        yield run_estimator(net, cell, loss, fwd, grads, est, draw_batch(est, n, T, h, d, fwd.block, budget))
