"""The stacked, bidirectional network of ONE trial, written out as PyTorch defines it, with its gradients
by reverse-mode autodiff (:mod:`autodiff`) and by central finite differences. Nothing here imports
from ``bptt_cli``.

Parameters by PyTorch's names (``weight_ih_l0``, ``weight_hh_l1_reverse``, ...) and ``W_qh``
``(q, D h)``, ``b_q``. Elman cells: ``h_t = phi(W_ih u_t + b_ih + W_hh h_{t-1} + b_hh)``; LSTM gates
i, f, g, o; GRU r, z, n (``n = tanh(W_in u + b_in + r * (W_hn h + b_hn))``). The reverse direction
runs over the reversed sequence; layer ``l > 0`` reads the concatenation of layer ``l-1``'s
directions; the output layer the top layer's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from autodiff import Var, concat, cross_entropy, half_square, matvec, part, relu, sigmoid, tanh, total

ACT: dict[str, Callable[[Var], Var]] = {
    "identity": lambda v: v, "tanh": tanh, "relu": relu, "sigmoid": sigmoid,
}


def name(kind: str, layer: int, direction: int) -> str:
    return f"{kind}_l{layer}" + ("_reverse" if direction else "")


@dataclass
class Tape:
    """One forward pass on the tape: the loss and every state node ``h[(layer, direction)][t]``
    (real time, t = 1..T at index 0..T-1), and the parameter nodes."""

    loss: Var
    h: dict[tuple[int, int], list[Var]]
    params: dict[str, Var]


def forward(
    cell: str, P: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, layers: int, directions: int,
    loss: str, criterion: str = "mse", h0: np.ndarray | None = None, c0: np.ndarray | None = None,
    dh: dict[tuple[int, int], np.ndarray] | None = None,
) -> Tape:
    """The loss of one trial. ``h0``, ``c0 (L D, h)``: initial states (zeros if ``None``); ``dh``:
    perturbations added to the states ``h_t`` of a layer-direction (real time), for finite
    differences of ``dL/dh_t``."""
    T = x.shape[0]
    params = {k: Var(v) for k, v in P.items()}
    H = P[name("weight_hh", 0, 0)].shape[1]
    inputs = [Var(x[t]) for t in range(T)]
    states: dict[tuple[int, int], list[Var]] = {}
    for k in range(layers):
        outs = []
        for d in range(directions):
            W_ih, W_hh = params[name("weight_ih", k, d)], params[name("weight_hh", k, d)]
            b_ih, b_hh = params[name("bias_ih", k, d)], params[name("bias_hh", k, d)]
            j = k * directions + d
            h = Var(np.zeros(H) if h0 is None else h0[j])
            c = Var(np.zeros(H) if c0 is None else c0[j])
            seq: list[Var | None] = [None] * T
            for t in (range(T - 1, -1, -1) if d else range(T)):
                gi = matvec(W_ih, inputs[t]) + b_ih
                gh = matvec(W_hh, h) + b_hh
                if cell == "lstm":
                    a = gi + gh
                    i, f = sigmoid(part(a, 0, H)), sigmoid(part(a, H, 2 * H))
                    g, o = tanh(part(a, 2 * H, 3 * H)), sigmoid(part(a, 3 * H, 4 * H))
                    c = f * c + i * g
                    h = o * tanh(c)
                elif cell == "gru":
                    r = sigmoid(part(gi, 0, H) + part(gh, 0, H))
                    z = sigmoid(part(gi, H, 2 * H) + part(gh, H, 2 * H))
                    n = tanh(part(gi, 2 * H, 3 * H) + r * part(gh, 2 * H, 3 * H))
                    h = n + z * (h - n)
                else:
                    h = ACT[cell](gi + gh)
                if dh is not None and (k, d) in dh:
                    h = h + Var(dh[(k, d)][t])
                seq[t] = h
            states[(k, d)] = [s for s in seq if s is not None]
            outs.append(states[(k, d)])
        inputs = [concat([o[t] for o in outs]) for t in range(T)]
    terms = []
    for t in range(T):
        if loss == "last" and t < T - 1:
            continue
        o = matvec(params["W_qh"], inputs[t]) + params["b_q"]
        ce = criterion == "cross-entropy"
        terms.append(cross_entropy(o, int(y[t])) if ce else half_square(o - Var(y[t])))
    L = total(terms)
    return Tape(L if loss == "last" else L.scale(1.0 / T), states, params)


Gradients = tuple[float, dict[str, np.ndarray], dict[tuple[int, int], np.ndarray]]


def gradients(*args: object, **kw: object) -> Gradients:
    """The loss, every parameter gradient and every ``dL/dh_t`` ``(T, h)`` by layer-direction."""
    tape = forward(*args, **kw)  # type: ignore[arg-type]
    tape.loss.backward()
    dh = {key: np.stack([v.grad for v in seq]) for key, seq in tape.h.items()}
    return float(tape.loss.value), {k: v.grad for k, v in tape.params.items()}, dh


def fd_dh(args: tuple, key: tuple[int, int], t: int, H: int, eps: float = 1e-6, **kw: object) -> np.ndarray:
    """Central differences of the loss w.r.t. the state ``h_t`` (real time index ``t``) of ``key``."""
    T = args[2].shape[0]  # type: ignore[index]
    out = np.zeros(H)
    for i in range(H):
        vals = []
        for sign in (1.0, -1.0):
            bump = np.zeros((T, H))
            bump[t, i] = sign * eps
            vals.append(float(forward(*args, dh={key: bump}, **kw).loss.value))  # type: ignore[arg-type]
        out[i] = (vals[0] - vals[1]) / (2 * eps)
    return out


def fd_param(args: tuple, pname: str, eps: float = 1e-6, **kw: object) -> np.ndarray:
    """Central differences of the loss w.r.t. every entry of parameter ``pname``."""
    P = args[1]
    out = np.zeros_like(P[pname])  # type: ignore[index]
    for idx in np.ndindex(out.shape):
        vals = []
        for sign in (1.0, -1.0):
            Q = {k: v.copy() for k, v in P.items()}  # type: ignore[union-attr]
            Q[pname][idx] += sign * eps
            vals.append(float(forward(args[0], Q, *args[2:], **kw).loss.value))  # type: ignore[arg-type]
        out[idx] = (vals[0] - vals[1]) / (2 * eps)
    return out
