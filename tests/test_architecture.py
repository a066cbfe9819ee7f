"""The layers of ``bptt_cli`` (docs/ARCHITECTURE.md): imports go one way, down, and never in a cycle.

Every ``import`` of every module counts, at the top or inside a function, under ``TYPE_CHECKING``
or not: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bptt_cli"

# lowest first; a module may import its own layer and the layers below it
LAYERS = ("base", "core", "theory", "estimators", "analysis", "io", "report", "run", "api", "cli")
BASE = {"bptt_cli", "bptt_cli.errors", "bptt_cli.units"}
TOP = {"bptt_cli.cli": "cli", "bptt_cli.__main__": "cli"}
# third-party packages each layer may use (the standard library is always allowed)
THIRD_PARTY = {
    "base": set(),
    "core": {"numpy", "scipy"},
    "theory": {"numpy", "scipy"},
    "estimators": {"numpy", "scipy"},
    "analysis": {"numpy", "scipy"},
    # orjson: the records' arrays as JSON text in bulk, 15x faster than float.__repr__ per number (issue 17)
    "io": {"numpy", "torch", "orjson"},
    "report": {"numpy", "rich", "matplotlib"},
    "run": {"numpy", "typer", "distributed", "rich"},
    "api": {"numpy", "typer", "rich", "pandas", "matplotlib", "torch"},
    "cli": {"numpy", "typer", "rich"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> str:
    if module in BASE:
        return "base"
    if module in TOP:
        return TOP[module]
    sub = module.split(".")[1]
    if sub not in LAYERS:
        raise AssertionError(f"{module} is in no layer: put it in one of the sub-packages {LAYERS[1:-1]}")
    return sub


def imports(path: Path, known: Iterable[str]) -> tuple[set[str], set[str]]:
    """The package modules and the third-party top-level packages ``path`` imports."""
    known = set(known)
    inside: set[str] = set()
    outside: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] if not node.module.startswith("bptt_cli") else [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                for a in node.names
            ]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            if isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{path}: relative import (use absolute imports)")
            continue
        for name in names:
            if name.startswith("bptt_cli"):
                inside.add(name)
            elif name.split(".")[0] not in sys.stdlib_module_names:
                outside.add(name.split(".")[0])
    return inside, outside


def graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    mods = modules()
    edges, third = {}, {}
    for name, path in mods.items():
        inside, outside = imports(path, mods)
        edges[name] = {m for m in inside if m != name}
        third[name] = outside
    return edges, third


def upward(edges: Mapping[str, set[str]]) -> list[str]:
    """Every import of a module from a layer above its own."""
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    return sorted(
        f"{m} ({layer_of(m)}) imports {t} ({layer_of(t)})"
        for m, targets in edges.items()
        for t in targets
        # the package's own __init__ re-exports the API lazily: the one way up, by design
        if rank[layer_of(t)] > rank[layer_of(m)] and m != "bptt_cli"
    )


def cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_every_module_is_in_a_layer() -> None:
    for name in modules():
        layer_of(name)


def test_no_module_imports_a_layer_above_its_own() -> None:
    edges, _ = graph()
    assert upward(edges) == []


def test_no_import_cycle() -> None:
    edges, _ = graph()
    edges = {m: t for m, t in edges.items() if m != "bptt_cli"}  # the lazy API re-export
    assert cycles(edges) == []


def test_each_layer_uses_only_its_own_libraries() -> None:
    _, third = graph()
    bad = [f"{m} imports {sorted(libs - THIRD_PARTY[layer_of(m)])}" for m, libs in third.items()
           if libs - THIRD_PARTY[layer_of(m)]]
    assert bad == []


def test_the_checks_catch_what_they_are_for() -> None:
    """The checks above would fail on an upward import and on a cycle."""
    edges = {"bptt_cli.core.scaled": {"bptt_cli.report.tables"}, "bptt_cli.report.tables": set()}
    assert upward(edges) == ["bptt_cli.core.scaled (core) imports bptt_cli.report.tables (report)"]
    a, b, c = "bptt_cli.io.a", "bptt_cli.io.b", "bptt_cli.io.c"
    ring = {a: {b}, b: {c}, c: {a}}
    assert cycles(ring) == [["bptt_cli.io.a", "bptt_cli.io.b", "bptt_cli.io.c"]]
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("bptt_cli.misc.thing")


def _loaded_after(*argv: str) -> set[str]:
    """The ``bptt_cli`` modules (and a few heavy libraries) loaded by one CLI run, in a fresh process."""
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom bptt_cli.cli import app\n"
        f"r = CliRunner().invoke(app, {list(argv)!r})\nassert r.exit_code == 0, r.output\n"
        "print('\\n'.join(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_an_elman_run_imports_no_gated_module() -> None:
    tanh = _loaded_after("analyze", "--cell", "tanh", "--T", "20", "--hidden", "4", "--format", "json")
    assert "bptt_cli.analysis.analyze" in tanh
    assert "bptt_cli.core.gated" not in tanh
    assert "matplotlib" not in tanh
    lstm = _loaded_after("analyze", "--cell", "lstm", "--T", "20", "--hidden", "4", "--format", "json")
    assert "bptt_cli.core.gated" in lstm  # the check sees a gated module when one is loaded


def test_an_elman_run_imports_neither_scipy_nor_numpy_ma() -> None:
    """``numpy.median`` would import ``numpy.ma`` (10 ms) and the numerical abscissa once took
    ``scipy.linalg`` (0.2 s) above h 512: neither is loaded by a tanh run, table or JSON."""
    for fmt in ("table", "json"):
        run = _loaded_after("analyze", "--cell", "tanh", "--loss", "mean", "--T", "20", "--hidden", "520",
                            "--trials", "2", "--format", fmt)
        assert "bptt_cli.report.tables" in run or fmt == "json"
        heavy = {m for m in run if m in ("scipy", "numpy.ma") or m.startswith(("scipy.", "numpy.ma."))}
        assert not heavy, fmt


def test_the_console_script_builds_only_the_command_it_runs() -> None:
    from bptt_cli.cli import _app_for, app

    one = _app_for(["analyze", "--T", "3"])
    assert [typer_name(c) for c in one.registered_commands] == ["analyze"]
    assert len(app.registered_commands) > 1  # the whole app is untouched
    for argv in ([], ["--help"], ["--version"], ["anlyze"]):
        assert _app_for(argv) is app


def typer_name(info: object) -> str:
    import typer

    return getattr(info, "name", None) or typer.main.get_command_name(info.callback.__name__)  # type: ignore[attr-defined]
