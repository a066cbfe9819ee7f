"""Alignment of ``dL/dh_t`` with the dominant invariant subspace of ``W_hh^T``.

In the linear case ``dL/dh_t`` contains ``(W_hh^T)^(T-t) dL/dh_T``, and powers of a matrix
applied to a vector turn it towards the leading eigenvector (the chapter's exercise): for a
symmetric ``W_hh`` the tangent of the angle to the leading eigenvector ``v_1`` obeys

    tan theta_k <= tan theta_0 |lambda_2 / lambda_1|^k.

``P`` is the orthogonal projector onto the leading eigenvector of ``W_hh^T`` (a left
eigenvector of ``W_hh``) or, when the leading eigenvalue is one of a complex pair, onto the
real 2-D invariant plane spanned by its real and imaginary parts; ``lambda_2`` is then the
largest eigenvalue outside the pair.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bptt_cli.core.elman import BackwardBlock
from bptt_cli.core.scaled import LN10, Array, pow2_scale

START_SEED = 20130103
INVERSE_ITERATIONS = 2
SHIFT = 1e-10  # relative offset of the inverse-iteration shift from lambda_1


@dataclass(frozen=True)
class Dominant:
    """Dominant invariant subspace of ``W^T`` for ``n`` trials.

    ``basis (n, h, 2)``: orthonormal columns (the second zero when ``dimension`` is 1);
    ``dimension (n,)``: 1 (real ``lambda_1``), 2 (complex pair) or 0 (``rho = 0``: none);
    ``eigenvalue (n,)`` complex ``lambda_1``; ``ratio (n,)``: ``|lambda_2| / |lambda_1|``.
    """

    basis: Array
    dimension: NDArray[np.int64]
    eigenvalue: NDArray[np.complex128]
    ratio: Array

    @property
    def rate(self) -> Array:
        """``ln |lambda_2 / lambda_1|`` per step: how fast the misalignment decays."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(self.ratio)


def _invariant_basis(W: Array, lam: complex) -> Array | None:
    """Orthonormal basis ``(h, d)`` of the invariant subspace of ``W^T (h, h)`` for ``lam``.

    Shifted inverse iteration in real arithmetic: on ``W^T - mu I`` (``d = 1``) for a real
    ``lam``, on ``(W^T - mu I)(W^T - conj(mu) I)`` (``d = 2``, the real plane of the pair)
    for a complex one, ``mu = lam + SHIFT |lam|``: each iteration gains a factor
    ``SHIFT |lam| / gap`` on the other eigenvalues. ``None`` if the shifted matrix is exactly
    singular (the caller falls back to ``numpy.linalg.eig``).
    """
    h = W.shape[-1]
    mu = lam + SHIFT * abs(lam)
    A = W.T - mu.real * np.eye(h)
    d = 1
    if lam.imag != 0:
        A = A @ A + mu.imag**2 * np.eye(h)
        d = 2
    x = np.random.default_rng(START_SEED).standard_normal((h, d))
    try:
        for _ in range(INVERSE_ITERATIONS):
            x, _ = np.linalg.qr(np.linalg.solve(A, x))
    except np.linalg.LinAlgError:
        return None
    return np.asarray(x, dtype=np.float64) if np.all(np.isfinite(x)) else None


def dominant_subspace(W: Array, eigenvalues: NDArray[np.complex128]) -> Dominant:
    """Dominant invariant subspace of every ``W[i]^T``; ``W (n, h, h)``, ``eigenvalues (n, h)``
    sorted by decreasing modulus (as :func:`bptt_cli.theory.spectra.spectrum` gives them).
    """
    n, h, _ = W.shape
    basis = np.zeros((n, h, 2))
    dim = np.zeros(n, dtype=np.int64)
    ratio = np.full(n, np.nan)
    for i in range(n):
        lam = complex(eigenvalues[i, 0])
        if lam == 0:
            continue
        scale = float(pow2_scale(W[i]))  # the same subspace, from entries below 1 (no overflow)
        q = _invariant_basis(W[i] / scale, lam / scale)
        if q is None:
            vals, vecs = np.linalg.eig(W[i].T)
            x = vecs[:, np.argmin(np.abs(vals - lam))]
            q, _ = np.linalg.qr(np.stack([x.real, x.imag], axis=1) if lam.imag != 0 else x.real[:, None])
        d = q.shape[1]
        basis[i, :, :d] = q
        dim[i] = d
        rest = eigenvalues[i, d:]
        ratio[i] = (abs(rest[0]) if rest.size else 0.0) / abs(lam)
    return Dominant(basis, dim, eigenvalues[:, 0].astype(np.complex128), ratio)


def alignment(blocks: Iterable[BackwardBlock], T: int, dominant: Dominant) -> tuple[Array, Array]:
    """``||P g_t|| / ||g_t||`` and ``log10(||(I - P) g_t|| / ||P g_t||)`` (= log10 tan theta_t).

    ``blocks``: the backward pass block by block (:func:`bptt_cli.core.elman.gradient_blocks`), whose
    ``dh_m`` are the unit mantissas of ``g_t`` (zero rows for ``g_t = 0``). Returns two
    ``(n, T)`` arrays; NaN where ``g_t = 0`` or there is no dominant subspace, ``-inf``
    (tangent) where ``g_t`` lies exactly in the subspace, ``+inf`` where it is orthogonal.
    """
    n = dominant.basis.shape[0]
    along, resid, norm = np.empty((n, T)), np.empty((n, T)), np.empty((n, T))
    basis_T = np.swapaxes(dominant.basis, -1, -2)
    for blk in blocks:
        g, b = blk.dh_m, slice(blk.b0, blk.b1)
        c = np.matmul(g, dominant.basis)  # (n, L, 2): coordinates in the subspace
        along[:, b] = np.linalg.norm(c, axis=-1)
        resid[:, b] = np.linalg.norm(g - np.matmul(c, basis_T), axis=-1)
        norm[:, b] = np.linalg.norm(g, axis=-1)
    valid = (norm > 0) & (dominant.dimension > 0)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        proj = np.where(valid, along / np.where(norm > 0, norm, 1.0), np.nan)
        tan = np.where(valid, (np.log(resid) - np.log(along)) / LN10, np.nan)
    return proj, tan
