"""Real `bptt sweep` processes interrupted (Ctrl-C) or killed (kill -9) mid-sweep, then resumed.

At every moment the output file parses; --resume then ends with the same records as one
uninterrupted run (wall times aside), and no worker process outlives a killed sweep.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sweep_helpers import comparable, invoke, same_as_csv, subprocess_env

from bptt_cli.io.sweep_records import read_records

# about a dozen points of ~0.1 s: long enough to be caught in the middle
GRID = ["--radius", "0.5:1.5:12", "--T", "2500", "--hidden", "24", "--trials", "2"]
FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv"}


def bptt_command() -> list[str]:
    entry = Path(sys.executable).parent / "bptt"
    return [str(entry)] if entry.exists() else [sys.executable, "-m", "bptt_cli"]


def strict_parse(path: Path) -> list[dict[str, Any]]:
    """The records of a finished or killed run, parsed strictly (no line cut short)."""
    text = path.read_text() if path.exists() else ""
    if path.suffix == ".json":
        return list(json.loads(text)["records"]) if text else []
    assert text == "" or text.endswith("\n"), "last line cut short"
    existing = read_records(path, FORMATS[path.suffix])
    assert existing.end == len(text.encode())
    return existing.records


def start(out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*bptt_command(), "sweep", *GRID, "--workers", "2", "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=subprocess_env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # even if CI ignores SIGINT
    )


def wait_for_records(proc: subprocess.Popen[bytes], out: Path, at_least: int, timeout: float = 60) -> int:
    """Poll the file (which must parse every time) until it holds ``at_least`` records."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = len(read_records(out, FORMATS[out.suffix]).records) if out.exists() else 0
        if n >= at_least:
            return n
        assert proc.poll() is None, "the sweep ended before it could be interrupted"
        time.sleep(0.01)
    raise AssertionError("no records in time")


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def reference() -> dict[Any, dict[str, Any]]:
    result = invoke("sweep", *GRID, "--workers", "1", "--format", "jsonl")
    assert result.exit_code == 0
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 12
    return comparable(records)


def resume(out: Path) -> None:
    done = subprocess.run(
        [*bptt_command(), "sweep", *GRID, "--workers", "2", "--output", str(out), "--resume"],
        capture_output=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.decode()


def same(records: list[dict[str, Any]], reference: dict[Any, dict[str, Any]], csv: bool) -> None:
    got = comparable(records)
    assert set(got) == set(reference) and len(records) == len(reference)
    for key, ref in reference.items():
        if csv:  # CSV holds text: compare numbers to the last bit
            same_as_csv(got[key], ref)
        else:
            assert got[key] == ref


@pytest.mark.parametrize("suffix", list(FORMATS))
def test_kill_9_mid_sweep_leaves_a_file_that_parses_and_resume_completes_it(
    tmp_path: Path, suffix: str, reference: dict[Any, dict[str, Any]]
) -> None:
    out = tmp_path / f"r{suffix}"
    proc = start(out)
    wait_for_records(proc, out, 2)
    workers = children(proc.pid)
    proc.kill()
    proc.communicate()
    partial = strict_parse(out)
    assert 2 <= len(partial) < 12
    deadline = time.monotonic() + 10
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(w) for w in workers), "worker processes outlived the killed sweep"
    resume(out)
    same(strict_parse(out), reference, suffix == ".csv")


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_ctrl_c_exits_130_and_resume_ends_with_the_uninterrupted_records(
    tmp_path: Path, suffix: str, reference: dict[Any, dict[str, Any]]
) -> None:
    out = tmp_path / f"r{suffix}"
    proc = start(out)
    wait_for_records(proc, out, 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err.decode()
    assert "run again with --resume" in err.decode()
    assert "Traceback" not in err.decode()
    partial = strict_parse(out)
    assert 1 <= len(partial) < 12
    resume(out)
    same(strict_parse(out), reference, False)
