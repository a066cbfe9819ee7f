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
    same = tr["randomized"]  # the same expected cost: chains of K steps on average
    assert same["keep_prob"] == round(1 - 1 / K, 4) and math.isclose(
        same["cost_ratio"], tr["cost_ratio"], rel_tol=0.5
    )
    assert tr["cheaper_than_full"]


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
    """The mean field's edge: analyze's own mean field at that gain has chi_1 = 1, and the measured
    gain there is small against 0.8x and 1.2x; the recommendation is the measured gain-1 scale."""
    init = tanh_advice["advice"]["init"]
    edge = init["edge_of_chaos"]
    at = bptt_json("analyze", *NET, "--gain", repr(edge))
    assert math.isclose(at["trials"][0]["mean_field"]["chi_1"], 1.0, rel_tol=1e-6), at["trials"][0][
        "mean_field"
    ]
    g = {c["factor"]: c["gain_log10"] for c in init["checks"]}
    assert math.isclose(at["summary"]["gain_log10"], g[1.0], rel_tol=1e-12)
    assert abs(g[1.0]) < min(abs(g[0.8]), abs(g[1.2]))
    assert init["knob"] == "gain" and init["value"] == init["gain"]
    measured = bptt_json("analyze", *NET, "--gain", repr(init["gain"]))["summary"]["gain_log10"]
    assert math.isclose(measured, init["gain_log10_after"], rel_tol=1e-12)
    assert abs(measured) <= abs(g[1.0])  # the measured gain nearest 1, the edge's included
    assert abs(measured) < 0.5 or not init["bracketed"]  # a small tanh network may never reach 1
    chi = bptt_json("analyze", *NET, "--gain", repr(init["gain"]))["trials"][0]["mean_field"]["chi_1"]
    assert math.isclose(init["chi_1"], chi, rel_tol=1e-9)


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
    assert math.isclose(init["edge_of_chaos"] ** 2 * sigma_w2, 2.0, rel_tol=1e-9)
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


def test_apply_of_weights_handed_over_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Arrays (and a module, where torch is installed) given to the API: the remedy is built from
    them, never from a file that happens to bear their label in the working directory."""
    r = np.random.default_rng(2)
    weights = {"weight_ih_l0": r.normal(0, 0.5, (8, 3)), "weight_hh_l0": r.normal(0, 0.2, (8, 8)),
               "bias_ih_l0": np.zeros(8), "bias_hh_l0": np.zeros(8)}
    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "<arrays in memory>.npz", weight_hh_l0=7 * np.eye(8))  # a decoy
    (tmp_path / "<arrays in memory>").write_bytes((tmp_path / "<arrays in memory>.npz").read_bytes())
    result = bptt_cli.advise(weights=weights, T=30, cell="tanh", draws=4)
    fixed = result.applied()
    assert fixed is not None and set(fixed) == set(weights)
    rescale = result.advice.init["rescale"]  # type: ignore[index]
    np.testing.assert_allclose(fixed["weight_hh_l0"], weights["weight_hh_l0"] * rescale, rtol=1e-15)
    result.apply(tmp_path / "fixed.npz")
    np.testing.assert_array_equal(np.load(tmp_path / "fixed.npz")["weight_hh_l0"], fixed["weight_hh_l0"])
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 16)  # its gradient vanishes over 30 steps: a forget bias is advised
    advised = bptt_cli.advise(weights=lstm, T=30, cell="lstm", draws=4)
    before = advised.applied()
    with torch.no_grad():  # trained on after the advice: the remedy is still the advised network's
        lstm.weight_hh_l0.mul_(0.0)
    arrays = advised.applied()
    assert arrays is not None and before is not None and set(arrays) == set(lstm.state_dict())
    np.testing.assert_array_equal(arrays["weight_hh_l0"], before["weight_hh_l0"])
    assert np.abs(arrays["weight_hh_l0"]).max() > 0


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


# ------------------------------------------------------------------- what the review found
def test_a_threshold_beyond_float64_is_carried_in_log10() -> None:
    clip = bptt_json(
        "advise", "--cell", "identity", "--gain", "10", "--T", "400", "--hidden", "6", "--draws", "4"
    )["advice"]["clip"]
    assert clip["threshold"] is None and clip["threshold_log10"] > 308


def test_apply_refuses_to_overwrite_the_weights(tmp_path: Path) -> None:
    path = tmp_path / "w.npz"
    np.savez(path, W_hh=0.3 * np.random.default_rng(0).normal(size=(6, 6)))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert_bad_input(
        bptt("advise", "--weights", path, "--cell", "tanh", "--T", "20", "--draws", "3", "--apply", path),
        "is the --weights file",
    )
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_apply_of_an_lstm_without_biases_says_so(tmp_path: Path) -> None:
    r = np.random.default_rng(2)
    path = tmp_path / "nb.npz"
    np.savez(path, weight_ih_l0=0.3 * r.normal(size=(24, 3)), weight_hh_l0=0.3 * r.normal(size=(24, 6)))
    result = bptt(
        "advise",
        "--weights",
        path,
        "--cell",
        "lstm",
        "--T",
        "40",
        "--draws",
        "3",
        "--apply",
        tmp_path / "out.npz",
    )
    assert_bad_input(result, "bias=False")
    assert not (tmp_path / "out.npz").exists()


def test_apply_with_a_radius_writes_the_network_measured(tmp_path: Path) -> None:
    r = np.random.default_rng(4)
    path = tmp_path / "l.npz"
    np.savez(
        path,
        weight_ih_l0=0.3 * r.normal(size=(24, 3)),
        weight_hh_l0=0.3 * r.normal(size=(24, 6)),
        bias_ih_l0=np.zeros(24),
        bias_hh_l0=np.zeros(24),
    )
    out = tmp_path / "out.npz"
    fb = bptt_json(
        "advise",
        "--weights",
        path,
        "--cell",
        "lstm",
        "--T",
        "40",
        "--radius",
        "2",
        "--draws",
        "3",
        "--apply",
        out,
    )["advice"]["forget_bias"]
    after = bptt_json("analyze", "--weights", out, "--cell", "lstm", "--T", "40")["summary"]["gain_log10"]
    assert math.isclose(after, fb["gain_log10_after"], rel_tol=1e-9)


def test_the_rescaling_of_small_weights_reaches_the_edge(tmp_path: Path) -> None:
    """PyTorch's default nn.RNN init (U(-1/sqrt h, 1/sqrt h)) sits far below the edge: the search
    widens until it brackets gain 1, and the mean field of the file's own statistics is reported."""
    h = 32
    r = np.random.default_rng(5)
    path = tmp_path / "rnn.npz"
    bound = 1 / math.sqrt(h)
    np.savez(
        path,
        weight_hh_l0=r.uniform(-bound, bound, (h, h)),
        weight_ih_l0=r.uniform(-bound, bound, (h, 4)),
        bias_ih_l0=np.zeros(h),
        bias_hh_l0=np.zeros(h),
    )
    init = bptt_json("advise", "--weights", path, "--cell", "tanh", "--T", "50", "--draws", "3")["advice"][
        "init"
    ]
    assert init["knob"] == "rescale" and init["bracketed"] and init["rescale"] > 2
    assert abs(init["gain_log10_after"]) < 0.5 and init["edge_of_chaos"] is not None


def test_forget_bias_is_not_advised_where_it_cannot_help() -> None:
    args = ("--cell", "lstm", "--T", "40", "--hidden", "8", "--draws", "3")
    stable = bptt_json("advise", *args, "--forget-bias", "5")["advice"]
    assert stable["forget_bias"] is None and "already above" in stable["reasons"]["forget_bias"]


def test_degenerate_networks_get_reasons_not_numbers() -> None:
    one = bptt_json("advise", "--cell", "tanh", "--T", "1", "--hidden", "4", "--draws", "3")["advice"]
    assert one["init"] is None and one["truncation"] is None
    still = bptt_json(
        "advise", "--cell", "tanh", "--T", "20", "--hidden", "4", "--inputs-dim", "0", "--draws", "3"
    )["advice"]
    assert still["truncation"] is None and "exactly zero" in still["reasons"]["truncation"]
    wild = bptt_json(
        "advise",
        "--cell",
        "tanh",
        "--gain",
        "10",
        "--T",
        "200",
        "--hidden",
        "64",
        "--inputs-dim",
        "0",
        "--h0",
        "random",
        "--draws",
        "3",
    )["advice"]["horizon"]
    assert wild["predictability_steps"] < 1 and wild["interval"] is None


def test_mean_loss_windows_dearer_than_full_bptt_say_so() -> None:
    tr = bptt_json("advise", "--T", "60", "--hidden", "6", "--loss", "mean", "--draws", "3")["advice"][
        "truncation"
    ]
    assert tr["cheaper_than_full"] == (tr["cost_ratio"] < 1)
