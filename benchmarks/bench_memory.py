"""Memory-efficient BPTT and the estimators, measured through the installed `bptt` command.

Run by hand:  python benchmarks/bench_memory.py [--T 1000000] [--hidden 256] [--cell tanh]

1. ``bptt analyze --hidden H --T T --cell C --format json`` in a child process: wall time,
   CPU time and peak RSS of the child (``getrusage(RUSAGE_CHILDREN)``, what ``/usr/bin/time -v``
   reports as "Maximum resident set size"), beside the ``memory`` object of its JSON and the
   ``4 T h`` floats that storing every state would take.
2. ``--checkpoint none`` against ``--checkpoint auto`` (forced to checkpoint by a small
   ``--max-memory``) at ``--compare-T`` steps: the JSON must be identical but for ``memory``.
3. The estimators of ``--truncate`` at ``--estimators-T`` steps: CPU time of each.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from typing import Any


def run(args: list[str]) -> tuple[dict[str, Any], float, float, int]:
    """JSON output, wall seconds, CPU seconds and peak RSS (bytes) of one `bptt` child process."""
    exe = shutil.which("bptt") or sys.exit("bptt is not installed in this environment")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    pid = subprocess.Popen([exe, *args, "--format", "json"], stdout=subprocess.PIPE, text=True)
    out, _ = pid.communicate()
    wall = time.perf_counter() - start
    if pid.returncode:
        sys.exit(f"bptt {' '.join(args)} failed with status {pid.returncode}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads(out), wall, cpu, after.ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--T", type=int, default=1_000_000)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--cell", default="tanh")
    parser.add_argument("--compare-T", type=int, default=5000)
    parser.add_argument("--estimators-T", type=int, default=10000)
    opts = parser.parse_args()
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '(unset)')}, cpus {os.cpu_count()}")

    size = ["--hidden", str(opts.hidden), "--cell", opts.cell]
    out, wall, cpu, peak = run(["analyze", "--T", str(opts.T), *size])
    stored = 4 * opts.T * opts.hidden * 8
    print(f"analyze T={opts.T} h={opts.hidden} {opts.cell}: wall {wall:.1f} s, cpu {cpu:.1f} s, "
          f"peak RSS {peak / 2**20:.0f} MiB (storing every state: {stored / 2**30:.1f} GiB)")
    print(f"  memory: {out['memory']}")

    base = ["analyze", "--T", str(opts.compare_T), *size, "--loss", "mean", "--truncate", "10", "--clip", "1"]
    a, *_ = run([*base, "--checkpoint", "none"])
    b, *_ = run([*base, "--max-memory", "24M"])
    same = {k: v for k, v in a.items() if k not in ("memory", "config")} == {
        k: v for k, v in b.items() if k not in ("memory", "config")
    }
    print(f"checkpoint none vs every {b['memory']['checkpoint_every']} at T={opts.compare_T}: "
          f"{'identical' if same else 'DIFFERENT'} JSON")

    T = str(opts.estimators_T)
    for extra in ([], ["--truncate", "10"], ["--truncate", "10", "--truncate-mode", "chunk"],
                  ["--truncate", "random", "--keep-prob", "0.5", "--draws", "100"]):
        _, wall, cpu, _ = run(["analyze", "--T", T, *size, "--loss", "mean", *extra])
        print(f"analyze T={T} {' '.join(extra) or '(full only)'}: wall {wall:.1f} s, cpu {cpu:.1f} s")


if __name__ == "__main__":
    main()
