"""Exact backpropagation through time for the gated cells (PyTorch's nn.LSTM and nn.GRU).

LSTM (gate blocks stacked i, f, g, o, as in PyTorch)::

    a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh                       (4h: a_i, a_f, a_g, a_o)
    i_t = sigma(a_i), f_t = sigma(a_f), g_t = tanh(a_g), o_t = sigma(a_o)
    c_t = f_t * c_{t-1} + i_t * g_t,   h_t = o_t * tanh(c_t)

GRU (blocks r, z, n)::

    r_t = sigma(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr),  z_t = sigma(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn)),   h_t = (1 - z_t) * n_t + z_t * h_{t-1}

and ``o_t = W_qh h_t + b_q`` with the losses of the Elman network; ``h_0 = c_0 = 0``.

The forward pass runs in plain float64: ``|h_t| < 1`` and ``|c_t| <= t``, so no state can
overflow. The backward pass carries the gradient of the state ``s_t`` (``(h_t, c_t)`` for the
LSTM, ``h_t`` for the GRU) as mantissas and natural-log scales (:mod:`bptt_cli.core.scaled`), the
LSTM's h and c parts each with its own scale. Per step it is linear with coefficients built
from the gates (LSTM, with ``sigma'(a) = sigma(a) sigma(-a)``, ``tanh'(a) = 4 sigma(2a) sigma(-2a)``)::

    dL/dc_t   = A_t * dL/dh_t + gc_t                   A = o_t tanh'(c_t)        (gc_T = 0)
    dL/da_t   = [C_i, C_f, C_g] * dL/dc_t ; B * dL/dh_t  C_i = g sigma'(a_i), C_f = c_{t-1} sigma'(a_f),
                                                       C_g = i tanh'(a_g), B = tanh(c_t) sigma'(a_o)
    dL/dh_t-1 = W_hh^T dL/da_t + W_qh^T dL/do_t-1,     gc_t-1 = f_t * dL/dc_t

(GRU: ``dL/dh_t-1 = z_t * dL/dh_t + W_hh^T (K_t * dL/dh_t) + W_qh^T dL/do_t-1`` with
``K = [P_r, P_z, P_n r]``, ``P_n = (1 - z) tanh'(a_n)``, ``P_r = P_n (W_hn h_t-1 + b_hn) sigma'(a_r)``,
``P_z = (h_t-1 - n_t) sigma'(a_z)``, and ``dL/d(W_ih x + b_ih) = [P_r, P_z, P_n] * dL/dh_t``.)
``dL/dh_t`` and ``dL/dc_t`` are the total derivatives, as ``retain_grad`` gives them in PyTorch;
``gc_t`` (the c-part of the state gradient, h_t held fixed) is ``f_{t+1} * dL/dc_{t+1}``.

As in the Elman core (:mod:`bptt_cli.core.elman`), the chain runs in sub-blocks of ``SUB`` steps in
plain float64 within a fixed frame, with coefficients computed once per block; a sub-block whose
vectors came near float64's limits (or produced a zero from a nonzero vector) is redone step by
step in fully scaled arithmetic with every coefficient in log form (``ln sigma(a) =
-log(1 + e^-a)`` from ``a``), so a gradient that vanishes through saturated gates is reported as,
say, ``10^-500`` and not as 0. Parameter gradients are sums over time, one matrix product per
block of ``BLOCK`` steps. Every array carries a leading trial axis ``n``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit  # type: ignore[import-untyped]

from bptt_cli.core.elman import (
    BLOCK,
    RANGE_LN,
    SUB,
    Forward,
    Gradients,
    Local,
    ParamSums,
    Terms,
    block_sum,
    kept_every_digit,
    vector_sum,
)
from bptt_cli.core.head import cross_entropy, finite_input, local_terms, loss_ln
from bptt_cli.core.network import GatedNetwork
from bptt_cli.core.scaled import LN10, Array, add, finite_or_zero, normalize
from bptt_cli.errors import BadInput

LN4 = float(np.log(4.0))
Scaled = tuple[Array, Array]  # mantissa (..., w) and natural-log scale (...)
Coefs = dict[str, Array]
Rows = NDArray[np.intp] | slice  # the trials a slow-path step runs on
ALL: Rows = slice(None)


@dataclass(frozen=True)
class GatedForward:
    """Cached forward pass of ``n`` trials (plain floats; ``G`` gates, ``G = 4`` LSTM, 3 GRU).

    ``pre (n, T, G h)``: gate pre-activations of t = 1..T (LSTM: ``a_t``; GRU: the arguments of
    sigma for r and z and of tanh for n); ``h (n, T+1, h)``: h_0..h_T; ``c (n, T+1, h)``: the
    LSTM's c_0..c_T (``None`` for the GRU); ``ghn (n, T, h)``: the GRU's ``W_hn h_{t-1} + b_hn``
    (``None`` for the LSTM); ``e_m (n, T, q)``, ``e_s (n, T)``: ``dl_t/do_t``, the output error
    ``o_t - y_t`` for ``mse`` (:mod:`bptt_cli.core.head`); ``h_s (n, T+1)``: ``ln ||h_t||``
    (``-inf`` for h_0 = 0); ``l_ln (n, T)``: ``ln l_t`` (``None`` for ``mse``).
    """

    cell: str
    pre: Array
    h: Array
    c: Array | None
    ghn: Array | None
    e_m: Array
    e_s: Array
    h_s: Array
    l_ln: Array | None = None

    def outputs(self) -> Forward:
        """The output errors (and ``h_s``) as an Elman :class:`~bptt_cli.core.elman.Forward`, for the
        helpers of :mod:`bptt_cli.core.elman` that read only those (``loss_ln``)."""
        return Forward(None, self.h_s, None, self.e_m, self.e_s, l_ln=self.l_ln)


@dataclass(frozen=True)
class GatedGradients(Gradients):
    """:class:`~bptt_cli.core.elman.Gradients` of a gated cell.

    ``params`` are keyed by PyTorch's names (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``,
    ``bias_hh_l0``) and ``W_qh``, ``b_q``; ``dL_da_m`` is ``None`` and ``dL_da_s (n, T)`` holds
    ``ln ||dL/da_t||`` of the gate pre-activations (LSTM: ``a_t``; GRU: ``W_ih x_t + b_ih``);
    ``dL_dc_m (n, T, h)``, ``dL_dc_s (n, T)``: the LSTM's dL/dc_t (``None`` for the GRU);
    ``dL_dgh_s (n, T)``: ``ln ||dL/d(W_hh h_{t-1} + b_hh)||``, the rows of ``weight_hh_l0``'s
    gradient (the LSTM's equals ``dL_da_s``); ``gain_ln``: ``ln ||J^T g|| - ln ||g||`` for the
    joint state, ``g = dL/ds_T = (dL/dh_T, 0)``. Without ``keep`` (:func:`backward`) the
    mantissas ``dL_dh_m`` and ``dL_dc_m`` are ``None``.
    """

    dL_dc_m: Array | None = None
    dL_dc_s: Array | None = None
    dL_dgh_s: Array | None = None


# -- gate functions, plain and in log form ---------------------------------------------------


def dsigmoid(a: Array) -> Array:
    """``sigma'(a) = sigma(a) sigma(-a)``, accurate in both tails."""
    return expit(a) * expit(-a)


def dtanh(a: Array) -> Array:
    """``tanh'(a) = 4 sigma(2a) sigma(-2a)``, accurate in both tails (not ``1 - tanh^2``)."""
    return 4.0 * expit(2.0 * a) * expit(-2.0 * a)


def log_sigmoid(a: Array) -> Array:
    """``ln sigma(a) = -ln(1 + e^-a)``, finite for every finite ``a``."""
    return -np.logaddexp(0.0, -a)


def log_dsigmoid(a: Array) -> Array:
    """``ln sigma'(a) = ln sigma(a) + ln sigma(-a)``."""
    return log_sigmoid(a) + log_sigmoid(-a)


def log_dtanh(a: Array) -> Array:
    """``ln tanh'(a) = ln 4 + ln sigma(2a) + ln sigma(-2a)``."""
    return LN4 + log_dsigmoid(2.0 * a)


def log_abs(a: Array) -> tuple[Array, Array]:
    """``(ln |a|, sign a)`` (``-inf`` and 0 for exact zeros)."""
    with np.errstate(divide="ignore"):
        return np.log(np.abs(a)), np.sign(a)


# -- scaled helpers ----------------------------------------------------------------------------


def scale_by(m: Array, s: Array, ln: Array, sign: Array | None = None) -> Scaled:
    """Elementwise product of ``m e^s`` ``(n, c, w)``, ``(n, c)`` and ``sign e^ln`` ``(n, w)``."""
    top = finite_or_zero(np.max(ln, axis=-1))
    w = np.exp(ln - top[:, None])
    if sign is not None:
        w = w * sign
    return normalize(m * w[:, None, :], s + top[:, None])


def concat(a: Scaled, b: Scaled) -> Scaled:
    """The concatenation ``[a, b]`` along the last axis of two scaled arrays."""
    top = finite_or_zero(np.maximum(a[1], b[1]))
    parts = [m * np.exp(s - top)[..., None] for m, s in (a, b)]
    return normalize(np.concatenate(parts, axis=-1), top)


def joint_ln(chain: list[Scaled]) -> Array:
    """``ln`` of the norm of the concatenated parts of a scaled chain (unit-norm mantissas)."""
    return 0.5 * np.logaddexp.reduce(np.stack([2.0 * s for _, s in chain]), axis=0)


# -- the cells ---------------------------------------------------------------------------------


class Kernel(Protocol):
    """One gated cell's forward step and the linear maps of its backward pass."""

    parts: int  # parts of the state: 2 (h, c) for the LSTM, 1 for the GRU

    def widths(self, h: int) -> tuple[int, ...]: ...

    def forward(self, net: GatedNetwork) -> GatedForward: ...

    def coefficients(self, net: GatedNetwork, fwd: GatedForward, b0: int, b1: int) -> Coefs: ...

    def log_coefficients(self, net: GatedNetwork, fwd: GatedForward, t: int, rows: Rows = ALL) -> Coefs: ...

    def step_T(self, co: Coefs, k: int, W: Array, xs: list[Array]) -> tuple[list[Array], list[Array]]: ...

    def step(self, co: Coefs, k: int, W: Array, xs: list[Array]) -> list[Array]: ...

    def step_T_scaled(
        self, lc: Coefs, W: Array, chain: list[Scaled]
    ) -> tuple[list[Scaled], list[Scaled]]: ...

    def param_sums(
        self, sums: ParamSums, net: GatedNetwork, fwd: GatedForward, rec: list[Scaled], b0: int, b1: int
    ) -> None: ...


def _input_drive(net: GatedNetwork, b0: int, b1: int) -> Array:
    """``W_ih x_t + b_ih`` for indices ``b0..b1-1``, ``(n, L, G h)``."""
    with np.errstate(over="ignore", invalid="ignore"):  # checked
        U = np.matmul(net.x[:, b0:b1], np.swapaxes(net.weight_ih_l0, -1, -2)) + net.bias_ih_l0[:, None, :]
    return finite_input(U, "the input drive W_ih x_t + b_ih", b0)


def _output_errors(net: GatedNetwork, h: Array) -> tuple[Array, Array, Array | None]:
    """``dl_t/do_t`` for t = 1..T from ``h (n, T+1, h)``, scaled, ``(n, T, q)`` and ``(n, T)``:
    the output error ``o_t - y_t`` for ``mse``; and ``ln l_t`` (``None`` for ``mse``)."""
    o = np.matmul(h[:, 1:], np.swapaxes(net.W_qh, -1, -2)) + net.b_q[:, None, :]
    if net.criterion == "mse":
        return (*normalize(o - net.y), None)
    return cross_entropy(*normalize(o), net.y)


def _initial(net: GatedNetwork, H: Array, C: Array | None, h_s: Array) -> None:
    """``h_0`` (and the LSTM's ``c_0``) into ``H[:, 0]``, ``C[:, 0]`` (zeros unless given)."""
    if net.h0 is not None:
        H[:, 0] = net.h0
        h_s[:, 0] = normalize(net.h0)[1]
    if C is not None and net.c0 is not None:
        C[:, 0] = net.c0


def _checked_block(cell: str, *pre: Array) -> None:
    """Refuse a block of pre-activations that overflowed (checked block by block: no ``(n, T, G h)``
    mask is ever formed)."""
    if not all(np.isfinite(p).all() for p in pre):
        raise BadInput(f"the {cell.upper()}'s gate pre-activations overflow float64: weights too large")


def _state_scales(H: Array, b0: int, b1: int, h_s: Array) -> None:
    """``h_s[:, b0+1 : b1+1] = ln ||h_t||`` for the block's states."""
    h_s[:, b0 + 1 : b1 + 1] = normalize(H[:, b0 + 1 : b1 + 1])[1]


class LSTMKernel:
    """nn.LSTM: state (h, c); records dL/dc_t and dL/da_t (4h)."""

    parts = 2

    def widths(self, h: int) -> tuple[int, ...]:
        """Widths of the vectors recorded per step besides dL/dh_t: dL/dc_t, dL/da_t."""
        return h, 4 * h

    def forward(self, net: GatedNetwork) -> GatedForward:
        n, T, h, _, _ = net.shape
        Wt = np.swapaxes(net.weight_hh_l0, -1, -2)
        pre = np.empty((n, T, 4 * h))
        H, C = np.zeros((n, T + 1, h)), np.zeros((n, T + 1, h))
        h_s = np.full((n, T + 1), -np.inf)
        _initial(net, H, C, h_s)
        with np.errstate(over="ignore", invalid="ignore"):  # checked block by block
            for b0 in range(0, T, BLOCK):
                b1 = min(b0 + BLOCK, T)
                U = _input_drive(net, b0, b1) + net.bias_hh_l0[:, None, :]
                for t in range(b0, b1):
                    a = np.matmul(H[:, t, None, :], Wt)[:, 0]
                    a += U[:, t - b0]
                    pre[:, t] = a
                    gates = expit(a)
                    g = np.tanh(a[:, 2 * h : 3 * h])
                    c = C[:, t + 1] = gates[:, h : 2 * h] * C[:, t] + gates[:, :h] * g
                    H[:, t + 1] = gates[:, 3 * h :] * np.tanh(c)
                _checked_block("lstm", pre[:, b0:b1])
                _state_scales(H, b0, b1, h_s)
        e_m, e_s, l_ln = _output_errors(net, H)
        return GatedForward("lstm", pre, H, C, None, e_m, e_s, h_s, l_ln)

    def coefficients(self, net: GatedNetwork, fwd: GatedForward, b0: int, b1: int) -> Coefs:
        assert fwd.c is not None
        n, L = fwd.pre.shape[0], b1 - b0
        h = fwd.h.shape[-1]
        a = fwd.pre[:, b0:b1].reshape(n, L, 4, h)
        sig, dsig = expit(a), dsigmoid(a)
        c_prev, c = fwd.c[:, b0:b1], fwd.c[:, b0 + 1 : b1 + 1]
        g = np.tanh(a[:, :, 2])
        C = np.stack([g * dsig[:, :, 0], c_prev * dsig[:, :, 1], sig[:, :, 0] * dtanh(a[:, :, 2])], axis=2)
        return {
            "A": sig[:, :, 3] * dtanh(c),
            "B": np.tanh(c) * dsig[:, :, 3],
            "C": C,
            "F": sig[:, :, 1],
        }

    def log_coefficients(self, net: GatedNetwork, fwd: GatedForward, t: int, rows: Rows = ALL) -> Coefs:
        """The coefficients of step ``t+1`` in log form (with signs), for the trials ``rows``."""
        assert fwd.c is not None
        h = fwd.h.shape[-1]
        ai, af, ag, ao = (fwd.pre[rows, t, k * h : (k + 1) * h] for k in range(4))
        c_prev, c = fwd.c[rows, t], fwd.c[rows, t + 1]
        ln_tc, sg_tc = log_abs(np.tanh(c))
        ln_g, sg_g = log_abs(np.tanh(ag))
        ln_cp, sg_cp = log_abs(c_prev)
        return {
            "A": log_sigmoid(ao) + log_dtanh(c),
            "B": ln_tc + log_dsigmoid(ao), "B_sign": sg_tc,
            "C": np.concatenate([ln_g + log_dsigmoid(ai), ln_cp + log_dsigmoid(af),
                                 log_sigmoid(ai) + log_dtanh(ag)], axis=-1),
            "C_sign": np.concatenate([sg_g, sg_cp, np.ones_like(sg_g)], axis=-1),
            "F": log_sigmoid(af),
        }

    def step_T(self, co: Coefs, k: int, W: Array, xs: list[Array]) -> tuple[list[Array], list[Array]]:
        """``J_t^T`` on ``xs = [dL/dh part, c part]`` ``(n, c, h)``: records ``[dL/dc, dL/da]``."""
        xh, xc = xs
        n, cols, h = xh.shape
        dc = xh * co["A"][:, k, None] + xc
        P4 = np.empty((n, cols, 4, h))
        np.multiply(dc[:, :, None, :], co["C"][:, k, None], out=P4[:, :, :3])
        np.multiply(xh, co["B"][:, k, None], out=P4[:, :, 3])
        P = P4.reshape(n, cols, 4 * h)
        return [dc, P], [np.matmul(P, W), dc * co["F"][:, k, None]]

    def step(self, co: Coefs, k: int, W: Array, xs: list[Array]) -> list[Array]:
        """``J_t`` on ``xs = [h part, c part]``."""
        vh, vc = xs
        n, cols, h = vh.shape
        P = np.matmul(vh, np.swapaxes(W, -1, -2)).reshape(n, cols, 4, h)
        vc = co["F"][:, k, None] * vc + np.sum(co["C"][:, k, None] * P[:, :, :3], axis=2)
        return [co["B"][:, k, None] * P[:, :, 3] + co["A"][:, k, None] * vc, vc]

    def step_T_scaled(self, lc: Coefs, W: Array, chain: list[Scaled]) -> tuple[list[Scaled], list[Scaled]]:
        (hm, hs), (cm, cs) = chain
        dc = add(*scale_by(hm, hs, lc["A"]), cm, cs)
        pre = concat(scale_by(np.tile(dc[0], 3), dc[1], lc["C"], lc["C_sign"]),
                     scale_by(hm, hs, lc["B"], lc["B_sign"]))
        return [dc, pre], [normalize(np.matmul(pre[0], W), pre[1]), scale_by(*dc, lc["F"])]

    def param_sums(
        self, sums: ParamSums, net: GatedNetwork, fwd: GatedForward, rec: list[Scaled], b0: int, b1: int
    ) -> None:
        pre_m, pre_s = rec[2]
        sums.add("weight_ih_l0", *block_sum(pre_m, net.x[:, b0:b1], pre_s))
        sums.add("weight_hh_l0", *block_sum(pre_m, fwd.h[:, b0:b1], pre_s))
        bias = vector_sum(pre_m, pre_s)
        sums.add("bias_ih_l0", *bias)
        sums.add("bias_hh_l0", *bias)


class GRUKernel:
    """nn.GRU: state h; records dL/d(W_ih x + b_ih) and dL/d(W_hh h + b_hh) (3h each)."""

    parts = 1

    def widths(self, h: int) -> tuple[int, ...]:
        """Widths of the vectors recorded per step besides dL/dh_t: dL/dgi_t, dL/dgh_t."""
        return 3 * h, 3 * h

    def forward(self, net: GatedNetwork) -> GatedForward:
        n, T, h, _, _ = net.shape
        Wt = np.swapaxes(net.weight_hh_l0, -1, -2)
        b_hh = net.bias_hh_l0
        pre = np.empty((n, T, 3 * h))
        ghn = np.empty((n, T, h))
        H = np.zeros((n, T + 1, h))
        h_s = np.full((n, T + 1), -np.inf)
        _initial(net, H, None, h_s)
        with np.errstate(over="ignore", invalid="ignore"):  # checked block by block
            for b0 in range(0, T, BLOCK):
                b1 = min(b0 + BLOCK, T)
                U = _input_drive(net, b0, b1)
                for t in range(b0, b1):
                    gh = np.matmul(H[:, t, None, :], Wt)[:, 0]
                    gh += b_hh
                    a = pre[:, t]
                    np.add(U[:, t - b0, : 2 * h], gh[:, : 2 * h], out=a[:, : 2 * h])
                    rz = expit(a[:, : 2 * h])
                    ghn[:, t] = gh[:, 2 * h :]
                    np.add(U[:, t - b0, 2 * h :], rz[:, :h] * gh[:, 2 * h :], out=a[:, 2 * h :])
                    new = np.tanh(a[:, 2 * h :])
                    H[:, t + 1] = new + rz[:, h:] * (H[:, t] - new)
                _checked_block("gru", pre[:, b0:b1], ghn[:, b0:b1])
                _state_scales(H, b0, b1, h_s)
        e_m, e_s, l_ln = _output_errors(net, H)
        return GatedForward("gru", pre, H, None, ghn, e_m, e_s, h_s, l_ln)

    def coefficients(self, net: GatedNetwork, fwd: GatedForward, b0: int, b1: int) -> Coefs:
        assert fwd.ghn is not None
        n, L = fwd.pre.shape[0], b1 - b0
        h = fwd.h.shape[-1]
        a = fwd.pre[:, b0:b1].reshape(n, L, 3, h)
        ar, az, an = a[:, :, 0], a[:, :, 1], a[:, :, 2]
        Pn = expit(-az) * dtanh(an)
        Pr = Pn * fwd.ghn[:, b0:b1] * dsigmoid(ar)
        Pz = (fwd.h[:, b0:b1] - np.tanh(an)) * dsigmoid(az)
        return {
            "Z": expit(az),
            "Kgi": np.stack([Pr, Pz, Pn], axis=2),
            "Kgh": np.stack([Pr, Pz, Pn * expit(ar)], axis=2),
        }

    def log_coefficients(self, net: GatedNetwork, fwd: GatedForward, t: int, rows: Rows = ALL) -> Coefs:
        """The coefficients of step ``t+1`` in log form (with signs), for the trials ``rows``."""
        assert fwd.ghn is not None
        h = fwd.h.shape[-1]
        ar, az, an = (fwd.pre[rows, t, k * h : (k + 1) * h] for k in range(3))
        ln_pn = log_sigmoid(-az) + log_dtanh(an)
        ln_ghn, sg_ghn = log_abs(fwd.ghn[rows, t])
        ln_pr = ln_pn + ln_ghn + log_dsigmoid(ar)
        ln_d, sg_d = log_abs(fwd.h[rows, t] - np.tanh(an))
        ln_pz = ln_d + log_dsigmoid(az)
        ones = np.ones_like(sg_d)
        sign = np.concatenate([sg_ghn, sg_d, ones], axis=-1)
        return {
            "Z": log_sigmoid(az),
            "Kgi": np.concatenate([ln_pr, ln_pz, ln_pn], axis=-1),
            "Kgh": np.concatenate([ln_pr, ln_pz, ln_pn + log_sigmoid(ar)], axis=-1),
            "sign": sign,
        }

    def step_T(self, co: Coefs, k: int, W: Array, xs: list[Array]) -> tuple[list[Array], list[Array]]:
        """``J_t^T`` on ``xs = [dL/dh part]`` ``(n, c, h)``: records ``[dL/dgi, dL/dgh]``."""
        (x,) = xs
        n, cols, h = x.shape
        gi = (x[:, :, None, :] * co["Kgi"][:, k, None]).reshape(n, cols, 3 * h)
        gh = (x[:, :, None, :] * co["Kgh"][:, k, None]).reshape(n, cols, 3 * h)
        return [gi, gh], [np.matmul(gh, W) + x * co["Z"][:, k, None]]

    def step(self, co: Coefs, k: int, W: Array, xs: list[Array]) -> list[Array]:
        """``J_t`` on ``xs = [h part]``."""
        (v,) = xs
        n, cols, h = v.shape
        P = np.matmul(v, np.swapaxes(W, -1, -2)).reshape(n, cols, 3, h)
        return [co["Z"][:, k, None] * v + np.sum(co["Kgh"][:, k, None] * P, axis=2)]

    def step_T_scaled(self, lc: Coefs, W: Array, chain: list[Scaled]) -> tuple[list[Scaled], list[Scaled]]:
        ((vm, vs),) = chain
        v3 = np.tile(vm, 3)
        gi = scale_by(v3, vs, lc["Kgi"], lc["sign"])
        gh = scale_by(v3, vs, lc["Kgh"], lc["sign"])
        return [gi, gh], [add(*normalize(np.matmul(gh[0], W), gh[1]), *scale_by(vm, vs, lc["Z"]))]

    def param_sums(
        self, sums: ParamSums, net: GatedNetwork, fwd: GatedForward, rec: list[Scaled], b0: int, b1: int
    ) -> None:
        (gi_m, gi_s), (gh_m, gh_s) = rec[1], rec[2]
        sums.add("weight_ih_l0", *block_sum(gi_m, net.x[:, b0:b1], gi_s))
        sums.add("weight_hh_l0", *block_sum(gh_m, fwd.h[:, b0:b1], gh_s))
        sums.add("bias_ih_l0", *vector_sum(gi_m, gi_s))
        sums.add("bias_hh_l0", *vector_sum(gh_m, gh_s))


KERNELS: dict[str, Kernel] = {"lstm": LSTMKernel(), "gru": GRUKernel()}


# -- the backward pass -------------------------------------------------------------------------

Run = tuple[list[Scaled], list[Scaled]]  # records [dL/dh, *kernel records] (n, L, w) and the chain


def _fast(
    kern: Kernel, co: Coefs, W: Array, chain: list[Scaled], loc_m: Array, loc_s: Array,
    add_local: NDArray[np.bool_], ends: bool,
) -> tuple[Run, NDArray[np.bool_]]:
    """Backward steps ``k = L-1..0`` of one sub-block in plain float64 within fixed frames.

    ``chain``: the state gradient arriving at the sub-block's last step, each part ``(n, c, w)``
    and ``(n, c)``; column 0 is dL/ds_t and gets ``loc_m e^loc_s (n, L, h)`` where ``add_local``.
    Every column has one frame ``e^S`` (column 0's also covers the local terms). Returns the
    records of column 0 and the chain leaving the sub-block (with ``ends``, the chain at its first
    step), and which trials kept every digit: not those whose parts were too far apart for one
    frame, whose vectors left ``e^{+-RANGE_LN}`` of their frame, or where a zero appeared from a
    nonzero vector (the caller redoes those trials with :func:`_scaled`).
    """
    n, L, _ = loc_m.shape
    local_ln = np.where(add_local, loc_s, -np.inf)
    top = np.max(np.stack([s for _, s in chain]), axis=0)
    top[:, 0] = np.maximum(top[:, 0], np.max(local_ln, axis=1))
    S = finite_or_zero(top)
    ok = np.ones(n, dtype=bool)
    for _, s in chain:  # the parts must fit one frame
        ok &= ~np.any(np.isfinite(s) & (s - S < -RANGE_LN), axis=1)
    xs = [m * np.exp(s - S)[..., None] for m, s in chain]
    Lf = loc_m * np.exp(local_ln - S[:, :1])[..., None] if add_local.any() else None
    steps = [np.empty((n, L, *x.shape[1:])) for x in xs]
    recs: list[Array] | None = None
    for k in range(L - 1, -1, -1):
        if Lf is not None and add_local[k]:
            xs[0][:, 0] += Lf[:, k]
        for buf, x in zip(steps, xs, strict=True):
            buf[:, k] = x
        out, nxt = kern.step_T(co, k, W, xs)
        if recs is None:
            recs = [np.empty((n, L, v.shape[-1])) for v in out]
        for buf, v in zip(recs, out, strict=True):
            buf[:, k] = v[:, 0]
        if not (ends and k == 0):
            xs = nxt
    assert recs is not None
    # every part, every column, in the order computed (and the chain leaving the sub-block)
    ln_parts, leaving = [], []
    for buf, x, (_, s) in zip(steps, xs, chain, strict=True):
        ln = normalize(buf[:, ::-1])[1]
        ln_parts.append(ln)
        end_m, end_ln = normalize(x)
        if not ends:
            ln = np.concatenate([ln, end_ln[:, None]], axis=1)
        ok &= kept_every_digit(ln, s)
        leaving.append((end_m, end_ln + S))
    # column 0: the state gradient, then each record, step by step
    rows = [normalize(steps[0][:, :, 0])] + [normalize(r) for r in recs]
    joint = 0.5 * np.logaddexp.reduce(np.stack([2.0 * ln[..., 0] for ln in ln_parts]), axis=0)
    seq = np.stack([joint] + [ln[:, ::-1] for _, ln in rows[1:]], axis=-1).reshape(n, -1)
    ok &= kept_every_digit(seq, joint_ln(chain)[:, 0])
    return ([(m, ln + S[:, :1]) for m, ln in rows], leaving), ok


def _scaled(
    kern: Kernel, net: GatedNetwork, fwd: GatedForward, W: Array, c0: int, chain: list[Scaled],
    loc_m: Array, loc_s: Array, add_local: NDArray[np.bool_], ends: bool, rows: Rows = ALL,
) -> Run:
    """The same steps as :func:`_fast`, coefficients in log form, renormalised at every step.

    ``rows``: the trials of ``net`` and ``fwd`` that ``W``, ``chain`` and the local terms hold.
    """
    n, L, _ = loc_m.shape
    recs: list[Scaled] | None = None
    for k in range(L - 1, -1, -1):
        if add_local[k]:
            m, s = chain[0][0].copy(), chain[0][1].copy()
            m[:, 0], s[:, 0] = add(m[:, 0], s[:, 0], loc_m[:, k], loc_s[:, k])
            chain = [(m, s), *chain[1:]]
        out, nxt = kern.step_T_scaled(kern.log_coefficients(net, fwd, c0 + k, rows), W, chain)
        out = [chain[0], *out]
        if recs is None:
            recs = [(np.empty((n, L, m.shape[-1])), np.empty((n, L))) for m, _ in out]
        for (bm, bs), (m, s) in zip(recs, out, strict=True):
            bm[:, k], bs[:, k] = m[:, 0], s[:, 0]
        if not (ends and k == 0):
            chain = nxt
    assert recs is not None
    return recs, chain


def _sub_block(
    kern: Kernel, net: GatedNetwork, fwd: GatedForward, co: Coefs, c0: int, chain: list[Scaled],
    loc_m: Array, loc_s: Array, add_local: NDArray[np.bool_], ends: bool,
) -> Run:
    """One sub-block: every trial on the fast path, then the trials that lost digits redone
    step by step in scaled arithmetic (so that n trials at once give, bit for bit, what each
    trial gives alone)."""
    W = net.weight_hh_l0
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # checked inside
        (recs, leaving), ok = _fast(kern, co, W, chain, loc_m, loc_s, add_local, ends)
    if not ok.all():
        bad = np.flatnonzero(~ok)
        with np.errstate(divide="ignore"):
            slow_recs, slow_leaving = _scaled(
                kern, net, fwd, W[bad], c0, [(m[bad], s[bad]) for m, s in chain],
                loc_m[bad], loc_s[bad], add_local, ends, bad,
            )
        for (fm, fs), (sm, ss) in zip([*recs, *leaving], [*slow_recs, *slow_leaving], strict=True):
            fm[bad], fs[bad] = sm, ss
    return recs, leaving


@dataclass(frozen=True)
class GatedBlock:
    """The backward pass over steps ``b0+1..b1`` (0-based indices ``b0..b1-1``), ``L = b1 - b0``.

    ``rec``: ``[dL/dh_t, *kernel records]`` as ``(m (n, L, w), s (n, L))``: LSTM
    ``[dL/dh, dL/dc, dL/da (4h)]``, GRU ``[dL/dh, dL/dgi (3h), dL/dgh (3h)]``; the last is always
    ``dL/d(W_hh h_{t-1} + b_hh)``, the rows of ``weight_hh_l0``'s gradient. ``do``: dL/do_t,
    ``(n, L, q)`` and ``(n, L)``. ``start_s (n,)``: ``ln ||dL/dh_T||`` in the block with
    ``b1 = T``, else ``None``; ``end``: the chain leaving step 1 (every column, column -1 is
    ``J^T g``) in the block with ``b0 = 0``, else ``None``. Fresh arrays per block.
    """

    b0: int
    b1: int
    rec: list[Scaled]
    do: Scaled
    start_s: Array | None
    end: list[Scaled] | None


def head_local(net: GatedNetwork, fwd: GatedForward, loss: str) -> Local:
    """The local terms ``W_qh^T dL/do_t`` of the network's own output layer and ``loss``."""
    T = net.shape[1]

    def terms(_: object, b0: int, b1: int) -> Terms:
        return local_terms(net.W_qh, fwd.e_m[:, b0:b1], fwd.e_s[:, b0:b1], loss, T, b1)

    return Local(terms, loss == "mean", loss, lambda: head_local(net, fwd, "last"))


def backward_blocks(net: GatedNetwork, fwd: GatedForward, loss: str | Local) -> Iterator[GatedBlock]:
    """The exact backward pass block by block, the last block first.

    The chain runs backwards in sub-blocks of ``SUB`` steps (:func:`_fast`, and :func:`_scaled`
    for the trials that left float64's safe range); coefficients are computed once per block
    of ``BLOCK`` steps. Stops wherever the consumer stops reading. ``loss``: the output layer's
    loss, or the :class:`~bptt_cli.core.elman.Local` terms of a layer in a stack.
    """
    kern = KERNELS[net.cell]
    n, T, h, _, _ = net.shape
    local = head_local(net, fwd, loss) if isinstance(loss, str) else loss
    # Column 0 carries dL/ds_t; with local terms before T (the mean loss), column 1 carries J^T g
    # without them.
    cols = 2 if local.every_step else 1
    chain: list[Scaled] = [(np.zeros((n, cols, h)), np.full((n, cols), -np.inf)) for _ in range(kern.parts)]
    for b0 in range(((T - 1) // BLOCK) * BLOCK, -1, -BLOCK):
        b1 = min(b0 + BLOCK, T)
        do_m, do_s, local_m, local_s = local.terms(None, b0, b1)
        start_s = None
        if b1 == T:  # dL/dh_T = W_qh^T dL/do_T starts every column; the c part starts at 0
            chain[0] = (np.repeat(local_m[:, -1:], cols, axis=1), np.repeat(local_s[:, -1:], cols, axis=1))
            start_s = local_s[:, -1]
        co = kern.coefficients(net, fwd, b0, b1)
        L = b1 - b0
        rec = [(np.empty((n, L, w)), np.empty((n, L))) for w in (h, *kern.widths(h))]
        for c0 in range(b0 + ((b1 - 1 - b0) // SUB) * SUB, b0 - 1, -SUB):
            c1 = min(c0 + SUB, b1)
            sl = slice(c0 - b0, c1 - b0)
            add_local = np.arange(c0, c1) < (T - 1 if local.every_step else 0)
            sub = {k: v[:, sl] for k, v in co.items()}
            rows, chain = _sub_block(kern, net, fwd, sub, c0, chain, local_m[:, sl], local_s[:, sl],
                                     add_local, c0 == 0)
            for (bm, bs), (m, s) in zip(rec, rows, strict=True):
                bm[:, sl], bs[:, sl] = m, s
        yield GatedBlock(b0, b1, rec, (do_m, do_s), start_s, chain if b0 == 0 else None)


def backward(
    net: GatedNetwork, fwd: GatedForward, loss: str | Local, keep: bool = True, input_grads: bool = False
) -> GatedGradients:
    """Exact BPTT gradients of every trial from a forward pass.

    Consumes :func:`backward_blocks`; the parameter sums take one matrix product per block.
    ``keep=False`` drops the per-step mantissas of dL/dh_t and dL/dc_t (the log norms, parameter
    gradients, loss and gain are kept): ``T h`` floats per trial less each. ``loss``: the output
    layer's loss, or the local terms of a layer in a stack (no ``W_qh``, ``b_q``; NaN loss).
    ``input_grads``: also ``dL/dx_t = W_ih^T dL/d(W_ih x_t + b_ih)`` (``dL_dx``, scaled rows), what
    a layer passes to the layer below it.
    """
    local = head_local(net, fwd, loss) if isinstance(loss, str) else loss
    kern = KERNELS[net.cell]
    n, T, h, _, _ = net.shape
    dh_m = np.empty((n, T, h)) if keep else None
    dh_s = np.empty((n, T))
    lstm = net.cell == "lstm"
    dc_m = np.empty((n, T, h)) if keep and lstm else None
    dc_s = np.empty((n, T)) if lstm else None
    da_s, gh_s = np.empty((n, T)), np.empty((n, T))
    sums = ParamSums()
    last_s = np.full(n, -np.inf)
    end: list[Scaled] = []
    dx = (np.empty((n, T, net.shape[3])), np.empty((n, T))) if input_grads else None
    for blk in backward_blocks(net, fwd, local):
        b0, b1, rec = blk.b0, blk.b1, blk.rec
        kern.param_sums(sums, net, fwd, rec, b0, b1)
        if local.loss is not None:
            do_m, do_s = blk.do
            sums.add("W_qh", *block_sum(do_m, fwd.h[:, b0 + 1 : b1 + 1], do_s))
            sums.add("b_q", *vector_sum(do_m, do_s))
        if dx is not None:  # rec[1] is the GRU's dL/dgi, rec[2] the LSTM's dL/da (4h)
            gi_m, gi_s = rec[2] if lstm else rec[1]
            dx[0][:, b0:b1], dx[1][:, b0:b1] = normalize(np.matmul(gi_m, net.weight_ih_l0), gi_s)
        dh_s[:, b0:b1] = rec[0][1]
        if dh_m is not None:
            dh_m[:, b0:b1] = rec[0][0]
        if dc_s is not None:
            dc_s[:, b0:b1] = rec[1][1]
        if dc_m is not None:
            dc_m[:, b0:b1] = rec[1][0]
        da_s[:, b0:b1] = rec[-1][1] if lstm else rec[1][1]
        gh_s[:, b0:b1] = rec[-1][1]
        if blk.start_s is not None:
            last_s = blk.start_s
        if blk.end is not None:
            end = blk.end

    with np.errstate(invalid="ignore"):
        gain = np.where(np.isneginf(last_s), np.nan, joint_ln(end)[:, -1] - last_s)
    lost = loss_ln(fwd.e_s, fwd.l_ln, local.loss) if local.loss is not None else np.full(n, np.nan)
    return GatedGradients(dh_m, dh_s, None, da_s, sums.sums, lost, gain, dx, dc_m, dc_s, gh_s)


def gated_bptt(net: GatedNetwork, loss: str) -> tuple[GatedForward, GatedGradients]:
    """Forward pass and exact BPTT gradients of every trial of an LSTM or GRU network."""
    fwd = KERNELS[net.cell].forward(net)
    return fwd, backward(net, fwd, loss)


# -- step Jacobians and the gate products (for the theory quantities) --------------------------


class StepJacobians:
    """The step Jacobians ``J_t = ds_t/ds_{t-1}``, t = 1..T, of a forward pass.

    ``s_t = (h_t, c_t)`` for the LSTM (``D = 2h``, h first), ``h_t`` for the GRU (``D = h``).
    Plain float64 (every entry is bounded: gates and their derivatives are at most 1, ``|c_t| <= t``).
    """

    def __init__(self, net: GatedNetwork, fwd: GatedForward) -> None:
        self.net, self.fwd = net, fwd
        self.kernel = KERNELS[net.cell]
        self.h = net.shape[2]
        self.dim = self.kernel.parts * self.h

    def coefficients(self, t0: int, t1: int) -> Coefs:
        """Per-step coefficients of steps t0+1..t1 (0-based indices t0..t1-1), ``(n, L, ...)``."""
        return self.kernel.coefficients(self.net, self.fwd, t0, t1)

    def _parts(self, V: Array) -> list[Array]:
        return [V[..., p * self.h : (p + 1) * self.h] for p in range(self.kernel.parts)]

    def _apply(self, t: int, V: Array, how: Callable[[Coefs, int, Array, list[Array]], list[Array]]) -> Array:
        if not 1 <= t <= self.fwd.pre.shape[1]:
            raise ValueError(f"step t must be in 1..{self.fwd.pre.shape[1]}, got {t}")
        co = self.coefficients(t - 1, t)
        return np.concatenate(how(co, 0, self.net.weight_hh_l0, self._parts(V)), axis=-1)

    def apply_T(self, t: int, V: Array) -> Array:
        """``J_t^T v`` for the rows ``v`` of ``V (n, k, D)``: one backward step, ``(n, k, D)``."""
        return self._apply(t, V, lambda co, k, W, xs: self.kernel.step_T(co, k, W, xs)[1])

    def apply_T_with(self, co: Coefs, k: int, V: Array) -> Array:
        """:meth:`apply_T` for step ``t0 + k + 1`` from ``co = coefficients(t0, t1)`` (computed
        once for many steps)."""
        return np.concatenate(self.kernel.step_T(co, k, self.net.weight_hh_l0, self._parts(V))[1], axis=-1)

    def apply_T_scaled(self, t: int, rows: Rows, V: Array) -> list[Scaled]:
        """:meth:`apply_T` for the trials ``rows`` in scaled arithmetic, every coefficient in log
        form, exact however small the gates' derivatives (``sigma'(a)`` below 1e-308): ``J_t^T v``
        part by part (LSTM ``[h, c]``, GRU ``[h]``), each a mantissa ``(b, k, h)`` (rows of unit
        norm) and a log scale ``(b, k)``. ``V (b, k, D)`` holds the rows of those trials.
        """
        chain = [normalize(x) for x in self._parts(V)]
        lc = self.kernel.log_coefficients(self.net, self.fwd, t - 1, rows)
        return self.kernel.step_T_scaled(lc, self.net.weight_hh_l0[rows], chain)[1]

    def apply(self, t: int, V: Array) -> Array:
        """``J_t v`` for the rows ``v`` of ``V (n, k, D)``, ``(n, k, D)``."""
        return self._apply(t, V, self.kernel.step)

    def matrix(self, t: int) -> Array:
        """``J_t`` as ``(n, D, D)`` matrices (for small h)."""
        n = self.fwd.pre.shape[0]
        eye = np.broadcast_to(np.eye(self.dim), (n, self.dim, self.dim))
        return self.apply_T(t, np.ascontiguousarray(eye))  # row i of J is (J^T e_i)^T


def gate_product_log10(net: GatedNetwork, fwd: GatedForward) -> Array:
    """``log10 prod_{s=t+1}^{T} f_s`` (LSTM forget gate; GRU: the update gate ``z_s``), median over units.

    ``(n, T)``, index 0 is t = 1 (0 at t = T): the factor by which the carried path (``c`` for
    the LSTM, ``z * h`` for the GRU) scales a gradient from t = T back to t. Summed from t = T
    backwards one block of ``BLOCK`` steps at a time (``O(BLOCK h)`` working memory).
    """
    n, T, h, _, _ = net.shape
    out = np.empty((n, T))
    carry = np.zeros((n, 1, h))  # sum of ln gate_s over the steps after the block
    for b0 in range(((T - 1) // BLOCK) * BLOCK, -1, -BLOCK):
        b1 = min(b0 + BLOCK, T)
        gate = fwd.pre[:, b0:b1, h : 2 * h]  # f (LSTM) and z (GRU) are both the second block
        ln = log_sigmoid(gate)
        if b1 == T:  # the sums after step t: 0 at t = T, then ln g_T, ln g_T + ln g_{T-1}, ...
            after = np.concatenate([np.zeros((n, 1, h)), np.cumsum(ln[:, :0:-1], axis=1)], axis=1)
        else:
            after = np.cumsum(np.concatenate([carry, ln[:, :0:-1]], axis=1), axis=1)
        out[:, b0:b1] = np.median(after[:, ::-1], axis=-1) / LN10
        carry = after[:, -1:] + ln[:, :1]
    return out
