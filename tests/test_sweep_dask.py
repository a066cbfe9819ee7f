"""`bptt sweep --scheduler`: a real Dask LocalCluster (worker processes, loopback only)."""

from __future__ import annotations

import builtins
import contextlib
import os
import sys
import time
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


def test_bad_input_on_a_dask_worker_fails_that_point_only(scheduler: str, tmp_path: Path) -> None:
    # a nilpotent W_hh cannot be rescaled to a radius: found only when the point runs
    import numpy as np

    np.save(tmp_path / "nil.npy", np.array([[0.0, 1.0], [0.0, 0.0]]))
    np.save(tmp_path / "ok.npy", np.array([[0.5, 1.0], [0.2, 0.1]]))
    weights = f"{tmp_path / 'ok.npy'},{tmp_path / 'nil.npy'}"
    args = ["--weights", weights, "--radius", "1", "--T", "3,4", "--format", "jsonl"]
    result = invoke("sweep", *args, "--scheduler", scheduler)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3, result.stderr
    assert all(line.startswith("bptt: error: point T=") and "nilpotent" in line for line in lines[:2])
    assert lines[2] == "bptt: error: 2 of 4 points failed (listed above) and have no record"
    local = invoke("sweep", *args, "--workers", "1")
    assert local.exit_code == 2 and local.stderr == result.stderr
    assert comparable(jsonl(result.stdout)) == comparable(jsonl(local.stdout))
    assert sorted(r["point"]["T"] for r in jsonl(result.stdout)) == [3, 4]


def _bad_every_time(point: dict[str, Any]) -> dict[str, Any]:
    """Count the call in the point's marker file, then fail as bad input."""
    from bptt_cli.errors import BadInput

    with open(point["_calls"], "a") as f:
        f.write(f"{point['T']}\n")
    raise BadInput(f"T={point['T']} is bad")


def test_dask_does_not_retry_a_bad_input_failure(scheduler: str, tmp_path: Path) -> None:
    from bptt_cli.run.runner import DASK_RETRIES, Failure, run_dask

    assert DASK_RETRIES > 0  # retries exist, for other errors
    calls = tmp_path / "calls"
    points = [{"T": t, "_calls": str(calls)} for t in (3, 4)]
    outcomes = list(run_dask(points, scheduler, work=_bad_every_time))
    assert all(isinstance(o, Failure) for o in outcomes)
    assert sorted(o.reason for o in outcomes if isinstance(o, Failure)) == ["T=3 is bad", "T=4 is bad"]
    assert sorted(calls.read_text().split()) == ["3", "4"]  # each point ran once


def test_a_scheduler_without_workers_warns_once_then_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from bptt_cli.run.runner import run_dask

    monkeypatch.setattr("bptt_cli.run.runner.NO_WORKERS_WARNING_S", 0.5)
    cluster = distributed.LocalCluster(
        n_workers=0, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=":0", worker_dashboard_address=None,
    )  # fmt: skip
    try:
        warnings: list[str] = []
        got: list[Any] = []
        points = _points("--T", "3", "--hidden", "3")
        run = threading.Thread(
            target=lambda: got.extend(run_dask(points, cluster.scheduler_address, warn=warnings.append)),
            daemon=True,
        )
        run.start()
        deadline = time.monotonic() + 30
        while not warnings and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(warnings) == 1 and "has had no workers" in warnings[0]
        assert cluster.scheduler_address in warnings[0] and not got  # still waiting
        cluster.scale(1)  # a worker joins: the point runs
        run.join(timeout=120)
        assert not run.is_alive() and len(got) == 1 and got[0]["point"]["T"] == 3
        assert len(warnings) == 1
    finally:
        cluster.close()


def test_a_malformed_scheduler_address_is_one_line_at_once() -> None:
    """No 20 s wait and no 'Exception ignored in Client.__del__' traceback at exit."""
    from clitools import installed_bptt, run_process

    start = time.monotonic()
    proc = run_process(installed_bptt(), "sweep", "--T", "3", "--scheduler", "bogus")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "bptt: error: cannot reach the Dask scheduler at bogus: missing port number in address "
        "'bogus' (give e.g. tcp://HOST:8786)"
    ]
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("answer", [b"", b"\xff" * 64])
def test_a_server_that_is_not_a_scheduler_is_one_line(answer: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """A loopback server that accepts and stays silent (or answers garbage): one line, in about
    the connection timeout, and no traceback when the half-built client is collected."""
    import gc
    import socket
    import threading

    monkeypatch.setattr("bptt_cli.run.runner.DASK_CONNECT_TIMEOUT_S", 1.0)
    server = socket.create_server(("127.0.0.1", 0))
    conns: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                conns.append(conn)
                conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    try:
        start = time.monotonic()
        address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
        result = invoke("sweep", "--T", "3", "--scheduler", address)
        assert time.monotonic() - start < 8
        assert result.exit_code == 2
        lines = result.stderr.splitlines()
        assert len(lines) == 1
        assert lines[0].startswith(f"bptt: error: cannot reach the Dask scheduler at {address}")
        gc.collect()
        assert unraisable == []
    finally:
        server.close()
        for conn in conns:
            conn.close()


def _dies_once(point: dict[str, Any]) -> dict[str, Any]:
    """Kill the worker process the first time a point runs (per marker file), then compute it."""
    from bptt_cli.run.runner import run_point

    marker = Path(point.pop("_marker")) / f"T{point['T']}"
    if not marker.exists():
        marker.touch()
        os._exit(1)
    return run_point(point)


def test_a_point_whose_worker_dies_is_retried(scheduler: str, tmp_path: Path) -> None:
    from bptt_cli.run.runner import run_dask, run_point

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
    monkeypatch.setattr("bptt_cli.run.runner.DASK_CONNECT_TIMEOUT_S", 1.0)
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


def test_a_worker_killed_mid_sweep_then_resume_gives_the_uninterrupted_records(
    scheduler: str, tmp_path: Path
) -> None:
    """kill -9 of a Dask worker process while the sweep runs: its point is rescheduled (or, if
    it failed too often, listed as failed in one line each); the sweep ends cleanly either way,
    and ``--resume`` completes the file with the records of a run that nothing disturbed."""
    import signal
    import subprocess

    from sweep_helpers import bptt_command, subprocess_env, wait_for_records

    grid = ["--radius", "0.5:1.5:6", "--T", "2500", "--hidden", "24", "--trials", "2"]
    out = tmp_path / "r.jsonl"
    client = distributed.Client(scheduler, set_as_default=False)
    try:
        proc = subprocess.Popen(
            [*bptt_command(), "sweep", *grid, "--scheduler", scheduler, "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=subprocess_env(),
        )  # fmt: skip
        wait_for_records(proc, out, 1)
        victim = next(iter(client.run(os.getpid).values()))
        os.kill(victim, signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
        lines = err.decode().splitlines()
        assert proc.returncode in (0, 2), err.decode()
        assert all(line.startswith("bptt: error: ") for line in lines), err.decode()
        resumed = invoke("sweep", *grid, "--scheduler", scheduler, "--output", str(out), "--resume")
        assert resumed.exit_code == 0, resumed.stderr
        local = invoke("sweep", *grid, "--workers", "1", "--format", "jsonl")
        assert comparable(jsonl(out.read_text())) == comparable(jsonl(local.stdout))
        assert len(jsonl(out.read_text())) == 6
    finally:
        client.wait_for_workers(2, timeout=60)  # the nanny restarts the worker, for the tests after
        client.close()
