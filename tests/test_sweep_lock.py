"""Two sweeps on one ``--output`` (issue 16, failure 2): the file is held under an advisory lock
(``flock``) while a sweep writes it; a second sweep, or a ``--resume``, is refused in one line and
writes nothing; a killed sweep's lock dies with it, so ``--resume`` then finishes the file."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
from pathlib import Path

import pytest
from clitools import assert_bad_input
from sweep_helpers import FORMATS, SLOW_GRID, bptt_command, invoke, subprocess_env, wait_for_records

from bptt_cli.io.points import point_key
from bptt_cli.io.sweep_records import read_records


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_second_sweep_is_refused_while_the_first_writes_and_resume_follows_a_kill(
    tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / f"r{suffix}"
    first = subprocess.Popen(
        [*bptt_command(), "sweep", *SLOW_GRID, "--workers", "1", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=subprocess_env(),
    )  # fmt: skip
    try:
        wait_for_records(first, out, 1)
        first.send_signal(signal.SIGSTOP)  # caught in the middle, for as long as the test needs
        before = out.read_bytes()
        for extra in ([], ["--resume"]):
            second = invoke("sweep", *SLOW_GRID, "--workers", "1", "--output", str(out), *extra)
            assert_bad_input(second, f"cannot write {out}: another bptt sweep is writing it")
        assert out.read_bytes() == before
        assert sorted(os.listdir(tmp_path)) == [out.name]
    finally:
        first.kill()  # kill -9: its lock goes with it
        first.wait()
    resumed = invoke("sweep", *SLOW_GRID, "--workers", "1", "--output", str(out), "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    records = read_records(out, FORMATS[suffix]).records
    assert len(records) == 12 and len({point_key(r["point"]) for r in records}) == 12


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
@pytest.mark.parametrize("resume", [False, True])
def test_a_held_lock_refuses_the_sweep_before_it_writes(tmp_path: Path, suffix: str, resume: bool) -> None:
    out = tmp_path / f"r{suffix}"
    assert invoke("sweep", "--T", "3", "--hidden", "2", "--workers", "1", "--output", str(out)).exit_code == 0
    before = out.read_bytes()
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as another sweep would hold it
        result = invoke("sweep", "--T", "3,4", "--hidden", "2", "--workers", "1", "--output", str(out),
                        *(["--resume"] if resume else []))  # fmt: skip
        assert_bad_input(result, str(out), "another bptt sweep is writing it")
        assert out.read_bytes() == before
    finally:
        os.close(fd)
    again = invoke("sweep", "--T", "3,4", "--hidden", "2", "--workers", "1", "--output", str(out), "--resume")
    assert again.exit_code == 0, again.stderr
    assert len(read_records(out, FORMATS[suffix]).records) == 2


def test_a_rewritten_file_is_locked_before_it_takes_the_path() -> None:
    """JSON (and CSV with new columns) are rewritten through a new file: the lock moves with the
    path, never lapsing, so a sweep that opens the path at any moment finds it held."""
    import tempfile

    from bptt_cli.io.output import Held

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "r.json"
        held = Held.take(path)
        try:
            for text in ("one\n", "two\n"):
                held.replace(text)
                fd = os.open(path, os.O_RDONLY)
                try:
                    with pytest.raises(BlockingIOError):
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                finally:
                    os.close(fd)
            assert path.read_text() == "two\n" and os.listdir(d) == ["r.json"]
        finally:
            held.release()
        fd = os.open(path, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released: free
        os.close(fd)
