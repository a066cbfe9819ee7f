"""Cases whose answer is known in closed form, or computed independently at 50 digits.

- diagonal W_hh with zero states: dL/dh_t = diag(lambda)^(T-t) g exactly (exact powers);
- orthogonal W_hh, last loss: ||dL/dh_t|| constant in t; times 1.5: exactly 1.5^(T-t);
- nilpotent W_hh: exact zeros from h lags on, reported as zeros (-inf, JSON null);
- symmetric W_hh: ||W^k g||^2 = sum_i lambda_i^(2k) (v_i . g)^2, alignment with v_1,
  growth rate ln|lambda_1|;
- relu with every unit dead: exact zeros;
- overflow (identity, radius 1.5, T = 3000) and underflow (saturated tanh/sigmoid) against
  mpmath at 50 digits, every t to 1e-9 in log10;
- the scaled-arithmetic helpers of bptt_cli.core.scaled against direct (mpmath) computation.
"""

from __future__ import annotations

import json
import math

import mpmath
import numpy as np
import pytest
import reference as ref
from adapters import LN10, PARAMS, Trial, random_trial

from bptt_cli.analysis.analyze import analyze
from bptt_cli.analysis.result import Analysis
from bptt_cli.core.cells import CELLS
from bptt_cli.core.elman import bptt
from bptt_cli.core.network import Given, Spec
from bptt_cli.core.scaled import add, log_norm, log_weights, normalize
from bptt_cli.io.jsontext import dumps
from bptt_cli.io.records import analysis_record


def analyze_given(
    cell: str, loss: str, p: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, tolerance: float = 1.0
) -> Analysis:
    """bptt_cli's analysis of one user-given trial (as from --weights/--inputs/--targets)."""
    spec = Spec(
        cell=cell,
        loss=loss,
        T=x.shape[0],
        hidden=p["W_hh"].shape[0],
        inputs_dim=x.shape[1],
        outputs_dim=y.shape[1],
    )
    return analyze(spec, Given(**p, x=x, y=y), tolerance)


def json_record(an: Analysis) -> dict:  # type: ignore[type-arg]
    return json.loads(dumps(analysis_record(an)))


def mp_log10_norm(v: list[mpmath.mpf]) -> float:
    return float(mpmath.log10(mpmath.fsum(c * c for c in v)) / 2)


# --------------------------------------------------------------------------- diagonal W_hh
def zero_state_trial(lam: np.ndarray, c: np.ndarray, T: int, d: int = 2) -> Trial:
    """W_hh = diag(lam), x = 0, b = 0 (so h_t = 0 and a_t = 0), W_qh = I, y_T = -c: g = c."""
    h = lam.size
    p = {
        "W_hh": np.diag(lam),
        "W_hx": np.ones((h, d)),
        "W_qh": np.eye(h),
        "b_h": np.zeros(h),
        "b_q": np.zeros(h),
    }
    y = np.zeros((T, h))
    y[-1] = -c
    return p, np.zeros((T, d)), y


@pytest.mark.parametrize("cell", ["identity", "tanh"])  # phi'(0) = 1 for both, h_t = 0
def test_diagonal_W_hh_exact_powers(cell: str) -> None:
    """dL/dh_t = diag(lambda)^(T-t) c, far beyond float64 (2^1999 ~ 10^602)."""
    T = 2000
    lam = np.array([2.0, 0.5, -1.5, 1.0, -2.0])
    c = np.array([0.25, -3.0, 1.0, 2.0, 0.125])
    an = analyze_given(cell, "last", *zero_state_trial(lam, c, T))
    g = an.grads
    assert g.dL_dh_m is not None
    with mpmath.workdps(40):
        for t in range(1, T + 1):
            k = T - t
            exact = [
                mpmath.mpf(float(li)) ** k * mpmath.mpf(float(ci)) for li, ci in zip(lam, c, strict=True)
            ]
            norm = mpmath.sqrt(mpmath.fsum(e * e for e in exact))
            assert an.grad_h_log10[0, t - 1] == pytest.approx(float(mpmath.log10(norm)), abs=1e-10)
            direction = np.array([float(e / norm) for e in exact])
            np.testing.assert_allclose(g.dL_dh_m[0, t - 1], direction, rtol=0, atol=1e-12)
        # dL/db_h = sum_t dL/da_t = sum_k lambda^k c (geometric sums); dL/db_q = c
        b_h = [
            mpmath.fsum(mpmath.mpf(float(li)) ** k for k in range(T)) * mpmath.mpf(float(ci))
            for li, ci in zip(lam, c, strict=True)
        ]
        assert an.grad_params_log10["b_h"][0] == pytest.approx(mp_log10_norm(b_h), abs=1e-10)
    assert an.grad_params_log10["b_q"][0] == pytest.approx(math.log10(np.linalg.norm(c)), abs=1e-14)
    # h_t = 0 and x_t = 0: these gradients are exact zeros, reported as such
    for name in ("W_hh", "W_hx", "W_qh"):
        assert an.grad_params_log10[name][0] == -np.inf, name
    assert an.grads.loss_ln[0] == pytest.approx(math.log(0.5 * float(c @ c)), abs=1e-14)
    # gain: J^T g = diag(lambda)^(T-1) c
    assert an.gain_log10[0] == pytest.approx(an.grad_h_log10[0, 0] - an.grad_h_log10[0, -1], abs=1e-10)
    rec = json_record(an)
    assert None not in rec["trials"][0]["grad_h_log10"]
    assert rec["trials"][0]["grad_params_log10"]["W_hh"] is None


def test_equal_moduli_norm_is_exact_power() -> None:
    """|lambda_i| = 2 for every i: ||dL/dh_t|| = 2^(T-t) ||c|| exactly, for every t."""
    T = 1500
    lam = np.array([2.0, -2.0, 2.0])
    c = np.array([1.0, -2.0, 0.5])
    an = analyze_given("identity", "last", *zero_state_trial(lam, c, T))
    want = (T - np.arange(1, T + 1)) * math.log10(2.0) + math.log10(np.linalg.norm(c))
    np.testing.assert_allclose(an.grad_h_log10[0], want, rtol=0, atol=1e-10)
    assert an.gain_log10[0] == pytest.approx((T - 1) * math.log10(2.0), abs=1e-10)
    assert an.verdicts == ["exploding"]


def test_relu_derivative_at_zero_is_zero() -> None:
    """a_t = 0 exactly (zero inputs and biases): relu'(0) = 0 (PyTorch's convention), so
    dL/dh_t is an exact zero for t < T, and dL/dh_T = c."""
    T = 6
    c = np.array([1.0, -2.0, 2.0])
    an = analyze_given("relu", "last", *zero_state_trial(np.array([2.0, 0.5, 1.0]), c, T))
    assert np.all(an.grad_h_log10[0, :-1] == -np.inf)
    assert an.grad_h_log10[0, -1] == pytest.approx(math.log10(3.0), abs=1e-15)
    assert an.gain_log10[0] == -np.inf


# --------------------------------------------------------------------------- orthogonal W_hh
@pytest.mark.parametrize("cell", ["identity"])
def test_orthogonal_last_loss_constant_norm(cell: str) -> None:
    """dL/dh_t = (W_hh^T)^(T-t) g with W_hh orthogonal: the norm never changes."""
    spec = Spec(cell=cell, loss="last", ensemble="orthogonal", T=1000, hidden=16, bias=0.0, trials=3, seed=5)
    an = analyze(spec)
    W = an.net.W_hh
    np.testing.assert_allclose(W @ np.swapaxes(W, -1, -2), np.broadcast_to(np.eye(16), W.shape), atol=1e-13)
    g = an.grad_h_log10
    assert np.all(np.abs(g - g[:, -1:]) < 1e-12)
    np.testing.assert_allclose(an.gain_log10, 0.0, atol=1e-12)
    assert an.verdicts == ["stable"] * 3
    np.testing.assert_allclose(an.spectrum.spectral_radius, 1.0, atol=1e-13)
    np.testing.assert_allclose(an.spectrum.spectral_norm, 1.0, atol=1e-13)


def test_orthogonal_radius_1_5_exact_growth() -> None:
    """W_hh = 1.5 Q: ||dL/dh_t|| = 1.5^(T-t) ||g|| for every t, up to ~10^528."""
    T = 3000
    spec = Spec(cell="identity", ensemble="orthogonal", radius=1.5, T=T, hidden=8, seed=2)
    an = analyze(spec)
    g = an.grad_h_log10[0]
    want = g[-1] + (T - np.arange(1, T + 1)) * math.log10(1.5)
    np.testing.assert_allclose(g, want, rtol=0, atol=1e-9)
    assert g[0] > 500
    assert an.gain_log10[0] == pytest.approx((T - 1) * math.log10(1.5), abs=1e-9)


# --------------------------------------------------------------------------- nilpotent W_hh
@pytest.mark.parametrize("cell", ["identity", "tanh", "sigmoid", "relu"])
def test_nilpotent_exact_zeros_after_h_lags(cell: str) -> None:
    """W_hh strictly upper triangular (W^h = 0): dL/dh_t = 0 exactly once T - t >= h.

    Reported as a true zero: scale -inf, log10 -inf, JSON null; never a tiny number.
    """
    h, T = 4, 12
    rng = np.random.default_rng(4)
    p, x, y = random_trial(rng, h, 2, 3, T, bias=0.3)
    p["W_hh"] = np.triu(rng.uniform(0.5, 1.5, (h, h)) * rng.choice([-1.0, 1.0], (h, h)), k=1)
    p["b_h"] = np.abs(p["b_h"]) + 0.5 if cell == "relu" else p["b_h"]  # keep relu units alive
    p["W_hx"] = np.abs(p["W_hx"]) * 0.1 if cell == "relu" else p["W_hx"]
    an = analyze_given(cell, "last", p, x, y)
    g = an.grad_h_log10[0]
    lags = T - np.arange(1, T + 1)
    assert np.all(g[lags >= h] == -np.inf), g
    assert np.all(np.isfinite(g[lags < h])), g
    assert an.gain_log10[0] == -np.inf
    assert an.verdicts == ["vanishing"]
    rec = json_record(an)
    nulls = [v is None for v in rec["trials"][0]["grad_h_log10"]]
    assert nulls == list(lags >= h)
    assert rec["trials"][0]["gain_log10"] is None
    assert rec["summary"]["verdict"] == "vanishing"
    # the reference agrees: these are exact zeros of the plain recursion too
    r = ref.bptt(p, x, y, cell, "last")
    assert not np.any(r.dL_dh[lags >= h]) and np.all(np.any(r.dL_dh[lags < h], axis=1))
    assert an.spectrum.spectral_radius[0] == 0.0


# --------------------------------------------------------------------------- symmetric W_hh
def test_symmetric_alignment_and_growth_rate() -> None:
    """W = V diag(lambda) V^T: ||W^k c||^2 = sum_i lambda_i^(2k) (v_i . c)^2 (closed form),
    the direction tends to +-v_1 and the growth rate per step to ln|lambda_1|."""
    h, T = 6, 3000
    rng = np.random.default_rng(8)
    Q, _ = np.linalg.qr(rng.standard_normal((h, h)))
    lam = np.array([1.3, -1.1, 0.9, 0.7, -0.4, 0.05])
    W = (Q * lam) @ Q.T
    W = (W + W.T) / 2  # exactly symmetric
    c = rng.standard_normal(h)
    p, x, y = zero_state_trial(np.ones(h), c, T)
    p["W_hh"] = W
    an = analyze_given("identity", "last", p, x, y)
    g = an.grads
    assert g.dL_dh_m is not None
    # closed form from the eigen-decomposition of the float64 matrix actually used
    ev, V = np.linalg.eigh(W)
    order = np.argsort(-np.abs(ev))
    ev, V = ev[order], V[:, order]
    coef = V.T @ c
    k = T - np.arange(1, T + 1)
    terms = 2 * k[:, None] * np.log(np.abs(ev))[None, :] + 2 * np.log(np.abs(coef))[None, :]
    top = terms.max(axis=1)
    ln_norm = 0.5 * (top + np.log(np.exp(terms - top[:, None]).sum(axis=1)))
    np.testing.assert_allclose(g.dL_dh_s[0], ln_norm, rtol=0, atol=1e-9 * LN10)
    assert an.grad_h_log10[0, 0] > 340  # 1.3^2999 ~ 10^342: beyond float64
    # alignment with the leading eigenvector: |cos| = exp(k ln|l1| + ln|v1.c| - ln||W^k c||)
    cos = np.abs(g.dL_dh_m[0] @ V[:, 0])
    np.testing.assert_allclose(cos, np.exp(terms[:, 0] / 2 - ln_norm), rtol=0, atol=1e-11)
    assert cos[0] == pytest.approx(1.0, abs=1e-14)
    # growth rate per step -> ln|lambda_1| (the gap (1.1/1.3)^k is below 1e-60 at k = 1000)
    rate = g.dL_dh_s[0, :-1] - g.dL_dh_s[0, 1:]
    np.testing.assert_allclose(rate[: T - 1000], math.log(1.3), rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.abs(an.spectrum.eigenvalues[0].real), np.abs(lam), rtol=1e-13)


# --------------------------------------------------------------------------- dead relu
@pytest.mark.parametrize("loss", ["last", "mean"])
def test_relu_all_units_dead_exact_zeros(loss: str) -> None:
    """b_h = -10, small inputs: every a_t < 0, so h_t = 0 and phi'(a_t) = 0.

    last: dL/dh_t = 0 exactly for t < T (JSON null), gain -inf (null), W_hh, W_hx, b_h
    gradients exact zeros. mean: dL/dh_t = W_qh^T dL/do_t only, exactly.
    """
    h, T = 5, 20
    rng = np.random.default_rng(12)
    p, x, y = random_trial(rng, h, 3, 2, T)
    p["b_h"] = np.full(h, -10.0)
    p["W_hx"] *= 0.1
    an = analyze_given("relu", loss, p, x, y)
    rec = json_record(an)["trials"][0]
    for name in ("W_hh", "W_hx", "b_h"):
        assert an.grad_params_log10[name][0] == -np.inf
        assert rec["grad_params_log10"][name] is None
    # o_t = b_q: dL/do_t = (b_q - y_t) / T (mean) or at T only (last)
    e = p["b_q"][None, :] - y
    if loss == "last":
        assert np.all(an.grad_h_log10[0, :-1] == -np.inf)
        assert rec["grad_h_log10"][:-1] == [None] * (T - 1)
        assert an.grad_h_log10[0, -1] == pytest.approx(
            math.log10(np.linalg.norm(p["W_qh"].T @ e[-1])), abs=1e-13
        )
        assert an.gain_log10[0] == -np.inf and rec["gain_log10"] is None and rec["verdict"] == "vanishing"
    else:
        want = np.log10(np.linalg.norm(e @ p["W_qh"], axis=1) / T)
        np.testing.assert_allclose(an.grad_h_log10[0], want, rtol=0, atol=1e-13)
        assert an.gain_log10[0] == -np.inf


def test_zero_last_gradient_gain_undefined() -> None:
    """dL/dh_T = 0 exactly (o_T = y_T): the gain is undefined (NaN, JSON null, verdict undefined)."""
    h, T = 3, 6
    rng = np.random.default_rng(1)
    p, x, y = random_trial(rng, h, 2, 2, T)
    p["W_qh"] = np.zeros((2, h))
    y[-1] = p["b_q"]
    an = analyze_given("tanh", "last", p, x, y)
    assert np.all(an.grad_h_log10[0] == -np.inf)
    assert math.isnan(an.gain_log10[0])
    assert an.verdicts == ["undefined"]
    rec = json_record(an)
    assert rec["trials"][0]["gain_log10"] is None
    assert rec["summary"]["verdict"] == "undefined"
    assert an.grads.loss_ln[0] == -np.inf


# --------------------------------------------------------------------------- mpmath: overflow
@pytest.mark.parametrize("loss", ["last", "mean"])
def test_overflow_against_mpmath(loss: str) -> None:
    """identity cell, spectral radius 1.5, T = 3000, h = 3: states beyond 10^500, gradients
    near 10^1055; every log10 ||dL/dh_t||, ||h_t||, parameter norm, loss and gain right to
    1e-9 against a 50-digit computation on the same (exactly converted) numbers."""
    spec = Spec(
        cell="identity",
        loss=loss,
        radius=1.5,
        T=3000,
        hidden=3,
        inputs_dim=2,
        outputs_dim=2,
        bias=0.5,
        seed=1,
    )
    an = analyze(spec)
    net = an.net
    p = {k: getattr(net, k)[0] for k in PARAMS}
    mp = ref.mp_bptt(p, net.x[0], net.y[0], "identity", loss)
    fwd, _ = bptt(net, CELLS["identity"], loss)
    got_h = fwd.h_s[0] / LN10
    assert np.all(np.isfinite(got_h[1:])) and got_h[0] == -np.inf  # h_0 = 0
    np.testing.assert_allclose(got_h[1:], mp.h_log10[1:], rtol=0, atol=1e-9)
    assert mp.h_log10.max() > 500
    g = an.grad_h_log10[0]
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, mp.grad_h_log10, rtol=0, atol=1e-9)
    assert g.max() > 1000
    for name in PARAMS:
        assert an.grad_params_log10[name][0] == pytest.approx(mp.grad_params_log10[name], abs=1e-9), name
    assert an.grads.loss_ln[0] / LN10 == pytest.approx(mp.loss_log10, abs=1e-9)
    assert an.gain_log10[0] == pytest.approx(mp.gain_log10, abs=1e-9)
    rec = json_record(an)["trials"][0]
    assert None not in rec["grad_h_log10"] and None not in rec["grad_params_log10"].values()


# --------------------------------------------------------------------------- mpmath: underflow
@pytest.mark.parametrize(("cell", "loss"), [("tanh", "last"), ("tanh", "mean"), ("sigmoid", "last")])
def test_underflow_saturated_against_mpmath(cell: str, loss: str) -> None:
    """Saturated units (|a| ~ 40..80): phi'(a) ~ 10^-30 and less per step, dL/dh_t far below
    10^-400 and still finite and right to 1e-9 in log10 (no spurious zero)."""
    h, T = 3, 40
    rng = np.random.default_rng(21)
    p, x, y = random_trial(rng, h, 2, 2, T)
    p["b_h"] = np.array([40.0, -35.0, 80.0]) if cell == "tanh" else np.array([40.0, -45.0, 60.0])
    p["W_hh"] = 0.5 * rng.standard_normal((h, h))
    an = analyze_given(cell, loss, p, x, y)
    mp = ref.mp_bptt(p, x, y, cell, loss)
    g = an.grad_h_log10[0]
    assert np.all(np.isfinite(g)), g
    np.testing.assert_allclose(g, mp.grad_h_log10, rtol=0, atol=1e-9)
    if loss == "last":
        assert g.min() < -400
    for name in PARAMS:
        assert an.grad_params_log10[name][0] == pytest.approx(mp.grad_params_log10[name], abs=1e-9), name
    assert an.gain_log10[0] == pytest.approx(mp.gain_log10, abs=1e-9)
    assert an.gain_log10[0] < -400
    assert an.grads.loss_ln[0] / LN10 == pytest.approx(mp.loss_log10, abs=1e-9)
    rec = json_record(an)["trials"][0]
    assert None not in rec["grad_h_log10"] and rec["gain_log10"] is not None


# --------------------------------------------------------------------------- scaled helpers
def _mp_norm(values: np.ndarray, s: float = 0.0) -> float:
    """ln(||values|| e^s) in mpmath, from the exact float values."""
    with mpmath.workdps(50):
        sq = mpmath.fsum(mpmath.mpf(float(v)) ** 2 for v in np.ravel(values))
        return float(mpmath.log(sq) / 2 + mpmath.mpf(s))


@pytest.mark.parametrize(
    "values",
    [
        [3.0, 4.0],
        [1e300, -1e300, 1e299],  # squares overflow float64
        [3e-320, 4e-320],  # subnormals: squares underflow to zero
        [1e-200, 1e-200, 1e-200],
        [0.0, 0.0, 5.0],
        [-2.5],
        [1.7976931348623157e308, 1.7976931348623157e308],
    ],
)
@pytest.mark.parametrize("s", [0.0, 1e5, -1e5, 2.5])
def test_normalize(values: list[float], s: float) -> None:
    m = np.array(values)
    mm, ss = normalize(m, s)
    assert np.linalg.norm(mm) == pytest.approx(1.0, abs=4e-16)
    assert float(ss) == pytest.approx(_mp_norm(m, s), rel=1e-15, abs=1e-13)
    # the direction is m / ||m||
    with mpmath.workdps(50):
        sq = mpmath.sqrt(mpmath.fsum(mpmath.mpf(float(v)) ** 2 for v in values))
        want = [float(mpmath.mpf(float(v)) / sq) for v in values]
    np.testing.assert_allclose(mm, want, rtol=1e-15, atol=1e-16)


def test_normalize_zero_and_batches() -> None:
    m = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, -0.0]])
    mm, ss = normalize(m, np.array([7.0, 1.0, -3.0]))
    assert np.array_equal(mm[0], [0.0, 0.0]) and ss[0] == -np.inf
    assert ss[2] == -np.inf and not np.any(mm[2])
    assert ss[1] == pytest.approx(1.0 + math.log(5.0), abs=1e-15)
    np.testing.assert_allclose(mm[1], [0.6, 0.8], rtol=1e-15)


def _mp_scaled(m: np.ndarray, s: float) -> list[mpmath.mpf]:
    return [mpmath.mpf(float(v)) * mpmath.exp(mpmath.mpf(s)) for v in m]


@pytest.mark.parametrize(
    ("sa", "sb"),
    [(0.0, 0.0), (1000.0, 1000.5), (-2000.0, -1990.0), (5000.0, -5000.0), (-np.inf, 3.0), (700.0, 720.0)],
)
def test_add_against_mpmath(sa: float, sb: float) -> None:
    """a e^sa + b e^sb, beyond float64's range, against mpmath."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal(4)
    b = rng.standard_normal(4)
    if sa == -np.inf:
        a = np.zeros(4)
    m, s = add(a, np.array(sa), b, np.array(sb))
    with mpmath.workdps(60):
        terms = _mp_scaled(b, sb) if sa == -np.inf else _mp_scaled(a, sa)
        if sa != -np.inf:
            terms = [u + v for u, v in zip(terms, _mp_scaled(b, sb), strict=True)]
        norm = mpmath.sqrt(mpmath.fsum(t * t for t in terms))
        assert float(s) == pytest.approx(float(mpmath.log(norm)), abs=1e-12)
        np.testing.assert_allclose(m, [float(t / norm) for t in terms], rtol=0, atol=1e-14)


def test_add_exact_cancellation_is_exact_zero() -> None:
    a = np.array([[1.0, -2.0, 0.5]])
    m, s = add(a, np.array([800.0]), -a, np.array([800.0]))
    assert s[0] == -np.inf and not np.any(m)
    m, s = add(np.zeros((1, 3)), np.array([-np.inf]), np.zeros((1, 3)), np.array([-np.inf]))
    assert s[0] == -np.inf and not np.any(m)


def test_log_weights() -> None:
    s = np.array([[1000.0, 1001.0, -np.inf, 990.0], [-np.inf, -np.inf, -np.inf, -np.inf]])
    w, top = log_weights(s)
    assert top[0] == 1001.0 and top[1] == -np.inf
    np.testing.assert_allclose(w[0], [math.exp(-1.0), 1.0, 0.0, math.exp(-11.0)], rtol=1e-15)
    assert not np.any(w[1])
    # the weighted sum reproduces sum_t e^{s_t} in log form
    want = float(mpmath.log(mpmath.fsum(mpmath.exp(v) for v in (1000, 1001, 990))))
    assert float(top[0] + np.log(w[0].sum())) == pytest.approx(want, abs=1e-12)
    w, top = log_weights(np.array([[3.0, -2.0], [5.0, 7.0]]), axis=0)
    np.testing.assert_array_equal(top, [5.0, 7.0])
    np.testing.assert_allclose(w, [[math.exp(-2.0), math.exp(-9.0)], [1.0, 1.0]], rtol=1e-15)


@pytest.mark.parametrize("s", [0.0, 1e4, -1e4])
def test_log_norm_frobenius(s: float) -> None:
    rng = np.random.default_rng(2)
    m = rng.standard_normal((3, 4, 5)) * np.array([1e300, 1.0, 1e-300])[:, None, None]
    sc = np.full(3, s)
    got = log_norm(m, sc)
    for i in range(3):
        assert got[i] == pytest.approx(_mp_norm(m[i], s), rel=1e-15, abs=1e-12)
    assert log_norm(np.zeros((1, 2, 2)), np.array([5.0]))[0] == -np.inf


def test_helpers_compose_like_bptt() -> None:
    """A long product of scaled matrix-vector steps (what the core does) stays exact in log form."""
    rng = np.random.default_rng(9)
    W = rng.standard_normal((4, 4)) * 3.0
    v = rng.standard_normal(4)
    m, s = normalize(v, 0.0)
    with mpmath.workdps(60):
        Wm = mpmath.matrix(W.tolist())
        vm = mpmath.matrix(v.tolist())
        for _ in range(400):
            m, s = normalize(W @ m, s)
            vm = Wm * vm
        want = float(mpmath.log(mpmath.norm(vm)))
    assert want > 700  # beyond float64
    assert float(s) == pytest.approx(want, abs=1e-9)
