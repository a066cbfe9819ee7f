"""`bptt sweep` when things go wrong or repeat: failing points, the output checked first, resume
matching resolved settings, CSV streamed to stdout, points computed once, extreme sizes."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sweep_helpers import comparable, invoke, jsonl

from bptt_cli.io.sweep_records import flatten, read_records, unflatten
from bptt_cli.run.experiment import Experiment


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The specs of the experiments computed in this process (``--workers 1``), in order."""
    seen: list[Any] = []
    real = Experiment.run

    def counted(self: Experiment) -> Any:
        seen.append(self.spec)
        return real(self)

    monkeypatch.setattr(Experiment, "run", counted)
    return seen


@pytest.fixture
def weights(tmp_path: Path) -> tuple[Path, Path]:
    """``ok.npy`` (any W_hh) and ``nil.npy`` (strictly upper triangular: no spectral radius to rescale)."""
    ok, nil = tmp_path / "ok.npy", tmp_path / "nil.npy"
    np.save(ok, np.random.default_rng(0).normal(size=(4, 4)))
    np.save(nil, np.triu(np.ones((4, 4)), 1))
    return ok, nil


def records_of(path: Path) -> list[dict[str, Any]]:
    return read_records(path, {".jsonl": "jsonl", ".json": "json", ".csv": "csv"}[path.suffix]).records


# ------------------------------------------------------------------ a point failing at run time


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_point_failing_while_it_runs_does_not_stop_the_others(
    tmp_path: Path, weights: tuple[Path, Path], workers: str
) -> None:
    ok, nil = weights
    out = tmp_path / "pf.jsonl"
    grid = ["--weights", f"{ok},{nil}", "--radius", "1", "--T", "3,4,5,6"]
    result = invoke("sweep", *grid, "--workers", workers, "--output", str(out))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 5, result.stderr
    for line, T in zip(lines, (3, 4, 5, 6), strict=False):
        assert line.startswith(f"bptt: error: point T={T} weights={nil}: cannot rescale W_hh")
        assert "nilpotent" in line
    assert lines[4] == (
        "bptt: error: 4 of 8 points failed (listed above) and have no record; "
        "--resume with the same --output runs only them"
    )
    assert "Traceback" not in result.stderr
    # the other points are all there, as a sweep of them alone gives them
    alone = invoke("sweep", "--weights", str(ok), "--radius", "1", "--T", "3,4,5,6", "--format", "jsonl")
    assert comparable(records_of(out)) == comparable(jsonl(alone.stdout))
    assert "nil.npy |      . |      . |" in result.stdout  # the table shows them not run


def test_resume_runs_only_the_failed_points(
    tmp_path: Path, weights: tuple[Path, Path], runs: list[Any]
) -> None:
    ok, nil = weights
    out = tmp_path / "pf.jsonl"
    grid = ["--weights", f"{ok},{nil}", "--radius", "1", "--T", "3,4", "--workers", "1", "--output", str(out)]
    assert invoke("sweep", *grid).exit_code == 2
    assert len(runs) == 4  # every point was tried
    before = out.read_bytes()
    runs.clear()
    again = invoke("sweep", *grid, "--resume")
    assert again.exit_code == 2 and "2 of 4 points failed" in again.stderr
    assert len(runs) == 2  # only the failed ones
    assert out.read_bytes() == before
    # the sweep without the bad file resumes from the same file with nothing to do
    runs.clear()
    done = invoke("sweep", *grid[:1], str(ok), *grid[2:], "--resume")
    assert done.exit_code == 0, done.stderr
    assert runs == [] and out.read_bytes() == before


def test_a_point_out_of_memory_is_a_failure_of_that_point(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Experiment.run

    def big(self: Experiment) -> Any:
        if self.spec.T == 4:
            raise MemoryError
        return real(self)

    monkeypatch.setattr(Experiment, "run", big)
    result = invoke("sweep", "--T", "3,4", "--hidden", "3", "--workers", "1", "--format", "jsonl")
    assert result.exit_code == 2
    assert [r["point"]["T"] for r in jsonl(result.stdout)] == [3]
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("bptt: error: point T=4: out of memory (MemoryError)")
    assert lines[1] == "bptt: error: 1 of 2 points failed (listed above) and have no record"


# ------------------------------------------------------------------ the output, checked first


def never_run(self: Experiment) -> Any:
    raise AssertionError("a point was computed")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--output", "/proc/x.jsonl"], "cannot write /proc/x.jsonl"),
        (["--output", "missing/r.jsonl"], "directory missing does not exist"),
        (["--format", "csv", "--output", "m.jsonl"], "--format csv conflicts with --output m.jsonl"),
        (["--T", "3,0", "--output", "r.jsonl"], "--T: 0 is not in the range"),
        (["--T", "2:1000000000:3:log", "--hidden", "4", "--format", "jsonl"], "--max-memory"),
    ],
)
def test_what_cannot_be_written_or_run_is_refused_before_any_point_runs(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Experiment, "run", never_run)
    result = invoke("sweep", "--T", "3", *args, "--workers", "1")
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bptt: error: ") and message in lines[0], result.stderr
    assert result.stdout == "" and list(tmp_path.iterdir()) == []  # nothing written, no file created


def test_extreme_T_names_the_size_and_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Experiment, "run", never_run)
    result = invoke("sweep", "--T", "2:1000000000:3:log", "--hidden", "4", "--workers", "1")
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("bptt: error: point T=1000000000: T 1000000000, hidden 4 needs about ")
    assert "GiB" in line and "more than the default --max-memory of 1 GiB" in line


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_the_output_exists_and_parses_before_the_first_point_runs(
    tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / f"r{suffix}"
    out.write_text("an older file\n")
    seen: list[int] = []
    real = Experiment.run

    def check(self: Experiment) -> Any:
        seen.append(len(records_of(out)))  # it exists, parses, and holds the records done so far
        return real(self)

    monkeypatch.setattr(Experiment, "run", check)
    assert (
        invoke("sweep", "--T", "3,4", "--hidden", "3", "--workers", "1", "--output", str(out)).exit_code == 0
    )
    assert seen == [0, 1]


# ------------------------------------------------------------------ resume: resolved settings


def test_resume_matches_resolved_settings_not_their_spelling(tmp_path: Path, runs: list[Any]) -> None:
    out = tmp_path / "r.jsonl"
    first = ["--T", "3,4", "--hidden", "3", "--workers", "1", "--output", str(out)]
    assert (
        invoke("sweep", *first, "--inputs-dim", "8", "--max-memory", "1G", "--lyapunov", "3").exit_code == 0
    )
    runs.clear()
    # the defaults spelled differently: the same points; T = 5 is new
    again = ["--T", "3,4,5", "--hidden", "3", "--workers", "1", "--output", str(out), "--resume"]
    result = invoke("sweep", *again, "--max-memory", "1024M")
    assert result.exit_code == 0, result.stderr
    assert [spec.T for spec in runs] == [5]
    assert sorted(r["point"]["T"] for r in records_of(out)) == [3, 4, 5]


def test_resume_matches_the_estimator_options_as_the_estimators_read_them(
    tmp_path: Path, runs: list[Any]
) -> None:
    out = tmp_path / "r.csv"  # CSV reads "2" back as a number: the settings match all the same
    grid = ["--T", "6", "--hidden", "3", "--workers", "1", "--output", str(out)]
    assert (
        invoke("sweep", *grid, "--truncate", "2", "--truncate-mode", "window", "--clip", "1").exit_code == 0
    )
    runs.clear()
    result = invoke("sweep", *grid, "--truncate", "2", "--clip", "1.0", "--checkpoint", "AUTO", "--resume")
    assert result.exit_code == 0, result.stderr
    assert runs == [] and len(records_of(out)) == 1
    other = invoke("sweep", *grid, "--truncate", "2", "--truncate-mode", "chunk", "--clip", "1", "--resume")
    assert (
        other.exit_code == 2
        and "the file has --truncate-mode window where this sweep has chunk" in other.stderr
    )


def test_resume_names_the_setting_that_differs(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    first = invoke("sweep", "--T", "3,4", "--hidden", "3", "--workers", "1", "--output", str(out))
    assert first.exit_code == 0
    before = out.read_bytes()
    for args, says in (
        (["--T", "3,4", "--trials", "2"], "the file has --trials 1 where this sweep has 2"),
        (["--T", "7,8"], "the file has --T 3 where this sweep has 7 or 8"),
        (["--T", "3,4", "--cell", "tanh"], "the file has --cell identity where this sweep has tanh"),
    ):
        result = invoke("sweep", *args, "--hidden", "3", "--output", str(out), "--resume")
        assert result.exit_code == 2
        (line,) = result.stderr.splitlines()
        assert "2 of its records are not points of this sweep" in line and says in line, line
        assert out.read_bytes() == before


def test_a_grid_of_equal_points_is_one_point(runs: list[Any]) -> None:
    records = jsonl(invoke("sweep", "--T", "3", "--hidden", "3", "--max-memory", "1G,1024M", "--workers", "1",
                           "--format", "jsonl").stdout)  # fmt: skip
    assert len(records) == 1 and len(runs) == 1


# ------------------------------------------------------------------ points computed once


def analyze_json(point: dict[str, Any]) -> dict[str, Any]:
    args = ["analyze", "--format", "json"]
    for name in ("cell", "forget_bias", "T", "hidden", "trials"):
        args += ["--" + name.replace("_", "-"), str(point[name])]
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_options_a_cell_ignores_do_not_recompute_it(runs: list[Any]) -> None:
    grid = [
        "--cell",
        "identity,gru,lstm",
        "--forget-bias",
        "0,1",
        "--T",
        "5",
        "--hidden",
        "3",
        "--trials",
        "2",
    ]
    result = invoke("sweep", *grid, "--workers", "1", "--format", "jsonl")
    assert result.exit_code == 0, result.stderr
    records = jsonl(result.stdout)
    assert len(records) == 6  # one per grid point
    assert sorted((s.cell, getattr(s, "forget_bias", None)) for s in runs) == [
        ("gru", 0.0), ("identity", None), ("lstm", 0.0), ("lstm", 1.0),
    ]  # fmt: skip
    for r in records:  # each is what bptt analyze reports for its settings
        expected = analyze_json(r["point"])
        assert r["summary"] == expected["summary"]
        assert r["config"] == {k: v for k, v in expected["config"].items() if k != "fail_on"}
    copies = [r for r in records if r["point"]["forget_bias"] == 1.0 and r["point"]["cell"] != "lstm"]
    assert [r["wall_time_s"] for r in copies] == [0.0, 0.0]
    assert {r["config"].get("forget_bias") for r in copies} == {None, 1.0}  # identity has none, gru its own
    table = invoke("sweep", *grid, "--rows", "cell", "--cols", "T")
    cells = table.stdout.split("cells:")[0]
    assert cells.count("identity |") == 2 and "|.|" not in cells.replace(" ", "")


def test_resume_copies_an_ignored_option_from_the_file(tmp_path: Path, runs: list[Any]) -> None:
    out, full = tmp_path / "r.csv", tmp_path / "full.csv"
    grid = ["--cell", "gru", "--T", "5", "--hidden", "3", "--workers", "1"]
    assert invoke("sweep", *grid, "--forget-bias", "0,1", "--output", str(full)).exit_code == 0
    assert invoke("sweep", *grid, "--forget-bias", "0", "--output", str(out)).exit_code == 0
    runs.clear()
    result = invoke("sweep", *grid, "--forget-bias", "0,1", "--output", str(out), "--resume")
    assert result.exit_code == 0, result.stderr
    assert runs == []  # the gru ignores the forget bias: the record in the file serves

    def strip(records: list[dict[str, Any]]) -> Any:
        return sorted(json.dumps({k: v for k, v in r.items() if k != "wall_time_s"}) for r in records)

    assert strip(records_of(out)) == strip(records_of(full))


# ------------------------------------------------------------------ CSV to stdout


def test_csv_rows_go_to_stdout_as_points_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    printed: list[str] = []
    real = Experiment.run

    def peek(self: Experiment) -> Any:
        printed.append(sys.stdout.buffer.getvalue().decode())  # type: ignore[attr-defined]
        return real(self)

    monkeypatch.setattr(Experiment, "run", peek)
    result = invoke("sweep", "--T", "3,4,5", "--hidden", "3", "--workers", "1", "--format", "csv")
    assert result.exit_code == 0
    assert [len(text.splitlines()) for text in printed] == [0, 2, 3]  # header and a row per point done
    assert printed[2] == "".join(result.stdout.splitlines(keepends=True)[:3])


def test_csv_to_stdout_has_the_columns_of_every_kind_of_record(tmp_path: Path) -> None:
    grid = ["--cell", "lstm,identity", "--T", "3,4", "--hidden", "3", "--workers", "1"]
    out = tmp_path / "r.csv"
    assert invoke("sweep", *grid, "--output", str(out)).exit_code == 0
    result = invoke("sweep", *grid, "--format", "csv")
    assert result.exit_code == 0 and "warning" not in result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    file_rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert set(rows[0]) == set(file_rows[0])  # the file widened its header; stdout knew it up front
    assert (
        comparable([unflatten(r) for r in rows]).keys()
        == comparable([unflatten(r) for r in file_rows]).keys()
    )


@pytest.mark.parametrize(
    "grid",
    [
        ["--cell", "identity,tanh,lstm,gru", "--T", "3,300", "--lyapunov", "0,2", "--loss", "last,mean"],
        [
            "--cell",
            "tanh",
            "--T",
            "3,300",
            "--truncate",
            "2",
            "--truncate-mode",
            "window,chunk",
            "--clip",
            "1",
        ],
        ["--cell", "relu", "--T", "3,300", "--truncate", "random", "--keep-prob", "0.5", "--draws", "2"],
    ],
)
def test_records_of_one_shape_have_the_same_columns(grid: list[str]) -> None:
    """What CSV to stdout relies on: a record's columns follow from sweep.shape."""
    from bptt_cli.cli import NOT_AXES
    from bptt_cli.run.experiment import resolve
    from bptt_cli.run.sweep import shape

    result = invoke("sweep", *grid, "--hidden", "3", "--radius", "1.5", "--workers", "2", "--format", "jsonl")
    assert result.exit_code == 0, result.stderr
    columns: dict[Any, set[frozenset[str]]] = {}
    for r in jsonl(result.stdout):
        assert set(r["point"]).isdisjoint(NOT_AXES)
        columns.setdefault(shape(resolve(**r["point"])), set()).add(frozenset(flatten(r)))
    assert columns and all(len(sets) == 1 for sets in columns.values())
