"""``bptt analyze --cell lstm|gru``: JSON, tables, CSV, --weights with PyTorch names, bad input."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from bptt_cli.analysis.analyze import analyze
from bptt_cli.cli import app
from bptt_cli.core.network import GATED_PARAMS as PARAMS
from bptt_cli.core.network import GatedGiven, GatedSpec, build_network
from bptt_cli.core.scaled import LN10

RUNNER = CliRunner()


def bptt(*args: object) -> Result:
    return RUNNER.invoke(app, [str(a) for a in args])


def bptt_json(*args: object) -> dict:
    result = bptt("analyze", *args, "--format", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def bad_input(*args: object) -> str:
    """Run, expect exit 2 with one ``bptt: error:`` line and nothing on stdout; return the line."""
    result = bptt("analyze", *args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bptt: error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_json_matches_the_python_api(cell: str) -> None:
    rec = bptt_json(
        "--cell", cell, "--T", 40, "--hidden", 6, "--trials", 2, "--forget-bias", 1, "--loss", "mean"
    )
    an = analyze(GatedSpec(cell=cell, T=40, hidden=6, trials=2, forget_bias=1.0, loss="mean"))
    assert rec["config"]["cell"] == cell and rec["config"]["ensemble"] == "uniform"
    assert rec["config"]["forget_bias"] == 1.0
    for i, trial in enumerate(rec["trials"]):
        assert list(trial["grad_params_log10"]) == list(PARAMS)
        np.testing.assert_allclose(trial["grad_h_log10"], an.grad_h_log10[i], rtol=1e-15)
        np.testing.assert_allclose(trial["gate_product_log10"], an.gate_product_log10[i], rtol=1e-15)
        assert trial["gain_log10"] == pytest.approx(an.gain_log10[i], rel=1e-15)
        assert ("grad_c_log10" in trial) == (cell == "lstm")
        if cell == "lstm":
            assert len(trial["grad_c_log10"]) == 40
        assert trial["spectrum"]["spectral_radius"] > 0
    assert set(rec["summary"]["grad_params_log10"]) == set(PARAMS)


def test_elman_json_is_unchanged_by_the_gated_keys() -> None:
    rec = bptt_json("--cell", "tanh", "--T", 10, "--hidden", 4)
    trial = rec["trials"][0]
    assert list(trial["grad_params_log10"]) == ["W_hh", "W_hx", "W_qh", "b_h", "b_q"]
    assert "grad_c_log10" not in trial and "gate_product_log10" not in trial


def test_tables_show_the_gated_columns() -> None:
    lstm = bptt("analyze", "--cell", "lstm", "--T", 30, "--hidden", 5, "--forget-bias", 2)
    assert lstm.exit_code == 0, lstm.stderr
    for text in ("LSTM", "dL/dc_t", "prod f", "weight_hh_l0", "bias_ih_l0", "forget bias", "W_hg"):
        assert text in lstm.stdout, text
    gru = bptt("analyze", "--cell", "gru", "--T", 30, "--hidden", 5)
    assert gru.exit_code == 0, gru.stderr
    for text in ("GRU", "prod z", "W_hn", "bias_hh_l0"):
        assert text in gru.stdout, text
    assert "dL/dc_t" not in gru.stdout and "forget bias" not in gru.stdout


def test_csv_has_no_spectral_prediction_for_gated_cells() -> None:
    result = bptt("analyze", "--cell", "gru", "--T", 5, "--hidden", 3, "--format", "csv")
    assert result.exit_code == 0, result.stderr
    rows = [line.split(",") for line in result.stdout.splitlines()]
    elman = ["trial", "t", "lag", "grad_h_log10", "ratio_log10", "predicted_log10"]
    assert rows[0] == [*elman, "gate_product_log10"]
    assert len(rows) == 6 and all(r[5] == "" and r[3] != "" for r in rows[1:])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_csv_has_the_gated_columns_of_the_json(cell: str) -> None:
    """The LSTM's CSV had only the Elman columns: dL/dc_t and the gate product were JSON-only."""
    args = ("--cell", cell, "--T", 40, "--hidden", 4, "--trials", 2, "--forget-bias", 1)
    result = bptt("analyze", *args, "--format", "csv")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    rec = bptt_json(*args)
    names = ["grad_c_log10", "gate_product_log10"] if cell == "lstm" else ["gate_product_log10"]
    assert list(rows[0])[6:] == names
    assert len(rows) == 2 * 40
    for row in rows:
        i, t = int(row["trial"]), int(row["t"])
        for name in names:
            expected = rec["trials"][i][name][t - 1]
            assert (row[name] == "") if expected is None else (float(row[name]) == expected), (name, i, t)
    last = [r for r in rows if r["t"] == "40"]
    assert all(float(r["gate_product_log10"]) == 0.0 for r in last)  # an empty product at t = T


def save_state_dict(
    path: Path, cell: str, h: int = 4, d: int = 3, q: int = 2, extra: dict | None = None
) -> dict:
    """A random state_dict with PyTorch's names (and an output layer), saved as .npz."""
    net = build_network(GatedSpec(cell=cell, T=3, hidden=h, inputs_dim=d, outputs_dim=q, seed=9))
    arrays = {k: getattr(net, k)[0] for k in PARAMS}
    arrays.update(extra or {})
    np.savez(path, **arrays)
    return arrays


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_weights_npz_with_pytorch_names(tmp_path: Path, cell: str) -> None:
    arrays = save_state_dict(tmp_path / "m.npz", cell)
    rec = bptt_json("--cell", cell, "--weights", tmp_path / "m.npz", "--T", 20)
    assert (
        rec["config"]["hidden"] == 4
        and rec["config"]["inputs_dim"] == 3
        and rec["config"]["outputs_dim"] == 2
    )
    an = analyze(GatedSpec(cell=cell, T=20, hidden=4, inputs_dim=3, outputs_dim=2), GatedGiven(**arrays))
    np.testing.assert_array_equal(rec["trials"][0]["grad_h_log10"], an.grad_h_log10[0])
    # a file without biases (bias=False) means zero biases
    np.savez(
        tmp_path / "nobias.npz", weight_hh_l0=arrays["weight_hh_l0"], weight_ih_l0=arrays["weight_ih_l0"]
    )
    no_bias = bptt_json("--cell", cell, "--weights", tmp_path / "nobias.npz", "--T", 20)
    zero = {k: np.zeros_like(arrays[k]) for k in ("bias_ih_l0", "bias_hh_l0")}
    an0 = analyze(
        GatedSpec(cell=cell, T=20, hidden=4, inputs_dim=3),
        GatedGiven(weight_hh_l0=arrays["weight_hh_l0"], weight_ih_l0=arrays["weight_ih_l0"], **zero),
    )
    np.testing.assert_array_equal(no_bias["trials"][0]["grad_h_log10"], an0.grad_h_log10[0])


def test_forget_bias_is_added_to_a_files_weights(tmp_path: Path) -> None:
    arrays = save_state_dict(tmp_path / "m.npz", "lstm")
    rec = bptt_json("--cell", "lstm", "--weights", tmp_path / "m.npz", "--T", 20, "--forget-bias", 3)
    shifted = dict(arrays)
    shifted["bias_ih_l0"] = arrays["bias_ih_l0"].copy()
    shifted["bias_ih_l0"][4:8] += 3
    an = analyze(GatedSpec(cell="lstm", T=20, hidden=4, inputs_dim=3, outputs_dim=2), GatedGiven(**shifted))
    np.testing.assert_allclose(rec["trials"][0]["grad_h_log10"], an.grad_h_log10[0], rtol=1e-14)


def test_bad_weights_files_are_one_line(tmp_path: Path) -> None:
    lstm = save_state_dict(tmp_path / "lstm.npz", "lstm")
    line = bad_input("--cell", "gru", "--weights", tmp_path / "lstm.npz")
    assert "weight_hh_l0" in line and "3h x h" in line and "LSTM" in line
    np.savez(tmp_path / "rnn.npz", weight_hh_l0=np.eye(3))
    assert "nn.RNN" in bad_input("--cell", "lstm", "--weights", tmp_path / "rnn.npz")
    np.savez(tmp_path / "elman.npz", W_hh=np.eye(3))
    assert "'W_hh'" in bad_input("--cell", "lstm", "--weights", tmp_path / "elman.npz")
    np.savez(tmp_path / "gap.npz", **lstm, weight_hh_l2=lstm["weight_hh_l0"])
    assert "weight_hh_l1" in bad_input("--cell", "lstm", "--weights", tmp_path / "gap.npz")
    np.savez(tmp_path / "noW.npz", weight_ih_l0=lstm["weight_ih_l0"])
    assert "no weight_hh_l0" in bad_input("--cell", "lstm", "--weights", tmp_path / "noW.npz")
    nan = dict(lstm)
    nan["weight_hh_l0"] = lstm["weight_hh_l0"].copy()
    nan["weight_hh_l0"][0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", **nan)
    assert "NaN" in bad_input("--cell", "lstm", "--weights", tmp_path / "nan.npz")
    short = dict(lstm, bias_hh_l0=np.zeros(12))
    np.savez(tmp_path / "short.npz", **short)
    assert "bias_hh_l0" in bad_input("--cell", "lstm", "--weights", tmp_path / "short.npz")
    wq = dict(lstm, W_qh=np.zeros((2, 5)))
    np.savez(tmp_path / "wq.npz", **wq)
    assert "W_qh" in bad_input("--cell", "lstm", "--weights", tmp_path / "wq.npz")
    np.save(tmp_path / "one.npy", np.eye(3))
    assert "PyTorch names" in bad_input("--cell", "lstm", "--weights", tmp_path / "one.npy")
    assert "--hidden 5 conflicts" in bad_input(
        "--cell", "lstm", "--weights", tmp_path / "lstm.npz", "--hidden", 5
    )
    np.save(tmp_path / "x.npy", np.zeros((7, 2)))
    line = bad_input("--cell", "lstm", "--weights", tmp_path / "lstm.npz", "--inputs", tmp_path / "x.npy")
    assert "inputs_dim" in line
    assert "conflicts with --weights" in bad_input(
        "--cell", "gru", "--weights", tmp_path / "lstm.npz", "--gain", 2
    )
    assert "--forget-bias" in bad_input("--cell", "lstm", "--forget-bias", "nan")
    assert "--forget-bias" in bad_input("--cell", "tanh", "--forget-bias", "inf")
    assert "within +-1e300" in bad_input("--cell", "lstm", "--forget-bias=-1e308")  # ln f summed over T: -inf
    assert "overflow" in bad_input("--cell", "lstm", "--weights", save_huge(tmp_path))


def save_huge(tmp_path: Path) -> Path:
    path = tmp_path / "huge.npz"
    np.savez(path, weight_hh_l0=np.full((8, 2), 1e308), weight_ih_l0=np.full((8, 1), 1e308))
    return path


def test_pt_file_without_torch_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    line = bad_input("--cell", "lstm", "--weights", path)
    assert "bptt-cli[torch]" in line and "PyTorch" in line


@pytest.mark.skipif(shutil.which("bptt") is None, reason="the bptt entry point is not installed")
def test_installed_entry_point_runs_a_gated_cell() -> None:
    done = subprocess.run(
        ["bptt", "analyze", "--cell", "lstm", "--T", "20", "--hidden", "4", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rec = json.loads(done.stdout)
    assert len(rec["trials"][0]["grad_c_log10"]) == 20
    assert rec["trials"][0]["gain_log10"] == pytest.approx(
        analyze(GatedSpec(cell="lstm", T=20, hidden=4)).gain_log10[0], rel=1e-15
    )
    assert float(np.log10(np.exp(1.0))) == pytest.approx(1 / LN10)


def test_shipped_gated_config_names_analyze_options_and_runs() -> None:
    """configs/gated-vs-vanilla.toml: every key but the layout is an option of ``bptt analyze``,
    and every cell and forget bias of its grid runs (at the smallest T)."""
    import tomllib

    import typer

    path = Path(__file__).parent.parent / "configs" / "gated-vs-vanilla.toml"
    config = tomllib.loads(path.read_text())
    command = typer.main.get_command(app).commands["analyze"]  # type: ignore[attr-defined]
    flags = {opt for p in command.params for opt in p.opts}
    axes = {k: v for k, v in config.items() if k not in ("rows", "cols")}
    for key in axes:
        assert f"--{key}" in flags, key
    assert set(config["cell"]) == {"identity", "tanh", "gru", "lstm"}
    for cell in config["cell"]:
        for fb in config["forget-bias"]:
            rec = bptt_json(
                "--cell", cell, "--forget-bias", fb, "--T", min(config["T"]), "--hidden", config["hidden"]
            )
            assert rec["summary"]["verdict"] in ("vanishing", "stable", "exploding")


@pytest.mark.parametrize(("cell", "T"), [("lstm", 300), ("gru", 300), ("lstm", 1000)])
def test_gated_step_table_fits_80_columns_with_trials(cell: str, T: int) -> None:
    """With --trials the gated step table used to truncate its header (``||dL/dh_t…``) and wrap
    every row onto three lines at 80 columns."""
    from clitools import bptt as run

    from bptt_cli.report.format import report_steps

    result = run("analyze", "--cell", cell, "--T", T, "--hidden", 16, "--trials", 8, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.stderr
    table = result.stdout.split("Gradient of the loss w.r.t. the hidden state")[1].split("against t")[0]
    lines = table.splitlines()[1:-1]
    assert lines and all(len(line) <= 80 for line in lines), max(map(len, lines))
    assert "…" not in table and "||dL/dh_t||" in table and ("||dL/dc_t||" in table) == (cell == "lstm")
    rows = [line for line in lines if re.match(r"\|\s+\d+ \|", line)]
    assert [int(r.split("|")[1]) for r in rows] == report_steps(T)  # one line per step
    assert all("[" in r and "]" in r for r in rows)  # median [quartiles] of log10 ||dL/dh_t||


def test_gated_chart_draws_the_top_lyapunov_line() -> None:
    """The chart's 'prediction' was the median unit's gate product, about twice as steep as the
    measurement; it is the top Lyapunov exponent's line, or, without exponents, the gate product
    named as one median unit's."""
    out = bptt("analyze", "--cell", "lstm", "--forget-bias", 1, "--T", 200, "--hidden", 8).stdout
    rec = bptt_json("--cell", "lstm", "--forget-bias", 1, "--T", 200, "--hidden", 8)
    top = rec["trials"][0]["lyapunov"]["exponents"][0]
    assert f".. Lyapunov lambda_1 {top:+.3g}" in out
    plain = bptt("analyze", "--cell", "gru", "--T", 50, "--hidden", 4, "--lyapunov", 0).stdout
    assert ".. median unit's prod z_s, s>t" in plain
