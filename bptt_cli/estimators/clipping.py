"""Global norm clipping of the full gradient: every parameter times ``min(1, theta / ||g||)``,
``||g||^2`` summed over every parameter, in scaled arithmetic (a norm of ``10^500`` clips exactly)."""

from __future__ import annotations

import math

import numpy as np

from bptt_cli.core.network import PARAMS
from bptt_cli.core.scaled import Array, log_sum_exp, normalize


def flat(m: Array, s: Array) -> tuple[Array, Array]:
    """Unit vector and natural-log norm of scaled parameters ``m (*lead, *shape)``, ``s (*lead)``."""
    return normalize(m.reshape(*s.shape, -1), s)


def global_norm_ln(params: dict[str, tuple[Array, Array]]) -> Array:
    """``ln ||g||`` over every parameter together (the clipping norm), ``(n,)``."""
    per = np.stack([flat(*params[name])[1] for name in PARAMS], axis=-1)
    return 0.5 * log_sum_exp(2.0 * per)


def clip_gradients(
    params: dict[str, tuple[Array, Array]], theta: float
) -> tuple[dict[str, tuple[Array, Array]], Array, Array]:
    """Global norm clipping: every parameter times ``min(1, theta / ||g||)``.

    Returns the clipped ``params`` (same shapes), ``ln`` of the scale and ``ln ||g||``, ``(n,)``
    each (a zero gradient has scale 1).
    """
    norm_ln = global_norm_ln(params)
    scale_ln = np.where(np.isneginf(norm_ln), 0.0, np.minimum(0.0, math.log(theta) - norm_ln))
    return {name: (m, s + scale_ln) for name, (m, s) in params.items()}, scale_ln, norm_ln
