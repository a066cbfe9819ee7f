"""`bptt sweep --scheduler`: a real Dask LocalCluster (worker processes, loopback only)."""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sweep_helpers import SMALL, comparable, invoke, jsonl

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",  # any free port (None still serves HTTP on :8787)
        worker_dashboard_address=None,
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def test_dask_gives_the_same_records_as_local_runs(scheduler: str) -> None:
    local = invoke("sweep", *SMALL, "--workers", "1", "--format", "jsonl")
    dask = invoke("sweep", *SMALL, "--scheduler", scheduler, "--format", "jsonl")
    assert dask.exit_code == 0, dask.stderr
    assert comparable(jsonl(dask.stdout)) == comparable(jsonl(local.stdout))
    assert len(jsonl(dask.stdout)) == 8


def test_scheduler_from_the_environment_and_resume(scheduler: str, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    env = {"BPTT_SCHEDULER": scheduler}
    assert invoke("sweep", *SMALL, "--T", "5", "--output", str(out), env=env).exit_code == 0
    result = invoke("sweep", *SMALL, "--output", str(out), "--resume", env=env)
    assert result.exit_code == 0, result.stderr
    local = invoke("sweep", *SMALL, "--workers", "1", "--format", "jsonl")
    assert comparable(jsonl(out.read_text())) == comparable(jsonl(local.stdout))


def test_bad_input_on_a_dask_worker_is_one_line(scheduler: str, tmp_path: Path) -> None:
    # a nilpotent W_hh cannot be rescaled to a radius: found only when the point runs
    import numpy as np

    np.save(tmp_path / "nil.npy", np.array([[0.0, 1.0], [0.0, 0.0]]))
    result = invoke(
        "sweep",
        "--weights",
        str(tmp_path / "nil.npy"),
        "--radius",
        "1",
        "--T",
        "3,4",
        "--scheduler",
        scheduler,
    )
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bptt: error: point T=")


def _dies_once(point: dict[str, Any]) -> dict[str, Any]:
    """Kill the worker process the first time a point runs (per marker file), then compute it."""
    from bptt_cli.runner import run_point

    marker = Path(point.pop("_marker")) / f"T{point['T']}"
    if not marker.exists():
        marker.touch()
        os._exit(1)
    return run_point(point)


def test_a_point_whose_worker_dies_is_retried(scheduler: str, tmp_path: Path) -> None:
    from bptt_cli.runner import run_dask, run_point

    points = [{**p, "_marker": str(tmp_path)} for p in _points("--T", "3,4", "--hidden", "3")]
    records = list(run_dask(points, scheduler, work=_dies_once))
    assert sorted(m.name for m in tmp_path.iterdir()) == ["T3", "T4"]  # each point killed a worker once
    assert sorted(r["point"]["T"] for r in records) == [3, 4]
    for r in records:
        again = run_point(r["point"])
        assert r["summary"] == again["summary"]


def _points(*args: str) -> list[dict[str, Any]]:
    records = jsonl(invoke("sweep", *args, "--format", "jsonl", "--workers", "1").stdout)
    return [r["point"] for r in records]


def test_unreachable_scheduler_is_one_line_and_leaves_the_output_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("bptt_cli.runner.DASK_CONNECT_TIMEOUT_S", 1.0)
    out = tmp_path / "r.jsonl"
    out.write_text("earlier results\n")
    result = invoke("sweep", "--T", "3", "--scheduler", "tcp://127.0.0.1:9", "--output", str(out))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("bptt: error: cannot reach the Dask scheduler at tcp://127.0.0.1:9")
    assert out.read_text() == "earlier results\n"


def test_missing_dask_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_distributed(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "distributed" or name.startswith("distributed."):
            raise ImportError("No module named 'distributed'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_distributed)
    result = invoke("sweep", "--T", "3", "--scheduler", "tcp://127.0.0.1:8786")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "bptt: error: --scheduler needs Dask distributed, an optional extra: pip install 'bptt-cli[dask]'"
    )
