"""Random matrices and data: each ensemble against its defining law (fixed seeds, tolerances of
about 5 standard errors), the exact rescalings, and the documented draws of W_hx, W_qh, b, x, y.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bptt_cli.core.network import Spec, build_network


def draw(**kw: object) -> np.ndarray:
    """W_hh of every trial of Spec(**kw), ``(n, h, h)``."""
    return build_network(Spec(T=1, **kw)).W_hh  # type: ignore[arg-type]


def test_gaussian_entries_and_circular_law() -> None:
    h, gain = 400, 1.7
    W = draw(hidden=h, ensemble="gaussian", gain=gain, seed=1)[0]
    se = 1.0 / math.sqrt(W.size)
    assert np.mean(W) == pytest.approx(0.0, abs=5 * se * gain / math.sqrt(h))
    assert np.std(W) * math.sqrt(h) / gain == pytest.approx(1.0, abs=5 * se * math.sqrt(2))
    rho = np.max(np.abs(np.linalg.eigvals(W)))
    assert rho / gain == pytest.approx(1.0, abs=0.06)  # circular law, finite-h edge


@pytest.mark.parametrize("gain", [1.0, 0.7])
def test_orthogonal_is_haar(gain: float) -> None:
    """Q^T Q = I exactly (times gain^2); Haar: E tr Q = 0 and E (tr Q)^2 = 1 (h >= 2).

    QR of a gaussian matrix without the sign fix is not Haar: its trace has a positive mean.
    """
    n, h = 3000, 6
    W = draw(hidden=h, ensemble="orthogonal", gain=gain, trials=n, seed=2)
    eye = np.broadcast_to(np.eye(h) * gain**2, W.shape)
    np.testing.assert_allclose(np.swapaxes(W, -1, -2) @ W, eye, atol=1e-13)
    tr = np.trace(W, axis1=-2, axis2=-1) / gain
    assert np.mean(tr) == pytest.approx(0.0, abs=5 / math.sqrt(n))
    assert np.mean(tr**2) == pytest.approx(1.0, abs=5 * math.sqrt(2) / math.sqrt(n))
    np.testing.assert_allclose(np.abs(np.linalg.eigvals(W)), gain, atol=1e-12)


def test_symmetric_is_goe_with_semicircle_edge() -> None:
    h, gain = 400, 1.3
    W = draw(hidden=h, ensemble="symmetric", gain=gain, seed=3)[0]
    assert np.array_equal(W, W.T)
    off = W[np.triu_indices(h, k=1)]
    diag = np.diag(W)
    assert np.var(off) * 4 * h / gain**2 == pytest.approx(1.0, abs=5 * math.sqrt(2 / off.size))
    assert np.var(diag) * 2 * h / gain**2 == pytest.approx(1.0, abs=5 * math.sqrt(2 / h))
    ev = np.linalg.eigvalsh(W)
    assert ev[-1] / gain == pytest.approx(1.0, abs=0.05) and ev[0] / gain == pytest.approx(-1.0, abs=0.05)


def test_uniform_is_pytorch_default_times_gain() -> None:
    h, gain = 300, 2.0
    W = draw(hidden=h, ensemble="uniform", gain=gain, seed=4)[0]
    bound = gain / math.sqrt(h)
    assert np.all(np.abs(W) <= bound)
    assert np.max(np.abs(W)) > 0.999 * bound
    assert np.var(W) / (bound**2 / 3) == pytest.approx(1.0, abs=5 * math.sqrt(0.8 / W.size))


def test_identity_ensemble() -> None:
    W = draw(hidden=5, ensemble="identity", gain=0.9)[0]
    np.testing.assert_array_equal(W, 0.9 * np.eye(5))


@pytest.mark.parametrize("ensemble", ["gaussian", "orthogonal", "symmetric", "uniform", "identity"])
def test_radius_and_norm_rescale_exactly(ensemble: str) -> None:
    W = draw(hidden=12, ensemble=ensemble, radius=1.5, trials=3, seed=5)
    np.testing.assert_allclose(np.max(np.abs(np.linalg.eigvals(W)), axis=-1), 1.5, rtol=1e-12)
    W = draw(hidden=12, ensemble=ensemble, norm=0.8, trials=3, seed=5)
    np.testing.assert_allclose(np.linalg.norm(W, 2, axis=(-2, -1)), 0.8, rtol=1e-13)


def test_other_parameters_and_data() -> None:
    """W_hx ~ N(0, 1/d), W_qh ~ N(0, 1/h), b ~ N(0, B^2) (exact zeros for B = 0), x, y ~ N(0, 1)."""
    h, d, q, T, B = 200, 50, 40, 500, 0.3
    net = build_network(Spec(hidden=h, inputs_dim=d, outputs_dim=q, T=T, bias=B, seed=6))
    for arr, var in ((net.W_hx, 1 / d), (net.W_qh, 1 / h), (net.x, 1.0), (net.y, 1.0)):
        assert np.var(arr) / var == pytest.approx(1.0, abs=5 * math.sqrt(2 / arr.size))
        assert np.mean(arr) == pytest.approx(0.0, abs=5 * math.sqrt(var / arr.size))
    assert net.W_hx.shape == (1, h, d) and net.W_qh.shape == (1, q, h)
    assert net.x.shape == (1, T, d) and net.y.shape == (1, T, q)
    b = np.concatenate([net.b_h[0], net.b_q[0]])
    assert np.std(b) / B == pytest.approx(1.0, abs=5 / math.sqrt(2 * b.size))
    zero = build_network(Spec(hidden=4, T=2, bias=0.0))
    assert not np.any(zero.b_h) and not np.any(zero.b_q)


def test_trials_are_independent_draws() -> None:
    W = draw(hidden=6, trials=4, seed=9)
    for i in range(4):
        for j in range(i):
            assert not np.array_equal(W[i], W[j])
