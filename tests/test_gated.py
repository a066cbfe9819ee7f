"""The LSTM and GRU cores against independent oracles (tests/gated_reference.py).

Finite differences for every gradient, an mpmath chain rule where the gradient is far below
float64, explicit products of step Jacobians for the gain, and the batch of trials against
trials one by one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import gated_reference as ref
import numpy as np
import pytest

from bptt_cli.analysis.analyze import analyze
from bptt_cli.analysis.result import GatedAnalysis
from bptt_cli.core import gated
from bptt_cli.core.gated import StepJacobians, gate_product_log10, gated_bptt
from bptt_cli.core.network import GATED_PARAMS as PARAMS
from bptt_cli.core.network import (
    GatedGiven,
    GatedNetwork,
    GatedSpec,
    Spec,
    build_network,
)
from bptt_cli.core.scaled import LN10, to_float
from bptt_cli.errors import BadInput
from bptt_cli.io.records import summary

CELLS = ("lstm", "gru")
LOSSES = ("last", "mean")


def random_trial(
    rng: np.random.Generator, cell: str, h: int, d: int, q: int, T: int, scale: float = 1.0
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    G = 4 if cell == "lstm" else 3
    P = {
        "weight_ih_l0": rng.standard_normal((G * h, d)) * scale,
        "weight_hh_l0": rng.standard_normal((G * h, h)) * scale,
        "bias_ih_l0": rng.standard_normal(G * h) * 0.5,
        "bias_hh_l0": rng.standard_normal(G * h) * 0.5,
        "W_qh": rng.standard_normal((q, h)),
        "b_q": rng.standard_normal(q) * 0.5,
    }
    return P, rng.standard_normal((T, d)), rng.standard_normal((T, q))


def network(cell: str, P: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> GatedNetwork:
    return GatedNetwork(cell, *(P[k][None] for k in PARAMS), x[None], y[None])


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("loss", LOSSES)
def test_every_gradient_against_finite_differences(cell: str, loss: str) -> None:
    rng = np.random.default_rng(1 + CELLS.index(cell) + 2 * LOSSES.index(loss))
    P, x, y = random_trial(rng, cell, h=3, d=2, q=2, T=7)
    fd = ref.fd_all(cell, P, x, y, loss)
    _, g = gated_bptt(network(cell, P, x, y), loss)
    for name in PARAMS:
        mine = to_float(g.params[name][0][0], g.params[name][1][0])
        assert relative(mine, fd[name]) < 1e-7, name
    dh = to_float(g.dL_dh_m[0], g.dL_dh_s[0])
    assert relative(dh, fd["h"]) < 1e-7
    if cell == "lstm":
        assert g.dL_dc_m is not None and g.dL_dc_s is not None
        assert relative(to_float(g.dL_dc_m[0], g.dL_dc_s[0]), fd["c"]) < 1e-7
    else:
        assert g.dL_dc_m is None and g.dL_dc_s is None
    expected_loss = ref.loss(cell, P, x, y, loss)
    assert abs(g.loss_ln[0] - np.log(expected_loss)) < 1e-12


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("loss", LOSSES)
def test_trials_at_once_equal_trials_one_by_one(cell: str, loss: str) -> None:
    spec = GatedSpec(
        cell=cell, loss=loss, T=300, hidden=5, inputs_dim=3, outputs_dim=2, trials=3, forget_bias=0.7
    )
    net = build_network(spec)
    _, together = gated_bptt(net, loss)
    for i, seq in enumerate(net.seeds):
        one_net = build_network(dataclasses.replace(spec, trials=1), seeds=[seq])
        _, one = gated_bptt(one_net, loss)
        assert np.array_equal(one.dL_dh_s[0], together.dL_dh_s[i])
        assert np.array_equal(one.gain_ln[0], together.gain_ln[i])
        for name in PARAMS:
            assert np.array_equal(one.params[name][0][0], together.params[name][0][i])
            assert np.array_equal(one.params[name][1][0], together.params[name][1][i])


def every_trial_slow(fast: Callable[..., Any]) -> Callable[..., Any]:
    """``gated._fast`` as if no trial had kept every digit: every sub-block is redone scaled."""

    def run(*args: Any, **kwargs: Any) -> Any:
        result, ok = fast(*args, **kwargs)
        return result, np.zeros_like(ok)

    return run


@pytest.mark.parametrize("cell", CELLS)
def test_scaled_path_equals_fast_path(cell: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Forcing every sub-block through the step-by-step scaled path changes nothing but rounding."""
    for loss in LOSSES:
        net = build_network(GatedSpec(cell=cell, loss=loss, T=80, hidden=6, trials=2))
        _, fast = gated_bptt(net, loss)
        with monkeypatch.context() as m:
            m.setattr(gated, "_fast", every_trial_slow(gated._fast))
            _, slow = gated_bptt(net, loss)
        np.testing.assert_allclose(slow.dL_dh_s, fast.dL_dh_s, rtol=0, atol=1e-12)
        np.testing.assert_allclose(slow.gain_ln, fast.gain_ln, rtol=0, atol=1e-12)
        for name in PARAMS:
            a, b = to_float(*slow.params[name]), to_float(*fast.params[name])
            assert relative(a, b) < 1e-12
        if cell == "lstm":
            np.testing.assert_allclose(slow.dL_dc_s, fast.dL_dc_s, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("loss", LOSSES)
def test_gain_against_an_explicit_product_of_step_jacobians(cell: str, loss: str) -> None:
    rng = np.random.default_rng(7)
    T, h = 9, 3
    P, x, y = random_trial(rng, cell, h=h, d=2, q=2, T=T)
    _, g = gated_bptt(network(cell, P, x, y), loss)
    hs, cs = ref.states(cell, P, x)
    J = np.eye(2 * h if cell == "lstm" else h)
    for t in range(2, T + 1):  # J = J_T ... J_2 = ds_T / ds_1
        Jt = ref.step_jacobian_fd(cell, P, x[t - 1], hs[t - 1], None if cs is None else cs[t - 1])
        J = Jt @ J
    gT = P["W_qh"].T @ (P["W_qh"] @ hs[T] + P["b_q"] - y[T - 1]) / (T if loss == "mean" else 1)
    g_state = gT if cell == "gru" else np.concatenate([gT, np.zeros(h)])
    expected = np.log10(np.linalg.norm(J.T @ g_state)) - np.log10(np.linalg.norm(g_state))
    assert abs(g.gain_ln[0] / LN10 - expected) < 1e-7


@pytest.mark.parametrize("cell", CELLS)
def test_step_jacobians_against_finite_differences(cell: str) -> None:
    rng = np.random.default_rng(3)
    P, x, y = random_trial(rng, cell, h=3, d=2, q=2, T=5)
    net = network(cell, P, x, y)
    fwd, _ = gated_bptt(net, "last")
    jac = StepJacobians(net, fwd)
    hs, cs = ref.states(cell, P, x)
    V = rng.standard_normal((1, 4, jac.dim))
    for t in range(1, 6):
        expected = ref.step_jacobian_fd(cell, P, x[t - 1], hs[t - 1], None if cs is None else cs[t - 1])
        M = jac.matrix(t)[0]
        np.testing.assert_allclose(M, expected, rtol=0, atol=1e-8)
        np.testing.assert_allclose(jac.apply(t, V)[0], V[0] @ M.T, rtol=0, atol=1e-13)
        np.testing.assert_allclose(jac.apply_T(t, V)[0], V[0] @ M, rtol=0, atol=1e-13)
    with pytest.raises(ValueError):
        jac.matrix(0)


def saturated_trial(cell: str, T: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Gates pushed ~60 into saturation: every backward step shrinks the gradient by about e^-60."""
    rng = np.random.default_rng(11)
    h, d, q = 2, 1, 1
    G = 4 if cell == "lstm" else 3
    P = {
        "weight_ih_l0": rng.standard_normal((G * h, d)) * 0.1,
        "weight_hh_l0": rng.standard_normal((G * h, h)) * 0.5,
        "bias_ih_l0": np.zeros(G * h),
        "bias_hh_l0": np.zeros(G * h),
        "W_qh": rng.standard_normal((q, h)),
        "b_q": np.zeros(q),
    }
    x = np.ones((T, d))
    if cell == "lstm":  # i open, f shut, g and o saturated
        P["bias_ih_l0"] = np.repeat([60.0, -60.0, 60.0, 60.0], h)
    else:  # z shut (no direct path); n driven to +-1 alternately, so h_{t-1} - n_t = -+2
        P["bias_ih_l0"] = np.repeat([0.0, -60.0, 0.0], h)
        P["weight_ih_l0"][2 * h :] = 60.0
        x = np.where(np.arange(T) % 2 == 0, 1.0, -1.0)[:, None]
    return P, x, rng.standard_normal((T, q))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("loss", LOSSES)
def test_saturated_gradient_far_below_float64_is_reported_exactly(cell: str, loss: str) -> None:
    T = 24
    P, x, y = saturated_trial(cell, T)
    _, g = gated_bptt(network(cell, P, x, y), loss)
    mp = ref.mp_bptt(cell, P, x, y, loss)
    mine = g.dL_dh_s[0] / LN10
    assert np.all(np.isfinite(mine))
    np.testing.assert_allclose(mine, mp["h"], rtol=0, atol=1e-9)
    if loss == "last":
        assert mine[0] < -400  # far below float64's smallest number, still a finite log
    if cell == "lstm":
        assert g.dL_dc_s is not None
        np.testing.assert_allclose(g.dL_dc_s[0] / LN10, mp["c"], rtol=0, atol=1e-9)
    from bptt_cli.core.scaled import log_norm

    for name in PARAMS:
        m, s = g.params[name]
        ln = log_norm(m, s) if m.ndim == 3 else log_norm(m[..., None], s)
        assert abs(ln[0] / LN10 - mp[name]) < 1e-9, name
    assert np.isfinite(g.gain_ln[0]) and g.gain_ln[0] / LN10 < -400


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("loss", LOSSES)
def test_mixed_batch_equals_trials_alone(cell: str, loss: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One trial needs the slow path (gates saturated: each step shrinks the chain by about
    e^-60), one not: only the first is redone step by step, and the batch gives, bit for bit,
    what each trial gives alone."""
    T = 70
    slow_trial = saturated_trial(cell, T)
    fast_trial = random_trial(np.random.default_rng(2), cell, h=2, d=1, q=1, T=T, scale=0.5)
    trials = [slow_trial, fast_trial]
    both = GatedNetwork(
        cell,
        *(np.stack([P[k] for P, _, _ in trials]) for k in PARAMS),
        np.stack([x for _, x, _ in trials]),
        np.stack([y for _, _, y in trials]),
    )
    redone: list[int] = []
    scaled = gated._scaled

    def spy(*args: Any) -> Any:
        redone.extend(int(i) for i in args[10])  # rows: the trials redone
        return scaled(*args)

    monkeypatch.setattr(gated, "_scaled", spy)
    _, together = gated_bptt(both, loss)
    assert set(redone) == {0} and len(redone) == -(-T // gated.SUB)  # every sub-block of trial 0
    for i, (P, x, y) in enumerate(trials):
        _, alone = gated_bptt(network(cell, P, x, y), loss)
        fields = ("dL_dh_s", "dL_dh_m", "dL_da_s", "dL_dgh_s", "dL_dc_s", "dL_dc_m", "loss_ln", "gain_ln")
        for field in fields:
            a, b = getattr(together, field), getattr(alone, field)
            assert (a is None) == (b is None) == (cell == "gru" and field in ("dL_dc_s", "dL_dc_m")), field
            if a is not None:
                assert np.array_equal(a[i], b[0], equal_nan=True), field
        for name in PARAMS:
            for j in (0, 1):
                assert np.array_equal(together.params[name][j][i], alone.params[name][j][0]), name
    assert together.gain_ln[0] / LN10 < -1000 < together.gain_ln[1] / LN10  # far below float64, finite


def test_mpmath_oracle_agrees_with_finite_differences() -> None:
    """The oracle of the saturated test is itself right where float64 can check it."""
    for cell in CELLS:
        rng = np.random.default_rng(5)
        P, x, y = random_trial(rng, cell, h=2, d=2, q=2, T=4)
        mp = ref.mp_bptt(cell, P, x, y, "mean", dps=30)
        fd = ref.fd_all(cell, P, x, y, "mean")
        np.testing.assert_allclose(mp["h"], np.log10(np.linalg.norm(fd["h"], axis=1)), atol=1e-7)
        for name in PARAMS:
            assert abs(mp[name] - np.log10(np.linalg.norm(fd[name]))) < 1e-7


def test_lstm_gradient_lives_on_the_forget_gate_product() -> None:
    """With f = sigma(b_f) for every unit and step and no other path, ||dL/dc_t|| is prod f exactly."""
    h, T, bf = 3, 50, 2.0
    P = {
        "weight_ih_l0": np.zeros((4 * h, 1)),
        "weight_hh_l0": np.zeros((4 * h, h)),
        "bias_ih_l0": np.repeat([0.0, bf, 0.0, 0.0], h),
        "bias_hh_l0": np.zeros(4 * h),
        "W_qh": np.eye(h),
        "b_q": np.zeros(h),
    }
    x, y = np.zeros((T, 1)), np.ones((T, h))
    net = network("lstm", P, x, y)
    fwd, g = gated_bptt(net, "last")
    # i = o = 1/2, g = 0: c_t = h_t = 0, so dL/dc_T = dL/dh_T * o tanh'(0) = 1/2 dL/dh_T, and
    # dL/dc_t = f^(T-t) dL/dc_T (the h-path carries nothing: dL/da = 0 except the forget rows
    # times c_{t-1} = 0 and W_hh = 0).
    f = 1.0 / (1.0 + np.exp(-bf))
    expected = np.log10(0.5 * np.sqrt(h)) + (T - np.arange(1, T + 1)) * np.log10(f)
    assert g.dL_dc_s is not None
    np.testing.assert_allclose(g.dL_dc_s[0] / LN10, expected, atol=1e-12)
    product = gate_product_log10(net, fwd)[0]
    np.testing.assert_allclose(product, (T - np.arange(1, T + 1)) * np.log10(f), atol=1e-12)


def test_gate_product_is_the_median_over_units_of_the_log_product() -> None:
    for cell in CELLS:
        net = build_network(GatedSpec(cell=cell, T=40, hidden=5, trials=2))
        fwd, _ = gated_bptt(net, "last")
        h = 5
        gate = 1.0 / (1.0 + np.exp(-fwd.pre[:, :, h : 2 * h]))  # f (LSTM), z (GRU)
        expected = np.empty((2, 40))
        for t in range(1, 41):
            expected[:, t - 1] = np.median(np.sum(np.log10(gate[:, t:]), axis=1), axis=-1)
        np.testing.assert_allclose(gate_product_log10(net, fwd), expected, atol=1e-12)


def test_random_init_is_pytorchs_and_shares_data_with_the_elman_network() -> None:
    spec = GatedSpec(cell="lstm", T=20, hidden=16, inputs_dim=3, outputs_dim=2, trials=2, seed=4, bias=0.3)
    net = build_network(spec)
    k = 1 / np.sqrt(16)
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        value = getattr(net, name)
        assert value.shape[1] == 64
        assert np.all(np.abs(value) <= k) and np.max(np.abs(value)) > 0.9 * k
    elman = build_network(
        Spec(cell="tanh", T=20, hidden=16, inputs_dim=3, outputs_dim=2, trials=2, seed=4, bias=0.3)
    )
    for name in ("x", "y", "W_qh", "b_q"):
        assert np.array_equal(getattr(net, name), getattr(elman, name))
    # T does not change the parameters; the data extend
    longer = build_network(dataclasses.replace(spec, T=30))
    assert np.array_equal(longer.weight_hh_l0, net.weight_hh_l0)
    assert np.array_equal(longer.x[:, :20], net.x)


def test_forget_bias_goes_to_the_forget_rows_of_bias_ih() -> None:
    spec = GatedSpec(cell="lstm", T=5, hidden=4, trials=2)
    base = build_network(spec)
    shifted = build_network(dataclasses.replace(spec, forget_bias=1.5))
    diff = shifted.bias_ih_l0 - base.bias_ih_l0
    np.testing.assert_allclose(diff[:, 4:8], 1.5, rtol=0, atol=1e-15)
    assert np.all(diff[:, :4] == 0) and np.all(diff[:, 8:] == 0)
    assert np.array_equal(shifted.bias_hh_l0, base.bias_hh_l0)
    gru = build_network(GatedSpec(cell="gru", T=5, hidden=4, forget_bias=1.5))
    gru0 = build_network(GatedSpec(cell="gru", T=5, hidden=4))
    assert np.array_equal(gru.bias_ih_l0, gru0.bias_ih_l0)  # the GRU has no forget gate


def test_gain_and_ensembles_act_on_every_recurrent_block() -> None:
    spec = GatedSpec(cell="gru", T=5, hidden=8, ensemble="orthogonal", gain=0.5)
    W = build_network(spec).weight_hh_l0[0]
    for b in range(3):
        block = W[8 * b : 8 * (b + 1)]
        np.testing.assert_allclose(block @ block.T, 0.25 * np.eye(8), atol=1e-12)
    radius = build_network(GatedSpec(cell="lstm", T=5, hidden=8, radius=0.9)).weight_hh_l0[0]
    for b in range(4):
        assert abs(np.max(np.abs(np.linalg.eigvals(radius[8 * b : 8 * (b + 1)]))) - 0.9) < 1e-12
    uniform = build_network(GatedSpec(cell="lstm", T=5, hidden=8, gain=2.0)).weight_hh_l0
    assert np.max(np.abs(uniform)) <= 2.0 / np.sqrt(8) and np.max(np.abs(uniform)) > 1.0 / np.sqrt(8)


def test_spec_checks() -> None:
    with pytest.raises(BadInput, match="gated cell"):
        GatedSpec(cell="tanh")
    with pytest.raises(BadInput, match="forget_bias"):
        GatedSpec(forget_bias=float("nan"))
    with pytest.raises(BadInput, match="--T must be at least 1"):
        GatedSpec(T=0)
    with pytest.raises(BadInput, match="unknown --loss"):
        GatedSpec(loss="max")


def test_analysis_object_for_a_gated_cell() -> None:
    spec = GatedSpec(cell="lstm", T=30, hidden=6, trials=3, forget_bias=1.0)
    an = analyze(spec, None, 1.0)
    assert isinstance(an, GatedAnalysis)
    assert list(an.grad_params_log10) == list(PARAMS)
    assert an.grad_h_log10.shape == (3, 30) and an.grad_c_log10 is not None
    assert an.gate_product_log10.shape == (3, 30)
    np.testing.assert_allclose(
        an.spectrum.spectral_radius, np.max(np.abs(np.linalg.eigvals(an.net.weight_hh_l0[:, 12:18])), axis=-1)
    )
    assert an.jacobians.dim == 12
    s = summary(an)
    assert s["trials"] == 3 and set(s["grad_params_log10"]) == set(PARAMS)
    given = GatedGiven(x=np.zeros((30, 8)))
    assert np.all(analyze(spec, given, 1.0).net.x == 0)
