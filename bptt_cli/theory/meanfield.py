"""Mean-field theory of a large random Elman network: the variance fixed point q* and chi_1.

For ``W_hh`` with iid zero-mean entries of variance ``sigma_w^2 / h`` and ``h`` large, each
pre-activation ``a_t,i`` is approximately ``N(0, q_t)`` with

    q_{t+1} = sigma_w^2 E[phi(sqrt(q_t) z)^2] + sigma_b^2 + sigma_u^2,   z ~ N(0, 1)

(``sigma_b^2``: bias variance, ``sigma_u^2``: variance of the input drive ``W_hx x_t``).
On the stationary regime ``q_t = q*``, and one step of backpropagation multiplies the squared
norm of the gradient by

    chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2],

so the gradient's log norm changes by ``1/2 ln chi_1`` per step (Poole et al. 2016;
Schoenholz et al. 2017; Chen, Pennington & Schoenholz 2018 for recurrent networks).

The Gaussian expectations ``E[f(sqrt(q) z)]`` are Gauss quadratures. Plain Gauss-Hermite
(``numpy.polynomial.hermite_e.hermegauss``, 200 nodes) is exact to 1e-12 for ``q <= 2`` but
degrades as ``q`` grows (tanh's poles sit at ``z = i pi / (2 sqrt q)``: the error of
``E[tanh'^2]`` is 3e-3 at ``q = 20``, 2e-2 at ``q = 60``), so the expectations use a composite
10-point Gauss-Legendre rule in ``z`` over ``[-12, 12]`` whose panels are at most 0.5 wide
both in ``z`` and in ``x = sqrt(q) z`` for ``|x| <= 40`` (beyond, tanh and sigmoid are
constant to 1e-34), with a panel boundary at 0 (relu's kink): accurate to about 1e-13 for
every ``q``; the Gauss-Hermite rule checks it in the tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

from bptt_cli.core.cells import Cell
from bptt_cli.core.scaled import Array, pow2_scale

NODES = 200  # Gauss-Hermite nodes (even: relu's kink at 0 falls between nodes)
PANEL_NODES = 10  # Gauss-Legendre nodes per panel of the composite rule
Z_MAX = 12.0  # the composite rule covers |z| <= Z_MAX (the rest of N(0, 1) weighs < 1e-32)
X_MAX = 40.0  # x = sqrt(q) z is resolved in panels of width PANEL over |x| <= X_MAX
PANEL = 0.5
LN_Q_RANGE = (-600.0, 600.0)  # q* is searched on [e^-600, e^600]
BISECTIONS = 80


@cache
def gauss_hermite(nodes: int = NODES) -> tuple[Array, Array]:
    """Gauss-Hermite nodes ``z (m,)`` and weights ``w (m,)``: ``sum_i w_i f(z_i) ~ E[f(z)]``, ``z ~ N(0, 1)``.

    Exact for polynomials of degree < 2m; used where ``f`` is smooth on the scale of ``z``.
    """
    z, w = hermegauss(nodes)
    return z, w / w.sum()


@cache
def _legendre() -> tuple[Array, Array]:
    x, w = np.polynomial.legendre.leggauss(PANEL_NODES)
    return x, w


def composite_rule(q: float) -> tuple[Array, Array]:
    """Nodes ``z (m,)`` and weights ``w (m,)`` with ``sum_i w_i f(sqrt(q) z_i) ~ E[f(sqrt(q) z)]``.

    Panel boundaries: multiples of ``PANEL`` in ``z`` and, for ``|x| <= X_MAX``, in
    ``x = sqrt(q) z``; 0 is always one. At most ``2 (Z_MAX + X_MAX) / PANEL`` panels.
    """
    edges = np.arange(-Z_MAX, Z_MAX + PANEL / 2, PANEL)
    if q > 0:
        root = np.sqrt(q)
        x_edges = np.arange(-X_MAX, X_MAX + PANEL / 2, PANEL) / root
        edges = np.concatenate([edges, x_edges[np.abs(x_edges) < Z_MAX]])
    edges = np.sort(edges)
    edges = edges[np.concatenate(([True], edges[1:] > edges[:-1]))]  # np.unique, without its import cost
    x, w = _legendre()
    mid, half = (edges[1:] + edges[:-1]) / 2, (edges[1:] - edges[:-1]) / 2
    z = (mid[:, None] + half[:, None] * x[None, :]).ravel()
    weight = (half[:, None] * w[None, :]).ravel() * np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
    return z, weight


def _expectation(f: Callable[[Array], Array], q: Array) -> Array:
    """``E[f(sqrt(q_i) z)]``, ``z ~ N(0, 1)``, for every finite ``q_i >= 0`` of ``q (...)``."""
    q = np.asarray(q, dtype=np.float64)
    out = np.empty(q.shape)
    for idx, qi in np.ndenumerate(q):
        z, w = composite_rule(float(qi))
        out[idx] = f(np.sqrt(qi) * z) @ w
    return out


def second_moment(cell: Cell, q: Array) -> Array:
    """``E[phi(sqrt(q) z)^2]``, ``z ~ N(0, 1)``, for finite ``q (...) >= 0``; shape ``(...)``."""
    return _expectation(lambda a: cell.phi(a) ** 2, q)


def derivative_moment(cell: Cell, q: Array) -> Array:
    """``E[phi'(sqrt(q) z)^2]``, ``z ~ N(0, 1)``, for finite ``q (...) >= 0``; shape ``(...)``."""
    return _expectation(lambda a: np.exp(2.0 * cell.log_dphi(a)), q)


def fixed_point(cell: Cell, sigma_w2: Array, offset: Array) -> Array:
    """The stationary pre-activation variance ``q*`` of every trial, ``(n,)``.

    ``q*`` solves ``q = sigma_w2 E[phi(sqrt(q) z)^2] + offset`` (``offset = sigma_b^2 +
    sigma_u^2``). For the four cells ``r(q) = (sigma_w2 E[phi(sqrt(q) z)^2] + offset) / q``
    decreases in ``q``, so the root of ``r(q) = 1`` is unique and is found by bisection on
    ``ln q`` over ``[-600, 600]``. ``0`` where ``r < 1`` everywhere (the zero state is
    stable: no input, small gain); ``inf`` where ``r > 1`` everywhere (identity or relu
    with ``sigma_w2 >= 1`` or ``>= 2``: the variance grows without bound).
    """
    sigma_w2 = np.asarray(sigma_w2, dtype=np.float64)
    offset = np.asarray(offset, dtype=np.float64)

    def excess(ln_q: Array) -> Array:  # ln r(q): decreasing in ln q
        q = np.exp(ln_q)
        with np.errstate(divide="ignore", over="ignore"):  # r = inf is still r > 1
            return np.log(sigma_w2 * second_moment(cell, q) + offset) - ln_q

    lo = np.full(sigma_w2.shape, LN_Q_RANGE[0])
    hi = np.full(sigma_w2.shape, LN_Q_RANGE[1])
    below, above = excess(lo) <= 0, excess(hi) >= 0
    for _ in range(BISECTIONS):
        mid = 0.5 * (lo + hi)
        up = excess(mid) > 0
        lo, hi, before = np.where(up, mid, lo), np.where(up, hi, mid), (lo, hi)
        if np.array_equal(lo, before[0]) and np.array_equal(hi, before[1]):
            break  # the bracket is down to adjacent floats: every further step repeats this one
    q = np.exp(0.5 * (lo + hi))
    return np.where(below, 0.0, np.where(above, np.inf, q))


def chi_1(cell: Cell, sigma_w2: Array, q_star: Array) -> Array:
    """``sigma_w2 E[phi'(sqrt(q*) z)^2]``, ``(n,)``.

    Where ``q* = inf`` (homogeneous cells only) ``phi'`` depends on the sign of its argument
    alone and the moment is taken at ``q = 1``.
    """
    q = np.where(np.isfinite(q_star), q_star, 1.0)
    return np.asarray(sigma_w2, dtype=np.float64) * derivative_moment(cell, q)


@dataclass(frozen=True)
class MeanField:
    """Mean-field prediction for ``n`` trials, each array ``(n,)``.

    ``weight_variance`` is ``sigma_w^2 = ||W_hh||_F^2 / h`` (``gain^2`` on average for the
    gaussian ensemble), ``input_variance`` ``sigma_u^2`` the mean square of ``W_hx x_t`` over
    units and steps, ``bias_variance`` ``sigma_b^2`` the mean square of ``b_h``: the
    network's own statistics, not the nominal ones. ``rate = 1/2 ln chi_1`` per step
    (natural log); ``q_star`` may be ``0`` or ``inf`` (see :func:`fixed_point`). A trial whose
    statistics lie beyond float64's range (entries near 1e154 and more) has NaN ``q_star``,
    ``chi_1`` and ``rate``: the theory's Gaussian moments are not computed there.
    """

    weight_variance: Array
    input_variance: Array
    bias_variance: Array
    q_star: Array
    chi_1: Array

    @property
    def rate(self) -> Array:
        with np.errstate(divide="ignore"):
            return 0.5 * np.log(self.chi_1)


def mean_field(cell: Cell, W_hh: Array, W_hx: Array, b_h: Array, x: Array) -> MeanField:
    """Mean-field fixed point and ``chi_1`` from the network's own statistics.

    ``W_hh (n, h, h)``, ``W_hx (n, h, d)``, ``b_h (n, h)``, ``x (n, T, d)``.
    """
    h = W_hh.shape[-1]
    # each matrix divided by a power of two first (exact), the square of its scale put back
    # last: a statistic is inf only when it really lies beyond float64
    s_hh, s_hx, s_x, s_b = (pow2_scale(A) for A in (W_hh, W_hx, x, b_h[:, None, :]))
    W_hh, W_hx, x = W_hh / s_hh[:, None, None], W_hx / s_hx[:, None, None], x / s_x[:, None, None]
    b_h = b_h / s_b[:, None]
    # mean over t and units of (W_hx x_t)_i^2 = trace(W_hx^T W_hx x^T x) / (h T), in O(d^2 (h + T))
    gram_w = np.matmul(np.swapaxes(W_hx, -1, -2), W_hx)  # (n, d, d)
    gram_x = np.matmul(np.swapaxes(x, -1, -2), x)  # (n, d, d)
    with np.errstate(over="ignore"):
        sigma_w2 = np.einsum("nij,nij->n", W_hh, W_hh) / h * s_hh**2
        sigma_u2 = np.einsum("nij,nij->n", gram_w, gram_x) / (h * x.shape[-2]) * (s_hx * s_x) ** 2
        sigma_b2 = np.mean(b_h * b_h, axis=-1) * s_b**2
        offset = sigma_b2 + sigma_u2
    ok = np.isfinite(sigma_w2) & np.isfinite(offset)
    q = fixed_point(cell, np.where(ok, sigma_w2, 1.0), np.where(ok, offset, 0.0))
    chi = chi_1(cell, np.where(ok, sigma_w2, 1.0), q)
    return MeanField(sigma_w2, sigma_u2, sigma_b2, np.where(ok, q, np.nan), np.where(ok, chi, np.nan))
