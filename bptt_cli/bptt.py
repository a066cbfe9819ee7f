"""Exact backpropagation through time for the Elman cell, in scaled arithmetic.

Forward: ``a_t = W_hx x_t + W_hh h_{t-1} + b_h``, ``h_t = phi(a_t)``, ``o_t = W_qh h_t + b_q``.
Backward, reusing the cached forward values:

    dL/dh_T = W_qh^T dL/do_T
    dL/da_t = diag(phi'(a_t)) dL/dh_t
    dL/dh_t = W_hh^T dL/da_{t+1} + W_qh^T dL/do_t

and the parameter gradients are sums over time, each one matrix product over ``t``:
``dL/dW_hh = sum_t dL/da_t h_{t-1}^T``, ``dL/dW_hx = sum_t dL/da_t x_t^T``,
``dL/db_h = sum_t dL/da_t``, ``dL/dW_qh = sum_t dL/do_t h_t^T``, ``dL/db_q = sum_t dL/do_t``.

Every vector is a unit mantissa and a natural-log scale (see :mod:`bptt_cli.scaled`),
renormalised at every step, so nothing overflows or underflows. All arrays carry a
leading trial axis ``n``: one Python step advances every trial.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cells import Cell
from .network import Network
from .scaled import Array, add, finite_or_zero, log_weights, normalize


@dataclass(frozen=True)
class Forward:
    """Cached forward pass of ``n`` trials.

    ``h_m (n, T+1, h)`` and ``h_s (n, T+1)``: h_0..h_T as mantissa and log scale;
    ``log_dphi (n, T, h)``: ``ln |phi'(a_t)|`` for t = 1..T (``None`` for the identity cell);
    ``e_m (n, T, q)``, ``e_s (n, T)``: the output error ``o_t - y_t``.
    """

    h_m: Array
    h_s: Array
    log_dphi: Array | None
    e_m: Array
    e_s: Array


@dataclass(frozen=True)
class Gradients:
    """Exact gradients of ``n`` trials, each a mantissa and a natural-log scale.

    ``dL_dh_m (n, T, h)``, ``dL_dh_s (n, T)``: dL/dh_t for t = 1..T (index 0 is t = 1);
    ``dL_da_m``, ``dL_da_s``: dL/da_t likewise; ``params[name] = (m, s)`` with ``m`` of the
    parameter's shape per trial and ``s (n,)``; ``loss_ln (n,)``: ln L;
    ``gain_ln (n,)``: ``ln ||J^T g|| - ln ||g||``, ``g = dL/dh_T``, ``J = dh_T/dh_1``
    (``-inf`` where ``J^T g = 0``, NaN where ``g = 0``).
    """

    dL_dh_m: Array
    dL_dh_s: Array
    dL_da_m: Array
    dL_da_s: Array
    params: dict[str, tuple[Array, Array]]
    loss_ln: Array
    gain_ln: Array


def forward(net: Network, cell: Cell) -> Forward:
    """Run the network forward, caching what the backward pass needs."""
    n, T, h, _, _ = net.shape
    u_m, u_s = normalize(np.matmul(net.x, np.swapaxes(net.W_hx, -1, -2)) + net.b_h[:, None, :])
    W_hh_T = np.swapaxes(net.W_hh, -1, -2)
    h_m = np.zeros((n, T + 1, h))
    h_s = np.full((n, T + 1), -np.inf)
    log_dphi = None if cell.linear else np.empty((n, T, h))
    m, s = h_m[:, 0], h_s[:, 0]
    for t in range(T):
        a_m, a_s = add(np.matmul(m[:, None, :], W_hh_T)[:, 0], s, u_m[:, t], u_s[:, t])
        if cell.linear:
            m, s = a_m, a_s
        elif cell.homogeneous:
            log_dphi[:, t] = cell.log_dphi(a_m)  # type: ignore[index]
            m, s = normalize(cell.phi(a_m), a_s)
        else:
            a = a_m * np.exp(np.minimum(a_s, 700.0))[:, None]
            log_dphi[:, t] = cell.log_dphi(a)  # type: ignore[index]
            m, s = normalize(cell.phi(a))
        h_m[:, t + 1], h_s[:, t + 1] = m, s
    Wh = np.matmul(h_m[:, 1:], np.swapaxes(net.W_qh, -1, -2))
    e_m, e_s = add(Wh, h_s[:, 1:], *normalize(net.b_q[:, None, :] - net.y))
    return Forward(h_m, h_s, log_dphi, e_m, e_s)


def output_grad(fwd: Forward, loss: str) -> tuple[Array, Array]:
    """``dL/do_t`` for t = 1..T as ``(m (n, T, q), s (n, T))``.

    ``last``: ``L = 1/2 ||o_T - y_T||^2``; ``mean``: ``L = (1/T) sum_t 1/2 ||o_t - y_t||^2``.
    """
    T = fwd.e_s.shape[1]
    if loss == "mean":
        return fwd.e_m, fwd.e_s - np.log(T)
    s = np.full_like(fwd.e_s, -np.inf)
    s[:, -1] = fwd.e_s[:, -1]
    m = np.zeros_like(fwd.e_m)
    m[:, -1] = fwd.e_m[:, -1]
    return m, s


def loss_ln(fwd: Forward, loss: str) -> Array:
    """Natural log of the loss, ``(n,)``."""
    if loss == "last":
        return np.log(0.5) + 2.0 * fwd.e_s[:, -1]
    T = fwd.e_s.shape[1]
    w, top = log_weights(2.0 * fwd.e_s)
    with np.errstate(divide="ignore"):
        return np.log(0.5 / T) + finite_or_zero(top) + np.log(np.sum(w, axis=-1))


def _through_phi(log_dphi_t: Array | None, m: Array, s: Array) -> tuple[Array, Array]:
    """``diag(phi'(a_t)) v`` for scaled ``v = m e^s``; ``m (n, c, h)``, ``s (n, c)``."""
    if log_dphi_t is None:
        return m, s
    top = finite_or_zero(np.max(log_dphi_t, axis=-1))  # (n,)
    w = np.exp(log_dphi_t - top[:, None])
    return normalize(m * w[:, None, :], s + top[:, None])


def _weighted_sum(
    left_m: Array, right: Array, scale: Array
) -> tuple[Array, Array]:
    """``sum_t left_t right_t^T`` for terms of log scale ``scale (n, T)``: ``(n, a, b)`` and ``(n,)``.

    ``left_m (n, T, a)``, ``right (n, T, b)``; one matrix product over ``t``.
    """
    w, top = log_weights(scale)
    return np.matmul(np.swapaxes(left_m * w[..., None], -1, -2), right), top


def backward(net: Network, fwd: Forward, cell: Cell, loss: str) -> Gradients:
    """Exact BPTT gradients from a cached forward pass."""
    n, T, h, _, _ = net.shape
    do_m, do_s = output_grad(fwd, loss)
    local_m, local_s = normalize(np.matmul(do_m, net.W_qh), do_s)  # W_qh^T dL/do_t, (n, T, h)

    # Column 0 carries dL/dh_t; for the mean loss, column 1 carries J^T g without the
    # local terms (for the last loss the two coincide).
    cols = 1 if loss == "last" else 2
    g_m = np.repeat(local_m[:, -1:, :], cols, axis=1)  # (n, cols, h)
    g_s = np.repeat(local_s[:, -1:], cols, axis=1)
    dh_m, dh_s = np.empty((n, T, h)), np.empty((n, T))
    da_m, da_s = np.empty((n, T, h)), np.empty((n, T))
    for t in range(T - 1, -1, -1):
        dh_m[:, t], dh_s[:, t] = g_m[:, 0], g_s[:, 0]
        d_m, d_s = _through_phi(None if fwd.log_dphi is None else fwd.log_dphi[:, t], g_m, g_s)
        da_m[:, t], da_s[:, t] = d_m[:, 0], d_s[:, 0]
        if t == 0:
            break
        r = np.matmul(d_m, net.W_hh)  # rows are (W_hh^T d)^T
        if cols == 1:
            g_m, g_s = normalize(r, d_s)
        else:
            g0 = add(r[:, 0], d_s[:, 0], local_m[:, t - 1], local_s[:, t - 1])
            g1 = normalize(r[:, 1], d_s[:, 1])
            g_m = np.stack([g0[0], g1[0]], axis=1)
            g_s = np.stack([g0[1], g1[1]], axis=1)

    last_s, first_s = local_s[:, -1], g_s[:, -1]
    with np.errstate(invalid="ignore"):
        gain = np.where(np.isneginf(last_s), np.nan, first_s - last_s)

    h_m, h_s = fwd.h_m, fwd.h_s
    params = {
        "W_hh": _weighted_sum(da_m, h_m[:, :-1], da_s + h_s[:, :-1]),
        "W_hx": _weighted_sum(da_m, net.x, da_s),
        "W_qh": _weighted_sum(do_m, h_m[:, 1:], do_s + h_s[:, 1:]),
    }
    w, top = log_weights(da_s)
    params["b_h"] = (np.einsum("nt,nti->ni", w, da_m), top)
    w, top = log_weights(do_s)
    params["b_q"] = (np.einsum("nt,nti->ni", w, do_m), top)
    return Gradients(dh_m, dh_s, da_m, da_s, params, loss_ln(fwd, loss), gain)


def bptt(net: Network, cell: Cell, loss: str) -> tuple[Forward, Gradients]:
    """Forward pass and exact BPTT gradients of every trial of ``net``."""
    fwd = forward(net, cell)
    return fwd, backward(net, fwd, cell, loss)
