"""Real `bptt sweep` processes interrupted (Ctrl-C) or killed (kill -9) mid-sweep, then resumed.

At every moment the output file parses; --resume then ends with the same records as one
uninterrupted run (wall times aside), and no worker process outlives a killed sweep. The kills at
random moments are drawn from ``BPTT_KILL_SEED`` (fixed in CI; set it to try other moments).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from sweep_helpers import (
    FORMATS,
    SLOW_GRID,
    bptt_command,
    comparable,
    invoke,
    same_as_csv,
    strict_parse,
    subprocess_env,
    wait_for_records,
)

GRID = SLOW_GRID


def start(out: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*bptt_command(), "sweep", *GRID, "--workers", "2", "--output", str(out), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=subprocess_env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # even if CI ignores SIGINT
    )


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


def test_kill_9_at_random_moments_then_resume_completes_the_file(
    tmp_path: Path, reference: dict[Any, dict[str, Any]]
) -> None:
    """Killed while it starts its workers, opens or rewrites the file, or computes: whatever the
    moment, the file parses (or is not there yet), no lock outlives the sweep, and the next
    ``--resume`` goes on from there."""
    rng = random.Random(int(os.environ.get("BPTT_KILL_SEED", "16")))
    out = tmp_path / "r.json"  # rewritten whole after every record: the most moving parts
    for delay in (rng.uniform(0.3, 0.9), rng.uniform(0.0, 2.0)):  # while it starts; any time
        proc = start(out, "--resume")
        time.sleep(delay)
        workers = children(proc.pid)  # some may be starting: killed before they knew their parent
        proc.kill()
        proc.communicate(timeout=30)  # stderr ends when the last worker has gone
        partial = strict_parse(out)
        assert len(partial) <= 12
        deadline = time.monotonic() + 10
        while any(alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(w) for w in workers), "worker processes outlived the killed sweep"
    resume(out)
    same(strict_parse(out), reference, False)
