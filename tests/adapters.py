"""Glue between the oracles in ``reference.py`` (one trial, plain arrays) and bptt_cli's API.

Only the public API is used: ``Network`` (stacked over trials), ``bptt(net, cell, loss)``
returning mantissas and natural-log scales, and ``CELLS``.
"""

from __future__ import annotations

import numpy as np

from bptt_cli.core.cells import CELLS
from bptt_cli.core.elman import Gradients, bptt
from bptt_cli.core.network import Network

PARAMS = ("W_hh", "W_hx", "W_qh", "b_h", "b_q")
LN10 = float(np.log(10.0))

Trial = tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]  # (params, x, y)


def random_trial(
    rng: np.random.Generator, h: int, d: int, q: int, T: int, gain: float = 1.0, bias: float = 0.5
) -> Trial:
    """A trial drawn like the tool's defaults (moderate numbers, for float64 oracles)."""
    params = {
        "W_hh": rng.standard_normal((h, h)) * gain / np.sqrt(h),
        "W_hx": rng.standard_normal((h, d)) / np.sqrt(d),
        "W_qh": rng.standard_normal((q, h)) / np.sqrt(h),
        "b_h": rng.standard_normal(h) * bias,
        "b_q": rng.standard_normal(q) * bias,
    }
    return params, rng.standard_normal((T, d)), rng.standard_normal((T, q))


def network(trials: list[Trial]) -> Network:
    """Stack trials (same shapes) on a leading trial axis."""
    arrays = {
        name: np.stack([np.asarray(p[name], dtype=np.float64) for p, _, _ in trials]) for name in PARAMS
    }
    arrays["x"] = np.stack([np.asarray(x, dtype=np.float64) for _, x, _ in trials])
    arrays["y"] = np.stack([np.asarray(y, dtype=np.float64) for _, _, y in trials])
    return Network(**arrays)


def dense(m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``m * exp(s)`` as plain floats (``s`` has the leading axes of ``m``)."""
    s = np.asarray(s)
    return m * np.exp(s).reshape(s.shape + (1,) * (m.ndim - s.ndim))


def run(net: Network, cell: str, loss: str, **kw: object) -> Gradients:
    """bptt_cli's gradients of every trial of ``net``."""
    _, grads = bptt(net, CELLS[cell], loss, **kw)  # type: ignore[arg-type]
    return grads


def dL_dh(grads: Gradients) -> np.ndarray:
    """dL/dh_t as floats, ``(n, T, h)``."""
    assert grads.dL_dh_m is not None
    return dense(grads.dL_dh_m, grads.dL_dh_s)


def param_grads(grads: Gradients) -> dict[str, np.ndarray]:
    """Parameter gradients as floats, each ``(n, *shape)``."""
    return {name: dense(*grads.params[name]) for name in PARAMS}
