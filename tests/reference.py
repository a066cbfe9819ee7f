"""Independent oracles for the tests: plain BPTT of ONE trial, finite differences, mpmath.

Nothing here imports from ``bptt_cli``: these are the textbook formulas written out with a
loop over t, in plain float64 (``bptt``, ``loss_value``, ``fd_params``, ``fd_dL_dh``) or in
mpmath at 50 significant digits (``mp_bptt``, for numbers far outside float64).

The model (one trial, ``t = 1..T``, ``h_0 = 0``)::

    a_t = W_hx x_t + W_hh h_{t-1} + b_h,   h_t = phi(a_t),   o_t = W_qh h_t + b_q
    last: L = 1/2 ||o_T - y_T||^2          mean: L = (1/T) sum_t 1/2 ||o_t - y_t||^2

Parameters are a dict ``{"W_hh": (h, h), "W_hx": (h, d), "W_qh": (q, h), "b_h": (h,),
"b_q": (q,)}``; the data ``x (T, d)``, ``y (T, q)``. Arrays returned per step are indexed by
``t - 1`` (row 0 is t = 1), except the states ``h (T+1, h)`` whose row 0 is ``h_0``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import mpmath
import numpy as np

PARAMS = ("W_hh", "W_hx", "W_qh", "b_h", "b_q")


# --------------------------------------------------------------------------- float64
def phi(cell: str, a: np.ndarray) -> np.ndarray:
    if cell == "identity":
        return a.copy()
    if cell == "tanh":
        return np.tanh(a)
    if cell == "relu":
        return np.where(a > 0, a, 0.0)
    if cell == "sigmoid":
        e = np.exp(-np.abs(a))  # never overflows
        return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    raise ValueError(cell)


def dphi(cell: str, a: np.ndarray) -> np.ndarray:
    """phi'(a), to full relative precision; relu'(0) = 0 (PyTorch's convention).

    tanh' = sech^2 and sigmoid' = e^-|a| / (1 + e^-|a|)^2 avoid the cancellation of
    ``1 - tanh^2`` and ``s (1 - s)`` for saturated units.
    """
    if cell == "identity":
        return np.ones_like(a)
    if cell == "tanh":
        e = np.exp(-2.0 * np.abs(a))
        return 4.0 * e / (1.0 + e) ** 2
    if cell == "relu":
        return np.where(a > 0, 1.0, 0.0)
    if cell == "sigmoid":
        e = np.exp(-np.abs(a))
        return e / (1.0 + e) ** 2
    raise ValueError(cell)


def forward(
    p: dict[str, np.ndarray], x: np.ndarray, cell: str, delta: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pre-activations ``a (T, h)`` and states ``h (T+1, h)``.

    ``delta (T, h)``, if given, is added to each state right after it is computed
    (``h_t = phi(a_t) + delta_t``): the derivative of L with respect to ``delta_t`` is
    dL/dh_t, the quantity BPTT computes.
    """
    T = x.shape[0]
    n_h = p["W_hh"].shape[0]
    a = np.zeros((T, n_h))
    h = np.zeros((T + 1, n_h))
    for t in range(1, T + 1):
        a[t - 1] = p["W_hx"] @ x[t - 1] + p["W_hh"] @ h[t - 1] + p["b_h"]
        h[t] = phi(cell, a[t - 1])
        if delta is not None:
            h[t] = h[t] + delta[t - 1]
    return a, h


def loss_value(
    p: dict[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    cell: str,
    loss: str,
    delta: np.ndarray | None = None,
) -> float:
    """The loss L of one trial."""
    _, h = forward(p, x, cell, delta)
    T = x.shape[0]
    if loss == "last":
        e = p["W_qh"] @ h[T] + p["b_q"] - y[T - 1]
        return 0.5 * float(e @ e)
    total = 0.0
    for t in range(1, T + 1):
        e = p["W_qh"] @ h[t] + p["b_q"] - y[t - 1]
        total += 0.5 * float(e @ e)
    return total / T


@dataclass
class Reference:
    """Everything plain BPTT gives for one trial (float64)."""

    a: np.ndarray  # (T, h) pre-activations a_1..a_T
    h: np.ndarray  # (T+1, h) states h_0..h_T
    dL_do: np.ndarray  # (T, q)
    dL_dh: np.ndarray  # (T, h) dL/dh_t, row 0 is t = 1
    dL_da: np.ndarray  # (T, h)
    grads: dict[str, np.ndarray]  # dL/dW_hh, dL/dW_hx, dL/dW_qh, dL/db_h, dL/db_q
    loss: float
    JTg: np.ndarray  # (h,) J^T g, g = dL/dh_T, J = prod_{t=T..2} diag(phi'(a_t)) W_hh
    gain_ln_rescaled: float  # ln ||J^T g|| - ln ||g||, renormalising after each step (no underflow)
    # Magnitudes for honest rounding tolerances: the same recursions run on absolute values
    # (|W|, |x|, |phi'|, ...), so that cancellation in a sum does not make a tolerance
    # relative to a tiny result. Float64 rounding error is at most ~eps * steps * these.
    dL_dh_mag: np.ndarray  # (T, h)
    grads_mag: dict[str, float]  # Frobenius norm of the sum of |terms|
    error_mag: np.ndarray  # (T,) ||(|W_qh||h_t| + |b_q| + |y_t|)||, the size of o_t - y_t's terms
    JTg_mag: np.ndarray  # (h,)

    @property
    def gain_ln(self) -> float:
        """ln ||J^T g|| - ln ||g|| (-inf if J^T g is zero, or has underflowed in float64)."""
        v = float(np.linalg.norm(self.JTg))
        return (math.log(v) if v > 0 else -math.inf) - math.log(np.linalg.norm(self.dL_dh[-1]))


def bptt(p: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, cell: str, loss: str) -> Reference:
    """Textbook BPTT of one trial, one step at a time, in plain float64."""
    a, h = forward(p, x, cell)
    T = x.shape[0]
    W_hh, W_qh = p["W_hh"], p["W_qh"]
    n_h, n_q = W_hh.shape[0], W_qh.shape[0]
    dL_do = np.zeros((T, n_q))
    for t in range(1, T + 1):
        e = W_qh @ h[t] + p["b_q"] - y[t - 1]
        if loss == "mean":
            dL_do[t - 1] = e / T
        elif t == T:
            dL_do[t - 1] = e
    dL_dh = np.zeros((T, n_h))
    dL_da = np.zeros((T, n_h))
    for t in range(T, 0, -1):
        g = W_qh.T @ dL_do[t - 1]
        if t < T:
            g = g + W_hh.T @ dL_da[t]  # dL_da[t] is dL/da_{t+1}
        dL_dh[t - 1] = g
        dL_da[t - 1] = dphi(cell, a[t - 1]) * g
    grads = {
        "W_hh": sum(np.outer(dL_da[t - 1], h[t - 1]) for t in range(1, T + 1)),
        "W_hx": sum(np.outer(dL_da[t - 1], x[t - 1]) for t in range(1, T + 1)),
        "W_qh": sum(np.outer(dL_do[t - 1], h[t]) for t in range(1, T + 1)),
        "b_h": sum(dL_da[t - 1] for t in range(1, T + 1)),
        "b_q": sum(dL_do[t - 1] for t in range(1, T + 1)),
    }
    v = dL_dh[T - 1].copy()
    for t in range(T, 1, -1):  # J^T g = W_hh^T D_2 ... W_hh^T D_T g
        v = W_hh.T @ (dphi(cell, a[t - 1]) * v)
    u, log_u = dL_dh[T - 1] / np.linalg.norm(dL_dh[T - 1]), 0.0  # the same, one unit vector per step
    for t in range(T, 1, -1):
        u = W_hh.T @ (dphi(cell, a[t - 1]) * u)
        size = float(np.linalg.norm(u))
        if size == 0:
            log_u = -math.inf
            break
        u, log_u = u / size, log_u + math.log(size)

    # the same recursions on magnitudes (inf where they leave float64: no tolerance then)
    with np.errstate(over="ignore", invalid="ignore"):
        mags = _magnitudes(p, x, y, cell, loss, a, h)
    return Reference(a, h, dL_do, dL_dh, dL_da, grads, loss_value(p, x, y, cell, loss), v, log_u, *mags)


def _magnitudes(
    p: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, cell: str, loss: str, a: np.ndarray, h: np.ndarray
) -> tuple[np.ndarray, dict[str, float], np.ndarray, np.ndarray]:
    """The BPTT recursions with every factor replaced by its absolute value.

    The states too: ``H_t = |h_t| + |phi'(a_t)| (|W_hx| |x_t| + |W_hh| H_{t-1} + |b_h|)`` bounds
    the terms whose rounding reaches h_t, so that a pre-activation that cancels to nearly 0
    (a relu unit just alive, say) does not make the tolerance relative to a tiny h_t.
    """
    T, n_h = a.shape
    A_hh, A_qh = np.abs(p["W_hh"]), np.abs(p["W_qh"])
    H = np.zeros((T + 1, n_h))
    for t in range(1, T + 1):
        terms = np.abs(p["W_hx"]) @ np.abs(x[t - 1]) + A_hh @ H[t - 1] + np.abs(p["b_h"])
        H[t] = np.abs(h[t]) + np.abs(dphi(cell, a[t - 1])) * terms
    e_mag = np.array([A_qh @ H[t] + np.abs(p["b_q"]) + np.abs(y[t - 1]) for t in range(1, T + 1)])
    do_mag = e_mag / T if loss == "mean" else np.where(np.arange(T)[:, None] == T - 1, e_mag, 0.0)
    dh_mag = np.zeros((T, n_h))
    for t in range(T, 0, -1):
        g = A_qh.T @ do_mag[t - 1]
        if t < T:
            g = g + A_hh.T @ (np.abs(dphi(cell, a[t])) * dh_mag[t])
        dh_mag[t - 1] = g
    da_mag = np.abs(dphi(cell, a)) * dh_mag
    ha, xa = H, np.abs(x)
    grads_mag = {
        "W_hh": float(np.linalg.norm(da_mag.T @ ha[:-1])),
        "W_hx": float(np.linalg.norm(da_mag.T @ xa)),
        "W_qh": float(np.linalg.norm(do_mag.T @ ha[1:])),
        "b_h": float(np.linalg.norm(da_mag.sum(axis=0))),
        "b_q": float(np.linalg.norm(do_mag.sum(axis=0))),
    }
    v_mag = dh_mag[T - 1].copy()
    for t in range(T, 1, -1):
        v_mag = A_hh.T @ (np.abs(dphi(cell, a[t - 1])) * v_mag)
    return dh_mag, grads_mag, np.linalg.norm(e_mag, axis=1), v_mag


def _derivative(f: Callable[[float], float], eps: float) -> float:
    """Fourth-order central difference ``f'(0)``: truncation error ``O(eps^4)``."""
    return (f(-2 * eps) - 8 * f(-eps) + 8 * f(eps) - f(2 * eps)) / (12 * eps)


def fd_params(
    p: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, cell: str, loss: str, eps: float = 1e-4
) -> dict[str, np.ndarray]:
    """Central finite differences of the loss per parameter entry (fourth order in ``eps``)."""
    out = {}
    for name in PARAMS:
        grad = np.zeros_like(p[name])
        for idx in np.ndindex(p[name].shape):

            def moved(d: float, name: str = name, idx: tuple[int, ...] = idx) -> float:
                q = {k: v.copy() for k, v in p.items()}
                q[name][idx] += d
                return loss_value(q, x, y, cell, loss)

            grad[idx] = _derivative(moved, eps)
        out[name] = grad
    return out


def fd_dL_dh(
    p: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, cell: str, loss: str, eps: float = 1e-4
) -> np.ndarray:
    """dL/dh_t for every t by central differences in a perturbation added to h_t, ``(T, h)``."""
    T, n_h = x.shape[0], p["W_hh"].shape[0]
    out = np.zeros((T, n_h))
    for t in range(T):
        for i in range(n_h):
            unit = np.zeros((T, n_h))
            unit[t, i] = 1.0
            out[t, i] = _derivative(lambda d, u=unit: loss_value(p, x, y, cell, loss, d * u), eps)
    return out


# --------------------------------------------------------------------------- mpmath
def _mp_phi_dphi(cell: str, a: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf]:
    """phi(a) and phi'(a) in mpmath; derivatives without cancellation (sech^2, e^-|a|)."""
    if cell == "identity":
        return a, mpmath.mpf(1)
    if cell == "tanh":
        return mpmath.tanh(a), mpmath.sech(a) ** 2
    if cell == "relu":
        return (a, mpmath.mpf(1)) if a > 0 else (mpmath.mpf(0), mpmath.mpf(0))
    if cell == "sigmoid":
        e = mpmath.exp(-abs(a))
        s = 1 / (1 + e) if a >= 0 else e / (1 + e)
        return s, e / (1 + e) ** 2
    raise ValueError(cell)


def _mp_log10_norm(v: list[mpmath.mpf]) -> float:
    sq = mpmath.fsum(c * c for c in v)
    return -math.inf if sq == 0 else float(mpmath.log10(sq) / 2)


@dataclass
class MpReference:
    """log10 norms from a 50-digit computation: every value exact to far below 1e-9."""

    h_log10: np.ndarray  # (T+1,) log10 ||h_t||, t = 0..T
    grad_h_log10: np.ndarray  # (T,) log10 ||dL/dh_t||, row 0 is t = 1
    grad_params_log10: dict[str, float]  # log10 Frobenius norms
    loss_log10: float
    gain_log10: float


def mp_bptt(
    p: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, cell: str, loss: str, dps: int = 50
) -> MpReference:
    """The same BPTT with every float64 input converted exactly to mpmath (``dps`` digits)."""
    with mpmath.workdps(dps):
        mp = mpmath.mpf

        def mat(A: np.ndarray) -> list[list[mpmath.mpf]]:
            return [[mp(float(v)) for v in row] for row in np.atleast_2d(A)]

        def vec(v: np.ndarray) -> list[mpmath.mpf]:
            return [mp(float(c)) for c in v]

        def matvec(A: list[list[mpmath.mpf]], v: list[mpmath.mpf]) -> list[mpmath.mpf]:
            return [mpmath.fsum(a * b for a, b in zip(row, v, strict=True)) for row in A]

        def tmatvec(A: list[list[mpmath.mpf]], v: list[mpmath.mpf]) -> list[mpmath.mpf]:
            return [mpmath.fsum(A[r][c] * v[r] for r in range(len(A))) for c in range(len(A[0]))]

        W_hh, W_hx, W_qh = mat(p["W_hh"]), mat(p["W_hx"]), mat(p["W_qh"])
        b_h, b_q = vec(p["b_h"]), vec(p["b_q"])
        X, Y = [vec(r) for r in x], [vec(r) for r in y]
        T, n_h = len(X), len(b_h)
        h: list[list[mpmath.mpf]] = [[mp(0)] * n_h]
        d: list[list[mpmath.mpf]] = []  # phi'(a_t)
        for t in range(1, T + 1):
            u, w = matvec(W_hx, X[t - 1]), matvec(W_hh, h[t - 1])
            a = [ui + wi + bi for ui, wi, bi in zip(u, w, b_h, strict=True)]
            pd = [_mp_phi_dphi(cell, ai) for ai in a]
            h.append([v for v, _ in pd])
            d.append([v for _, v in pd])
        e = []
        for t in range(1, T + 1):
            o = matvec(W_qh, h[t])
            e.append([oi + bi - yi for oi, bi, yi in zip(o, b_q, Y[t - 1], strict=True)])
        if loss == "last":
            do = [[mp(0)] * len(b_q) for _ in range(T - 1)] + [e[-1]]
            L = mpmath.fsum(c * c for c in e[-1]) / 2
        else:
            do = [[c / T for c in et] for et in e]
            L = mpmath.fsum(c * c for et in e for c in et) / (2 * T)
        dh: list[list[mpmath.mpf]] = [[]] * T
        da: list[list[mpmath.mpf]] = [[]] * T
        for t in range(T, 0, -1):
            g = tmatvec(W_qh, do[t - 1])
            if t < T:
                back = tmatvec(W_hh, da[t])
                g = [gi + bi for gi, bi in zip(g, back, strict=True)]
            dh[t - 1] = g
            da[t - 1] = [gi * di for gi, di in zip(g, d[t - 1], strict=True)]
        v = dh[-1]
        for t in range(T, 1, -1):
            v = tmatvec(W_hh, [vi * di for vi, di in zip(v, d[t - 1], strict=True)])
        outer_sq = lambda us, vs: mpmath.fsum(  # noqa: E731  ||sum_t u_t v_t^T||_F^2
            mpmath.fsum(us[t][i] * vs[t][j] for t in range(T)) ** 2
            for i in range(len(us[0]))
            for j in range(len(vs[0]))
        )
        sq = {
            "W_hh": outer_sq(da, h[:-1]),
            "W_hx": outer_sq(da, X),
            "W_qh": outer_sq(do, h[1:]),
            "b_h": mpmath.fsum(mpmath.fsum(da[t][i] for t in range(T)) ** 2 for i in range(n_h)),
            "b_q": mpmath.fsum(mpmath.fsum(do[t][i] for t in range(T)) ** 2 for i in range(len(b_q))),
        }
        g_log10, v_log10 = _mp_log10_norm(dh[-1]), _mp_log10_norm(v)
        return MpReference(
            h_log10=np.array([_mp_log10_norm(ht) for ht in h]),
            grad_h_log10=np.array([_mp_log10_norm(g) for g in dh]),
            grad_params_log10={
                k: (-math.inf if s == 0 else float(mpmath.log10(s) / 2)) for k, s in sq.items()
            },
            loss_log10=-math.inf if L == 0 else float(mpmath.log10(L)),
            gain_log10=(v_log10 - g_log10) if math.isfinite(g_log10) else math.nan,
        )
