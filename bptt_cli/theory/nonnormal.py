"""How far ``W_hh`` is from normal, and what that does to its powers.

A normal matrix (``W W^T = W^T W``: symmetric, orthogonal, ...) has ``||W^k||_2 = rho^k``;
a non-normal one can grow for a while even when ``rho < 1``. Three measures:

- Henrici's departure from normality, relative: ``sqrt(||W||_F^2 - sum |lambda_i|^2) / ||W||_F``
  (0 for a normal matrix, up to 1). Computed from the eigenvalues, it is accurate to about
  ``sqrt(h * eps) ~ 1e-7``: a normal matrix shows 0 or a value of that size.
- The peak transient growth ``max_{1 <= k <= T} ||W^k||_2`` and the ``k`` where it occurs.
- The numerical abscissa ``max eig((W + W^T) / 2)``: the largest ``x^T W x`` over unit ``x``.

Powers are carried as a unit-Frobenius-norm mantissa and a natural-log scale, so ``||W^k||``
is exact in log form for any ``k`` (``rho = 2, k = 10^5`` is ``10^30103``).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bptt_cli.core.scaled import LN10, Array, pow2_scale

SCAN_MAX_T = 4096  # every k <= T is evaluated when T <= SCAN_MAX_T and h^3 T <= SCAN_BUDGET
SCAN_BUDGET = 2**27
GROWTH_BUDGET = 2**34  # flops for the squarings, W^T and the search (2 h^3 per product)
LANCZOS_STEPS = 40  # at most this many Golub-Kahan steps for ||M||_2 when h > SVD_MAX_H
LANCZOS_CHECK = 5  # ... checking every 5 steps whether the estimate changed by at most
LANCZOS_TOL = 1e-13  # ... this much (relative)
SVD_MAX_H = 128
START_SEED = 20130102


def henrici(W: Array, eigenvalues: NDArray[np.complex128]) -> Array:
    """Relative departure from normality of every ``W (n, h, h)``, ``(n,)`` in ``[0, 1]``.

    ``eigenvalues (n, h)`` complex. The zero matrix (normal) gives 0. Scale-free: computed on
    ``W / 2^e`` (:func:`bptt_cli.core.scaled.pow2_scale`), so any ``W`` in float64's range works.
    """
    scale = pow2_scale(W)
    W = W / scale[:, None, None]
    # |lambda| / 2^e, not lambda / 2^e: a complex division by a subnormal 2^e overflows
    eig2 = np.sum((np.abs(eigenvalues) / scale[:, None]) ** 2, axis=-1)
    fro2 = np.einsum("nij,nij->n", W, W)
    dep2 = np.maximum(fro2 - eig2, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(fro2 > 0, np.sqrt(dep2 / np.where(fro2 > 0, fro2, 1.0)), 0.0)


def numerical_abscissa(W: Array) -> Array:
    """``max eig((W + W^T) / 2)`` of every ``W (n, h, h)``, ``(n,)``.

    Every eigenvalue of the symmetric part by ``numpy.linalg.eigvalsh``, the largest kept. (Up to
    2026-12 ``h > 512`` took only the largest from ``scipy.linalg.eigh``: 10 to 15 % faster at
    h 1024 to 2048, but importing ``scipy.linalg`` costs 0.2 to 0.3 s of every such run; the two
    agree to 1e-14, relative; docs/speed-2026-12.md.) Computed on ``W / 2^e`` and scaled back, so
    ``W + W^T`` cannot overflow.
    """
    scale = pow2_scale(W)
    W = W / scale[:, None, None]
    sym = 0.5 * (W + np.swapaxes(W, -1, -2))
    return scale * np.linalg.eigvalsh(sym)[..., -1]


def _normalize(M: Array, s: Array) -> tuple[Array, Array]:
    """Scale each ``M[i] (h, h)`` to unit Frobenius norm, adding ``ln`` of the norm to ``s``
    (taken after an exact power-of-two scaling: entries up to float64's maximum)."""
    scale = pow2_scale(M)
    M = M / scale[..., None, None]
    fro = np.sqrt(np.einsum("...ij,...ij->...", M, M))
    zero = fro == 0
    M = M / np.where(zero, 1.0, fro)[..., None, None]
    with np.errstate(divide="ignore"):
        return M, np.where(zero, -np.inf, s + np.log(scale) + np.log(np.where(zero, 1.0, fro)))


def norm2(M: Array) -> Array:
    """Spectral norms of ``M (..., h, h)``, ``(...)``.

    Singular values by SVD for ``h <= SVD_MAX_H``; otherwise at most ``LANCZOS_STEPS`` steps
    of Golub-Kahan bidiagonalisation with full reorthogonalisation from a fixed start vector,
    stopped early once the estimate settles to 1e-13 (relative error below 1e-5 for a
    1024 x 1024 gaussian matrix, far smaller for its powers, whose leading singular values
    are well separated).
    """
    h = M.shape[-1]
    if h <= SVD_MAX_H:
        return np.asarray(np.linalg.svd(M, compute_uv=False)[..., 0], dtype=np.float64)
    shape = M.shape[:-2]
    M = M.reshape(-1, h, h)
    n = M.shape[0]
    m = min(LANCZOS_STEPS, h)
    start = np.random.default_rng(START_SEED).standard_normal(h)
    v: Array = np.broadcast_to(start / np.linalg.norm(start), (n, h)).copy()
    U, V = np.zeros((n, m, h)), np.zeros((n, m, h))
    alpha, beta = np.zeros((n, m)), np.zeros((n, m))
    u_prev = np.zeros((n, h))
    b: Array = np.zeros(n)
    # below this a new Krylov direction is rounding noise: the space is exhausted (low rank)
    floor = 1e-12 * np.sqrt(np.einsum("nij,nij->n", M, M))

    def orthonormal(x: Array, basis: Array) -> tuple[Array, Array]:
        for _ in range(2):  # classical Gram-Schmidt, twice
            x = x - np.matmul(np.matmul(x[:, None, :], np.swapaxes(basis, -1, -2)), basis)[:, 0]
        nx = np.linalg.norm(x, axis=-1)
        live = nx > floor
        return np.where(live[:, None], x / np.where(live, nx, 1.0)[:, None], 0.0), np.where(live, nx, 0.0)

    def top(k: int) -> Array:  # largest singular value of the leading k x k bidiagonal block
        B = np.zeros((n, k, k))
        idx = np.arange(k)
        B[:, idx, idx] = alpha[:, :k]
        B[:, idx[:-1], idx[1:]] = beta[:, : k - 1]
        return np.asarray(np.linalg.svd(B, compute_uv=False)[:, 0], dtype=np.float64)

    previous = np.zeros(n)
    for i in range(m):
        V[:, i] = v
        u, a = orthonormal(np.matmul(M, v[:, :, None])[:, :, 0] - b[:, None] * u_prev, U[:, :i])
        U[:, i], alpha[:, i] = u, a
        v, b = orthonormal(np.matmul(u[:, None, :], M)[:, 0] - a[:, None] * v, V[:, : i + 1])
        beta[:, i] = b
        u_prev = u
        if (i + 1) % LANCZOS_CHECK == 0 and i + 1 < m:  # stop once the estimate has settled
            current = top(i + 1)
            if np.all(np.abs(current - previous) <= LANCZOS_TOL * current):
                return current.reshape(shape)
            previous = current
    return top(m).reshape(shape)


@dataclass(frozen=True)
class TransientGrowth:
    """Peak of ``||W^k||_2`` over ``1 <= k <= T`` for ``n`` trials.

    ``peak_log10 (n,)``: log10 of the largest ``||W^k||_2`` found (``-inf`` for ``W = 0``);
    ``k (n,)``: where; ``method[i]``: ``"all"`` (every ``k <= T`` accounted for: a full scan,
    or the argument below), ``"search"`` (powers of two, ``T``, then a ternary search in the
    bracket around the best, assuming ``||W^k||`` unimodal there) or ``"sampled"`` (the
    work budget ran out: the peak over the evaluated ``k``); ``evaluated (n,)``: how many
    ``k`` were evaluated; ``up_to (n,)``: no ``k`` above it was looked at (``T``, or less when
    the budget stopped the repeated squaring).

    The argument: if ``||W^{k0}||_2 <= 1`` then ``||W^{q k0 + r}|| <= ||W^r||``, so the peak
    over all ``k`` lies in ``[1, k0]``; in particular ``||W||_2 <= 1`` makes ``k = 1`` the peak.
    """

    peak_log10: Array
    k: Array
    method: list[str]
    evaluated: Array
    up_to: Array


def transient_growth(W: Array, T: int, spectral_norm: Array | None = None) -> TransientGrowth:
    """Peak transient growth ``max_{k <= T} ||W^k||_2`` of every ``W (n, h, h)``.

    Rule: when ``T <= SCAN_MAX_T`` and ``h^3 T <= SCAN_BUDGET`` every power is formed
    (``T`` matrix products). Otherwise: ``W^(2^j)`` by repeated squaring for ``2^j <= T``,
    then ``W^T`` from its binary expansion (always: at most ``2 log2 T`` products, so the
    powers up to ``k = T`` are always looked at), then, within ``GROWTH_BUDGET`` flops
    (``2 h^3`` per product), a ternary search in the bracket around the best of these, each
    ``W^k`` a product of the squares. Both stop as soon as ``||W^k||_2 <= 1`` in every trial
    (see :class:`TransientGrowth`).
    """
    h = W.shape[-1]
    if T <= SCAN_MAX_T and h**3 * T <= SCAN_BUDGET:
        return _scan(W, T)
    to_T = (T.bit_length() - 1) + (bin(T).count("1") - 1)  # the squarings, then W^T
    return _search(W, T, max(int(GROWTH_BUDGET // (2 * h**3)), to_T, 1))


def _scan(W: Array, T: int) -> TransientGrowth:
    n = W.shape[0]
    M, s = _normalize(W, np.zeros(n))
    best = np.full(n, -np.inf)
    best_k = np.ones(n)
    done = np.zeros(n, dtype=bool)
    evaluated = np.zeros(n)
    chunk = 64
    k = 1
    P, Ps = M, s
    while k <= T and not done.all():
        mats, scales = [], []
        for _ in range(min(chunk, T - k + 1)):
            mats.append(P)
            scales.append(Ps)
            P, Ps = _normalize(np.matmul(P, M), Ps + s)
        with np.errstate(divide="ignore"):
            ln = np.log(norm2(np.stack(mats))) + np.stack(scales)  # (c, n)
        for row in ln:
            active = ~done
            better = active & (row > best)
            best = np.where(better, row, best)
            best_k = np.where(better, k, best_k)
            evaluated += active
            done |= row <= 0.0
            k += 1
    return TransientGrowth(best / LN10, best_k, ["all"] * n, evaluated, np.full(n, float(T)))


def _search(W: Array, T: int, products: int, spectral_norm: Array | None = None) -> TransientGrowth:
    n = W.shape[0]
    M, s = _normalize(W, np.zeros(n))
    squares: list[tuple[Array, Array]] = [(M, s)]  # W^(2^j)
    values: list[dict[int, float]] = [{} for _ in range(n)]
    done = np.zeros(n, dtype=bool)
    stop_k = np.full(n, T)
    spent = 0

    def record(k: int, ln: Array) -> None:
        for i in range(n):
            if not done[i]:
                values[i][k] = float(ln[i])
                if ln[i] <= 0.0:
                    done[i] = True
                    stop_k[i] = k

    with np.errstate(divide="ignore"):
        record(1, np.log(norm2(M)) + s if spectral_norm is None else np.log(np.asarray(spectral_norm)))
        j = 1
        while 2**j <= T and not done.all() and spent < products:
            P, Ps = squares[-1]
            squares.append(_normalize(np.matmul(P, P), 2.0 * Ps))
            spent += 1
            record(2**j, np.log(norm2(squares[-1][0])) + squares[-1][1])
            j += 1
        reached = 2 ** (j - 1)
        cost = bin(T).count("1") - 1
        if 2 * reached > T and reached != T and not done.all() and spent + cost <= products:
            Pt, St = _power(squares, np.arange(n), np.full(n, T))
            spent += cost
            reached = T
            record(T, np.log(norm2(Pt)) + St)

    method: list[str] = []
    up_to = np.where(done, float(T), float(reached))
    left = max(products - spent, 0)
    complete = _refine_all(squares, values, stop_k, left // n)
    for i in range(n):
        covered = done[i] or reached == T
        method.append("all" if stop_k[i] == 1 else ("search" if complete[i] and covered else "sampled"))
    peak = np.array([max(v.values()) for v in values])
    k_best = np.array([float(max(v, key=lambda key: (v[key], -key))) for v in values])
    evaluated = np.array([float(len(v)) for v in values])
    return TransientGrowth(peak / LN10, k_best, method, evaluated, up_to)


def _power(
    squares: list[tuple[Array, Array]], trials: NDArray[np.intp], ks: NDArray[np.int64]
) -> tuple[Array, Array]:
    """``W_i^k`` (mantissas ``(p, h, h)``, ln scales ``(p,)``) for the pairs ``(trials[j], ks[j])``,
    from the squares ``W^(2^j)`` by the binary expansion of each ``k``: for every pair the same
    products, in the same order, as for that trial alone."""
    p, h = len(trials), squares[0][0].shape[-1]
    out_m, out_s = np.empty((p, h, h)), np.empty(p)
    factor = np.empty((p, h, h))  # W_i^(2^j) of the pairs that take it, gathered here
    started = np.zeros(p, dtype=bool)
    k = np.array(ks, dtype=np.int64)
    j = 0
    while k.any():
        bit = (k & 1).astype(bool)
        S, Ss = squares[j]
        more = np.flatnonzero(bit & started)  # out <- out W^(2^j), renormalised
        if more.size == p:
            np.take(S, trials, axis=0, out=factor)
            out_m, out_s = _normalize(np.matmul(out_m, factor, out=out_m), out_s + Ss[trials])
        elif more.size:
            tr = trials[more]
            out_m[more], out_s[more] = _normalize(np.matmul(out_m[more], S[tr]), out_s[more] + Ss[tr])
        first = np.flatnonzero(bit & ~started)  # out <- W^(2^j), the lowest bit of k
        out_m[first], out_s[first] = S[trials[first]], Ss[trials[first]]
        started[first] = True
        k >>= 1
        j += 1
    return out_m, out_s


def _power_of(squares: list[tuple[Array, Array]], i: int, k: int) -> tuple[Array, Array]:
    """``W_i^k`` of one trial (mantissa ``(h, h)``, ln scale), as :func:`_power` forms it."""
    out: tuple[Array, Array] | None = None
    j = 0
    while k:
        if k & 1:
            P, Ps = squares[j][0][i], squares[j][1][i]
            out = (P, Ps) if out is None else _normalize(np.matmul(out[0], P), out[1] + Ps)
        k >>= 1
        j += 1
    assert out is not None
    return out


def _ln_norms(squares: list[tuple[Array, Array]], trials: NDArray[np.intp], ks: NDArray[np.int64]) -> Array:
    """``ln ||W_i^k||_2`` for the pairs ``(trials[j], ks[j])``, ``(p,)``: in one batch for small
    matrices; one by one for a single pair or above ``SVD_MAX_H`` (where the products, not the
    calls, cost, and the Lanczos iteration of a batch stops only when all of it has settled)."""
    with np.errstate(divide="ignore"):
        if len(trials) > 1 and squares[0][0].shape[-1] <= SVD_MAX_H:
            P, Ps = _power(squares, trials, ks)
            return np.log(norm2(P)) + Ps
        out = np.empty(len(trials))
        for j, (i, k) in enumerate(zip(trials, ks, strict=True)):
            P1, s1 = _power_of(squares, int(i), int(k))
            out[j] = np.log(norm2(P1[None]))[0] + s1
        return out


def _refine_all(
    squares: list[tuple[Array, Array]], values: list[dict[int, float]], stop: NDArray[np.int64], budget: int
) -> list[bool]:
    """Every trial's :func:`_refine`, in lockstep: each round evaluates, in one batch, the one
    ``k`` each unfinished search asks for next. Returns whether each finished within ``budget``."""
    searches = [_refine(v, int(s), budget) for v, s in zip(values, stop, strict=True)]
    complete = [False] * len(searches)
    asked: dict[int, int] = {}

    def advance(i: int, value: float | None) -> None:
        try:
            asked[i] = searches[i].send(value)  # type: ignore[arg-type]
        except StopIteration as end:
            complete[i] = bool(end.value)

    for i in range(len(searches)):
        advance(i, None)
    while asked:
        pending, asked = asked, {}
        trials = np.fromiter(pending, dtype=np.intp, count=len(pending))
        ks = np.fromiter(pending.values(), dtype=np.int64, count=len(pending))
        for i, value in zip(trials, _ln_norms(squares, trials, ks), strict=True):
            advance(int(i), float(value))
    return complete


def _refine(values: dict[int, float], stop: int, budget: int) -> Generator[int, float, bool]:
    """Ternary search of one trial in the bracket around its best evaluated ``k``.

    Yields each ``k`` whose ``ln ||W^k||_2`` it needs and is sent that value, which it adds to
    ``values``; returns whether the search finished within ``budget`` matrix products.
    """
    ks = sorted(k for k in values if k <= stop)
    best = max(ks, key=lambda k: values[k])
    pos = ks.index(best)
    lo = ks[pos - 1] if pos > 0 else best
    hi = ks[pos + 1] if pos + 1 < len(ks) else best
    spent = 0
    while True:
        wanted = (lo + (hi - lo) // 3, hi - (hi - lo) // 3) if hi - lo > 2 else tuple(range(lo, hi + 1))
        for k in wanted:
            if k not in values:
                cost = bin(k).count("1") - 1
                if spent + cost > budget:
                    return False
                spent += cost
                values[k] = yield k
        if hi - lo <= 2:
            return True
        m1, m2 = wanted
        if values[m1] < values[m2]:
            lo = m1
        else:
            hi = m2
