"""Numbers as the tables print them: powers of ten from log10 values (``3.2e+512``), signed log10s,
medians with quartiles over trials, the steps a step table shows, the verdicts' styles."""

from __future__ import annotations

import math

from bptt_cli.analysis.stats import quantiles
from bptt_cli.core.scaled import Array

VERDICT_STYLE = {
    "vanishing": "bold blue",
    "stable": "bold green",
    "exploding": "bold red",
    "undefined": "bold",
}


def pow10(log10: float, digits: int = 3) -> str:
    """``10**log10`` in scientific notation, for any finite ``log10``; ``0`` for ``-inf``."""
    if math.isnan(log10):
        return "-"
    if math.isinf(log10):
        return "0" if log10 < 0 else "inf"
    exponent = math.floor(log10)
    mantissa = 10 ** (log10 - exponent)
    if round(mantissa, digits - 1) >= 10:
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{mantissa:.{digits - 1}f}e{exponent:+d}"


def fmt(x: float, digits: int = 2) -> str:
    """A log10 value, with ``-inf`` (exact zero) as ``-inf`` and NaN as ``-``."""
    if math.isnan(x):
        return "-"
    return f"{x:+.{digits}f}" if math.isfinite(x) else ("-inf" if x < 0 else "+inf")


def over_trials(values: Array) -> str:
    """Median of ``values``, and ``[q1, q3]`` when there are several trials."""
    if values.size == 1:
        return fmt(float(values[0]))
    med, q1, q3 = quantiles(values, (0.5, 0.25, 0.75))
    return f"{fmt(med)} [{fmt(q1)}, {fmt(q3)}]"


def report_steps(T: int) -> list[int]:
    """Steps t = T, T-1, T-2, T-5, T-10, T-20, T-50, ... and 1."""
    lags, k = [0], 1
    while k < T:
        lags += [lag for lag in (k, 2 * k, 5 * k) if lag < T]
        k *= 10
    return sorted({T - lag for lag in lags} | {1}, reverse=True)
