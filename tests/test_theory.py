"""Theory quantities against cases with known answers and against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bptt_cli.analysis.analyze import analyze
from bptt_cli.core.cells import CELLS
from bptt_cli.core.elman import BackwardBlock, backward, backward_blocks, bptt, stored_blocks
from bptt_cli.core.network import Given, Spec
from bptt_cli.core.scaled import LN10
from bptt_cli.theory import nonnormal
from bptt_cli.theory.alignment import alignment, dominant_subspace
from bptt_cli.theory.horizons import effective_memory, horizons
from bptt_cli.theory.lyapunov import lyapunov_exponents, stored_dphi, window
from bptt_cli.theory.meanfield import (
    chi_1,
    derivative_moment,
    fixed_point,
    gauss_hermite,
    mean_field,
    second_moment,
)
from bptt_cli.theory.nonnormal import henrici, norm2, numerical_abscissa, transient_growth
from bptt_cli.theory.rates import observed_rate
from bptt_cli.theory.spectra import spectrum


def run(W: np.ndarray, T: int, cell: str = "identity", loss: str = "last", lyapunov: int | None = None):
    """``bptt analyze`` on a given W_hh (all else random), with the theory."""
    spec = Spec(cell=cell, loss=loss, T=T, hidden=W.shape[0])
    return analyze(spec, Given(W_hh=W), theory=True, lyapunov=lyapunov)


def orthogonal(h: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((h, h)))
    return q * np.sign(np.diag(r))


# ---------------------------------------------------------------- rates and horizons


def test_diagonal_equal_moduli_rates_are_exact() -> None:
    """diag(+-0.9): ||W^k g|| = 0.9^k ||g||, so every rate is ln 0.9 exactly."""
    W = np.diag([0.9, -0.9, 0.9, -0.9, 0.9, -0.9])
    an = run(W, T=300)
    th = an.theory
    assert th is not None
    ln = math.log(0.9)
    for name in ("observed", "gelfand", "spectral_norm_bound"):
        assert th.rates[name][0] == pytest.approx(ln, abs=1e-12)
    assert np.allclose(th.lyapunov.exponents, ln, atol=1e-12)  # type: ignore[union-attr]
    assert list(th.window[0]) == [0, 299]
    # vanishing horizon: the smallest k with 0.9^k < 1e-8
    k = next(k for k in range(1, 300) if k * ln < math.log(1e-8))
    assert th.vanish[0] == k
    assert np.isnan(th.explode[0])
    # a normal matrix with ||W||_2 < 1: no transient growth, peak at k = 1
    assert th.henrici[0] < 1e-7
    assert th.growth.peak_log10[0] == pytest.approx(math.log10(0.9))
    assert th.growth.k[0] == 1
    assert th.abscissa[0] == pytest.approx(0.9)


def test_exploding_horizon_and_gelfand_for_a_growing_diagonal() -> None:
    W = np.diag([1.1, -1.1, 1.1, 1.1])
    th = run(W, T=400).theory
    assert th is not None
    k = next(k for k in range(1, 400) if k * math.log(1.1) > math.log(1e8))
    assert th.explode[0] == k
    assert np.isnan(th.vanish[0])
    assert th.rates["observed"][0] == pytest.approx(math.log(1.1), abs=1e-12)
    assert th.growth.k[0] == 400  # monotone growth: the peak is at T
    assert th.growth.peak_log10[0] == pytest.approx(400 * math.log10(1.1), rel=1e-12)


def test_diagonal_distinct_rates_match_direct_powers() -> None:
    """Gelfand and the norm bound are exact for a diagonal W; the observed rate is the slope
    of ln ||W^k g|| computed directly with numpy."""
    lam = np.array([0.97, -0.9, 0.8, 0.5, -0.3])
    an = run(np.diag(lam), T=80)
    th = an.theory
    assert th is not None
    assert th.rates["gelfand"][0] == pytest.approx(math.log(0.97), abs=1e-14)
    assert th.rates["spectral_norm_bound"][0] == pytest.approx(math.log(0.97), abs=1e-14)
    g = an.grads.dL_dh_m[0, -1] * np.exp(an.grads.dL_dh_s[0, -1])  # type: ignore[index]
    k = np.arange(80)
    direct = np.log(np.linalg.norm(lam[None, :] ** k[:, None] * g[None, :], axis=1))
    assert th.rates["observed"][0] == pytest.approx(np.polyfit(k, direct, 1)[0], abs=1e-10)


def test_sigmoid_bound_uses_a_quarter() -> None:
    W = np.diag([2.0, 1.0, 0.5])
    th = run(W, T=10, cell="sigmoid").theory
    assert th is not None
    assert th.rates["spectral_norm_bound"][0] == pytest.approx(math.log(0.5))


def test_observed_rate_window_stops_at_an_exact_zero() -> None:
    s = np.array([[-np.inf, -np.inf, 3.0, 2.0, 1.0]])  # t = 1..5; lags 0..2 are finite
    rate, win = observed_rate(s)
    assert rate[0] == pytest.approx(1.0)  # ln||g|| grows by 1 per lag back
    assert list(win[0]) == [0, 2]
    rate, win = observed_rate(np.array([[1.0, 2.0, -np.inf]]))
    assert np.isnan(rate[0]) and np.isnan(win[0]).all()


def test_mean_loss_fits_the_last_steps_chain() -> None:
    """For the mean loss the observed rate is fitted to the last step's chain, which is the
    last loss's dL/dh_t on the same network."""
    spec = Spec(cell="tanh", T=60, hidden=12, gain=1.3, seed=4)
    last = analyze(spec, theory=True).theory
    mean = analyze(Spec(**{**spec.__dict__, "loss": "mean"}), theory=True).theory
    assert last is not None and mean is not None
    assert mean.rates["observed"][0] == pytest.approx(last.rates["observed"][0], rel=1e-12)
    assert mean.observed_of != last.observed_of
    assert mean.effective_memory[0] == last.effective_memory[0]


def test_horizons_reference_zero_is_undefined() -> None:
    vanish, explode = horizons(np.array([[0.0, 1.0, -np.inf], [0.0, -30.0, 0.0]]))
    assert np.isnan(vanish[0]) and np.isnan(explode[0])
    assert vanish[1] == 1 and np.isnan(explode[1])


# ---------------------------------------------------------------- effective memory


def _memory_brute_force(a: np.ndarray, hprev: np.ndarray, tol: float = 0.05) -> int:
    """Smallest k with ||sum_{t <= T-k} a_t h_{t-1}^T|| <= tol ||sum_t ...||, in plain floats."""
    T = a.shape[0]
    terms = a[:, :, None] * hprev[:, None, :]
    total = np.linalg.norm(terms.sum(axis=0))
    head = np.cumsum(terms, axis=0)  # head[j-1] = sum of the first j terms
    norms = np.concatenate([[0.0], np.linalg.norm(head, axis=(1, 2))])  # j = 0..T
    ok = np.nonzero(norms <= tol * total)[0]
    return int(T - ok.max())


@pytest.mark.parametrize(
    ("cell", "gain", "block"),
    [("tanh", 1.2, 7), ("identity", 0.9, 5), ("identity", 1.05, 16), ("relu", 1.5, 3)],
)
def test_effective_memory_matches_brute_force(cell: str, gain: float, block: int) -> None:
    spec = Spec(cell=cell, T=70, hidden=9, gain=gain, trials=3, seed=11)
    an = analyze(spec)
    net = an.net
    fwd, grads = bptt(net, CELLS[cell], "last", block=block)
    assert grads.dL_da_m is not None and fwd.h_m is not None
    got = effective_memory(stored_blocks(fwd, grads), grads.dL_da_s, fwd.h_s, *grads.params["W_hh"])
    # a checkpointed pass recomputes the same blocks
    fwd_c, grads_c = bptt(net, CELLS[cell], "last", checkpoint_every=2 * block, block=block)
    blocks = backward_blocks(net, fwd_c, CELLS[cell], "last")
    assert np.array_equal(effective_memory(blocks, grads_c.dL_da_s, fwd_c.h_s, *grads_c.params["W_hh"]), got)
    for i in range(3):
        a = grads.dL_da_m[i] * np.exp(grads.dL_da_s[i])[:, None]
        hp = (fwd.h_m[i] * np.exp(fwd.h_s[i])[:, None])[:-1]
        assert got[i] == _memory_brute_force(a, hp)


def test_effective_memory_of_a_pure_decay_is_short() -> None:
    th = run(np.diag([0.5, -0.5, 0.5]), T=200).theory
    assert th is not None
    assert 1 <= th.effective_memory[0] <= 12


# ---------------------------------------------------------------- Lyapunov exponents


def test_lyapunov_orthogonal_all_zero() -> None:
    W = orthogonal(12, 3)[None]
    ly = lyapunov_exponents(W, stored_dphi(None, 300), 300, 12)
    assert np.abs(ly.exponents).max() < 1e-13


def test_lyapunov_diagonal_linear_system() -> None:
    lam = np.array([0.1, -2.0, 0.5, 1.0, 0.25, -0.05])
    ly = lyapunov_exponents(np.diag(lam)[None], stored_dphi(None, 200), 200, 4)
    assert ly.exponents[0] == pytest.approx(np.log([2.0, 1.0, 0.5, 0.25]), abs=1e-12)
    assert (ly.transient, ly.steps) == window(200, 6, 4) == (20, 180)
    assert window(10**5, 1024, 4) == (100, 500) and window(10**5, 64, 4) == (100, 7281)


def test_lyapunov_sum_is_the_mean_log_determinant() -> None:
    """With K = h the exponents sum to the mean of ln|det J_t| = ln|det W| + sum_i ln|phi'_i|
    over the averaged steps: a second formulation, exact for any trajectory."""
    spec = Spec(cell="tanh", T=120, hidden=7, gain=1.8, trials=2, seed=5)
    an = analyze(spec)
    fwd, _ = bptt(an.net, CELLS["tanh"], "last")
    assert fwd.log_dphi is not None
    ly = lyapunov_exponents(an.net.W_hh, stored_dphi(fwd.dphi, 120), 120, 7)
    first, last = 120 - ly.transient - ly.steps, 120 - ly.transient
    logdet = np.linalg.slogdet(an.net.W_hh)[1]
    expected = logdet + fwd.log_dphi[:, first:last].sum(axis=(1, 2)) / ly.steps
    assert ly.exponents.sum(axis=1) == pytest.approx(expected, rel=1e-10)


def test_lyapunov_of_a_symmetric_linear_system_through_analyze() -> None:
    """A symmetric (normal, non-diagonal) W with the identity cell: exponents ln |lambda_i|."""
    lam = np.array([1.2, 0.6, -0.5, 0.3])
    W = orthogonal(4, 1) @ np.diag(lam) @ orthogonal(4, 1).T
    th = run(W, T=400, lyapunov=2).theory
    assert th is not None and th.lyapunov is not None
    assert th.lyapunov.exponents[0] == pytest.approx(np.log([1.2, 0.6]), abs=1e-10)


def test_lyapunov_through_segments_matches_stored() -> None:
    from bptt_cli.core.elman import segments

    spec = Spec(cell="tanh", T=700, hidden=6, gain=1.5, trials=2, seed=2)
    an = analyze(spec)
    cell = CELLS["tanh"]
    fwd, _ = bptt(an.net, cell, "last")
    stored = lyapunov_exponents(an.net.W_hh, stored_dphi(fwd.dphi, 700), 700, 3)
    fwd_ck, _ = bptt(an.net, cell, "last", checkpoint_every=256)
    segs = ((s.t0, s.t1, s.dphi) for s in segments(an.net, cell, fwd_ck))
    ck = lyapunov_exponents(an.net.W_hh, segs, 700, 3)
    assert ck.exponents == pytest.approx(stored.exponents, rel=1e-12)


def test_lyapunov_saturated_units_stay_finite() -> None:
    """A huge bias saturates tanh (phi' ~ e^-900): exponents stay finite, never -inf."""
    spec = Spec(cell="tanh", T=50, hidden=5, gain=1.0, bias=500.0, trials=1, seed=1)
    th = analyze(spec, theory=True).theory
    assert th is not None and th.lyapunov is not None
    assert np.isfinite(th.lyapunov.exponents).all()
    assert th.lyapunov.exponents.max() < -100


# ---------------------------------------------------------------- mean field


@pytest.mark.parametrize(
    ("cell", "sw2", "offset"),
    [("tanh", 2.5, 0.7), ("tanh", 4.0, 1.0), ("sigmoid", 3.0, 0.2), ("tanh", 9.0, 0.0)],
)
def test_mean_field_fixed_point_against_monte_carlo(cell: str, sw2: float, offset: float) -> None:
    c = CELLS[cell]
    q = fixed_point(c, np.array([sw2]), np.array([offset]))[0]
    z = np.random.default_rng(0).standard_normal(2_000_000)
    a = np.sqrt(q) * z
    phi2 = c.phi(a) ** 2
    mc, err = phi2.mean(), phi2.std() / np.sqrt(z.size)
    assert q == pytest.approx(sw2 * mc + offset, abs=5 * sw2 * err)
    dphi2 = np.exp(2 * c.log_dphi(a))
    chi = chi_1(c, np.array([sw2]), np.array([q]))[0]
    assert chi == pytest.approx(sw2 * dphi2.mean(), abs=5 * sw2 * dphi2.std() / np.sqrt(z.size))


def test_mean_field_closed_forms() -> None:
    """Identity: q* = offset / (1 - s), chi_1 = s; relu: q* = offset / (1 - s/2), chi_1 = s/2."""
    s, off = np.array([0.5, 1.5]), np.array([1.0, 1.0])
    q = fixed_point(CELLS["identity"], s, off)
    assert q[0] == pytest.approx(2.0, rel=1e-12) and q[1] == np.inf
    assert chi_1(CELLS["identity"], s, q) == pytest.approx(s)
    q = fixed_point(CELLS["relu"], s, off)
    assert q[0] == pytest.approx(1 / (1 - 0.25), rel=1e-12)
    assert q[1] == pytest.approx(1 / (1 - 0.75), rel=1e-12)
    assert chi_1(CELLS["relu"], s, q) == pytest.approx(s / 2, rel=1e-14)
    # tanh without input: q* = 0 below gain 1 (chi_1 = s), positive above
    q = fixed_point(CELLS["tanh"], np.array([0.5, 2.0]), np.zeros(2))
    assert q[0] == 0.0 and q[1] > 0.5
    assert chi_1(CELLS["tanh"], np.array([0.5]), q[:1])[0] == pytest.approx(0.5)


@pytest.mark.parametrize("q", [0.0, 0.3, 2.0, 20.0, 400.0, 1e6])
def test_gaussian_expectations_against_mpmath(q: float) -> None:
    """E[phi(sqrt(q) z)^2] and E[phi'(sqrt(q) z)^2] against 30-digit mpmath quadrature (tanh,
    sigmoid) and closed forms (relu: q/2 and 1/2; identity: q and 1)."""
    import mpmath as mp

    mp.mp.dps = 30
    root = mp.sqrt(q)
    inner = (mp.mpf(k) / root for k in (0.5, 2, 8, 40) if q > 0 and k / math.sqrt(q) < 14)
    breaks = sorted({mp.mpf(0), *inner, mp.mpf(14)})

    def expect(f: object) -> float:
        g = lambda x: f(root * x) * mp.exp(-x * x / 2) / mp.sqrt(2 * mp.pi)  # noqa: E731
        return float(2 * mp.quad(g, breaks))

    sig = lambda a: 1 / (1 + mp.exp(-a))  # noqa: E731
    expected = {
        "tanh": (expect(lambda a: mp.tanh(a) ** 2), expect(lambda a: mp.sech(a) ** 4)),
        "sigmoid": (
            (expect(lambda a: sig(a) ** 2) + expect(lambda a: sig(-a) ** 2)) / 2,  # phi^2 is not even
            expect(lambda a: (sig(a) * (1 - sig(a))) ** 2),
        ),
        "relu": (q / 2, 0.5),
        "identity": (q, 1.0),
    }
    for cell, (m2, d2) in expected.items():
        c = CELLS[cell]
        assert second_moment(c, np.array([q]))[0] == pytest.approx(m2, rel=1e-12, abs=1e-15)
        if not (cell == "relu" and q == 0):  # relu'(0) = 0: the state is exactly 0
            assert derivative_moment(c, np.array([q]))[0] == pytest.approx(d2, rel=1e-12, abs=1e-15)


def test_plain_gauss_hermite_degrades_with_q() -> None:
    """Why the expectations use the composite rule: 200-node Gauss-Hermite is exact at small q
    but off by 3e-3 for E[tanh'^2] at q = 20."""
    z, w = gauss_hermite()
    tanh = CELLS["tanh"]
    for q, tol in ((0.3, 1e-14), (20.0, None)):
        gh = np.sum(w * np.exp(2 * tanh.log_dphi(np.sqrt(q) * z)))
        ours = derivative_moment(tanh, np.array([q]))[0]
        if tol is not None:
            assert gh == pytest.approx(ours, abs=tol)
        else:
            assert abs(gh - ours) > 1e-3


def test_mean_field_uses_the_networks_statistics() -> None:
    spec = Spec(cell="tanh", T=50, hidden=40, gain=2.0, bias=0.3, trials=2, seed=9)
    an = analyze(spec)
    mf = mean_field(CELLS["tanh"], an.net.W_hh, an.net.W_hx, an.net.b_h, an.net.x)
    u = np.matmul(an.net.x, np.swapaxes(an.net.W_hx, -1, -2))
    assert mf.input_variance == pytest.approx(np.mean(u**2, axis=(1, 2)), rel=1e-12)
    assert mf.weight_variance == pytest.approx(np.mean(an.net.W_hh**2, axis=(1, 2)) * 40, rel=1e-12)
    assert mf.bias_variance == pytest.approx(np.mean(an.net.b_h**2, axis=1), rel=1e-12)


def test_mean_field_applies_to_iid_ensembles_only() -> None:
    cases = (("gaussian", True), ("uniform", True), ("orthogonal", False), ("symmetric", False))
    for ensemble, applies in cases:
        th = analyze(Spec(cell="tanh", T=20, hidden=16, ensemble=ensemble), theory=True).theory
        assert th is not None
        assert (th.mean_field is not None) == applies
        assert np.isfinite(th.rates["mean_field"][0]) == applies
    th = run(np.eye(4) * 0.5, T=10).theory
    assert th is not None and th.mean_field is None and "file" in (th.mean_field_reason or "")


@pytest.mark.slow
def test_large_tanh_network_follows_mean_field() -> None:
    """hidden 1000, gain 2, T 400: the observed rate agrees with 1/2 ln chi_1 to a few hundredths."""
    spec = Spec(cell="tanh", ensemble="gaussian", gain=2.0, hidden=1000, T=400, trials=2, seed=0)
    th = analyze(spec, theory=True, lyapunov=1).theory
    assert th is not None and th.lyapunov is not None
    observed, mf = th.rates["observed"], th.rates["mean_field"]
    assert np.abs(observed - mf).max() < 0.02
    assert np.abs(th.lyapunov.exponents[:, 0] - mf).max() < 0.02
    # far from the linear predictions
    assert (th.rates["gelfand"] > 0.6).all() and (th.rates["spectral_norm_bound"] > 1.3).all()


# ---------------------------------------------------------------- non-normality


def jordan_norms(lam: float, a: float, T: int) -> np.ndarray:
    """||[[lam, a], [0, lam]]^k||_2 for k = 1..T in closed form: with c = |lam|^k and
    b = k |a| |lam|^(k-1), the largest singular value of [[c, b], [0, c]] is (b + sqrt(b^2 + 4c^2)) / 2."""
    k = np.arange(1, T + 1)
    b = k * abs(a) * abs(lam) ** (k - 1)
    c = abs(lam) ** k
    return (b + np.sqrt(b * b + 4 * c * c)) / 2


@pytest.mark.parametrize("scan", [True, False])
@pytest.mark.parametrize(
    ("lam", "a", "T"), [(0.95, 5.0, 100), (0.8, 30.0, 64), (-0.99, 0.5, 2000), (0.9, 1.0, 3)]
)
def test_jordan_block_transient_growth(
    monkeypatch: pytest.MonkeyPatch, scan: bool, lam: float, a: float, T: int
) -> None:
    if not scan:
        monkeypatch.setattr(nonnormal, "SCAN_MAX_T", 0)
    W = np.array([[[lam, a], [0.0, lam]]])
    g = transient_growth(W, T)
    exact = jordan_norms(lam, a, T)
    assert g.peak_log10[0] == pytest.approx(math.log10(exact.max()), abs=1e-12)
    assert g.k[0] == np.argmax(exact) + 1
    assert g.method[0] in (("all",) if scan else ("all", "search"))


def test_transient_growth_against_brute_force_powers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 6 x 6 non-normal matrix with rho < 1 (triangular): every ||W^k||_2 by numpy."""
    rng = np.random.default_rng(4)
    W = np.triu(rng.standard_normal((6, 6)) * 2.0, 1) + np.diag(rng.uniform(-0.9, 0.9, 6))
    T = 300
    norms = [np.linalg.norm(np.linalg.matrix_power(W, k), 2) for k in range(1, T + 1)]
    for scan in (True, False):
        monkeypatch.setattr(nonnormal, "SCAN_MAX_T", 4096 if scan else 0)
        g = transient_growth(W[None], T)
        assert g.peak_log10[0] == pytest.approx(math.log10(max(norms)), abs=1e-10)
        assert g.k[0] == int(np.argmax(norms)) + 1


@pytest.mark.parametrize(("n", "h", "budget"), [(9, 12, None), (7, 64, None), (5, 12, 100)])
def test_transient_growth_search_of_a_batch_is_each_trial_alone(
    monkeypatch: pytest.MonkeyPatch, n: int, h: int, budget: int | None
) -> None:
    """The searches of a batch run in lockstep, batched: every trial gets, bit for bit, what it
    gets alone (the same k evaluated, the same products), whatever the others do; with a
    per-trial budget that stops some searches early too. (Below ``SVD_MAX_H``: above it the
    Lanczos norms of the squarings, before the search, stop when the whole batch has settled.)"""
    monkeypatch.setattr(nonnormal, "SCAN_MAX_T", 0)
    if budget is not None:  # about `budget` products a trial after the squarings and W^T
        monkeypatch.setattr(nonnormal, "GROWTH_BUDGET", 2 * h**3 * (budget * n + 16))
    rng = np.random.default_rng(h)
    W = rng.standard_normal((n, h, h)) / np.sqrt(h)
    if budget is None:
        W[1] = np.triu(W[1], 1) * 3.0 + 0.95 * np.eye(h)  # a transient peak well inside (1, T)
        W *= rng.uniform(0.9, 1.1, n)[:, None, None]
    else:  # rho >= 1: no trial ends its squarings early, so each is left the same budget alone
        rho = np.abs(np.linalg.eigvals(W)).max(axis=1)
        W *= (rng.uniform(1.0, 1.01, n) / rho)[:, None, None]
    T = 5000
    batch = transient_growth(W, T)
    for i in range(n):
        alone = transient_growth(W[i : i + 1] if budget is None else np.repeat(W[i : i + 1], n, axis=0), T)
        for field in ("peak_log10", "k", "evaluated", "up_to"):
            assert getattr(alone, field)[0] == getattr(batch, field)[i], (i, field)
        assert alone.method[0] == batch.method[i]
    assert "search" in batch.method and (budget is None or "sampled" in batch.method)


def test_transient_growth_beyond_float64() -> None:
    """rho = 2, T = 3000 (scan) and 100000 (squaring): ||W^T|| = 2^T exactly in log form."""
    W = (2.0 * orthogonal(3, 7))[None]
    for T in (3000, 100_000):
        g = transient_growth(W, T)
        assert g.peak_log10[0] == pytest.approx(T * math.log10(2.0), rel=1e-12)
        assert g.k[0] == T


def test_transient_growth_budget_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """A budget of three products: the squarings and W^T are still formed (an exploding W has
    its peak at k = T, which a search stopped at k = 8 would put 1000 - 8 powers too low); the
    ternary search after them is what the budget cuts short."""
    monkeypatch.setattr(nonnormal, "SCAN_MAX_T", 0)
    monkeypatch.setattr(nonnormal, "GROWTH_BUDGET", 2 * 8**3 * 3)  # three products
    W = (1.5 * orthogonal(8, 2))[None]
    g = transient_growth(W, 1000)
    assert g.method[0] == "sampled"
    assert g.up_to[0] == 1000 and g.k[0] == 1000
    assert g.evaluated[0] == 11  # k = 1, 2, 4, ..., 512 and 1000
    assert g.peak_log10[0] == pytest.approx(1000 * math.log10(1.5), rel=1e-12)


def test_norm2_lanczos_against_svd() -> None:
    rng = np.random.default_rng(0)
    W = rng.standard_normal((2, 300, 300)) / np.sqrt(300)
    for k in (1, 2, 5):
        M = np.linalg.matrix_power(W, k)
        exact = np.linalg.svd(M, compute_uv=False)[:, 0]
        assert norm2(M) == pytest.approx(exact, rel=1e-4)
    low_rank = rng.standard_normal((1, 300, 3)) @ rng.standard_normal((1, 3, 300))  # Krylov breakdown
    assert norm2(low_rank) == pytest.approx(np.linalg.svd(low_rank, compute_uv=False)[:, 0], rel=1e-10)


def test_henrici_against_schur() -> None:
    from scipy.linalg import schur

    rng = np.random.default_rng(1)
    W = rng.standard_normal((3, 20, 20))
    W[2] = np.triu(W[2])
    got = henrici(W, spectrum(W).eigenvalues)
    for i in range(3):
        T, _ = schur(W[i], output="complex")
        expected = np.linalg.norm(np.triu(T, 1)) / np.linalg.norm(W[i])
        assert got[i] == pytest.approx(expected, rel=1e-8)
    normal = np.stack([orthogonal(20, 1), (W[0] + W[0].T), np.zeros((20, 20))])
    assert henrici(normal, spectrum(normal).eigenvalues) == pytest.approx(0.0, abs=1e-6)


def test_numerical_abscissa_against_eigvalsh() -> None:
    W = np.random.default_rng(2).standard_normal((3, 15, 15))
    expected = np.linalg.eigvalsh((W + np.swapaxes(W, 1, 2)) / 2)[:, -1]
    assert numerical_abscissa(W) == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------- alignment


def test_symmetric_alignment_rate() -> None:
    """Symmetric W = V diag(lam) V^T: tan theta_k = sqrt(sum_{i>1} (c_i lam_i^k)^2) / |c_1 lam_1^k|
    with c = V^T g_T, and it decays at the rate |lambda_2 / lambda_1|."""
    h = 6
    lam = np.array([1.0, 0.8, -0.5, 0.3, 0.2, -0.1])
    V = orthogonal(h, 5)
    W = V @ np.diag(lam) @ V.T
    T = 100
    an = run(W, T=T)
    th = an.theory
    assert th is not None and th.tan_log10 is not None and th.projection is not None
    assert th.dominant.dimension[0] == 1
    assert th.dominant.ratio[0] == pytest.approx(0.8, rel=1e-12)
    assert th.dominant.rate[0] == pytest.approx(math.log(0.8), rel=1e-12)
    g = an.grads.dL_dh_m[0, -1]  # type: ignore[index]
    c = V.T @ g
    k = np.arange(T)
    comp = c[None, :] * lam[None, :] ** k[:, None]
    tan = np.linalg.norm(comp[:, 1:], axis=1) / np.abs(comp[:, 0])
    got = th.tan_log10[0, ::-1]  # index = lag
    ok = tan > 1e-11  # above the rounding floor
    assert ok.sum() > 60
    assert got[ok] == pytest.approx(np.log10(tan[ok]), abs=1e-6)
    assert th.projection[0, ::-1][ok] == pytest.approx(1 / np.sqrt(1 + tan[ok] ** 2), abs=1e-9)
    # the bound of the chapter's exercise, and the asymptotic rate
    assert np.all(got[ok] <= got[0] + k[ok] * math.log10(0.8) + 1e-9)
    late = ok & (k >= 30)
    slope = np.polyfit(k[late], got[late], 1)[0] * LN10
    assert slope == pytest.approx(math.log(0.8), abs=1e-6)


def test_dominant_subspace_against_eig() -> None:
    """Real and complex leading eigenvalues: the projector equals the one from numpy.linalg.eig."""
    rng = np.random.default_rng(0)
    W = rng.standard_normal((8, 30, 30)) / np.sqrt(30)
    sp = spectrum(W)
    dom = dominant_subspace(W, sp.eigenvalues)
    kinds = set()
    for i in range(8):
        vals, vecs = np.linalg.eig(W[i].T)
        x = vecs[:, np.argmax(np.abs(vals))]
        pair = np.abs(vals[np.argmax(np.abs(vals))].imag) > 0
        kinds.add(bool(pair))
        q, _ = np.linalg.qr(np.stack([x.real, x.imag], 1) if pair else x.real[:, None])
        d = dom.dimension[i]
        assert d == (2 if pair else 1)
        P_ref = q @ q.T
        P = dom.basis[i, :, :d] @ dom.basis[i, :, :d].T
        assert np.abs(P - P_ref).max() < 1e-9
    assert kinds == {True, False}


def test_alignment_edge_cases() -> None:
    dom = dominant_subspace(np.diag([2.0, 1.0])[None], np.array([[2.0 + 0j, 1.0 + 0j]]))
    g = np.array([[[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.6, 0.8]]])
    none = np.empty((1, 0))
    proj, tan = alignment([BackwardBlock(0, 4, g, none, g, none, none, none, none, none, None)], 4, dom)
    assert proj[0, 0] == 1.0 and tan[0, 0] < -15  # aligned (to the eigenvector's rounding)
    assert proj[0, 1] < 1e-15 and tan[0, 1] > 15  # orthogonal
    assert np.isnan(proj[0, 2]) and np.isnan(tan[0, 2])  # g = 0
    assert proj[0, 3] == pytest.approx(0.6) and tan[0, 3] == pytest.approx(math.log10(0.8 / 0.6))
    nil = dominant_subspace(np.array([[[0.0, 1.0], [0.0, 0.0]]]), np.zeros((1, 2), complex))
    assert nil.dimension[0] == 0 and np.isnan(nil.ratio[0])


def test_mean_loss_chain_is_a_second_backward_pass() -> None:
    spec = Spec(cell="tanh", loss="mean", T=30, hidden=5, seed=1)
    an = analyze(spec)
    fwd, _ = bptt(an.net, CELLS["tanh"], "mean")
    chain = backward(an.net, fwd, CELLS["tanh"], "last")
    _, last = bptt(an.net, CELLS["tanh"], "last")
    assert chain.dL_dh_s == pytest.approx(last.dL_dh_s, rel=1e-13)


@pytest.mark.parametrize("loss", ["last", "mean"])
def test_theory_after_a_checkpointed_pass(loss: str) -> None:
    """A checkpointed pass recomputes what it did not keep (the Lyapunov exponents run on its
    segments; effective memory and alignment on recomputed backward blocks): every quantity
    is the same, bit for bit, as after a stored pass."""
    from bptt_cli.theory.predict import theory

    spec = Spec(cell="tanh", loss=loss, T=600, hidden=10, gain=1.4, trials=2, seed=8)
    an = analyze(spec)
    cell = CELLS["tanh"]
    fwd, grads = bptt(an.net, cell, loss)
    fwd_ck, grads_ck = bptt(an.net, cell, loss, checkpoint_every=256)
    stored = theory(spec, an.net, fwd, grads, an.spectrum, 3)
    ck = theory(spec, an.net, fwd_ck, grads_ck, an.spectrum, 3)
    for name in stored.rates:
        np.testing.assert_array_equal(ck.rates[name], stored.rates[name])
    assert ck.lyapunov is not None and stored.lyapunov is not None
    np.testing.assert_array_equal(ck.lyapunov.exponents, stored.lyapunov.exponents)
    for name in ("vanish", "explode", "effective_memory", "projection", "tan_log10"):
        np.testing.assert_array_equal(getattr(ck, name), getattr(stored, name))
    assert np.isfinite(stored.effective_memory).all() and stored.projection is not None


def test_dominant_subspace_falls_back_when_the_shift_is_an_eigenvalue() -> None:
    """lambda_1 = -1 and another eigenvalue exactly at the shift -1 + 1e-10: the shifted matrix
    is singular, and numpy.linalg.eig gives the eigenvector instead."""
    W = np.diag([-1.0, -1.0 + 1e-10, 0.5])[None]
    dom = dominant_subspace(W, spectrum(W).eigenvalues)
    assert dom.dimension[0] == 1
    assert abs(dom.basis[0, 0, 0]) == pytest.approx(1.0)
    assert dom.ratio[0] == pytest.approx(1.0 - 1e-10)
