"""bptt_cli's gradients against two independent oracles, for every cell and loss.

1. Central finite differences of the loss (``reference.fd_params``, ``reference.fd_dL_dh``):
   checks the formulas themselves. Step 1e-5 in float64: truncation error ~1e-10 relative,
   rounding ~1e-11 L; the tolerances (1e-6 relative plus 1e-8 L) leave a wide margin.
2. The textbook recursion in plain float64 (``reference.bptt``): checks the arithmetic of
   the scaled implementation to ~1e-12 relative (observed ~1e-14).

Shapes (h, d, q, T, trials), scales and seeds are drawn by hypothesis.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import reference as ref
from adapters import PARAMS, Trial, dL_dh, network, param_grads, random_trial, run
from hypothesis import assume, given
from hypothesis import strategies as st

CELLS = ("identity", "tanh", "relu", "sigmoid")
LOSSES = ("last", "mean")
FD_EPS = 1e-4
FD_RTOL = 1e-6  # against the size of the gradient (fourth-order differences: truncation ~ eps^4)
FD_ATOL_PER_LOSS = 1e-9  # rounding: ~1.5e-16 L / eps = 1.5e-12 L per entry
REF_RTOL = 1e-12  # where no sum cancels (fixed cases below)
REF_RTOL_PER_STEP = 1e-13  # times T, against the magnitudes recursion


@st.composite
def trials_strategy(draw: st.DrawFn, max_T: int = 12, max_trials: int = 3) -> list[Trial]:
    """Several trials of one shape: (params, x, y) each, moderate numbers."""
    h = draw(st.integers(1, 5))
    d = draw(st.integers(1, 3))
    q = draw(st.integers(1, 3))
    T = draw(st.integers(1, max_T))
    n = draw(st.integers(1, max_trials))
    gain = draw(st.floats(0.2, 1.8))
    bias = draw(st.floats(0.0, 1.0))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    return [random_trial(rng, h, d, q, T, gain, bias) for _ in range(n)]


def _no_relu_kinks(cell: str, r: ref.Reference) -> None:
    """Finite differences across a relu kink are meaningless: keep every |a| > 1e-2 (the
    stencil moves h_t by up to 2e-4, which moves a pre-activation by up to ~1e-3)."""
    if cell == "relu":
        assume(r.a.size == 0 or float(np.min(np.abs(r.a))) > 1e-2)


def _close(actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float = 0.0) -> bool:
    """``||actual - expected|| <= rtol ||expected|| + atol`` (norm-wise, as BPTT's error is)."""
    err = float(np.linalg.norm(actual - expected))
    ok = err <= rtol * float(np.linalg.norm(expected)) + atol
    if not ok:
        print(f"error {err:.3g}, relative {err / max(float(np.linalg.norm(expected)), 1e-300):.3g}")
    return ok


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("cell", CELLS)
@given(trials=trials_strategy())
def test_against_finite_differences(cell: str, loss: str, trials: list[Trial]) -> None:
    """dL/dh_t (mantissa * e^scale) and all five parameter gradients vs central differences."""
    refs = [ref.bptt(p, x, y, cell, loss) for p, x, y in trials]
    for r in refs:
        _no_relu_kinks(cell, r)
    grads = run(network(trials), cell, loss)
    got_h, got_p = dL_dh(grads), param_grads(grads)
    for i, (p, x, y) in enumerate(trials):
        L = refs[i].loss
        fd_h = ref.fd_dL_dh(p, x, y, cell, loss, FD_EPS)
        for t in range(x.shape[0]):
            assert _close(got_h[i, t], fd_h[t], FD_RTOL, FD_ATOL_PER_LOSS * L * math.sqrt(fd_h.shape[1])), (
                f"trial {i} t={t + 1}: {got_h[i, t]} vs finite differences {fd_h[t]}"
            )
        fd_p = ref.fd_params(p, x, y, cell, loss, FD_EPS)
        for name in PARAMS:
            atol = FD_ATOL_PER_LOSS * L * math.sqrt(fd_p[name].size)
            assert got_p[name][i].shape == fd_p[name].shape
            assert _close(got_p[name][i], fd_p[name], FD_RTOL, atol), (
                f"trial {i} dL/d{name}: {got_p[name][i]} vs finite differences {fd_p[name]}"
            )


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("cell", CELLS)
@given(trials=trials_strategy(max_T=40, max_trials=4))
def test_against_reference_recursion(cell: str, loss: str, trials: list[Trial]) -> None:
    """Every dL/dh_t, every parameter gradient, the loss and the gain, to float64 rounding.

    Tolerance: ``REF_RTOL_PER_STEP * T`` times the same recursion run on magnitudes
    (``reference.Reference.*_mag``), i.e. ~1e-12 relative for T ~ 10 when nothing cancels,
    and not fooled by a sum that cancels to a small result (where both float64 computations
    legitimately lose relative accuracy). Observed: below 1e-14 * T.
    """
    grads = run(network(trials), cell, loss)
    got_h, got_p = dL_dh(grads), param_grads(grads)
    for i, (p, x, y) in enumerate(trials):
        T = x.shape[0]
        r = ref.bptt(p, x, y, cell, loss)
        rtol = REF_RTOL_PER_STEP * T
        for t in range(T):
            if not np.any(r.dL_dh[t]):
                # an exact zero (dead relu units): reported as such, scale -inf
                assert not np.any(got_h[i, t]) and grads.dL_dh_s[i, t] == -np.inf
                continue
            assert _close(got_h[i, t], r.dL_dh[t], 0.0, rtol * np.linalg.norm(r.dL_dh_mag[t])), (
                f"trial {i} t={t + 1}: {got_h[i, t]} vs reference {r.dL_dh[t]}"
            )
        for name in PARAMS:
            assert _close(got_p[name][i], r.grads[name], 0.0, rtol * r.grads_mag[name]), (
                f"trial {i} dL/d{name}: {got_p[name][i]} vs reference {r.grads[name]}"
            )
        e_norm = math.sqrt(2 * r.loss * (T if loss == "mean" else 1))
        cancel = max(1.0, float(np.max(r.error_mag)) / e_norm) if e_norm > 0 else 1.0
        assert grads.loss_ln[i] == pytest.approx(math.log(r.loss), abs=1e-12 * cancel)
        if np.any(r.JTg):
            g = r.dL_dh[-1]
            cond = np.linalg.norm(r.JTg_mag) / np.linalg.norm(r.JTg) + np.linalg.norm(
                r.dL_dh_mag[-1]
            ) / np.linalg.norm(g)
            assert grads.gain_ln[i] == pytest.approx(r.gain_ln, abs=rtol * cond)
            assert r.gain_ln_rescaled == pytest.approx(r.gain_ln, abs=rtol * cond)
        else:
            assert grads.gain_ln[i] == -np.inf, "J^T g = 0 exactly must give gain -inf"


@pytest.mark.parametrize("cell", CELLS)
@given(trials=trials_strategy(max_T=30, max_trials=5), loss=st.sampled_from(LOSSES))
def test_trial_axis_equals_trials_one_by_one(cell: str, loss: str, trials: list[Trial]) -> None:
    """n trials at once give, bit for bit, what each trial gives alone.

    Bitwise, because the project promises the same numbers however work is split
    (a sweep may batch the trials of a grid point differently from the CLI).
    """
    together = run(network(trials), cell, loss)
    for i, trial in enumerate(trials):
        alone = run(network([trial]), cell, loss)
        assert np.array_equal(together.dL_dh_s[i], alone.dL_dh_s[0])
        assert np.array_equal(together.dL_dh_m[i], alone.dL_dh_m[0])
        for name in PARAMS:
            m_n, s_n = together.params[name]
            m_1, s_1 = alone.params[name]
            assert np.array_equal(m_n[i], m_1[0]) and np.array_equal(s_n[i], s_1[0]), name
        assert np.array_equal(together.loss_ln[i], alone.loss_ln[0])
        assert np.array_equal(together.gain_ln[i], alone.gain_ln[0], equal_nan=True)


@pytest.mark.parametrize("cell", CELLS)
def test_mantissas_are_unit_and_scales_finite(cell: str) -> None:
    """The documented representation: unit-norm mantissas, finite scales except exact zeros."""
    rng = np.random.default_rng(7)
    trials = [random_trial(rng, 6, 3, 2, 25, gain=1.3) for _ in range(3)]
    for loss in LOSSES:
        grads = run(network(trials), cell, loss)
        assert grads.dL_dh_m is not None and grads.dL_da_m is not None
        norms = np.linalg.norm(grads.dL_dh_m, axis=-1)
        finite = np.isfinite(grads.dL_dh_s)
        np.testing.assert_allclose(norms[finite], 1.0, rtol=1e-13)
        assert not np.any(grads.dL_dh_m[~finite])
        assert not np.any(np.isnan(grads.dL_dh_s)) and not np.any(grads.dL_dh_s == np.inf)
        # dL/da_t = diag(phi'(a_t)) dL/dh_t, also against the reference
        da = grads.dL_da_m * np.exp(grads.dL_da_s)[..., None]
        for i, (p, x, y) in enumerate(trials):
            r = ref.bptt(p, x, y, cell, loss)
            for t in range(25):
                if np.any(r.dL_da[t]):
                    assert _close(da[i, t], r.dL_da[t], REF_RTOL)
                else:
                    assert grads.dL_da_s[i, t] == -np.inf


def test_T_equals_one_gain_is_zero() -> None:
    """With T = 1 there is no step Jacobian: J = I and the gain is exactly 0."""
    rng = np.random.default_rng(3)
    trial = random_trial(rng, 4, 2, 3, 1)
    for cell in CELLS:
        for loss in LOSSES:
            grads = run(network([trial]), cell, loss)
            assert grads.gain_ln[0] == 0.0
            r = ref.bptt(*trial, cell, loss)
            assert _close(dL_dh(grads)[0, 0], r.dL_dh[0], REF_RTOL)
            # h_0 = 0: dL/dW_hh is an exact zero
            m, s = grads.params["W_hh"]
            assert s[0] == -np.inf or not np.any(m[0])


@pytest.mark.parametrize("cell", CELLS)
def test_checkpointed_pass_equals_stored_pass(cell: str) -> None:
    """``checkpoint_every`` recomputes segments: the log scales and parameter gradients are the
    same numbers as the stored pass (documented bit for bit), and both match the reference."""
    rng = np.random.default_rng(11)
    trials = [random_trial(rng, 5, 2, 3, 700, gain=1.0) for _ in range(2)]
    for p, _, _ in trials:  # spectral norm 0.98: nothing leaves float64 in the reference
        p["W_hh"] *= 0.98 / np.linalg.norm(p["W_hh"], 2)
    net = network(trials)
    for loss in LOSSES:
        stored = run(net, cell, loss)
        ck = run(net, cell, loss, checkpoint_every=256)
        assert np.array_equal(stored.dL_dh_s, ck.dL_dh_s)
        assert np.array_equal(stored.dL_da_s, ck.dL_da_s)
        for name in PARAMS:
            assert np.array_equal(stored.params[name][0], ck.params[name][0])
            assert np.array_equal(stored.params[name][1], ck.params[name][1])
        assert np.array_equal(stored.gain_ln, ck.gain_ln)
        assert np.array_equal(stored.loss_ln, ck.loss_ln)
        r = ref.bptt(*trials[1], cell, loss)
        peak = np.max(np.abs(r.dL_dh), axis=-1, keepdims=True)
        fits = peak[:, 0] > 1e-290  # where the float64 reference has not underflowed
        norms = np.linalg.norm(r.dL_dh / np.where(fits[:, None], peak, 1.0), axis=-1) * peak[:, 0]
        assert fits[-100:].all()
        np.testing.assert_allclose(ck.dL_dh_s[1][fits], np.log(norms[fits]), rtol=0, atol=1e-10)
