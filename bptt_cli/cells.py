"""Elementwise activations ``phi`` of the Elman cell and the natural log of ``|phi'|``.

``log_dphi`` is computed from the pre-activation directly (never as ``1 - tanh(a)^2``),
so a saturated unit's derivative, say ``e^-900``, stays a finite log instead of a
spurious zero. ``-inf`` marks an exact zero derivative (a dead relu unit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .scaled import Array

LN4 = float(np.log(4.0))


@dataclass(frozen=True)
class Cell:
    """An activation: ``phi``, ``log |phi'|`` and its properties.

    ``homogeneous`` cells satisfy ``phi(c a) = c phi(a)`` for ``c > 0`` and their
    derivative depends on the sign of ``a`` only (identity, relu): they are applied to
    mantissas directly, whatever the scale. ``gamma`` is ``sup |phi'|``. ``tiny_linear``
    cells have ``phi(a) = a`` to float64 precision for ``|a| < 1e-9`` (tanh), so that a
    state below float64's range is carried as a mantissa and a scale too.
    """

    name: str
    phi: Callable[[Array], Array]
    log_dphi: Callable[[Array], Array]
    homogeneous: bool
    gamma: float
    tiny_linear: bool = False


    @property
    def linear(self) -> bool:
        return self.name == "identity"


def _identity(a: Array) -> Array:
    return a


def _zeros_like(a: Array) -> Array:
    return np.zeros_like(a)


def _relu(a: Array) -> Array:
    return np.maximum(a, 0.0)


def _log_drelu(a: Array) -> Array:
    # relu'(0) = 0, as in PyTorch
    return np.where(a > 0, 0.0, -np.inf)


def _log_dtanh(a: Array) -> Array:
    # 1 - tanh(a)^2 = 4 e^{-2|a|} / (1 + e^{-2|a|})^2
    x = 2.0 * np.abs(a)
    return LN4 - x - 2.0 * np.log1p(np.exp(-x))


def _sigmoid(a: Array) -> Array:
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def _log_dsigmoid(a: Array) -> Array:
    # s (1 - s) = e^{-|a|} / (1 + e^{-|a|})^2
    x = np.abs(a)
    return -x - 2.0 * np.log1p(np.exp(-x))


CELLS: dict[str, Cell] = {
    "identity": Cell("identity", _identity, _zeros_like, True, 1.0),
    "tanh": Cell("tanh", np.tanh, _log_dtanh, False, 1.0, tiny_linear=True),
    "relu": Cell("relu", _relu, _log_drelu, True, 1.0),
    "sigmoid": Cell("sigmoid", _sigmoid, _log_dsigmoid, False, 0.25),
}
