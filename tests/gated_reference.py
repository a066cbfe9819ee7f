"""Independent oracles for the gated cells: the textbook LSTM/GRU of ONE trial, written out.

Nothing here imports from ``bptt_cli``. ``loss`` is the forward pass in plain float64 with a loop
over t (and optional perturbations added to h_t and c_t, so that finite differences give
dL/dh_t and dL/dc_t); ``fd_grad`` takes central differences; ``mp_bptt`` is the backward pass
by the chain rule, one scalar at a time, in mpmath (for gradients far outside float64).

Parameters use PyTorch's names: ``weight_ih_l0 (G h, d)``, ``weight_hh_l0 (G h, h)``,
``bias_ih_l0``, ``bias_hh_l0 (G h)``, plus ``W_qh (q, h)``, ``b_q (q)``; gate order i, f, g, o
(LSTM) and r, z, n (GRU), as in ``torch.nn.LSTM`` / ``torch.nn.GRU``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mpmath
import numpy as np

PARAMS = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "W_qh", "b_q")


def sigmoid(a: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def step(cell: str, P: dict[str, np.ndarray], x: np.ndarray, h: np.ndarray, c: np.ndarray | None):
    """One step of the cell: ``(h_t, c_t)`` (``c_t`` None for the GRU)."""
    H = h.shape[-1]
    gi = P["weight_ih_l0"] @ x + P["bias_ih_l0"]
    gh = P["weight_hh_l0"] @ h + P["bias_hh_l0"]
    if cell == "lstm":
        a = gi + gh
        i, f, g, o = sigmoid(a[:H]), sigmoid(a[H : 2 * H]), np.tanh(a[2 * H : 3 * H]), sigmoid(a[3 * H :])
        c = f * c + i * g
        return o * np.tanh(c), c
    r = sigmoid(gi[:H] + gh[:H])
    z = sigmoid(gi[H : 2 * H] + gh[H : 2 * H])
    n = np.tanh(gi[2 * H :] + r * gh[2 * H :])
    return (1 - z) * n + z * h, None


def loss(
    cell: str,
    P: dict[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    kind: str,
    dh: np.ndarray | None = None,
    dc: np.ndarray | None = None,
) -> float:
    """The loss, with ``dh[t-1]`` added to h_t and ``dc[t-1]`` to c_t (before h_t is formed)."""
    T, H = x.shape[0], P["weight_hh_l0"].shape[1]
    h, c = np.zeros(H), np.zeros(H)
    total = 0.0
    for t in range(T):
        if cell == "lstm":
            gi = P["weight_ih_l0"] @ x[t] + P["bias_ih_l0"] + P["weight_hh_l0"] @ h + P["bias_hh_l0"]
            i, f, g, o = (
                sigmoid(gi[:H]),
                sigmoid(gi[H : 2 * H]),
                np.tanh(gi[2 * H : 3 * H]),
                sigmoid(gi[3 * H :]),
            )
            c = f * c + i * g
            if dc is not None:
                c = c + dc[t]
            h = o * np.tanh(c)
        else:
            h, _ = step(cell, P, x[t], h, None)
        if dh is not None:
            h = h + dh[t]
        if kind == "mean" or t == T - 1:
            e = P["W_qh"] @ h + P["b_q"] - y[t]
            total += 0.5 * float(e @ e)
    return total / T if kind == "mean" else total


def loss_early_weights(
    cell: str, P: dict[str, np.ndarray], W_early: np.ndarray, j: int, x: np.ndarray, y: np.ndarray
) -> float:
    """The last loss with ``weight_hh_l0 = W_early`` at steps t = 1..j and ``P``'s at t > j:
    its gradient in ``W_early`` is the part of dL/dweight_hh_l0 from steps 1..j."""
    T, H = x.shape[0], P["weight_hh_l0"].shape[1]
    h, c = np.zeros(H), np.zeros(H)
    early = {**P, "weight_hh_l0": W_early}
    for t in range(T):
        h, c_new = step(cell, early if t < j else P, x[t], h, c if cell == "lstm" else None)
        c = c_new if c_new is not None else c
    e = P["W_qh"] @ h + P["b_q"] - y[T - 1]
    return 0.5 * float(e @ e)


def fd_grad(f: Callable[[np.ndarray], float], v: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of ``f`` at ``v``, entry by entry."""
    g = np.zeros_like(v)
    for idx in np.ndindex(v.shape):
        up, down = v.copy(), v.copy()
        up[idx] += eps
        down[idx] -= eps
        g[idx] = (f(up) - f(down)) / (2 * eps)
    return g


def fd_all(
    cell: str, P: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, kind: str
) -> dict[str, np.ndarray]:
    """Every parameter gradient, dL/dh_t ``(T, h)`` and (LSTM) dL/dc_t by central differences."""
    out = {}
    for name in PARAMS:
        out[name] = fd_grad(lambda v, name=name: loss(cell, {**P, name: v}, x, y, kind), P[name])
    T, H = x.shape[0], P["weight_hh_l0"].shape[1]
    out["h"] = fd_grad(lambda v: loss(cell, P, x, y, kind, dh=v), np.zeros((T, H)))
    if cell == "lstm":
        out["c"] = fd_grad(lambda v: loss(cell, P, x, y, kind, dc=v), np.zeros((T, H)))
    return out


def step_jacobian_fd(
    cell: str, P: dict[str, np.ndarray], x: np.ndarray, h: np.ndarray, c: np.ndarray | None, eps: float = 1e-6
) -> np.ndarray:
    """``d s_t / d s_{t-1}`` by central differences, ``s = (h, c)`` (LSTM) or ``h`` (GRU)."""
    H = h.shape[0]
    s = h if c is None else np.concatenate([h, c])

    def f(v: np.ndarray) -> np.ndarray:
        hn, cn = step(cell, P, x, v[:H], None if c is None else v[H:])
        return hn if cn is None else np.concatenate([hn, cn])

    J = np.zeros((s.size, s.size))
    for j in range(s.size):
        up, down = s.copy(), s.copy()
        up[j] += eps
        down[j] -= eps
        J[:, j] = (f(up) - f(down)) / (2 * eps)
    return J


def states(cell: str, P: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """h_0..h_T and (LSTM) c_0..c_T, ``(T+1, h)`` each."""
    T, H = x.shape[0], P["weight_hh_l0"].shape[1]
    hs, cs = [np.zeros(H)], [np.zeros(H)]
    for t in range(T):
        h, c = step(cell, P, x[t], hs[-1], cs[-1] if cell == "lstm" else None)
        hs.append(h)
        cs.append(c if c is not None else np.zeros(H))
    return np.array(hs), (np.array(cs) if cell == "lstm" else None)


# --------------------------------------------------------------------------- mpmath
def mp_bptt(
    cell: str, P: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, kind: str, dps: int = 120
) -> dict[str, Any]:
    """log10 norms of dL/dh_t, dL/dc_t (lists over t = 1..T) and of every parameter gradient.

    The forward and backward passes by the chain rule, one scalar at a time, at ``dps`` digits.
    """
    with mpmath.workdps(dps):
        mpf = mpmath.mpf
        sig = lambda a: 1 / (1 + mpmath.exp(-a))  # noqa: E731
        T, H = x.shape[0], P["weight_hh_l0"].shape[1]
        G = P["weight_hh_l0"].shape[0] // H
        M = {k: [[mpf(float(v)) for v in row] for row in np.atleast_2d(P[k])] for k in PARAMS}
        b_ih, b_hh, b_q = M["bias_ih_l0"][0], M["bias_hh_l0"][0], M["b_q"][0]
        X = [[mpf(float(v)) for v in row] for row in x]
        Y = [[mpf(float(v)) for v in row] for row in y]
        d = len(X[0])

        def mv(W: list, v: list) -> list:
            return [mpmath.fsum(W[r][k] * v[k] for k in range(len(v))) for r in range(len(W))]

        hs, cs, cache = [[mpf(0)] * H], [[mpf(0)] * H], []
        for t in range(T):
            gi = [a + b for a, b in zip(mv(M["weight_ih_l0"], X[t]), b_ih, strict=True)]
            gh = [a + b for a, b in zip(mv(M["weight_hh_l0"], hs[-1]), b_hh, strict=True)]
            if cell == "lstm":
                a = [p + q for p, q in zip(gi, gh, strict=True)]
                i = [sig(v) for v in a[:H]]
                f = [sig(v) for v in a[H : 2 * H]]
                g = [mpmath.tanh(v) for v in a[2 * H : 3 * H]]
                o = [sig(v) for v in a[3 * H :]]
                c = [f[k] * cs[-1][k] + i[k] * g[k] for k in range(H)]
                h = [o[k] * mpmath.tanh(c[k]) for k in range(H)]
                cache.append((i, f, g, o))
                cs.append(c)
            else:
                r = [sig(gi[k] + gh[k]) for k in range(H)]
                z = [sig(gi[H + k] + gh[H + k]) for k in range(H)]
                n = [mpmath.tanh(gi[2 * H + k] + r[k] * gh[2 * H + k]) for k in range(H)]
                h = [(1 - z[k]) * n[k] + z[k] * hs[-1][k] for k in range(H)]
                cache.append((r, z, n, gh[2 * H :]))
            hs.append(h)

        grads = {k: [[mpf(0)] * len(M[k][0]) for _ in M[k]] for k in PARAMS}
        dh_norm, dc_norm = [mpf(0)] * T, [mpf(0)] * T
        carry_h, carry_c = [mpf(0)] * H, [mpf(0)] * H  # W_hh^T dL/da_{t+1}; f_{t+1} dL/dc_{t+1}
        for t in range(T - 1, -1, -1):
            if kind == "mean" or t == T - 1:
                e = [
                    mpmath.fsum(M["W_qh"][j][k] * hs[t + 1][k] for k in range(H)) + b_q[j] - Y[t][j]
                    for j in range(len(b_q))
                ]
                do = [v / T for v in e] if kind == "mean" else e
            else:
                do = [mpf(0)] * len(b_q)
            for j in range(len(do)):
                grads["b_q"][0][j] += do[j]
                for k in range(H):
                    grads["W_qh"][j][k] += do[j] * hs[t + 1][k]
            dh = [carry_h[k] + mpmath.fsum(M["W_qh"][j][k] * do[j] for j in range(len(do))) for k in range(H)]
            dh_norm[t] = mpmath.sqrt(mpmath.fsum(v * v for v in dh))
            if cell == "lstm":
                i, f, g, o = cache[t]
                c, c_prev = cs[t + 1], cs[t]
                dc = [dh[k] * o[k] * (1 - mpmath.tanh(c[k]) ** 2) + carry_c[k] for k in range(H)]
                dc_norm[t] = mpmath.sqrt(mpmath.fsum(v * v for v in dc))
                da = (
                    [dc[k] * g[k] * i[k] * (1 - i[k]) for k in range(H)]
                    + [dc[k] * c_prev[k] * f[k] * (1 - f[k]) for k in range(H)]
                    + [dc[k] * i[k] * (1 - g[k] ** 2) for k in range(H)]
                    + [dh[k] * mpmath.tanh(c[k]) * o[k] * (1 - o[k]) for k in range(H)]
                )
                dgi = dgh = da
                carry_c = [dc[k] * f[k] for k in range(H)]
                direct = [mpf(0)] * H
            else:
                r, z, n, ghn = cache[t]
                dn = [dh[k] * (1 - z[k]) * (1 - n[k] ** 2) for k in range(H)]
                dgi = (
                    [dn[k] * ghn[k] * r[k] * (1 - r[k]) for k in range(H)]
                    + [dh[k] * (hs[t][k] - n[k]) * z[k] * (1 - z[k]) for k in range(H)]
                    + dn
                )
                dgh = dgi[: 2 * H] + [dn[k] * r[k] for k in range(H)]
                direct = [dh[k] * z[k] for k in range(H)]
            for rr in range(G * H):
                grads["bias_ih_l0"][0][rr] += dgi[rr]
                grads["bias_hh_l0"][0][rr] += dgh[rr]
                for k in range(d):
                    grads["weight_ih_l0"][rr][k] += dgi[rr] * X[t][k]
                for k in range(H):
                    grads["weight_hh_l0"][rr][k] += dgh[rr] * hs[t][k]
            carry_h = [
                mpmath.fsum(M["weight_hh_l0"][rr][k] * dgh[rr] for rr in range(G * H)) + direct[k]
                for k in range(H)
            ]
        log10 = lambda v: mpmath.log10(v) if v else mpmath.mpf("-inf")  # noqa: E731
        out: dict[str, Any] = {
            "h": [float(log10(v)) for v in dh_norm],
            "c": [float(log10(v)) for v in dc_norm] if cell == "lstm" else None,
        }
        for k in PARAMS:
            out[k] = float(log10(mpmath.sqrt(mpmath.fsum(v * v for row in grads[k] for v in row))))
        return out
