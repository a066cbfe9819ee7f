"""Axis parsing (lists, ranges, checks by analyze's own option types) and grid points."""

from __future__ import annotations

import math

import numpy as np
import pytest
import typer

from bptt_cli.api.options import analyze_options, command
from bptt_cli.cli import NOT_AXES, analyze
from bptt_cli.errors import BadInput
from bptt_cli.io.points import Axis, cell_text, describe, point_key
from bptt_cli.run.grid import parse_axis, points

COMMAND = command(analyze_options)
CTX = typer.Context(COMMAND)
PARAMS = {p.name: p for p in COMMAND.params}


def axis(name: str, text: str) -> tuple[object, ...]:
    return parse_axis(text, PARAMS[name], CTX)


def test_comma_lists_convert_with_the_option_type() -> None:
    assert axis("T", "10,100,1000") == (10, 100, 1000)
    assert axis("cell", "identity, tanh") == ("identity", "tanh")
    assert axis("radius", "0.5,1") == (0.5, 1.0)
    assert all(isinstance(v, float) for v in axis("radius", "1,2"))
    assert axis("weights", "a.npz,b.npz") == ("a.npz", "b.npz")


def test_linear_range_is_linspace_rounded_to_12_digits() -> None:
    values = axis("radius", "0.5:1.5:11")
    assert len(values) == 11
    np.testing.assert_allclose(values, np.linspace(0.5, 1.5, 11), rtol=1e-12)
    assert values[1] == 0.6 and repr(values[1]) == "0.6"  # not 0.6000000000000001


def test_log_range_for_integers_is_rounded_and_deduplicated() -> None:
    assert axis("T", "10:10000:4:log") == (10, 100, 1000, 10000)
    assert axis("T", "1:3:5") == (1, 2, 3)  # 1, 1.5, 2, 2.5, 3 rounded half-even, repeats dropped
    values = axis("gain", "0.1:10:3:log")
    np.testing.assert_allclose(values, [0.1, 1.0, 10.0])


def test_lists_and_ranges_mix_and_repeats_are_dropped() -> None:
    assert axis("radius", "0.5:1.5:3,2,1.0") == (0.5, 1.0, 1.5, 2.0)
    assert axis("cell", "tanh,tanh,relu") == ("tanh", "relu")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("T", "", "empty axis"),
        ("T", "10,,100", "empty value"),
        ("radius", "0.5:1.5:-3", "count of range '0.5:1.5:-3' must be a positive integer, got -3"),
        ("radius", "0.5:1.5:0", "must be a positive integer, got 0"),
        ("radius", "0.5:1.5:2.5", "is not an integer"),
        ("radius", "0.5:1.5", "must be START:STOP:COUNT"),
        ("radius", "0.5:1.5:3:cubic", "must be START:STOP:COUNT"),
        ("radius", "a:1:3", "start 'a' of the range is not a number"),
        ("radius", "0:1:3:log", "log range needs START and STOP > 0"),
        ("radius", "nan:1:3", "not a finite number"),
        ("T", "0,10", "--T: 0 is not in the range x>=1"),
        ("T", "1.5", "--T:"),
        ("cell", "mamba", "--cell:"),
        ("trials", "0:4:3", "--trials: 0 (of the range 0:4:3): 0 is not in the range x>=1"),
    ],
)
def test_bad_axes_are_bad_input_naming_the_option(name: str, text: str, message: str) -> None:
    with pytest.raises(BadInput, match=None) as e:
        axis(name, text)
    assert message in str(e.value)
    assert str(e.value).startswith("--")


def test_ranges_only_for_numbers() -> None:
    # a ':' in a path is part of the path, not a range
    assert axis("weights", "C:/x.npz") == ("C:/x.npz",)


def test_points_are_the_product_in_axis_order() -> None:
    axes = [
        Axis("T", "--T", (10, 20)),
        Axis("cell", "--cell", ("identity",)),
        Axis("radius", "--radius", (0.5, 1.0, 1.5)),
    ]
    grid = points(axes)
    assert len(grid) == 6
    assert grid[0] == {"T": 10, "cell": "identity", "radius": 0.5}
    assert grid[-1] == {"T": 20, "cell": "identity", "radius": 1.5}
    assert len({point_key(p) for p in grid}) == 6
    assert describe(grid[1], axes) == "point T=10 radius=1.0"


def test_point_key_is_the_same_after_a_json_or_csv_round_trip() -> None:
    import json

    point = {"T": 10, "radius": 0.6, "gain": None, "cell": "tanh", "flag": True, "tiny": 1e-5}
    assert point_key(json.loads(json.dumps(point))) == point_key(point)
    from bptt_cli.io.sweep_records import _parse_cell

    assert point_key({k: _parse_cell(cell_text(v)) for k, v in point.items()}) == point_key(point)
    assert cell_text(math.pi) == repr(math.pi)


def test_every_analyze_option_but_the_output_ones_is_an_axis() -> None:
    """The sweep command is built from analyze's parameters: none is left out."""
    import inspect

    from bptt_cli.cli import app

    sweep = typer.main.get_command(app).commands["sweep"]  # type: ignore[attr-defined]
    sweep_names = {p.name for p in sweep.params}
    analyze_names = set(inspect.signature(analyze).parameters) - set(NOT_AXES)
    assert analyze_names and analyze_names <= sweep_names
    flags = {o for p in sweep.params for o in p.opts}
    assert {o for p in COMMAND.params if p.name in analyze_names for o in p.opts} <= flags
