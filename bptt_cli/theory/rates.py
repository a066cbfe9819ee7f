"""Rates at which the gradient's norm changes per step back in time (natural log per step).

- observed: the least-squares slope of ``ln ||g_t||`` against the lag ``T - t``;
- gelfand: ``ln rho(W_hh)`` (Gelfand's formula: ``||W^k||^(1/k) -> rho``);
- spectral-norm bound: ``ln(gamma ||W_hh||_2)`` with ``gamma = sup |phi'|``: every step
  Jacobian ``diag(phi'(a_t)) W_hh`` has norm at most ``gamma ||W_hh||_2``, so a bound below 0
  proves vanishing (Pascanu, Mikolov & Bengio 2013);
- mean field: see :mod:`bptt_cli.theory.meanfield`.

A positive rate means the gradient grows going back in time (explodes), a negative one that
it vanishes.
"""

from __future__ import annotations

import numpy as np

from bptt_cli.core.scaled import Array


def observed_rate(log_norms: Array) -> tuple[Array, Array]:
    """Least-squares slope of ``ln ||g_t||`` against the lag ``k = T - t``, per trial.

    ``log_norms (n, T)``: ``ln ||g_t||`` for t = 1..T (index 0 is t = 1), ``-inf`` for an
    exact zero. The fit runs over the lags ``0..K`` before the first exact zero (all lags
    ``0..T-1`` when there is none). Returns ``rate (n,)`` (NaN when fewer than two lags are
    nonzero) and ``window (n, 2)``: the first and last lag fitted (NaN when no fit).
    """
    n, T = log_norms.shape
    y = log_norms[:, ::-1]  # y[:, k] = ln ||g_{T-k}||
    finite = np.isfinite(y)
    # number of leading finite lags: the window is 0..count-1
    count = np.where(finite.all(axis=1), T, np.argmin(finite, axis=1))
    k = np.arange(T, dtype=np.float64)
    mask = k[None, :] < count[:, None]
    m = np.maximum(count, 1).astype(np.float64)
    y0 = np.where(mask, y - np.where(np.isfinite(y[:, :1]), y[:, :1], 0.0), 0.0)
    k_mean = (m - 1.0) / 2.0
    y_mean = y0.sum(axis=1) / m
    dk = np.where(mask, k[None, :] - k_mean[:, None], 0.0)
    sxx = np.sum(dk * dk, axis=1)
    sxy = np.sum(dk * (y0 - y_mean[:, None]), axis=1)
    ok = count >= 2
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(ok, sxy / np.where(ok, sxx, 1.0), np.nan)
    window = np.stack([np.zeros(n), count - 1.0], axis=1)
    return rate, np.where(ok[:, None], window, np.nan)


def gelfand_rate(spectral_radius: Array) -> Array:
    """``ln rho(W_hh)``, ``(n,)``; ``-inf`` for a nilpotent matrix."""
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(spectral_radius, dtype=np.float64))


def spectral_norm_bound(gamma: float, spectral_norm: Array) -> Array:
    """``ln(gamma ||W_hh||_2)``, ``(n,)``: an upper bound on every step's growth."""
    with np.errstate(divide="ignore"):
        return np.log(gamma * np.asarray(spectral_norm, dtype=np.float64))
