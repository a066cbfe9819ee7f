"""Running the CLI in tests: through typer's CliRunner, or as a real subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from bptt_cli.cli import app

RUNNER = CliRunner()


def bptt(*args: object, env: dict[str, str] | None = None) -> Result:
    """``bptt ARGS`` in-process; stdout and stderr are kept apart."""
    return RUNNER.invoke(app, [str(a) for a in args], env=env)


def bptt_json(*args: object) -> dict[str, Any]:
    """``bptt analyze ARGS --format json``, checked to succeed, parsed."""
    result = bptt("analyze", *args, "--format", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def stable(rec: dict[str, Any]) -> dict[str, Any]:
    """A JSON record without what differs from run to run (the process's peak memory)."""
    out = dict(rec)
    if "memory" in out:
        out["memory"] = {k: v for k, v in out["memory"].items() if k != "peak_memory_bytes"}
    return out


def assert_bad_input(result: Result, *words: str) -> str:
    """Exit 2, nothing on stdout, exactly one stderr line ``bptt: error: ...`` naming ``words``."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("bptt: error: "), line
    assert "Traceback" not in result.stderr and "\x1b" not in result.stderr
    for word in words:
        assert word in line, f"{word!r} not in {line!r}"
    return line


def installed_bptt() -> str:
    """The installed ``bptt`` console script (the venv's, else the one on PATH)."""
    candidate = Path(sys.executable).parent / "bptt"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("bptt")
    assert found, "the bptt entry point is not installed (pip install -e '.[test]')"
    return found


def plain_env(**extra: str) -> dict[str, str]:
    """The environment for subprocess runs: no forced colour, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "FORCE_COLOR",
            "GITHUB_ACTIONS",
            "TTY_COMPATIBLE",
            "TTY_INTERACTIVE",
            "CLICOLOR_FORCE",
            "NO_COLOR",
        )
    }
    env.update(extra)
    return env


def run_process(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), capture_output=True, text=True, env=env or plain_env(), timeout=timeout, check=False
    )


def run_in_pty(args: list[str], env: dict[str, str]) -> bytes:
    """What ``args`` writes to a pseudo-terminal (stdout and stderr), checked to exit 0."""
    pty = pytest.importorskip("pty")
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=60)
    os.close(master)
    assert proc.returncode == 0, out
    return out
