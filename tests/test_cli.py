"""The ``bptt`` command line: output formats, the JSON contract, exit codes, every error path,
seeds, and the acceptance cases of issue 2.

In-process runs go through typer's CliRunner (stdout and stderr apart); a few real
subprocess runs check the installed entry point, ``python -m bptt_cli`` and a terminal.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import reference as ref
from clitools import (
    assert_bad_input,
    bptt,
    bptt_json,
    installed_bptt,
    plain_env,
    run_in_pty,
    run_process,
    stable,
)

import bptt_cli
from bptt_cli.analysis.analyze import analyze
from bptt_cli.core.cells import CELLS
from bptt_cli.core.elman import bptt as core_bptt
from bptt_cli.core.network import PARAMS, Spec, build_network
from bptt_cli.io.records import summary

LOG10_15 = math.log10(1.5)


# --------------------------------------------------------------------------- tables
def _table_rows(text: str, title: str) -> list[list[str]]:
    """Cells of the body rows of the rich table under ``title`` (plain ASCII layout, rich's
    ``box.ASCII``: a ``+---+`` frame, ``|`` columns, a ``|---+---|`` line under the header)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if title in line)
    rows: list[list[str]] = []
    body = False
    for line in lines[start + 2 :]:  # past the title and the top border
        if line.startswith("+"):
            break
        if line.startswith("|-"):
            body = True
        elif body and line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_analyze_T_100_tables() -> None:
    """The literal ``bptt analyze --T 100``: header, steps T, T-1, T-2, T-5, ..., 1 with the
    numbers of the Python API, parameter gradients, verdict; plain text (not a terminal)."""
    result = bptt("analyze", "--T", "100")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert "\x1b" not in out
    for word in (
        "cell identity",
        "loss last",
        "T 100",
        "hidden 64",
        "inputs 8",
        "outputs 8",
        "gaussian",
        "seed 0",
    ):
        assert word in out, word
    an = analyze(Spec(T=100))
    rho = float(an.spectrum.spectral_radius[0])
    assert f"rho {rho:.2f}" in out
    assert f"||W_hh||_2 {float(an.spectrum.spectral_norm[0]):.2f}" in out
    rows = _table_rows(out, "Gradient of the loss w.r.t. the hidden state")
    assert [int(r[0]) for r in rows] == [100, 99, 98, 95, 90, 80, 50, 1]
    g = an.grad_h_log10[0]
    for r in rows:
        t = int(r[0])
        assert int(r[1]) == 100 - t
        assert float(r[3]) == pytest.approx(g[t - 1], abs=0.006)  # printed to 2 decimals
        assert float(r[4]) == pytest.approx(g[t - 1] - g[-1], abs=0.006)
        assert float(r[5]) == pytest.approx((100 - t) * math.log10(rho), abs=0.006)
        mantissa, exponent = r[2].split("e")
        assert float(mantissa) * 10 ** int(exponent) == pytest.approx(10 ** g[t - 1], rel=0.006)
    params = _table_rows(out, "Parameter gradients")
    assert [r[0] for r in params] == list(PARAMS)
    assert [r[1] for r in params] == ["64 x 64", "64 x 8", "8 x 64", "64", "8"]
    for r in params:
        assert float(r[3]) == pytest.approx(an.grad_params_log10[r[0]][0], abs=0.006)
    verdict = summary(an)["verdict"]
    assert f"verdict: {verdict}" in out


def test_table_over_trials_shows_median_and_quartiles() -> None:
    result = bptt("analyze", "--T", "20", "--hidden", "6", "--trials", "5")
    assert result.exit_code == 0
    assert "5 (seed 0), median [quartiles]" in result.stdout
    rows = _table_rows(result.stdout, "Gradient of the loss")
    an = analyze(Spec(T=20, hidden=6, trials=5))
    g = an.grad_h_log10[:, 0]
    q1, med, q3 = np.quantile(g, [0.25, 0.5, 0.75])
    assert rows[-1][3] == f"{med:+.2f} [{q1:+.2f}, {q3:+.2f}]"


def test_table_exact_zero_printed_as_zero(tmp_path: Path) -> None:
    """A nilpotent W_hh: ||dL/dh_t|| is printed 0 (and log10 -inf), not a tiny number."""
    np.save(tmp_path / "n.npy", np.array([[0.0, 1.0], [0.0, 0.0]]))
    result = bptt("analyze", "--weights", tmp_path / "n.npy", "--T", "10")
    assert result.exit_code == 0, result.stderr
    rows = {int(r[0]): r for r in _table_rows(result.stdout, "Gradient of the loss")}
    assert rows[1][2] == "0" and rows[1][3] == "-inf"
    assert rows[10][2] != "0"
    assert "exactly zero" in result.stdout


def test_table_says_W_hh_from_file(tmp_path: Path) -> None:
    np.save(tmp_path / "w.npy", np.eye(3) * 0.5)
    result = bptt("analyze", "--weights", tmp_path / "w.npy", "--T", "5")
    assert result.exit_code == 0
    line = next(line for line in result.stdout.splitlines() if line.startswith("W_hh"))
    assert "w.npy" in line and "gaussian" not in line, line


# --------------------------------------------------------------------------- JSON contract
CONFIG_KEYS = {
    "cell": str, "loss": str, "T": int, "hidden": int, "inputs_dim": int, "outputs_dim": int,
    "ensemble": str, "gain": float, "radius": (float, type(None)), "norm": (float, type(None)),
    "bias": float, "trials": int, "seed": int, "tolerance": float, "weights": (str, type(None)),
    "inputs": (str, type(None)), "targets": (str, type(None)), "fail_on": (str, type(None)),
}  # fmt: skip
NUM = (float, int)
NUM_OR_NULL = (float, int, type(None))
SPREAD_KEYS = {"median", "q1", "q3", "min", "max"}
VERDICTS = {"vanishing", "stable", "exploding", "undefined"}


def check_contract(rec: dict[str, Any], T: int, h: int, n: int) -> None:
    """Every key of the JSON contract (docs/json.md), with its type and length."""
    assert rec["version"] == bptt_cli.__version__
    for key, kind in CONFIG_KEYS.items():
        assert key in rec["config"], key
        assert isinstance(rec["config"][key], kind), (key, rec["config"][key])
    assert len(rec["trials"]) == n
    for i, tr in enumerate(rec["trials"]):
        assert tr["trial"] == i
        assert tr["seed_spawn_key"] == [i]
        sp = tr["spectrum"]
        assert isinstance(sp["spectral_radius"], NUM) and isinstance(sp["spectral_norm"], NUM)
        assert isinstance(sp["condition_number"], NUM_OR_NULL)
        eig = np.array(sp["eigenvalues"], dtype=float)
        assert eig.shape == (h, 2)
        moduli = np.hypot(eig[:, 0], eig[:, 1])
        assert np.all(np.diff(moduli) <= 1e-12), "eigenvalues by decreasing modulus"
        assert sp["spectral_radius"] == pytest.approx(moduli[0], rel=1e-12)
        assert len(tr["grad_h_log10"]) == T
        assert all(isinstance(v, NUM_OR_NULL) for v in tr["grad_h_log10"])
        assert set(tr["grad_params_log10"]) == set(PARAMS)
        assert all(isinstance(v, NUM_OR_NULL) for v in tr["grad_params_log10"].values())
        assert isinstance(tr["gain_log10"], NUM_OR_NULL)
        assert isinstance(tr["loss_log10"], NUM_OR_NULL)
        assert tr["verdict"] in VERDICTS
    s = rec["summary"]
    assert isinstance(s["gain_log10"], NUM_OR_NULL)
    assert s["verdict"] in VERDICTS
    assert s["tolerance"] == rec["config"]["tolerance"]
    assert s["trials"] == n
    assert set(s["spread"]) >= {"gain_log10", "grad_h1_log10"}
    for k in ("gain_log10", "grad_h1_log10"):
        assert set(s["spread"][k]) == SPREAD_KEYS
    assert set(s["verdict_fractions"]) == VERDICTS
    assert sum(s["verdict_fractions"].values()) == pytest.approx(1.0)
    assert isinstance(s["spectral_radius"], NUM) and isinstance(s["spectral_norm"], NUM)
    assert set(s["grad_params_log10"]) == set(PARAMS)


def test_json_contract_and_equal_to_python_api() -> None:
    args = ["--T", "40", "--hidden", "7", "--trials", "3", "--seed", "5", "--cell", "tanh", "--loss", "mean"]
    result = bptt("analyze", *args, "--format", "json")
    assert result.exit_code == 0 and result.stderr == ""
    assert result.stdout.endswith("\n") and result.stdout.count("\n") == 1
    rec = json.loads(result.stdout)
    check_contract(rec, T=40, h=7, n=3)
    assert rec["config"] | {} == {
        **rec["config"], "cell": "tanh", "loss": "mean", "T": 40, "hidden": 7, "inputs_dim": 8,
        "outputs_dim": 8, "ensemble": "gaussian", "gain": 1.0, "radius": None, "norm": None,
        "bias": 0.0, "trials": 3, "seed": 5, "tolerance": 1.0, "fail_on": None, "weights": None,
    }  # fmt: skip
    an = analyze(Spec(T=40, hidden=7, trials=3, seed=5, cell="tanh", loss="mean"))
    for i, tr in enumerate(rec["trials"]):
        assert tr["grad_h_log10"] == an.grad_h_log10[i].tolist()  # exact: JSON floats round-trip
        assert tr["gain_log10"] == float(an.gain_log10[i])
        assert tr["loss_log10"] == pytest.approx(float(an.grads.loss_ln[i]) / math.log(10), rel=1e-15)
        assert tr["grad_params_log10"] == {k: float(v[i]) for k, v in an.grad_params_log10.items()}
        assert tr["verdict"] == an.verdicts[i]
        W = an.net.W_hh[i]
        assert tr["spectrum"]["spectral_norm"] == pytest.approx(np.linalg.norm(W, 2), rel=1e-13)
        assert tr["spectrum"]["spectral_radius"] == pytest.approx(
            np.max(np.abs(np.linalg.eigvals(W))), rel=1e-12
        )
        assert tr["spectrum"]["condition_number"] == pytest.approx(np.linalg.cond(W, 2), rel=1e-9)
    s = rec["summary"]
    assert s["gain_log10"] == float(np.median(an.gain_log10))
    assert s["spread"]["gain_log10"]["min"] == float(an.gain_log10.min())
    assert s["spread"]["grad_h1_log10"]["max"] == float(an.grad_h_log10[:, 0].max())
    assert s["spread"]["grad_h1_log10"]["q1"] == pytest.approx(np.quantile(an.grad_h_log10[:, 0], 0.25))
    assert s["spectral_radius"] == float(np.median(an.spectrum.spectral_radius))


def test_json_verdict_rule() -> None:
    """vanishing below -tolerance, exploding above +tolerance, else stable (median gain);
    orthogonal W_hh times r gives gain exactly 29 log10 r, so the boundaries can be probed."""
    cases = [(2.0, 1.0), (0.3, 1.0), (1.0, 0.5), (1.2, 100.0)]
    for tol in (1.0, 0.25):
        for off in (-0.004, 0.004):  # just inside / just outside each boundary
            cases += [(10 ** ((tol + off) / 29), tol), (10 ** (-(tol + off) / 29), tol)]
    for gain, tol in cases:
        rec = bptt_json(
            "--ensemble", "orthogonal", "--radius", repr(gain), "--T", 30, "--hidden", 6, "--tolerance", tol
        )
        g = rec["summary"]["gain_log10"]
        assert g == pytest.approx(29 * math.log10(gain), abs=1e-9)
        want = "vanishing" if g < -tol else "exploding" if g > tol else "stable"
        assert rec["summary"]["verdict"] == want
        assert rec["trials"][0]["verdict"] == want
        assert rec["summary"]["tolerance"] == tol
        assert rec["summary"]["verdict_fractions"][want] == 1.0


def test_json_null_for_exact_zeros_and_strict_json(tmp_path: Path) -> None:
    np.save(tmp_path / "n.npy", np.triu(np.ones((3, 3)), k=1))
    result = bptt("analyze", "--weights", tmp_path / "n.npy", "--T", "8", "--format", "json")
    assert result.exit_code == 0
    assert "NaN" not in result.stdout and "Infinity" not in result.stdout

    def no_constants(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    rec = json.loads(result.stdout, parse_constant=no_constants)
    tr = rec["trials"][0]
    assert [v is None for v in tr["grad_h_log10"]] == [True] * 5 + [False] * 3
    assert tr["gain_log10"] is None and tr["verdict"] == "vanishing"
    assert tr["spectrum"]["condition_number"] is None  # singular W_hh
    assert tr["spectrum"]["spectral_radius"] == 0.0


# --------------------------------------------------------------------------- CSV
def test_csv_one_row_per_trial_and_step() -> None:
    result = bptt("analyze", "--T", "12", "--hidden", "5", "--trials", "2", "--format", "csv")
    assert result.exit_code == 0 and "\x1b" not in result.stdout
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == ["trial", "t", "lag", "grad_h_log10", "ratio_log10", "predicted_log10"]
    assert len(rows) == 24
    rec = bptt_json("--T", "12", "--hidden", "5", "--trials", "2")
    for row in rows:
        i, t = int(row["trial"]), int(row["t"])
        tr = rec["trials"][i]
        g = tr["grad_h_log10"]
        assert int(row["lag"]) == 12 - t
        assert float(row["grad_h_log10"]) == g[t - 1]
        assert float(row["ratio_log10"]) == pytest.approx(g[t - 1] - g[-1], abs=1e-12)
        rho = tr["spectrum"]["spectral_radius"]
        assert float(row["predicted_log10"]) == pytest.approx((12 - t) * math.log10(rho), abs=1e-12)


def test_csv_exact_zeros_are_empty_cells(tmp_path: Path) -> None:
    np.save(tmp_path / "n.npy", np.array([[0.0, 2.0], [0.0, 0.0]]))
    result = bptt("analyze", "--weights", tmp_path / "n.npy", "--T", "5", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["grad_h_log10"] == "" for r in rows] == [True, True, True, False, False]
    assert all(r["predicted_log10"] == "" for r in rows if r["lag"] != "0")  # rho = 0: log10 0


# --------------------------------------------------------------------------- --output
@pytest.mark.parametrize("suffix", [".json", ".csv", ".txt"])
def test_output_file_by_suffix_atomic(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"result{suffix}"
    result = bptt("analyze", "--T", "10", "--hidden", "4", "--output", out)
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == ""
    assert [p.name for p in tmp_path.iterdir()] == [out.name], "no temporary file left behind"
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask, "an ordinary new file, not a private one"
    text = out.read_text()
    if suffix == ".json":
        assert stable(json.loads(text)) == stable(bptt_json("--T", "10", "--hidden", "4"))
    elif suffix == ".csv":
        assert text == bptt("analyze", "--T", "10", "--hidden", "4", "--format", "csv").stdout
    else:
        assert "Gradient of the loss w.r.t. the hidden state" in text and "verdict:" in text
        assert "\x1b" not in text


def test_output_format_option_overrides_suffix(tmp_path: Path) -> None:
    out = tmp_path / "result.txt"
    assert bptt("analyze", "--T", "5", "--hidden", "3", "--format", "json", "--output", out).exit_code == 0
    assert json.loads(out.read_text())["config"]["T"] == 5


def test_output_unknown_suffix_is_bad_input(tmp_path: Path) -> None:
    assert_bad_input(bptt("analyze", "--T", "5", "--output", tmp_path / "r.xml"), "r.xml")
    assert list(tmp_path.iterdir()) == []


def test_output_bad_input_leaves_existing_file_alone(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    out.write_text("previous\n")
    np.save(tmp_path / "w.npy", np.array([[np.nan]]))
    assert_bad_input(bptt("analyze", "--weights", tmp_path / "w.npy", "--output", out), "NaN")
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json", "w.npy"]


def test_output_is_a_directory_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "d.json").mkdir()
    assert_bad_input(bptt("analyze", "--T", "5", "--output", tmp_path / "d.json"), "d.json")
    assert [p.name for p in tmp_path.iterdir()] == ["d.json"]
    assert list((tmp_path / "d.json").iterdir()) == []


def test_output_write_failure_is_one_line_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OSError while writing (full disk, permissions): one error line, no file, no temp file."""

    def full_disk(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    out = tmp_path / "r.json"
    assert_bad_input(bptt("analyze", "--T", "5", "--output", out), "r.json", "No space left")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- exit codes
@pytest.mark.parametrize(
    ("radius", "fail_on", "status"),
    [
        (1.5, "exploding", 1),
        (1.5, "unstable", 1),
        (1.5, "vanishing", 0),
        (0.5, "vanishing", 1),
        (0.5, "unstable", 1),
        (0.5, "exploding", 0),
        (1.0, "unstable", 0),
        (1.0, "vanishing", 0),
        (1.0, "exploding", 0),
    ],
)
def test_fail_on(radius: float, fail_on: str, status: int) -> None:
    args = [
        "analyze",
        "--ensemble",
        "orthogonal",
        "--radius",
        radius,
        "--T",
        50,
        "--hidden",
        8,
        "--format",
        "json",
    ]
    result = bptt(*args, "--fail-on", fail_on)
    assert result.exit_code == status, result.stderr
    rec = json.loads(result.stdout)  # the output is written either way
    assert rec["config"]["fail_on"] == fail_on
    if status == 1:
        assert result.stderr.splitlines() == [
            f"bptt: verdict {rec['summary']['verdict']} matches --fail-on {fail_on}"
        ]
    else:
        assert result.stderr == ""


def test_version() -> None:
    result = bptt("--version")
    assert result.exit_code == 0
    assert result.stdout == f"bptt {bptt_cli.__version__}\n"


def test_help_plain_and_fast_to_import() -> None:
    for args in (["--help"], ["analyze", "--help"]):
        result = bptt(*args)
        assert result.exit_code == 0 and "\x1b" not in result.stdout
        assert "Usage" in result.stdout
    assert "--T" in bptt("analyze", "--help").stdout


def test_no_arguments_prints_help_not_an_error() -> None:
    """``bptt`` alone shows the usage (like --help), not a multi-line 'error'."""
    result = bptt()
    assert "bptt: error" not in result.stderr
    assert "analyze" in result.stdout
    assert result.exit_code == 0


# --------------------------------------------------------------------------- bad input
BAD_ARGS: list[tuple[list[str], tuple[str, ...]]] = [
    (["--T", "0"], ("--T",)),
    (["--T", "-5"], ("--T",)),
    (["--T", "abc"], ("--T",)),
    (["--T"], ("--T",)),
    (["--hidden", "0"], ("--hidden",)),
    (["--hidden", "-3"], ("--hidden",)),
    (["--inputs-dim", "-1"], ("--inputs-dim",)),
    (["--outputs-dim", "0"], ("--outputs-dim",)),
    (["--trials", "0"], ("--trials",)),
    (["--seed", "-1"], ("--seed",)),
    (["--cell", "lstm2"], ("--cell", "lstm2")),
    (["--loss", "max"], ("--loss", "max")),
    (["--ensemble", "wishart"], ("--ensemble", "wishart")),
    (["--format", "xml"], ("--format", "xml")),
    (["--fail-on", "always"], ("--fail-on", "always")),
    (["--radius", "1.5", "--norm", "2"], ("radius", "norm")),
    (["--gain", "2", "--radius", "1.5"], ("--gain", "--radius")),
    (["--gain", "2", "--norm", "1.5"], ("--gain", "--norm")),
    (["--radius", "-1"], ("radius",)),
    (["--norm", "nan"], ("norm",)),
    (["--gain", "inf"], ("gain",)),
    (["--bias", "-0.5"], ("bias",)),
    (["--tolerance", "-1"], ("tolerance",)),
    (["--tolerance", "nan"], ("tolerance",)),
    (["--no-such-option"], ("--no-such-option",)),
    (["--output", "/no/such/dir/out.json"], ("/no/such/dir",)),
]


@pytest.mark.parametrize(("args", "words"), BAD_ARGS, ids=[" ".join(a) for a, _ in BAD_ARGS])
def test_bad_arguments_one_line_exit_2(args: list[str], words: tuple[str, ...]) -> None:
    assert_bad_input(bptt("analyze", *args), *words)


def test_interrupt_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C during the computation: exit 130, no traceback, no output.

    (Typer turns KeyboardInterrupt into Exit(130) itself, silently, before cli.py's handler
    that would print "bptt: error: interrupted" sees it; either is acceptable here.)"""
    import bptt_cli.analysis.analyze

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(bptt_cli.analysis.analyze, "analyze", interrupted)
    result = bptt("analyze", "--T", "5", "--format", "json")
    assert result.exit_code == 130
    assert result.stdout == ""
    assert result.stderr in ("", "bptt: error: interrupted\n")


def test_unknown_command() -> None:
    assert_bad_input(bptt("analyse"), "analyse")


def test_conflicting_weights_and_ensemble(tmp_path: Path) -> None:
    np.save(tmp_path / "w.npy", np.eye(3))
    assert_bad_input(bptt("analyze", "--weights", tmp_path / "w.npy", "--ensemble", "gaussian"), "--ensemble")


def test_bad_input_subprocess_no_traceback(tmp_path: Path) -> None:
    """The real entry point: exit 2, one stderr line, nothing else (pickled npz)."""
    np.savez(tmp_path / "w.npz", W_hh=np.array([[1, 2], [3, 4]], dtype=object))
    proc = run_process(installed_bptt(), "analyze", "--weights", str(tmp_path / "w.npz"))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("bptt: error: ")
    assert "pickle" in proc.stderr


# --------------------------------------------------------------------------- terminals and colour
def test_no_escape_codes_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")  # only "not a TTY" keeps it plain
    for args in (["analyze", "--T", "20"], ["analyze", "--T", "20", "--format", "csv"], ["--help"]):
        result = bptt(*args)
        assert "\x1b" not in result.stdout and "\x1b" not in result.stderr
    result = bptt("analyze", "--T", "20", env={"NO_COLOR": "1"})
    assert "\x1b" not in result.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_terminal_colour_and_NO_COLOR() -> None:
    """On a real terminal the verdict is coloured; with NO_COLOR (or TERM=dumb) no escape
    codes at all (no colour, no bold)."""
    args = [installed_bptt(), "analyze", "--T", "20", "--hidden", "4"]
    coloured = run_in_pty(args, plain_env(TERM="xterm-256color", COLUMNS="120"))
    assert b"\x1b[" in coloured  # the harness does see a terminal
    for extra in ({"NO_COLOR": "1"}, {"TERM": "dumb"}):
        env = plain_env(TERM="xterm-256color", COLUMNS="120") | extra
        out = run_in_pty(args, env)
        assert b"\x1b" not in out, (extra, out[:200])
        assert b"Gradient of the loss" in out


# --------------------------------------------------------------------------- processes
def test_installed_entry_point_smoke() -> None:
    """The installed ``bptt`` script: ``bptt analyze --T 100 --format json``."""
    proc = run_process(installed_bptt(), "analyze", "--T", "100", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    rec = json.loads(proc.stdout)
    check_contract(rec, T=100, h=64, n=1)
    assert rec["trials"] == bptt_json("--T", "100")["trials"]


def test_python_dash_m() -> None:
    proc = run_process(sys.executable, "-m", "bptt_cli", "--version")
    assert proc.returncode == 0 and proc.stdout == f"bptt {bptt_cli.__version__}\n"
    proc = run_process(
        sys.executable, "-m", "bptt_cli", "analyze", "--T", "3", "--hidden", "2", "--format", "json"
    )
    assert proc.returncode == 0 and len(json.loads(proc.stdout)["trials"][0]["grad_h_log10"]) == 3


# --------------------------------------------------------------------------- seeds
def test_same_seed_same_numbers_different_seed_different() -> None:
    a = bptt(
        "analyze", "--T", "30", "--hidden", "6", "--trials", "3", "--seed", "42", "--format", "json"
    ).stdout
    b = bptt(
        "analyze", "--T", "30", "--hidden", "6", "--trials", "3", "--seed", "42", "--format", "json"
    ).stdout
    c = bptt(
        "analyze", "--T", "30", "--hidden", "6", "--trials", "3", "--seed", "43", "--format", "json"
    ).stdout
    assert stable(json.loads(a)) == stable(json.loads(b))  # all but the process's peak memory
    assert json.loads(a)["trials"][0]["grad_h_log10"] != json.loads(c)["trials"][0]["grad_h_log10"]


def test_trial_i_uses_spawned_seed_sequence() -> None:
    """Trial i of --trials 4 is what SeedSequence(seed).spawn(4)[i] gives alone, and the same
    trial whatever the number of trials."""
    seed, n = 7, 4
    rec = bptt_json(
        "--T", "25", "--hidden", "5", "--cell", "tanh", "--trials", n, "--seed", seed, "--bias", "0.3"
    )
    spec1 = Spec(T=25, hidden=5, cell="tanh", trials=1, seed=seed, bias=0.3)
    for i, seq in enumerate(np.random.SeedSequence(seed).spawn(n)):
        net = build_network(spec1, seeds=[seq])
        _, grads = core_bptt(net, CELLS["tanh"], "last")
        assert rec["trials"][i]["grad_h_log10"] == (grads.dL_dh_s[0] / math.log(10)).tolist()
        assert rec["trials"][i]["seed_spawn_key"] == list(seq.spawn_key)
        # ... and against the independent reference on the same arrays
        p = {k: getattr(net, k)[0] for k in PARAMS}
        r = ref.bptt(p, net.x[0], net.y[0], "tanh", "last")
        np.testing.assert_allclose(
            rec["trials"][i]["grad_h_log10"], np.log10(np.linalg.norm(r.dL_dh, axis=1)), atol=1e-12
        )
    two = bptt_json(
        "--T", "25", "--hidden", "5", "--cell", "tanh", "--trials", 2, "--seed", seed, "--bias", "0.3"
    )
    assert two["trials"] == rec["trials"][:2]


def test_changing_T_keeps_W_hh_and_extends_inputs() -> None:
    """README: each quantity has its own stream; a longer T extends the same input sequence."""
    short = build_network(Spec(T=50, hidden=6, seed=3))
    long = build_network(Spec(T=80, hidden=6, seed=3))
    np.testing.assert_array_equal(short.W_hh, long.W_hh)
    np.testing.assert_array_equal(short.x, long.x[:, :50])
    np.testing.assert_array_equal(short.y, long.y[:, :50])


# --------------------------------------------------------------------------- acceptance
def test_acceptance_orthogonal_radius_1_5_T_3000() -> None:
    """``--cell identity --ensemble orthogonal --radius 1.5 --hidden 32 --T 3000 --format json``:
    finite log10 values from ~+500 up, no null/inf/NaN; exact: 1.5^(T-t) ||dL/dh_T||."""
    result = bptt(
        "analyze", "--cell", "identity", "--ensemble", "orthogonal", "--radius", "1.5", "--hidden", "32",
        "--T", "3000", "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "NaN" not in result.stdout and "Infinity" not in result.stdout
    rec = json.loads(result.stdout)
    tr = rec["trials"][0]
    g = tr["grad_h_log10"]
    assert len(g) == 3000 and None not in g
    assert all(math.isfinite(v) for v in g)
    assert g[-1] > 500 and g[0] > 1000
    want = g[-1] + (3000 - np.arange(1, 3001)) * LOG10_15
    np.testing.assert_allclose(g, want, rtol=0, atol=1e-9)
    assert None not in tr["grad_params_log10"].values()
    assert tr["gain_log10"] == pytest.approx(2999 * LOG10_15, abs=1e-9)
    assert rec["summary"]["verdict"] == "exploding"
    assert tr["spectrum"]["spectral_radius"] == pytest.approx(1.5, rel=1e-13)
    assert tr["spectrum"]["spectral_norm"] == pytest.approx(1.5, rel=1e-13)


@pytest.mark.slow
def test_acceptance_mid_size_tanh_against_plain_float64() -> None:
    """Stand-in for ``--hidden 1024 --T 10000 --cell tanh``: hidden 128, T 2000, against the
    plain float64 recursion (which does not overflow here), every t to 1e-9."""
    rec = bptt_json("--hidden", 128, "--T", 2000, "--cell", "tanh", "--loss", "mean")
    net = build_network(Spec(hidden=128, T=2000, cell="tanh", loss="mean"))
    p = {k: getattr(net, k)[0] for k in PARAMS}
    r = ref.bptt(p, net.x[0], net.y[0], "tanh", "mean")
    tr = rec["trials"][0]
    np.testing.assert_allclose(
        tr["grad_h_log10"], np.log10(np.linalg.norm(r.dL_dh, axis=1)), rtol=0, atol=1e-9
    )
    for name in PARAMS:
        assert tr["grad_params_log10"][name] == pytest.approx(
            math.log10(np.linalg.norm(r.grads[name])), abs=1e-9
        )
    # J^T g underflows float64 here (~1e-396): against the recursion renormalised every step
    assert tr["gain_log10"] == pytest.approx(r.gain_ln_rescaled / math.log(10), abs=1e-9)
    assert tr["loss_log10"] == pytest.approx(math.log10(r.loss), abs=1e-12)


def test_zero_W_hh_is_quiet_and_vanishing() -> None:
    """``--gain 0``: W_hh = 0, condition number 0/0 is null, no warning on stderr."""
    result = bptt("analyze", "--gain", "0", "--T", "5", "--format", "json")
    assert result.exit_code == 0 and result.stderr == ""
    rec = json.loads(result.stdout)
    assert rec["trials"][0]["spectrum"]["condition_number"] is None
    assert rec["trials"][0]["gain_log10"] is None  # J^T g = 0 exactly
    assert rec["summary"]["verdict"] == "vanishing"


def test_streamed_json_is_the_same_text_as_dumps() -> None:
    """write_json (analyze's large records, in pieces) writes exactly what json.dumps would."""
    from bptt_cli.io.jsontext import CHUNK, dumps, write_json

    obj = {
        "a": np.array([1.0, np.nan, -np.inf, 2.5e-300]),
        "b": [np.float64(3.0), None, "x", Path("/tmp")],
        "c": np.arange(2 * CHUNK + 5) / 7,
        "d": np.zeros((3, 2)),
        "e": np.array([1, 2], dtype=np.int64),
        "f": np.array([True, False]),
        "g": {"h": np.float32(1.5), 1: np.int32(4)},
        "i": np.empty(0),
    }
    pieces: list[str] = []
    write_json(obj, pieces.append)
    assert "".join(pieces) == dumps(obj) and len(pieces) > 10


def test_reader_going_away_is_exit_141_and_the_plot_is_still_written(tmp_path: Path) -> None:
    """``bptt analyze ... --plot g.png | head -1``: exit 141 (as SIGPIPE), not 1 (a --fail-on
    match), no message, and the image was written before the tables."""
    pytest.importorskip("matplotlib")
    import subprocess

    png = tmp_path / "g.png"
    proc = subprocess.Popen(
        [installed_bptt(), "analyze", "--T", "300", "--trials", "3", "--plot", str(png)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=plain_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and err == ""
    assert png.stat().st_size > 10_000


def test_piped_tables_are_not_wrapped_at_80_columns() -> None:
    env = plain_env()
    env.pop("COLUMNS", None)
    proc = run_process(installed_bptt(), "analyze", "--T", "100", "--trials", "3", env=env)
    assert proc.returncode == 0
    step_rows = [line for line in proc.stdout.splitlines() if line.startswith("| 100 ")]
    assert step_rows and "[" in step_rows[0] and "]" in step_rows[0]  # median [q1, q3] on one line
