"""Random recurrent matrices ``W_hh`` and their rescaling to a spectral radius or norm.

Every ensemble is scaled so that ``gain`` sets the size of the spectrum: the spectral
radius is about ``gain`` for gaussian (circular law), orthogonal (every ``|lambda| = gain``),
symmetric (semicircle on ``[-gain, gain]``) and identity; the uniform ensemble is
PyTorch's default initialisation times ``gain`` (radius about ``gain / sqrt(3)``).
"""

from __future__ import annotations

import numpy as np

from bptt_cli.core.scaled import Array
from bptt_cli.errors import BadInput

ENSEMBLES = ("gaussian", "orthogonal", "symmetric", "uniform", "identity")


def random_W_hh(rng: np.random.Generator, hidden: int, ensemble: str, gain: float) -> Array:
    """Draw one ``(hidden, hidden)`` matrix from ``ensemble``, scaled by ``gain``.

    - gaussian: iid ``N(0, gain^2 / h)``;
    - orthogonal: Haar-distributed (QR of a gaussian matrix with the signs fixed), times gain;
    - symmetric: GOE, off-diagonal variance ``gain^2 / (4h)``, diagonal twice that;
    - uniform: iid ``U(-1/sqrt(h), 1/sqrt(h))`` (PyTorch's nn.RNN default), times gain;
    - identity: ``gain * I``.
    """
    h = hidden
    if ensemble == "gaussian":
        return rng.standard_normal((h, h)) * (gain / np.sqrt(h))
    if ensemble == "orthogonal":
        q, r = np.linalg.qr(rng.standard_normal((h, h)))
        return q * np.where(np.diag(r) < 0, -1.0, 1.0) * gain
    if ensemble == "symmetric":
        a = rng.standard_normal((h, h))
        return (a + a.T) * (gain / np.sqrt(8.0 * h))
    if ensemble == "uniform":
        bound = 1.0 / np.sqrt(h)
        return rng.uniform(-bound, bound, (h, h)) * gain
    if ensemble == "identity":
        return np.eye(h) * gain
    raise BadInput(f"unknown ensemble {ensemble!r} (choose from {', '.join(ENSEMBLES)})")


def spectral_radius(W: Array) -> Array:
    """Largest ``|lambda|`` of ``W``, shape ``(..., h, h) -> (...)``."""
    return np.max(np.abs(np.linalg.eigvals(W)), axis=-1)


def spectral_norm(W: Array) -> Array:
    """Largest singular value of ``W``, shape ``(..., h, h) -> (...)``."""
    return np.asarray(np.linalg.svd(W, compute_uv=False)[..., 0], dtype=np.float64)


def rescale(W: Array, radius: float | None = None, norm: float | None = None) -> Array:
    """Scale ``W`` to an exact spectral ``radius`` or spectral ``norm`` (at most one given)."""
    if radius is None and norm is None:
        return W
    current, target, what = (
        (spectral_radius(W), radius, "spectral radius")
        if radius is not None
        else (spectral_norm(W), float(norm or 0.0), "spectral norm")
    )
    if np.any(current == 0):
        raise BadInput(f"cannot rescale W_hh to {what} {target}: its {what} is 0 (W_hh is nilpotent)")
    return W * (target / current)[..., None, None]
