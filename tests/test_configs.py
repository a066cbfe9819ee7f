"""`--config FILE.toml` for analyze and sweep, and every shipped config in configs/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clitools import stable
from sweep_helpers import REPO, comparable, invoke, jsonl

CONFIGS = sorted((REPO / "configs").glob("*.toml"))


def write(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def summary(*args: str) -> dict[str, object]:
    """analyze's JSON without the process's peak memory (which differs from run to run)."""
    result = invoke("analyze", *args, "--format", "json")
    assert result.exit_code == 0, result.stderr
    return stable(json.loads(result.stdout))


def test_analyze_config_sets_the_defaults(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        'cell = "tanh"\nT = 20\nhidden = 6\ninputs-dim = 3\noutputs_dim = 2\nradius = 1.3\ntrials = 2\n',
    )
    got = summary("--config", str(config))
    want = summary(
        "--cell",
        "tanh",
        "--T",
        "20",
        "--hidden",
        "6",
        "--inputs-dim",
        "3",
        "--outputs-dim",
        "2",
        "--radius",
        "1.3",
        "--trials",
        "2",
    )
    assert got["summary"] == want["summary"]
    assert got["config"]["inputs_dim"] == 3 and got["config"]["outputs_dim"] == 2


def test_command_line_flags_override_the_config(tmp_path: Path) -> None:
    config = write(tmp_path, "T = 20\nhidden = 6\nradius = 1.3\n")
    got = summary("--config", str(config), "--T", "7", "--radius", "0.5")
    assert got["config"]["T"] == 7 and got["config"]["radius"] == 0.5 and got["config"]["hidden"] == 6
    # the order of --config among the flags does not matter
    assert summary("--T", "7", "--config", str(config), "--radius", "0.5") == got


def test_analyze_config_output_options(tmp_path: Path) -> None:
    config = write(tmp_path, 'format = "json"\nT = 5\nhidden = 3\n')
    result = invoke("analyze", "--config", str(config))
    assert result.exit_code == 0
    assert json.loads(result.stdout)["config"]["T"] == 5


@pytest.mark.parametrize(
    ("command", "text", "message"),
    [
        ("analyze", "speed = 3\n", "unknown key 'speed'"),
        ("sweep", "speed = [3]\n", "unknown key 'speed'"),
        ("analyze", 'T = "ten"\n', "T must be an integer, got string 'ten'"),
        ("analyze", "T = 1.5\n", "T must be an integer, got number 1.5"),
        ("analyze", "T = true\n", "T must be an integer, got boolean True"),
        ("analyze", 'radius = "1"\n', "radius must be a number"),
        ("analyze", "cell = 3\n", "cell must be a string"),
        ("analyze", 'cell = "mamba"\n', "cell: 'mamba' is not one of"),
        ("analyze", "T = 0\n", "T: 0 is not in the range x>=1"),
        ("analyze", "T = [10, 100]\n", "T must be a single value, got a list (lists are sweep axes"),
        ("analyze", "[T]\nx = 1\n", "T must be a value, got a table"),
        ("analyze", "T = 5\nT = 6\n", "is not valid TOML"),
        ("analyze", "T = \n", "is not valid TOML"),
        ("analyze", "inputs-dim = 3\ninputs_dim = 3\n", "set the same option"),
        ("sweep", "T = []\n", "T: empty axis"),
        (
            "sweep",
            'radius = "0.5:1.5:-3"\n',
            "count of range '0.5:1.5:-3' must be a positive integer, got -3",
        ),
        (
            "sweep",
            "T = [10, 1.5]\n",
            "T must be an integer, a list of them or an axis string, got number 1.5",
        ),
        ("sweep", 'T = [10, "x"]\n', "T must be an integer"),
        ("sweep", "T = [[10]]\n", "T must be an integer"),
        ("sweep", "T = [0, 10]\n", "T: 0 is not in the range x>=1"),
        ("sweep", 'cell = ["tanh", "mamba"]\n', "cell: 'mamba' is not one of"),
        ("sweep", "workers = [1, 2]\n", "workers must be a single value, got a list"),
        ("sweep", 'workers = "two"\n', "workers must be an integer"),
        ("sweep", 'fail_on = "sometimes"\n', "fail_on:"),
    ],
)
def test_bad_configs_are_one_line_naming_file_and_key(
    tmp_path: Path, command: str, text: str, message: str
) -> None:
    config = write(tmp_path, text)
    result = invoke(command, "--config", str(config))
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"bptt: error: config {config}"), lines[0]
    assert message in lines[0], lines[0]


def test_missing_config_file(tmp_path: Path) -> None:
    result = invoke("sweep", "--config", str(tmp_path / "nope.toml"))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"bptt: error: cannot read config {tmp_path / 'nope.toml'}")


def test_sweep_config_lists_and_range_strings_are_axes(tmp_path: Path) -> None:
    config = write(
        tmp_path, 'radius = "0.8:1.2:2"\nT = [5, 40]\ncell = ["identity", "tanh"]\nhidden = 6\ntrials = 3\n'
    )
    result = invoke("sweep", "--config", str(config), "--format", "jsonl")
    assert result.exit_code == 0, result.stderr
    from sweep_helpers import SMALL

    direct = invoke("sweep", *SMALL, "--format", "jsonl")
    assert comparable(jsonl(result.stdout)) == comparable(jsonl(direct.stdout))


def test_sweep_flags_override_config_axes(tmp_path: Path) -> None:
    config = write(tmp_path, 'T = [5, 40]\nhidden = 4\nformat = "jsonl"\nworkers = 1\n')
    records = jsonl(invoke("sweep", "--config", str(config), "--T", "7").stdout)
    assert [r["point"]["T"] for r in records] == [7]


def test_shipped_configs_exist_and_say_what_they_show() -> None:
    names = {p.name for p in CONFIGS}
    assert {"default.toml", "radius-vs-T.toml", "cells.toml", "hidden-size.toml"} <= names
    for path in CONFIGS:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# ") and len(first) > 30, path


# small enough for CI: fewer trials, small hidden size, shorter T where the config sweeps it
SHRINK = {"radius-vs-T.toml": ["--T", "10,1000"], "hidden-size.toml": ["--hidden", "4,16", "--T", "200"]}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_runs(path: Path) -> None:
    args = ["--config", str(path), "--trials", "2", *SHRINK.get(path.name, [])]
    if path.name != "hidden-size.toml":
        args += ["--hidden", "8"]
    result = invoke("sweep", *args)
    assert result.exit_code == 0, result.stderr
    assert "bptt sweep:" in result.stdout
    records = jsonl(invoke("sweep", *args, "--format", "jsonl").stdout)
    assert records and all(r["summary"]["verdict"] in ("vanishing", "stable", "exploding") for r in records)


def test_default_config_is_plain_analyze() -> None:
    path = REPO / "configs" / "default.toml"
    assert summary("--config", str(path)) == summary()


@pytest.mark.slow
def test_radius_vs_T_shows_the_phase_picture() -> None:
    """Acceptance: vanishing below radius 1, exploding above, for long T (the config's T axis)."""
    path = REPO / "configs" / "radius-vs-T.toml"
    result = invoke("sweep", "--config", str(path), "--hidden", "16", "--trials", "3", "--T", "10,100,1000")
    assert result.exit_code == 0, result.stderr
    rows = {}
    for line in result.stdout.splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) == 4 and cells[0].replace(".", "").isdigit():
            rows[float(cells[0])] = cells[1:]
    assert sorted(rows) == pytest.approx([0.5 + 0.1 * i for i in range(11)])
    for radius, cells in rows.items():
        longest = cells[-1]  # T = 1000
        if radius < 0.95:
            assert longest.endswith("v"), (radius, cells)
        elif radius > 1.05:
            assert longest.endswith("^"), (radius, cells)
        else:
            assert longest.endswith("="), (radius, cells)
