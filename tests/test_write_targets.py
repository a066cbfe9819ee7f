"""Output paths that are not plain files (issue 16, failure 1).

A regular file (or a new path) is replaced atomically; a symbolic link is followed and the file
it points to replaced (the link stays); a character device, FIFO or socket, and a descriptor of
the process (``/dev/stdout``), is written in place; a write error there is one line, exit 2.
Nothing else is created, removed or renamed, for every file the tool writes: ``--output`` of
analyze, spectrum, truncate and sweep, ``--plot`` and ``bptt plot``.

No test here writes to the real ``/dev/full`` unless the code under test is known to write it
in place (:func:`outputs.guard_real_device`); the others use a clone made in ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from clitools import assert_bad_input, bptt, installed_bptt, plain_env, run_process
from outputs import (
    FORMAT_OF,
    FifoReader,
    check_complete,
    full_device,
    guard_real_device,
    is_full_device,
)

ANALYZE = ["analyze", "--T", "5", "--hidden", "3"]
SPECTRUM = ["spectrum", "--hidden", "3"]
TRUNCATE = ["truncate", "--T", "6", "--hidden", "3", "--K", "2", "--keep-prob", "0.5", "--draws", "3"]
SWEEP = ["sweep", "--T", "5,6", "--hidden", "3", "--workers", "1"]

Args = Callable[[Path, Path], list[str]]  # (scratch directory, output path) -> command line


def output(command: list[str]) -> Args:
    return lambda scratch, path: [*command, "--output", str(path)]


def plot_of_analyze(scratch: Path, path: Path) -> list[str]:
    return [*ANALYZE, "--plot", str(path)]


def bptt_plot(scratch: Path, path: Path) -> list[str]:
    record = scratch / "record.json"
    if not record.exists():
        assert bptt(*ANALYZE, "--format", "json", "--output", record).exit_code == 0
    return ["plot", str(record), "--plot", str(path)]


CASES: dict[str, tuple[Args, str]] = {
    "analyze-json": (output(ANALYZE), ".json"),
    "analyze-csv": (output(ANALYZE), ".csv"),
    "analyze-table": (output(ANALYZE), ".txt"),
    "spectrum-json": (output(SPECTRUM), ".json"),
    "truncate-json": (output(TRUNCATE), ".json"),
    "sweep-jsonl": (output(SWEEP), ".jsonl"),
    "sweep-json": (output(SWEEP), ".json"),
    "sweep-csv": (output(SWEEP), ".csv"),
    "sweep-table": (output(SWEEP), ".txt"),
    "analyze-plot": (plot_of_analyze, ".svg"),
    "bptt-plot": (bptt_plot, ".svg"),
}


@pytest.fixture
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory for inputs, apart from the output's (whose listing the tests compare)."""
    return tmp_path_factory.mktemp("inputs")


# ------------------------------------------------------------------ symbolic links


@pytest.mark.parametrize("case", list(CASES))
def test_a_symbolic_link_stays_and_the_file_it_points_to_is_replaced(
    tmp_path: Path, scratch: Path, case: str
) -> None:
    args, suffix = CASES[case]
    data = tmp_path / "data"
    data.mkdir()
    real = data / f"target{suffix}"
    real.write_text("old\n")
    link = tmp_path / f"link{suffix}"
    link.symlink_to(Path("data") / real.name)
    result = bptt(*args(scratch, link))
    assert result.exit_code == 0, result.stderr
    assert link.is_symlink() and os.readlink(link) == f"data/{real.name}"
    check_complete(real.read_bytes(), FORMAT_OF[suffix])
    assert sorted(os.listdir(tmp_path)) == ["data", link.name]
    assert os.listdir(data) == [real.name]


def test_a_dangling_link_and_a_chain_of_links_lead_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    dangling = tmp_path / "new.json"
    dangling.symlink_to("d/made.json")  # points to a file not there yet
    assert bptt(*ANALYZE, "--output", dangling).exit_code == 0
    assert dangling.is_symlink()
    assert json.loads((tmp_path / "d" / "made.json").read_text())["config"]["T"] == 5
    second = tmp_path / "second.jsonl"
    (tmp_path / "d" / "first.jsonl").symlink_to("records.jsonl")
    second.symlink_to("d/first.jsonl")
    assert bptt(*SWEEP, "--output", second).exit_code == 0
    assert (tmp_path / "d" / "first.jsonl").is_symlink() and second.is_symlink()
    check_complete((tmp_path / "d" / "records.jsonl").read_bytes(), "jsonl")
    assert sorted(os.listdir(tmp_path / "d")) == ["first.jsonl", "made.json", "records.jsonl"]


def test_a_replaced_file_keeps_its_permissions(tmp_path: Path) -> None:
    for suffix, args in ((".json", ANALYZE), (".json", SWEEP), (".csv", SWEEP)):
        out = tmp_path / f"private{len(args)}{suffix}"
        out.write_text("old\n")
        out.chmod(0o600)
        assert bptt(*args, "--output", out).exit_code == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o600, (args, suffix)


# ------------------------------------------------------------------ FIFOs, sockets, devices


@pytest.mark.parametrize("case", list(CASES))
def test_a_fifo_is_written_in_place(tmp_path: Path, scratch: Path, case: str) -> None:
    args, suffix = CASES[case]
    fifo = tmp_path / f"pipe{suffix}"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    reader.start()
    result = bptt(*args(scratch, fifo))
    assert result.exit_code == 0, result.stderr
    check_complete(reader.result(timeout=10), FORMAT_OF[suffix])
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert os.listdir(tmp_path) == [fifo.name]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([*ANALYZE, "--gain", "1", "--radius", "1"], ("--gain conflicts with --radius",)),
        ([*ANALYZE, "--format", "csv"], ("--format csv conflicts",)),
        ([*SWEEP, "--gain", "1", "--radius", "1,2"], ("--gain conflicts with --radius",)),
        ([*SWEEP, "--resume"], ("cannot resume from", "FIFO")),
    ],
)
def test_refusals_never_open_a_fifo(tmp_path: Path, args: list[str], words: tuple[str, ...]) -> None:
    """Opening a FIFO to write waits for a reader: nothing may open it before the output is written."""
    fifo = tmp_path / "nobody-reads.json"
    if "sweep" in args:
        fifo = fifo.with_suffix(".jsonl")
    os.mkfifo(fifo)
    proc = run_process(installed_bptt(), *args, "--output", str(fifo), timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words), proc.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and os.listdir(tmp_path) == [fifo.name]


@pytest.mark.parametrize("case", ["analyze-json", "sweep-jsonl", "sweep-json"])
def test_a_socket_is_written_in_place(tmp_path: Path, scratch: Path, case: str) -> None:
    args, suffix = CASES[case]
    path = tmp_path / f"s{suffix}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    server.settimeout(10)
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            got.append(b"".join(iter(lambda: conn.recv(65536), b"")))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        result = bptt(*args(scratch, path))
        assert result.exit_code == 0, result.stderr
        thread.join(10)
        assert got, "nothing connected to the socket"
        check_complete(got[0], FORMAT_OF[suffix])
        assert stat.S_ISSOCK(os.lstat(path).st_mode) and os.listdir(tmp_path) == [path.name]
    finally:
        server.close()


FULL_CASES = {
    "analyze-json": (ANALYZE, "json"),
    "analyze-table": (ANALYZE, "table"),
    "spectrum-csv": (SPECTRUM, "csv"),
    "truncate-json": (TRUNCATE, "json"),
    "sweep-jsonl": (SWEEP, "jsonl"),
    "sweep-json": (SWEEP, "json"),
    "sweep-csv": (SWEEP, "csv"),
    "sweep-table": (SWEEP, "table"),
}


@pytest.mark.parametrize("case", list(FULL_CASES))
def test_a_full_device_is_one_line_and_stays_a_device(tmp_path: Path, case: str) -> None:
    args, fmt = FULL_CASES[case]
    full = full_device(tmp_path)
    result = bptt(*args, "--format", fmt, "--output", full)
    assert_bad_input(result, f"cannot write {full}: No space left on device")
    assert is_full_device(full) and os.listdir(tmp_path) == ["full"]


def test_a_plot_to_a_full_device(tmp_path: Path) -> None:
    full = full_device(tmp_path)
    link = tmp_path / "plot.svg"  # the format comes from the suffix: a link named .svg to the device
    link.symlink_to("full")
    assert_bad_input(bptt(*ANALYZE, "--plot", link), f"cannot write {link}: No space left on device")
    assert is_full_device(full) and link.is_symlink() and sorted(os.listdir(tmp_path)) == ["full", "plot.svg"]


def test_the_real_dev_full_stays_a_device() -> None:
    guard_real_device("/dev/full")
    full = Path("/dev/full")
    assert is_full_device(full)
    before = sorted(os.listdir("/dev"))
    for args in ([*ANALYZE, "--format", "json"], [*SWEEP, "--format", "jsonl"]):
        assert_bad_input(bptt(*args, "--output", full), "cannot write /dev/full: No space left on device")
    assert is_full_device(full) and sorted(os.listdir("/dev")) == before


def test_a_block_device_is_refused_before_anything(tmp_path: Path) -> None:
    disk = tmp_path / "disk.json"
    try:
        os.mknod(disk, stat.S_IFBLK | 0o600, os.makedev(7, 200))  # a loop device number, never opened
    except OSError as e:
        pytest.skip(f"cannot make a device node here ({e.strerror})")
    assert_bad_input(bptt(*ANALYZE, "--output", disk), f"cannot write {disk}", "block device")
    assert stat.S_ISBLK(os.lstat(disk).st_mode)


# ------------------------------------------------------------------ /dev/stdout


def _stdout_link(tmp_path: Path) -> Path:
    """A link as /dev/stdout is one (to /proc/self/fd/1), in ``tmp_path``: safe on any code."""
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")
    return link


def _to(stdout: int | None, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [installed_bptt(), *args], stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE, env=plain_env(), timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("real", [False, True], ids=["a-link-to-fd-1", "dev-stdout"])
@pytest.mark.parametrize(
    ("args", "fmt"), [(ANALYZE, "json"), (SWEEP, "jsonl"), (SWEEP, "json"), (ANALYZE, "table")]
)
def test_dev_stdout_is_written_in_place(tmp_path: Path, real: bool, args: list[str], fmt: str) -> None:
    if real:
        guard_real_device("/dev/stdout")
    path = "/dev/stdout" if real else str(_stdout_link(tmp_path))
    before = sorted(os.listdir(tmp_path))
    piped = _to(None, *args, "--format", fmt, "--output", path)  # stdout a pipe
    assert piped.returncode == 0, piped.stderr.decode()
    check_complete(piped.stdout, fmt)
    log = tmp_path / "log.txt"  # stdout a file opened to append: kept, written after what it holds
    log.write_bytes(b"earlier lines\n")
    with open(log, "ab") as f:
        appended = _to(f.fileno(), *args, "--format", fmt, "--output", path)
    assert appended.returncode == 0, appended.stderr.decode()
    data = log.read_bytes()
    assert data.startswith(b"earlier lines\n")
    check_complete(data.removeprefix(b"earlier lines\n"), fmt)
    assert sorted(os.listdir(tmp_path)) == sorted([*before, "log.txt"])
    assert Path("/dev/stdout").is_symlink() and os.readlink("/dev/stdout") == "/proc/self/fd/1"


def test_dev_stdout_without_format_asks_for_one() -> None:
    guard_real_device("/dev/stdout")
    for args in (ANALYZE, SWEEP):
        proc = _to(None, *args, "--output", "/dev/stdout")
        assert proc.returncode == 2 and proc.stdout == b""
        assert proc.stderr.decode().splitlines() == [
            "bptt: error: cannot tell the format of /dev/stdout (standard output) from its name: "
            f"give --format ({'table, json or csv' if args is ANALYZE else 'table, jsonl, json or csv'})"
        ]


def test_stdout_on_a_full_device_is_one_line(tmp_path: Path) -> None:
    full = full_device(tmp_path)
    for args in ([*ANALYZE, "--format", "json"], [*SWEEP, "--format", "jsonl"], ANALYZE):
        with open(full, "wb") as f:
            proc = _to(f.fileno(), *args)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.decode().splitlines() == [
            "bptt: error: cannot write standard output: No space left on device"
        ]
    assert is_full_device(full)
