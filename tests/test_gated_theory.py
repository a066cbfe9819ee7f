"""The theory quantities of the gated cells against closed forms and independent computations.

- Lyapunov exponents: an LSTM whose forget gate is saturated at 1 with zero input weights
  (c_t = c_{t-1} = 0, h_t = 0: every step Jacobian is the same rank-h matrix, whose exponents
  are ln |eig(I + i o W_hg)|), a GRU whose state stays at 0 (J = z I + (1 - z) r W_hn), and a
  QR of the explicit product of the step Jacobians of small random networks;
- observed rate and horizons: the same closed forms, and least-squares fits to finite-difference
  gradients;
- effective memory: finite differences of the loss with the early steps' weight_hh_l0 split off;
- memory: the estimate against tracemalloc's peak, and refusals before anything is allocated.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from typing import Any

import gated_reference as ref
import mpmath
import numpy as np
import pytest
from clitools import assert_bad_input, bptt, bptt_json
from test_gated import network, random_trial

import bptt_cli.analysis.analyze
import bptt_cli.theory.lyapunov
from bptt_cli.analysis.analyze import analyze
from bptt_cli.analysis.memory import gated_bytes
from bptt_cli.analysis.result import GatedAnalysis
from bptt_cli.core.gated import StepJacobians, gated_bptt
from bptt_cli.core.network import GATED_PARAMS as PARAMS
from bptt_cli.core.network import GatedGiven, GatedNetwork, GatedSpec, Spec
from bptt_cli.errors import BadInput
from bptt_cli.theory.horizons import HORIZON_FACTOR, gated_effective_memory
from bptt_cli.theory.lyapunov import gated_lyapunov, start_frame, window
from bptt_cli.theory.predict import Theory, theory
from bptt_cli.theory.spectra import spectrum

CELLS = ("lstm", "gru")


def symmetric(eigenvalues: list[float], seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(eigenvalues), len(eigenvalues))))
    return q @ np.diag(eigenvalues) @ q.T


def quiet_network(cell: str, W_cand: np.ndarray, T: int, bias: dict[str, float], seed: int = 0) -> GatedSpec:
    """Zero input weights and gate biases but ``bias``; the candidate block ``W_cand``, the other
    recurrent blocks random (the state stays at 0, so they never act); ``W_qh = I``, ``b_q = 0``
    and ``y_T = -e`` with ``e = W_cand``'s eigenvectors, in increasing order of their eigenvalues,
    summed with weights 1, 2, 3, ...: the gradient ``dL/dh_T = e``. Returns the spec; the arrays
    are in ``quiet_network.given``."""
    h = W_cand.shape[0]
    gates = ("i", "f", "g", "o") if cell == "lstm" else ("r", "z", "n")
    G = len(gates)
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((G * h, h))
    k = gates.index("g" if cell == "lstm" else "n")
    W[k * h : (k + 1) * h] = W_cand
    b = np.concatenate([np.full(h, bias.get(g, 0.0)) for g in gates])
    _, vecs = np.linalg.eigh(W_cand)
    e = vecs @ np.arange(1.0, h + 1)
    y = rng.standard_normal((T, h))
    y[-1] = -e
    quiet_network.given = GatedGiven(  # type: ignore[attr-defined]
        weight_ih_l0=np.zeros((G * h, 1)), weight_hh_l0=W, bias_ih_l0=b, bias_hh_l0=np.zeros(G * h),
        W_qh=np.eye(h), b_q=np.zeros(h), x=np.zeros((T, 1)), y=y,
    )
    return GatedSpec(cell=cell, T=T, hidden=h, inputs_dim=1, outputs_dim=h)


def closed_form_log_norms(
    lam: np.ndarray, mu: np.ndarray, coef: np.ndarray, scale: float, T: int
) -> np.ndarray:
    """``ln ||dL/dh_{T-k}||`` for k = 0..T-1 when ``dL/dh_{T-k} = scale * diag(lam) diag(mu)^(k-1) c``
    for k >= 1 (in the eigenbasis) and ``dL/dh_T = c``; logsumexp, so nothing overflows."""
    k = np.arange(1, T)[:, None]
    terms = 2 * np.log(np.abs(scale * lam * coef))[None, :] + 2 * (k - 1) * np.log(np.abs(mu))[None, :]
    rest = 0.5 * np.logaddexp.reduce(terms, axis=1)
    return np.concatenate([[0.5 * np.log(np.sum(coef**2))], rest])


def horizon(log_norms: np.ndarray, sign: int) -> float:
    rel = sign * (log_norms - log_norms[0])
    hit = np.nonzero(rel > np.log(HORIZON_FACTOR))[0]
    return float(hit[0]) if hit.size else math.nan


def theory_of(spec: GatedSpec, given: GatedGiven, lyapunov: int) -> Theory:
    th = analyze(spec, given, theory=True, lyapunov=lyapunov).theory
    assert th is not None and th.lyapunov is not None
    return th


# ---------------------------------------------------------------- closed forms


def test_lstm_with_a_saturated_forget_gate_in_closed_form() -> None:
    """f = sigma(40) = 1 in float64, i = o = 1/2, g = 0, zero inputs: c_t = c_{t-1} = 0 and
    J_t^T = [W^T i o, W^T i; f o, f] = a b^T with b^T a = M = I + W_hg / 4 (W_hg symmetric).
    The exponents are ln |eig M| = ln 2, 0, ln 1/2, ln 1/4 and -inf beyond h = 4 (rank h);
    dL/dh_{T-k} = W M^(k-1) e / 4: the observed rate and the exploding horizon follow."""
    mu = np.array([2.0, -1.0, 0.5, 0.25])
    lam = 4 * (mu - 1)  # eigenvalues of W_hg
    T = 400
    spec = quiet_network("lstm", symmetric(list(lam), 1), T, {"f": 40.0})
    given = quiet_network.given  # type: ignore[attr-defined]
    th = theory_of(spec, given, 5)
    assert th.lyapunov is not None
    assert (th.lyapunov.transient, th.lyapunov.steps) == window(T, 8, 5) == (40, 360)
    np.testing.assert_allclose(th.lyapunov.exponents[0, :4], np.log(np.abs(mu)), rtol=0, atol=1e-12)
    assert th.lyapunov.exponents[0, 4] < -30  # rounding of an exactly singular direction
    # the state never moves: c_t = c_{t-1}
    an = analyze(spec, given)
    assert isinstance(an, GatedAnalysis)
    assert an.forward.c is not None and np.all(an.forward.c == 0) and np.all(an.forward.h == 0)
    # dL/dh_{T-k} in the eigenbasis of W_hg (coefficients 1, 2, 3, 4 by increasing eigenvalue)
    order = np.argsort(lam)
    ln = closed_form_log_norms(lam[order], mu[order], np.arange(1.0, 5), 0.25, T)
    np.testing.assert_allclose(an.grad_h_log10[0, ::-1] * math.log(10), ln, rtol=0, atol=1e-9)
    slope = np.polyfit(np.arange(T), ln, 1)[0]
    assert th.rates["observed"][0] == pytest.approx(slope, abs=1e-10)
    assert th.explode[0] == horizon(ln, +1) and np.isnan(th.vanish[0])


def test_gru_with_a_still_state_in_closed_form() -> None:
    """z = r = 1/2, n = tanh(0) = 0 and h_t = 0: J = z I + (1 - z) r W_hn = I/2 + W_hn/4 (the
    reset and update blocks never act). Exponents ln |eig J|; dL/dh_{T-k} = J^k e vanishes."""
    mu = np.array([0.8, -0.4, 0.2, 0.1])
    lam = 4 * (mu - 0.5)
    T = 300
    spec = quiet_network("gru", symmetric(list(lam), 2), T, {})
    given = quiet_network.given  # type: ignore[attr-defined]
    th = theory_of(spec, given, 4)
    assert th.lyapunov is not None
    np.testing.assert_allclose(th.lyapunov.exponents[0], np.log(np.abs(mu)), rtol=0, atol=1e-12)
    # J^k e = V diag(mu)^k c: the closed form with scale 1 and lam = mu (one more factor of mu)
    order = np.argsort(lam)
    ln = closed_form_log_norms(mu[order], mu[order], np.arange(1.0, 5), 1.0, T)
    an = analyze(spec, given)
    np.testing.assert_allclose(an.grad_h_log10[0, ::-1] * math.log(10), ln, rtol=0, atol=1e-9)
    assert th.rates["observed"][0] == pytest.approx(np.polyfit(np.arange(T), ln, 1)[0], abs=1e-10)
    assert th.vanish[0] == horizon(ln, -1) and np.isnan(th.explode[0])


# ---------------------------------------------------------------- Lyapunov exponents


@pytest.mark.parametrize("cell", CELLS)
def test_lyapunov_against_a_qr_of_the_explicit_product(cell: str) -> None:
    """``J_1^T ... J_T^T Q_0 = Q R_1 ... R_T``: the exponents are the log-diagonal of the R of the
    whole product minus that of the discarded transient's product, over the steps used. The
    products and their QR in 60-digit arithmetic (mpmath): in float64 the product's columns align
    within a few steps and its small R_ii are lost."""
    T, h = 24, 3
    P, x, y = random_trial(np.random.default_rng(8), cell, h=h, d=2, q=2, T=T, scale=0.6)
    net = network(cell, P, x, y)
    fwd, _ = gated_bptt(net, "last")
    jac = StepJacobians(net, fwd)
    D = jac.dim
    with mpmath.workdps(60):
        for K in (D, 2):
            ly = gated_lyapunov(net, fwd, K)
            transient, steps = window(T, D, K)
            assert (ly.transient, ly.steps) == (transient, steps) and transient + steps == T
            Y = mpmath.matrix(start_frame(D, K).tolist())
            logs = []
            for t in range(T, 0, -1):
                Y = mpmath.matrix(jac.matrix(t)[0].T.tolist()) * Y
                if t in (T - transient + 1, 1):
                    R = mpmath.qr(Y)[1]
                    logs.append(np.array([float(mpmath.log(abs(R[i, i]))) for i in range(K)]))
            want = np.sort((logs[1] - logs[0]) / steps)[::-1]  # reported largest first
            np.testing.assert_allclose(ly.exponents[0], want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_lyapunov_scaled_steps_equal_plain_steps(cell: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every QR step redone with the coefficients in log form changes nothing but rounding."""
    net = gated_network(cell, T=300, h=5, trials=2)
    fwd, _ = gated_bptt(net, "last")
    plain = gated_lyapunov(net, fwd, 4)
    monkeypatch.setattr(bptt_cli.theory.lyapunov, "TINY_LN", math.inf)  # no step is ever accepted plain
    scaled = gated_lyapunov(net, fwd, 4)
    np.testing.assert_allclose(scaled.exponents, plain.exponents, rtol=0, atol=1e-12)


def extreme_lstm(h: int, T: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Forget and output gates at sigma(-800): their values and derivatives underflow float64.
    The state stays at 0, so (as in the saturated closed form) J_t^T = a b^T with
    b^T a = e^-800 (I + W_hg / 2): the top h exponents are -800 + ln |eig(I + W_hg / 2)|."""
    P, x, y = random_trial(np.random.default_rng(4), "lstm", h=h, d=1, q=1, T=T, scale=0.5)
    P["weight_ih_l0"][:] = 0.0
    P["bias_ih_l0"] = np.repeat([0.0, -800.0, 0.0, -800.0], h)
    P["bias_hh_l0"] = np.zeros(4 * h)
    return P, x, y


def test_lyapunov_mixed_batch_equals_trials_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the trial whose gates underflow float64 is redone in log form; each trial of the
    batch gets, bit for bit, its exponents alone. The extreme one's exponents (about -800 per
    step) are beyond what the frame resolves: they come out finite, at the floor near -700."""
    T, h = 60, 2
    trials = [extreme_lstm(h, T), random_trial(np.random.default_rng(5), "lstm", h=h, d=1, q=1, T=T)]
    both = GatedNetwork(
        "lstm", *(np.stack([P[k] for P, _, _ in trials]) for k in PARAMS),
        np.stack([x for _, x, _ in trials]), np.stack([y for _, _, y in trials]),
    )
    redone: list[int] = []
    scaled = StepJacobians.apply_T_scaled

    def spy(self: Any, t: int, rows: np.ndarray, V: np.ndarray) -> Any:
        redone.extend(int(i) for i in rows)
        return scaled(self, t, rows, V)

    monkeypatch.setattr(StepJacobians, "apply_T_scaled", spy)
    fwd, _ = gated_bptt(both, "last")
    together = gated_lyapunov(both, fwd, 2)
    assert set(redone) == {0}
    for i, (P, x, y) in enumerate(trials):
        one = network("lstm", P, x, y)
        alone = gated_lyapunov(one, gated_bptt(one, "last")[0], 2)
        assert np.array_equal(together.exponents[i], alone.exponents[0])
    W_hg = trials[0][0]["weight_hh_l0"][2 * h : 3 * h]
    truth = -800 + np.log(np.abs(np.linalg.eigvals(np.eye(h) + W_hg / 2)))
    assert np.all(np.isfinite(together.exponents))
    assert np.all(truth.max() < together.exponents[0]) and np.all(together.exponents[0] < -690)


# ---------------------------------------------------------------- observed rate, effective memory


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("loss", ["last", "mean"])
def test_observed_rate_is_a_least_squares_fit_to_finite_differences(cell: str, loss: str) -> None:
    """The slope of ln ||dL/dh_{T-k}|| against k, from central differences of the last loss
    (for the mean loss too: its rate is fitted to the last step's chain)."""
    T, h = 9, 3
    P, x, y = random_trial(np.random.default_rng(12), cell, h=h, d=2, q=2, T=T, scale=0.8)
    fd = ref.fd_grad(lambda v: ref.loss(cell, P, x, y, "last", dh=v), np.zeros((T, h)))
    ln = np.log(np.linalg.norm(fd, axis=1))[::-1]
    expected = np.polyfit(np.arange(T), ln, 1)[0]
    net = network(cell, P, x, y)
    spec = GatedSpec(cell=cell, loss=loss, T=T, hidden=h, inputs_dim=2, outputs_dim=2)
    given = GatedGiven(**{k: getattr(net, k)[0] for k in (*PARAMS, "x", "y")})
    th = analyze(spec, given, theory=True).theory
    assert th is not None
    assert th.rates["observed"][0] == pytest.approx(expected, abs=1e-6)
    assert list(th.window[0]) == [0, T - 1]
    assert th.observed_of == ("dL/dh_t" if loss == "last" else "last step's chain")


@pytest.mark.parametrize("cell", CELLS)
def test_effective_memory_against_finite_differences(cell: str) -> None:
    """The part of dL/dweight_hh_l0 from steps 1..j is the gradient in a copy of the weights used
    at those steps only (central differences); the effective memory is the smallest k whose
    head (steps 1..T-k) is within 5% of the whole."""
    T, h = 10, 2
    P, x, y = random_trial(np.random.default_rng(21), cell, h=h, d=1, q=1, T=T, scale=0.9)
    W = P["weight_hh_l0"]
    heads = [np.zeros_like(W)]
    for j in range(1, T + 1):
        heads.append(ref.fd_grad(lambda V, j=j: ref.loss_early_weights(cell, P, V, j, x, y), W))
    norms = np.array([np.linalg.norm(g) for g in heads])
    expected = T - int(np.nonzero(norms <= 0.05 * norms[-1])[0].max())
    assert 1 < expected < T  # a case where the answer is neither trivial extreme
    net = network(cell, P, x, y)
    fwd, grads = gated_bptt(net, "last")
    assert gated_effective_memory(net, fwd, grads)[0] == expected
    # the mean loss's theory uses the last loss's chain: the same answer
    th = analyze(
        GatedSpec(cell=cell, loss="mean", T=T, hidden=h, inputs_dim=1, outputs_dim=1),
        GatedGiven(**P, x=x, y=y), theory=True,
    ).theory
    assert th is not None and th.effective_memory[0] == expected


def gated_network(cell: str, T: int, h: int, trials: int) -> GatedNetwork:
    from bptt_cli.core.network import build_network

    return build_network(GatedSpec(cell=cell, T=T, hidden=h, trials=trials, forget_bias=1.0, seed=3))


def test_theory_after_trials_at_once_equals_trials_one_by_one() -> None:
    spec = GatedSpec(cell="gru", loss="mean", T=300, hidden=5, trials=3, seed=9)
    together = analyze(spec, theory=True).theory
    assert together is not None and together.lyapunov is not None
    for i in range(3):
        from bptt_cli.core.network import build_network

        seq = np.random.SeedSequence(9).spawn(3)[i]
        net = build_network(GatedSpec(cell="gru", loss="mean", T=300, hidden=5), seeds=[seq])
        fwd, grads = gated_bptt(net, "mean")
        th = theory(GatedSpec(cell="gru", loss="mean", T=300, hidden=5), net, fwd, grads,
                    spectrum(net.W_hh), 4)
        assert th.lyapunov is not None
        assert np.array_equal(th.lyapunov.exponents[0], together.lyapunov.exponents[i])
        for name in ("vanish", "explode", "effective_memory", "henrici"):
            assert np.array_equal(getattr(th, name)[0], getattr(together, name)[i], equal_nan=True), name
        assert np.array_equal(th.rates["observed"][0], together.rates["observed"][i])


# ---------------------------------------------------------------- JSON and tables


def keys(obj: Any, prefix: str = "") -> set[str]:
    """Every key path of a JSON object (lists of numbers are leaves)."""
    if not isinstance(obj, dict):
        return set()
    out = set()
    for k, v in obj.items():
        out.add(prefix + k)
        out |= keys(v, prefix + k + ".")
    return out


@pytest.mark.parametrize("cell", CELLS)
def test_json_has_the_elman_theory_keys(cell: str) -> None:
    gated = bptt_json("--cell", cell, "--T", 50, "--hidden", 6, "--trials", 2, "--loss", "mean")
    elman = bptt_json("--cell", "tanh", "--T", 50, "--hidden", 6, "--trials", 2, "--loss", "mean")
    theory_keys = (
        "rates", "mean_field", "lyapunov", "horizon", "effective_memory", "nonnormality", "alignment"
    )
    for gt, et in zip(gated["trials"], elman["trials"], strict=True):
        got = keys({k: gt[k] for k in theory_keys})
        want = keys({k: et[k] for k in theory_keys})
        assert want - {k for k in want if k.startswith("mean_field.")} <= got
        rates = gt["rates"]
        assert isinstance(rates["observed"], float) and rates["observed_of"] == "last step's chain"
        for name in ("gelfand", "spectral_norm_bound", "mean_field"):
            assert rates[name] is None and rates[f"{name}_reason"]
        assert gt["mean_field"] is None
        assert len(gt["lyapunov"]["exponents"]) == 4 and gt["lyapunov"]["transient"] == 5
        assert isinstance(gt["effective_memory"], int)
        assert 0 <= gt["nonnormality"]["henrici"] <= 1
        alignment = gt["alignment"]
        assert alignment["reason"] and all(v is None for k, v in alignment.items() if k != "reason")
        assert et["rates"]["gelfand_reason"] is None and et["alignment"]["reason"] is None
    assert keys(gated["summary"]["theory"]) == keys(elman["summary"]["theory"])
    assert gated["config"]["lyapunov"] == 4
    assert gated["memory"]["stored"] is True and gated["memory"]["estimated_bytes"] > 0
    an = analyze(GatedSpec(cell=cell, T=50, hidden=6, trials=2, loss="mean"), theory=True)
    assert an.theory is not None and an.theory.lyapunov is not None
    for i, trial in enumerate(gated["trials"]):
        assert trial["lyapunov"]["exponents"] == list(an.theory.lyapunov.exponents[i])
        assert trial["rates"]["observed"] == an.theory.rates["observed"][i]


def test_table_shows_the_gated_theory() -> None:
    result = bptt("analyze", "--cell", "lstm", "--T", 60, "--hidden", 5, "--forget-bias", 1)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for text in ("observed rate", "Lyapunov exponent", "vanishing horizon", "effective memory",
                 "weight_hh_l0", "peak ||W_hg^k||_2", "n/a: no single matrix", "n/a: not carried"):
        assert text in out, text
    assert "Alignment of g_t" not in out
    assert max(len(line) for line in out.splitlines() if "|" in line and "observed" in line) <= 80


def test_lyapunov_count_is_bounded_by_the_state_size() -> None:
    small = ("--T", 20, "--hidden", 3)
    assert_bad_input(bptt("analyze", "--cell", "lstm", *small, "--lyapunov", 7), "state size 6")
    assert_bad_input(bptt("analyze", "--cell", "gru", *small, "--lyapunov", 4), "hidden size 3")
    rec = bptt_json("--cell", "lstm", *small, "--lyapunov", 6)
    assert len(rec["trials"][0]["lyapunov"]["exponents"]) == 6
    assert bptt_json("--cell", "gru", *small, "--lyapunov", 0)["trials"][0]["lyapunov"] is None


# ---------------------------------------------------------------- memory


@pytest.mark.parametrize(("cell", "loss", "T", "h"), [("lstm", "mean", 2000, 48), ("gru", "last", 2000, 64)])
def test_memory_estimate_against_tracemalloc(cell: str, loss: str, T: int, h: int) -> None:
    import tracemalloc

    spec = GatedSpec(cell=cell, loss=loss, T=T, hidden=h)
    analyze(GatedSpec(cell=cell, T=3, hidden=2), theory=True)  # imports and caches first
    tracemalloc.start()
    try:
        an = analyze(spec, theory=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert an.memory is not None and an.memory.estimated_bytes == gated_bytes(spec)
    assert 1.0 <= gated_bytes(spec) / peak <= 1.4


def never_built(*args: object, **kwargs: object) -> Any:
    raise AssertionError("the network was built: the budget must be checked first")


def test_a_long_gated_run_is_refused_before_anything_is_allocated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bptt_cli.analysis.analyze, "build_network", never_built)
    line = assert_bad_input(bptt("analyze", "--cell", "lstm", "--T", 1000000, "--hidden", 256),
                            "--cell lstm", "stores every state", "GiB", "--max-memory")
    assert "1 GiB" in line
    assert_bad_input(bptt("analyze", "--cell", "gru", "--T", 1000000, "--hidden", 256, "--max-memory", "4G"),
                     "--max-memory 4 GiB is too small", "--cell gru")
    with pytest.raises(BadInput, match="stores every state"):
        analyze(GatedSpec(cell="gru", T=10**6, hidden=256))


def test_max_memory_is_a_budget_for_gated_cells() -> None:
    spec = GatedSpec(cell="lstm", T=2000, hidden=32)
    need = gated_bytes(spec)
    rec = bptt_json("--cell", "lstm", "--T", 2000, "--hidden", 32, "--max-memory", need)
    assert rec["memory"] == {**rec["memory"], "max_memory": need, "estimated_bytes": need, "stored": True,
                             "checkpoint_every": None}
    assert_bad_input(bptt("analyze", "--cell", "lstm", "--T", 2000, "--hidden", 32, "--max-memory", need - 1),
                     "--max-memory")
    # the estimators and checkpointing still do not apply
    assert_bad_input(bptt("analyze", "--cell", "gru", "--T", 20, "--checkpoint", 256), "--checkpoint K")
    assert_bad_input(bptt("analyze", "--cell", "gru", "--T", 20, "--clip", 1), "--clip")


@pytest.mark.skipif(shutil.which("bptt") is None, reason="the bptt entry point is not installed")
def test_installed_command_refuses_a_long_lstm_run() -> None:
    exe = shutil.which("bptt")
    assert exe is not None
    done = subprocess.run([exe, "analyze", "--cell", "lstm", "--T", "1000000", "--hidden", "256"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("bptt: error: --cell lstm stores every state")


def test_elman_json_unchanged_but_for_the_added_reason_keys() -> None:
    rec = bptt_json("--cell", "tanh", "--T", 30, "--hidden", 4)
    trial = rec["trials"][0]
    assert trial["rates"]["gelfand_reason"] is None and trial["rates"]["spectral_norm_bound_reason"] is None
    assert trial["alignment"]["dimension"] == 1 and trial["alignment"]["reason"] is None
    th = analyze(Spec(cell="tanh", T=30, hidden=4), theory=True).theory
    assert th is not None and th.reasons == {} and th.matrix == "W_hh"

