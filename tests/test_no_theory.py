"""``--theory/--no-theory``: the theory left out of ``bptt analyze``, of sweep points and of the API.

Without the theory every other key of the record is the default run's, number for number (the
gradients, the spectrum, the estimators); only the theory's keys are absent and ``config`` says
``theory: false`` (and ``lyapunov: 0``, none computed). Options that need the theory are refused
in one line; sweep files written before the option resume as files of theory runs.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from clitools import assert_bad_input, bptt, bptt_json, stable
from sweep_helpers import comparable, invoke, jsonl

import bptt_cli
from bptt_cli.io.points import point_key
from bptt_cli.io.sweep_records import read_records

# the theory's keys: of trials[i], of trials[i].layers[j] and of summary
TRIAL_THEORY = ("rates", "mean_field", "lyapunov", "horizon", "effective_memory", "nonnormality", "alignment")
LAYER_THEORY = ("rates", "mean_field", "lyapunov", "horizon")

SMALL = ("--T", "25", "--hidden", "5", "--trials", "2")
NETWORKS = {
    "tanh-mean": (*SMALL, "--cell", "tanh", "--loss", "mean"),
    "identity-estimators": (*SMALL, "--truncate", "4", "--clip", "1", "--eigenvalues", "2"),
    "stack": (*SMALL, "--cell", "relu", "--layers", "2", "--bidirectional", "--criterion", "cross-entropy"),
    "lstm": (*SMALL, "--cell", "lstm", "--loss", "mean"),
    "gru-stack": (*SMALL, "--cell", "gru", "--layers", "2", "--h0", "random"),
}


def without_theory(record: dict[str, Any]) -> dict[str, Any]:
    """A default run's record with what ``--no-theory`` leaves out removed and its config as
    ``--no-theory`` writes it."""
    out = json.loads(json.dumps(record))
    for trial in out["trials"]:
        for key in TRIAL_THEORY:
            del trial[key]
        for layer in trial["layers"]:
            for key in LAYER_THEORY:
                del layer[key]
    del out["summary"]["theory"]
    out["config"].update(theory=False, lyapunov=0)
    return out


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_no_theory_leaves_out_the_theory_keys_and_nothing_else(name: str) -> None:
    args = NETWORKS[name]
    full = stable(bptt_json(*args))
    bare = stable(bptt_json(*args, "--no-theory"))
    assert full["config"]["theory"] is True and bare["config"]["theory"] is False
    assert bare["config"]["lyapunov"] == 0
    for trial in bare["trials"]:
        assert not set(TRIAL_THEORY) & set(trial)
        for layer in trial["layers"]:
            assert not set(LAYER_THEORY) & set(layer)
    assert "theory" not in bare["summary"]
    # every shared key, number for number (the text of each number is its repr: equal floats
    # are equal text), in the same order
    assert json.dumps(bare) == json.dumps(without_theory(full))
    assert bptt_json(*args, "--theory")["config"]["theory"] is True  # the flag's positive spelling


@pytest.mark.parametrize("name", ["tanh-mean", "stack", "lstm"])
def test_csv_and_tables_without_the_theory(name: str) -> None:
    args = NETWORKS[name]
    default_csv = bptt("analyze", *args, "--format", "csv")
    bare_csv = bptt("analyze", *args, "--format", "csv", "--no-theory")
    assert default_csv.exit_code == bare_csv.exit_code == 0
    assert bare_csv.stdout == default_csv.stdout  # no theory column in the CSV
    layer = ("--layer", "1:reverse") if "--bidirectional" in args else ()
    full = bptt("analyze", *args, *layer)
    bare = bptt("analyze", *args, *layer, "--no-theory")
    assert full.exit_code == bare.exit_code == 0, bare.stderr
    assert "Theory beside measurement" in full.stdout and "not computed" not in full.stdout
    assert "Theory beside measurement" not in bare.stdout
    assert "theory: not computed (--no-theory)" in bare.stdout
    # the verdict is the same; so are the tables before the theory's, but for a gated cell's chart,
    # whose line is the top Lyapunov exponent's with the theory and the gate product's without
    assert bare.stdout[bare.stdout.rindex("\nverdict: "):] == full.stdout[full.stdout.rindex("\nverdict: "):]
    if "lstm" in args:
        assert "median unit's" in bare.stdout and "Lyapunov lambda_1" in full.stdout
    else:
        before = full.stdout.split("Theory beside measurement")[0]
        assert bare.stdout.split("theory: not computed")[0] == before


def test_fail_on_reads_the_verdict_alone() -> None:
    result = bptt("analyze", "--T", "60", "--hidden", "6", "--radius", "0.5", "--no-theory",
                  "--fail-on", "vanishing", "--format", "json")
    assert result.exit_code == 1
    assert "matches --fail-on vanishing" in result.stderr
    assert json.loads(result.stdout)["config"]["theory"] is False


def test_options_that_need_the_theory_are_refused(tmp_path: Path) -> None:
    result = bptt("analyze", *SMALL, "--no-theory", "--lyapunov", "2")
    line = assert_bad_input(result, "--lyapunov 2", "--no-theory")
    assert "part of the theory" in line
    assert bptt_json(*SMALL, "--no-theory", "--lyapunov", "0")["config"]["lyapunov"] == 0
    config = tmp_path / "c.toml"
    config.write_text("theory = false\nlyapunov = 3\n")
    assert_bad_input(bptt("analyze", *SMALL, "--config", str(config)), "--lyapunov 3", "--no-theory")
    # a sweep checks every point before anything runs: nothing is written
    out = tmp_path / "s.jsonl"
    assert_bad_input(
        invoke("sweep", "--T", "5,6", "--hidden", "3", "--theory", "false", "--lyapunov", "1",
               "--output", str(out)),
        "--lyapunov 1", "--no-theory",
    )
    assert not out.exists()
    assert_bad_input(invoke("sweep", "--T", "5", "--theory", "maybe"), "--theory")
    bad = tmp_path / "bad.toml"
    bad.write_text('theory = "no"\n')  # a sweep would read this string as an axis (no: false)
    assert_bad_input(bptt("analyze", "--config", str(bad)), "theory must be true or false")
    bad.write_text("theory = 0\n")
    assert_bad_input(invoke("sweep", "--config", str(bad)), "theory must be true or false")
    # advise needs the theory itself (the Lyapunov exponent, the mean field): it has no such option
    assert bptt("advise", "--T", "10", "--hidden", "3", "--no-theory").exit_code == 2
    with pytest.raises(TypeError, match="theory"):
        bptt_cli.advise(T=10, hidden=3, theory=False)  # type: ignore[call-arg]
    with pytest.raises(bptt_cli.BadInput, match="--lyapunov 2 conflicts with --no-theory"):
        bptt_cli.analyze(T=10, hidden=3, theory=False, lyapunov=2)


def test_advise_json_has_no_theory_key() -> None:
    result = bptt("advise", "--T", "12", "--hidden", "4", "--cell", "tanh", "--draws", "4",
                  "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert "theory" not in json.loads(result.stdout)["config"]


API_KEYWORDS = {
    "tanh-mean": {"cell": "tanh", "loss": "mean"},
    "stack": {"cell": "relu", "layers": 2, "bidirectional": True, "criterion": "cross-entropy"},
    "lstm": {"cell": "lstm", "loss": "mean"},
}


@pytest.mark.parametrize("name", sorted(API_KEYWORDS))
def test_the_api_equals_the_cli(name: str) -> None:
    result = bptt_cli.analyze(T=25, hidden=5, trials=2, **API_KEYWORDS[name], theory=False)
    assert stable(result.to_dict()) == stable(bptt_json(*NETWORKS[name], "--no-theory"))
    assert result.analysis.theory is None and result.config.theory is False
    assert "theory: not computed" in result.text()
    assert bptt_cli.analyze(T=25, hidden=5, trials=2, **API_KEYWORDS[name]).config.theory is True


# --- sweeps ---------------------------------------------------------------------------------------

GRID = ("--radius", "0.8,1.2", "--T", "5,30", "--cell", "identity,tanh", "--hidden", "4", "--trials", "2",
        "--workers", "1")


def sweep_records(*args: str) -> list[dict[str, Any]]:
    result = invoke("sweep", *GRID, *args, "--format", "jsonl")
    assert result.exit_code == 0, result.stderr
    return jsonl(result.stdout)


def test_sweep_without_the_theory_from_the_command_line_and_from_a_config(tmp_path: Path) -> None:
    full = comparable(sweep_records())
    bare = comparable(sweep_records("--theory", "false"))
    config = tmp_path / "c.toml"
    config.write_text("theory = false\n")
    assert comparable(sweep_records("--config", str(config))) == bare
    assert len(bare) == len(full) == 8
    for rec in full.values():
        assert rec["point"]["theory"] is True and rec["config"]["theory"] is True
        assert "theory" in rec["summary"]
        twin = bare[point_key({**rec["point"], "theory": False})]
        assert twin["point"]["theory"] is False and twin["config"]["theory"] is False
        assert twin["config"]["lyapunov"] == 0
        assert "theory" not in twin["summary"]
        assert twin["summary"] == {k: v for k, v in rec["summary"].items() if k != "theory"}
        same = {k: v for k, v in rec["config"].items() if k not in ("theory", "lyapunov")}
        assert {k: v for k, v in twin["config"].items() if k not in ("theory", "lyapunov")} == same
    # the API: the same records
    api = bptt_cli.sweep(radius=[0.8, 1.2], T="5,30", cell="identity,tanh", hidden=4, trials=2, workers=1,
                         theory=False)
    assert comparable(api.records) == bare
    # the heat tables read the gains alone
    table = invoke("sweep", *GRID, "--theory", "false")
    assert table.exit_code == 0 and "radius" in table.stdout


def test_a_sweep_over_both_writes_one_csv_header(tmp_path: Path) -> None:
    result = invoke("sweep", "--T", "5,12", "--hidden", "3", "--theory", "false,true", "--workers", "1",
                    "--format", "csv")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    header = rows[0]
    assert "summary.theory.rates.gelfand" in header and "point.theory" in header
    assert {len(r) for r in rows} == {len(header)}  # the header is the union: theory rows and bare ones
    gelfand = header.index("summary.theory.rates.gelfand")
    theory = {r[header.index("point.theory")]: r[gelfand] for r in rows[1:]}
    assert theory["false"] == "" and theory["true"] != ""
    out = tmp_path / "s.csv"
    assert invoke("sweep", "--T", "5,12", "--hidden", "3", "--theory", "false,true", "--workers", "1",
                  "--output", str(out)).exit_code == 0
    assert len(read_records(out, "csv").records) == 4


def _drop_theory(path: Path) -> None:
    """Rewrite a sweep file as one written before the option: no ``theory`` in ``point`` or ``config``."""
    if path.suffix == ".jsonl":
        records = [json.loads(line) for line in path.read_text().splitlines()]
        for r in records:
            del r["point"]["theory"], r["config"]["theory"]
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
        names = [n for n in rows[0] if n not in ("point.theory", "config.theory")]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, names, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        path.write_text(buf.getvalue())


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_record_without_the_theory_key_resumes_as_a_theory_run(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"old{suffix}"
    small = ("--T", "5,9", "--hidden", "3", "--workers", "1")
    assert invoke("sweep", *small, "--output", str(out)).exit_code == 0
    _drop_theory(out)
    assert "theory" not in read_records(out, suffix[1:]).records[0]["point"]
    before = out.read_bytes()
    # the same sweep: every point is there already
    result = invoke("sweep", *small, "--output", str(out), "--resume")
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes() == before
    # and so it is for the explicit --theory true; a longer grid runs only the new point
    result = invoke("sweep", "--T", "5,9,13", "--hidden", "3", "--workers", "1", "--theory", "true",
                    "--output", str(out), "--resume")
    assert result.exit_code == 0, result.stderr
    records = read_records(out, suffix[1:]).records
    assert sorted(r["point"]["T"] for r in records) == [5, 9, 13]
    # a sweep without the theory is another sweep
    line = assert_bad_input(
        invoke("sweep", *small, "--theory", "false", "--output", str(out), "--resume"),
        "cannot resume", "--theory true", "false",
    )
    assert "use another --output" in line


def test_plots_of_records_without_the_theory(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    for cell in ("tanh", "lstm"):
        record = tmp_path / f"{cell}.json"
        result = bptt("analyze", *SMALL, "--cell", cell, "--no-theory", "--output", str(record),
                      "--plot", str(tmp_path / f"{cell}.png"))
        assert result.exit_code == 0, result.stderr
        again = bptt("plot", str(record), "--plot", str(tmp_path / f"{cell}-again.png"))
        assert again.exit_code == 0, again.stderr
    records = tmp_path / "s.jsonl"
    result = invoke("sweep", "--radius", "0.8,1.2", "--T", "5,30", "--hidden", "3", "--workers", "1",
                    "--theory", "false", "--output", str(records), "--plot", str(tmp_path / "s.png"))
    assert result.exit_code == 0, result.stderr
    assert bptt("plot", str(records), "--plot", str(tmp_path / "s2.png")).exit_code == 0
    assert (tmp_path / "s.png").stat().st_size > 0 and (tmp_path / "s2.png").stat().st_size > 0


def test_csv_rows_of_older_versions_resume_after_the_header_widened(tmp_path: Path) -> None:
    """Rows written before 0.3's layers, bidirectional and h0 (and before theory): once a resumed
    sweep rewrites the file with the wider header their cells are empty, and read back as the
    values those versions meant, so the file resumes again."""
    out = tmp_path / "old.csv"
    small = ("--T", "5,9", "--hidden", "3", "--workers", "1")
    assert invoke("sweep", *small, "--output", str(out)).exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    old = ("layers", "bidirectional", "h0", "theory")
    names = [n for n in rows[0] if n.split(".")[-1] not in old]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, names, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    out.write_text(buf.getvalue())
    longer = ("--T", "5,9,13", "--hidden", "3", "--workers", "1")
    assert invoke("sweep", *longer, "--output", str(out), "--resume").exit_code == 0
    widened = list(csv.DictReader(io.StringIO(out.read_text())))
    assert widened[0]["config.layers"] == "" and widened[-1]["config.layers"] == "1"  # empty cells now
    before = out.read_bytes()
    result = invoke("sweep", *longer, "--output", str(out), "--resume")
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes() == before
