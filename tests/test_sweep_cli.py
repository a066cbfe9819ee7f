"""`bptt sweep`: records, reproducibility, output formats, tables, --fail-on, resume."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from sweep_helpers import SMALL, comparable, invoke, jsonl, same_as_csv

from bptt_cli.cli import NOT_AXES, analyze
from bptt_cli.io.points import point_key
from bptt_cli.io.sweep_records import unflatten


def analyze_json(*args: str) -> dict[str, Any]:
    result = invoke("analyze", *args, "--format", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def sweep_records(*args: str) -> list[dict[str, Any]]:
    result = invoke("sweep", *args, "--format", "jsonl")
    assert result.exit_code == 0, result.stderr
    return jsonl(result.stdout)


def flags_of(point: dict[str, Any]) -> list[str]:
    """The `bptt analyze` flags that reproduce a record's point."""
    from bptt_cli.api.options import analyze_options, command

    params = {p.name: p for p in command(analyze_options).params}
    args = []
    for name, value in point.items():
        param = params[name]
        if isinstance(value, bool):  # a flag: --x or --no-x
            args.append(param.opts[0] if value else param.secondary_opts[0])
        elif value is not None:
            args += [param.opts[0], str(value)]
    return args


def test_each_record_is_what_analyze_reports_for_its_settings() -> None:
    records = sweep_records(*SMALL, "--workers", "1")
    assert len(records) == 8
    for r in records:
        expected = analyze_json(*flags_of(r["point"]))
        assert r["summary"] == expected["summary"]
        config = {k: v for k, v in expected["config"].items() if k != "fail_on"}
        assert r["config"] == config
        assert r["wall_time_s"] > 0
        assert r["version"] == expected["version"]


def test_records_with_the_other_analyze_options_match_analyze_too() -> None:
    """Options other issues added to analyze (Lyapunov, truncation, clipping, checkpointing) are
    axes whose records are still analyze's numbers."""
    records = sweep_records(
        "--T", "300", "--hidden", "6", "--trials", "2", "--cell", "tanh", "--radius", "1.3",
        "--lyapunov", "0,2", "--truncate", "5,10", "--clip", "1",
        "--checkpoint", "none,256",
    )  # fmt: skip
    assert len(records) == 8
    for r in records:
        expected = analyze_json(*flags_of(r["point"]))
        assert r["summary"] == expected["summary"]
        assert r["config"] == {k: v for k, v in expected["config"].items() if k != "fail_on"}
    assert all("estimators" in r["summary"] for r in records)
    gated = sweep_records(
        "--cell", "lstm,gru", "--forget-bias", "0,1", "--T", "20", "--hidden", "4", "--trials", "2"
    )  # fmt: skip
    assert len(gated) == 4
    for r in gated:
        assert r["summary"] == analyze_json(*flags_of(r["point"]))["summary"]


def test_record_keys_are_the_documented_contract() -> None:
    (r,) = sweep_records("--T", "5", "--hidden", "4")
    assert list(r) == ["point", "config", "summary", "wall_time_s", "version"]
    import inspect

    assert set(r["point"]) == set(inspect.signature(analyze).parameters) - set(NOT_AXES)
    assert set(r["config"]) == set(analyze_json("--T", "5", "--hidden", "4")["config"]) - {"fail_on"}
    s = r["summary"]
    for key in (
        "gain_log10",
        "verdict",
        "tolerance",
        "trials",
        "spread",
        "verdict_fractions",
        "spectral_radius",
        "spectral_norm",
        "grad_params_log10",
    ):
        assert key in s
    assert set(s["spread"]) == {"gain_log10", "grad_h1_log10"}
    assert set(s["spread"]["gain_log10"]) == {"median", "q1", "q3", "min", "max"}
    contract = (Path(__file__).resolve().parent.parent / "docs" / "json.md").read_text()
    for key in ("`point`", "`config`", "`summary`", "`wall_time_s`", "`version`"):
        assert key in contract


def test_a_point_does_not_depend_on_the_rest_of_the_grid() -> None:
    """Seeds come from --seed and the point's settings: adding axis values changes nothing else."""
    small = comparable(sweep_records("--radius", "0.9", "--T", "30", "--hidden", "8", "--trials", "2"))
    big = comparable(
        sweep_records(
            "--radius",
            "0.5,0.9,1.3",
            "--T",
            "10,30",
            "--cell",
            "identity,relu",
            "--hidden",
            "8",
            "--trials",
            "2",
            "--workers",
            "2",
        )
    )
    (key,) = small
    assert big[key] == small[key]


def test_common_random_numbers_one_W_hh_draw_rescaled_to_every_radius() -> None:
    records = sweep_records("--radius", "0.5,2.0", "--T", "3", "--hidden", "5", "--trials", "2")
    by_radius = {r["point"]["radius"]: r["summary"] for r in records}
    # the same matrices rescaled: the spectral norm scales exactly like the radius
    ratio = by_radius[2.0]["spectral_norm"] / by_radius[0.5]["spectral_norm"]
    assert ratio == pytest.approx(4.0, rel=1e-12)


def test_workers_1_and_2_give_identical_records() -> None:
    one = comparable(sweep_records(*SMALL, "--workers", "1"))
    two = comparable(sweep_records(*SMALL, "--workers", "2"))
    assert one == two and len(one) == 8


def test_workers_1_runs_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    import bptt_cli.run.runner as runner

    def no_pool(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a process pool was started for --workers 1")

    monkeypatch.setattr(runner, "run_local", no_pool)
    assert len(sweep_records("--T", "3,4", "--hidden", "3", "--workers", "1")) == 2


def test_local_workers_have_single_threaded_blas() -> None:
    from bptt_cli.run.runner import BLAS_THREAD_VARS, run_local

    seen = list(run_local([{"i": 0}, {"i": 1}], 2, work=_blas_env))
    assert all(env == dict.fromkeys(BLAS_THREAD_VARS, "1") for env in seen)


def _blas_env(point: dict[str, Any]) -> dict[str, str | None]:
    import os

    from bptt_cli.run.runner import BLAS_THREAD_VARS

    return {var: os.environ.get(var) for var in BLAS_THREAD_VARS}


def test_a_new_analyze_option_is_an_axis_with_no_change_to_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Build `sweep` from an analyze with an extra option: it takes an axis at once."""
    import inspect

    import bptt_cli.run.sweep as sweep_module
    from bptt_cli import cli
    from bptt_cli.api import options

    def analyze_plus(
        future_knob: Annotated[int | None, typer.Option(min=1, help="A future option.")] = None,
        **_: Any,
    ) -> None:
        """analyze with one more option."""

    # the real analyze's options plus the new one
    sig = inspect.signature(options.analyze_options, eval_str=True)
    extra = inspect.signature(analyze_plus, eval_str=True).parameters["future_knob"]
    analyze_plus.__signature__ = sig.replace(parameters=[*sig.parameters.values(), extra])  # type: ignore[attr-defined]
    analyze_plus.__annotations__ = {}
    monkeypatch.setattr(options, "analyze_options", analyze_plus)
    seen: dict[str, Any] = {}

    def run_sweep(axes: Any, **kw: Any) -> None:
        seen.update({a.name: a for a in axes})
        raise typer.Exit(0)

    monkeypatch.setattr(sweep_module, "run_sweep", run_sweep)
    app = typer.Typer(add_completion=False)
    app.command("sweep")(cli._sweep())
    app.command("other")(lambda: None)
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["sweep", "--future-knob", "1:3:3", "--T", "5"])
    assert result.exit_code == 0, result.output
    assert seen["future_knob"].values == (1, 2, 3)
    assert seen["T"].values == (5,)
    bad = CliRunner().invoke(app, ["sweep", "--future-knob", "0"])
    assert bad.exit_code != 0


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_output_file_formats_hold_the_same_records(tmp_path: Path, suffix: str) -> None:
    reference = comparable(sweep_records(*SMALL))
    out = tmp_path / f"r{suffix}"
    result = invoke("sweep", *SMALL, "--output", str(out))
    assert result.exit_code == 0, result.stderr
    assert "radius \\ T" in result.stdout  # the heat table goes to the terminal meanwhile
    text = out.read_text()
    if suffix == ".jsonl":
        records = jsonl(text)
    elif suffix == ".json":
        doc = json.loads(text)
        records = doc["records"]
        assert doc["version"]
        # in grid order
        order = [(r["point"]["T"], r["point"]["cell"], r["point"]["radius"]) for r in records]
        assert order == sorted(order, key=lambda o: (o[0], ["identity", "tanh"].index(o[1]), o[2]))
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
        records = [unflatten(row) for row in rows]
        assert "summary.spread.gain_log10.q1" in rows[0]
    got = comparable(records)
    assert set(got) == set(reference)
    for key, r in got.items():
        ref = reference[key]
        if suffix == ".csv":  # text cells: compare the numbers they hold
            same_as_csv(r, ref)
        else:
            assert r == ref


def test_stdout_formats(tmp_path: Path) -> None:
    args = ["--T", "3,4", "--hidden", "3"]
    doc = json.loads(invoke("sweep", *args, "--format", "json").stdout)
    assert [r["point"]["T"] for r in doc["records"]] == [3, 4]
    rows = list(csv.DictReader(io.StringIO(invoke("sweep", *args, "--format", "csv").stdout)))
    assert sorted(row["point.T"] for row in rows) == ["3", "4"]
    table = invoke("sweep", *args)
    assert table.exit_code == 0 and "\x1b[" not in table.stdout
    txt = tmp_path / "t.txt"
    assert invoke("sweep", *args, "--output", str(txt)).exit_code == 0
    assert "bptt sweep: 2 points" in txt.read_text()


def test_heat_table_layout_and_marks() -> None:
    result = invoke(
        "sweep",
        "--radius",
        "0.5,1.5",
        "--T",
        "2,300",
        "--cell",
        "identity,sigmoid",
        "--hidden",
        "8",
        "--trials",
        "2",
    )
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "bptt sweep: 8 points (2 radius x 2 T x 2 cell)" in out
    assert "cell identity" in out and "cell sigmoid" in out  # one table per other axis value
    identity = out.split("cell identity")[1].split("cell sigmoid")[0]
    lines = {line.split("|")[1].strip(): line for line in identity.splitlines() if line.count("|") > 2}
    assert lines["0.5"].rstrip("| ").endswith("v")  # vanishing over 300 steps at radius 0.5
    assert lines["1.5"].rstrip("| ").endswith("^")  # exploding at 1.5
    swapped = invoke(
        "sweep", "--radius", "0.5,1.5", "--T", "2,3", "--hidden", "4", "--rows", "T", "--cols", "radius"
    )
    assert "T \\ radius" in swapped.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rows", "T", "--cols", "--T"], "--rows and --cols both name --T"),
        (["--rows", "speed"], "--rows 'speed' is not an option of bptt analyze"),
        (["--resume"], "--resume needs --output"),
        (["--output", "r.yaml"], "cannot tell the format"),
        (["--T", "0"], "--T: 0 is not in the range x>=1"),
        (["--T", "10,-5"], "--T: -5 is not in the range x>=1"),
        (["--hidden", "0:4:3"], "--hidden: 0 (of the range 0:4:3): 0 is not in the range x>=1"),
        (["--format", "csv", "--output", "m.jsonl"], "--format csv conflicts with --output m.jsonl"),
        (["--format", "jsonl", "--output", "m.json"], "--format jsonl conflicts with --output m.json"),
        (["--output", "/proc/x.jsonl"], "cannot write /proc/x.jsonl"),
        (["--radius", "0.5:1.5:-2"], "must be a positive integer, got -2"),
        (["--gain", "1,2", "--radius", "1"], "point gain=1.0: --gain conflicts with --radius"),
        (["--cell", "mamba"], "--cell:"),
        (
            ["--hidden", "2,8", "--lyapunov", "4"],
            "point hidden=2: --lyapunov 4 must be between 0 and the hidden size 2",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("sweep", "--T", "3", *args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bptt: error: "), result.stderr
    assert message in lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_fail_on_lists_the_matching_points_and_exits_1() -> None:
    args = ["--radius", "0.5,1.0,1.5", "--T", "200", "--hidden", "8", "--trials", "2", "--format", "jsonl"]
    result = invoke("sweep", *args, "--fail-on", "exploding")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "radius=1.5" in lines[0] and "exploding" in lines[0]
    assert len(jsonl(result.stdout)) == 3  # the records are all written anyway
    unstable = invoke("sweep", *args, "--fail-on", "unstable")
    assert unstable.exit_code == 1
    assert [
        ("radius=0.5" in line, "radius=1.5" in line) for line in unstable.stderr.strip().splitlines()
    ] == [(True, False), (False, True)]
    ok = invoke("sweep", "--radius", "1.0", "--T", "200", "--hidden", "8", "--fail-on", "unstable")
    assert ok.exit_code == 0 and ok.stderr == ""


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_resume_runs_only_the_missing_points(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"r{suffix}"
    full = tmp_path / f"full{suffix}"
    assert invoke("sweep", *SMALL, "--output", str(full)).exit_code == 0
    # a first run of part of the grid (T=5 only), then the whole grid resumed
    assert invoke("sweep", *SMALL, "--T", "5", "--output", str(out)).exit_code == 0
    first = read_any(out)
    assert len(first) == 4
    result = invoke("sweep", *SMALL, "--output", str(out), "--resume")
    assert result.exit_code == 0, result.stderr
    after = read_any(out)
    assert len(after) == 8
    # the kept records are untouched (same wall times), the others are new
    assert all(after[k] == v for k, v in first.items())
    assert strip_wall(after) == strip_wall(read_any(full))
    # resuming a finished sweep runs nothing and changes nothing
    before = out.read_bytes()
    assert invoke("sweep", *SMALL, "--output", str(out), "--resume").exit_code == 0
    assert out.read_bytes() == before


def read_any(path: Path) -> dict[Any, dict[str, Any]]:
    from bptt_cli.io.sweep_records import read_records

    fmt = {".jsonl": "jsonl", ".json": "json", ".csv": "csv"}[path.suffix]
    return {point_key(r["point"]): r for r in read_records(path, fmt).records}


def strip_wall(records: dict[Any, dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {k: {kk: vv for kk, vv in v.items() if kk != "wall_time_s"} for k, v in records.items()}


def test_resume_refuses_records_of_another_sweep(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    assert invoke("sweep", "--T", "3", "--hidden", "3", "--trials", "2", "--output", str(out)).exit_code == 0
    before = out.read_bytes()
    result = invoke("sweep", "--T", "3", "--hidden", "3", "--trials", "3", "--output", str(out), "--resume")
    assert result.exit_code == 2
    assert "1 of its records are not points of this sweep" in result.stderr
    assert out.read_bytes() == before


def test_resume_drops_a_last_line_cut_short(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    assert invoke("sweep", "--T", "3,4,5", "--hidden", "3", "--output", str(out)).exit_code == 0
    lines = out.read_text().splitlines(keepends=True)
    out.write_text(lines[0] + lines[1][: len(lines[1]) // 2])  # as if killed in the middle of a write
    assert invoke("sweep", "--T", "3,4,5", "--hidden", "3", "--output", str(out), "--resume").exit_code == 0
    records = jsonl(out.read_text())
    assert sorted(r["point"]["T"] for r in records) == [3, 4, 5]


def test_resume_of_a_missing_file_starts_it(tmp_path: Path) -> None:
    out = tmp_path / "new.csv"
    assert invoke("sweep", "--T", "3,4", "--hidden", "3", "--output", str(out), "--resume").exit_code == 0
    assert len(list(csv.DictReader(io.StringIO(out.read_text())))) == 2


def test_resume_rejects_a_file_that_is_not_a_sweep(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    out.write_text("hello\n")
    result = invoke("sweep", "--T", "3", "--output", str(out), "--resume")
    assert result.exit_code == 2 and "not a bptt sweep jsonl file" in result.stderr


def test_progress_bar_on_stderr_only_for_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["--T", "3,4,5", "--hidden", "3", "--workers", "1"]
    plain = invoke("sweep", *args)
    assert plain.exit_code == 0 and plain.stderr == ""  # not a terminal: no bar, nothing on stderr
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: treat the streams as terminals
    monkeypatch.setenv("TERM", "xterm-256color")
    bar = invoke("sweep", *args)
    assert bar.exit_code == 0
    assert "points" in bar.stderr and "3/3" in bar.stderr and "ETA" in bar.stderr


def test_csv_columns_widen_when_a_record_brings_new_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A value null in one record and an object in the next: the header grows, the file always parses."""
    from bptt_cli.io.sweep_records import CsvRows, CsvStdout, read_records

    first = {"point": {"T": 1}, "summary": {"a": 1.5, "m": None, "l": [0.25, None]}, "version": "x"}
    second = {"point": {"T": 2}, "summary": {"a": 2.5, "m": {"x": 3.0}, "l": []}, "version": "x"}
    out = tmp_path / "r.csv"
    sink = CsvRows(out, None)
    sink.add(first)
    assert read_records(out, "csv").columns == ["point.T", "summary.a", "summary.m", "summary.l", "version"]
    sink.add(second)
    back = read_records(out, "csv")
    assert back.columns == ["point.T", "summary.a", "summary.m", "summary.m.x", "summary.l", "version"]
    assert back.records[0] == first
    assert back.records[1] == second
    sink.add({**first, "point": {"T": 3}})  # appended again under the wide header
    sink.close()
    assert [r["point"]["T"] for r in read_records(out, "csv").records] == [1, 2, 3]
    stdout = CsvStdout({1, 2}, lambda r: r["point"]["T"])
    stdout.add(first)
    assert capsys.readouterr().out == ""  # held until a record of every kind has come
    stdout.add(second)
    assert capsys.readouterr().out == out.read_text().rsplit("3,", 1)[0]
    stdout.add({**first, "point": {"T": 3}})  # then each row at once
    assert capsys.readouterr().out.startswith("3,")
    stdout.close()
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_a_rejected_sweep_leaves_the_output_file_alone(tmp_path: Path, suffix: str) -> None:
    """The memory budget and the gated cells' limits are checked for every point before the
    output is opened: an existing file keeps its records."""
    out = tmp_path / f"k{suffix}"
    out.write_text("keep me\n")
    for args in (
        ["--cell", "lstm", "--T", "10,1000000", "--hidden", "256"],
        ["--T", "1000", "--max-memory", "1K"],
        ["--cell", "identity,lstm", "--truncate", "10", "--T", "20"],
    ):
        result = invoke("sweep", *args, "--workers", "1", "--output", str(out))
        assert result.exit_code == 2 and result.stderr.startswith("bptt: error:"), args
        assert out.read_text() == "keep me\n", args
