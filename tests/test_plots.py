"""Plot files (issue 7): ``--plot FILE`` on analyze, spectrum and sweep, and ``bptt plot``.

Every command writes PNG, SVG and PDF files that open (PNG through matplotlib's own reader, at
the documented size, with real content), parse (SVG as XML) or start as they must (PDF); the
figures are pure functions of the records (re-plotting a saved run gives the same bytes); bad
input is caught before any computation; a failed write leaves nothing behind; a missing
matplotlib is one line naming the extra.
"""

from __future__ import annotations

import builtins
import json
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clitools import assert_bad_input, bptt

mpl_image = pytest.importorskip("matplotlib.image")

from bptt_cli.report import figures  # noqa: E402
from bptt_cli.report.plotting import load_results, record_kind  # noqa: E402

ANALYZE = ["analyze", "--T", "30", "--hidden", "6", "--trials", "3"]
SPECTRUM = ["spectrum", "--hidden", "30", "--trials", "2"]
SWEEP = ["sweep", "--radius", "0.8,1.2", "--T", "5,40", "--hidden", "4", "--trials", "2", "--workers", "1"]
SIZES = {"analyze": figures.ANALYZE_SIZE, "spectrum": figures.SPECTRUM_SIZE,
         "sweep": (figures.SWEEP_WIDTH[1], figures.SWEEP_ROW_HEIGHT + 0.6)}


def check_png(path: Path, size: tuple[float, float]) -> np.ndarray:
    """Opens, has the figure's size in pixels and non-trivial content."""
    image = mpl_image.imread(str(path))
    width, height = size
    assert image.shape[:2] == (round(height * figures.DPI), round(width * figures.DPI))
    rgb = image[..., :3]
    colours = np.unique((rgb * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 50  # lines, text, fills: not a single colour
    ink = np.mean(np.any(rgb < 0.9, axis=-1))
    assert 0.02 < ink < 0.7, ink  # something is drawn, and the page is not one blot
    return image


def check_file(path: Path, kind: str) -> None:
    assert path.exists()
    data = path.read_bytes()
    suffix = path.suffix
    if suffix == ".png":
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        check_png(path, SIZES[kind])
    elif suffix == ".svg":
        root = ET.fromstring(data)
        assert root.tag.endswith("svg")
        assert len(list(root.iter("{http://www.w3.org/2000/svg}path"))) > 50
    else:
        assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no temporary left


@pytest.mark.parametrize("suffix", [".png", ".svg", ".pdf"])
@pytest.mark.parametrize("args", [ANALYZE, SPECTRUM, SWEEP], ids=["analyze", "spectrum", "sweep"])
def test_each_command_writes_each_format(tmp_path: Path, args: list[str], suffix: str) -> None:
    target = tmp_path / f"figure{suffix}"
    result = bptt(*args, "--plot", target)
    assert result.exit_code == 0, result.stderr
    check_file(target, args[0])
    assert "\x1b" not in result.stdout  # the terminal output is unchanged, and plain


@pytest.mark.parametrize("args", [ANALYZE, SPECTRUM], ids=["analyze", "spectrum"])
def test_bptt_plot_redraws_a_saved_record_identically(tmp_path: Path, args: list[str]) -> None:
    """The figure is a pure function of the JSON: from the run or from its file, the same bytes
    (SVG and PDF carry no date)."""
    record = tmp_path / "r.json"
    for suffix in (".png", ".svg", ".pdf"):
        direct, again = tmp_path / f"direct{suffix}", tmp_path / f"again{suffix}"
        result = bptt(*args, "--format", "json", "--output", record, "--plot", direct)
        assert result.exit_code == 0, result.stderr
        assert bptt("plot", record, "--plot", again).exit_code == 0
        assert direct.read_bytes() == again.read_bytes(), suffix


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_bptt_plot_redraws_a_sweep_from_any_record_format(tmp_path: Path, suffix: str) -> None:
    records, direct, again = tmp_path / f"r{suffix}", tmp_path / "direct.png", tmp_path / "again.png"
    cells = ["--cell", "identity,tanh"] if suffix == ".jsonl" else []  # a third axis: once is enough
    result = bptt(*SWEEP, *cells, "--output", records, "--plot", direct)
    assert result.exit_code == 0, result.stderr
    result = bptt("plot", records, "--plot", again)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert direct.read_bytes() == again.read_bytes()
    kind, data = load_results(records)
    assert kind == "sweep" and len(data) == (8 if cells else 4)
    tall = figures.SWEEP_ROW_HEIGHT * (2 if cells else 1) + 0.6  # one row of panels per cell
    check_png(again, (figures.SWEEP_WIDTH[1], tall))


def test_plot_rows_and_cols_and_a_sweep_without_T(tmp_path: Path) -> None:
    records = tmp_path / "r.jsonl"
    assert bptt(*SWEEP, "--output", records).exit_code == 0
    swapped = tmp_path / "swapped.png"
    assert bptt("plot", records, "--plot", swapped, "--rows", "T", "--cols", "radius").exit_code == 0
    check_png(swapped, SIZES["sweep"])
    no_T = tmp_path / "no_T.png"
    result = bptt("sweep", "--radius", "0.5,1,1.5", "--hidden", "4", "--workers", "1", "--plot", no_T)
    assert result.exit_code == 0, result.stderr
    check_png(no_T, (figures.SWEEP_WIDTH[0], figures.SWEEP_ROW_HEIGHT + 0.6))  # the heat map alone


def test_gated_and_beyond_float64_records_plot(tmp_path: Path) -> None:
    """An LSTM record (no alignment, no parameter terms) and gradients near 10^1000, drawn as
    log10 numbers on a linear axis (never exponentiated)."""
    lstm = tmp_path / "lstm.png"
    assert bptt("analyze", "--cell", "lstm", "--T", "20", "--hidden", "4", "--plot", lstm).exit_code == 0
    check_png(lstm, (10.0, 4.5))
    out = bptt("analyze", "--radius", "1.5", "--T", "3000", "--hidden", "6", "--format", "json")
    record = json.loads(out.stdout)
    fig = figures.analysis_figure(record)
    top = fig.axes[0]
    _, high = top.get_ylim()
    assert high > 1000 and top.get_yscale() == "linear"
    assert "log_{10}" in top.get_ylabel()
    target = tmp_path / "huge.png"
    assert bptt("plot", _write(tmp_path / "huge.json", record), "--plot", target).exit_code == 0
    check_png(target, figures.ANALYZE_SIZE)


def _write(path: Path, record: Any) -> Path:
    path.write_text(json.dumps(record))
    return path


# ------------------------------------------------------------------------ the theory drawn
def test_quarter_circle_law_has_the_circular_laws_second_moment() -> None:
    """iid entries of variance r^2/h: the mean square singular value is ||W||_F^2 / h = r^2, and
    the largest tends to 2r; and the law against a large gaussian draw."""
    q = figures.quarter_circle_quantiles(4000, 1.5)
    assert np.all(np.diff(q) <= 0)
    assert np.mean(q**2) == pytest.approx(1.5**2, rel=2e-3)
    assert q[0] == pytest.approx(3.0, rel=1e-2) and q[-1] < 0.01
    rng = np.random.default_rng(1)
    W = rng.normal(0, 1.5 / math.sqrt(400), (400, 400))
    measured = np.linalg.svd(W, compute_uv=False)
    predicted = figures.quarter_circle_quantiles(400, 1.5)
    assert np.max(np.abs(measured - predicted)) < 0.1


def test_predicted_gain_is_the_chapters_for_the_identity_cell() -> None:
    record = {"point": {"T": 101}, "config": {"T": 101, "cell": "identity"},
              "summary": {"theory": {"rates": {"gelfand": math.log(0.9), "mean_field": -5.0}}}}
    assert figures._predicted_gain(record) == pytest.approx(100 * math.log10(0.9))
    record["config"]["cell"] = "tanh"
    assert figures._predicted_gain(record) == pytest.approx(100 * -5.0 / math.log(10))
    record["summary"]["theory"]["rates"]["mean_field"] = None
    assert math.isnan(figures._predicted_gain(record))
    # without the theory (--no-theory): ln of the summary's spectral radius, identity cell only
    plain = {"point": {"T": 101}, "config": {"T": 101, "cell": "identity"},
             "summary": {"spectral_radius": 0.9}}
    assert figures._predicted_gain(plain) == pytest.approx(100 * math.log10(0.9), rel=1e-15)
    plain["config"]["cell"] = "tanh"
    assert math.isnan(figures._predicted_gain(plain))


def test_phase_diagram_boundary_follows_the_verdicts() -> None:
    gains = np.array([[-5.0, -0.5], [0.2, 3.0]])
    verdict = figures._verdict_grid(gains, 1.0)
    assert verdict.tolist() == [[-1, 0], [0, 1]]
    assert figures._verdict_grid(np.array([[-np.inf, np.nan]]), 1.0)[0, 0] == -1


def test_record_kinds() -> None:
    assert record_kind({"records": []}) == "sweep"
    assert record_kind({"point": {}, "summary": {}}) == "sweep"
    assert record_kind({"trials": [{"grad_h_log10": []}]}) == "analyze"
    assert record_kind({"trials": [{"spectrum": {"singular_values": []}}]}) == "spectrum"
    with pytest.raises(Exception, match="not a record"):
        record_kind({"estimators": []})


# ----------------------------------------------------------------------------- bad input
def _no_computation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any computation fail loudly: the checks must come first."""
    import bptt_cli.analysis.spectrum
    import bptt_cli.run.experiment

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("computed before checking --plot")

    monkeypatch.setattr(bptt_cli.run.experiment, "resolve", boom)
    monkeypatch.setattr(bptt_cli.analysis.spectrum, "spectrum_report", boom)


@pytest.mark.parametrize("args", [ANALYZE, SPECTRUM, SWEEP], ids=["analyze", "spectrum", "sweep"])
def test_unknown_suffix_is_bad_input_before_computing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    _no_computation(monkeypatch)
    output = tmp_path / "r.json" if args[0] != "sweep" else tmp_path / "r.jsonl"
    line = assert_bad_input(bptt(*args, "--output", output, "--plot", tmp_path / "p.jpg"), "p.jpg", ".png")
    assert "unknown image format" in line
    assert list(tmp_path.iterdir()) == []
    assert_bad_input(bptt(*args, "--plot", tmp_path / "nowhere" / "p.png"), "does not exist")
    (tmp_path / "d.png").mkdir()
    assert_bad_input(bptt(*args, "--plot", tmp_path / "d.png"), "directory")


@pytest.mark.parametrize("args", [ANALYZE, SPECTRUM, SWEEP, ["plot", "r.json"]],
                         ids=["analyze", "spectrum", "sweep", "plot"])
def test_missing_matplotlib_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name: str, *a: Any, **k: Any) -> Any:
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    _no_computation(monkeypatch)
    monkeypatch.chdir(tmp_path)
    line = assert_bad_input(bptt(*args, "--plot", "p.png"), "matplotlib", "bptt-cli[plot]")
    assert line == (
        "bptt: error: --plot needs matplotlib, which is not installed: pip install 'bptt-cli[plot]'"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_leaves_no_image_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.figure import Figure

    target = tmp_path / "p.png"
    target.write_bytes(b"the previous image")

    def half_then_fail(self: Figure, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"\x89PNG half an image")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", half_then_fail)
    record = tmp_path / "r.json"
    line = assert_bad_input(bptt(*ANALYZE, "--output", record, "--plot", target), "p.png", "No space left")
    assert "cannot write" in line
    assert target.read_bytes() == b"the previous image"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]  # the image comes first: no record


def test_bptt_plot_bad_files(tmp_path: Path) -> None:
    assert_bad_input(bptt("plot", tmp_path / "none.json", "--plot", tmp_path / "p.png"), "none.json")
    garbage = tmp_path / "g.json"
    garbage.write_text("not json\n")
    assert_bad_input(bptt("plot", garbage, "--plot", tmp_path / "p.png"), "g.json")
    truncate = tmp_path / "t.json"
    assert bptt("truncate", "--T", "10", "--hidden", "4", "--K", "2", "--draws", "2",
                "--format", "json", "--output", truncate).exit_code == 0
    assert_bad_input(bptt("plot", truncate, "--plot", tmp_path / "p.png"), "not a record")
    assert_bad_input(bptt("plot", garbage), "--plot")  # the image is required
    assert not (tmp_path / "p.png").exists()


# ------------------------------------------------------------------- gated cells drawn
def _lines(ax: Any) -> dict[str, np.ndarray]:
    return {str(line.get_label()): np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()}


@pytest.mark.parametrize(("cell", "extra"), [("lstm", ["--forget-bias", "1"]), ("gru", [])])
def test_gated_prediction_is_the_top_lyapunov_line_that_meets_the_measurement(
    cell: str, extra: list[str]
) -> None:
    """The dashed 'prediction' used to be the median unit's gate product, which falls about twice
    as fast as the measurement (LSTM, forget bias 1, T = 300: -40 against -20). The drawn
    prediction is now the top Lyapunov exponent's line; the gate product stays, labelled as one
    typical unit's."""
    args = ("--cell", cell, *extra, "--T", "300", "--hidden", "32", "--trials", "3", "--format", "json")
    out = bptt("analyze", *args)
    record = json.loads(out.stdout)
    lines = _lines(figures.analysis_figure(record).axes[0])
    lyap = next(v for k, v in lines.items() if k.startswith("top Lyapunov exponent"))
    product = next(v for k, v in lines.items() if "gate product" in k)
    measured = next(v for k, v in lines.items() if k.startswith("measured"))
    assert any("median unit" in k and "not the rate" in k for k in lines)
    drop = measured[-1] - measured[0]
    assert abs(lyap[0] - measured[0]) < 0.15 * abs(drop), (lyap[0], measured[0])
    assert abs(product[0] - measured[0]) > 0.3 * abs(drop)  # why it is not the prediction
    # the line is anchored at the measured t = T and falls at lambda_1 / ln 10 per step
    tops = np.array([tr["lyapunov"]["exponents"][0] for tr in record["trials"]])
    g_T = np.array([tr["grad_h_log10"][-1] for tr in record["trials"]])
    lag = 300 - np.arange(1, 301)
    expected = np.median(g_T[:, None] + lag[None, :] * (tops / math.log(10))[:, None], axis=0)
    np.testing.assert_allclose(lyap[:-1], expected[:-1], rtol=0, atol=1e-12)


def _gated_sweep(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "g.jsonl"
    cells = ("--cell", "identity,tanh,gru,lstm", "--T", "5,50", "--hidden", "4", "--workers", "1")
    result = bptt("sweep", *cells, "--output", path)
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sweep_figure_of_cells_caption_axes_and_row_order(tmp_path: Path) -> None:
    records = _gated_sweep(tmp_path)
    fig = figures.sweep_figure(records, "cell", "T")
    caption = " ".join(t.get_text() for t in fig.texts).replace("\n", " ")
    # ensemble is not swept but resolves per cell: the caption used to say gaussian for every row
    assert "ensemble gaussian (identity, tanh), uniform (gru, lstm)" in caption
    assert "ensemble gaussian," not in caption and "none for lstm, gru" in caption
    heat, curves = fig.axes[0], next(ax for ax in fig.axes if "gain against T" in ax.get_title(loc="left"))
    # categorical rows top-down as in the table: identity, tanh, gru, lstm
    assert heat.yaxis_inverted()
    labels = [t.get_text() for t in heat.get_yticklabels()]
    assert labels == ["identity", "tanh", "gru", "lstm"]
    fig.canvas.draw()
    ticks = [t.get_text() for t in curves.get_yticklabels() if t.get_text()]
    assert ticks and all(re.fullmatch(r"[+-]\d+|0", t) for t in ticks), ticks  # +10, -1, 0: no 10^1
    legend = [t.get_text() for t in curves.get_legend().get_texts()]
    assert "stable: |log10 gain| <= tolerance 1" in legend


def test_numeric_rows_grow_upwards(tmp_path: Path) -> None:
    records = tmp_path / "r.jsonl"
    assert bptt(*SWEEP, "--output", records).exit_code == 0
    _, data = load_results(records)
    heat = figures.sweep_figure(data).axes[0]
    assert not heat.yaxis_inverted() and [t.get_text() for t in heat.get_yticklabels()] == ["0.8", "1.2"]


# ------------------------------------------------------------------- stacked networks drawn
def test_a_stack_draws_every_layer_and_direction(tmp_path: Path) -> None:
    """One line per layer and direction, each the median of its trials' ``grad_h_log10``; the top
    reverse layer under --loss last is exactly zero before T (only h_T reaches o_T) and says so;
    the caption names the stack."""
    args = ("--T", "20", "--hidden", "5", "--layers", "2", "--bidirectional", "--trials", "3")
    record = json.loads(bptt("analyze", *args, "--format", "json").stdout)
    fig = figures.analysis_figure(record)
    lines = _lines(fig.axes[0])
    assert len(lines) == 4
    for k, entry in enumerate(record["trials"][0]["layers"]):
        name_of = f"layer {entry['layer']} {entry['direction']}"
        label = next(name for name in lines if name.startswith(name_of))
        g = np.array([[np.nan if v is None else v for v in tr["layers"][k]["grad_h_log10"]]
                      for tr in record["trials"]])
        np.testing.assert_allclose(lines[label], np.median(g, axis=0), rtol=0, atol=1e-12)
    top_reverse = [name for name in lines if name.startswith("layer 1 reverse")]
    assert "exactly zero at 19 of 20 steps" in top_reverse[0]
    caption = fig.texts[-1].get_text()
    assert "layers 2, bidirectional" in caption, caption
    out = tmp_path / "s.png"
    assert bptt("analyze", *args, "--plot", out).exit_code == 0
    check_png(out, figures.ANALYZE_SIZE)
