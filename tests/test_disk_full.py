"""A disk that fills while bptt writes (issue 16, failure 4), made by a file-size limit
(``RLIMIT_FSIZE`` in the child, as ``ulimit -f``): the write fails with EFBIG as it would with
ENOSPC (Python ignores SIGXFSZ, which would otherwise kill the process; the child here starts
with SIGXFSZ at its default, as from a shell).

A sweep stops with one line and exit 2; the records already written stay whole, the record cut
short is not left behind, and ``--resume`` finishes the file with the records of an uninterrupted
run. A single output (analyze, a plot) is never left half-written: the old file stays, or none.
"""

from __future__ import annotations

import os
import resource
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from outputs import temporary_files
from sweep_helpers import bptt_command, comparable, invoke, jsonl, same_as_csv, strict_parse, subprocess_env

GRID = ["--T", "5,6,7,8", "--hidden", "3", "--workers", "1"]


def limit(size: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return apply


def run_limited(size: int, *args: str) -> subprocess.CompletedProcess[str]:
    """``bptt ARGS`` with files limited to ``size`` bytes (SIGXFSZ left at its default, as a shell has it)."""
    return subprocess.run(
        [*bptt_command(), *args], capture_output=True, text=True, env=subprocess_env(),
        preexec_fn=limit(size), timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def reference() -> list[dict[str, Any]]:
    result = invoke("sweep", *GRID, "--format", "jsonl")
    assert result.exit_code == 0
    return jsonl(result.stdout)


def one_error_line(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bptt: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".json"])
def test_a_sweep_stopped_by_a_full_disk_keeps_its_whole_records_and_resumes(
    tmp_path: Path, suffix: str, reference: list[dict[str, Any]]
) -> None:
    out = tmp_path / f"r{suffix}"
    assert invoke("sweep", *GRID, "--output", str(out)).exit_code == 0
    whole = out.stat().st_size  # four records; room for about two and a half
    out.unlink()
    proc = run_limited(whole * 5 // 8, "sweep", *GRID, "--output", str(out))
    line = one_error_line(proc, f"cannot write {out}: File too large", "--resume")
    kept = strict_parse(out)  # no record cut short
    assert 1 <= len(kept) < 4, line
    assert f"holds {len(kept)} whole record" in line
    assert temporary_files(tmp_path) == []
    done = invoke("sweep", *GRID, "--output", str(out), "--resume")
    assert done.exit_code == 0, done.stderr
    got, want = comparable(strict_parse(out)), comparable(reference)
    assert set(got) == set(want)
    for key in want:
        if suffix == ".csv":
            same_as_csv(got[key], want[key])
        else:
            assert got[key] == want[key]


@pytest.mark.parametrize("existing", [True, False])
@pytest.mark.parametrize(
    "args",
    [
        ["analyze", "--T", "40", "--hidden", "3", "--output", "{dir}/r.json"],
        ["analyze", "--T", "40", "--hidden", "3", "--output", "{dir}/r.csv"],
        ["sweep", *GRID, "--output", "{dir}/r.txt"],
        ["analyze", "--T", "40", "--hidden", "3", "--plot", "{dir}/r.svg"],
    ],
    ids=["analyze-json", "analyze-csv", "sweep-table", "plot"],
)
def test_a_single_output_on_a_full_disk_is_never_half_written(
    tmp_path: Path, args: list[str], existing: bool
) -> None:
    args = [a.replace("{dir}", str(tmp_path)) for a in args]
    out = Path(next(a for a in args if a.startswith(str(tmp_path))))
    if existing:
        out.write_text("old\n")
    proc = run_limited(300, *args)
    one_error_line(proc, f"cannot write {out}: File too large")
    assert sorted(os.listdir(tmp_path)) == ([out.name] if existing else [])
    if existing:
        assert out.read_text() == "old\n"
