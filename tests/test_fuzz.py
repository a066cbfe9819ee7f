"""Fuzzing the command line (issue 16): random command lines for every command, run in-process.

Hypothesis draws options and values for ``analyze``, ``spectrum``, ``truncate``, ``sweep`` and
``plot``: numbers from the whole float range (nan, inf, -0.0, huge, tiny, subnormal) and integers
beyond int64, spelled as the shell would pass them or as junk; random strings; options left out,
repeated and in conflict; unknown options; small files made for the example (``.npy``/``.npz`` of
random dtypes and shapes, archives cut short, bytes that only look like one, TOML configs of
random keys and types, saved records with random parts replaced). Each run must keep the CLI's
contract:

- exit status 0, 1 (only with ``--fail-on``) or 2; no traceback; the runner's exception, if
  any, is ``SystemExit``;
- on exit 2, stderr is one line ``bptt: error: ...`` (a sweep whose points failed lists them, one
  ``bptt: error:`` line each, then the count); on exit 0 stderr holds only ``bptt:`` lines;
- an ``--output`` or ``--plot`` file is absent or a complete document of its format (a file there
  before is unchanged or complete), with no temporary file beside it; a device stays a device.

Sizes stay tiny (T <= 50, hidden <= 8, trials <= 2, at most 4 grid points), or absurd (refused).
In CI each command gets ``EXAMPLES`` examples (derandomized: the same ones every run) within
``SECONDS`` of running (the examples after that pass untried). For a long random search by hand::

    HYPOTHESIS_PROFILE=stress python -m pytest tests/test_fuzz.py            # 500 examples a command
    HYPOTHESIS_PROFILE=stress BPTT_FUZZ_EXAMPLES=5000 python -m pytest tests/test_fuzz.py -x

(``BPTT_FUZZ_SECONDS`` sets the time budget of each command; 0, the default with ``stress``: none.)
A failure prints the command line and the files; fix the bug, and keep the case as an ``@example``.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import signal
import stat
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from outputs import check_complete, is_full_device
from typer.testing import CliRunner

from bptt_cli.api import options as opt
from bptt_cli.cli import app

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")
STRESS = PROFILE != "default"
EXAMPLES = int(os.environ.get("BPTT_FUZZ_EXAMPLES", "0")) or (settings().max_examples if STRESS else 60)
SECONDS = float(os.environ.get("BPTT_FUZZ_SECONDS", "0" if STRESS else "4"))
EXAMPLE_SECONDS = 60  # one example longer than this fails (a hang is a finding too)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)

# ------------------------------------------------------------------ values, as the shell passes them



def mostly(usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], one_in: int = 8) -> Any:
    """``usual``, and ``rare`` once in ``one_in`` draws (so that most runs get past the parsing).
    Hypothesis leans to the first of a choice, and shrinks to it: ``usual`` comes first."""
    return st.sampled_from([usual] * (one_in - 1) + [rare]).flatmap(lambda s: s)


JUNK = st.one_of(
    st.sampled_from(["", " ", "x", "-", "--", "none", "null", "[]", "{}", "1,", ",", "a,b", "1:2", "é"]),
    st.text(max_size=8),
)
SPECIAL_FLOATS = [
    "nan", "-nan", "NaN", "inf", "-inf", "Infinity", "0", "-0", "-0.0", "1e308", "-1e308", "1e309",
    "5e-324", "2.2250738585072014e-308", "1e-320", "1.7976931348623157e308", "0x10", "1_0", " 1.5",
    "1e", "--1", "0.5", "1", "1.5", "2", "-1", "1e-3",
]  # fmt: skip
FLOATS = mostly(
    st.one_of(
        st.floats().map(repr),  # the whole range: nan, inf, -0.0, subnormals, huge
        st.floats(-3, 3).map(lambda x: f"{x:g}"),
        st.sampled_from(SPECIAL_FLOATS),
    ),
    JUNK,
)
# the largest valid value of each size (T <= 50, hidden <= 8, ...): beyond it only absurd values,
# which the checks refuse before anything runs
SMALL = {"T": 50, "hidden": 8, "inputs_dim": 8, "outputs_dim": 8, "trials": 2, "draws": 4, "lyapunov": 8}
ABSURD_INTS = ["-1", "0", str(10**20), str(2**63), str(2**64), str(-(2**63)), str(10**400), "1.5", "1e3", "٣"]


def ints(name: str) -> st.SearchStrategy[str]:
    small = st.integers(0 if name in ("seed", "lyapunov") else 1, SMALL.get(name, 8)).map(str)
    return mostly(small, st.one_of(st.sampled_from(ABSURD_INTS), JUNK), 5)


STRINGS = {
    "truncate": ["1", "2", "5", "0", "-1", "random", "RANDOM", "x", "1.5", "100", "1,2"],
    "checkpoint": ["auto", "none", "1", "2", "256", "0", "-5", "x", "1e3", "AUTO"],
    "max_memory": ["1K", "64K", "512M", "2G", "0", "-1", "1", "1e3", "x", "1.5G", "0.5", "1e30", "nan"],
    "K": ["1", "1,2", "2,5,10", "0", "-1", "1,,2", "", "x", "3,3", str(10**20)],
    "keep_prob": ["0.5", "0.9,0.5", "0", "1", "1.5", "-0.5", "nan", "inf", "", "x", "0.5,0.5", "1e-300"],
    "scheduler": ["bogus", "tcp://127.0.0.1:9", "tcp://[::1]:x", ""],
    "rows": ["T", "radius", "gain", "cell", "hidden", "seed", "x", ""],
    "cols": ["T", "radius", "gain", "cell", "hidden", "trials", "x", ""],
}


def kind(param: Any) -> str:
    """What an option takes: int, float, choice, path, flag or str."""
    names = {"integer": "int", "int range": "int", "float": "float", "float range": "float",
             "choice": "choice", "path": "path", "boolean": "flag"}  # fmt: skip
    return names.get(param.type.name, "str")


# ------------------------------------------------------------------ small files, made per example


@dataclass
class File:
    """A file to make in the example's directory: ``data`` written under ``name``."""

    name: str
    data: bytes = b""

    def __repr__(self) -> str:
        return f"File({self.name!r}, {self.data[:80]!r}{'...' if len(self.data) > 80 else ''})"


def _npy_bytes(array: np.ndarray, pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=pickle)
    return buf.getvalue()


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


DTYPES = st.sampled_from(["<f8", "<f4", "<f2", "<i8", "|i1", "|u1", "|b1", "<c16", "<U3", ">f8", "<m8[s]"])
ARRAYS = hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
VALUES = st.one_of(st.floats(-2, 2), st.sampled_from([0.0, -0.0, np.nan, np.inf, -np.inf, 1e300, 5e-324]))
WEIGHT_NAMES = ["W_hh", "W_hx", "W_qh", "b_h", "b_q", "weight_hh_l0", "weight_ih_l0", "bias_hh_l0",
                "bias_ih_l0", "linear.weight", "linear.bias", "fc.weight", "x"]  # fmt: skip


@st.composite
def consistent_weights(draw: st.DrawFn) -> dict[str, np.ndarray]:
    """Arrays whose shapes fit together (so that the run gets past the shape checks), values odd at times."""
    h, d, q = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    gates = draw(st.sampled_from([1, 3, 4]))  # Elman, GRU, LSTM rows
    prefix = "" if gates == 1 else "gated"
    shapes = ({"W_hh": (h, h), "W_hx": (h, d), "W_qh": (q, h), "b_h": (h,), "b_q": (q,)} if not prefix else
              {"weight_hh_l0": (gates * h, h), "weight_ih_l0": (gates * h, d), "bias_hh_l0": (gates * h,),
               "bias_ih_l0": (gates * h,), "linear.weight": (q, h), "linear.bias": (q,)})  # fmt: skip
    out = {}
    for name, shape in shapes.items():
        if name in ("W_hh", "weight_hh_l0") or draw(st.booleans()):
            out[name] = draw(hnp.arrays(np.float64, shape, elements=VALUES))
    return out


@st.composite
def array_files(draw: st.DrawFn, suffix_hint: str) -> File:
    how = draw(st.sampled_from(["npy", "npz", "consistent", "cut", "garbage", "pickle", "missing", "dir"]))
    name = f"in{draw(st.integers(0, 99))}"
    if how == "npy":
        return File(name + ".npy", _npy_bytes(draw(ARRAYS)))
    if how in ("npz", "consistent"):
        arrays = (draw(consistent_weights()) if how == "consistent"
                  else draw(st.dictionaries(st.sampled_from(WEIGHT_NAMES), ARRAYS, max_size=4)))  # fmt: skip
        return File(name + ".npz", _npz_bytes(arrays))
    if how == "cut":
        whole = _npz_bytes({"W_hh": np.eye(3)}) if draw(st.booleans()) else _npy_bytes(np.ones((4, 2)))
        return File(name + suffix_hint, whole[: draw(st.integers(0, len(whole) - 1))])
    if how == "garbage":
        magic = draw(st.sampled_from([b"", b"\x93NUMPY", b"PK\x03\x04", b"PK\x05\x06", b"\x80\x04"]))
        suffix = draw(st.sampled_from([".npy", ".npz", ".pt", ""]))
        return File(name + suffix, magic + draw(st.binary(max_size=40)))
    if how == "pickle":
        return File(name + ".npy", _npy_bytes(np.array([1, "a", None], dtype=object), pickle=True))
    if how == "dir":
        return File(name + "/")
    return File(name + ".missing")  # never made


TOML_SCALARS = st.one_of(
    st.integers(-(2**64), 2**64), st.floats(), st.booleans(),
    st.sampled_from(["tanh", "lstm", "last", "gaussian", "auto", "1K", "0.5:1.5:3", "1,2", "10:100:2:log"]),
    st.text(max_size=6),
)  # fmt: skip
TOML_VALUES = st.recursive(
    TOML_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=2),
    max_leaves=4,
)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        return ("inf" if value > 0 else "-inf") if abs(value) == float("inf") else repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string, or (a lone surrogate) a TOML error
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


@st.composite
def configs(draw: st.DrawFn, keys: list[str]) -> File:
    name = f"c{draw(st.integers(0, 99))}.toml"
    if draw(st.integers(0, 9)) == 9:
        return File(name, draw(st.binary(max_size=30)))  # not TOML at all
    key = st.sampled_from(keys) | st.text(max_size=5)
    table = draw(st.dictionaries(key, TOML_VALUES, max_size=4))
    text = "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in table.items())
    if draw(st.integers(0, 9)) == 9:
        text = text[: draw(st.integers(0, len(text)))]  # cut short
    return File(name, text.encode("utf-8", "surrogatepass"))


# ------------------------------------------------------------------ where output goes

OUTPUT_SUFFIXES = [".json", ".jsonl", ".csv", ".txt", ".png", ".svg", "", ".JSON", ".dat"]
PLOT_SUFFIXES = [".png", ".svg", ".pdf", ".jpg", ""]


@dataclass
class Output:
    """An ``--output`` or ``--plot`` path, and what is there before the run: nothing, junk (bytes),
    a link (to a file of junk), a clone of /dev/null or /dev/full, a directory, or no directory."""

    name: str
    before: str = "nothing"
    junk: bytes = b""


@st.composite
def outputs(draw: st.DrawFn, stem: str, suffixes: list[str]) -> Output:
    suffix = draw(st.sampled_from(suffixes))
    before = draw(st.sampled_from(["nothing"] * 6 + ["junk", "link", "null", "full", "dir", "nodir"]))
    junk = draw(st.binary(max_size=20)) if before in ("junk", "link") else b""
    return Output(f"{stem}{suffix}", before, junk)


# ------------------------------------------------------------------ command lines


@dataclass
class Case:
    """One command line: its arguments (a File or Output stands for its path) and what they refer to."""

    args: list[Any] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"Case({self.args!r})"


OWN = {  # the options of each command that are not its computation's
    "analyze": ["fmt", "output", "fail_on", "config", "plot"],
    "spectrum": ["fmt", "output", "plot"],
    "truncate": ["fmt", "output"],
}


def command_params(name: str) -> dict[str, Any]:
    """The click parameters of a command, by Python name, as the CLI builds it (a sweep's axes as
    the options of analyze they sweep)."""
    import typer

    group: Any = typer.main.get_command(app)
    axes = opt.axis_params() if name == "sweep" else {}
    return {p.name: axes.get(p.name, p) for p in group.commands[name].params if p.name}


@st.composite
def value_of(draw: st.DrawFn, name: str, param: Any, config_keys: list[str], axis: bool = False) -> Any:
    k = kind(param)
    if name == "output":
        return draw(outputs("out", OUTPUT_SUFFIXES))
    if name == "plot":
        return draw(outputs("plot", PLOT_SUFFIXES))
    if name == "config":
        return draw(configs(config_keys))
    if k == "path" or name in ("weights", "inputs", "targets"):
        return draw(array_files(".npz" if name == "weights" else ".npy"))
    if name in STRINGS:
        return draw(mostly(st.sampled_from(STRINGS[name]), JUNK))
    if name == "workers":
        return draw(st.sampled_from(["1"] * 8 + ["0", "-1", "two", ""]))
    if k == "choice":
        return draw(mostly(st.sampled_from(list(param.type.choices)), JUNK))
    if k == "int":
        return draw(ints(name))
    if k == "float":
        return draw(FLOATS)
    return draw(JUNK)


@st.composite
def axis_value(draw: st.DrawFn, name: str, param: Any, several: bool) -> Any:
    """A sweep axis: one value, or (``several``) a comma list of two or a range of at most two
    points, or a bad range; T and hidden stay small."""
    if name in ("T", "hidden") and draw(st.integers(0, 9)) < 9:
        value = st.integers(1, SMALL[name]).map(str)
        values = draw(st.lists(value, min_size=1, max_size=2 if several else 1))
        return ",".join(values)
    one = value_of(name, param, [])
    if not several or kind(param) == "path":
        return draw(one)
    if draw(st.booleans()):
        a, b = draw(one), draw(one)
        return f"{a},{b}"
    number = FLOATS if kind(param) != "int" else ints(name)
    count = draw(st.sampled_from(["1", "2", "0", "-1", "x", "2.5", "", str(10**30)]))
    return f"{draw(number)}:{draw(number)}:{count}" + draw(st.sampled_from(["", ":log", ":lin", ":x"]))


@st.composite
def command_lines(draw: st.DrawFn, command: str) -> Case:
    params = command_params(command)
    config_keys = [n for n in params if n != "config"] + [n.replace("_", "-") for n in params] + ["format"]
    args: list[Any] = [command]
    names = [n for n in params if n not in ("help",)]
    always = {"T", "hidden"} if command != "sweep" else {"T", "hidden", "workers"}
    several = draw(st.sets(st.sampled_from(sorted(AXES)), max_size=2)) if command == "sweep" else set()
    for name in names:
        param = params[name]
        flag = next((o for o in param.opts if o.startswith("--")), param.opts[0])
        if getattr(param, "is_flag", False) or kind(param) == "flag":
            if draw(st.integers(0, 4)) == 4:
                args.append(flag)
            continue
        include = draw(st.integers(0, 9)) >= (1 if name in always else 8)
        if name == "plot" and command != "plot":
            include = draw(st.integers(0, 29)) == 29  # drawing is slow: rarely
        if not include:
            continue
        if command == "sweep" and name in AXES:
            value = draw(axis_value(name, param, name in several))
        elif name in ("T", "hidden") and draw(st.integers(0, 9)) < 9:
            value = str(draw(st.integers(1, SMALL[name])))
        else:
            value = draw(value_of(name, param, config_keys))
        args += [flag, value]
    if draw(st.integers(0, 14)) == 14:
        args.insert(draw(st.integers(1, len(args))), draw(st.sampled_from(["--bogus", "-x", "extra", "--T"])))
    return Case(args)


AXES = set(opt.axis_params())


# ------------------------------------------------------------------ running and checking

RUNNER = CliRunner()


class Budget:
    """The time budget of one fuzz test: once spent, the remaining examples pass untried (but
    never after a failure, so that shrinking replays the examples)."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start, self.failed = seconds, 0.0, False

    def spent(self) -> bool:
        now = time.monotonic()
        if not self.start:
            self.start = now
        return bool(self.seconds) and not self.failed and now - self.start > self.seconds


def make(item: Any, where: Path) -> str:
    """The path text of a File or Output, made in ``where``; anything else as it is."""
    if isinstance(item, File):
        path = where / item.name
        if item.name.endswith("/"):
            path.mkdir(exist_ok=True)
        elif not item.name.endswith(".missing"):
            path.write_bytes(item.data)
        return str(path)
    if isinstance(item, Output):
        out = where / "o" / item.name
        out.parent.mkdir(exist_ok=True)
        if item.before == "junk":
            out.write_bytes(item.junk)
        elif item.before == "link":
            (out.parent / f"real-{item.name}").write_bytes(item.junk)
            out.symlink_to(f"real-{item.name}")
        elif item.before in ("null", "full"):
            try:
                os.mknod(out, stat.S_IFCHR | 0o666, os.makedev(1, 3 if item.before == "null" else 7))
            except OSError:
                item.before = "nothing"
        elif item.before == "dir":
            out.mkdir()
        elif item.before == "nodir":
            return str(where / "no" / item.name)
        return str(out)
    return str(item)


FORMATS = {"json", "jsonl", "csv", "table"}
SUFFIX_FORMAT = {".json": "json", ".jsonl": "jsonl", ".csv": "csv", ".txt": "table", ".png": "png",
                 ".svg": "svg", ".pdf": "pdf"}  # fmt: skip


def expected_format(args: list[str], flag: str, path: str) -> str | None:
    """The format the file at ``path`` must be in, if it is written."""
    suffix = Path(path).suffix.lower()
    if flag == "--plot":
        return SUFFIX_FORMAT.get(suffix)
    fmt = None
    for i, a in enumerate(args[:-1]):
        if a == "--format" and args[i + 1] in FORMATS:
            fmt = args[i + 1]
    return fmt or SUFFIX_FORMAT.get(suffix)


FAILED_POINTS = re.compile(r"bptt: error: \d+ of \d+ points failed \(listed above\).*")


class TooSlow(Exception):
    """An example ran longer than ``EXAMPLE_SECONDS``: tiny sizes must not take that long."""


def _too_slow(signum: int, frame: Any) -> None:
    raise TooSlow(f"the example ran longer than {EXAMPLE_SECONDS} s")


def run_case(case: Case, budget: Budget) -> None:
    if budget.spent():
        return
    previous = signal.signal(signal.SIGALRM, _too_slow)
    signal.setitimer(signal.ITIMER_REAL, EXAMPLE_SECONDS)
    try:
        check_case(case)
    except BaseException:
        budget.failed = True
        raise
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_case(case: Case) -> None:
    with tempfile.TemporaryDirectory() as d:
        where = Path(d)
        args = [make(a, where) for a in case.args]
        written = [(args[i - 1], args[i], a) for i, a in enumerate(case.args) if isinstance(a, Output)]
        before = {path: Path(path).read_bytes() for _, path, _ in written if Path(path).is_file()}
        result = RUNNER.invoke(app, args)
        out, err = result.stdout, result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(
                f"{args}: raised {result.exception!r}\n"
                + "".join(traceback.format_exception(result.exception))
            )
        code = result.exit_code
        assert code in (0, 1, 2), (args, code, err)
        assert "Traceback" not in out and "Traceback" not in err, (args, err)
        lines = err.splitlines()
        if code == 2:
            one = len(lines) == 1 and lines[0].startswith("bptt: error: ")
            listed = (args[0] == "sweep" and len(lines) > 1 and FAILED_POINTS.fullmatch(lines[-1]) is not None
                      and all(line.startswith("bptt: error: ") for line in lines))  # fmt: skip
            assert one or listed, (args, err)
        else:
            assert code == 0 or "--fail-on" in args, (args, code, err)
            assert all(line.startswith("bptt: ") for line in lines), (args, err)
        for flag, path, item in written:
            p = Path(path)
            if item.before in ("null", "full"):
                assert stat.S_ISCHR(os.lstat(p).st_mode), (args, "the device was replaced")
                if item.before == "full":
                    assert is_full_device(p)
                continue
            if item.before == "dir":
                assert p.is_dir()
                continue
            around = list(p.parent.iterdir()) if p.parent.is_dir() else []
            leftovers = [q.name for q in around if q.name.endswith(".tmp")]
            assert leftovers == [], (args, leftovers)
            if item.before == "link":
                assert p.is_symlink(), (args, "the link was replaced")
            if not p.is_file():
                continue
            data = p.read_bytes()
            if before.get(path) == data:
                continue
            fmt = expected_format(args, flag, path)
            assert fmt is not None, (args, f"{path} was written in no known format")
            try:
                check_complete(data, fmt)
            except (AssertionError, ValueError) as e:
                raise AssertionError(f"{args}: {path} is not a complete {fmt} document: {e}") from None


# ------------------------------------------------------------------ the tests, one per command

BUDGETS = {name: Budget(SECONDS) for name in ("analyze", "spectrum", "truncate", "sweep", "plot")}


@FUZZ
@given(command_lines("analyze"))
# found by the fuzzer (each failed before its fix):
@example(Case(["analyze", "--cell", "lstm", "--hidden", "2", "--T", "5", "--gain", "1e5"]))  # overflow
@example(Case(["analyze", "--T", "5", "--hidden", "3", "--gain", "1e308"]))  # overflow: now refused
@example(Case(["analyze", "--T", "5", "--hidden", "3", "--radius", "1e-320"]))  # complex / subnormal
@example(Case(["analyze", "--T", "3", "--hidden", "2", "--plot", Output("plot.pdf", "full")]))
def test_fuzz_analyze(case: Case) -> None:
    run_case(case, BUDGETS["analyze"])


@FUZZ
@given(command_lines("spectrum"))
@example(Case(["spectrum", "--radius", "1e-320"]))  # found by the fuzzer: a RuntimeWarning
@example(Case(["spectrum", "--hidden", "3", "--norm", "1.7976931348623157e308"]))
def test_fuzz_spectrum(case: Case) -> None:
    run_case(case, BUDGETS["spectrum"])


@FUZZ
@given(command_lines("truncate"))
def test_fuzz_truncate(case: Case) -> None:
    run_case(case, BUDGETS["truncate"])


@FUZZ
@given(command_lines("sweep"))
@example(Case(["sweep", "--bias", "0\x850", "--workers", "1"]))  # found: a line break (NEL) in the error
@example(Case(["sweep", "--T", "3", "--weights", "a\nb\x1b[31m.npy", "--workers", "1"]))
def test_fuzz_sweep(case: Case) -> None:
    run_case(case, BUDGETS["sweep"])


# ------------------------------------------------------------------ bptt plot: saved records, mutated


@functools.cache
def saved_records() -> dict[str, bytes]:
    """Real records of each kind, to be mutated: analyze and spectrum JSON, sweep JSONL/JSON/CSV."""
    made: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as d:
        runs = {
            "analyze.json": ["analyze", "--T", "6", "--hidden", "3", "--trials", "2"],
            "lstm.json": ["analyze", "--cell", "lstm", "--T", "5", "--hidden", "2"],
            "spectrum.json": ["spectrum", "--hidden", "3"],
            "sweep.jsonl": ["sweep", "--T", "4,6", "--radius", "0.5,1.5", "--hidden", "2", "--workers", "1"],
            "sweep.json": ["sweep", "--T", "4,6", "--hidden", "2", "--workers", "1"],
            "sweep.csv": ["sweep", "--cell", "tanh,gru", "--T", "4", "--hidden", "2", "--workers", "1"],
        }
        for name, args in runs.items():
            path = Path(d) / name
            result = RUNNER.invoke(app, [*args, "--output", str(path)])
            assert result.exit_code == 0, result.stderr
            made[name] = path.read_bytes()
    return made


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=5,
)


@st.composite
def mutated(draw: st.DrawFn, doc: Any) -> Any:
    """``doc`` (parsed JSON) with a few parts replaced by random JSON or removed."""
    for _ in range(draw(st.integers(0, 3))):
        node, parent, key = doc, None, None
        for _depth in range(draw(st.integers(0, 5))):
            if isinstance(node, dict) and node:
                parent, key = node, draw(st.sampled_from(sorted(node)))
            elif isinstance(node, list) and node:
                parent, key = node, draw(st.integers(0, len(node) - 1))
            else:
                break
            node = parent[key]
        if parent is None:
            doc = draw(JSON_VALUES)
        elif draw(st.booleans()) and isinstance(parent, dict):
            del parent[key]
        else:
            parent[key] = draw(JSON_VALUES)
    return doc


@st.composite
def results_files(draw: st.DrawFn) -> File:
    records = saved_records()
    name = draw(st.sampled_from(sorted(records)))
    data = records[name]
    how = draw(st.sampled_from(["as-is", "mutate", "mutate", "cut", "junk", "rename"]))
    if how == "mutate" and name.endswith(".json"):
        data = json.dumps(draw(mutated(json.loads(data)))).encode()
    elif how == "mutate" and name.endswith(".jsonl"):
        lines = data.decode().splitlines()
        i = draw(st.integers(0, len(lines) - 1))
        lines[i] = json.dumps(draw(mutated(json.loads(lines[i]))))
        data = ("\n".join(lines) + "\n").encode()
    elif how == "mutate":  # csv: a cell replaced
        text = data.decode()
        cut = draw(st.integers(0, len(text)))
        cell = draw(st.sampled_from(["", ",", "\n", "nan", "x", '"', "1e999", "[1,"]))
        data = (text[:cut] + cell + text[cut:]).encode()
    elif how == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    elif how == "junk":
        data = draw(st.binary(max_size=30))
    elif how == "rename":
        name = "r" + draw(st.sampled_from([".json", ".jsonl", ".csv", ".txt", ""]))
    return File(name, data)


@st.composite
def plot_lines(draw: st.DrawFn) -> Case:
    args: list[Any] = ["plot", draw(results_files())]
    if draw(st.integers(0, 9)) < 9:
        args += ["--plot", draw(outputs("plot", PLOT_SUFFIXES))]
    for flag in ("--rows", "--cols"):
        if draw(st.integers(0, 3)) == 3:
            args += [flag, draw(mostly(st.sampled_from(STRINGS[flag[2:]]), JUNK))]
    return Case(args)


GARBLED = b'{"version": "0.2.0", "config": 0.0, "trials": [{"grad_h_log10": [0.5, 0.25]}]}'


@FUZZ
@given(plot_lines())
# found by the fuzzer (each a traceback before its fix):
@example(Case(["plot", File("r.json", GARBLED), "--plot", Output("plot.svg")]))  # a part of the wrong type
@example(Case(["plot", File("r.csv", b"\xb68\xb0\n\xb7j\n"), "--plot", Output("plot.svg")]))  # not UTF-8
def test_fuzz_plot(case: Case) -> None:
    run_case(case, BUDGETS["plot"])
