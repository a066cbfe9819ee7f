"""The command line of issue 5: analyze's estimator and memory options, and `bptt truncate`."""

from __future__ import annotations

import itertools
import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from clitools import assert_bad_input, bptt
from typer.testing import CliRunner

from bptt_cli.cli import app

runner = CliRunner()
ACCURACY = ("relative_error", "relative_error_log10", "norm_ratio", "norm_ratio_log10", "cosine")
RANDOM = ("relative_bias", "relative_bias_log10", "relative_variance", "relative_variance_log10",
          "relative_spread", "relative_spread_log10")


def run_json(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def fails_with_one_line(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bptt: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def without(record: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in keys}


def test_analyze_window_and_clip_records() -> None:
    out = run_json("analyze", "--T", "60", "--cell", "tanh", "--loss", "mean", "--trials", "2",
                   "--truncate", "5", "--clip", "0.01")
    assert out["config"]["truncate"] == "5" and out["config"]["clip"] == 0.01
    for trial in out["trials"]:
        trunc, clip = trial["estimators"]["truncation"], trial["estimators"]["clip"]
        assert (trunc["label"], trunc["kind"], trunc["K"]) == ("window:5", "window", 5)
        assert trunc["backward_steps"] == sum(min(5, s) - 1 for s in range(1, 61))
        assert trunc["backward_steps_full"] == 59
        assert trunc["cost_ratio"] == pytest.approx(trunc["backward_steps"] / 59)
        for name in ("W_hh", "W_hx", "W_qh", "b_h", "b_q"):
            p = trunc["params"][name]
            assert set(p) == set(ACCURACY)
            if name in ("W_qh", "b_q"):  # exact
                assert p["relative_error"] == 0 and p["relative_error_log10"] is None and p["cosine"] == 1
            else:
                assert p["relative_error"] == pytest.approx(10 ** p["relative_error_log10"])
        assert clip["threshold"] == 0.01 and clip["scale"] == pytest.approx(10 ** clip["scale_log10"])
        assert clip["scale_log10"] == pytest.approx(math.log10(0.01) - clip["norm_log10"])
        assert clip["params"]["W_hh"]["norm_ratio"] == pytest.approx(clip["scale"])
    summary = out["summary"]["estimators"]
    assert set(summary) == {"truncation", "clip"}
    assert summary["truncation"]["params"]["W_hh"]["relative_error_log10"] is not None
    assert out["memory"]["stored"] is True and out["memory"]["checkpoint_every"] is None
    assert out["memory"]["peak_memory_bytes"] > 2**20


def test_analyze_random_and_chunk_records() -> None:
    out = run_json("analyze", "--T", "80", "--cell", "tanh", "--loss", "mean",
                   "--truncate", "random", "--keep-prob", "0.5", "--draws", "20")
    trunc = out["trials"][0]["estimators"]["truncation"]
    assert (trunc["kind"], trunc["keep_prob"], trunc["draws"]) == ("random", 0.5, 20)
    assert set(trunc["params"]["W_hh"]) == set(ACCURACY + RANDOM)
    p = trunc["params"]["W_hh"]  # mean ||g_hat - g||^2 = spread + bias^2
    assert p["relative_variance"] == pytest.approx(p["relative_spread"] + p["relative_bias"] ** 2, rel=1e-9)
    out = run_json("analyze", "--T", "80", "--truncate", "10", "--truncate-mode", "chunk", "--hidden", "16")
    trunc = out["trials"][0]["estimators"]["truncation"]
    assert trunc["kind"] == "chunk" and trunc["memory_bytes"] == 8 * 16 * 21
    assert trunc["memory_bytes_full"] == 8 * 16 * 161
    assert trunc["backward_steps"] == 79 % 10  # the last loss: the last chunk only


def test_json_carries_numbers_beyond_float64_in_log_form() -> None:
    """An exploding chain: dL/db_h ~ 10^1056 comes from t ~ 1, its last 10 steps only ~ 10^528."""
    result = runner.invoke(app, ["analyze", "--T", "3000", "--radius", "1.5", "--hidden", "8",
                                 "--truncate", "10", "--format", "json"])
    assert result.exit_code == 0
    assert "Infinity" not in result.stdout and "NaN" not in result.stdout
    p = json.loads(result.stdout)["trials"][0]["estimators"]["truncation"]["params"]["b_h"]
    assert p["norm_ratio_log10"] < -500 and p["norm_ratio"] is None  # not a spurious 0
    assert p["relative_error"] == pytest.approx(1.0) and -1 <= p["cosine"] <= 1


@pytest.mark.parametrize("extra", [[], ["--truncate", "7", "--clip", "1"],
                                   ["--truncate", "random", "--keep-prob", "0.6", "--draws", "4"]])
def test_checkpointed_run_gives_the_same_json(extra: list[str]) -> None:
    base = ["analyze", "--T", "600", "--cell", "tanh", "--loss", "mean", "--radius", "1.2", "--trials", "2",
            *extra]
    stored = run_json(*base, "--checkpoint", "none")
    ckpt = run_json(*base, "--checkpoint", "200")
    assert ckpt["memory"]["checkpoint_every"] == 256 and stored["memory"]["checkpoint_every"] is None
    assert without(stored, "memory", "config") == without(ckpt, "memory", "config")
    assert without(stored["config"], "checkpoint") == without(ckpt["config"], "checkpoint")


def test_auto_checkpoints_when_the_budget_is_small() -> None:
    # 4M: the whole run's peak is 3.8 MiB (tracemalloc), checkpointing or not: 2M cannot hold it
    out = run_json("analyze", "--T", "3000", "--max-memory", "4M")
    assert out["memory"]["checkpoint_every"] is not None and out["memory"]["max_memory"] == 4 * 2**20
    assert out["memory"]["estimated_bytes"] <= 4 * 2**20


def test_table_shows_estimators_and_checkpointing() -> None:
    result = runner.invoke(app, ["analyze", "--T", "600", "--cell", "tanh", "--truncate", "random",
                                 "--keep-prob", "0.5", "--draws", "10", "--clip", "1", "--checkpoint", "256"])
    assert result.exit_code == 0
    for text in ("Gradient estimators against full BPTT", "random:0.5", "clip:1", "backward steps",
                 "checkpoint every 256 steps"):
        assert text in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--truncate", "random", "--keep-prob", "0"], "--keep-prob"),
        (["--truncate", "-3"], "--truncate"),
        (["--truncate", "abc"], "--truncate"),
        (["--truncate", "random"], "--keep-prob"),
        (["--keep-prob", "0.5"], "--keep-prob"),
        (["--truncate", "5", "--truncate-mode", "ring"], "--truncate-mode"),
        (["--truncate", "random", "--keep-prob", "0.5", "--draws", "0"], "--draws"),
        (["--clip", "-1"], "--clip"),
        (["--checkpoint", "0"], "--checkpoint"),
        (["--checkpoint", "sometimes"], "--checkpoint"),
        (["--max-memory", "12Q"], "12Q"),
        (["--T", "100000", "--max-memory", "1M"], "--max-memory"),
        (["--T", "100", "--checkpoint", "none", "--max-memory", "100K"], "--max-memory"),
        (["--hidden", "256", "--truncate", "random", "--keep-prob", "0.5", "--max-memory", "5M"],
         "--max-memory"),
    ],
)
def test_bad_values_exit_2_with_one_line(args: list[str], message: str) -> None:
    assert message in fails_with_one_line("analyze", *args)


def test_truncate_command_shows_the_trade_off() -> None:
    """The chapter's comparison: regular truncation's bias falls with K, randomized variance grows as P falls.

    This is issue 5's acceptance command.
    """
    out = run_json("truncate", "--cell", "tanh", "--T", "200", "--radius", "1.1")
    rows = out["rows"]
    assert rows[0]["label"] == "full" and rows[0]["backward_steps"] == 199
    window = [r for r in rows if r["kind"] == "window"]
    random = [r for r in rows if r["kind"] == "random"]
    assert [r["K"] for r in window] == [1, 2, 5, 10, 20, 50, 100]
    assert [r["keep_prob"] for r in random] == [0.9, 0.7, 0.5, 0.3]
    bias = [r["bias_log10"] for r in window]
    assert all(a > b for a, b in itertools.pairwise(bias))
    assert all(r["variance"] == 0 for r in window)
    variance = [r["variance_log10"] for r in random]
    assert all(a < b for a, b in itertools.pairwise(variance))
    cost = [r["cost_ratio"] for r in random]  # about P of full BPTT's steps
    assert cost == pytest.approx([0.9, 0.7, 0.5, 0.3], abs=0.05)
    for r in random:  # unbiased: what bias there is, is sampling noise, about sqrt(variance / R)
        assert r["bias"] < 3 * math.sqrt(r["variance"] / 100)
    assert len(out["estimators"]) == 11 and len(out["trials"][0]["estimators"]) == 11
    assert out["param"] == "W_hh" and out["config"]["K"] == [1, 2, 5, 10, 20, 50, 100]


def test_truncate_table_and_options(tmp_path: Path) -> None:
    result = runner.invoke(app, ["truncate", "--cell", "tanh", "--T", "50", "--K", "1,10", "--keep-prob",
                                 "0.5", "--draws", "10", "--truncate-mode", "chunk", "--param", "b_h",
                                 "--trials", "3"])
    assert result.exit_code == 0, result.output
    for text in ("dL/db_h", "median over 3 trials", "chunk K=1", "chunk K=10", "random P=0.5", "memory"):
        assert text in result.stdout
    target = tmp_path / "t.json"
    result = runner.invoke(app, ["truncate", "--T", "30", "--K", "3", "--keep-prob", "0.5", "--draws", "5",
                                 "--output", str(target)])
    assert result.exit_code == 0 and result.stdout == ""
    assert [r["label"] for r in json.loads(target.read_text())["rows"]] == ["full", "window:3", "random:0.5"]
    # a repeated value is one estimator, one row
    out = run_json("truncate", "--T", "30", "--K", "3,5,3", "--keep-prob", "0.5,0.5", "--draws", "5")
    assert [r["label"] for r in out["rows"]] == ["full", "window:3", "window:5", "random:0.5"]


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--K", "1,x"], "--K"), (["--K", "5,0"], "--K: 0 is below 1"),
     (["--keep-prob", "0.5,0"], "--keep-prob"),
     (["--keep-prob", "a"], "--keep-prob"), (["--format", "csv"], "--format"), (["--draws", "0"], "--draws")],
)
def test_truncate_bad_values(args: list[str], message: str) -> None:
    assert message in fails_with_one_line("truncate", *args)


def test_installed_entry_point() -> None:
    """The acceptance command through the installed `bptt` script, and a one-line error."""
    exe = shutil.which("bptt")
    assert exe is not None
    args = [exe, "truncate", "--cell", "tanh", "--T", "200", "--radius", "1.1", "--format", "json"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"][1]["label"] == "window:1"
    done = subprocess.run([exe, "analyze", "--max-memory", "12Q"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("bptt: error: ")


@pytest.mark.parametrize(
    ("criterion", "h0"), [("cross-entropy", "zeros"), ("mse", "random"), ("cross-entropy", "random")]
)
def test_truncate_measures_the_network_analyze_measures(criterion: str, h0: str) -> None:
    """--criterion and --h0 reach truncate's network (they were once accepted and ignored): its full
    gradient is analyze's for the same options, and a window as long as T is exact."""
    net = ("--T", "12", "--hidden", "4", "--cell", "tanh", "--criterion", criterion, "--h0", h0)
    out = bptt("truncate", *net, "--K", "3,12", "--draws", "2", "--format", "json")
    assert out.exit_code == 0, out.stderr
    record = json.loads(out.stdout)
    assert (record["config"]["criterion"], record["config"]["h0"]) == (criterion, h0)
    full = json.loads(bptt("analyze", *net, "--loss", "mean", "--format", "json").stdout)
    assert record["trials"][0]["grad_params_log10"] == full["trials"][0]["grad_params_log10"]
    assert next(r for r in record["rows"] if r["label"] == "window:12")["relative_error"] == 0.0
    mse = json.loads(bptt("truncate", "--T", "12", "--hidden", "4", "--cell", "tanh", "--K", "3",
                          "--draws", "2", "--format", "json").stdout)
    assert mse["trials"][0]["grad_params_log10"] != record["trials"][0]["grad_params_log10"]


def test_truncate_refuses_a_stack_in_one_line(tmp_path: Path) -> None:
    import numpy as np

    r = np.random.default_rng(0)
    shapes = {"weight_ih_l0": (5, 3), "weight_hh_l0": (5, 5), "bias_ih_l0": (5,), "bias_hh_l0": (5,),
              "weight_ih_l1": (5, 5), "weight_hh_l1": (5, 5), "bias_ih_l1": (5,), "bias_hh_l1": (5,)}
    path = tmp_path / "r2.npz"
    np.savez(path, **{name: r.standard_normal(shape) for name, shape in shapes.items()})
    assert bptt("analyze", "--weights", path, "--T", "10").exit_code == 0
    assert_bad_input(bptt("truncate", "--weights", path, "--T", "10"), "one-layer, one-direction networks")
