"""Helpers shared by the sweep tests: run the CLI in-process, read records, compare them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from bptt_cli.cli import app
from bptt_cli.io.points import point_key
from bptt_cli.io.sweep_records import read_records

REPO = Path(__file__).resolve().parent.parent
BPTT = [sys.executable, "-m", "bptt_cli"]
# a small grid that still runs every cell and both sides of radius 1
SMALL = ["--radius", "0.8,1.2", "--T", "5,40", "--cell", "identity,tanh", "--hidden", "6", "--trials", "3"]
# about a dozen points of ~0.1 s: long enough for a sweep to be caught in the middle
SLOW_GRID = ["--radius", "0.5:1.5:12", "--T", "2500", "--hidden", "24", "--trials", "2"]
FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv"}


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, list(args), env=env)


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def comparable(records: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """Records by point, without the wall time (the only key allowed to differ between runs)."""
    out = {}
    for r in records:
        r = {k: v for k, v in r.items() if k != "wall_time_s"}
        out[point_key(r["point"])] = r
    return out


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "BPTT_SCHEDULER")}
    env.update(TERM="dumb", COLUMNS="100")
    return env


def same_as_csv(got: dict[str, Any], ref: dict[str, Any]) -> None:
    """A record read back from CSV holds every value of ``ref`` (numbers to the last bit: CSV
    cells are their repr); columns other records brought are empty."""
    from bptt_cli.io.sweep_records import flatten

    a, b = flatten(got), flatten(ref)
    for key, value in b.items():
        assert a.get(key) == value, key
    for key in set(a) - set(b):
        assert a[key] is None, key


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
