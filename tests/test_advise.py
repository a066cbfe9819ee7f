"""`bptt advise` (issue 18): every recommendation holds when checked by an independent command.

The truncation length against ``bptt truncate`` at K and K - 1; the clipping threshold against the
gradient norms ``bptt analyze`` reports for the same sequences; the edge of chaos against the
mean field ``bptt analyze`` computes at that gain (chi_1 = 1) and against the gains at 0.8x and
1.2x; the forget bias against ``bptt analyze --forget-bias``; the horizon against a closed form
(``W_hh = r I``); ``--apply`` against ``bptt analyze --weights`` of the written file.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clitools import assert_bad_input, bptt

import bptt_cli

NET = ("--T", "40", "--hidden", "12", "--cell", "tanh")


def bptt_json(command: str, *args: object) -> dict[str, Any]:
    """``bptt COMMAND ARGS --format json``, checked to succeed, parsed."""
    result = bptt(command, *args, "--format", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def tanh_advice() -> dict[str, Any]:
    return bptt_json("advise", *NET, "--draws", "16")


def test_truncation_is_the_least_K_within_the_budget(tanh_advice: dict[str, Any]) -> None:
    tr = tanh_advice["advice"]["truncation"]
    K, budget = tr["K"], tr["budget"]
    assert 1 < K < 40 and tr["K_below"] == K - 1
    rows = bptt_json(
        "truncate", *NET, "--loss", "last", "--K", f"{K - 1},{K}", "--keep-prob", "0.5", "--draws", "2"
    )["rows"]
    error = {r["K"]: r["relative_error"] for r in rows if r["kind"] == "window"}
    assert error[K] <= budget < error[K - 1]
    assert math.isclose(error[K], tr["relative_error"], rel_tol=1e-12)
    assert math.isclose(error[K - 1], tr["relative_error_below"], rel_tol=1e-12)
    assert tr["cost_ratio"] < 1  # the last loss's window: K steps, not T - 1
    best = tr["randomized"]
    assert best is None or best["cost_ratio"] <= tr["cost_ratio"]


def test_the_clipping_threshold_is_the_quantile_of_the_norms(
    tanh_advice: dict[str, Any], tmp_path: Path
) -> None:
    """Trial 0's network with 16 drawn sequences, as `analyze --weights` sees it: the global
    gradient norms' 0.9 quantile is the threshold, and the clipped fraction is the share above it."""
    clip = tanh_advice["advice"]["clip"]
    net = bptt_cli.analyze(T=40, hidden=12, cell="tanh").analysis.net
    path = tmp_path / "w.npz"
    np.savez(path, **{k: v[0] for k, v in net.params().items()})
    record = bptt_json("analyze", "--T", "40", "--cell", "tanh", "--weights", path, "--trials", "16")
    norms = np.array(
        [
            0.5 * math.log10(sum(10 ** (2 * g) for g in tr["grad_params_log10"].values()))
            for tr in record["trials"]
        ]
    )
    theta = np.quantile(10**norms, 0.9)
    assert math.isclose(clip["threshold"], theta, rel_tol=1e-9)
    assert clip["clipped_fraction"] == np.mean(10**norms > theta)
    assert 0 < clip["relative_bias"] < 1


def test_the_edge_of_chaos_is_where_chi_1_is_one(tanh_advice: dict[str, Any]) -> None:
    init = tanh_advice["advice"]["init"]
    gain = init["gain"]
    assert init["knob"] == "gain" and init["value"] == gain == init["edge_of_chaos"]
    assert math.isclose(init["chi_1"], 1.0, rel_tol=1e-9)
    at = bptt_json("analyze", *NET, "--gain", repr(gain))
    assert math.isclose(at["trials"][0]["mean_field"]["chi_1"], 1.0, rel_tol=1e-6), at["trials"][0][
        "mean_field"
    ]
    assert math.isclose(at["summary"]["gain_log10"], init["gain_log10_after"], rel_tol=1e-12)
    g = {c["factor"]: c["gain_log10"] for c in init["checks"]}
    assert abs(g[1.0]) < min(abs(g[0.8]), abs(g[1.2]))
    measured = bptt_json("analyze", *NET, "--gain", repr(init["measured_value"]))["summary"]["gain_log10"]
    assert math.isclose(measured, init["gain_log10_at_measured"], rel_tol=1e-12)
    assert abs(measured) <= abs(g[1.0])  # the measured gain nearest 1 over [edge / 2, 2 edge]
    assert abs(measured) < 0.5 or not init["bracketed"]


def test_relu_gets_he_scale_and_the_irnn_alternatives() -> None:
    init = bptt_json(
        "advise",
        "--T",
        "30",
        "--hidden",
        "12",
        "--cell",
        "relu",
        "--inputs-dim",
        "0",
        "--h0",
        "random",
        "--draws",
        "4",
    )["advice"]["init"]
    # undriven relu: chi_1 = sigma_w^2 / 2, so the edge is sigma_w^2 = 2 exactly (He et al. 2015)
    sigma_w2 = bptt_json(
        "analyze", "--T", "30", "--hidden", "12", "--cell", "relu", "--inputs-dim", "0", "--h0", "random"
    )["trials"][0]["mean_field"]["weight_variance"]
    assert math.isclose(init["gain"] ** 2 * sigma_w2, 2.0, rel_tol=1e-9)
    assert set(init["alternatives"]) == {"identity", "orthogonal"}


def test_forget_bias_keeps_the_gradient_above_the_tolerance() -> None:
    out = bptt_json("advise", "--T", "40", "--hidden", "8", "--cell", "lstm", "--draws", "4")
    fb = out["advice"]["forget_bias"]
    assert out["advice"]["init"] is None and "lstm" in out["advice"]["reasons"]["init"]
    check = bptt_json(
        "analyze", "--T", "40", "--hidden", "8", "--cell", "lstm", "--forget-bias", repr(fb["value"])
    )
    assert check["summary"]["gain_log10"] >= -1.0
    assert math.isclose(check["summary"]["gain_log10"], fb["gain_log10_after"], rel_tol=1e-12)
    below = [m["forget_bias"] for m in fb["measured"] if m["gain_log10"] < -1.0]
    assert max(below) >= fb["value"] - 0.05 - 1e-12  # the least such bias, to the resolution


def test_the_horizon_of_a_scaled_identity_is_closed_form() -> None:
    """W_hh = 0.9 I, identity cell, last loss: dL/dh_t = 0.9^(T-t) dL/dh_T exactly, so the rate is
    log10 0.9 per step and the gradient vanishes by 10^-1 after 1 / |log10 0.9| = 21.85 steps."""
    hz = bptt_json(
        "advise", "--T", "60", "--hidden", "6", "--ensemble", "identity", "--radius", "0.9", "--draws", "4"
    )["advice"]["horizon"]
    assert math.isclose(hz["rate_log10_per_step"], math.log10(0.9), rel_tol=1e-12)
    assert math.isclose(hz["vanish"], -1 / math.log10(0.9), rel_tol=1e-12)
    assert hz["explode"] is None and hz["exceeds"]


def test_chaos_gives_the_predictability_interval() -> None:
    hz = bptt_json(
        "advise",
        "--T",
        "60",
        "--hidden",
        "64",
        "--cell",
        "tanh",
        "--gain",
        "3",
        "--inputs-dim",
        "0",
        "--h0",
        "random",
        "--draws",
        "4",
    )["advice"]["horizon"]
    assert hz["lyapunov"] > 0
    assert math.isclose(hz["predictability_steps"], math.log(2) / hz["lyapunov"], rel_tol=1e-12)
    assert hz["interval"] == max(1, math.floor(hz["predictability_steps"]))
    linear = bptt_json("advise", "--T", "30", "--hidden", "8", "--gain", "1.5", "--draws", "3")
    linear = linear["advice"]["horizon"]
    assert linear["lyapunov"] > 0 and linear["predictability_steps"] is None  # growth, not chaos


def test_apply_writes_the_remedy_and_never_touches_the_input(tmp_path: Path) -> None:
    r = np.random.default_rng(1)
    h, d = 8, 3
    weights = {
        "rnn.weight_ih_l0": r.normal(0, 0.5, (h, d)),
        "rnn.weight_hh_l0": r.normal(0, 0.2, (h, h)),
        "rnn.bias_ih_l0": r.normal(0, 0.1, h),
        "rnn.bias_hh_l0": r.normal(0, 0.1, h),
        "head.weight": r.normal(0, 0.5, (2, h)),
        "head.bias": r.normal(0, 0.1, 2),
    }
    src = tmp_path / "model.npz"
    np.savez(src, **weights)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    out = tmp_path / "fixed.npz"
    net = ("--T", "30", "--cell", "tanh", "--weights", src)
    init = bptt_json("advise", *net, "--draws", "4", "--apply", out)["advice"]["init"]
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest
    fixed = dict(np.load(out))
    assert set(fixed) == set(weights)  # every key kept, names and layout as they were
    np.testing.assert_allclose(
        fixed["rnn.weight_hh_l0"], weights["rnn.weight_hh_l0"] * init["rescale"], rtol=1e-15
    )
    np.testing.assert_array_equal(fixed["head.weight"], weights["head.weight"])
    after = bptt_json("analyze", "--T", "30", "--cell", "tanh", "--weights", out)["summary"]["gain_log10"]
    assert math.isclose(after, init["gain_log10_after"], rel_tol=1e-9, abs_tol=1e-12)
    assert abs(after) < abs(init["gain_log10_before"])


def test_apply_of_a_drawn_lstm_is_its_forget_bias() -> None:
    result = bptt_cli.advise(T=30, hidden=6, cell="lstm", draws=4)
    arrays = result.applied()
    assert arrays is not None
    before = result.experiment
    drawn = bptt_cli.analyze(T=30, hidden=6, cell="lstm").analysis.net.params
    drawn = drawn() if callable(drawn) else drawn
    value = result.advice.forget_bias["value"]  # type: ignore[index]
    np.testing.assert_allclose(arrays["bias_ih_l0"][6:12] - drawn["bias_ih_l0"][0][6:12], value, rtol=1e-12)
    assert before.spec.forget_bias == 0.0


def test_the_api_is_the_cli(tanh_advice: dict[str, Any]) -> None:
    assert bptt_cli.advise(T=40, hidden=12, cell="tanh", draws=16).to_dict() == tanh_advice


def test_what_does_not_apply_says_why() -> None:
    out = bptt_json("advise", "--T", "20", "--hidden", "4", "--layers", "2", "--draws", "3")
    reasons = out["advice"]["reasons"]
    assert {"truncation", "clip", "init", "forget_bias"} <= set(reasons)
    assert out["advice"]["horizon"]["T"] == 20
    text = bptt("advise", "--T", "20", "--hidden", "4", "--layers", "2", "--draws", "3").stdout
    assert "no truncation: truncation is measured on one-layer Elman networks" in text


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--budget", "0"), ("--budget", "(0, 1)")),
        (("--quantile", "1.5"), ("--quantile",)),
        (("--draws", "1"), ("--draws",)),
        (("--format", "csv"), ("--format",)),
        (("--T", "-3"), ("--T",)),
        (("--cell", "gru", "--apply", "x.npz"), ("nothing", "apply")),
        (("--apply", "x.txt"), (".npz or .pt",)),
    ],
)
def test_bad_input_is_one_line(
    args: tuple[str, ...], words: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert_bad_input(bptt("advise", "--T", "20", "--hidden", "4", "--draws", "3", *args), *words)
    assert list(tmp_path.iterdir()) == []


def test_fail_on_the_diagnosis() -> None:
    out = bptt(
        "advise",
        "--T",
        "30",
        "--hidden",
        "6",
        "--draws",
        "3",
        "--gain",
        "0.5",
        "--fail-on",
        "vanishing",
        "--format",
        "json",
    )
    assert out.exit_code == 1 and json.loads(out.stdout)["diagnosis"]["verdict"] == "vanishing"
