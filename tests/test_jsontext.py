"""The JSON and CSV text of the records, written in bulk (issue 17), is byte for byte the text of
the per-number writers it replaced: Python's ``json`` on plain values (``repr`` of each float),
``null`` (JSON) or an empty cell (CSV) for every non-finite number, with orjson and without it."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import numpy as np
import pytest

from bptt_cli.io import jsontext
from bptt_cli.io.jsontext import array_text, dumps, jsonable, number_tokens, write_json

SPECIAL = np.array([
    0.0, -0.0, np.inf, -np.inf, np.nan, 1e-4, 9.99e-5, 1e-5, 1e-8, 1e-10, 5e-324, 2.2250738585072014e-308,
    1e15, 9999999999999998.0, 1e16, 1.5e16, 1e300, 1.7976931348623157e308, -1e-7, 0.1, 1.0, 2.5, 123456.789,
])


def reference_plain(obj: Any) -> Any:
    """The conversion the writers used before issue 17: every value, one at a time."""
    if isinstance(obj, dict):
        return {str(k): reference_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [reference_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return reference_plain(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def reference_text(obj: Any) -> str:
    return json.dumps(reference_plain(obj), allow_nan=False)


def samples() -> list[Any]:
    rng = np.random.default_rng(17)
    out: list[Any] = [
        SPECIAL, np.stack([SPECIAL, SPECIAL[::-1]], axis=-1), np.zeros((3, 0)), np.zeros((0, 2)),
        np.arange(7), np.array([True, False]), np.array(2.5), np.array([np.nan]),
    ]
    for n in (0, 1, 7, 1000, 70001):
        x = rng.standard_normal(n) * 10.0 ** rng.integers(-12, 20, n)
        x[rng.random(n) < 0.05] = -np.inf
        out.append(x)
    out.append(out[-2].reshape(-1, 10))
    mixed = [np.float64(1e-5), np.int64(3), None, "x, y", True]
    out.append({"a": SPECIAL, "b": mixed, "c": {"d": np.float32(0.1)}})
    return out


@pytest.fixture(params=["orjson", "repr"])
def bulk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "repr":
        monkeypatch.setattr(jsontext, "_BULK", None)
    elif jsontext._BULK is None:
        pytest.skip("orjson is not installed")
    return str(request.param)


def test_the_text_is_the_per_number_writers_byte_for_byte(bulk: str) -> None:
    for obj in samples():
        want = reference_text(obj)
        buf = io.StringIO()
        write_json(obj, buf.write)
        assert buf.getvalue() == want
        assert dumps(obj) == want
        assert jsonable(obj) == reference_plain(obj)
        if isinstance(obj, np.ndarray) and obj.dtype.kind in "fiu":
            assert array_text(obj) == want


def test_repr_notation_for_every_exponent(bulk: str) -> None:
    """Every power of ten from the smallest subnormal to the largest float, and its neighbours."""
    powers = 10.0 ** np.arange(-323, 309, dtype=np.float64)
    x = np.concatenate([powers, np.nextafter(powers, 0), np.nextafter(powers, np.inf), -powers[:-1] * 3.7])
    x = x[np.isfinite(x)]
    assert number_tokens(x) == [repr(v) for v in x.tolist()]


def test_non_finite_numbers_are_null_or_empty() -> None:
    x = np.array([1.0, -np.inf, np.nan, np.inf])
    assert number_tokens(x) == ["1.0", "null", "null", "null"]
    assert number_tokens(x, null="") == ["1.0", "", "", ""]
    with pytest.raises(ValueError):  # the guard stays: no NaN ever reaches the text
        json.dumps(float("nan"), allow_nan=False)


def test_an_orjson_that_changed_its_notation_falls_back_to_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    orjson = pytest.importorskip("orjson")
    monkeypatch.setattr(orjson, "dumps", lambda a, option=0: b"[" + b",".join(b"1e16" for _ in a) + b"]")
    assert jsontext._orjson_writer() is None


def reference_csv(columns: dict[str, Any]) -> str:
    """``bptt analyze --format csv`` as it was written before issue 17: row by row."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    ints = [columns[k] for k in ("trial", "t", "lag")]
    floats = [v for k, v in columns.items() if k not in ("trial", "t", "lag")]
    for r in range(len(ints[0])):
        texts = ("" if not np.isfinite(c[r]) else repr(float(c[r])) for c in floats)
        writer.writerow([*(int(c[r]) for c in ints), *texts])
    return buf.getvalue()


@pytest.mark.parametrize("args", [
    dict(T=300, trials=3, cell="tanh", loss="mean"),
    dict(T=100, trials=2, cell="identity", radius=1e300),
    dict(T=60, trials=2, cell="gru", loss="mean"),
])
def test_the_csv_is_the_row_by_row_writers(
    args: dict[str, Any], bulk: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bptt_cli as bptt
    from bptt_cli.io import records

    monkeypatch.setattr(records, "CSV_ROWS", 97)  # several chunks, one cut short
    result = bptt.analyze(hidden=16, **args)
    buf = io.StringIO()
    result.write("csv", buf.write)
    assert buf.getvalue() == reference_csv(records.analysis_columns(result.analysis))
    buf = io.StringIO()
    result.write("json", buf.write)
    assert buf.getvalue() == reference_text(result.record()) + "\n"
