"""Eigen-spectra and singular values of ``W_hh``, stacked over trials."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bptt_cli.core.scaled import Array


@dataclass(frozen=True)
class Spectrum:
    """Spectra of ``n`` matrices ``(n, h, h)``.

    ``eigenvalues (n, h)`` complex, sorted by decreasing modulus; ``listed``: how many of them the
    records list (``--eigenvalues``; ``None``: all); ``singular_values (n, h)`` decreasing;
    ``spectral_radius``, ``spectral_norm`` and ``condition_number`` ``(n,)`` (``inf`` for a
    singular matrix).
    """

    eigenvalues: NDArray[np.complex128]
    singular_values: Array
    listed: int | None = None

    @property
    def spectral_radius(self) -> Array:
        return np.abs(self.eigenvalues[:, 0])

    @property
    def spectral_norm(self) -> Array:
        return self.singular_values[:, 0]

    @property
    def condition_number(self) -> Array:
        with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 (W_hh = 0) is NaN: undefined
            return self.singular_values[:, 0] / self.singular_values[:, -1]

    @property
    def listed_eigenvalues(self) -> NDArray[np.complex128]:
        """The eigenvalues the records list, ``(n, listed)``."""
        return self.eigenvalues if self.listed is None else self.eigenvalues[:, : self.listed]


def eigenvalue_count(choice: str, h: int) -> int | None:
    """How many eigenvalues ``--eigenvalues`` lists for hidden size ``h``: ``None`` for all
    (``all``, or ``K >= h``), 0 for ``none``, else ``K``. ``choice`` as :func:`check_eigenvalues`
    gives it."""
    if choice == "all":
        return None
    if choice == "none":
        return 0
    return int(choice) if int(choice) < h else None


def check_eigenvalues(value: str) -> str:
    """``--eigenvalues`` in its normal spelling (``all``, ``none`` or a count ``K >= 1``), else
    ``ValueError`` with the message."""
    text = str(value).strip().lower()
    if text in ("all", "none"):
        return text
    try:
        k = int(text)
    except ValueError:
        k = 0
    if k < 1:
        raise ValueError(f"--eigenvalues must be all, none or a count K >= 1, got {value!r}")
    return str(k)


def spectrum(W_hh: Array, count: int | None = None) -> Spectrum:
    """Eigenvalues and singular values of every ``W_hh[i]`` (LAPACK: all of them, whatever
    ``count`` says); ``count``: how many eigenvalues the records list (``None``: all).

    Every eigenvalue is computed because the Henrici departure needs them all, and because
    ARPACK's Arnoldi (``scipy.sparse.linalg.eigs``), measured for the few leading ones at
    h = 1024 (docs/speed-2026-12.md), was no faster at equal answers: the eigenvalues of a random
    matrix fill a disk, so Arnoldi finds no gap to converge on (with a Krylov basis of 20 it
    settled on a wrong spectral radius for 5 of 8 gaussian matrices).
    """
    eig = np.linalg.eigvals(W_hh).astype(np.complex128)
    order = np.argsort(-np.abs(eig), axis=-1, kind="stable")
    eig = np.take_along_axis(eig, order, axis=-1)
    return Spectrum(eig, np.asarray(np.linalg.svd(W_hh, compute_uv=False), dtype=np.float64), listed=count)
