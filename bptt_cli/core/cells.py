"""Elementwise activations ``phi`` of the Elman cell and their derivatives ``phi'``.

Derivatives are computed from the pre-activation directly (never as ``1 - tanh(a)^2``, which
loses every digit of a saturated unit). A step's derivatives are carried as ``w e^top``
(:func:`split_dphi`): ``top`` the natural log of the largest ``|phi'|`` over units and ``w``
the ratios, at most 1. They come from ``dphi`` in plain floats (one ``exp``, no logarithm)
unless the largest is below ``DPHI_FLOOR``; then from ``log_dphi``, so that a saturated
step's ``e^-900`` stays a finite log instead of a spurious zero. ``-inf`` (``w = 0``) marks
an exact zero derivative (a dead relu unit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bptt_cli.core.scaled import Array

LN4 = float(np.log(4.0))


@dataclass(frozen=True)
class Cell:
    """An activation: ``phi``, ``phi'`` (as a float and as ``log |phi'|``) and its properties.

    ``homogeneous`` cells satisfy ``phi(c a) = c phi(a)`` for ``c > 0`` and their
    derivative depends on the sign of ``a`` only (identity, relu): they are applied to
    mantissas directly, whatever the scale. ``gamma`` is ``sup |phi'|``. ``tiny_linear``
    cells have ``phi(a) = a`` to float64 precision for ``|a| < 1e-9`` (tanh), so that a
    state below float64's range is carried as a mantissa and a scale too.
    """

    name: str
    phi: Callable[[Array], Array]
    dphi: Callable[[Array], Array]
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


def _ones_like(a: Array) -> Array:
    return np.ones_like(a)


def _relu(a: Array) -> Array:
    return np.maximum(a, 0.0)


def _drelu(a: Array) -> Array:
    return (a > 0).astype(np.float64)


def _log_drelu(a: Array) -> Array:
    # relu'(0) = 0, as in PyTorch
    return np.where(a > 0, 0.0, -np.inf)


def _dtanh(a: Array) -> Array:
    # 1 - tanh(a)^2 = 4 e^{-2|a|} / (1 + e^{-2|a|})^2, to full relative precision
    e = np.exp(-2.0 * np.abs(a))
    return 4.0 * e / (1.0 + e) ** 2


def _log_dtanh(a: Array) -> Array:
    # 1 - tanh(a)^2 = 4 e^{-2|a|} / (1 + e^{-2|a|})^2
    x = 2.0 * np.abs(a)
    return LN4 - x - 2.0 * np.log1p(np.exp(-x))


def _sigmoid(a: Array) -> Array:
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def _dsigmoid(a: Array) -> Array:
    e = np.exp(-np.abs(a))
    return e / (1.0 + e) ** 2


def _log_dsigmoid(a: Array) -> Array:
    # s (1 - s) = e^{-|a|} / (1 + e^{-|a|})^2
    x = np.abs(a)
    return -x - 2.0 * np.log1p(np.exp(-x))


CELLS: dict[str, Cell] = {
    "identity": Cell("identity", _identity, _ones_like, _zeros_like, True, 1.0),
    "tanh": Cell("tanh", np.tanh, _dtanh, _log_dtanh, False, 1.0, tiny_linear=True),
    "relu": Cell("relu", _relu, _drelu, _log_drelu, True, 1.0),
    "sigmoid": Cell("sigmoid", _sigmoid, _dsigmoid, _log_dsigmoid, False, 0.25),
}

DPHI_FLOOR = 1e-15  # a step whose largest |phi'| is below this is split in log form


def split_log_dphi(log_dphi: Array) -> tuple[Array, Array]:
    """``ln |phi'| (..., h)`` as ``(w (..., h), top (...))``: ``w = e^{ln|phi'| - top}``.

    ``top`` is the largest over units, 0 where every unit's derivative is exactly zero.
    """
    top = np.max(log_dphi, axis=-1)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.exp(log_dphi - top[..., None]), top


def split_dphi(cell: Cell, a: Array) -> tuple[Array, Array]:
    """``phi'(a)`` for pre-activations ``a (..., h)`` as ``(w (..., h), top (...))``, ``w e^top``.

    From plain floats where the step's largest derivative is at least ``DPHI_FLOOR`` (any unit
    whose derivative underflows is then more than 293 orders of magnitude below it), or where
    every unit is exactly dead (relu); else from ``log_dphi``. For a homogeneous cell ``a`` may
    be the mantissa of the pre-activation or of ``h_t``: the derivative depends on signs only.
    """
    d = cell.dphi(a)
    top = np.max(d, axis=-1)
    exact = (top >= DPHI_FLOOR) | ((top == 0) & cell.homogeneous)
    top = np.where(top > 0, top, 1.0)
    w = d / top[..., None]
    top = np.log(top)
    if not exact.all():
        w[~exact], top[~exact] = split_log_dphi(cell.log_dphi(a[~exact]))
    return w, top
