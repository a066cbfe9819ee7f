"""Issue 17's table in one run: ``bptt analyze`` end to end against a bare numpy recursion, JAX and
torch.autograd, the theory's extra cost, 32 trials, JSON/CSV writing, sweeps (throughput, a
million-point grid streamed, resume).

Run by hand:  python benchmarks/bench_speed.py [--repeats 3] [--baseline DIR] [--quick] [--skip ...]

Every row is tanh, mean loss, d = q = 16, float64, one BLAS thread (as ``bptt`` uses; set before
numpy loads). Times are medians of interleaved repeats (one of each in turn) measured in this run,
and every ratio is of two numbers of this run.

- ``bare``: a plain numpy loop doing only the forward pass, the backward recursion with per-step
  norms and the parameter gradients (``bench_core.bare_numpy``), in this process.
- ``bptt``: the command as a user runs it, default options, JSON to a file, in a fresh process,
  minus the start-up (``bptt analyze --T 2 --hidden 2`` measured in the same run); ``--baseline
  DIR`` runs the same command from an older source tree too (``PYTHONPATH=DIR``).
- ``JAX jit``: ``jax.grad`` of the same loss through ``lax.scan``, jitted; the first call (trace
  and compile) and the steady state. ``torch``: autograd on a loop over t (as ``bench_core``).
  Each only where installed; rows whose estimated time exceeds ``--budget`` are skipped.
- theory: ``analysis.analyze`` with and without the theory, in this process; its extra cost over
  the gradient work.
- JSON and CSV: writing the 32-trial record with the writers of before issue 17 (kept below, per
  number) and today's (in bulk), the texts checked equal.
- sweeps: ``configs/radius-vs-T.toml`` on 2 workers (wall time), the million-point grid of the
  issue (time to the first record, records and peak RSS of all the processes in ``--stream-s``
  seconds), and ``--resume`` over a file of ``--resume-records`` records (time to the first new one).

Python files are compiled to bytecode once (``PYTHONDONTWRITEBYTECODE`` is dropped for the
subprocesses), as in an installed package.
"""

from __future__ import annotations

import os
import sys

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import csv  # noqa: E402
import io  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from bench_core import bare_each, bare_numpy, blas_rates, torch_autograd  # noqa: E402

from bptt_cli.core.network import Network, Spec, build_network  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ROWS = [(64, 1000), (64, 10000), (256, 10000), (1024, 1000), (1024, 10000)]
SIZES = ["--cell", "tanh", "--loss", "mean", "--inputs-dim", "16", "--outputs-dim", "16"]


def env(baseline: Path | None = None) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out.update(TERM="dumb", COLUMNS="120")
    if baseline is not None:
        out["PYTHONPATH"] = str(baseline)
    return out


def command(*args: str, baseline: Path | None = None) -> Callable[[], float]:
    """A function running ``bptt ARGS`` in a fresh process, returning its wall seconds."""
    cmd = [sys.executable, "-m", "bptt_cli", *args]
    environment = env(baseline)

    def run() -> float:
        t0 = time.perf_counter()
        subprocess.run(cmd, env=environment, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t0

    return run


def timed(fn: Callable[[], object]) -> Callable[[], float]:
    def run() -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    return run


def medians(fns: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Median seconds of each, the functions taking turns."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(fn())
    return {k: statistics.median(v) for k, v in times.items()}


# -- JAX (optional) ------------------------------------------------------------------------------


def jax_runner(net: Network) -> tuple[Callable[[], object], Callable[[], object]] | None:
    """(first call, steady call) of a jitted jax.grad of the same loss, with per-step gradient norms."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    W, Wx, Wq, bh, bq, x, y = (jnp.asarray(np.ascontiguousarray(a[0])) for a in (
        net.W_hh, net.W_hx, net.W_qh, net.b_h, net.b_q, net.x, net.y))
    T = x.shape[0]

    def loss(params: Any, hs0: Any) -> Any:
        W, Wx, Wq, bh, bq = params

        def step(h: Any, inp: Any) -> Any:
            xt, yt, dh = inp
            h = jnp.tanh(W @ h + Wx @ xt + bh) + dh  # dh: zero, for dL/dh_t
            e = Wq @ h + bq - yt
            return h, 0.5 * jnp.sum(e * e)

        _, losses = jax.lax.scan(step, jnp.zeros(W.shape[0]), (x, y, hs0))
        return jnp.mean(losses)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    zeros = jnp.zeros((T, W.shape[0]))

    def call() -> object:
        _, gh = grad((W, Wx, Wq, bh, bq), zeros)
        return jnp.linalg.norm(gh, axis=1).block_until_ready()

    return call, call


# -- JSON and CSV writers of before issue 17 (per number), for the before/after rows ---------------


def legacy_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): legacy_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [legacy_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return legacy_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def legacy_write_json(obj: Any, write: Callable[[str], object]) -> None:
    if isinstance(obj, dict):
        write("{")
        for j, (k, v) in enumerate(obj.items()):
            write(("" if j == 0 else ", ") + json.dumps(str(k)) + ": ")
            legacy_write_json(v, write)
        write("}")
    elif (isinstance(obj, np.ndarray) and obj.ndim > 1) or isinstance(obj, list | tuple):
        write("[")
        for j, v in enumerate(obj):
            if j:
                write(", ")
            legacy_write_json(v, write)
        write("]")
    elif isinstance(obj, np.ndarray) and obj.ndim == 1 and obj.dtype.kind in "fiub":
        write("[")
        for j in range(0, len(obj), 8192):
            values = legacy_jsonable(obj[j : j + 8192].tolist())
            write(("" if j == 0 else ", ") + json.dumps(values, allow_nan=False)[1:-1])
        write("]")
    else:
        write(json.dumps(legacy_jsonable(obj), allow_nan=False))


def legacy_write_csv(columns: dict[str, Any], write: Callable[[str], object]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    columns = dict(columns)
    ints = [columns.pop(k) for k in ("trial", "t", "lag")]
    floats = list(columns.values())
    for r in range(len(ints[0])):
        texts = ("" if not np.isfinite(c[r]) else repr(float(c[r])) for c in floats)
        writer.writerow([*(int(c[r]) for c in ints), *texts])
        if r % 4096 == 4095:
            write(buf.getvalue())
            buf.seek(0)
            buf.truncate()
    write(buf.getvalue())


# -- the sections ---------------------------------------------------------------------------------


def section_machine() -> None:
    print("## Machine\n")
    cpu = platform.processor() or platform.machine()
    print(f"{cpu}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, numpy {np.__version__}, "
          f"one BLAS thread; load average at start {os.getloadavg()[0]:.2f}\n")
    print("| h | dgemm GF/s | dgemv GF/s |\n|---|---|---|")
    for h in (64, 256, 1024):
        gemm, gemv, _ = blas_rates(h)
        print(f"| {h} | {gemm:.1f} | {gemv:.1f} |")
    print()


def section_startup(repeats: int, baseline: Path | None) -> float:
    print("## Start-up (fresh processes; targets: --help < 0.15 s, analyze --T 100 < 0.35 s)\n")
    fns = {
        "bptt --help": command("--help"),
        "bptt analyze --T 100": command("analyze", "--T", "100"),
        "bptt analyze --T 2 --hidden 2": command("analyze", "--T", "2", "--hidden", "2"),
        "python -c 'import numpy'": lambda: _python("import numpy"),
    }
    if baseline is not None:
        fns["before: bptt --help"] = command("--help", baseline=baseline)
        fns["before: bptt analyze --T 100"] = command("analyze", "--T", "100", baseline=baseline)
    for fn in fns.values():  # bytecode compiled, caches warm
        fn()
    t = medians(fns, max(repeats, 5))
    print("| command | median s |\n|---|---|")
    for k, v in t.items():
        print(f"| `{k}` | {v:.3f} |")
    print()
    return t["bptt analyze --T 2 --hidden 2"]


def _python(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env(), check=True)
    return time.perf_counter() - t0


def section_table(repeats: int, startup: float, baseline: Path | None, budget: float, out: Path,
                  rows: list[tuple[int, int]]) -> None:
    print("## bptt analyze end to end against the bare recursion (tanh, mean loss, d = q = 16, one trial)\n")
    print("`bptt` is the process's wall time minus the start-up measured above "
          f"({startup:.3f} s); target for h >= 256 and T = 10^4: at most 1.5x bare.\n")
    head = ["h", "T", "bare numpy", "JAX jit steady", "JAX first call", "torch.autograd", "bptt",
            "bptt / bare"]
    if baseline is not None:
        head += ["before (bptt)", "before / bare"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for h, T in rows:
        spec = Spec(cell="tanh", loss="mean", T=T, hidden=h, inputs_dim=16, outputs_dim=16, trials=1)
        net = build_network(spec)
        args = ["analyze", *SIZES, "--hidden", str(h), "--T", str(T), "--format", "json",
                "--output", str(out)]
        fns: dict[str, Callable[[], float]] = {"bare": timed(lambda net=net: bare_numpy(net, "tanh", "mean")),
                                               "bptt": command(*args)}
        if baseline is not None:
            fns["before"] = command(*args, baseline=baseline)
        jax_calls = jax_runner(net)
        first = None
        if jax_calls is not None:
            first = timed(jax_calls[0])()
            fns["jax"] = timed(jax_calls[1])
        if _have_torch() and T * h * h <= budget * 2e8:
            fns["torch"] = timed(lambda net=net: torch_autograd(net, "tanh", "mean"))
        t = medians(fns, repeats)
        bptt = t["bptt"] - startup
        cells = [str(h), str(T), f"{t['bare']:.3f}", _s(t.get("jax")), _s(first), _s(t.get("torch")),
                 f"{bptt:.3f}", f"{bptt / t['bare']:.2f}x"]
        if baseline is not None:
            before = t["before"] - startup
            cells += [f"{before:.3f}", f"{before / t['bare']:.2f}x"]
        print("| " + " | ".join(cells) + " |", flush=True)
    print()


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _have_torch() -> bool:
    try:
        import torch

        torch.set_num_threads(1)
        return True
    except ImportError:
        return False


def section_theory(repeats: int, rows: list[tuple[int, int]]) -> None:
    from bptt_cli.analysis.analyze import analyze

    print("## The theory's extra cost (in process; target: at most 30 % of the gradient work)\n")
    print("| h | T | analyze without theory | with theory | extra | extra / gradient work |")
    print("|---|---|---|---|---|---|")
    for h, T in rows:
        spec = Spec(cell="tanh", loss="mean", T=T, hidden=h, inputs_dim=16, outputs_dim=16, trials=1)
        t = medians({"core": timed(lambda spec=spec: analyze(spec)),
                     "theory": timed(lambda spec=spec: analyze(spec, theory=True))}, repeats)
        extra = t["theory"] - t["core"]
        share = 100 * extra / t["core"]
        print(f"| {h} | {T} | {t['core']:.3f} | {t['theory']:.3f} | {extra:.3f} | {share:.0f} % |",
              flush=True)
    print()


def section_trials(repeats: int, startup: float, baseline: Path | None, out: Path) -> None:
    print("## 32 trials, h 64, T 2000 (target: at most the time of 32 separate bare runs)\n")
    spec = Spec(cell="tanh", loss="mean", T=2000, hidden=64, inputs_dim=16, outputs_dim=16, trials=32)
    net = build_network(spec)
    singles = [build_network(spec, seeds=[seq]) for seq in net.seeds]
    args = ["analyze", *SIZES, "--hidden", "64", "--T", "2000", "--trials", "32", "--format", "json",
            "--output", str(out)]
    fns = {"bare x 32": timed(lambda: bare_each(singles, "tanh", "mean")),
           "bare stacked": timed(lambda: bare_numpy(net, "tanh", "mean")), "bptt": command(*args)}
    if baseline is not None:
        fns["before"] = command(*args, baseline=baseline)
    t = medians(fns, repeats)
    bptt = t["bptt"] - startup
    more = baseline is not None
    print("| 32 bare runs | bare, trials stacked | bptt end to end | bptt / 32 bare runs |"
          + (" before | before / 32 bare |" if more else ""))
    print("|---|---|---|---|" + ("---|---|" if more else ""))
    line = f"| {t['bare x 32']:.3f} | {t['bare stacked']:.3f} | {bptt:.3f} | {bptt / t['bare x 32']:.2f}x |"
    if baseline is not None:
        before = t["before"] - startup
        line += f" {before:.3f} | {before / t['bare x 32']:.2f}x |"
    print(line + "\n")


def section_writers(repeats: int) -> None:
    import bptt_cli
    from bptt_cli.io.jsontext import write_json
    from bptt_cli.io.records import analysis_columns, write_analysis_csv

    print("## JSON and CSV writing, 32 trials, h 64, T 2000 (target: at least 10x faster)\n")
    result = bptt_cli.analyze(T=2000, hidden=64, trials=32, cell="tanh", loss="mean", inputs_dim=16,
                              outputs_dim=16)
    record = result.record()
    columns = analysis_columns(result.analysis)
    texts: dict[str, list[str]] = {}

    def writer(fn: Callable[[Callable[[str], object]], None], key: str) -> Callable[[], float]:
        def run() -> float:
            buf = io.StringIO()
            t0 = time.perf_counter()
            fn(buf.write)
            dt = time.perf_counter() - t0
            texts[key] = [buf.getvalue()]
            return dt

        return run

    t = medians({
        "json before": writer(lambda w: legacy_write_json(record, w), "json before"),
        "json now": writer(lambda w: write_json(record, w), "json now"),
        "csv before": writer(lambda w: legacy_write_csv(columns, w), "csv before"),
        "csv now": writer(lambda w: write_analysis_csv(result.analysis, w), "csv now"),
    }, repeats)
    same_json = texts["json before"] == texts["json now"]
    same_csv = texts["csv before"] == texts["csv now"]
    size = len(texts["json now"][0]) / 1e6
    print("| output | before s | now s | speed-up | identical bytes |\n|---|---|---|---|---|")
    print(f"| JSON ({size:.1f} MB) | {t['json before']:.3f} | {t['json now']:.3f} | "
          f"{t['json before'] / t['json now']:.1f}x | {same_json} |")
    print(f"| CSV ({len(texts['csv now'][0]) / 1e6:.1f} MB) | {t['csv before']:.3f} | {t['csv now']:.3f} | "
          f"{t['csv before'] / t['csv now']:.1f}x | {same_csv} |\n")


def section_sweep(repeats: int, baseline: Path | None, tmp: Path) -> None:
    print("## Sweep throughput: configs/radius-vs-T.toml (44 points x 8 trials, h 64), 2 workers\n")
    fns = {}
    for label, base in (("now", None), ("before", baseline)):
        if label == "before" and base is None:
            continue
        out = tmp / f"sweep-{label}.jsonl"
        config = REPO / "configs" / "radius-vs-T.toml"
        args = ["sweep", "--config", str(config), "--workers", "2", "--output", str(out)]
        fns[label] = command(*args, baseline=base)
    t = medians(fns, repeats)
    print("| run | wall s | of today's 6.8 s |\n|---|---|---|")
    for k, v in t.items():
        print(f"| {k} | {v:.2f} | {100 * v / 6.8:.0f} % |")
    print()


def watch(cmd: list[str], out: Path, seconds: float) -> tuple[float | None, int, float]:
    """Run ``cmd`` for ``seconds``: when ``out`` got its first new line, how many lines it has, the
    peak RSS (MB) of the process and its children."""
    import psutil

    before = out.read_bytes().count(b"\n") if out.exists() else 0
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ps = psutil.Process(proc.pid)
    first, peak = None, 0
    while time.perf_counter() - t0 < seconds and proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, sum(p.memory_info().rss for p in [ps, *ps.children(recursive=True)]))
        if first is None and out.exists() and out.read_bytes().count(b"\n") > before:
            first = time.perf_counter() - t0
        time.sleep(0.05)
    proc.send_signal(2)  # Ctrl-C: the records so far are kept
    proc.wait()
    return first, out.read_bytes().count(b"\n") if out.exists() else 0, peak / 2**20


def section_stream(tmp: Path, seconds: float, resume_records: int) -> None:
    print("## A million-point grid, streamed (targets: first record within 5 s, memory under 500 MB)\n")
    grid = ["--radius", "0.1:2:100", "--T", "10:1000:100", "--hidden", "8:64:100"]
    out = tmp / "million.jsonl"
    cmd = [sys.executable, "-m", "bptt_cli", "sweep", *grid, "--workers", "2", "--output", str(out)]
    first, lines, peak = watch(cmd, out, seconds)
    print("| run | first new record s | records after | peak RSS, all processes |\n|---|---|---|---|")
    label = f"`bptt sweep {' '.join(grid)} --workers 2`"
    print(f"| {label} | {_s(first)} | {lines} in {seconds:g} s | {peak:.0f} MB |")
    big = tmp / "resume.jsonl"  # a file of resume_records records of the grid's first points
    line = out.read_text().splitlines()[0]
    rec = json.loads(line)
    from bptt_cli.api import options as opt

    axes = opt.parse_axes({"radius": "0.1:2:100", "T": "10:1000:100", "hidden": "8:64:100"})
    names = [a.name for a in axes]
    with big.open("w") as f:
        for combo in itertools.islice(itertools.product(*(a.values for a in axes)), resume_records):
            f.write(json.dumps({**rec, "point": dict(zip(names, combo, strict=True))}) + "\n")
    first, lines, peak = watch([*cmd[:-1], str(big), "--resume"], big, max(seconds, 120))
    size = big.stat().st_size / 1e6
    print(f"| the same, `--resume` over {resume_records} records ({size:.0f} MB) | {_s(first)} | {lines} | "
          f"{peak:.0f} MB |\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline", type=Path, help="a source tree of an older bptt, run beside this one")
    ap.add_argument("--quick", action="store_true", help="h 64 and 256 only")
    ap.add_argument("--budget", type=float, default=30.0, help="skip torch where it would take longer (s)")
    ap.add_argument("--stream-s", type=float, default=20.0)
    ap.add_argument("--resume-records", type=int, default=200000)
    ap.add_argument("--skip", nargs="*", default=[],
                    choices=["table", "theory", "trials", "writers", "sweep", "stream"])
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    rows = [r for r in ROWS if not args.quick or r[0] < 1024]
    print(f"# bench_speed.py, {time.strftime('%Y-%m-%d %H:%M')}, repeats {args.repeats}\n")
    section_machine()
    startup = section_startup(args.repeats, args.baseline)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "table" not in args.skip:
            section_table(args.repeats, startup, args.baseline, args.budget, tmp / "a.json", rows)
        if "theory" not in args.skip:
            section_theory(args.repeats, rows)
        if "trials" not in args.skip:
            section_trials(args.repeats, startup, args.baseline, tmp / "t.json")
        if "writers" not in args.skip:
            section_writers(args.repeats)
        if "sweep" not in args.skip:
            section_sweep(args.repeats, args.baseline, tmp)
        if "stream" not in args.skip:
            section_stream(tmp, args.stream_s, args.resume_records)


if __name__ == "__main__":
    main()
