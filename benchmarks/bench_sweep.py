"""`bptt sweep` end to end: points per second and the share of wall time spent in numerical work.

Run by hand:  python benchmarks/bench_sweep.py [--quick] [--workers 1,2] [--repeats 1]

The sweep of issue 3: 11 radii (0.5..1.5) x 4 T values (10, 100, 1000, 10000) x 2 cells
(identity, tanh) x 16 trials at hidden 128 = 88 points. ``--quick``: the same 66-point grid
shape at T 10..1000, 4 trials, hidden 32 (small points, so overhead shows).

Each run is a real ``bptt sweep ... --output FILE.jsonl`` process (start-up, pool start,
per-record fsync included). "Numerical work" is the sum over records of ``wall_time_s``: the
time each point spends in the worker drawing the network, running BPTT and the spectra and
summarising. The numerical share is that sum over (workers x wall time); the rest is overhead
(process and pool start-up, imports, dispatch, writing, idle workers at the end). Also
reported: the same points computed by a bare loop over the per-point work (``runner.run_point``:
``experiment.resolve``, ``Experiment.run``, the record) in one process with single-threaded
BLAS, the floor that ``--workers 1`` is compared with.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FULL = [
    "--radius",
    "0.5:1.5:11",
    "--T",
    "10,100,1000,10000",
    "--cell",
    "identity,tanh",
    "--trials",
    "16",
    "--hidden",
    "128",
]
QUICK = [
    "--radius",
    "0.5:1.5:11",
    "--T",
    "10,100,1000",
    "--cell",
    "identity,tanh",
    "--trials",
    "4",
    "--hidden",
    "32",
]
BARE = """
import json, sys, time
from bptt_cli.run.runner import run_point
points = json.load(sys.stdin)
start = time.perf_counter()
for p in points:
    run_point(p)
print(time.perf_counter() - start)
"""


def bptt() -> list[str]:
    entry = Path(sys.executable).parent / "bptt"
    return [str(entry)] if entry.exists() else [sys.executable, "-m", "bptt_cli"]


def run(grid: list[str], workers: int, env: dict[str, str]) -> tuple[float, list[dict[str, object]]]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.jsonl"
        start = time.perf_counter()
        subprocess.run(
            [*bptt(), "sweep", *grid, "--workers", str(workers), "--output", str(out)],
            check=True,
            stdout=subprocess.DEVNULL,
            env=env,
        )
        wall = time.perf_counter() - start
        records = [json.loads(line) for line in out.read_text().splitlines()]
    return wall, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small-point variant")
    parser.add_argument("--workers", default="1,2", help="comma list of --workers values")
    parser.add_argument("--repeats", type=int, default=1, help="runs per setting (medians reported)")
    args = parser.parse_args()
    grid = QUICK if args.quick else FULL
    env = {k: v for k, v in os.environ.items() if k not in ("BPTT_SCHEDULER",)}

    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print("grid:", " ".join(grid))
    print(
        f"{'run':<28} {'points':>6} {'wall s':>8} {'points/s':>9} {'numerical s':>12} {'numerical':>10} "
        f"{'overhead/pt ms':>15}"
    )
    points = None
    for workers in (int(w) for w in args.workers.split(",")):
        walls, numericals = [], []
        for _ in range(args.repeats):
            wall, records = run(grid, workers, env)
            walls.append(wall)
            numericals.append(sum(float(r["wall_time_s"]) for r in records))  # type: ignore[arg-type]
            points = [r["point"] for r in records]
        wall, numerical = statistics.median(walls), statistics.median(numericals)
        n = len(points or [])
        used = min(workers, n)
        share = numerical / (used * wall)
        overhead = (used * wall - numerical) / n * 1e3
        print(
            f"{'bptt sweep --workers ' + str(workers):<28} {n:>6} {wall:>8.2f} {n / wall:>9.2f} "
            f"{numerical:>12.2f} {share:>10.1%} {overhead:>15.1f}"
        )
    bare_env = {**env, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    bare = [
        float(
            subprocess.run(
                [sys.executable, "-c", BARE],
                input=json.dumps(points),
                capture_output=True,
                text=True,
                check=True,
                env=bare_env,
            ).stdout
        )
        for _ in range(args.repeats)
    ]
    b = statistics.median(bare)
    n = len(points or [])
    print(
        f"{'bare analyze loop (1 thread)':<28} {n:>6} {b:>8.2f} {n / b:>9.2f} "
        f"{b:>12.2f} {1:>10.1%} {0:>15.1f}"
    )


if __name__ == "__main__":
    main()
