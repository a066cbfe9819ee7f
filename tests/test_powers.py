"""The linear cell's block products (bptt_cli.core.powers): the same gradients as step by step.

By default the block products only run for hidden sizes of 512 and more; here they are forced
onto small networks so that the independent oracles (the plain float64 recursion, 50-digit
mpmath) can check them, and compared with the step-by-step core at the real threshold.
"""

from __future__ import annotations

from fractions import Fraction

import mpmath as mp
import numpy as np
import pytest
import reference as ref
from adapters import LN10, PARAMS, dL_dh, network, param_grads, random_trial, run

from bptt_cli.analysis.analyze import analyze
from bptt_cli.core import powers as block
from bptt_cli.core.cells import CELLS
from bptt_cli.core.elman import POWER_K, bptt, forward
from bptt_cli.core.network import Network, Spec, build_network

LOSSES = ("last", "mean")


@pytest.fixture
def everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Block products for every size and input rank."""
    monkeypatch.setattr(block, "MIN_HIDDEN", 1)
    monkeypatch.setattr(block, "MIN_STEPS_PER_UNIT", 0)
    monkeypatch.setattr(block, "MAX_RANK", 1e9)


def _norm_close(got: np.ndarray, want: np.ndarray, rtol: float) -> bool:
    return bool(np.linalg.norm(got - want) <= rtol * np.linalg.norm(want))


def test_powers_are_matrix_powers() -> None:
    rng = np.random.default_rng(0)
    M = rng.standard_normal((2, 6, 6)) / np.sqrt(6) * 1.3
    C = rng.standard_normal((2, 3, 6))
    pw = block.powers(M, C, 8)
    assert pw.K_m is not None and pw.K_s is not None and pw.usable.all()
    for i in range(2):
        P = np.linalg.matrix_power(M[i], 8)
        assert _norm_close(pw.P_m[i] * np.exp(pw.P_s[i]), P, 1e-13)
        top = pw.K_s[i].max()
        for m in range(8):
            K = pw.K_m[i, 3 * m : 3 * m + 3] * np.exp(top)
            assert _norm_close(K, C[i] @ np.linalg.matrix_power(M[i], m), 1e-13)
    with pytest.raises(ValueError, match="power of 2"):
        block.powers(M, None, 6)


def non_normal(h: int = 10) -> np.ndarray:
    """``V D V^-1``, exactly in float64: ``V`` unit upper triangular with integer entries up to
    300 (so ``V^-1`` is an integer matrix too), ``D = diag(j / 16)`` with eigenvalues in
    [0.375, 0.9375]. Entries near 1e15 whose products cancel: squaring loses most digits."""
    rng = np.random.default_rng(0)
    V = np.eye(h, dtype=object) + np.triu(rng.integers(-300, 301, (h, h)), 1).astype(object)
    V_inv = np.eye(h, dtype=object)
    for j in range(h):  # back-substitution in integers
        for i in range(j - 1, -1, -1):
            V_inv[i, j] = -sum(V[i, m] * V_inv[m, j] for m in range(i + 1, j + 1))
    D = np.diag([Fraction(j, 16) for j in range(16 - h, 16)])
    exact = V.dot(D).dot(V_inv)
    M = exact.astype(float)
    assert all(Fraction(float(e)) == e for e in exact.flat)  # representable: M is V D V^-1
    return M


def test_a_strongly_non_normal_matrix_is_refused() -> None:
    """The check of M^k against k matrix-vector products refuses it (it then goes step by step);
    mpmath confirms that repeated squaring really lost digits (far more than the check's 1e-10)."""
    M = non_normal()
    pw = block.powers(M[None], None, 32)
    assert not pw.usable[0]
    with mp.workdps(60):
        exact = np.array((mp.matrix(M.tolist()) ** 32).tolist(), dtype=float)
    squared = pw.P_m[0] * np.exp(pw.P_s[0])
    assert np.linalg.norm(squared - exact) > 100 * block.CHECK_TOL * np.linalg.norm(exact)
    assert block.powers(M[None] / 4, None, 32).usable[0] == pw.usable[0]  # scale-free (exact / 4)


@pytest.mark.usefixtures("everywhere")
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("gain", [0.5, 1.0, 1.3])
def test_forced_block_products_against_the_reference_recursion(loss: str, gain: float) -> None:
    """T = 100 (the reference's rounding bound, a recursion on |W|, must stay in float64)."""
    T = 100
    rng = np.random.default_rng(int(gain * 10) + len(loss))
    trials = [random_trial(rng, 12, 2, 2, T, gain=gain) for _ in range(2)]
    net = network(trials)
    fwd = forward(net, CELLS["identity"])
    assert fwd.powers is not None and fwd.powers.usable.all()
    grads = run(net, "identity", loss)
    got_h, got_p = dL_dh(grads), param_grads(grads)
    for i, (p, x, y) in enumerate(trials):
        r = ref.bptt(p, x, y, "identity", loss)
        rtol = 1e-13 * T
        for t in range(T):
            err = np.linalg.norm(got_h[i, t] - r.dL_dh[t])
            assert err <= rtol * np.linalg.norm(r.dL_dh_mag[t]), (t, err)
        for name in PARAMS:
            assert np.linalg.norm(got_p[name][i] - r.grads[name]) <= rtol * r.grads_mag[name], name
        assert grads.gain_ln[i] == pytest.approx(r.gain_ln, abs=1e-10)


@pytest.mark.usefixtures("everywhere")
@pytest.mark.parametrize("loss", LOSSES)
def test_forced_block_products_beyond_float64_against_mpmath(loss: str) -> None:
    """Radius 1.5, T = 3000: states beyond 10^500, gradients near 10^1055, to 1e-9 in log10."""
    spec = Spec(cell="identity", loss=loss, radius=1.5, T=3000, hidden=3, inputs_dim=2, outputs_dim=2,
                bias=0.5, seed=1)
    an = analyze(spec)
    net = an.net
    assert forward(net, CELLS["identity"]).powers is not None
    p = {k: getattr(net, k)[0] for k in PARAMS}
    mp = ref.mp_bptt(p, net.x[0], net.y[0], "identity", loss)
    fwd, _ = bptt(net, CELLS["identity"], loss)
    np.testing.assert_allclose(fwd.h_s[0, 1:] / LN10, mp.h_log10[1:], rtol=0, atol=1e-9)
    np.testing.assert_allclose(an.grad_h_log10[0], mp.grad_h_log10, rtol=0, atol=1e-9)
    assert an.grad_h_log10[0].max() > 1000
    for name in PARAMS:
        assert an.grad_params_log10[name][0] == pytest.approx(mp.grad_params_log10[name], abs=1e-9), name
    assert an.gain_log10[0] == pytest.approx(mp.gain_log10, abs=1e-9)


def _same(a: Network, b: Network, loss: str, **kw: object) -> None:
    _, ga = bptt(a, CELLS["identity"], loss)
    _, gb = bptt(b, CELLS["identity"], loss, **kw)  # type: ignore[arg-type]
    assert np.array_equal(ga.dL_dh_s, gb.dL_dh_s)
    assert np.array_equal(ga.gain_ln, gb.gain_ln, equal_nan=True)
    for name in PARAMS:
        assert np.array_equal(ga.params[name][0], gb.params[name][0]), name


@pytest.mark.usefixtures("everywhere")
@pytest.mark.parametrize("loss", LOSSES)
def test_forced_block_products_checkpointed_and_batched_bit_for_bit(loss: str) -> None:
    """T not a multiple of the sub-block; one trial's W_hh refused by the check (non-normal)."""
    spec = Spec(cell="identity", loss=loss, T=1000 + POWER_K // 2 + 3, hidden=10, inputs_dim=2,
                outputs_dim=2, trials=3, gain=1.1, seed=4)
    net = build_network(spec)
    W = net.W_hh.copy()
    W[1] = non_normal() * 2.0**-56  # refused by the check; scaled (exactly) to keep the states in range
    net = net.replace(W_hh=W)
    assert not forward(net, CELLS["identity"]).powers.usable[1]  # type: ignore[union-attr]
    _same(net, net, loss, checkpoint_every=256)
    _, together = bptt(net, CELLS["identity"], loss)
    for i in range(3):
        alone = net.replace(**{k: getattr(net, k)[i : i + 1] for k in (*PARAMS, "x", "y")})
        _, g = bptt(alone, CELLS["identity"], loss)
        assert np.array_equal(g.dL_dh_s[0], together.dL_dh_s[i])
        assert np.array_equal(g.gain_ln[0], together.gain_ln[i], equal_nan=True)


@pytest.mark.slow
@pytest.mark.parametrize("loss", LOSSES)
def test_block_products_at_their_size_agree_with_step_by_step(
    loss: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hidden 512, T 2048 (the default thresholds), radius 1.2: the two paths agree to 1e-11 in ln."""
    net = build_network(Spec(cell="identity", loss=loss, T=2048, hidden=512, radius=1.2, seed=2))
    assert forward(net, CELLS["identity"]).powers is not None
    _, fast = bptt(net, CELLS["identity"], loss)
    monkeypatch.setattr(block, "MIN_HIDDEN", 10**9)
    assert forward(net, CELLS["identity"]).powers is None
    _, step = bptt(net, CELLS["identity"], loss)
    np.testing.assert_allclose(fast.dL_dh_s, step.dL_dh_s, rtol=0, atol=1e-11)
    np.testing.assert_allclose(fast.gain_ln, step.gain_ln, rtol=0, atol=1e-11)
