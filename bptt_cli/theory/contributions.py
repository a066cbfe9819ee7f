"""Each parameter gradient's contribution by step: the norm of its step-t term.

Every parameter gradient of the Elman RNN is a sum over time of one term per step::

    dL/dW_hh = sum_t dL/da_t h_{t-1}^T     dL/dW_hx = sum_t dL/da_t x_t^T     dL/db_h = sum_t dL/da_t
    dL/dW_qh = sum_t dL/do_t h_t^T         dL/db_q  = sum_t dL/do_t

Each term is an outer product ``u v^T`` (or a vector), whose Frobenius norm is ``||u|| ||v||``:
so the per-step norms come from the per-step log scales the backward pass keeps anyway
(``||dL/da_t||``, ``||h_t||``, ``||o_t - y_t||``) without touching a mantissa, also after a
checkpointed forward pass. ``dL/do_t = o_t - y_t`` at ``t = T`` only for the ``last`` loss
(zero before), ``(o_t - y_t) / T`` for the ``mean`` loss.

Everything is log10 of a norm, ``(n, T)`` per parameter, index 0 is ``t = 1``; ``-inf`` for an
exact zero (``h_0 = 0``, the ``last`` loss's output terms before ``T``, dead relu units).
"""

from __future__ import annotations

import numpy as np

from bptt_cli.core.scaled import LN10, Array


def param_terms_log10(
    dL_da_s: Array, h_s: Array, e_s: Array, x: Array, loss: str
) -> dict[str, Array]:
    """log10 Frobenius norm of the step-t term of every parameter gradient.

    Parameters
    ----------
    dL_da_s : (n, T) natural log of ``||dL/da_t||``, t = 1..T.
    h_s : (n, T+1) natural log of ``||h_t||``, t = 0..T (``-inf`` for ``h_0 = 0``).
    e_s : (n, T) natural log of ``||o_t - y_t||``.
    x : (n, T, d) the inputs ``x_t`` (plain floats).
    loss : ``last`` or ``mean``.

    Returns
    -------
    ``{"W_hh", "W_hx", "W_qh", "b_h", "b_q"}`` -> (n, T) log10 norms (the network's order).
    """
    n, T = dL_da_s.shape
    with np.errstate(divide="ignore"):
        x_s = 0.5 * np.log(np.einsum("ntd,ntd->nt", x, x))
    if loss == "mean":
        do_s = e_s - np.log(T)
    else:
        do_s = np.full((n, T), -np.inf)
        do_s[:, -1] = e_s[:, -1]
    terms = {
        "W_hh": dL_da_s + h_s[:, :-1],
        "W_hx": dL_da_s + x_s,
        "W_qh": do_s + h_s[:, 1:],
        "b_h": dL_da_s,
        "b_q": do_s,
    }
    return {name: np.asarray(v / LN10, dtype=np.float64) for name, v in terms.items()}
