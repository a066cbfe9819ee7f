"""The documentation: the mkdocs site builds in strict mode, and docs/json.md is the real JSON.

docs/json.md keeps the JSON contract in machine-readable tables: each follows a line
``<!-- json-contract: NAME -->`` (NAME: analyze, estimator, spectrum, truncate, sweep, advise; a name
may head several tables) and has the columns key, when, meaning. The key cell holds one or more
dotted key paths in backticks (``trials[].rates.observed``: ``[]`` for a list's items); the when
cell is empty (always there) or a comma list of conditions, any of which makes the key present;
a key inside an object is there only when the object is (``trials[].mean_field.q_star`` needs
``trials[].mean_field``).
Placeholders: ``<param>`` (the cell's parameter names), ``.<record>`` (an estimator record, checked
against the ``estimator`` table by its own ``kind``) and ``.<analyze>`` (every analyze key under
that prefix). The page itself explains this to readers.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from clitools import plain_env
from typer.testing import CliRunner

from bptt_cli.cli import app

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = ROOT / "docs" / "json.md"

# As tests/conftest.py and tests/clitools.py pin it: no colour, a fixed width, nothing forced.
PINNED: dict[str, str | None] = {
    "COLUMNS": "100",
    "TERM": "dumb",
    "NO_COLOR": "1",
    "FORCE_COLOR": None,
    "GITHUB_ACTIONS": None,
    "TTY_COMPATIBLE": None,
    "TTY_INTERACTIVE": None,
    "CLICOLOR_FORCE": None,
}

ELMAN_PARAMS = ("W_hh", "W_hx", "W_qh", "b_h", "b_q")
GATED_PARAMS = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "W_qh", "b_q")
RECORD_KINDS = frozenset({"window", "chunk", "random", "clip"})
PARAM, RECORD, ANALYZE, LAYER_PARAM = "<param>", ".<record>", ".<analyze>", "<layer param>"
ONE_LAYER = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")

MARKER = re.compile(r"<!-- json-contract: (\w+) -->")
CODE = re.compile(r"`([^`]+)`")


def test_docs_build_strict(tmp_path: Path) -> None:
    """``mkdocs build --strict``: every page in the nav, every link and anchor resolves."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=plain_env(COLUMNS="100", TERM="dumb", NO_COLOR="1", NO_MKDOCS_2_WARNING="1"),
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, (
        f"mkdocs build --strict failed (pip install '.[test]' brings mkdocs-material):\n{result.stderr}"
    )
    assert (tmp_path / "site" / "json" / "index.html").exists()


# --- the contract's tables ------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    key: str
    when: frozenset[str]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def contract() -> dict[str, list[Row]]:
    """The tables of docs/json.md by name: one Row per documented key."""
    lines = CONTRACT.read_text(encoding="utf-8").splitlines()
    tables: dict[str, list[Row]] = {}
    for i, line in enumerate(lines):
        marker = MARKER.fullmatch(line.strip())
        if not marker:
            continue
        rows = tables.setdefault(marker.group(1), [])
        assert _cells(lines[i + 1])[:2] == ["key", "when"], f"json.md line {i + 2}: not a contract table"
        j = i + 3  # past the header and its separator
        while j < len(lines) and lines[j].startswith("|"):
            key_cell, when_cell = _cells(lines[j])[:2]
            keys = CODE.findall(key_cell)
            assert keys and not CODE.sub("", key_cell).replace(",", "").strip(), (
                f"json.md line {j + 1}: the key cell must hold only `key`s: {key_cell!r}"
            )
            when = frozenset(w.strip() for w in when_cell.split(",") if w.strip())
            rows.extend(Row(key, when) for key in keys)
            j += 1
        assert j > i + 3, f"json.md line {i + 1}: an empty contract table"
    return tables


def documented(
    rows: Iterable[Row], tables: Mapping[str, list[Row]], tags: frozenset[str], params: tuple[str, ...],
    layer_params: tuple[str, ...] = ONE_LAYER,
) -> tuple[set[str], set[str]]:
    """The keys a run with these tags must have, and where its estimator records sit."""
    keys: set[str] = set()
    records: set[str] = set()
    for row in rows:
        if row.when and not row.when & tags:
            continue
        if row.key.endswith(ANALYZE):
            prefix = row.key.removesuffix(ANALYZE) + "."
            sub = [r for r in tables["analyze"] if r.key.startswith(prefix)]
            more_keys, more_records = documented(sub, tables, tags, params, layer_params)
            keys |= more_keys
            records |= more_records
            continue
        names = params if PARAM in row.key else layer_params if LAYER_PARAM in row.key else ("",)
        for name in names:
            key = row.key.replace(PARAM, name).replace(LAYER_PARAM, name)
            if key.endswith(RECORD):
                key = key.removesuffix(RECORD)
                records.add(key)
                key = key.removesuffix("[]")
            keys.add(key)
    return keys, records


def ancestors(key: str) -> list[str]:
    """The keys of the objects that hold ``key``: ``trials[].layers[].rates`` -> ``trials``,
    ``trials[].layers``."""
    parts = key.split(".")
    return [".".join(parts[:i]).removesuffix("[]") for i in range(1, len(parts))]


def within_present(keys: set[str], rows: Iterable[Row]) -> set[str]:
    """``keys`` less those inside a documented object that is not among them: a key inside an
    object is there only when the object is (``--no-theory`` leaves out ``trials[].mean_field``,
    and so ``trials[].mean_field.q_star``, which is documented for the Elman cells)."""
    known = {row.key for row in rows}
    return {k for k in keys if all(a in keys or a not in known for a in ancestors(k))}


def flatten(obj: Any, records: Iterable[str] = ()) -> tuple[set[str], list[dict[str, Any]]]:
    """Every key path of ``obj`` (``[]`` for list items), and the estimator records at ``records``
    (whose own keys are left out)."""
    at = set(records)
    keys: set[str] = set()
    found: list[dict[str, Any]] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            if path in at:
                found.append(value)
                return
            for k, v in value.items():
                sub = f"{path}.{k}" if path else k
                keys.add(sub)
                walk(v, sub)
        elif isinstance(value, list):
            for item in value:
                walk(item, path + "[]")

    walk(obj, "")
    return keys, found


def assert_same(expected: set[str], real: set[str], what: str) -> None:
    missing = sorted(expected - real)
    undocumented = sorted(real - expected)
    assert not missing and not undocumented, (
        f"{what}: docs/json.md and the real output disagree.\n"
        f"  documented but not in the output: {missing}\n"
        f"  in the output but not documented: {undocumented}"
    )


# --- the runs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    table: str
    args: tuple[str, ...]
    tags: frozenset[str]
    params: tuple[str, ...] = ELMAN_PARAMS
    lines: bool = False  # one JSON record per line (jsonl)
    layer_params: tuple[str, ...] = ONE_LAYER
    without: tuple[str, ...] = ()  # documented keys the options leave out (--summary-only: trials)


SMALL = ("--T", "20", "--hidden", "6", "--trials", "2")
RUNS = {
    "analyze-tanh": Run(
        "analyze", ("analyze", *SMALL, "--cell", "tanh", "--loss", "mean"),
        frozenset({"analyze", "theory", "elman", "one-layer-elman"}),
    ),
    "analyze-estimators": Run(
        "analyze",
        ("analyze", *SMALL, "--cell", "tanh", "--truncate", "5", "--clip", "1"),
        frozenset({"analyze", "theory", "elman", "one-layer-elman", "--truncate", "--clip"}),
    ),
    "analyze-chunk": Run(
        "analyze",
        ("analyze", *SMALL, "--truncate", "5", "--truncate-mode", "chunk"),
        frozenset({"analyze", "theory", "elman", "one-layer-elman", "--truncate"}),
    ),
    "analyze-random": Run(
        "analyze",
        ("analyze", *SMALL, "--truncate", "random", "--keep-prob", "0.5", "--draws", "4"),
        frozenset({"analyze", "theory", "elman", "one-layer-elman", "--truncate"}),
    ),
    "analyze-steps": Run(
        "analyze", ("analyze", *SMALL, "--cell", "tanh", "--steps", "3", "--eigenvalues", "2"),
        frozenset({"analyze", "theory", "elman", "one-layer-elman", "--steps"}),
    ),
    "analyze-summary-only": Run(
        "analyze", ("analyze", *SMALL, "--cell", "tanh", "--summary-only"),
        frozenset({"analyze", "theory", "elman", "one-layer-elman", "--summary-only"}),
        without=("trials",),
    ),
    "analyze-lstm": Run(
        "analyze",
        ("analyze", *SMALL, "--cell", "lstm"),
        frozenset({"analyze", "theory", "gated", "lstm"}),
        GATED_PARAMS,
    ),
    "analyze-gru": Run(
        "analyze",
        ("analyze", *SMALL, "--cell", "gru"),
        frozenset({"analyze", "theory", "gated", "gru"}),
        GATED_PARAMS,
    ),
    "analyze-stack": Run(
        "analyze",
        ("analyze", *SMALL, "--cell", "tanh", "--layers", "2", "--bidirectional",
         "--criterion", "cross-entropy"),
        frozenset({"analyze", "theory", "elman"}),
        layer_params=tuple(f"{kind}_l{k}{sfx}" for k in (0, 1) for sfx in ("", "_reverse")
                           for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")),
    ),
    "analyze-gated-stack": Run(
        "analyze",
        ("analyze", *SMALL, "--cell", "gru", "--layers", "2", "--h0", "random", "--loss", "mean"),
        frozenset({"analyze", "theory", "gated", "gru"}),
        GATED_PARAMS,
        layer_params=tuple(f"{kind}_l{k}" for k in (0, 1)
                           for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")),
    ),
    "spectrum": Run("spectrum", ("spectrum", "--T", "20", "--hidden", "6", "--trials", "2"), frozenset()),
    "spectrum-stack": Run(
        "spectrum",
        ("spectrum", "--T", "20", "--hidden", "6", "--layers", "2", "--bidirectional"),
        frozenset(),
    ),
    "truncate": Run("truncate", ("truncate", *SMALL, "--draws", "4"), frozenset({"window", "random"})),
    "truncate-chunk": Run(
        "truncate",
        ("truncate", *SMALL, "--draws", "4", "--truncate-mode", "chunk"),
        frozenset({"chunk", "random"}),
    ),
    "advise-tanh": Run(
        "advise", ("advise", "--T", "20", "--hidden", "6", "--cell", "tanh", "--draws", "4"),
        frozenset({"advise-elman"}),
    ),
    "advise-relu": Run(
        "advise", ("advise", "--T", "20", "--hidden", "6", "--cell", "relu", "--draws", "4"),
        frozenset({"advise-elman", "advise-relu"}),
    ),
    "advise-lstm": Run(
        "advise", ("advise", "--T", "20", "--hidden", "6", "--cell", "lstm", "--draws", "4"),
        frozenset({"advise-lstm"}),
    ),
    "sweep": Run(
        "sweep",
        ("sweep", "--T", "10,20", "--hidden", "6", "--workers", "1", "--format", "jsonl"),
        frozenset({"theory", "elman"}),
        lines=True,
    ),
    "sweep-lstm": Run(
        "sweep",
        ("sweep", "--cell", "lstm", "--T", "10", "--hidden", "6", "--workers", "1", "--format", "jsonl"),
        frozenset({"theory", "gated", "lstm"}),
        GATED_PARAMS,
        lines=True,
    ),
    "analyze-no-theory": Run(
        "analyze", ("analyze", *SMALL, "--cell", "tanh", "--loss", "mean", "--no-theory"),
        frozenset({"analyze", "elman", "one-layer-elman"}),
    ),
    "analyze-stack-no-theory": Run(
        "analyze", ("analyze", *SMALL, "--cell", "tanh", "--layers", "2", "--no-theory"),
        frozenset({"analyze", "elman"}),
        layer_params=tuple(f"{kind}_l{k}" for k in (0, 1)
                           for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")),
    ),
    "analyze-lstm-no-theory": Run(
        "analyze", ("analyze", *SMALL, "--cell", "lstm", "--no-theory"),
        frozenset({"analyze", "gated", "lstm"}),
        GATED_PARAMS,
    ),
    "sweep-no-theory": Run(
        "sweep",
        ("sweep", "--T", "10,20", "--hidden", "6", "--theory", "false", "--workers", "1",
         "--format", "jsonl"),
        frozenset({"elman"}),
        lines=True,
    ),
}


def run_json(run: Run) -> list[Any]:
    """The command's JSON: one object, or one per line for jsonl."""
    args = [*run.args] if run.lines else [*run.args, "--format", "json"]
    result = CliRunner().invoke(app, args, env=PINNED)
    assert result.exit_code == 0, (result.exit_code, result.stderr, result.exception)
    if run.lines:
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return [json.loads(result.stdout)]


@pytest.mark.parametrize("name", sorted(RUNS))
def test_json_contract_matches_output(name: str) -> None:
    """Every key documented in docs/json.md is in the output, and every key of the output is
    documented: for the command's table, and for every estimator record by its kind."""
    run = RUNS[name]
    tables = contract()
    expected, record_paths = documented(tables[run.table], tables, run.tags, run.params, run.layer_params)
    expected = within_present(expected, [*tables[run.table], *tables["analyze"]])
    left_out = tuple(p for w in run.without for p in (f"{w}.", f"{w}["))
    expected = {k for k in expected if k not in run.without and not k.startswith(left_out)}
    outputs = run_json(run)
    assert outputs, "no JSON output"
    records: list[dict[str, Any]] = []
    for n, out in enumerate(outputs):
        real, found = flatten(out, record_paths)
        assert_same(expected, real, f"bptt {' '.join(run.args)} (object {n})")
        records += found
    if "--truncate" in run.tags or "--clip" in run.tags or run.table == "truncate":
        assert records, "no estimator record found where docs/json.md puts them"
    for record in records:
        kind = frozenset({record["kind"]})
        want, _ = documented(tables["estimator"], tables, kind, ELMAN_PARAMS)
        real, _ = flatten(record)
        assert_same(want, real, f"bptt {' '.join(run.args)}: the estimator record of kind {record['kind']}")


def test_json_contract_conditions_are_all_exercised() -> None:
    """Every condition in a when column is one that some run above has, so no row goes unchecked."""
    tables = contract()
    assert set(tables) == {"analyze", "estimator", "spectrum", "truncate", "sweep", "advise"}
    run_tags = frozenset().union(*(run.tags for run in RUNS.values()))
    for name, rows in tables.items():
        allowed = RECORD_KINDS if name == "estimator" else run_tags
        for row in rows:
            assert row.when <= allowed, f"json.md, table {name}: {row.key} has unknown conditions {row.when}"


def test_readme_links_into_docs_resolve() -> None:
    """README.md's relative links (mkdocs does not see the README) name files that exist."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(((?!https?:)[^)#\s]+)(?:#[^)]*)?\)", readme)
    assert targets
    for target in targets:
        assert (ROOT / target).exists(), f"README.md links to {target}, which does not exist"
