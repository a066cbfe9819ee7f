"""The Python API (``import bptt_cli as bptt``) against the CLI: the same numbers (``to_dict()`` is the
CLI's JSON), the same checks and messages, typed results, arrays and modules in memory."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clitools import bptt, stable

import bptt_cli as api
from bptt_cli.errors import BadInput


def cli_json(*args: object) -> dict[str, Any]:
    result = bptt(*args, "--format", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def flags(**kw: Any) -> list[str]:
    """``T=5, inputs_dim=3`` -> ``--T 5 --inputs-dim 3``."""
    out: list[str] = []
    for name, value in kw.items():
        out += ["--" + name.replace("_", "-"), str(value)]
    return out


ANALYZE_CASES = [
    dict(T=40, cell="tanh", loss="mean", hidden=6, trials=2, seed=3),
    dict(T=30, cell="relu", ensemble="orthogonal", radius=1.05, hidden=5, lyapunov=2),
    dict(T=30, cell="lstm", hidden=4, forget_bias=2.0, trials=2),
    dict(T=30, cell="gru", hidden=4, loss="mean"),
    dict(T=50, cell="tanh", loss="mean", hidden=5, truncate="5", clip=0.5),
    dict(T=300, cell="identity", hidden=4, checkpoint="256"),
]


@pytest.mark.parametrize("kw", ANALYZE_CASES, ids=lambda kw: f"{kw['cell']}-T{kw['T']}")
def test_analyze_to_dict_is_the_cli_json(kw: dict[str, Any]) -> None:
    result = api.analyze(**kw)
    assert stable(result.to_dict()) == stable(cli_json("analyze", *flags(**kw)))


def test_spectrum_and_truncate_to_dict_are_the_cli_json() -> None:
    kw = dict(hidden=12, ensemble="symmetric", trials=2, T=20)
    assert api.spectrum(**kw).to_dict() == cli_json("spectrum", *flags(**kw))
    tkw = dict(T=40, cell="tanh", hidden=5, K="2,8", keep_prob="0.5", draws=6)
    assert stable(api.truncate(**tkw).to_dict()) == stable(cli_json("truncate", *flags(**tkw)))


def test_sweep_records_are_the_cli_records() -> None:
    result = api.sweep(T="10,20", cell=["tanh", "lstm"], hidden=3, workers=1)
    cli = bptt("sweep", "--T", "10,20", "--cell", "tanh,lstm", "--hidden", "3", "--workers", "1",
               "--format", "jsonl")
    assert cli.exit_code == 0, cli.stderr
    records = [json.loads(line) for line in cli.stdout.splitlines()]

    def timeless(rs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in rs]

    assert len(result) == 4
    assert timeless(result.to_dict()["records"]) == timeless(records)
    assert [r["point"]["T"] for r in result.records] == [10, 10, 20, 20]


@pytest.mark.parametrize(
    ("kw", "args"),
    [
        (dict(T=0), ["analyze", "--T", "0"]),
        (dict(cell="mamba"), ["analyze", "--cell", "mamba"]),
        (dict(gain=1.0, radius=2.0), ["analyze", "--gain", "1", "--radius", "2"]),
        (dict(seed=-1), ["analyze", "--seed", "-1"]),
        (dict(weights="no/such.npz"), ["analyze", "--weights", "no/such.npz"]),
        (dict(truncate="x"), ["analyze", "--truncate", "x"]),
        (dict(keep_prob=0.5), ["analyze", "--keep-prob", "0.5"]),
        (dict(cell="lstm", hidden=2, lyapunov=9),
         ["analyze", "--cell", "lstm", "--hidden", "2", "--lyapunov", "9"]),
        (dict(max_memory="lots"), ["analyze", "--max-memory", "lots"]),
    ],
)
def test_bad_input_raises_the_cli_message(kw: dict[str, Any], args: list[str]) -> None:
    cli = bptt(*args)
    assert cli.exit_code == 2
    message = cli.stderr.strip().removeprefix("bptt: error: ")
    with pytest.raises(BadInput) as caught:
        api.analyze(**kw)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)


def test_sweep_bad_axis_raises_the_cli_message() -> None:
    cli = bptt("sweep", "--T", "10,0")
    message = cli.stderr.strip().removeprefix("bptt: error: ")
    with pytest.raises(BadInput, match="--T: 0 is not in the range x>=1") as caught:
        api.sweep(T=[10, 0])
    assert str(caught.value) == message


def test_an_unknown_keyword_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'tee'"):
        api.analyze(tee=5)
    with pytest.raises(TypeError, match="unexpected keyword argument 'tee'"):
        api.sweep(tee=5)


def test_signature_and_help_list_every_option() -> None:
    import inspect

    from bptt_cli.api.options import analyze_options, help_of

    params = inspect.signature(api.analyze).parameters
    assert list(params) == [*inspect.signature(analyze_options).parameters, "config"]
    assert params["cell"].default == "identity" and params["T"].default is None
    doc = api.analyze.__doc__ or ""
    for name, text in help_of(analyze_options).items():
        assert f"{name} : default" in doc and text in doc


def test_results_hold_numpy_arrays() -> None:
    result = api.analyze(T=25, cell="tanh", hidden=5, trials=3)
    trial = result.trials[1]
    assert isinstance(trial.grad_h_log10, np.ndarray) and trial.grad_h_log10.shape == (25,)
    np.testing.assert_array_equal(trial.grad_h_log10, result.analysis.grad_h_log10[1])
    assert trial.spectrum.spectral_radius == pytest.approx(result.analysis.spectrum.spectral_radius[1])
    assert result.summary.verdict == result.verdict == result.to_dict()["summary"]["verdict"]
    assert result.gain_log10 == pytest.approx(result.to_dict()["summary"]["gain_log10"])
    assert result.config.T == 25 and result.config.cell == "tanh"
    assert "trials=3" in repr(result)
    with pytest.raises(AttributeError):
        _ = trial.no_such_key


def test_arrays_and_modules_in_memory_are_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    arrays = {"W_hh": rng.standard_normal((5, 5)) / 3, "W_hx": rng.standard_normal((5, 2)),
              "W_qh": rng.standard_normal((3, 5))}
    x = rng.standard_normal((30, 2))
    np.savez(tmp_path / "w.npz", **arrays)
    np.save(tmp_path / "x.npy", x)
    from_files = api.analyze(cell="tanh", weights=tmp_path / "w.npz", inputs=str(tmp_path / "x.npy"))
    in_memory = api.analyze(cell="tanh", weights=arrays, inputs=x)
    a, b = from_files.to_dict(), in_memory.to_dict()
    assert a["trials"][0]["grad_h_log10"] == b["trials"][0]["grad_h_log10"]
    assert b["config"]["weights"] == "<arrays in memory>" and b["config"]["inputs"] == "<arrays in memory>"
    assert a["config"]["drawn"] == b["config"]["drawn"] == ["b_h", "b_q", "y"]
    with pytest.raises(BadInput, match="W_hh in the given weights contains NaN"):
        api.analyze(weights={"W_hh": np.full((3, 3), np.nan)})
    with pytest.raises(BadInput, match="weights must be a file, a mapping"):
        api.analyze(weights=42)


def test_a_torch_module_is_its_state_dict(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 4, batch_first=True).double()
    torch.save(lstm.state_dict(), tmp_path / "m.pt")
    from_module = api.analyze(cell="lstm", weights=lstm, T=20).to_dict()
    from_file = api.analyze(cell="lstm", weights=tmp_path / "m.pt", T=20).to_dict()
    assert from_module["trials"] == from_file["trials"]
    assert from_module["config"]["weights"] == "<LSTM in memory>"


def test_config_files_are_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('cell = "tanh"\nT = 15\nhidden = 4\n')
    result = api.analyze(config=cfg, T=12)
    assert (result.config.cell, result.config.T, result.config.hidden) == ("tanh", 12, 4)
    bad = tmp_path / "bad.toml"
    bad.write_text("tee = 5\n")
    with pytest.raises(BadInput, match="unknown key 'tee'"):
        api.analyze(config=bad)


def test_to_frame_is_the_csv(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    kw = dict(T=12, cell="lstm", hidden=3, trials=2)
    frame = api.analyze(**kw).to_frame()
    cli = bptt("analyze", *flags(**kw), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(cli.stdout)))
    assert list(frame.columns) == list(rows[0])
    assert len(frame) == len(rows) == 24
    for column in frame.columns:
        want = [float(r[column]) if r[column] else np.nan for r in rows]
        got = frame[column].to_numpy(dtype=float)
        got = np.where(np.isinf(got), np.nan, got)  # -inf (an exact zero) is an empty cell too
        np.testing.assert_array_equal(got, want)
    sweep = api.sweep(T=[5, 6], hidden=3, workers=1).to_frame()
    assert list(sweep["point.T"]) == [5, 6] and "summary.gain_log10" in sweep.columns
    spectrum = api.spectrum(hidden=4).to_frame()
    assert list(spectrum.columns) == [
        "trial", "i", "eigenvalue_re", "eigenvalue_im", "modulus", "singular_value"
    ]


def test_results_render_as_tables(tmp_path: Path) -> None:
    from rich.console import Console

    result = api.analyze(T=20, cell="tanh", hidden=4)
    html = result._repr_html_()
    assert "Gradient of the loss" in html and "<pre" in html
    console = Console(record=True, width=100, file=io.StringIO())
    console.print(result)  # rich protocol: the same tables as the command
    text = console.export_text()
    assert "Parameter gradients" in text and "verdict:" in text
    out = tmp_path / "t.txt"
    assert bptt("analyze", "--T", "20", "--cell", "tanh", "--hidden", "4", "--output", out).exit_code == 0
    assert result.text() == out.read_text()
    spectrum = tmp_path / "s.txt"
    assert bptt("spectrum", "--hidden", "5", "--output", spectrum).exit_code == 0
    assert api.spectrum(hidden=5).text() == spectrum.read_text()
    sweep = api.sweep(T="5,50", radius="0.5,1.5", hidden=3, workers=1)
    assert "radius \\ T" in sweep.text(120)


def test_plot_draws_the_cli_figure(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    result = api.analyze(T=20, cell="tanh", hidden=4)
    fig = api.plot(result)
    assert fig.axes  # a matplotlib Figure
    out = tmp_path / "f.png"
    api.plot(result, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cli = tmp_path / "c.png"
    assert bptt("analyze", "--T", "20", "--cell", "tanh", "--hidden", "4", "--plot", cli, "--output",
                tmp_path / "r.json").exit_code == 0
    assert len(fig.axes) == len(api.plot(tmp_path / "r.json").axes)
    with pytest.raises(BadInput, match="unknown image format"):
        api.plot(result, tmp_path / "f.gif")


def test_import_is_light() -> None:
    """``import bptt_cli`` loads neither numpy nor the API until a name of it is used."""
    code = "import sys, bptt_cli; print('numpy' in sys.modules, 'bptt_cli.api.commands' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    assert callable(api.analyze) and "analyze" in dir(api)
    with pytest.raises(AttributeError):
        _ = api.no_such_name  # type: ignore[attr-defined]


def test_the_readme_example_runs_and_prints_what_it_shows() -> None:
    """The README's Python API example, run as it is; its output block is what it prints."""
    import contextlib
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Python API", 1)[1].split("\n## ", 1)[0]
    code, shown = re.findall(r"```(?:python|text)\n(.*?)```", section, flags=re.S)[:2]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    assert printed.getvalue() == shown


@pytest.mark.parametrize("command", ["analyze", "record", "spectrum", "truncate", "advise"])
def test_the_api_page_lists_every_keyword(command: str) -> None:
    """docs/api.md holds each command's keywords as declared (regenerate the block from the message)."""
    from bptt_cli.api import options

    page = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    block = page.split(f"<!-- options: {command} -->\n", 1)[1].split(f"\n<!-- /options: {command} -->", 1)[0]
    expected = options.markdown_table(getattr(options, f"{command}_options"))
    assert block == expected, f"docs/api.md, the {command} block should read:\n{expected}"


@pytest.mark.parametrize(
    ("option", "value"),
    [("T", 5.5), ("hidden", 8.9), ("T", True), ("trials", np.float32(2.7)), ("T", -1.5), ("inputs_dim", 3.9)],
)
def test_integer_options_refuse_what_is_not_an_integer(option: str, value: Any) -> None:
    """click itself would truncate 5.5 to 5; the command line refuses ``--T 5.5``, and so does the API."""
    flag = "--" + option.replace("_", "-")
    with pytest.raises(BadInput, match=f"Invalid value for '{flag}': .* is not a valid integer"):
        api.analyze(**{option: value})


def test_integral_numbers_of_any_type_are_integers() -> None:
    plain = api.analyze(T=10, hidden=4).to_dict()["config"]
    assert api.analyze(T=10.0, hidden=np.int64(4)).to_dict()["config"] == plain


def test_lists_and_arrays_in_memory_for_inputs_and_h0() -> None:
    x = [[0.5, -1.0], [2.0, 0.25], [1.0, 1.0], [0.0, -0.5]]
    listed = api.analyze(T=4, hidden=3, inputs_dim=2, inputs=x).to_dict()
    arrayed = api.analyze(T=4, hidden=3, inputs_dim=2, inputs=np.array(x)).to_dict()
    assert listed["trials"] == arrayed["trials"]
    h0 = api.analyze(T=4, hidden=3, h0=np.full(3, 0.1))
    assert h0.to_dict()["config"]["h0"] == "<arrays in memory>"
    assert h0.to_dict()["trials"] != api.analyze(T=4, hidden=3).to_dict()["trials"]
    with pytest.raises(BadInput, match=r"h0 in <arrays in memory> has shape \(5,\); expected \(3,\)"):
        api.analyze(T=4, hidden=3, h0=np.zeros(5))


@pytest.mark.parametrize("name", ["weights", "inputs", "targets", "h0"])
def test_sweep_takes_files_not_arrays(name: str) -> None:
    with pytest.raises(BadInput, match=rf"sweep\({name}=...\) takes files"):
        api.sweep(T=[5, 6], workers=1, **{name: np.zeros((5, 2))})


def test_what_is_not_an_array_is_refused_in_place_of_a_file(tmp_path: Path) -> None:
    """An int used to reach ``open()``, which reads it as a file descriptor (and closes it)."""
    with open(tmp_path / "log.txt", "w") as log:
        for name in ("h0", "inputs", "targets"):
            with pytest.raises(BadInput, match=rf"{name} takes a file path or an array, got int"):
                api.analyze(T=4, hidden=3, **{name: log.fileno()})
        log.write("still open\n")
    with pytest.raises(BadInput, match="h0 takes a file path or an array, got dict"):
        api.analyze(T=4, hidden=3, h0={"h0": np.zeros(3)})
    with pytest.raises(BadInput, match="h0: not an array: setting an array element"):
        api.analyze(T=4, hidden=3, h0=[[1.0, 2.0], [3.0]])


def test_true_false_options_take_bools_only() -> None:
    assert api.analyze(T=4, hidden=3, theory=np.False_).to_dict()["config"]["theory"] is False
    for value in (0, 1, 1.0):
        with pytest.raises(BadInput, match=r"Invalid value for '--theory': .* is not True or False"):
            api.analyze(T=4, hidden=3, theory=value)


def test_sweep_axes_are_checked_as_the_command_line_checks_them() -> None:
    for axes in ({"T": 5.5}, {"T": [5.5, 6]}, {"hidden": [3, True]}):
        with pytest.raises(BadInput, match="is not a valid integer"):
            api.sweep(workers=1, **axes)
    with pytest.raises(BadInput, match="is not True or False"):
        api.sweep(workers=1, T=5, theory=[0, 1])
    assert len(api.sweep(workers=1, T=np.array([5, 6]), hidden=3, theory=[np.True_, False]).records) == 4
