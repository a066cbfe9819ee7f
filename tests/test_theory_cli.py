"""The theory quantities on the command line: analyze's tables and JSON, ``--lyapunov``,
``bptt spectrum`` and the terminal plot."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from bptt_cli.analysis.analyze import analyze
from bptt_cli.cli import app
from bptt_cli.core.network import Spec
from bptt_cli.report.termplot import Canvas, complex_plane, line_chart

runner = CliRunner()
THEORY_KEYS = {"rates", "mean_field", "lyapunov", "horizon", "effective_memory", "nonnormality", "alignment"}


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def analyze_json(*args: str) -> dict:
    code, out, err = invoke("analyze", "--format", "json", *args)
    assert code == 0, err
    return json.loads(out)


def test_json_has_theory_per_trial_matching_the_core() -> None:
    rec = analyze_json("--cell", "tanh", "--gain", "1.5", "--T", "60", "--hidden", "16", "--trials", "3")
    th = analyze(Spec(cell="tanh", gain=1.5, T=60, hidden=16, trials=3), theory=True).theory
    assert th is not None
    assert rec["config"]["lyapunov"] == 4
    for i, trial in enumerate(rec["trials"]):
        assert trial.keys() >= THEORY_KEYS
        rates = trial["rates"]
        for name in ("observed", "gelfand", "spectral_norm_bound", "mean_field"):
            assert rates[name] == pytest.approx(float(th.rates[name][i]), rel=1e-12)
        assert rates["window"] == [0, 59]
        assert rates["observed_of"] == "dL/dh_t" and rates["mean_field_reason"] is None
        assert trial["mean_field"]["q_star"] > 0 and trial["mean_field"]["chi_1"] > 0
        ly = trial["lyapunov"]
        assert len(ly["exponents"]) == 4 and ly["transient"] == 6 and ly["steps"] == 54
        assert set(trial["horizon"]) == {"vanish", "explode"}
        assert isinstance(trial["effective_memory"], int)
        nn = trial["nonnormality"]
        assert set(nn) >= {"henrici", "peak_growth_log10", "peak_growth_k", "numerical_abscissa"}
        assert nn["peak_growth_method"] == "all" and isinstance(nn["peak_growth_k"], int)
        al = trial["alignment"]
        assert len(al["projection"]) == len(al["tan_log10"]) == 60
        assert al["dimension"] in (1, 2) and 0 <= al["ratio"] <= 1
        assert al["rate"] == pytest.approx(math.log(al["ratio"]))
    summary = rec["summary"]["theory"]
    assert summary["rates"]["observed"] == pytest.approx(float(np.median(th.rates["observed"])))
    assert len(summary["lyapunov"]) == 4


def test_mean_field_null_with_a_reason() -> None:
    rec = analyze_json("--cell", "tanh", "--ensemble", "orthogonal", "--T", "10", "--hidden", "8")
    trial = rec["trials"][0]
    assert trial["rates"]["mean_field"] is None and trial["mean_field"] is None
    assert "orthogonal" in trial["rates"]["mean_field_reason"]


def test_weights_file_has_no_mean_field(tmp_path: Path) -> None:
    path = tmp_path / "w.npy"
    np.save(path, np.diag([0.5, 0.9, -0.7]))
    rec = analyze_json("--weights", str(path), "--T", "30")
    trial = rec["trials"][0]
    assert trial["rates"]["mean_field"] is None
    assert trial["rates"]["gelfand"] == pytest.approx(math.log(0.9))
    assert trial["nonnormality"]["henrici"] == pytest.approx(0.0, abs=1e-7)


def test_lyapunov_option() -> None:
    rec = analyze_json("--lyapunov", "0", "--T", "10", "--hidden", "6")
    assert rec["trials"][0]["lyapunov"] is None and rec["config"]["lyapunov"] == 0
    rec = analyze_json("--lyapunov", "6", "--T", "10", "--hidden", "6")
    assert len(rec["trials"][0]["lyapunov"]["exponents"]) == 6
    code, out, err = invoke("analyze", "--lyapunov", "7", "--hidden", "6")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("bptt: error:") and "lyapunov" in err
    code, _, err = invoke("analyze", "--lyapunov", "-1")
    assert code == 2 and err.startswith("bptt: error:")


def test_mean_loss_records_the_chain() -> None:
    rec = analyze_json("--loss", "mean", "--cell", "tanh", "--T", "40", "--hidden", "8")
    assert rec["trials"][0]["rates"]["observed_of"] == "last step's chain"


def test_exact_zero_gradient_gives_nulls_not_nan(tmp_path: Path) -> None:
    """A nilpotent W_hh: the gradient dies exactly; rates and horizons stay valid JSON."""
    path = tmp_path / "w.npy"
    np.save(path, np.array([[0.0, 1.0], [0.0, 0.0]]))
    code, out, err = invoke("analyze", "--weights", str(path), "--T", "20", "--format", "json")
    assert code == 0, err
    trial = json.loads(out)["trials"][0]
    assert trial["rates"]["gelfand"] is None  # ln 0
    assert trial["rates"]["window"] == [0, 1]  # dL/dh_t = 0 from lag 2 on
    assert trial["horizon"]["vanish"] == 2
    assert trial["alignment"]["dimension"] == 0 and trial["alignment"]["ratio"] is None


def test_analyze_table_shows_the_theory() -> None:
    code, out, _ = invoke("analyze", "--cell", "tanh", "--gain", "2", "--T", "50", "--hidden", "32")
    assert code == 0
    for text in ("Theory beside measurement", "observed rate", "Gelfand rate", "spectral-norm bound",
                 "mean-field rate", "Lyapunov exponent", "effective memory", "Henrici", "Alignment"):
        assert text in out
    assert "\x1b[" not in out


def test_spectrum_circular_law_acceptance() -> None:
    args = ["--hidden", "500", "--ensemble", "gaussian", "--gain", "1", "--format", "json"]
    code, out, err = invoke("spectrum", *args)
    assert code == 0, err
    rec = json.loads(out)
    trial = rec["trials"][0]
    assert trial["prediction"]["law"] == "circular law" and trial["prediction"]["radius"] == 1.0
    assert abs(trial["spectrum"]["spectral_radius"] - 1.0) < 0.05
    assert len(trial["spectrum"]["eigenvalues"]) == 500 and len(trial["spectrum"]["singular_values"]) == 500
    moduli = np.hypot(*np.array(trial["spectrum"]["eigenvalues"]).T)
    assert np.all(np.diff(moduli) <= 1e-12)  # sorted by decreasing modulus
    # the circular law: uniform on the disk, so a fraction r^2 lies within radius r
    assert np.mean(moduli < 0.5) == pytest.approx(0.25, abs=0.05)
    assert rec["summary"]["relative_error"] == pytest.approx(trial["spectrum"]["spectral_radius"] - 1.0)


def test_spectrum_table_draws_the_disk() -> None:
    code, out, _ = invoke("spectrum", "--hidden", "300", "--ensemble", "gaussian", "--gain", "1")
    assert code == 0
    assert "circular law" in out and "Eigenvalues in the complex plane" in out
    # not a terminal (and TERM=dumb): the ASCII fallback, one character per cell
    assert not any("\u2800" <= ch <= "\u28ff" for ch in out)
    plot_rows = [line for line in out.splitlines() if " |" in line and "*" in line]
    assert len(plot_rows) >= 15
    assert max(len(line) for line in out.splitlines()) <= 100
    assert "\x1b[" not in out
    # a colour terminal gets braille dots (FORCE_COLOR makes rich see one)
    result = runner.invoke(
        app, ["spectrum", "--hidden", "300", "--ensemble", "gaussian", "--gain", "1"],
        env={"FORCE_COLOR": "1", "TERM": "xterm-256color"},
    )
    assert result.exit_code == 0
    braille = [line for line in result.stdout.splitlines() if any("\u2801" <= ch <= "\u28ff" for ch in line)]
    assert len(braille) >= 15


def test_spectrum_matches_analyze_and_other_formats(tmp_path: Path) -> None:
    args = ["--hidden", "12", "--trials", "2", "--seed", "3"]
    spec_rec = json.loads(invoke("spectrum", *args, "--format", "json")[1])
    an_rec = analyze_json(*args, "--T", "5")
    for s, a in zip(spec_rec["trials"], an_rec["trials"], strict=True):
        assert s["spectrum"]["eigenvalues"] == a["spectrum"]["eigenvalues"]
    code, out, _ = invoke("spectrum", "--hidden", "4", "--trials", "2", "--format", "csv")
    assert code == 0
    rows = out.strip().splitlines()
    assert rows[0] == "trial,i,eigenvalue_re,eigenvalue_im,modulus,singular_value" and len(rows) == 9
    target = tmp_path / "s.json"
    assert invoke("spectrum", "--hidden", "4", "--output", str(target))[0] == 0
    assert json.loads(target.read_text())["config"]["hidden"] == 4


def test_spectrum_from_a_file_and_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "w.npy"
    np.save(path, np.array([[0.0, 2.0], [-2.0, 0.0]]))
    rec = json.loads(invoke("spectrum", "--weights", str(path), "--format", "json")[1])
    assert rec["trials"][0]["prediction"]["radius"] is None
    assert rec["trials"][0]["spectrum"]["spectral_radius"] == pytest.approx(2.0)
    for args in (["--weights", str(path), "--gain", "2"], ["--gain", "1", "--radius", "2"],
                 ["--hidden", "3", "--weights", str(path)], ["--hidden", "0"], ["--ensemble", "nope"]):
        code, out, err = invoke("spectrum", *args)
        assert code == 2 and out == "" and err.startswith("bptt: error:") and err.count("\n") == 1, args


@pytest.mark.skipif(shutil.which("bptt") is None, reason="bptt entry point not installed")
def test_spectrum_subprocess_plain_when_piped() -> None:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "80"}
    env.pop("FORCE_COLOR", None)
    proc = subprocess.run(
        [sys.executable, "-m", "bptt_cli", "spectrum", "--hidden", "200", "--gain", "0.8"],
        capture_output=True, text=True, env=env, check=False, encoding="utf-8",
    )
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stdout
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80
    assert "predicted radius" in proc.stdout


# ---------------------------------------------------------------- the terminal plot


def test_canvas_braille_dots() -> None:
    canvas = Canvas(2, 1, 0.0, 4.0, 0.0, 4.0)
    # the top-left dot of cell 0 and the bottom-right dot of cell 1
    canvas.points(np.array([0.1, 3.9]), np.array([3.9, 0.1]))
    (row,) = canvas.lines()
    assert row.plain == chr(0x2801) + chr(0x2880)
    (row,) = canvas.lines(unicode=False)
    assert row.plain == "**"


def test_complex_plane_ascii_fallback_and_symmetry() -> None:
    class AsciiFile(io.StringIO):
        encoding = "ascii"  # type: ignore[assignment]

    console = Console(file=AsciiFile(), width=80, color_system=None)
    z = np.array([0.5 + 0.5j, 0.5 - 0.5j, -0.9 + 0j])
    text = complex_plane(z, console, height=10).plain
    assert all(ord(ch) < 128 for ch in text)
    rows = [line.split("|", 1)[1] for line in text.splitlines() if "|" in line]
    assert len(rows) == 11 and rows == rows[::-1]  # conjugate pairs: symmetric about the real axis
    assert sum(line.count("*") for line in rows) >= 3 and any("." in line for line in rows)


def test_line_chart_corners_and_labels() -> None:
    class AsciiFile(io.StringIO):
        encoding = "ascii"  # type: ignore[assignment]

    console = Console(file=AsciiFile(), width=80, color_system=None)
    x = np.arange(50.0)
    series = [(2 * x - 10, "green", "o"), (np.full(50, np.nan), "red", "x")]
    lines = line_chart(x, series, console, width=40, height=8).plain.splitlines()
    assert len(lines) == 9  # 8 rows and the x labels
    assert lines[0].startswith("+88 |") and lines[0].endswith("o")  # top right: the series' maximum
    assert lines[7].startswith("-10 |o")  # bottom left: its minimum
    assert "x" not in "".join(line.split("|", 1)[1] for line in lines[:8])  # all-NaN series: nothing drawn


@pytest.mark.parametrize(
    "args",
    [
        ["--T", "1"],
        ["--T", "2", "--hidden", "1"],
        ["--hidden", "1", "--T", "30", "--cell", "relu"],
        ["--cell", "relu", "--gain", "3", "--T", "300", "--hidden", "20"],
        ["--cell", "sigmoid", "--gain", "8", "--T", "200", "--hidden", "20", "--loss", "mean"],
        ["--cell", "tanh", "--bias", "800", "--T", "40", "--hidden", "6"],
        ["--cell", "identity", "--radius", "1.5", "--T", "3000", "--hidden", "8"],
        ["--cell", "tanh", "--ensemble", "identity", "--gain", "1", "--T", "50"],
        ["--cell", "tanh", "--ensemble", "symmetric", "--gain", "3", "--T", "50", "--trials", "3"],
        ["--ensemble", "uniform", "--norm", "0.5", "--T", "50", "--loss", "mean"],
        ["--cell", "tanh", "--gain", "30", "--T", "100", "--hidden", "30"],
    ],
)
def test_edge_cases_give_valid_json(args: list[str]) -> None:
    """Degenerate and extreme settings: exit 0, strict JSON (no NaN/Infinity), every key present,
    and no warning (pytest turns warnings into errors)."""
    rec = analyze_json(*args)
    for trial in rec["trials"]:
        assert trial.keys() >= THEORY_KEYS
    code, _, err = invoke("analyze", *args)
    assert code in (0, 1) and err == ""


@pytest.mark.parametrize("cell", ["identity", "relu", "tanh"])
def test_zero_matrix_theory_records(cell: str) -> None:
    """W_hh = 0 (gain 0): no warning, strict JSON, the exact zeros reported as such.

    (Through the CLI the spectrum's condition number 0/0 warns: see spectra.py.)"""
    from bptt_cli.io.jsontext import dumps
    from bptt_cli.io.records import theory_record, theory_summary

    an = analyze(Spec(cell=cell, gain=0.0, T=20, hidden=5), theory=True)
    th = an.theory
    assert th is not None
    rec = json.loads(dumps({"trial": theory_record(th, 0), "summary": theory_summary(th)}))["trial"]
    assert rec["rates"]["gelfand"] is None and rec["rates"]["spectral_norm_bound"] is None
    assert rec["nonnormality"]["peak_growth_log10"] is None and rec["nonnormality"]["henrici"] == 0.0
    assert rec["alignment"]["dimension"] == 0
    assert rec["horizon"]["vanish"] == 1  # dL/dh_{T-1} = W^T diag(phi') dL/dh_T = 0
    assert rec["lyapunov"]["exponents"] == [None] * 4  # ln 0: an exactly singular product
