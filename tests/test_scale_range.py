"""Matrices and inputs anywhere in float64's range: the theory quantities are scale-covariant, and
what cannot be represented is bad input, never a warning, a traceback or a silent null.

Every test runs with warnings as errors (pyproject), so a RuntimeWarning of numpy fails it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from clitools import assert_bad_input, bptt, bptt_json

from bptt_cli.core.cells import CELLS
from bptt_cli.theory.alignment import dominant_subspace
from bptt_cli.theory.meanfield import mean_field
from bptt_cli.theory.nonnormal import henrici, numerical_abscissa, transient_growth
from bptt_cli.theory.spectra import spectrum

C = 2.0**900  # an exact scale: c W has the same mantissas as W
LOG10_C = 900 * math.log10(2.0)


def non_normal(seed: int, h: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.triu(rng.standard_normal((h, h)) * 2.0, 1) + np.diag(rng.uniform(0.5, 1.2, h))


def test_nonnormality_is_scale_covariant() -> None:
    """Henrici's departure is scale-free and the abscissa scales with c; both were inf/NaN
    (with RuntimeWarnings) once the entries' squares overflowed."""
    W = non_normal(0)[None]
    big = C * W
    assert np.array_equal(henrici(big, spectrum(big).eigenvalues), henrici(W, spectrum(W).eigenvalues))
    assert numerical_abscissa(big)[0] == pytest.approx(C * numerical_abscissa(W)[0], rel=1e-14)


@pytest.mark.parametrize("T", [50, 5000])  # a scan of every k, and the squaring search
def test_transient_growth_of_a_huge_matrix_against_numpy_powers(T: int) -> None:
    """``||(c W)^k|| = c^k ||W^k||``: with c = 2^900 the peak is at k = T (c^k wins), and its
    log10 is T log10 c + log10 ||W^T|| from numpy's own matrix powers of W."""
    W = non_normal(1) / 1.2  # rho = 1: ||W^k|| stays in float64 for numpy
    g = transient_growth((C * W)[None], T)
    exact = T * LOG10_C + math.log10(np.linalg.norm(np.linalg.matrix_power(W, T), 2))
    assert g.k[0] == T
    assert g.peak_log10[0] == pytest.approx(exact, rel=1e-12)


def test_dominant_subspace_of_a_huge_matrix() -> None:
    """Inverse iteration on (W^T - mu)(W^T - conj mu) overflowed for entries near 1e154."""
    W = np.random.default_rng(1).standard_normal((1, 8, 8))  # lambda_1 one of a complex pair
    big = C * W
    small, large = (
        dominant_subspace(W, spectrum(W).eigenvalues),
        dominant_subspace(big, spectrum(big).eigenvalues),
    )
    d = int(small.dimension[0])
    assert d == int(large.dimension[0]) == 2
    P_small = small.basis[0, :, :d] @ small.basis[0, :, :d].T
    P_large = large.basis[0, :, :d] @ large.basis[0, :, :d].T
    np.testing.assert_allclose(P_large, P_small, rtol=0, atol=1e-10)
    assert large.ratio[0] == pytest.approx(small.ratio[0], rel=1e-12)


def test_mean_field_variances_near_the_top_of_float64() -> None:
    """sigma_w^2 = ||W||_F^2 / h of entries near 1e153 is about 1e306: representable, though the
    entries' squares summed directly overflow."""
    rng = np.random.default_rng(4)
    n, h, d, T = 1, 16, 3, 5
    W, W_hx, b, x = (
        rng.standard_normal((n, h, h)),
        rng.standard_normal((n, h, d)),
        np.zeros((n, h)),
        rng.standard_normal((n, T, d)),
    )
    mf_small = mean_field(CELLS["identity"], W / 4, W_hx, b, x)
    mf_big = mean_field(CELLS["identity"], W * 2.0**508, W_hx, b, x)
    assert mf_big.weight_variance[0] == pytest.approx(mf_small.weight_variance[0] * 2.0**1020, rel=1e-14)
    assert math.isfinite(mf_big.weight_variance[0]) and mf_big.weight_variance[0] > 1e306
    # beyond float64: that trial's prediction is NaN (null), not inf
    mf_over = mean_field(CELLS["identity"], W * 2.0**520, W_hx, b, x)
    assert np.isnan(mf_over.rate[0]) and np.isnan(mf_over.q_star[0])


def test_analyze_radius_1e300_is_exact_and_quiet() -> None:
    """An orthogonal W_hh at radius 1e300: ||dL/dh_1|| / ||dL/dh_T|| = 1e300^(T-1) exactly, every
    theory quantity finite, nothing on stderr (the alignment step raised OverflowError)."""
    T = 20
    result = bptt(
        "analyze",
        "--ensemble",
        "orthogonal",
        "--radius",
        "1e300",
        "--hidden",
        8,
        "--T",
        T,
        "--format",
        "json",
    )
    assert result.exit_code == 0 and result.stderr == "", result.stderr
    rec = bptt_json("--ensemble", "orthogonal", "--radius", "1e300", "--hidden", 8, "--T", T)
    assert rec["summary"]["gain_log10"] == pytest.approx((T - 1) * 300.0, abs=1e-9)
    trial = rec["trials"][0]
    nn = trial["nonnormality"]
    assert nn["henrici"] < 1e-6  # normal
    assert nn["peak_growth_k"] == T and nn["peak_growth_log10"] == pytest.approx(T * 300.0, abs=1e-9)
    assert nn["numerical_abscissa"] <= 1e300 * (1 + 1e-12)
    assert trial["alignment"]["dimension"] in (1, 2) and all(
        p is not None for p in trial["alignment"]["projection"]
    )
    assert trial["rates"]["gelfand"] == pytest.approx(300 * math.log(10), rel=1e-12)


def test_analyze_huge_gain_and_bias_give_no_warning() -> None:
    """gain 1e30 (relu: q* = inf, chi_1 = sigma_w^2 / 2) and bias 1e300 (tanh: the bias
    variance is beyond float64, so the mean field is null) ran with RuntimeWarnings."""
    rec = bptt_json("--cell", "relu", "--gain", "1e30", "--hidden", 8, "--T", 10)
    mf = rec["trials"][0]["mean_field"]
    assert rec["trials"][0]["rates"]["mean_field"] == pytest.approx(
        0.5 * math.log(mf["weight_variance"] / 2), rel=1e-12
    )
    rec = bptt_json("--cell", "tanh", "--bias", "1e300", "--hidden", 8, "--T", 10)
    trial = rec["trials"][0]
    assert trial["rates"]["mean_field"] is None and trial["mean_field"]["bias_variance"] is None
    assert all(v is not None for v in trial["grad_h_log10"])


def test_an_input_drive_beyond_float64_is_bad_input(tmp_path: Path) -> None:
    """W_hx x_t of 1e400: it was computed in plain floats, and every gradient came out null
    (verdict 'undefined') with RuntimeWarnings; for tanh even ln phi'(a) would not fit."""
    rng = np.random.default_rng(5)
    weights, inputs = tmp_path / "w.npz", tmp_path / "x.npy"
    np.savez(weights, W_hh=rng.standard_normal((8, 8)) / 3, W_hx=rng.standard_normal((8, 3)) * 1e200)
    x = rng.standard_normal((10, 3))
    x[4] *= 1e200
    np.save(inputs, x)
    for cell in ("identity", "tanh"):
        assert_bad_input(
            bptt("analyze", "--cell", cell, "--weights", weights, "--inputs", inputs),
            "W_hx x_t + b_h",
            "overflows float64",
            "t = 5",
        )
    x[4] /= 1e200  # the same row at its normal size: a drive near 1e200, which runs
    np.save(inputs, x)
    assert bptt("analyze", "--weights", weights, "--inputs", inputs, "--format", "json").exit_code == 0


def test_a_gated_input_drive_beyond_float64_is_bad_input(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    h, d = 4, 3
    weights, inputs = tmp_path / "lstm.npz", tmp_path / "x.npy"
    np.savez(
        weights,
        weight_ih_l0=rng.standard_normal((4 * h, d)) * 1e200,
        weight_hh_l0=rng.standard_normal((4 * h, h)),
        bias_ih_l0=np.zeros(4 * h),
        bias_hh_l0=np.zeros(4 * h),
    )
    np.save(inputs, rng.standard_normal((6, d)) * 1e200)
    assert_bad_input(
        bptt("analyze", "--cell", "lstm", "--weights", weights, "--inputs", inputs),
        "W_ih x_t + b_ih",
        "overflows float64",
        "t = 1",
    )


def test_targets_beyond_float64_of_the_output_bias_are_bad_input(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    weights, targets = tmp_path / "w.npz", tmp_path / "y.npy"
    np.savez(
        weights,
        W_hh=rng.standard_normal((4, 4)) / 3,
        W_qh=rng.standard_normal((2, 4)),
        b_q=np.array([1e308, 0.0]),
    )
    y = rng.standard_normal((5, 2))
    y[2, 0] = -1e308
    np.save(targets, y)
    assert_bad_input(bptt("analyze", "--weights", weights, "--targets", targets), "b_q - y_t", "t = 3")
