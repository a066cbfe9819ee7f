"""``bptt spectrum``: the spectrum of ``W_hh`` on its own, beside random-matrix predictions.

Eigenvalues and singular values (:mod:`.spectra`), non-normality (:mod:`.nonnormal`) and the
radius each ensemble predicts for large ``h``:

- gaussian, iid ``N(0, gain^2 / h)``: circular law, eigenvalues uniform on the disk of radius
  ``gain`` (Girko; Tao & Vu for general iid entries);
- uniform, iid with variance ``gain^2 / (3 h)``: circular law, radius ``gain / sqrt(3)``;
- orthogonal: every ``|lambda| = gain``; symmetric (GOE): semicircle on ``[-gain, gain]``;
  identity: ``gain`` exactly.

No prediction (``None``) for a ``W_hh`` from a file or rescaled by ``--radius``/``--norm``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bptt_cli.core.network import Given, Spec, build_network
from bptt_cli.core.scaled import Array
from bptt_cli.core.stack import StackGiven
from bptt_cli.theory.nonnormal import TransientGrowth, henrici, numerical_abscissa, transient_growth
from bptt_cli.theory.spectra import Spectrum, spectrum

LAWS = {
    "gaussian": ("circular law", 1.0),
    "uniform": ("circular law", 1.0 / math.sqrt(3.0)),
    "orthogonal": ("Haar orthogonal: every |lambda| = gain", 1.0),
    "symmetric": ("semicircle law", 1.0),
    "identity": ("gain * I", 1.0),
}


@dataclass(frozen=True)
class SpectrumReport:
    """Spectra of ``n`` matrices and their non-normality.

    ``law``/``predicted_radius``: the ensemble's prediction (``None`` where none applies);
    ``growth``: peak of ``||W^k||_2`` over ``k <= T``.
    """

    spec: Spec
    W_hh: Array
    spectrum: Spectrum
    henrici: Array
    abscissa: Array
    growth: TransientGrowth
    law: str | None
    predicted_radius: float | None
    seeds: list[np.random.SeedSequence]
    layers: tuple[LayerSpectrum, ...] = ()

    @property
    def relative_error(self) -> Array:
        """``measured / predicted - 1`` of the spectral radius, ``(n,)`` (NaN without a prediction)."""
        if self.predicted_radius is None or self.predicted_radius == 0:
            return np.full(self.W_hh.shape[0], np.nan)
        return self.spectrum.spectral_radius / self.predicted_radius - 1.0


@dataclass(frozen=True)
class LayerSpectrum:
    """The spectrum and non-normality of one layer-direction's ``W_hh`` (``n`` trials)."""

    layer: int
    direction: int
    spectrum: Spectrum
    henrici: Array
    abscissa: Array
    growth: TransientGrowth


def _measure(W: Array, T: int) -> tuple[Spectrum, Array, Array, TransientGrowth]:
    sp = spectrum(W)
    return sp, henrici(W, sp.eigenvalues), numerical_abscissa(W), transient_growth(W, T, sp.spectral_norm)


def prediction(spec: Spec, from_file: bool) -> tuple[str | None, float | None]:
    """The law and radius the ensemble predicts, or ``(None, None)``."""
    if from_file or spec.radius is not None or spec.norm is not None:
        return None, None
    law, factor = LAWS[spec.ensemble]
    return law, spec.gain * factor


def spectrum_report(spec: Spec, given: Given | StackGiven | None = None) -> SpectrumReport:
    """Draw (or take) ``W_hh`` for every trial of ``spec`` and measure its spectrum.

    Only ``W_hh`` is used; ``spec.T`` is the horizon of the peak transient growth. The
    matrices are those ``bptt analyze`` draws for the same seed, sizes and ensemble. A stacked or
    bidirectional ``spec`` measures every layer-direction's ``W_hh`` (``layers``); the top-level
    quantities are layer 0's, forward.
    """
    if spec.stacked:
        from bptt_cli.core.stack import build_stack

        assert given is None or isinstance(given, StackGiven)
        stack = build_stack(Spec(**{**spec.__dict__, "T": 1}), given)
        layers = tuple(LayerSpectrum(k, d, *_measure(p["weight_hh"], spec.T))
                       for k, row in enumerate(stack.layers) for d, p in enumerate(row))
        law, radius = prediction(spec, given is not None and bool(given.params))
        top = layers[0]
        return SpectrumReport(spec, stack.layers[0][0]["weight_hh"], top.spectrum, top.henrici, top.abscissa,
                              top.growth, law, radius, stack.seeds, layers)
    assert given is None or isinstance(given, Given)
    W_hh = given.W_hh if given is not None else None
    net = build_network(Spec(**{**spec.__dict__, "T": 1}), Given(W_hh=W_hh))
    W = net.W_hh
    sp, hen, absc, growth = _measure(W, spec.T)
    law, radius = prediction(spec, W_hh is not None)
    layer = LayerSpectrum(0, 0, sp, hen, absc, growth)
    return SpectrumReport(spec, W, sp, hen, absc, growth, law, radius, net.seeds, (layer,))
