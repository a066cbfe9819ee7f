"""`bptt advise` against one `bptt analyze` of the same network (issue 18: within 3x for the defaults).

Run by hand: ``python benchmarks/bench_advise.py [--repeats 5]``. Both commands run interleaved
(one of each in turn) in fresh processes, and in this process through the Python API; medians
and their ratio are printed as a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "defaults": [],
    "--cell tanh": ["--cell", "tanh"],
    "--cell lstm": ["--cell", "lstm"],
    "--cell tanh --T 1000": ["--cell", "tanh", "--T", "1000"],
}


def cli(command: str, args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(["bptt", command, "--T", "100", *args, "--format", "json"], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def api(command: str, args: list[str]) -> float:
    import bptt_cli

    options = {"T": 100}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        options[flag.removeprefix("--")] = int(value) if value.isdigit() else value
    start = time.perf_counter()
    getattr(bptt_cli, command)(**options).to_dict()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    repeats = parser.parse_args().repeats
    api("analyze", [])  # imports first
    api("advise", [])
    print("| case | analyze (CLI) | advise (CLI) | ratio | analyze (API) | advise (API) | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, args in CASES.items():
        keys = ("cli-analyze", "cli-advise", "api-analyze", "api-advise")
        times: dict[str, list[float]] = {k: [] for k in keys}
        for _ in range(repeats):
            for how, run in (("cli", cli), ("api", api)):
                for command in ("analyze", "advise"):
                    times[f"{how}-{command}"].append(run(command, args))
        m = {k: statistics.median(v) for k, v in times.items()}
        print(f"| {name} | {m['cli-analyze']:.3f} s | {m['cli-advise']:.3f} s | "
              f"{m['cli-advise'] / m['cli-analyze']:.2f}x | {m['api-analyze']:.3f} s | "
              f"{m['api-advise']:.3f} s | {m['api-advise'] / m['api-analyze']:.1f}x |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
