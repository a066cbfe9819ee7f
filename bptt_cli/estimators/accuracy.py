"""An estimate measured against the full gradient: relative error, cosine, bias and variance over draws,
in scaled arithmetic (natural logs), accumulated batch by batch."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bptt_cli.core.scaled import Array, add, finite_or_zero, log_sum_exp, log_weights, normalize
from bptt_cli.estimators.clipping import flat


@dataclass(frozen=True)
class Accuracy:
    """One parameter's estimate against full BPTT, per trial ``(n,)``, natural logs.

    ``relative_error_ln``: ln of the mean over draws of ``||g_hat - g|| / ||g||``;
    ``norm_ratio_ln``: ln of the mean of ``||g_hat|| / ||g||``; ``cosine``: mean cosine;
    ``relative_bias_ln``: ``ln ||mean g_hat - g|| / ||g||``; ``relative_variance_ln``:
    ``ln mean ||g_hat - g||^2 / ||g||^2``; ``relative_spread_ln``:
    ``ln mean ||g_hat - mean g_hat||^2 / ||g||^2`` (the draws' variance about their mean).
    """

    relative_error_ln: Array
    norm_ratio_ln: Array
    cosine: Array
    relative_bias_ln: Array
    relative_variance_ln: Array
    relative_spread_ln: Array


class Agreement:
    """Accumulates one parameter's accuracy over batches of draws (Chan's pairwise variance)."""

    def __init__(self, full: tuple[Array, Array]) -> None:
        self.u, self.ln_g = flat(*full)
        self.count = 0
        self.rel: list[Array] = []
        self.ratio: list[Array] = []
        self.cos: list[Array] = []
        self.mean: tuple[Array, Array] | None = None
        self.m2_ln = np.full(self.ln_g.shape, -np.inf)

    def add(self, hat: tuple[Array, Array]) -> None:
        """Draws ``hat = (m (n, C, *shape), s (n, C))``."""
        u, ln_g = self.u[:, None], self.ln_g[:, None]
        v, ln_h = flat(*hat)
        C = ln_h.shape[1]
        diff_ln = add(v, ln_h, -u, ln_g)[1]
        with np.errstate(invalid="ignore"):
            self.rel.append(diff_ln - ln_g)
            self.ratio.append(ln_h - ln_g)
        undefined = np.isneginf(ln_h) | np.isneginf(ln_g)
        self.cos.append(np.where(undefined, np.nan, np.einsum("nck,nck->nc", v, np.broadcast_to(u, v.shape))))
        w, top = log_weights(ln_h)
        with np.errstate(divide="ignore"):
            mean_m, mean_s = normalize(np.einsum("nc,nck->nk", w, v), finite_or_zero(top) - math.log(C))
        mean_s = np.where(np.isneginf(top), -np.inf, mean_s)
        m2_ln = log_sum_exp(2.0 * add(v, ln_h, -mean_m[:, None], mean_s[:, None])[1])
        if self.mean is None:
            self.mean, self.m2_ln, self.count = (mean_m, mean_s), m2_ln, C
            return
        na, nb = self.count, C
        am, as_ = self.mean
        _, delta_ln = add(mean_m, mean_s, -am, as_)
        cross_ln = 2.0 * delta_ln + math.log(na * nb / (na + nb))
        self.m2_ln = log_sum_exp(np.stack([self.m2_ln, m2_ln, cross_ln], axis=-1))
        self.mean = add(am, as_ + math.log(na / (na + nb)), mean_m, mean_s + math.log(nb / (na + nb)))
        self.count = na + nb

    def result(self) -> Accuracy:
        assert self.mean is not None
        R = math.log(self.count)
        rel, ratio, cos = (np.concatenate(a, axis=1) for a in (self.rel, self.ratio, self.cos))
        defined = ~np.isnan(cos)
        n_def = np.sum(defined, axis=1)
        cos_sum = np.sum(np.where(defined, cos, 0.0), axis=1)
        cos_mean = np.where(n_def > 0, cos_sum / np.maximum(n_def, 1), np.nan)
        _, bias_ln = add(*self.mean, -self.u, self.ln_g)
        with np.errstate(invalid="ignore"):
            return Accuracy(
                relative_error_ln=log_sum_exp(rel) - R,
                norm_ratio_ln=log_sum_exp(ratio) - R,
                cosine=cos_mean,
                relative_bias_ln=bias_ln - self.ln_g,
                relative_variance_ln=log_sum_exp(2.0 * rel) - R,
                relative_spread_ln=self.m2_ln - R - 2.0 * self.ln_g,
            )


def exact(full: tuple[Array, Array]) -> Accuracy:
    """The accuracy of an estimate equal to ``full``: zero error, ratio and cosine 1 (NaN if it is 0)."""
    ln_g = flat(*full)[1]
    zero = np.where(np.isneginf(ln_g), np.nan, -np.inf)
    return Accuracy(zero, np.where(np.isneginf(ln_g), np.nan, 0.0), np.where(np.isneginf(ln_g), np.nan, 1.0),
                    zero, zero, zero)
