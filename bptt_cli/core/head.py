"""The output layer and the loss: ``o_t = W_qh h_t + b_q`` and the criterion, in scaled arithmetic.

Criteria (``--criterion``):

- ``mse``: ``l_t = 1/2 ||o_t - y_t||^2``, ``dl_t/do_t = o_t - y_t``;
- ``cross-entropy``: softmax over the q outputs and the negative log-likelihood of an integer
  class ``y_t`` in ``[0, q)``, as ``torch.nn.functional.cross_entropy``:
  ``l_t = logsumexp(o_t) - o_t[y_t]``, ``dl_t/do_t = softmax(o_t) - onehot(y_t)``.

The loss over the sequence is ``l_T`` (``--loss last``) or ``(1/T) sum_t l_t`` (``mean``). The
per-step gradients ``dl_t/do_t`` are carried as unit mantissas and natural-log scales (the
``e_m``, ``e_s`` of a forward pass: for ``mse`` the output error itself), so that the softmax's
smallest probabilities, ``e^-10000`` for logits of size 1e4, stay finite logs instead of zeros:
the gradient of a confident, correct prediction is ``-(1 - p_y) = -sum_{j != y} p_j``, summed
in log form. Logits beyond float64's range (a state of norm 1e300 times ``W_qh``) give
probabilities below ``e^-(1e308)``, whose logs float64 cannot hold: they are reported as 0.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from bptt_cli.core.scaled import Array, add, finite_or_zero, log_weights, normalize
from bptt_cli.errors import BadInput

CRITERIA = ("mse", "cross-entropy")


def finite_input(A: Array, what: str, b0: int) -> Array:
    """``A (n, L, k)``, a quantity of steps ``b0+1..b0+L`` formed from the inputs and weights in
    plain float64, if it is finite. Entries beyond float64's range cannot be carried further
    (for tanh and sigmoid not even ``ln phi'`` would fit): that is bad input, named."""
    finite = np.isfinite(A).all(axis=(0, 2))
    if not finite.all():
        t = b0 + 1 + int(np.argmin(finite))
        raise BadInput(f"{what} overflows float64 at t = {t}: rescale the inputs or the weights")
    return A


def logits(W_qh: Array, b_q: Array, h_m: Array, h_s: Array) -> tuple[Array, Array]:
    """``o_t = W_qh h_t + b_q`` from ``h_t = h_m e^h_s`` ``(n, L, H)``, ``(n, L)``: scaled rows."""
    Wh = np.matmul(h_m, np.swapaxes(W_qh, -1, -2))
    return add(Wh, h_s, *normalize(np.broadcast_to(b_q[:, None, :], Wh.shape)))


def output_grads(
    W_qh: Array, b_q: Array, y: Array, criterion: str, h_m: Array, h_s: Array, b0: int
) -> tuple[Array, Array, Array | None]:
    """``dl_t/do_t`` of steps ``b0+1..b0+L`` as ``(m (n, L, q), s (n, L))``, and ``ln l_t``
    ``(n, L)`` for ``cross-entropy`` (``None`` for ``mse``, whose loss follows from ``s``).

    ``h_m (n, L, H)``, ``h_s (n, L)``: the states feeding the output layer; ``y``: the targets of
    those steps, ``(n, L, q)`` reals (``mse``) or ``(n, L)`` classes (``cross-entropy``).
    """
    if criterion == "mse":
        Wh = np.matmul(h_m, np.swapaxes(W_qh, -1, -2))
        with np.errstate(over="ignore", invalid="ignore"):  # checked
            offset = finite_input(b_q[:, None, :] - y, "b_q - y_t", b0)
        m, s = add(Wh, h_s, *normalize(offset))
        return m, s, None
    return cross_entropy(*logits(W_qh, b_q, h_m, h_s), y)


def _ln_softplus(d: Array) -> Array:
    """``ln ln(1 + e^d)``, accurate for every ``d`` (``d`` itself far below 0, ``ln d`` far above)."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        soft = np.maximum(d, 0.0) + np.log1p(np.exp(-np.abs(d)))
        out = np.log(soft)
        tiny = d < -30.0  # ln(e^d - e^2d/2 + ...) = d + ln(1 - e^d/2): no log of a rounded sum
        return np.where(tiny, d + np.log1p(-0.5 * np.exp(np.minimum(d, 0.0))), out)


def cross_entropy(o_m: Array, o_s: Array, y: Array) -> tuple[Array, Array, Array]:
    """``dl/do = softmax(o) - onehot(y)`` (scaled: ``(n, L, q)``, ``(n, L)``) and ``ln l`` ``(n, L)``
    for logits ``o = o_m e^o_s`` and classes ``y (n, L)``.

    Every probability is taken as a logarithm, ``ln p_j = z_j - logsumexp(z)`` with
    ``z = o - max o``; the target's entry ``p_y - 1 = -sum_{j != y} p_j``, also as a logsumexp.
    """
    n, L, q = o_m.shape
    classes: NDArray[np.intp] = np.asarray(y, dtype=np.intp)
    top = np.max(o_m, axis=-1, keepdims=True)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        # z_j = (m_j - max m) e^s <= 0; a difference beyond float64 is -inf (p_j = 0 to float64's logs)
        gap = top - o_m
        z = -np.where(gap == 0, 0.0, gap * np.exp(o_s)[..., None])
    onehot = np.zeros((n, L, q), dtype=bool)
    np.put_along_axis(onehot, classes[..., None], True, axis=-1)
    lse = np.logaddexp.reduce(z, axis=-1)  # >= 0: the max term is e^0
    others = np.logaddexp.reduce(np.where(onehot, -np.inf, z), axis=-1)  # ln sum_{j != y} e^z_j
    z_y = np.take_along_axis(z, classes[..., None], axis=-1)[..., 0]
    ln_g = np.where(onehot, (others - lse)[..., None], z - lse[..., None])  # ln |dl/do_j|
    sign = np.where(onehot, -1.0, 1.0)
    g_top = np.max(ln_g, axis=-1)
    with np.errstate(invalid="ignore"):
        g_m = sign * np.exp(ln_g - finite_or_zero(g_top)[..., None])
    g_m, g_s = normalize(g_m, finite_or_zero(g_top))
    with np.errstate(invalid="ignore"):
        d = others - z_y  # l = ln(1 + e^d)
    # the target's logit -inf below the others (beyond float64): l = -z_y to float64's precision
    gap_y = np.take_along_axis(gap, classes[..., None], axis=-1)[..., 0]
    with np.errstate(divide="ignore"):
        l_ln = np.where(np.isneginf(z_y), np.log(gap_y) + o_s, _ln_softplus(d))
    return g_m, g_s, l_ln


def output_grad_block(e_m: Array, e_s: Array, loss: str, T: int, b1: int) -> tuple[Array, Array]:
    """``dL/do_t`` for the indices of ``e_m (n, L, q)`` (``dl_t/do_t``), the last of which is ``b1 - 1``."""
    if loss == "mean":
        return e_m, e_s - np.log(T)
    s = np.full_like(e_s, -np.inf)
    m = np.zeros_like(e_m)
    if b1 == T:
        s[:, -1] = e_s[:, -1]
        m[:, -1] = e_m[:, -1]
    return m, s


def local_terms(
    W_qh: Array, e_m: Array, e_s: Array, loss: str, T: int, b1: int
) -> tuple[Array, Array, Array, Array]:
    """``dL/do_t`` and the local terms ``W_qh^T dL/do_t`` of one block ending at index ``b1 - 1``.

    Returns ``(do_m (n, L, q), do_s (n, L), local_m (n, L, H), local_s (n, L))``.
    """
    do_m, do_s = output_grad_block(e_m, e_s, loss, T, b1)
    local_m, local_s = normalize(np.matmul(do_m, W_qh), do_s)
    return do_m, do_s, local_m, local_s


def loss_ln(e_s: Array, l_ln: Array | None, loss: str) -> Array:
    """Natural log of the loss, ``(n,)``, from the per-step ``ln ||dl_t/do_t||`` ``e_s (n, T)``
    (``mse``: ``l_t = 1/2 e^{2 e_s}``) or the per-step ``ln l_t`` ``l_ln (n, T)``."""
    T = e_s.shape[1]
    if l_ln is None:
        if loss == "last":
            return np.log(0.5) + 2.0 * e_s[:, -1]
        w, top = log_weights(2.0 * e_s)
        with np.errstate(divide="ignore"):
            return np.log(0.5 / T) + finite_or_zero(top) + np.log(np.sum(w, axis=-1))
    if loss == "last":
        return np.asarray(l_ln[:, -1])
    w, top = log_weights(l_ln)
    with np.errstate(divide="ignore"):
        return finite_or_zero(top) + np.log(np.sum(w, axis=-1)) - np.log(T)
