"""Pictures in the terminal (issue 7): the gradient chart of ``bptt analyze``, the heat table's
colour scale, the ASCII fallback and the absence of escape codes off a terminal; and the
per-step parameter terms added to analyze's JSON for the plots.

The chart's rows are checked on a case whose curve is known in closed form: the identity cell
with a diagonal ``W_hh = 0.5 diag(+-1)``, where ``||dL/dh_t|| = 0.5^(T-t) ||dL/dh_T||`` exactly.
"""

from __future__ import annotations

import io
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import reference as ref
from clitools import bptt, bptt_json, installed_bptt, plain_env, run_in_pty
from hypothesis import example, given
from hypothesis import strategies as st
from rich.console import Console

from bptt_cli.analysis.analyze import analyze
from bptt_cli.core.network import Spec
from bptt_cli.io.weights import given_from_files
from bptt_cli.report.charts import gradient_chart, rho_prediction
from bptt_cli.report.heatmap import colour_bar, decade, render_sweep
from bptt_cli.report.terminal import fancy
from bptt_cli.report.termplot import Canvas, log_ticks, nice_ticks, pow10_label

BRAILLE = re.compile("[\u2800-\u28ff]")
ESCAPE = "\x1b"


class AsciiFile(io.StringIO):
    encoding = "ascii"  # type: ignore[assignment]


def plain_console(width: int = 80) -> Console:
    return Console(file=io.StringIO(), width=width, color_system=None)


def colour_console(width: int = 80) -> Console:
    """A colour terminal (the tests' environment says TERM=dumb: the callers set TERM)."""
    return Console(file=io.StringIO(), width=width, force_terminal=True, color_system="truecolor")


def _diagonal_case(tmp_path: Path, T: int = 40) -> tuple[Path, float]:
    """A W_hh file 0.5 diag(+1, -1, +1, -1) and the exact log10 ||dL/dh_T|| of that network."""
    path = tmp_path / "diag.npy"
    np.save(path, 0.5 * np.diag([1.0, -1.0, 1.0, -1.0]))
    given, _ = given_from_files(path, None, None)
    an = analyze(Spec(T=T, hidden=4), given)
    net = an.net
    p = {"W_hh": net.W_hh[0], "W_hx": net.W_hx[0], "W_qh": net.W_qh[0], "b_h": net.b_h[0], "b_q": net.b_q[0]}
    r = ref.bptt(p, net.x[0], net.y[0], "identity", "last")
    return path, math.log10(float(np.linalg.norm(r.dL_dh[-1])))


# ------------------------------------------------------------------- the per-step terms
@pytest.mark.parametrize(("cell", "loss"), [("identity", "last"), ("tanh", "mean"), ("relu", "last"),
                                            ("sigmoid", "mean")])
def test_param_terms_match_the_textbook_bptt(cell: str, loss: str) -> None:
    """Each parameter gradient's step-t term, against plain float64 BPTT written out per step."""
    spec = Spec(T=25, hidden=5, inputs_dim=3, outputs_dim=2, cell=cell, loss=loss, trials=2, gain=1.3,
                bias=0.3)
    an = analyze(spec)
    assert an.param_terms_log10 is not None
    net = an.net
    for i in range(2):
        p = {name: getattr(net, name)[i] for name in ("W_hh", "W_hx", "W_qh", "b_h", "b_q")}
        r = ref.bptt(p, net.x[i], net.y[i], cell, loss)
        x = net.x[i]
        expected = {
            "W_hh": [np.linalg.norm(np.outer(r.dL_da[t], r.h[t])) for t in range(25)],
            "W_hx": [np.linalg.norm(np.outer(r.dL_da[t], x[t])) for t in range(25)],
            "W_qh": [np.linalg.norm(np.outer(r.dL_do[t], r.h[t + 1])) for t in range(25)],
            "b_h": [np.linalg.norm(r.dL_da[t]) for t in range(25)],
            "b_q": [np.linalg.norm(r.dL_do[t]) for t in range(25)],
        }
        for name, norms in expected.items():
            got = an.param_terms_log10[name][i]
            with np.errstate(divide="ignore"):
                want = np.log10(np.array(norms))
            assert np.array_equal(np.isneginf(got), np.isneginf(want)), (name, got, want)
            finite = np.isfinite(want)
            np.testing.assert_allclose(got[finite], want[finite], rtol=0, atol=1e-11, err_msg=name)
        total = sum(np.outer(r.dL_da[t], r.h[t]) for t in range(25))
        assert math.log10(np.linalg.norm(total)) == pytest.approx(an.grad_params_log10["W_hh"][i], abs=1e-11)


def test_param_terms_beyond_float64_and_checkpointed() -> None:
    """Identity cell: dL/da_t = dL/dh_t, so the b_h terms ARE log10 ||dL/dh_t||, here up to about
    10^1000; the checkpointed pass gives the same numbers bit for bit."""
    spec = Spec(T=3000, hidden=6, radius=1.5)
    stored = analyze(spec, checkpoint="none")
    ck = analyze(spec, checkpoint="256")
    assert stored.param_terms_log10 is not None and ck.param_terms_log10 is not None
    np.testing.assert_array_equal(stored.param_terms_log10["b_h"], stored.grad_h_log10)
    assert stored.grad_h_log10[0, 0] > 500  # far outside float64
    assert np.all(np.isfinite(stored.param_terms_log10["W_hh"][:, 1:]))
    assert np.all(np.isneginf(stored.param_terms_log10["W_hh"][:, 0]))  # h_0 = 0
    for name in stored.param_terms_log10:
        np.testing.assert_array_equal(stored.param_terms_log10[name], ck.param_terms_log10[name])


def test_json_key_grad_param_terms() -> None:
    rec = bptt_json("--T", "12", "--hidden", "4", "--trials", "2")
    for tr in rec["trials"]:
        terms = tr["grad_param_terms_log10"]
        assert set(terms) == {"W_hh", "W_hx", "W_qh", "b_h", "b_q"}
        assert all(len(v) == 12 for v in terms.values())
        assert terms["W_hh"][0] is None  # h_0 = 0: an exact zero
        assert terms["W_qh"][:-1] == [None] * 11  # the last loss has one output term, at t = T
        assert terms["W_qh"][-1] == pytest.approx(tr["grad_params_log10"]["W_qh"], abs=1e-13)
    gated = bptt_json("--T", "5", "--hidden", "3", "--cell", "gru")
    assert "grad_param_terms_log10" not in gated["trials"][0]


# ------------------------------------------------------------------- the terminal chart
def test_chart_rows_follow_the_exact_line_of_a_diagonal_W_hh(tmp_path: Path) -> None:
    T = 40
    path, top = _diagonal_case(tmp_path, T)
    rec = bptt_json("--weights", path, "--T", T)
    g = np.array([rec["trials"][0]["grad_h_log10"]], dtype=float)
    exact = top + (T - np.arange(1, T + 1)) * math.log10(0.5)
    np.testing.assert_allclose(g[0], exact, atol=1e-12)  # the measured curve is the line

    console = Console(file=AsciiFile(), width=80, color_system=None)
    width = 60
    text = gradient_chart(g, console, rho_prediction(g, 0.5), "rho", width=width, height=10).plain
    lines = text.splitlines()
    assert lines[0].startswith("||dL/dh_t|| against t")
    height = sum(1 for line in lines if re.match(r"^ *(1e[+-]\d+)? \|", line))
    assert 9 <= height <= 13
    rows = [line.split("|", 1)[1] for line in lines[1 : 1 + height]]
    assert all(len(r) == width for r in rows)
    y0, y1, _ = log_ticks(float(exact.min()), float(exact.max()))
    assert y0 <= exact.min() and exact.max() <= y1

    def row_of(y: float) -> int:
        return min(int((y1 - y) / (y1 - y0) * 4 * height), 4 * height - 1) // 4

    for col in range(width):
        hit = {r for r in range(height) if rows[r][col] == "o"}
        xa = 1 + col * (T - 1) / width
        xb = 1 + (col + 1) * (T - 1) / width
        line_at = lambda x: top + (T - x) * math.log10(0.5)  # noqa: E731
        span = set(range(row_of(line_at(xa)), row_of(line_at(min(xb, T))) - 1, -1))
        assert hit and hit <= span, (col, hit, span)
        assert row_of(line_at((xa + xb) / 2)) in hit
    # the y labels are powers of ten at the rows of their values
    for line in lines[1 : 1 + height]:
        label = line.split("|", 1)[0].strip()
        if label:
            value = math.log10(float(label))
            assert label == pow10_label(value)
            r = lines[1 : 1 + height].index(line)
            assert r == row_of(value)  # on the row where the curve would draw that value
    assert lines[-1].startswith("oo ||dL/dh_t||") and ".. rho" in lines[-1]


def test_chart_band_and_braille_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    rng = np.random.default_rng(0)
    T = 50
    g = -0.1 * np.arange(T)[::-1][None, :] + rng.normal(0, 0.3, (5, T))
    console = colour_console()
    text = gradient_chart(g, console, rho_prediction(g, 10**-0.1), "rho")
    assert fancy(console)
    plain = text.plain
    assert BRAILLE.search(plain) and "│" in plain
    assert "quartiles over 5 trials" in plain
    assert chr(0x2800 + 0x95) in plain  # the band's shading shows where no line is
    assert max(len(line) for line in plain.splitlines()) <= 80


def test_band_is_hidden_under_a_line_and_shown_elsewhere() -> None:
    canvas = Canvas(4, 2, 0.0, 4.0, 0.0, 8.0)
    canvas.band(np.array([0.0, 4.0]), np.zeros(2), np.full(2, 8.0), "blue", ":")
    canvas.curve(np.array([0.0, 4.0]), np.array([7.5, 7.5]), "red", "o")
    top, bottom = canvas.lines(unicode=False)
    assert top.plain == "oooo" and bottom.plain == "::::"
    top_u, bottom_u = canvas.lines(unicode=True)
    assert bottom_u.plain == chr(0x2800 + 0x95) * 4  # the shading pattern
    assert top_u.plain == chr(0x2800 + 0x09) * 4  # only the line's dots (top dot row of both columns)


@given(st.floats(-1e4, 1e4), st.floats(1e-3, 1e4))
@example(lo=-5e-324, span=5.0)  # lo / step rounded to -0.0: the range started above lo
def test_nice_ticks_cover_the_range_with_round_steps(lo: float, span: float) -> None:
    hi = lo + span
    start, stop, step = nice_ticks(lo, hi)
    assert start <= lo + 1e-9 * abs(lo) and stop >= hi - 1e-9 * abs(hi)
    assert round((stop - start) / step) <= 5
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(math.isclose(mantissa, m) for m in (1.0, 2.0, 5.0))


def test_pow10_labels_beyond_float64() -> None:
    assert pow10_label(-500.0) == "1e-500"
    assert pow10_label(1057.0) == "1e+1057"
    assert pow10_label(0.5) == "3.2e+0"


# ------------------------------------------------------- analyze and spectrum on the CLI
def test_analyze_prints_the_chart_in_ascii_off_a_terminal() -> None:
    result = bptt("analyze", "--T", "60", "--hidden", "8", "--trials", "3")
    assert result.exit_code == 0
    out = result.stdout
    assert ESCAPE not in out and not BRAILLE.search(out)
    assert "||dL/dh_t|| against t (log scale)" in out
    assert "oo median ||dL/dh_t||" in out and ":: quartiles over 3 trials" in out
    chart = out.split("against t (log scale)")[1].split("Parameter gradients")[0]
    assert "│" not in chart  # no box drawing in the picture


COMMANDS = (
    ["analyze", "--T", "30", "--hidden", "6"],
    ["spectrum", "--hidden", "20"],
    ["sweep", "--radius", "0.5,1.5", "--T", "5,50", "--hidden", "4", "--workers", "1"],
    ["truncate", "--T", "20", "--hidden", "4", "--K", "2,5", "--keep-prob", "0.5", "--draws", "4"],
)


@pytest.mark.parametrize("env", [{"NO_COLOR": "1"}, {"TERM": "dumb"}, {}])
def test_plain_environments_have_no_escape_codes_even_when_forced(env: dict[str, str]) -> None:
    """FORCE_COLOR makes rich see a terminal; NO_COLOR or TERM=dumb still win: no escape codes,
    no braille and no box drawing (the tables framed with rich's box.ASCII), pure ASCII."""
    forced = {"FORCE_COLOR": "1", "TERM": "xterm-256color", **env}
    for args in COMMANDS:
        out = bptt(*args, env=forced).stdout
        if env:
            assert out.isascii(), (args, {c for c in out if not c.isascii()})
            assert "+-----" in out and "|-----" in out, args  # the ASCII tables' frame
        else:
            assert ESCAPE in out and "┏━━" in out and "│" in out, args
            if args[0] == "sweep":
                assert "colour: log10 gain" in out
            elif args[0] != "truncate":
                assert BRAILLE.search(out), args


@pytest.mark.parametrize("args", COMMANDS, ids=[a[0] for a in COMMANDS])
def test_piped_and_written_tables_are_ascii(args: list[str], tmp_path: Path) -> None:
    """Not a terminal (a pipe, ``| cat``, and ``--output FILE.txt``): plain ASCII tables."""
    out = bptt(*args).stdout
    assert out.isascii() and "+-----" in out and "|-----" in out, out
    path = tmp_path / "out.txt"
    assert bptt(*args, "--output", path).exit_code == 0
    text = path.read_text(encoding="utf-8")
    assert text.isascii() and "+-----" in text, text


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_real_terminal_gets_braille_and_colour() -> None:
    def run(env: dict[str, str]) -> str:
        return run_in_pty([installed_bptt(), "analyze", "--T", "30", "--hidden", "4"], env).decode("utf-8")

    env = plain_env(TERM="xterm-256color", COLUMNS="100", PYTHONIOENCODING="utf-8")
    out = run(env)
    assert ESCAPE in out and BRAILLE.search(out) and "┏━━" in out
    for plain in ({"NO_COLOR": "1"}, {"TERM": "dumb"}):
        out = run(env | plain)
        assert ESCAPE not in out and out.isascii() and "against t (log scale)" in out
        assert "+-----" in out and "|-----" in out  # the ASCII tables' frame


# ------------------------------------------------------------------ the heat table's scale
def test_decades_of_the_colour_scale() -> None:
    assert decade(0.5, 1.0) == 0 and decade(-1.0, 1.0) == 0
    assert decade(-2.9, 1.0) == -1 and decade(10.0, 1.0) == 1 and decade(10.01, 1.0) == 2
    assert decade(-3010.6, 1.0) == -4 and decade(1e9, 1.0) == 6
    assert decade(-math.inf, 1.0) == -6 and decade(math.nan, 1.0) == 0
    assert decade(0.3, 0.0) == 1  # tolerance 0: decades of 1
    bar = colour_bar(-2, 3, 0.5).plain
    assert bar == "colour: log10 gain    -5    -0.5    +0.5    +5    +50   "


def _records(gains: list[float | None], tolerance: float = 1.0) -> list[dict]:
    out = []
    for r, gain in zip((0.5, 1.0, 1.5), gains, strict=True):
        verdict = "undefined" if gain is None else (
            "vanishing" if gain < -tolerance else "exploding" if gain > tolerance else "stable")
        out.append({"point": {"radius": r}, "summary": {"gain_log10": gain, "verdict": verdict,
                                                         "tolerance": tolerance}})
    return out


def test_heat_table_shading_only_on_a_colour_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    from bptt_cli.io.points import Axis
    from bptt_cli.report.heatmap import layout

    axes = [Axis("radius", "--radius", (0.5, 1.0, 1.5))]
    records = _records([-30.4, -0.2, 17.3])
    console = colour_console()
    render_sweep(records, axes, layout(axes), console)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "colour: log10 gain" in out and "48;2;" in out  # background colours
    plain = plain_console()
    render_sweep(records, axes, layout(axes), plain)
    text = plain.file.getvalue()  # type: ignore[attr-defined]
    assert ESCAPE not in text and "colour:" not in text
    assert "-30.4 v" in text and "+17.3 ^" in text


SGR = re.compile(r"\x1b\[([0-9;]*)m")


def _background_rgb(params: str) -> tuple[int, int, int] | None:
    """The background colour an SGR sequence's parameters set, as the terminal shows it (rich's
    default terminal theme for the 16 basic colours)."""
    from rich.color import Color

    codes = [int(c) for c in params.split(";") if c]
    rgb = None
    i = 0
    while i < len(codes):
        c = codes[i]
        if c == 48 and codes[i + 1] == 2:
            rgb, i = tuple(codes[i + 2 : i + 5]), i + 5
            continue
        if c == 48 and codes[i + 1] == 5:
            t = Color.from_ansi(codes[i + 2]).get_truecolor()
            rgb, i = (t.red, t.green, t.blue), i + 3
            continue
        if 40 <= c <= 47 or 100 <= c <= 107:
            t = Color.from_ansi(c - 40 if c < 100 else c - 100 + 8).get_truecolor()
            rgb = (t.red, t.green, t.blue)
        i += 1
    return rgb  # type: ignore[return-value]


def _cell_backgrounds(out: str) -> dict[str, tuple[int, int, int] | None]:
    """Each heat-table cell's text (``-30.4 v``) and the background it is drawn on."""
    found = {}
    for m in re.finditer(r"((?:\x1b\[[0-9;]*m)+) *([-+]\d+\.\d [v=^])", out):
        params = ";".join(SGR.findall(m.group(1)))
        found[m.group(2)] = _background_rgb(params)
    return found


DOMINANT = {"v": 2, "=": 1, "^": 0}  # vanishing blue, stable green, exploding red


@pytest.mark.parametrize("system", ["truecolor", "256", "standard", "windows"])
def test_heat_table_shades_keep_their_hue_in_every_colour_system(
    system: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On an 8/16-colour terminal (TERM=xterm: rich's 'standard') the light shades used to come
    out white for every verdict; each colour system keeps vanishing blue, stable green and
    exploding red, in the cells and in the colour bar."""
    monkeypatch.setenv("TERM", "xterm")
    from bptt_cli.io.points import Axis
    from bptt_cli.report.heatmap import layout

    gains = [-3000.2, -30.4, -2.5, -0.2, 0.7, 3.1, 17.3, 4000.5]
    axes = [Axis("radius", "--radius", tuple(0.5 + 0.1 * i for i in range(len(gains))))]
    verdicts = ["vanishing" if g < -1 else "exploding" if g > 1 else "stable" for g in gains]
    records = [{"point": {"radius": r}, "summary": {"gain_log10": g, "tolerance": 1.0, "verdict": v}}
               for r, g, v in zip(axes[0].values, gains, verdicts, strict=True)]
    from rich.style import Style

    # rich caches a Style's escape codes in the (lru-cached) Style object, whatever the console's
    # colour system: start from fresh styles, as a new process (the command line) does
    for cached in (Style.parse, Style._add, Style.clear_meta_and_links):
        cached.cache_clear()  # type: ignore[attr-defined]
    console = Console(file=io.StringIO(), width=80, force_terminal=True, color_system=system)  # type: ignore[arg-type]
    render_sweep(records, axes, layout(axes), console)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    cells = _cell_backgrounds(out)
    assert len(cells) == len(gains), cells
    for text, rgb in cells.items():
        assert rgb is not None, text
        channel = DOMINANT[text[-1]]
        assert all(rgb[channel] > rgb[c] for c in range(3) if c != channel), (system, text, rgb)
    bar = out.splitlines()[-1]
    assert "colour: log10 gain" in bar
    swatches = [_background_rgb(p) for p in SGR.findall(bar)]
    hues = [max(range(3), key=lambda c: rgb[c]) for rgb in swatches if rgb is not None]
    assert hues[0] == 2 and hues[-1] == 0 and 1 in hues, (system, swatches)  # blue .. green .. red


def test_cli_sweep_text_output_has_the_legend(tmp_path: Path) -> None:
    out = tmp_path / "t.txt"
    result = bptt("sweep", "--radius", "0.5,1.5", "--T", "5,50", "--hidden", "4", "--workers", "1",
                  "--output", out)
    assert result.exit_code == 0, result.stderr
    text = out.read_text()
    assert "v vanishing" in text and ESCAPE not in text
    assert json.dumps(text)  # plain text
