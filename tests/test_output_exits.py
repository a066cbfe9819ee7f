"""Output and exit statuses shared by analyze and sweep: a reader going away (141), the output
file checked before any work, --format against the suffix, out of memory, --config twice."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from clitools import assert_bad_input, bptt, installed_bptt, plain_env

from bptt_cli.run.experiment import Experiment


def never_run(self: Experiment) -> Any:
    raise AssertionError("the experiment was computed")


# ------------------------------------------------------------------ stdout closed early: 141


SWEEP_40 = ["sweep", "--radius", "0.5:1.5:40", "--T", "100", "--hidden", "16", "--workers", "1"]


@pytest.mark.parametrize(
    "args",
    [
        # about 130 kB of records, two pipe buffers: the writes after the first line meet a closed pipe
        [*SWEEP_40, "--format", "jsonl"],
        [*SWEEP_40, "--format", "csv"],
        ["analyze", "--T", "200000", "--hidden", "4", "--format", "json"],
        ["analyze", "--T", "200000", "--hidden", "4", "--format", "csv"],
    ],
)
@pytest.mark.parametrize("unbuffered", [False, True])
def test_a_reader_going_away_is_exit_141_with_nothing_on_stderr(args: list[str], unbuffered: bool) -> None:
    env = plain_env()
    env.pop("PYTHONUNBUFFERED", None)
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        [installed_bptt(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(10)  # `| head -c 10`
    proc.stdout.close()
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert err == ""


# ------------------------------------------------------------------ the output, checked first


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--output", "/proc/x.json"], ("cannot write /proc/x.json",)),
        (["--format", "csv", "--output", "m.json"], ("--format csv conflicts with --output m.json", ".json")),
        (["--format", "json", "--output", "m.csv"], ("--format json conflicts with --output m.csv",)),
        (["--format", "table", "--output", "m.json"], ("--format table conflicts",)),
    ],
)
def test_analyze_refuses_an_output_it_cannot_write_before_computing(
    args: list[str], words: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Experiment, "run", never_run)
    assert_bad_input(bptt("analyze", "--T", "5", "--hidden", "3", *args), *words)
    assert list(tmp_path.iterdir()) == []


def test_an_explicit_format_may_name_a_file_of_another_suffix(tmp_path: Path) -> None:
    out = tmp_path / "r.log"  # no format of its own: --format says
    assert bptt("analyze", "--T", "5", "--hidden", "3", "--format", "json", "--output", out).exit_code == 0
    assert json.loads(out.read_text())["config"]["T"] == 5
    same = tmp_path / "r.csv"
    assert bptt("analyze", "--T", "5", "--hidden", "3", "--format", "csv", "--output", same).exit_code == 0
    text = tmp_path / "r.txt"  # plain text: any format
    assert bptt("analyze", "--T", "5", "--hidden", "3", "--format", "csv", "--output", text).exit_code == 0
    assert text.read_text().startswith("trial,t,lag")


def test_streamed_csv_is_the_same_text(tmp_path: Path) -> None:
    from bptt_cli.io.records import CSV_ROWS, analysis_csv

    out = tmp_path / "r.csv"
    args = ["--T", str(CSV_ROWS + 7), "--hidden", "3", "--trials", "2"]
    assert bptt("analyze", *args, "--output", out).exit_code == 0
    text = out.read_text()
    assert len(text.splitlines()) == 1 + 2 * (CSV_ROWS + 7)
    assert bptt("analyze", *args, "--format", "csv").stdout == text
    from bptt_cli.analysis.analyze import analyze
    from bptt_cli.core.network import Spec

    assert analysis_csv(analyze(Spec(T=CSV_ROWS + 7, hidden=3, trials=2))) == text


# ------------------------------------------------------------------ memory


def test_a_run_beyond_the_default_budget_is_refused_before_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Experiment, "run", never_run)
    line = assert_bad_input(bptt("analyze", "--T", "100000000", "--hidden", "4"), "T 100000000, hidden 4")
    assert "GiB" in line and "more than the default --max-memory of 1 GiB" in line
    # the same with a budget given: named too
    assert_bad_input(
        bptt("analyze", "--T", "100000000", "--hidden", "4", "--max-memory", "2G"),
        "--max-memory 2 GiB is too small",
    )
    # --checkpoint none counts against the default budget as well
    assert_bad_input(
        bptt("analyze", "--T", "1000000", "--hidden", "256", "--checkpoint", "none"), "storing every"
    )


def test_memory_error_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def oom(self: Experiment) -> Any:
        raise MemoryError

    monkeypatch.setattr(Experiment, "run", oom)
    assert_bad_input(bptt("analyze", "--T", "5", "--hidden", "3"), "out of memory")


# ------------------------------------------------------------------ --config twice


def test_configs_given_twice_merge_in_order(tmp_path: Path) -> None:
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text('T = 20\nhidden = 6\ncell = "tanh"\n')
    b.write_text("T = 7\ntrials = 2\n")
    result = bptt("analyze", "--config", a, "--config", b, "--hidden", "5", "--format", "json")
    assert result.exit_code == 0, result.stderr
    config = json.loads(result.stdout)["config"]
    assert (config["T"], config["hidden"], config["cell"], config["trials"]) == (7, 5, "tanh", 2)
    swapped = json.loads(bptt("analyze", "--config", b, "--config", a, "--format", "json").stdout)["config"]
    assert (swapped["T"], swapped["hidden"], swapped["trials"]) == (20, 6, 2)
    b.write_text("T = [7, 8]\n")
    sweep = bptt("sweep", "--config", a, "--config", b, "--format", "jsonl")
    assert sweep.exit_code == 0, sweep.stderr
    points = [json.loads(line)["point"] for line in sweep.stdout.splitlines()]
    assert sorted((p["T"], p["hidden"], p["cell"]) for p in points) == [(7, 6, "tanh"), (8, 6, "tanh")]
    b.write_text("speed = 1\n")
    assert_bad_input(bptt("analyze", "--config", a, "--config", b), f"config {b}", "unknown key 'speed'")
