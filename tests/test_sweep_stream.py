"""Sweeps too large to hold (issue 17): the grid enumerated as it runs, records streamed and not kept.

The streamed path is taken above ``EAGER_POINTS`` points; here that limit is lowered to 0 so that
small grids take it, and their records are compared with the whole-grid path's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sweep_helpers import BPTT, comparable, invoke, jsonl, subprocess_env

from bptt_cli.io.sweep_records import read_records
from bptt_cli.run import stream
from bptt_cli.run.experiment import Experiment

GRID = ["--cell", "identity,gru,lstm", "--forget-bias", "0,1", "--T", "5,7", "--hidden", "3",
        "--max-memory", "1G,1024M", "--trials", "2"]


@pytest.fixture
def streamed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "EAGER_POINTS", 0)


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    seen: list[Any] = []
    real = Experiment.run

    def counted(self: Experiment) -> Any:
        seen.append(self.spec)
        return real(self)

    monkeypatch.setattr(Experiment, "run", counted)
    return seen


def eager_records(*args: str) -> dict[Any, dict[str, Any]]:
    result = invoke("sweep", *args, "--workers", "1", "--format", "jsonl")
    assert result.exit_code == 0, result.stderr
    return comparable(jsonl(result.stdout))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_streamed_records_are_the_whole_grids(
    streamed: None, runs: list[Any], tmp_path: Path, workers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "EAGER_POINTS", 10**9)
    want = eager_records(*GRID)
    runs.clear()
    monkeypatch.setattr(stream, "EAGER_POINTS", 0)
    out = tmp_path / "r.jsonl"
    result = invoke("sweep", *GRID, "--workers", workers, "--output", str(out))
    assert result.exit_code == 0, result.stderr
    assert "24 points; 12 records written" in result.stdout  # 1G and 1024M are one point
    got = read_records(out, "jsonl").records
    assert comparable(got) == want
    copies = [r for r in got if r["point"]["forget_bias"] == 1.0 and r["point"]["cell"] != "lstm"]
    assert len(copies) == 4 and {r["wall_time_s"] for r in copies} == {0.0}
    if workers == "1":  # computed once: the lstm's two forget biases, one gru, one identity, per T
        assert len(runs) == 8


def test_streamed_csv_and_stdout(streamed: None, tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    assert invoke("sweep", *GRID, "--workers", "1", "--output", str(out)).exit_code == 0
    result = invoke("sweep", *GRID, "--workers", "1", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    assert sorted(result.stdout.splitlines()[1:]) != [] and len(result.stdout.splitlines()) == 13
    assert len(read_records(out, "csv").records) == 12


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_streamed_resume_runs_only_the_missing_points(
    streamed: None, runs: list[Any], tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / f"r{suffix}"
    assert invoke("sweep", *GRID, "--workers", "1", "--output", str(out)).exit_code == 0
    full = comparable(read_records(out, suffix[1:]).records)
    lines = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:6]) + lines[6][:20])  # some records, and a last one cut short
    runs.clear()
    result = invoke("sweep", *GRID, "--workers", "1", "--output", str(out), "--resume")
    assert result.exit_code == 0, result.stderr
    assert comparable(read_records(out, suffix[1:]).records) == full
    assert len(runs) < 8
    runs.clear()
    # spelled otherwise (the default --inputs-dim, --max-memory in M): the same points, nothing to run
    again = [*GRID[:-4], "--max-memory", "1024M", "--trials", "2", "--inputs-dim", "8"]
    result = invoke("sweep", *again, "--workers", "1", "--output", str(out), "--resume")
    assert result.exit_code == 0, result.stderr
    assert runs == []


def test_streamed_resume_refuses_records_of_another_sweep(streamed: None, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    first = invoke("sweep", "--T", "3,4", "--hidden", "3", "--workers", "1", "--output", str(out))
    assert first.exit_code == 0
    before = out.read_bytes()
    result = invoke("sweep", "--T", "7,8", "--hidden", "3", "--output", str(out), "--resume")
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert "2 of its records are not points of this sweep" in line
    assert "the file has --T 3 where this sweep has 7 or 8" in line
    assert out.read_bytes() == before


def test_streamed_checks_every_axis_value_first_and_each_combination_as_it_runs(
    streamed: None, tmp_path: Path
) -> None:
    out = tmp_path / "r.jsonl"
    bad = invoke("sweep", "--T", "3,-5", "--hidden", "3", "--output", str(out))
    assert bad.exit_code == 2 and not out.exists()
    # every value is good beside the first point's (hidden 8, lyapunov 3); hidden 4 with lyapunov 5
    # is not: those points fail alone, as they are handed out
    result = invoke("sweep", "--hidden", "8,4", "--lyapunov", "3,5", "--T", "3,4", "--workers", "1",
                    "--output", str(out))  # fmt: skip
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3 and "--lyapunov 5 must be between 0 and the hidden size 4" in lines[0]
    assert lines[-1].startswith("bptt: error: 2 of 8 points failed")
    assert len(jsonl(out.read_text())) == 6


def test_streamed_grids_refuse_what_keeps_every_record(streamed: None, tmp_path: Path) -> None:
    for args, says in (
        ([], "give --output FILE.jsonl or FILE.csv"),
        (["--output", str(tmp_path / "r.json")], "heat tables and --format json keep every record"),
        (["--output", str(tmp_path / "r.jsonl"), "--plot", str(tmp_path / "p.png")], "bptt plot FILE"),
    ):
        result = invoke("sweep", "--T", "3,4", "--hidden", "3", *args)
        assert result.exit_code == 2 and says in result.stderr, result.stderr
        assert len(result.stderr.splitlines()) == 1


def test_fail_on_lists_the_streamed_matches(streamed: None, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    result = invoke("sweep", "--radius", "0.5,2", "--T", "30", "--hidden", "4", "--workers", "1",
                    "--output", str(out), "--fail-on", "exploding")  # fmt: skip
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert "radius=2.0" in line and "matches --fail-on exploding" in line


def test_a_grid_of_a_trillion_points_is_accepted_and_streams(tmp_path: Path) -> None:
    """No limit of the whole-grid path applies: the first records come, then Ctrl-C keeps them."""
    out = tmp_path / "r.jsonl"
    cmd = [*BPTT, "sweep", "--radius", "0.1:2:10000", "--T", "1:10000:10000", "--seed", "0:9999:10000",
           "--hidden", "2", "--workers", "1", "--output", str(out)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        import time

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 3):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
    finally:
        import signal

        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) >= 3 and records[0]["point"]["seed"] == 0
    assert f"of {10**12} points are in" in err.decode()


def test_the_lazy_grid_is_the_product() -> None:
    from bptt_cli.api import options as opt
    from bptt_cli.run.grid import points

    axes = opt.parse_axes({"T": "3,4,5", "cell": "tanh,lstm", "radius": "0.5:1:2", "max_memory": "1G,2G"})
    grid = stream.LazyGrid(axes)
    product = points(axes)
    assert grid.total == len(product) == 24
    assert [grid.point_at(i) for i in range(grid.total)] == product
    assert [grid.index_of(p) for p in product] == list(range(24))
    blocks = list(grid.blocks())
    assert sorted(i for b in blocks for i in b) == list(range(24)) and len(blocks) == 6  # T x radius
    done = stream.DoneSet(grid.total)
    done.add(5)
    done.add(5)
    assert 5 in done and 4 not in done and done.count == 1
    big = stream.DoneSet(stream.BITSET_MAX + 1)
    big.add(stream.BITSET_MAX)
    assert big.bits is None and stream.BITSET_MAX in big


def test_the_cli_imports_stream_lazily() -> None:
    code = "import bptt_cli.cli, sys; print('bptt_cli.run.stream' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
