"""Helpers shared by the sweep tests: run the CLI in-process, read records, compare them."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from bptt_cli.cli import app
from bptt_cli.io.points import point_key

REPO = Path(__file__).resolve().parent.parent
BPTT = [sys.executable, "-m", "bptt_cli"]
# a small grid that still runs every cell and both sides of radius 1
SMALL = ["--radius", "0.8,1.2", "--T", "5,40", "--cell", "identity,tanh", "--hidden", "6", "--trials", "3"]


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
