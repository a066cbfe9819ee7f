"""Truncation and clipping estimators against hand-written float64 references and closed forms."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest
import truncation_reference as ref

from bptt_cli.core.cells import CELLS
from bptt_cli.core.elman import bptt
from bptt_cli.core.network import PARAMS, Network, Spec, build_network
from bptt_cli.core.scaled import LN10, to_float
from bptt_cli.errors import BadInput
from bptt_cli.estimators.clipping import clip_gradients
from bptt_cli.estimators.estimator import CHAIN_PARAMS, Estimator, estimators_from_options
from bptt_cli.estimators.measure import run_estimator
from bptt_cli.estimators.truncation import default_uniforms, truncated_gradients

CELL_NAMES = ("identity", "tanh", "relu", "sigmoid")


def small(cell: str, loss: str, T: int = 37, radius: float = 0.9, trials: int = 2, seed: int = 3) -> Network:
    spec = Spec(cell=cell, loss=loss, T=T, hidden=6, inputs_dim=3, outputs_dim=2, radius=radius,
                trials=trials, seed=seed, bias=0.3)
    return build_network(spec)


Scaled = dict[str, tuple[np.ndarray, np.ndarray]]


def plain(params: Scaled, name: str, i: int, col: int | None = 0) -> np.ndarray:
    """Trial ``i`` (and column ``col``) of a scaled parameter gradient as plain floats."""
    m, s = params[name]
    if col is None:
        return to_float(m[i], s[i])
    return to_float(m[i, col], s[i, col])


def rel(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / ||b||, or ||a|| when b is exactly zero (a dead relu layer)."""
    nb = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / nb if nb > 0 else np.linalg.norm(a))


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("loss", ["last", "mean"])
def test_reference_full_bptt_matches_the_core(cell: str, loss: str) -> None:
    """The references' full BPTT (xi = 1) is the core's gradient: the references are sound."""
    net = small(cell, loss)
    _, g = bptt(net, CELLS[cell], loss)
    for i in range(2):
        want = ref.full(ref.trial(net, i), cell, loss)
        for name in PARAMS:
            assert rel(plain(g.params, name, i, None), want[name]) < 1e-12


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("loss", ["last", "mean"])
@pytest.mark.parametrize("K", [37, 38, 1000])
def test_window_at_least_T_is_full_bptt(cell: str, loss: str, K: int) -> None:
    """K >= T keeps every step: the full gradient (computed another way, so equal to rounding)."""
    net = small(cell, loss)
    fwd, g = bptt(net, CELLS[cell], loss)
    out = truncated_gradients(net, CELLS[cell], loss, fwd, Estimator("window", K=K))
    for i in range(2):
        for name in CHAIN_PARAMS:
            assert rel(plain(out.params, name, i), plain(g.params, name, i, None)) < 1e-13
    for mode in ("window", "chunk"):  # reported as full BPTT itself: no error at all, T - 1 steps
        res = run_estimator(net, CELLS[cell], loss, fwd, g, Estimator(mode, K=K))
        for name in PARAMS:
            acc = res.accuracy[name]
            assert np.all(np.isneginf(acc.relative_error_ln)) and np.all(acc.norm_ratio_ln == 0)
            assert np.all(acc.cosine == 1)
        assert np.all(res.backward_steps == net.shape[1] - 1)


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("loss", ["last", "mean"])
def test_window_one_is_the_local_term_alone(cell: str, loss: str) -> None:
    """K = 1: dL/da_t = diag(phi'(a_t)) W_qh^T dL/do_t, so dW_hh = sum_t that times h_{t-1}^T."""
    net = small(cell, loss)
    fwd, _ = bptt(net, CELLS[cell], loss)
    out = truncated_gradients(net, CELLS[cell], loss, fwd, Estimator("window", K=1))
    assert np.all(out.backward_steps == 0)
    dphi = ref.PHI[cell][1]
    for i in range(2):
        p = ref.trial(net, i)
        H, A = ref.forward(p, cell)
        dO = ref.output_grads(p, H, loss)
        D = dphi(A) * (dO @ p["W_qh"])  # closed form, rows t
        want = {"W_hh": D.T @ H[:-1], "W_hx": D.T @ p["x"], "b_h": D.sum(0)}
        for name in CHAIN_PARAMS:
            got = plain(out.params, name, i)
            if loss == "last":  # one term: t = T
                assert np.count_nonzero(D[:-1]) == 0
            assert rel(got, want[name]) < 1e-13


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("loss", ["last", "mean"])
@pytest.mark.parametrize("K", [2, 5, 8, 36])
def test_window_against_per_term_reference(cell: str, loss: str, K: int) -> None:
    net = small(cell, loss, radius=1.3)
    fwd, _ = bptt(net, CELLS[cell], loss, block=8)
    out = truncated_gradients(net, CELLS[cell], loss, fwd, Estimator("window", K=K))
    for i in range(2):
        want = ref.window(ref.trial(net, i), cell, loss, K)
        for name in CHAIN_PARAMS:
            assert rel(plain(out.params, name, i), want[name]) < 1e-12


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("loss", ["last", "mean"])
@pytest.mark.parametrize("K", [1, 5, 8, 16, 36, 37, 50])
def test_chunk_against_training_loop_reference(cell: str, loss: str, K: int) -> None:
    """Chunks of K steps with the state carried and the gradient detached, as training code does."""
    net = small(cell, loss, radius=1.3)
    fwd, _ = bptt(net, CELLS[cell], loss, block=8)
    out = truncated_gradients(net, CELLS[cell], loss, fwd, Estimator("chunk", K=K))
    for i in range(2):
        want = ref.chunk(ref.trial(net, i), cell, loss, K)
        for name in CHAIN_PARAMS:
            assert rel(plain(out.params, name, i), want[name]) < 1e-12


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("loss", ["last", "mean"])
def test_random_draws_against_reference(cell: str, loss: str) -> None:
    """Each draw is g_t = l_t + xi_{t+1} J^T g_{t+1} with xi = 1/P where its uniform is below P."""
    net = small(cell, loss, radius=1.2)
    T, P, R = 37, 0.6, 4
    fwd, _ = bptt(net, CELLS[cell], loss, block=8)
    U = np.random.default_rng(1).random((2, R, T + 1))
    est = Estimator("random", keep_prob=P, draws=R)
    out = truncated_gradients(net, CELLS[cell], loss, fwd, est, uniforms=lambda t, r0, r1: U[:, r0:r1, t])
    for i in range(2):
        for r in range(R):
            xi = np.where(U[i, r, :T] < P, 1 / P, 0.0)
            want = ref.random(ref.trial(net, i), cell, loss, xi)
            for name in CHAIN_PARAMS:
                assert rel(plain(out.params, name, i, r), want[name]) < 1e-12


@pytest.mark.parametrize("loss", ["last", "mean"])
def test_random_is_exactly_unbiased_over_every_pattern(loss: str) -> None:
    """The probability-weighted sum over all 2^(T-1) keep patterns is the full gradient."""
    T, P = 7, 0.3
    net = small("tanh", loss, T=T, radius=1.5, trials=1)
    fwd, g = bptt(net, CELLS["tanh"], loss)
    patterns = np.array(list(itertools.product([True, False], repeat=T - 1)))  # keep at t = 1..T-1
    U = np.ones((1, len(patterns), T + 1))
    U[0, :, 1:T] = np.where(patterns, 0.0, 0.999)
    prob = np.prod(np.where(patterns, P, 1 - P), axis=1)
    est = Estimator("random", keep_prob=P, draws=len(patterns))
    out = truncated_gradients(net, CELLS["tanh"], loss, fwd, est, uniforms=lambda t, r0, r1: U[:, r0:r1, t])
    for name in CHAIN_PARAMS:
        m, s = out.params[name]
        mean = np.tensordot(prob, to_float(m[0], s[0]), axes=1)
        assert rel(mean, plain(g.params, name, 0, None)) < 1e-13
    # the expected cost: P (T - 1) products for the mean loss, sum_j P^j for the last
    cost = float(prob @ out.backward_steps[0])
    want = P * (T - 1) if loss == "mean" else sum(P**j for j in range(1, T))
    assert cost == pytest.approx(want, rel=1e-12)


@pytest.mark.slow
def test_random_mean_converges_at_one_over_sqrt_draws() -> None:
    """||mean of R draws - g||^2 is about tr(Cov)/R: averaged over disjoint groups, for R = 4..256.

    Fixed seed; the tolerance allows the group average (16 or more groups) a factor 2.
    """
    T, P, total = 40, 0.5, 4096
    net = small("tanh", "mean", T=T, radius=1.2, trials=1, seed=11)
    fwd, g = bptt(net, CELLS["tanh"], "mean")
    est = Estimator("random", keep_prob=P, draws=total)
    out = truncated_gradients(net, CELLS["tanh"], "mean", fwd, est)
    m, s = out.params["W_hh"]
    draws = to_float(m[0], s[0]).reshape(total, -1)
    full = plain(g.params, "W_hh", 0, None).ravel()
    spread = np.mean(np.sum((draws - draws.mean(0)) ** 2, axis=1))  # tr(Cov)
    assert np.linalg.norm(draws.mean(0) - full) ** 2 < 5 * spread / total  # the overall mean
    for R in (4, 16, 64, 256):
        means = draws.reshape(total // R, R, -1).mean(1)
        mse = np.mean(np.sum((means - full) ** 2, axis=1))
        assert 0.5 < mse * R / spread < 2.0, R


def test_accuracy_metrics_match_numpy_and_batches() -> None:
    """relative error, bias, variance, spread, cosine over draws, whatever the batch of draws."""
    net = small("tanh", "mean", radius=1.2, trials=2)
    fwd, g = bptt(net, CELLS["tanh"], "mean")
    est = Estimator("random", keep_prob=0.5, draws=10)
    out = truncated_gradients(net, CELLS["tanh"], "mean", fwd, est)
    whole = run_estimator(net, CELLS["tanh"], "mean", fwd, g, est)
    batched = run_estimator(net, CELLS["tanh"], "mean", fwd, g, est, batch=3)
    for name in CHAIN_PARAMS:
        m, s = out.params[name]
        for i in range(2):
            G = to_float(m[i], s[i]).reshape(10, -1)
            full = plain(g.params, name, i, None).ravel()
            ng = np.linalg.norm(full)
            err = np.linalg.norm(G - full, axis=1) / ng
            want = {
                "relative_error_ln": np.log(err.mean()),
                "norm_ratio_ln": np.log(np.mean(np.linalg.norm(G, axis=1) / ng)),
                "cosine": np.mean(G @ full / np.linalg.norm(G, axis=1) / ng),
                "relative_bias_ln": np.log(np.linalg.norm(G.mean(0) - full) / ng),
                "relative_variance_ln": np.log(np.mean(err**2)),
                "relative_spread_ln": np.log(np.mean(np.sum((G - G.mean(0)) ** 2, axis=1)) / ng**2),
            }
            for res in (whole, batched):
                acc = res.accuracy[name]
                for key, value in want.items():
                    assert getattr(acc, key)[i] == pytest.approx(value, rel=1e-10, abs=1e-12), key
        assert np.array_equal(whole.backward_steps, batched.backward_steps)


def test_exact_parameters_and_zero_error() -> None:
    """Truncation leaves W_qh and b_q exact: zero error, cosine 1."""
    net = small("tanh", "mean")
    fwd, g = bptt(net, CELLS["tanh"], "mean")
    res = run_estimator(net, CELLS["tanh"], "mean", fwd, g, Estimator("chunk", K=3))
    for name in ("W_qh", "b_q"):
        acc = res.accuracy[name]
        assert np.all(np.isneginf(acc.relative_error_ln)) and np.all(acc.cosine == 1.0)
        assert np.all(acc.norm_ratio_ln == 0.0)
    assert np.all(res.accuracy["W_hh"].relative_error_ln > -10)


def test_uniforms_do_not_depend_on_batches_or_the_number_of_draws() -> None:
    net = small("tanh", "mean")
    t = np.arange(0, 700, 7)
    a = default_uniforms(net, 10)(t, 0, 10)
    b = default_uniforms(net, 4)(t, 2, 4)
    assert np.array_equal(a[:, 2:4], b)
    assert a.shape == (2, 10, t.size) and not np.array_equal(a[0], a[1])  # trials differ


@pytest.mark.parametrize("loss", ["last", "mean"])
def test_costs_in_closed_form(loss: str) -> None:
    T = 37
    net = small("tanh", loss, T=T)
    fwd, _ = bptt(net, CELLS["tanh"], loss)
    for K in (1, 4, 10, 37, 50):
        window = truncated_gradients(net, CELLS["tanh"], loss, fwd, Estimator("window", K=K)).backward_steps
        chunk = truncated_gradients(net, CELLS["tanh"], loss, fwd, Estimator("chunk", K=K)).backward_steps
        if loss == "mean":  # every loss term s runs min(K, s) - 1 steps; every chunk L - 1
            assert np.all(window == sum(min(K, s) - 1 for s in range(1, T + 1)))
            assert np.all(chunk == T - math.ceil(T / K))
        else:  # the one term at T: K - 1 steps, or the last chunk's length - 1
            assert np.all(window == min(K, T) - 1)
            assert np.all(chunk == (T - 1) % K)


@pytest.mark.parametrize("theta", [1e-3, 0.5, 1e6])
def test_clipping_scales_exactly(theta: float) -> None:
    net = small("tanh", "mean", radius=1.5)
    fwd, g = bptt(net, CELLS["tanh"], "mean")
    clipped, scale_ln, norm_ln = clip_gradients(g.params, theta)
    for i in range(2):
        full = {name: plain(g.params, name, i, None) for name in PARAMS}
        norm = math.sqrt(sum(float(np.sum(v**2)) for v in full.values()))
        scale = min(1.0, theta / norm)
        assert norm_ln[i] == pytest.approx(math.log(norm), rel=1e-14)
        assert math.exp(scale_ln[i]) == pytest.approx(scale, rel=1e-14)
        for name in PARAMS:
            np.testing.assert_allclose(plain(clipped, name, i, None), scale * full[name], rtol=1e-14)
        clipped_norm = math.sqrt(sum(float(np.sum(plain(clipped, k, i, None) ** 2)) for k in PARAMS))
        assert clipped_norm == pytest.approx(min(norm, theta), rel=1e-13)
    res = run_estimator(net, CELLS["tanh"], "mean", fwd, g, Estimator("clip", clip=theta))
    for name in PARAMS:
        np.testing.assert_allclose(np.exp(res.accuracy[name].norm_ratio_ln), np.exp(scale_ln), rtol=1e-13)
        np.testing.assert_allclose(res.accuracy[name].cosine, 1.0, rtol=1e-14)


def test_clipping_beyond_float64() -> None:
    """An exploding gradient (||g|| ~ 10^400) is clipped from its log: scale ~ 10^-400, no zero."""
    spec = Spec(cell="identity", loss="last", T=2000, hidden=8, radius=1.6, trials=1)
    net = build_network(spec)
    fwd, g = bptt(net, CELLS["identity"], "last")
    res = run_estimator(net, CELLS["identity"], "last", fwd, g, Estimator("clip", clip=1.0))
    assert res.clip_norm_ln is not None and res.clip_scale_ln is not None
    assert res.clip_norm_ln[0] / LN10 > 300
    assert res.clip_scale_ln[0] == pytest.approx(-res.clip_norm_ln[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"truncate": "abc"}, "--truncate must be a positive integer"),
        ({"truncate": "-3"}, "at least 1"),
        ({"truncate": "0"}, "at least 1"),
        ({"truncate": "random"}, "needs --keep-prob"),
        ({"truncate": "random", "keep_prob": 0.0}, "(0, 1]"),
        ({"truncate": "random", "keep_prob": 1.5}, "(0, 1]"),
        ({"truncate": "random", "keep_prob": math.nan}, "(0, 1]"),
        ({"truncate": "random", "keep_prob": 0.5, "draws": 0}, "at least 1"),
        ({"truncate": "random", "keep_prob": 0.5, "mode": "chunk"}, "--truncate-mode applies"),
        ({"truncate": "5", "keep_prob": 0.5}, "--keep-prob applies"),
        ({"truncate": "5", "draws": 10}, "--draws applies"),
        ({"mode": "chunk"}, "--truncate-mode applies"),
        ({"mode": "ring"}, "unknown --truncate-mode"),
        ({"clip": 0.0}, "--clip"),
        ({"clip": math.inf}, "--clip"),
    ],
)
def test_bad_estimator_options(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(BadInput, match=re.escape(message)):
        estimators_from_options(**kwargs)  # type: ignore[arg-type]


def test_estimator_options() -> None:
    assert estimators_from_options(None) == []
    assert estimators_from_options("10") == [Estimator("window", K=10)]
    both = [Estimator("chunk", K=10), Estimator("clip", clip=1.0)]
    assert estimators_from_options("10", "chunk", clip=1.0) == both
    (est,) = estimators_from_options("Random", keep_prob=0.25)
    assert (est.kind, est.keep_prob, est.draws, est.label) == ("random", 0.25, 100, "random:0.25")


@pytest.mark.parametrize(
    ("cell", "radius"), [("identity", 1.5), ("identity", 0.5), ("tanh", 6.0), ("relu", 1.8)]
)
@pytest.mark.parametrize("loss", ["last", "mean"])
def test_untruncated_estimators_are_full_bptt_beyond_float64(cell: str, radius: float, loss: str) -> None:
    """K >= T, chunks of T and P = 1 keep every step: full BPTT, also where it is 10^+-1000.

    The tolerance is the two computations' own rounding over 3000 exploding steps: against an
    80-bit long double reference, relu at radius 1.8 (gradients ~10^1400) is off by 7e-12 in
    the core and 3e-12 here.
    """
    spec = Spec(cell=cell, loss=loss, T=3000, hidden=8, radius=radius, trials=2, bias=0.2)
    net = build_network(spec)
    fwd, g = bptt(net, CELLS[cell], loss)
    ests = [Estimator("window", K=3000), Estimator("chunk", K=5000),
            Estimator("random", keep_prob=1.0, draws=2)]
    if loss == "mean":
        ests = ests[1:]  # the ring of 3000 windows is slow; the window is tested at small T above
    for est in ests:
        res = run_estimator(net, CELLS[cell], loss, fwd, g, est)
        for name in CHAIN_PARAMS:
            acc = res.accuracy[name]
            assert np.all(acc.relative_error_ln / LN10 < -10.5), (est.label, name)  # see below
            assert np.all(np.abs(acc.norm_ratio_ln) < 3e-11)
    if (cell, radius, loss) == ("identity", 1.5, "last"):  # the case really left float64
        assert np.all(np.abs(g.params["W_hh"][1]) / LN10 > 300)
