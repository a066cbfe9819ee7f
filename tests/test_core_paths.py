"""The core's two paths: plain-float64 sub-blocks and the step-by-step scaled fallback.

Every sub-block runs fast unless one of its vectors came near float64's limits; then that
trial's sub-block is redone in scaled arithmetic. Forcing every sub-block down the slow path
must give the same numbers (to rounding), and a batch that mixes both paths must give, bit
for bit, what each trial gives alone.
"""

from __future__ import annotations

import numpy as np
import pytest
from adapters import PARAMS, network, random_trial, run

from bptt_cli.core import elman as core

CELLS = ("identity", "tanh", "relu", "sigmoid")


@pytest.mark.parametrize("loss", ["last", "mean"])
@pytest.mark.parametrize("cell", CELLS)
def test_slow_path_agrees_with_fast_path(cell: str, loss: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    net = network([random_trial(rng, 6, 3, 2, 90, gain=1.3) for _ in range(3)])
    fast = run(net, cell, loss)
    monkeypatch.setattr(core, "RANGE_LN", -1.0)  # no norm is ever "in range": all slow
    slow = run(net, cell, loss)
    np.testing.assert_allclose(slow.dL_dh_s, fast.dL_dh_s, rtol=0, atol=1e-11)
    np.testing.assert_allclose(slow.dL_da_s, fast.dL_da_s, rtol=0, atol=1e-11)
    assert fast.dL_dh_m is not None and slow.dL_dh_m is not None
    np.testing.assert_allclose(slow.dL_dh_m, fast.dL_dh_m, rtol=0, atol=1e-11)
    np.testing.assert_allclose(slow.gain_ln, fast.gain_ln, rtol=0, atol=1e-11)
    for name in PARAMS:
        (m_f, s_f), (m_s, s_s) = fast.params[name], slow.params[name]
        dense_f = m_f * np.exp(s_f - s_f).reshape(-1, *(1,) * (m_f.ndim - 1))
        dense_s = m_s * np.exp(s_s - s_f).reshape(-1, *(1,) * (m_s.ndim - 1))
        np.testing.assert_allclose(dense_s, dense_f, rtol=1e-11, atol=1e-13 * np.abs(dense_f).max())


@pytest.mark.parametrize("loss", ["last", "mean"])
@pytest.mark.parametrize("cell", CELLS)
def test_mixed_batch_equals_trials_alone(cell: str, loss: str) -> None:
    """One trial needs the slow path (a W_hh of 1e-200 leaves float64 in two steps), one not."""
    rng = np.random.default_rng(3)
    tiny, normal = random_trial(rng, 5, 3, 2, 70), random_trial(rng, 5, 3, 2, 70)
    tiny[0]["W_hh"] = np.eye(5) * 1e-200
    together = run(network([tiny, normal]), cell, loss)
    for i, trial in enumerate([tiny, normal]):
        alone = run(network([trial]), cell, loss)
        assert np.array_equal(together.dL_dh_s[i], alone.dL_dh_s[0])
        assert np.array_equal(together.gain_ln[i], alone.gain_ln[0], equal_nan=True)
        for name in PARAMS:
            assert np.array_equal(together.params[name][0][i], alone.params[name][0][0])
    # the tiny trial's pure chain J^T g is (1e-200)^69 times phi' factors: finite, not zero
    # (relu may kill every unit at some step: an exact zero there is right)
    if cell != "relu":
        assert np.isfinite(together.gain_ln[0]) and together.gain_ln[0] < -69 * 200 * np.log(10) + 1e3


@pytest.mark.parametrize("checkpoint", [None, 256])
def test_trial_groups_are_assembled_in_order(checkpoint: int | None) -> None:
    """hidden 200: trials run in groups of 3 (their W_hh in cache); the assembled result equals
    each trial run alone, bit for bit, in every field of the forward pass and the gradients."""
    from bptt_cli.core.cells import CELLS as ALL
    from bptt_cli.core.elman import bptt, group_size
    from bptt_cli.core.network import Spec, build_network

    net = build_network(Spec(cell="tanh", loss="mean", T=300, hidden=200, trials=7, seed=5))
    assert 1 < group_size(7, 200) < 7
    fwd, grads = bptt(net, ALL["tanh"], "mean", checkpoint)
    for i in range(7):
        alone = net.replace(**{k: getattr(net, k)[i : i + 1] for k in (*PARAMS, "x", "y")})
        f1, g1 = bptt(alone, ALL["tanh"], "mean", checkpoint)
        assert np.array_equal(fwd.h_s[i], f1.h_s[0])
        assert np.array_equal(grads.dL_dh_s[i], g1.dL_dh_s[0])
        assert np.array_equal(grads.gain_ln[i], g1.gain_ln[0])
        assert np.array_equal(grads.loss_ln[i], g1.loss_ln[0])
        for name in PARAMS:
            assert np.array_equal(grads.params[name][0][i], g1.params[name][0][0]), name
        if checkpoint is None:
            assert fwd.dphi is not None and f1.dphi is not None
            assert np.array_equal(fwd.dphi.w[i], f1.dphi.w[0]) and np.array_equal(fwd.h_m[i], f1.h_m[0])
        else:
            assert fwd.checkpoints is not None and f1.checkpoints is not None
            assert np.array_equal(fwd.checkpoints.m[i], f1.checkpoints.m[0])
