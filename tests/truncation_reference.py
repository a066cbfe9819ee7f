"""Hand-written float64 references for the truncation tests: one trial, plain loops, no scaling.

Written as a reader of the chapter (or training code) would: a forward loop, then for every
estimator its own backward loop. Only for networks whose numbers stay inside float64.
"""

from __future__ import annotations

import numpy as np

Array = np.ndarray

PHI = {
    "identity": (lambda a: a, lambda a: np.ones_like(a)),
    "tanh": (np.tanh, lambda a: 1.0 - np.tanh(a) ** 2),
    "relu": (lambda a: np.maximum(a, 0.0), lambda a: (a > 0).astype(float)),
    "sigmoid": (lambda a: 1 / (1 + np.exp(-a)), lambda a: np.exp(-a) / (1 + np.exp(-a)) ** 2),
}


def trial(net, i: int) -> dict[str, Array]:  # type: ignore[no-untyped-def]
    """Trial ``i`` of a :class:`bptt_cli.core.network.Network` as plain arrays."""
    return {k: np.asarray(getattr(net, k)[i]) for k in ("W_hh", "W_hx", "W_qh", "b_h", "b_q", "x", "y")}


def forward(p: dict[str, Array], cell: str, h0: Array | None = None, t0: int = 0, t1: int | None = None):  # type: ignore[no-untyped-def]
    """States ``H[0..L]`` (H[0] = h_{t0}) and pre-activations ``A[0..L-1]`` of steps t0..t1-1."""
    phi = PHI[cell][0]
    T = p["x"].shape[0]
    t1 = T if t1 is None else t1
    h = p["W_hh"].shape[0]
    H = [np.zeros(h) if h0 is None else h0]
    A = []
    for t in range(t0, t1):
        a = p["W_hx"] @ p["x"][t] + p["W_hh"] @ H[-1] + p["b_h"]
        A.append(a)
        H.append(phi(a))
    return np.array(H), np.array(A)


def output_grads(p: dict[str, Array], H: Array, loss: str) -> Array:
    """``dL/do_t`` for t = 0..T-1 (rows), ``H`` = h_0..h_T."""
    T = H.shape[0] - 1
    E = H[1:] @ p["W_qh"].T + p["b_q"] - p["y"]
    if loss == "mean":
        return E / T
    out = np.zeros_like(E)
    out[-1] = E[-1]
    return out


def params_from_da(p: dict[str, Array], H: Array, dA: Array, dO: Array) -> dict[str, Array]:
    """Parameter gradients from ``dL/da_t`` rows and ``dL/do_t`` rows."""
    return {
        "W_hh": dA.T @ H[:-1],
        "W_hx": dA.T @ p["x"],
        "b_h": dA.sum(0),
        "W_qh": dO.T @ H[1:],
        "b_q": dO.sum(0),
    }


def full(p: dict[str, Array], cell: str, loss: str) -> dict[str, Array]:
    """Full BPTT: ``g_t = l_t + W_hh^T diag(phi'(a_{t+1})) g_{t+1}``."""
    return random(p, cell, loss, np.ones(p["x"].shape[0]))


def window(p: dict[str, Array], cell: str, loss: str, K: int) -> dict[str, Array]:
    """Regular truncation, each loss term on its own: loss s reaches steps s, s-1, ..., s-K+1."""
    dphi = PHI[cell][1]
    H, A = forward(p, cell)
    dO = output_grads(p, H, loss)
    T = A.shape[0]
    dA = np.zeros_like(A)
    for s in range(T):
        g = p["W_qh"].T @ dO[s]
        for t in range(s, max(s - K, -1), -1):
            if t < s:
                g = p["W_hh"].T @ (dphi(A[t + 1]) * g)
            dA[t] += dphi(A[t]) * g
    return params_from_da(p, H, dA, dO)


def chunk(p: dict[str, Array], cell: str, loss: str, K: int) -> dict[str, Array]:
    """Truncated BPTT as training code does it: chunks of K steps, state carried, gradient detached.

    Each chunk runs its own forward from the carried (detached) state, computes its share of the
    loss and backpropagates within the chunk only; the gradients of the chunks are added.
    """
    dphi = PHI[cell][1]
    T = p["x"].shape[0]
    H_all, _ = forward(p, cell)
    dO_all = output_grads(p, H_all, loss)  # the loss terms (1/T for the mean loss)
    grads = {k: np.zeros_like(v) for k, v in p.items() if k in ("W_hh", "W_hx", "W_qh", "b_h", "b_q")}
    state = np.zeros(p["W_hh"].shape[0])
    for c0 in range(0, T, K):
        c1 = min(c0 + K, T)
        H, A = forward(p, cell, state.copy(), c0, c1)  # detached: no gradient reaches `state`
        dO = dO_all[c0:c1]
        dA = np.zeros_like(A)
        g = np.zeros_like(state)
        for k in range(c1 - c0 - 1, -1, -1):
            g = p["W_qh"].T @ dO[k] + (p["W_hh"].T @ (dphi(A[k + 1]) * g) if k < c1 - c0 - 1 else 0.0)
            dA[k] = dphi(A[k]) * g
        grads["W_hh"] += dA.T @ H[:-1]
        grads["W_hx"] += dA.T @ p["x"][c0:c1]
        grads["b_h"] += dA.sum(0)
        grads["W_qh"] += dO.T @ H[1:]
        grads["b_q"] += dO.sum(0)
        state = H[-1]
    return grads


def random(p: dict[str, Array], cell: str, loss: str, xi: Array) -> dict[str, Array]:
    """``g_t = l_t + xi[t+1] W_hh^T diag(phi'(a_{t+1})) g_{t+1}`` for given multipliers ``xi[1..T-1]``."""
    dphi = PHI[cell][1]
    H, A = forward(p, cell)
    dO = output_grads(p, H, loss)
    T = A.shape[0]
    dA = np.zeros_like(A)
    g = np.zeros(p["W_hh"].shape[0])
    for t in range(T - 1, -1, -1):
        g = p["W_qh"].T @ dO[t] + (xi[t + 1] * (p["W_hh"].T @ (dphi(A[t + 1]) * g)) if t < T - 1 else 0.0)
        dA[t] = dphi(A[t]) * g
    return params_from_da(p, H, dA, dO)
