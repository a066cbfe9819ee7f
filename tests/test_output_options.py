"""The output options of issue 17: ``--eigenvalues``, ``--steps K``, ``--summary-only``; and the
Lyapunov frame re-orthonormalised every few steps (the same exponents to rounding)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from clitools import bptt

import bptt_cli

ARGS = ["--T", "23", "--hidden", "5", "--trials", "2", "--cell", "tanh", "--loss", "mean"]


def analyze_json(*args: str) -> dict[str, Any]:
    result = bptt("analyze", *ARGS, *args, "--format", "json")
    assert result.exit_code == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_eigenvalues_lists_all_none_or_the_leading_K() -> None:
    full = analyze_json()
    assert full["config"]["eigenvalues"] == "all" and "output" not in full
    for option, count in (("2", 2), ("none", 0), ("NONE", 0), ("5", 5), ("9", 5)):
        rec = analyze_json("--eigenvalues", option)
        for a, b in zip(rec["trials"], full["trials"], strict=True):
            assert a["spectrum"]["eigenvalues"] == b["spectrum"]["eigenvalues"][:count]
            assert a["spectrum"]["spectral_radius"] == b["spectrum"]["spectral_radius"]
            assert a["nonnormality"] == b["nonnormality"]  # every eigenvalue is still computed
        assert rec["summary"] == full["summary"]
    for bad in ("0", "-1", "some"):
        result = bptt("analyze", "--eigenvalues", bad)
        assert result.exit_code == 2 and "--eigenvalues must be all, none or a count K >= 1" in result.stderr


def test_steps_keeps_every_Kth_step_counted_from_T() -> None:
    full = analyze_json()
    rec = analyze_json("--steps", "5")
    assert rec["output"] == {"steps": 5, "summary_only": False} and "output" not in full
    keep = slice((23 - 1) % 5, 23, 5)  # t = 3, 8, 13, 18, 23
    for a, b in zip(rec["trials"], full["trials"], strict=True):
        assert a["grad_h_log10"] == b["grad_h_log10"][keep]
        for name in b["grad_param_terms_log10"]:
            assert a["grad_param_terms_log10"][name] == b["grad_param_terms_log10"][name][keep]
        for name in ("projection", "tan_log10"):
            assert a["alignment"][name] == b["alignment"][name][keep]
        assert a["lyapunov"] == b["lyapunov"] and a["spectrum"] == b["spectrum"]
    assert rec["summary"] == full["summary"]
    csv = bptt("analyze", *ARGS, "--steps", "5", "--format", "csv").stdout.splitlines()
    assert [int(line.split(",")[1]) for line in csv[1:]] == [3, 8, 13, 18, 23] * 2


def test_summary_only_has_no_trials_and_is_json_only() -> None:
    full = analyze_json()
    rec = analyze_json("--summary-only")
    assert "trials" not in rec and rec["summary"] == full["summary"]
    assert rec["config"] == full["config"] and rec["output"] == {"steps": 1, "summary_only": True}
    result = bptt("analyze", *ARGS, "--summary-only", "--format", "csv")
    assert result.exit_code == 2 and "--summary-only is for --format json" in result.stderr


def test_the_api_takes_the_same_output_options() -> None:
    result = bptt_cli.analyze(T=23, hidden=5, trials=2, cell="tanh", loss="mean", eigenvalues="2")
    assert result.to_dict(steps=5) == analyze_json("--eigenvalues", "2", "--steps", "5")
    assert result.to_dict(summary_only=True) == analyze_json("--eigenvalues", "2", "--summary-only")


def test_a_thinned_record_is_not_redrawn(tmp_path: Any) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "r.json"
    assert bptt("analyze", *ARGS, "--steps", "2", "--output", str(path)).exit_code == 0
    result = bptt("plot", str(path), "--plot", str(tmp_path / "p.png"))
    assert result.exit_code == 2 and "--steps or --summary-only" in result.stderr


@pytest.mark.parametrize(("cell", "extra"), [
    ("tanh", {}), ("identity", {"radius": 1e300}), ("relu", {"gain": 2.0}),
    ("relu", {"gain": 0.5, "bias": 1.0}), ("sigmoid", {"gain": 4.0}),
    ("tanh", {"ensemble": "orthogonal"}), ("identity", {"radius": 0.3}),
])  # fmt: skip
def test_lyapunov_every_few_steps_is_every_step_to_rounding(
    cell: str, extra: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bptt_cli.core.cells import CELLS
    from bptt_cli.core.elman import bptt as run_bptt
    from bptt_cli.core.network import Spec, build_network
    from bptt_cli.theory import lyapunov, predict

    # h = 64: a relu network keeps at least K = 4 live units at every step (with fewer, the product is
    # singular and the lower exponents are rounding noise in either method: docs/speed-2026-12.md)
    spec = Spec(cell=cell, T=700, hidden=64, trials=2, **extra)
    net = build_network(spec)
    fwd, _ = run_bptt(net, CELLS[cell], "last")
    got = {}
    for every in (1, lyapunov.REORTH):
        monkeypatch.setattr(lyapunov, "REORTH", every)
        blocks = predict._dphi_blocks(net, CELLS[cell], fwd)
        got[every] = lyapunov.lyapunov_exponents(net.W_hh, blocks, 700, 4)
    a, b = got[1].exponents, got[lyapunov.REORTH].exponents
    assert np.all(np.isfinite(a)) and np.allclose(a, b, rtol=1e-13, atol=1e-13 * np.abs(a).max())


def test_lyapunov_blocks_with_parallel_columns_are_redone_step_by_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A frame whose columns separate by more than REORTH_RATIO over a block (here made certain by
    a ratio of 1) takes the step-by-step QR: the very numbers of before."""
    from bptt_cli.core.cells import CELLS
    from bptt_cli.core.elman import bptt as run_bptt
    from bptt_cli.core.network import Spec, build_network
    from bptt_cli.theory import lyapunov, predict

    net = build_network(Spec(cell="tanh", T=300, hidden=8, trials=1))
    fwd, _ = run_bptt(net, CELLS["tanh"], "last")
    monkeypatch.setattr(lyapunov, "REORTH", 1)
    step = lyapunov.lyapunov_exponents(net.W_hh, predict._dphi_blocks(net, CELLS["tanh"], fwd), 300, 3)
    monkeypatch.setattr(lyapunov, "REORTH", 8)
    monkeypatch.setattr(lyapunov, "REORTH_RATIO", 1.0)
    redone = lyapunov.lyapunov_exponents(net.W_hh, predict._dphi_blocks(net, CELLS["tanh"], fwd), 300, 3)
    assert np.array_equal(step.exponents, redone.exponents)
