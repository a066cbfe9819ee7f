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
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bptt_cli.core.cells import Cell
from bptt_cli.core.elman import Forward, ParamSums, block_sum, segments, vector_sum
from bptt_cli.core.head import local_terms
from bptt_cli.core.network import Network
from bptt_cli.core.scaled import Array, finite_or_zero, normalize
from bptt_cli.estimators.estimator import Estimator

RNG_BLOCK = 256  # steps per stream of uniforms
RNG_KEY = 1000  # spawn-key component of the truncation streams (the network uses 0..6)
SAFE = 1e150  # a live chain's norm in (1/SAFE, SAFE) is taken as is, else by the careful path

Uniforms = Callable[[NDArray[np.int64], int, int], Array]


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
                net.W_qh, seg.e_m[:, b0 - t0 : b1 - t0], seg.e_s[:, b0 - t0 : b1 - t0], loss, T, b1
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
