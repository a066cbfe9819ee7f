"""Exact backpropagation through time for the Elman cell, in scaled arithmetic.

Forward: ``a_t = W_hx x_t + W_hh h_{t-1} + b_h``, ``h_t = phi(a_t)``, ``o_t = W_qh h_t + b_q``.
Backward, reusing the cached forward values:

    dL/dh_T = W_qh^T dL/do_T
    dL/da_t = diag(phi'(a_t)) dL/dh_t
    dL/dh_t = W_hh^T dL/da_{t+1} + W_qh^T dL/do_t

and the parameter gradients are sums over time, one matrix product per block of ``block``
steps, the blocks summed log-sum-exp style: ``dL/dW_hh = sum_t dL/da_t h_{t-1}^T``,
``dL/dW_hx = sum_t dL/da_t x_t^T``, ``dL/db_h = sum_t dL/da_t``,
``dL/dW_qh = sum_t dL/do_t h_t^T``, ``dL/db_q = sum_t dL/do_t``.

Every stored vector is a unit mantissa and a natural-log scale (see :mod:`bptt_cli.core.scaled`),
so nothing overflows or underflows. The recursions run in sub-blocks of ``SUB`` steps: each
starts from a renormalised vector and runs in plain float64 within a fixed frame ``e^S`` (as
fast as a bare numpy loop); if any vector of the sub-block came near float64's limits (or a
zero appeared from a nonzero vector) the sub-block is redone step by step in fully scaled
arithmetic (log-sum-exp sums, a renormalisation per step). All arrays carry a leading trial
axis ``n``: one Python step advances every trial.

Memory: the stored pass keeps every state (about ``4 T h`` floats per trial). With
``checkpoint_every = K`` (a multiple of ``block``) only ``h_0, h_K, h_2K, ...`` are kept and
each segment of K steps is recomputed during the backward pass. Every matrix product over
time runs on the same absolute blocks of ``block`` steps in both modes, and every step does
the same operations in the same order, so the two modes give the same numbers bit for bit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bptt_cli.core.cells import Cell, split_dphi, split_log_dphi
from bptt_cli.core.head import finite_input, local_terms, loss_ln, output_grads
from bptt_cli.core.network import PARAMS, Network
from bptt_cli.core.powers import Powers, applies, next_rows, powers
from bptt_cli.core.scaled import LN10, Array, add, finite_or_zero, log_weights, normalize, to_float, unit_rows
from bptt_cli.errors import BadInput

BLOCK = 256  # steps per matrix product over time (inputs, outputs, parameter sums)
SUB = 64  # steps between renormalisations on the fast path
POWER_K = 32  # steps per sub-block of the linear cell's block products (bptt_cli.core.powers)
RANGE_LN = 150 * LN10  # a fast sub-block is kept while its norms stay within e^{+-RANGE_LN}
FRAME_LN = 600.0  # frames below e^-FRAME_LN take the slow path (the drive would overflow)
TINY_LN = -20.0 * LN10  # tanh(a) = a to float64 precision for |a| < 1e-20


@dataclass(frozen=True)
class Checkpoints:
    """Every K-th state: ``m (n, C, h)``, ``s (n, C)`` hold h_0, h_K, h_2K, ... (C = ceil(T/K))."""

    every: int
    m: Array
    s: Array


@dataclass(frozen=True)
class Dphi:
    """``|phi'(a_t)|`` of every unit as ``w e^top`` (see :func:`bptt_cli.core.cells.split_dphi`).

    ``w (n, L, h)``: ratios to the step's largest derivative (at most 1; 0 for a dead relu
    unit); ``top (n, L)``: natural log of the largest (0 where every unit is dead).
    """

    w: Array
    top: Array

    @classmethod
    def empty(cls, n: int, L: int, h: int) -> Dphi:
        return cls(np.empty((n, L, h)), np.empty((n, L)))

    def steps(self, i0: int, i1: int) -> Dphi:
        """Steps ``i0..i1-1`` (views)."""
        return Dphi(self.w[:, i0:i1], self.top[:, i0:i1])

    def trials(self, idx: NDArray[np.intp]) -> Dphi:
        """Trials ``idx`` (copies)."""
        return Dphi(self.w[idx], self.top[idx])

    @property
    def log(self) -> Array:
        """``ln |phi'(a_t)|``, ``(n, L, h)`` (``-inf`` for an exact zero)."""
        with np.errstate(divide="ignore"):
            return np.log(self.w) + self.top[..., None]


@dataclass(frozen=True)
class Forward:
    """Cached forward pass of ``n`` trials.

    ``h_m (n, T+1, h)`` and ``h_s (n, T+1)``: h_0..h_T as mantissa and log scale;
    ``dphi``: ``|phi'(a_t)|`` for t = 1..T (``None`` for the identity cell);
    ``e_m (n, T, q)``, ``e_s (n, T)``: ``dl_t/do_t``, the output error ``o_t - y_t`` for ``mse``
    (:mod:`bptt_cli.core.head`); ``l_ln (n, T)``: ``ln l_t`` (``None`` for ``mse``: it follows
    from ``e_s``). With ``checkpoints`` set (memory-efficient mode) the per-t mantissas ``h_m``,
    ``dphi`` and ``e_m`` are ``None``; the per-t log scales ``h_s``, ``e_s`` (and ``l_ln``) are
    always kept.
    """

    h_m: Array | None
    h_s: Array
    dphi: Dphi | None
    e_m: Array | None
    e_s: Array
    checkpoints: Checkpoints | None = None
    block: int = BLOCK
    powers: Powers | None = None  # the linear cell's block products (see bptt_cli.core.powers)
    l_ln: Array | None = None

    @property
    def log_dphi(self) -> Array | None:
        """``ln |phi'(a_t)|``, ``(n, T, h)``, of a stored pass (``None`` for the identity cell)."""
        return None if self.dphi is None else self.dphi.log


@dataclass(frozen=True)
class Gradients:
    """Exact gradients of ``n`` trials, each a mantissa and a natural-log scale.

    ``dL_dh_m (n, T, h)``, ``dL_dh_s (n, T)``: dL/dh_t for t = 1..T (index 0 is t = 1);
    ``dL_da_m``, ``dL_da_s``: dL/da_t likewise; ``params[name] = (m, s)`` with ``m`` of the
    parameter's shape per trial and ``s (n,)``; ``loss_ln (n,)``: ln L;
    ``gain_ln (n,)``: ``ln ||J^T g|| - ln ||g||``, ``g = dL/dh_T``, ``J = dh_T/dh_1``
    (``-inf`` where ``J^T g = 0``, NaN where ``g = 0``).
    In memory-efficient mode (checkpointed forward) ``dL_dh_m`` and ``dL_da_m`` are ``None``;
    the log scales ``dL_dh_s``, ``dL_da_s`` (T floats per trial) are always kept.
    """

    dL_dh_m: Array | None
    dL_dh_s: Array
    dL_da_m: Array | None
    dL_da_s: Array
    params: dict[str, tuple[Array, Array]]
    loss_ln: Array
    gain_ln: Array
    dL_dx: tuple[Array, Array] | None = None  # (m (n, T, d), s (n, T)): dL/dx_t, to the layer below


@dataclass(frozen=True)
class Segment:
    """Forward values of steps ``t0+1..t1`` (0-based indices ``t0..t1-1``), ``L = t1 - t0``.

    ``h_m (n, L+1, h)``, ``h_s (n, L+1)``: h_{t0}..h_{t1}; ``dphi`` (steps ``L``) or ``None``;
    ``e_m (n, L, q)``, ``e_s (n, L)``: output errors. Views: valid until the next segment.
    """

    t0: int
    t1: int
    h_m: Array
    h_s: Array
    dphi: Dphi | None
    e_m: Array
    e_s: Array


Terms = tuple[Array, Array, Array, Array]


@dataclass(frozen=True)
class Local:
    """What reaches ``dL/dh_t`` directly at each step, not through ``h_{t+1}``: the local terms.

    ``W_qh^T dL/do_t`` from the network's own output layer (:func:`head_local`), or, for a layer
    below another in a stack, ``W_ih^T dL/da_t`` of the layer above (:func:`given_local`).
    ``terms(seg, b0, b1)``: ``(do_m (n, L, q), do_s (n, L), local_m (n, L, h), local_s (n, L))`` of
    indices ``b0..b1-1`` (``dL/do_t``, empty without an output layer); ``every_step``: local terms
    before t = T too (the mean loss; a layer below another), else at t = T only; ``loss``: the
    output layer's loss, ``last`` or ``mean`` (``None`` without one: no ``W_qh``, ``b_q``).
    """

    terms: Callable[[Any, int, int], Terms]  # (a Segment, or None for a gated cell's stored pass)
    every_step: bool
    loss: str | None = None
    at_T: Callable[[], Local] | None = None  # the same terms kept at t = T only

    def last(self) -> Local:
        """The local terms at t = T only: what starts the last step's chain ``(dh_T/dh_t)^T g``."""
        if not self.every_step:
            return self
        assert self.at_T is not None
        return self.at_T()


def head_local(net: Network, loss: str) -> Local:
    """The local terms ``W_qh^T dL/do_t`` of the network's own output layer and ``loss``."""
    T = net.shape[1]

    def terms(seg: Segment, b0: int, b1: int) -> Terms:
        rows = slice(b0 - seg.t0, b1 - seg.t0)
        return local_terms(net.W_qh, seg.e_m[:, rows], seg.e_s[:, rows], loss, T, b1)

    return Local(terms, loss == "mean", loss, lambda: head_local(net, "last"))


def given_local(m: Array, s: Array, every_step: bool = True) -> Local:
    """Local terms given for every step: unit rows ``m (n, T, h)`` and their log norms ``s (n, T)``
    (``every_step=False``: only the term at t = T is used)."""
    n, T = s.shape

    def terms(seg: Segment, b0: int, b1: int) -> Terms:
        ls = s[:, b0:b1]
        if not every_step:
            ls = np.where(np.arange(b0, b1) == T - 1, ls, -np.inf)
        return np.zeros((n, b1 - b0, 0)), np.full((n, b1 - b0), -np.inf), m[:, b0:b1], ls

    return Local(terms, every_step, None, lambda: given_local(m, s, False))


def _drive(net: Network, b0: int, b1: int) -> tuple[Array, Array | None]:
    """``W_hx x_t + b_h`` for indices ``b0..b1-1``, ``(n, L, h)``: plain floats (and ``None``), or,
    for scaled inputs (``net.x_s``), unit rows and their log norms ``(n, L)``."""
    if net.x_s is None:
        with np.errstate(over="ignore", invalid="ignore"):  # checked
            U = np.matmul(net.x[:, b0:b1], np.swapaxes(net.W_hx, -1, -2)) + net.b_h[:, None, :]
        return finite_input(U, "the input drive W_hx x_t + b_h", b0), None
    Wx = np.matmul(net.x[:, b0:b1], np.swapaxes(net.W_hx, -1, -2))
    b = np.broadcast_to(net.b_h[:, None, :], Wx.shape)
    return add(Wx, net.x_s[:, b0:b1], *normalize(b))


def kept_every_digit(ln_norm: Array, start: Array) -> NDArray[np.bool_]:
    """Which trials of a fast-path run lost nothing to float64's range, ``(n,)``.

    ``ln_norm (n, L, ...)``: natural-log norms of its vectors in step order, relative to their
    frame; ``start (n, ...)``: the log norm it started from. True when every norm is within
    ``e^{+-RANGE_LN}`` (far from float64's limits, so no component over- or underflowed) or an
    exact zero that did not follow a nonzero vector (a zero that appears from a nonzero vector
    is checked again step by step in scaled arithmetic).
    """
    n = ln_norm.shape[0]
    safe = ((np.abs(ln_norm) <= RANGE_LN) | np.isneginf(ln_norm)).reshape(n, -1).all(axis=1)
    zero = np.isneginf(np.concatenate([np.asarray(start)[:, None], ln_norm], axis=1))
    appeared = (zero[:, 1:] & ~zero[:, :-1]).reshape(n, -1).any(axis=1)
    return np.asarray(safe & ~appeared)


def _step_scaled(
    cell: Cell, W_hh_T: Array, m: Array, s: Array, u_m: Array, u_s: Array
) -> tuple[Array, Array, Array | None]:
    """One forward step in fully scaled arithmetic (the slow path).

    ``h_{t-1} = m e^s`` ``(n, h)``, ``(n,)``; drive ``u_m e^u_s``. Returns ``h_t`` as
    ``(m, s)`` and ``ln |phi'(a_t)|`` (``None`` for the identity cell).
    """
    a_m, a_s = add(np.matmul(m[:, None, :], W_hh_T)[:, 0], s, u_m, u_s)
    if cell.linear:
        return a_m, a_s, None
    if cell.homogeneous:
        return (*normalize(cell.phi(a_m), a_s), cell.log_dphi(a_m))
    a = a_m * np.exp(np.minimum(a_s, 700.0))[:, None]
    h_m, h_s = normalize(cell.phi(a))
    if cell.tiny_linear:  # phi(a) = a below float64's resolution of phi: keep the scale
        tiny = a_s < TINY_LN
        h_m, h_s = np.where(tiny[:, None], a_m, h_m), np.where(tiny, a_s, h_s)
    return h_m, h_s, cell.log_dphi(a)


def _forward_fast(
    cell: Cell, W_hh_T: Array, U: Array, m: Array, s: Array,
    out_m: Array, out_s: Array, out_dphi: Dphi | None, U_s: Array | None = None,
) -> NDArray[np.bool_]:
    """Steps of one sub-block in plain float64 within a fixed frame ``e^S``, then renormalised.

    ``U (n, L, h)`` is the drive; the rows h_{t0+1}.. are written to ``out_m[:, :L]``,
    ``out_s[:, :L]`` and ``|phi'|`` to ``out_dphi``. Homogeneous cells run on the mantissa
    (the drive divided by ``e^S``); bounded cells (tanh, sigmoid) on the state itself.
    A scaled drive (``U`` unit rows, ``U_s (n, L)`` their log norms) is brought into the frame.
    Returns which trials kept every digit; the others' rows are to be overwritten.
    """
    L = U.shape[1]
    tiny = finite_or_zero(s) < -FRAME_LN  # exp(-s) or the state itself would underflow
    if cell.homogeneous:
        S = finite_or_zero(s)
        x = m
        U = U * np.exp(-S)[:, None, None] if U_s is None else U * np.exp(U_s - S[:, None])[..., None]
    else:
        S, x = np.zeros_like(s), to_float(m, s)
        if U_s is not None:  # beyond float64 it overflows: the step by step path then takes it
            U = U * np.exp(U_s)[..., None]
    rows = out_m[:, :L]  # the states are written here, then made unit rows in place
    pre = None if cell.homogeneous else np.empty_like(U)
    buf = rows if pre is None else pre  # a_t is formed in place (no temporaries)
    for k in range(L):
        a = buf[:, k]
        np.matmul(x[:, None, :], W_hh_T, out=a[:, None, :])
        a += U[:, k]
        if pre is None:  # homogeneous: h_t overwrites a_t
            if not cell.linear:
                a[...] = cell.phi(a)
            x = a
        else:
            x = rows[:, k] = cell.phi(a)
    if out_dphi is not None:  # relu: relu'(a) is 1 where h > 0, as where a > 0
        out_dphi.w[:, :L], out_dphi.top[:, :L] = split_dphi(cell, rows if pre is None else pre)
    rows_ln, fake = unit_rows(rows)
    out_s[:, :L] = rows_ln + S[:, None]
    ok = kept_every_digit(rows_ln, s) & ~tiny & ~fake.any(axis=1)
    if pre is not None:
        ok &= np.isfinite(pre).reshape(len(ok), -1).all(axis=1)
    return ok


def _sequential(
    cell: Cell, W_hh_T: Array, U: Array, m: Array, s: Array,
    out_m: Array, out_s: Array, dphi: Dphi | None, U_s: Array | None = None,
) -> None:
    """One sub-block step by step: in plain float64 (:func:`_forward_fast`), and the trials that
    left the safe range again in scaled arithmetic (:func:`_step_scaled`)."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # checked inside
        ok = _forward_fast(cell, W_hh_T, U, m, s, out_m, out_s, dphi, U_s)
    if not ok.all():
        bad = np.flatnonzero(~ok)
        u_m, u_s = normalize(U[bad]) if U_s is None else (U[bad], U_s[bad])
        m, s = m[bad], s[bad]
        for k in range(U.shape[1]):
            m, s, d = _step_scaled(cell, W_hh_T[bad], m, s, u_m[:, k], u_s[:, k])
            out_m[bad, k], out_s[bad, k] = m, s
            if dphi is not None and d is not None:
                dphi.w[bad, k], dphi.top[bad, k] = split_log_dphi(d)


def forward_powers(net: Network, cell: Cell) -> Powers | None:
    """``W_hh^T``'s block products with the inputs ``[x_t, 1]``, where they pay off (linear cell)."""
    n, T, h, d, _ = net.shape
    if net.x_s is not None or not applies(cell.linear, n, T, h, d + 1, POWER_K):
        return None
    C = np.concatenate([np.swapaxes(net.W_hx, -1, -2), net.b_h[:, None, :]], axis=1)
    return powers(np.swapaxes(net.W_hh, -1, -2), C, POWER_K)


def _run(
    net: Network, cell: Cell, t0: int, t1: int, m: Array, s: Array, block: int,
    out_m: Array, out_s: Array, out_dphi: Dphi | None, pw: Powers | None = None,
) -> tuple[Array, Array]:
    """Advance every trial from ``h_{t0} = m e^s`` through indices ``t0..t1-1``.

    Writes h_{t0+1}..h_{t1} into ``out_m[:, :L]``, ``out_s[:, :L]`` and ``|phi'(a)|`` into
    ``out_dphi``; ``t0`` must be a multiple of ``block`` (absolute blocks). Each sub-block of
    ``SUB`` steps starts from the renormalised state and runs step by step
    (:func:`_sequential`). With the linear cell's block products ``pw`` the sub-blocks have
    ``pw.k`` steps, and one that is not the first of its block follows from the one before in
    two matrix products (:func:`bptt_cli.core.powers.next_rows`; trials that lose digits there go
    step by step). Blocks restart from one state, as a checkpointed pass must.
    Returns the last state.
    """
    W_hh_T = np.swapaxes(net.W_hh, -1, -2)
    n = m.shape[0]
    sub = SUB if pw is None else pw.k
    for b0 in range(t0, t1, block):
        b1 = min(b0 + block, t1)
        U, U_s = _drive(net, b0, b1)
        for c0 in range(b0, b1, sub):
            c1 = min(c0 + sub, b1)
            i0, i1 = c0 - t0, c1 - t0
            dphi = None if out_dphi is None else out_dphi.steps(i0, i1)
            todo = np.arange(n)
            if pw is not None and c0 > b0 and c1 - c0 == sub:
                z = net.x[:, c0 - sub + 1 : c0 + sub]  # x of the steps of the 2k-1 inputs
                z = np.concatenate([z, np.ones((*z.shape[:2], 1))], axis=2)
                rows, rows_s, ok = next_rows(pw, out_m[:, i0 - sub : i0], out_s[:, i0 - sub : i0],
                                             z, np.zeros(z.shape[:2]))
                out_m[:, i0:i1], out_s[:, i0:i1] = rows, rows_s
                todo = np.flatnonzero(~ok)
            cols = slice(c0 - b0, c1 - b0)
            if todo.size == n:
                _sequential(cell, W_hh_T, U[:, cols], m, s, out_m[:, i0:i1], out_s[:, i0:i1], dphi,
                            None if U_s is None else U_s[:, cols])
            elif todo.size:
                rows_m, rows_s = np.empty((todo.size, c1 - c0, m.shape[1])), np.empty((todo.size, c1 - c0))
                _sequential(cell, W_hh_T[todo], U[todo, cols], m[todo], s[todo], rows_m, rows_s, None,
                            None if U_s is None else U_s[todo, cols])
                out_m[todo, i0:i1], out_s[todo, i0:i1] = rows_m, rows_s
            m, s = out_m[:, i1 - 1].copy(), out_s[:, i1 - 1].copy()
    return m, s


def _output_error(
    net: Network, h_m: Array, h_s: Array, b0: int, b1: int
) -> tuple[Array, Array, Array | None]:
    """``dl_t/do_t`` (for ``mse`` the output error ``o_t - y_t``) for indices ``b0..b1-1`` from
    ``h_m (n, L, h)`` = h_{b0+1}..h_{b1}, and ``ln l_t`` (``None`` for ``mse``):
    :func:`bptt_cli.core.head.output_grads`."""
    return output_grads(net.W_qh, net.b_q, net.y[:, b0:b1], net.criterion, h_m, h_s, b0)


def _errors(net: Network, h_m: Array, h_s: Array, t0: int, t1: int, block: int,
            e_m: Array | None, e_s: Array, l_ln: Array | None = None) -> None:
    """Fill ``e_m[:, :L]``, ``e_s[:, :L]`` (and ``l_ln[:, :L]``) block by block; ``h_m`` holds
    h_{t0}..h_{t1}."""
    for b0 in range(t0, t1, block):
        b1 = min(b0 + block, t1)
        rows = slice(b0 - t0 + 1, b1 - t0 + 1)
        m, s, ln = _output_error(net, h_m[:, rows], h_s[:, rows], b0, b1)
        if e_m is not None:
            e_m[:, b0 - t0 : b1 - t0] = m
        e_s[:, b0 - t0 : b1 - t0] = s
        if l_ln is not None and ln is not None:
            l_ln[:, b0 - t0 : b1 - t0] = ln


def forward(net: Network, cell: Cell, checkpoint_every: int | None = None, block: int = BLOCK) -> Forward:
    """Run the network forward, caching what the backward pass needs.

    ``checkpoint_every = K`` keeps only every K-th state (K a multiple of ``block``).
    """
    n, T, h, _, q = net.shape
    if block < 1:
        raise BadInput(f"block must be at least 1, got {block}")
    pw = forward_powers(net, cell)
    h_s = np.full((n, T + 1), -np.inf)
    e_s = np.empty((n, T))
    l_ln = None if net.criterion == "mse" else np.empty((n, T))
    m0, s0 = (np.zeros((n, h)), np.full(n, -np.inf)) if net.h0 is None else normalize(net.h0)
    h_s[:, 0] = s0
    if checkpoint_every is None:
        h_m = np.zeros((n, T + 1, h))
        h_m[:, 0] = m0
        dphi = None if cell.linear else Dphi.empty(n, T, h)
        _run(net, cell, 0, T, m0, s0, block, h_m[:, 1:], h_s[:, 1:], dphi, pw)
        e_m = np.empty((n, T, q))
        _errors(net, h_m, h_s, 0, T, block, e_m, e_s, l_ln)
        return Forward(h_m, h_s, dphi, e_m, e_s, None, block, pw, l_ln)
    K = checkpoint_every
    if K < 1 or K % block:
        raise BadInput(f"checkpoint interval must be a positive multiple of {block}, got {K}")
    C = -(-T // K)
    ck_m, ck_s = np.zeros((n, C, h)), np.full((n, C), -np.inf)
    seg_m = np.zeros((n, K + 1, h))
    seg_s = np.full((n, K + 1), -np.inf)
    seg_dphi = None if cell.linear else Dphi.empty(n, K, h)
    m, s = m0, s0
    for c in range(C):
        t0, t1 = c * K, min((c + 1) * K, T)
        ck_m[:, c], ck_s[:, c] = m, s
        seg_m[:, 0], seg_s[:, 0] = m, s
        m, s = _run(net, cell, t0, t1, np.array(m), np.array(s), block, seg_m[:, 1:], seg_s[:, 1:],
                    seg_dphi, pw)
        h_s[:, t0 + 1 : t1 + 1] = seg_s[:, 1 : t1 - t0 + 1]
        _errors(net, seg_m, seg_s, t0, t1, block, None, e_s[:, t0:t1],
                None if l_ln is None else l_ln[:, t0:t1])
    return Forward(None, h_s, None, None, e_s, Checkpoints(K, ck_m, ck_s), block, pw, l_ln)


def segments(net: Network, cell: Cell, fwd: Forward) -> Iterator[Segment]:
    """Forward values segment by segment, from the last segment to the first.

    A stored pass is one segment; a checkpointed pass recomputes each segment of K steps
    from its checkpoint (into buffers reused from one segment to the next).
    """
    n, T, h, _, q = net.shape
    ck = fwd.checkpoints
    if ck is None:
        assert fwd.h_m is not None and fwd.e_m is not None
        yield Segment(0, T, fwd.h_m, fwd.h_s, fwd.dphi, fwd.e_m, fwd.e_s)
        return
    K = ck.every
    seg_m = np.zeros((n, K + 1, h))
    seg_s = np.full((n, K + 1), -np.inf)
    seg_dphi = None if cell.linear else Dphi.empty(n, K, h)
    e_m, e_s = np.empty((n, K, q)), np.empty((n, K))
    for c in range(ck.m.shape[1] - 1, -1, -1):
        t0, t1 = c * K, min((c + 1) * K, T)
        L = t1 - t0
        seg_m[:, 0], seg_s[:, 0] = ck.m[:, c], ck.s[:, c]
        _run(net, cell, t0, t1, np.array(ck.m[:, c]), np.array(ck.s[:, c]), fwd.block,
             seg_m[:, 1:], seg_s[:, 1:], seg_dphi, fwd.powers)
        _errors(net, seg_m, seg_s, t0, t1, fwd.block, e_m, e_s)
        dphi = None if seg_dphi is None else seg_dphi.steps(0, L)
        yield Segment(t0, t1, seg_m[:, : L + 1], seg_s[:, : L + 1], dphi, e_m[:, :L], e_s[:, :L])


def through_phi(dphi: Dphi | None, k: int, m: Array, s: Array) -> tuple[Array, Array]:
    """``diag(phi'(a_t)) v`` at step ``k`` of ``dphi``, for ``v = m e^s``: ``m (n, c, h)``, ``s (n, c)``."""
    if dphi is None:
        return m, s
    return normalize(m * dphi.w[:, None, k], s + dphi.top[:, k, None])


def block_sum(left_m: Array, right: Array, scale: Array) -> tuple[Array, Array]:
    """``sum_t left_t right_t^T`` for terms of log scale ``scale (..., L)``: ``(..., a, b)`` and ``(...)``.

    ``left_m (..., L, a)``, ``right (..., L, b)`` (broadcast over the leading axes); one
    matrix product over ``t``.
    """
    w, top = log_weights(scale)
    return np.matmul(np.swapaxes(left_m * w[..., None], -1, -2), right), top


def vector_sum(m: Array, scale: Array) -> tuple[Array, Array]:
    """``sum_t m_t`` for ``m (..., L, a)`` of log scale ``scale (..., L)``."""
    w, top = log_weights(scale)
    return np.einsum("...t,...ti->...i", w, m), top


class ParamSums:
    """Running sums of scaled terms, one per name, combined log-sum-exp style.

    ``add(name, m, s)`` with ``m (..., *shape)`` and ``s (...)``; the mantissa is not
    renormalised (its entries stay below the number of terms summed).
    """

    def __init__(self) -> None:
        self.sums: dict[str, tuple[Array, Array]] = {}

    def add(self, name: str, m: Array, s: Array) -> None:
        if name not in self.sums:
            self.sums[name] = (m, s)
            return
        am, as_ = self.sums[name]
        top = finite_or_zero(np.maximum(as_, s))
        extra = (1,) * (m.ndim - s.ndim)
        wa = np.exp(as_ - top).reshape(top.shape + extra)
        wb = np.exp(s - top).reshape(top.shape + extra)
        with np.errstate(divide="ignore"):
            self.sums[name] = (am * wa + m * wb, np.where(np.isneginf(np.maximum(as_, s)), -np.inf, top))


Chain = tuple[Array, Array, Array, Array, Array, Array]


def rows_times(x: Array, W: Array) -> Array:
    """``x @ W`` for ``x (n, c, h)``, ``W (n, h, h)``, one row (column of chains) at a time.

    The backward pass carries one or two chains (dL/dh_t, and ``J^T g`` for the mean loss):
    ``c`` products with one row each run at the dgemv rate, while one product with two rows
    took OpenBLAS twice as long as two with one (measured at h = 64 to 256). Each row's result
    is the same whatever the number of rows.
    """
    if x.shape[1] == 1:
        return np.matmul(x, W)
    out = np.empty(x.shape)
    for c in range(x.shape[1]):
        np.matmul(x[:, c : c + 1], W, out=out[:, c : c + 1])
    return out



def _chain_fast(
    W_hh: Array, dphi: Dphi | None, loc_m: Array, loc_s: Array,
    g_m: Array, g_s: Array, add_local: NDArray[np.bool_], ends: bool, G_m: Array, D_m: Array,
    pure: tuple[Array, Array] | None = None,
) -> tuple[Chain, NDArray[np.bool_]]:
    """Backward steps ``k = L-1..0`` of one sub-block in plain float64 within fixed frames.

    ``g_m (n, c, h)``, ``g_s (n, c)``: the chain arriving at the sub-block's last step
    (``W_hh^T dL/da`` from the step above; at t = T the gradient itself); column 0 is
    dL/dh_t and gets the local terms ``loc_m e^loc_s (n, L, h)`` where ``add_local (L,)``.
    Each step's largest ``|phi'|`` is added to the frame, and its ratios ``w`` (at most 1)
    multiply the vector. Returns the rows of dL/dh_t and dL/da_t (column 0) as
    ``(G_m, G_s, D_m, D_s)`` (the mantissas written into the given ``G_m``, ``D_m (n, L, h)``)
    and the chain leaving the sub-block (all columns), or, with ``ends``, the gradient at its
    first step; and which trials kept every digit (the others are to be redone by
    :func:`backward_steps`). With two columns and ``pure = (m (n, L, h), s (n, L))``, the last
    column's rows (the pure chain ``J^T g``) are written there.
    """
    n, L, h = loc_m.shape
    cols = g_m.shape[1]
    if dphi is None:
        top, w = np.zeros((n, L)), None
    else:
        top, w = dphi.top, dphi.w
    C = np.cumsum(top[:, ::-1], axis=1)[:, ::-1] - top  # frame of step k: S + sum_{j>k} top_j
    local_ln = np.where(add_local, loc_s, -np.inf) - C
    S = finite_or_zero(g_s)
    S[:, 0] = finite_or_zero(np.maximum(g_s[:, 0], np.max(local_ln, axis=1)))
    x = g_m * np.exp(g_s - S)[..., None]
    Lf = loc_m * np.exp(local_ln - S[:, :1])[..., None] if add_local.any() else None
    steps = np.empty((n, L, cols, h))  # the chain at each step, every column
    end = np.empty((n, cols, h))  # the chain leaving the sub-block
    scratch = None if w is None else np.empty((n, cols, h))
    steps[:, L - 1] = x
    for k in range(L - 1, -1, -1):  # each step's products are written where they are kept
        x = steps[:, k]
        if Lf is not None and add_local[k]:
            x[:, 0] += Lf[:, k]
        if ends and k == 0:
            end[...] = x
            break
        if scratch is not None and w is not None:
            x = np.multiply(x, w[:, None, k], out=scratch)
        dst = steps[:, k - 1] if k else end
        for c in range(cols):  # one-row products (see rows_times); rows are (W_hh^T v)^T
            np.matmul(x[:, c : c + 1], W_hh, out=dst[:, c : c + 1])
    G_m[...] = steps[:, :, 0]
    G_ln, fake = unit_rows(G_m)
    if w is None:
        D_m[...], D_rel = G_m, np.where(np.isneginf(G_ln), -np.inf, 0.0)
    else:  # diag(w) times the unit rows: norms D_rel relative to ||dL/dh_t||
        np.multiply(G_m, w, out=D_m)
        D_rel, fake_D = unit_rows(D_m)
        fake = fake | fake_D
    end_m = end  # normalised as the rows are (so that T = 1 gives a gain of exactly 0)
    end_ln, fake_end = unit_rows(end_m)
    fake = fake | fake_end.any(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):  # every column of every step, in step order
        ln = 0.5 * np.log(np.einsum("nlci,nlci->nlc", steps[:, ::-1], steps[:, ::-1]))
    if not ends:
        ln = np.concatenate([ln, end_ln[:, None]], axis=1)
    frame = S[:, :1] + C
    end_frame = S + (C[:, :1] if ends else C[:, :1] + top[:, :1])
    chain = (G_m, G_ln + frame, D_m, G_ln + D_rel + frame + top, end_m, end_ln + end_frame)
    ok = kept_every_digit(ln, g_s) & kept_every_digit(D_rel, np.zeros(n)) & ~fake.any(axis=1)
    if cols > 1 and pure is not None:  # the pure chain's rows too (for the block products)
        pure[0][...], pure[1][...] = normalize(steps[:, :, -1], S[:, -1:] + C)
    return chain, ok


def backward_steps(
    W_hh: Array, dphi: Dphi | None, loc_m: Array, loc_s: Array,
    g_m: Array, g_s: Array, add_local: NDArray[np.bool_], ends: bool,
    pure: tuple[Array, Array] | None = None,
) -> Chain:
    """The seed's recursion, one step at a time, in scaled arithmetic: for k = L-1 .. 0,

        dL/dh_t = W_hh^T dL/da_{t+1} + W_qh^T dL/do_t      (the chain arriving, plus the local term)
        dL/da_t = diag(phi'(a_t)) dL/dh_t
        leaving:  W_hh^T dL/da_t

    ``g_m e^g_s`` ``(n, c, h)``, ``(n, c)``: the chain arriving at the sub-block's last step;
    column 0 is dL/dh_t and gets the local terms ``loc_m e^loc_s`` ``(n, L, h)``, ``(n, L)`` where
    ``add_local (L,)``; for the mean loss column 1 carries ``J^T g`` alone (written to ``pure``).
    ``dphi``: ``|phi'(a_t)|`` of the sub-block's steps (``None``: the identity cell). Every vector
    is renormalised at every step, so nothing over- or underflows. Returns dL/dh_t and dL/da_t as
    ``(G_m, G_s, D_m, D_s)`` ``(n, L, h)``, ``(n, L)`` and the chain leaving the sub-block (with
    ``ends``, the gradient at its first step). :func:`_chain_fast` does the same steps in plain
    float64 within a fixed frame, and falls back to this where a vector nears float64's limits.
    """
    n, L, h = loc_m.shape
    G_m, G_s, D_m, D_s = np.empty((n, L, h)), np.empty((n, L)), np.empty((n, L, h)), np.empty((n, L))
    for k in range(L - 1, -1, -1):
        if add_local[k]:  # + W_qh^T dL/do_t
            g_m, g_s = g_m.copy(), g_s.copy()
            g_m[:, 0], g_s[:, 0] = add(g_m[:, 0], g_s[:, 0], loc_m[:, k], loc_s[:, k])
        G_m[:, k], G_s[:, k] = g_m[:, 0], g_s[:, 0]  # dL/dh_t
        if pure is not None:
            pure[0][:, k], pure[1][:, k] = g_m[:, -1], g_s[:, -1]
        d_m, d_s = through_phi(dphi, k, g_m, g_s)  # dL/da_t = diag(phi'(a_t)) dL/dh_t
        D_m[:, k], D_s[:, k] = d_m[:, 0], d_s[:, 0]
        if ends and k == 0:
            break
        g_m, g_s = normalize(rows_times(d_m, W_hh), d_s)  # W_hh^T dL/da_t (rows: (dL/da_t)^T W_hh)
    return G_m, G_s, D_m, D_s, g_m, g_s


@dataclass(frozen=True)
class BackwardBlock:
    """The backward pass over one block of steps ``b0+1..b1`` (0-based indices ``b0..b1-1``).

    ``dh_m``, ``da_m (n, L, h)`` with ``dh_s``, ``da_s (n, L)``: dL/dh_t and dL/da_t;
    ``do_m (n, L, q)``, ``do_s (n, L)``: dL/do_t; ``h_m (n, L+1, h)``, ``h_s (n, L+1)``:
    h_{b0}..h_{b1} (so ``h_m[:, :-1]`` are the h_{t-1} of the block's steps);
    ``first_s (n, c)``: in the block with ``b0 = 0``, ln of the norm of each chain column at
    t = 1 (column -1 is ``J^T g``), else ``None``. Views: valid until the next block.
    """

    b0: int
    b1: int
    dh_m: Array
    dh_s: Array
    da_m: Array
    da_s: Array
    do_m: Array
    do_s: Array
    h_m: Array
    h_s: Array
    first_s: Array | None


def backward_blocks(
    net: Network, fwd: Forward, cell: Cell, loss: str | Local,
    out: tuple[Array | None, Array, Array | None, Array] | None = None,
) -> Iterator[BackwardBlock]:
    """The exact backward pass block by block, the last block first.

    The chain runs backwards in sub-blocks of ``SUB`` steps, each in plain float64 within a
    fixed frame (:func:`_chain_fast`) or, for a trial that left float64's safe range, step by
    step in scaled arithmetic (:func:`backward_steps`). A checkpointed forward pass is
    recomputed segment by segment; the blocks are the same, bit for bit, in both modes.
    ``out = (dh_m, dh_s, da_m, da_s)``, ``(n, T, h)`` and ``(n, T)`` (mantissas may be
    ``None``): the blocks are written there (the blocks' arrays are views of them). ``loss``:
    the output layer's loss (``last``, ``mean``), or the :class:`Local` terms to start from.
    """
    n, T, h, _, _ = net.shape
    block = fwd.block
    local = head_local(net, loss) if isinstance(loss, str) else loss
    # Column 0 carries dL/dh_t; with local terms before T (the mean loss), column 1 carries
    # J^T g without them (for the last loss the two coincide).
    cols = 2 if local.every_step else 1
    g_m, g_s = np.zeros((n, cols, h)), np.full((n, cols), -np.inf)
    pw = backward_powers(net, cell) if local.loss is not None else None
    sub = SUB if pw is None else pw.k
    prev: _Rows | None = None  # the last sub-block done, when it had ``sub`` steps
    for seg in segments(net, cell, fwd):
        t0 = seg.t0
        for b0 in range(t0 + ((seg.t1 - 1 - t0) // block) * block, t0 - 1, -block):
            b1 = min(b0 + block, seg.t1)
            do_m, do_s, local_m, local_s = local.terms(seg, b0, b1)
            if b1 == T:  # dL/dh_T = W_qh^T dL/do_T starts every column
                g_m = np.repeat(local_m[:, -1:], cols, axis=1)
                g_s = np.repeat(local_s[:, -1:], cols, axis=1)
            L = b1 - b0
            rows = [np.empty(shape) if o is None else o[:, b0:b1]
                    for o, shape in zip(out or (None,) * 4, ((n, L, h), (n, L)) * 2, strict=True)]
            for c0 in range(b0 + ((b1 - 1 - b0) // sub) * sub, b0 - 1, -sub):
                c1 = min(c0 + sub, b1)
                sl = slice(c0 - b0, c1 - b0)
                add_local = np.arange(c0, c1) < (T - 1 if local.every_step else 0)
                dphi = None if seg.dphi is None else seg.dphi.steps(c0 - t0, c1 - t0)
                lm, ls = local_m[:, sl], local_s[:, sl]
                pure = None
                if pw is not None and cols > 1:  # the pure chain's rows, for the next block products
                    pure = (np.empty((n, c1 - c0, h)), np.empty((n, c1 - c0)))
                arriving = g_m, g_s
                todo: NDArray[np.intp] | None = None  # trials left to the step-by-step paths (None: all)
                if pw is not None and prev is not None and c1 - c0 == sub:
                    cur = _Rows(rows[0][:, sl], rows[1][:, sl], pure, do_m[:, sl], do_s[:, sl])
                    ok, g_m, g_s = _chain_powers(pw, net.W_hh, prev, cur,
                                                 not local.every_step and c1 + sub - 1 < T, c0 == 0)
                    rows[2][:, sl], rows[3][:, sl] = rows[0][:, sl], rows[1][:, sl]  # identity: D = G
                    todo = np.flatnonzero(~ok)
                if todo is None:
                    g_m, g_s = _chain_sequential(
                        net.W_hh, dphi, lm, ls, *arriving, add_local, c0 == 0, [r[:, sl] for r in rows], pure
                    )
                elif todo.size:
                    shapes = ((todo.size, c1 - c0, h), (todo.size, c1 - c0)) * 2
                    part = [np.empty(shape) for shape in shapes]
                    part_pure = None if pure is None else (np.empty((todo.size, c1 - c0, h)),
                                                           np.empty((todo.size, c1 - c0)))
                    t_m, t_s = _chain_sequential(
                        net.W_hh[todo], None if dphi is None else dphi.trials(todo), lm[todo], ls[todo],
                        arriving[0][todo], arriving[1][todo], add_local, c0 == 0, part, part_pure,
                    )
                    for buf, p_ in zip(rows, part, strict=True):
                        buf[todo, sl] = p_
                    if pure is not None and part_pure is not None:
                        pure[0][todo], pure[1][todo] = part_pure
                    g_m[todo], g_s[todo] = t_m, t_s
                if pw is not None:
                    prev = _Rows(rows[0][:, sl].copy(), rows[1][:, sl].copy(),
                                 None if pure is None else (pure[0].copy(), pure[1].copy()),
                                 do_m[:, sl].copy(), do_s[:, sl].copy()) if c1 - c0 == sub else None
            hs = slice(b0 - t0, b1 - t0 + 1)
            bh_m, bh_s, ba_m, ba_s = rows
            yield BackwardBlock(b0, b1, bh_m, bh_s, ba_m, ba_s, do_m, do_s, seg.h_m[:, hs], seg.h_s[:, hs],
                                g_s if b0 == 0 else None)


@dataclass(frozen=True)
class _Rows:
    """A sub-block of the linear cell's backward pass, for :func:`_chain_powers`.

    ``G_m (n, k, h)``, ``G_s (n, k)``: dL/dh_t (unit rows, log norms) in increasing t;
    ``pure``: the same of the pure chain ``J^T g`` (mean loss), else ``None``; ``do_m``,
    ``do_s``: dL/do_t.
    """

    G_m: Array
    G_s: Array
    pure: tuple[Array, Array] | None
    do_m: Array
    do_s: Array


def backward_powers(net: Network, cell: Cell) -> Powers | None:
    """``W_hh``'s block products with the outputs' gradients, where they pay off (linear cell).

    Row form of the backward recursion: ``dL/dh_t = dL/dh_{t+1} W_hh + dL/do_t W_qh``.
    """
    n, T, h, _, q = net.shape
    if not applies(cell.linear, n, T, h, q, POWER_K):
        return None
    return powers(net.W_hh, net.W_qh, POWER_K)


def _chain_powers(
    pw: Powers, W_hh: Array, prev: _Rows, cur: _Rows, no_inputs: bool, ends: bool
) -> tuple[NDArray[np.bool_], Array, Array]:
    """The linear cell's sub-block ``cur`` from the one above it, ``prev``, in two matrix products.

    Writes ``cur.G_m``, ``cur.G_s`` (and ``cur.pure``); returns which trials kept every digit
    and the chain leaving the sub-block (with ``ends``, the gradient at its first step, every
    column, as :func:`_chain_fast`). ``no_inputs``: every dL/do_t of the window is zero (the
    last loss, away from t = T).
    """
    k = pw.k
    if no_inputs:
        z_m = z_s = None
    else:  # dL/do_t for t = c0 .. c1 + k - 2, last first (processing order)
        z_m = np.concatenate([cur.do_m, prev.do_m[:, : k - 1]], axis=1)[:, ::-1]
        z_s = np.concatenate([cur.do_s, prev.do_s[:, : k - 1]], axis=1)[:, ::-1]
    G_m, G_s, ok = next_rows(pw, prev.G_m[:, ::-1], prev.G_s[:, ::-1], z_m, z_s)
    cur.G_m[...], cur.G_s[...] = G_m[:, ::-1], G_s[:, ::-1]
    first_m, first_s = cur.G_m[:, :1], cur.G_s[:, :1]
    if cur.pure is not None and prev.pure is not None:
        P_m, P_s, ok_pure = next_rows(pw, prev.pure[0][:, ::-1], prev.pure[1][:, ::-1])
        cur.pure[0][...], cur.pure[1][...] = P_m[:, ::-1], P_s[:, ::-1]
        ok &= ok_pure
        first_m = np.concatenate([first_m, cur.pure[0][:, :1]], axis=1)
        first_s = np.concatenate([first_s, cur.pure[1][:, :1]], axis=1)
    if ends:
        return ok, first_m.copy(), first_s.copy()
    g_m, g_s = normalize(rows_times(first_m, W_hh), first_s)  # rows are (W_hh^T dL/da)^T
    return ok, g_m, g_s


def _chain_sequential(
    W_hh: Array, dphi: Dphi | None, loc_m: Array, loc_s: Array, g_m: Array, g_s: Array,
    add_local: NDArray[np.bool_], ends: bool, out: list[Array], pure: tuple[Array, Array] | None,
) -> tuple[Array, Array]:
    """One sub-block step by step (:func:`_chain_fast`, and :func:`backward_steps` for the
    trials that left the safe range): writes ``out = [G_m, G_s, D_m, D_s]`` (and ``pure``),
    returns the chain leaving it."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # checked inside
        chain, ok = _chain_fast(W_hh, dphi, loc_m, loc_s, g_m, g_s, add_local, ends, out[0], out[2], pure)
    if not ok.all():  # redo those trials step by step
        bad = np.flatnonzero(~ok)
        bad_pure = None if pure is None else (pure[0][bad], pure[1][bad])
        slow = backward_steps(W_hh[bad], None if dphi is None else dphi.trials(bad), loc_m[bad],
                             loc_s[bad], g_m[bad], g_s[bad], add_local, ends, bad_pure)
        for full, part in zip(chain, slow, strict=True):
            full[bad] = part
        if pure is not None and bad_pure is not None:
            pure[0][bad], pure[1][bad] = bad_pure
    *parts, g_m, g_s = chain
    for buf, part in zip(out, parts, strict=True):
        if not np.may_share_memory(buf, part):  # the mantissas are written in place
            buf[...] = part
    return g_m, g_s


def backward(
    net: Network, fwd: Forward, cell: Cell, loss: str | Local, input_grads: bool = False,
    params: tuple[str, ...] = PARAMS,
) -> Gradients:
    """Exact BPTT gradients from a forward pass (stored, or checkpointed and recomputed).

    Consumes :func:`backward_blocks`; the parameter sums take one matrix product per block.
    ``loss``: the output layer's loss, or the :class:`Local` terms of a layer in a stack (then
    ``W_qh``, ``b_q`` get no gradient and the loss is NaN). ``input_grads``: also
    ``dL/dx_t = W_hx^T dL/da_t`` (``dL_dx``, scaled rows), what a layer passes to the one below.
    ``params``: the parameter gradients to sum (default all; the theory's second pass for the mean
    loss needs ``W_hh``'s only), each the same numbers whichever others are summed.
    """
    local = head_local(net, loss) if isinstance(loss, str) else loss
    want = set(params)
    n, T, h, _, _ = net.shape
    keep = fwd.checkpoints is None
    dh_m = np.empty((n, T, h)) if keep else None
    da_m = np.empty((n, T, h)) if keep else None
    dh_s, da_s = np.empty((n, T)), np.empty((n, T))
    first_s = np.full(n, -np.inf)
    sums = ParamSums()
    dx = (np.empty((n, T, net.shape[3])), np.empty((n, T))) if input_grads else None
    for blk in backward_blocks(net, fwd, cell, local, (dh_m, dh_s, da_m, da_s)):
        b0, b1 = blk.b0, blk.b1
        if dx is not None:
            dx[0][:, b0:b1], dx[1][:, b0:b1] = normalize(np.matmul(blk.da_m, net.W_hx), blk.da_s)
        hp_m, hp_s, hn_m, hn_s = blk.h_m[:, :-1], blk.h_s[:, :-1], blk.h_m[:, 1:], blk.h_s[:, 1:]
        x_s = blk.da_s if net.x_s is None else blk.da_s + net.x_s[:, b0:b1]
        if "W_hh" in want:
            sums.add("W_hh", *block_sum(blk.da_m, hp_m, blk.da_s + hp_s))
        if "W_hx" in want:
            sums.add("W_hx", *block_sum(blk.da_m, net.x[:, b0:b1], x_s))
        if local.loss is not None and "W_qh" in want:
            sums.add("W_qh", *block_sum(blk.do_m, hn_m, blk.do_s + hn_s))
        if "b_h" in want:
            sums.add("b_h", *vector_sum(blk.da_m, blk.da_s))
        if local.loss is not None and "b_q" in want:
            sums.add("b_q", *vector_sum(blk.do_m, blk.do_s))
        if blk.first_s is not None:
            first_s = blk.first_s[:, -1]  # ln ||J^T g||: the last column at t = 1
    last_s = dh_s[:, -1]  # ln ||g||, as reported (so that T = 1 gives exactly 0)
    with np.errstate(invalid="ignore"):
        gain = np.where(np.isneginf(last_s), np.nan, first_s - last_s)
    lost = loss_ln(fwd.e_s, fwd.l_ln, local.loss) if local.loss is not None else np.full(n, np.nan)
    return Gradients(dh_m, dh_s, da_m, da_s, sums.sums, lost, gain, dx)


def stored_blocks(fwd: Forward, grads: Gradients) -> Iterator[BackwardBlock]:
    """The blocks of :func:`backward_blocks` read back from a stored pass (no recomputation).

    Only the fields kept by :func:`backward` are filled: ``do_m``/``do_s`` are empty
    placeholders and ``first_s`` is ``None``. Needs stored mantissas.
    """
    if fwd.h_m is None or grads.dL_dh_m is None or grads.dL_da_m is None:
        raise ValueError("stored_blocks needs a stored forward and backward pass")
    n, T = grads.dL_dh_s.shape
    empty = np.empty((n, 0))
    for b0 in range(((T - 1) // fwd.block) * fwd.block, -1, -fwd.block):
        b1 = min(b0 + fwd.block, T)
        yield BackwardBlock(
            b0, b1, grads.dL_dh_m[:, b0:b1], grads.dL_dh_s[:, b0:b1], grads.dL_da_m[:, b0:b1],
            grads.dL_da_s[:, b0:b1], empty, empty, fwd.h_m[:, b0 : b1 + 1], fwd.h_s[:, b0 : b1 + 1], None,
        )


def gradient_blocks(
    net: Network, fwd: Forward, cell: Cell, loss: str | Local, grads: Gradients | None = None
) -> Iterator[BackwardBlock]:
    """Blocks of dL/dh_t, dL/da_t and h_{t-1}, the last first: read back from ``grads`` (the same
    loss's gradients) when they were stored, else recomputed by :func:`backward_blocks`.
    """
    if grads is not None and grads.dL_dh_m is not None and fwd.h_m is not None:
        return stored_blocks(fwd, grads)
    return backward_blocks(net, fwd, cell, loss)


CACHE_BYTES = 2**20  # the W_hh of a group of trials run together should stay in cache


def group_size(n: int, h: int) -> int:
    """How many trials run together: one Python step for all of them pays off while their
    ``W_hh`` fit in cache; beyond that each trial's own loop (its ``W_hh`` kept in cache for
    every step) is faster (measured: 32 trials at h = 256 took 2.3x as long batched)."""
    return max(1, min(n, CACHE_BYTES // (8 * h * h)))


def _assemble(parts: Iterator[tuple[slice, Any]], n: int) -> Any:
    """One result for ``n`` trials from results of trial groups (``slice``, part) in order:
    every array's leading axis is the trial axis; nested dataclasses, dicts and tuples are
    assembled field by field, anything else is taken from the first part. Each part is copied
    into its place as it comes, so only one group's arrays exist beside the whole."""
    out: Any = None

    def empty_like(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return np.empty((n, *v.shape[1:]), dtype=v.dtype)
        if isinstance(v, dict):
            return {k: empty_like(x) for k, x in v.items()}
        if isinstance(v, tuple):
            return tuple(empty_like(x) for x in v)
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            fields = {f.name: empty_like(getattr(v, f.name)) for f in dataclasses.fields(v)}
            return dataclasses.replace(v, **fields)
        return v

    def fill(dst: Any, src: Any, g: slice) -> None:
        if isinstance(src, np.ndarray):
            dst[g] = src
        elif isinstance(src, dict):
            for k in src:
                fill(dst[k], src[k], g)
        elif isinstance(src, tuple):
            for d, x in zip(dst, src, strict=True):
                fill(d, x, g)
        elif dataclasses.is_dataclass(src) and not isinstance(src, type):
            for f in dataclasses.fields(src):
                fill(getattr(dst, f.name), getattr(src, f.name), g)

    for g, part in parts:
        if out is None:
            out = empty_like(part)
        fill(out, part, g)
    return out


def bptt(
    net: Network, cell: Cell, loss: str, checkpoint_every: int | None = None, block: int = BLOCK
) -> tuple[Forward, Gradients]:
    """Forward pass and exact BPTT gradients of every trial of ``net``.

    ``checkpoint_every = K`` (a multiple of ``block``) keeps every K-th state only and
    recomputes the rest during the backward pass: same numbers, ``O(h (T/K + K))`` memory.
    Trials run in groups of :func:`group_size` (each trial's numbers are its own whatever
    the grouping).
    """
    n, _, h, _, _ = net.shape
    size = group_size(n, h)
    if size >= n:
        fwd = forward(net, cell, checkpoint_every, block)
        return fwd, backward(net, fwd, cell, loss)

    def groups() -> Iterator[tuple[slice, tuple[Forward, Gradients]]]:
        for i0 in range(0, n, size):
            g = slice(i0, min(i0 + size, n))
            part = net.trials(g)
            fwd = forward(part, cell, checkpoint_every, block)
            yield g, (fwd, backward(part, fwd, cell, loss))

    fwd, grads = _assemble(groups(), n)
    return fwd, grads
