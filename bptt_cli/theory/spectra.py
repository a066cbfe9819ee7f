"""Eigen-spectra and singular values of ``W_hh``, stacked over trials."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bptt_cli.core.scaled import Array


@dataclass(frozen=True)
class Spectrum:
    """Spectra of ``n`` matrices ``(n, h, h)``.

    ``eigenvalues (n, h)`` complex, sorted by decreasing modulus; ``singular_values (n, h)``
    decreasing; ``spectral_radius``, ``spectral_norm`` and ``condition_number`` ``(n,)``
    (``inf`` for a singular matrix).
    """

    eigenvalues: NDArray[np.complex128]
    singular_values: Array

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


def spectrum(W_hh: Array) -> Spectrum:
    """Eigenvalues and singular values of every ``W_hh[i]``."""
    eig = np.linalg.eigvals(W_hh).astype(np.complex128)
    order = np.argsort(-np.abs(eig), axis=-1, kind="stable")
    eig = np.take_along_axis(eig, order, axis=-1)
    return Spectrum(eig, np.asarray(np.linalg.svd(W_hh, compute_uv=False), dtype=np.float64))
