"""bptt's BPTT core against a bare numpy recursion, PyTorch autograd and the machine's BLAS rates.

Run by hand:  python benchmarks/bench_core.py [--quick] [--repeats 3] [--budget 60] [--threads 1]

"The same work": float64 forward pass, every dL/dh_t (its norm for t = 1..T) and every
parameter gradient, for the given cell and loss. The bare recursion is what a careful user
writes in numpy: one matrix-vector product per step each way (all trials stacked, one Python
step for all of them), parameter gradients by one GEMM over t; no protection against
overflow. ``bare x n`` is the same recursion run once per trial (what a per-trial script does).
PyTorch autograd (a loop over t, ``retain_grad`` on every h_t, ``backward()``) runs when torch
is importable, for one trial.

Timings are medians of interleaved repeats (bptt, bare, ... in turn) measured in one run;
ratios are bptt / bare, measured in the same run. ``GF/s`` counts the two matrix-vector
products per step and trial (``4 h^2`` flops), to compare with the dgemv rate measured in the
same run. BLAS threads: ``--threads`` (default 1, as the ``bptt`` command uses); set before
numpy is imported. Rows whose estimated time exceeds ``--budget`` seconds per run, or whose
arrays exceed ``--max-gb``, are skipped and say so.
"""

from __future__ import annotations

import argparse
import os
import sys


def _threads_from_argv() -> str:
    for i, arg in enumerate(sys.argv):
        if arg == "--threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return "1"


for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = _threads_from_argv()

import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from functools import partial  # noqa: E402

import numpy as np  # noqa: E402
from timing import interleaved  # noqa: E402

from bptt_cli.core.cells import CELLS  # noqa: E402
from bptt_cli.core.elman import bptt  # noqa: E402
from bptt_cli.core.network import Network, Spec, build_network  # noqa: E402


def bare_numpy(net: Network, cell: str, loss: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A plain float64 BPTT of every trial, trials batched (n, ...), no scaling."""
    W, Wx, Wq, bh, bq, x, y = net.W_hh, net.W_hx, net.W_qh, net.b_h, net.b_q, net.x, net.y
    n, T, h, _, _ = net.shape
    phi = np.tanh if cell == "tanh" else (lambda a: a)
    U = np.matmul(x, np.swapaxes(Wx, -1, -2)) + bh[:, None, :]
    H = np.zeros((n, T + 1, h))
    WT = np.swapaxes(W, -1, -2)
    for t in range(T):
        H[:, t + 1] = phi(np.matmul(H[:, t, None, :], WT)[:, 0] + U[:, t])
    E = np.matmul(H[:, 1:], np.swapaxes(Wq, -1, -2)) + bq[:, None, :] - y
    dO = E / T if loss == "mean" else np.concatenate([np.zeros_like(E[:, :-1]), E[:, -1:]], axis=1)
    local = np.matmul(dO, Wq)
    dphi = 1.0 - H[:, 1:] ** 2 if cell == "tanh" else np.ones((n, T, h))
    G = np.empty((n, T, h))
    D = np.empty((n, T, h))
    g = local[:, -1]
    for t in range(T - 1, -1, -1):
        G[:, t] = g
        D[:, t] = dphi[:, t] * g
        if t:
            g = np.matmul(D[:, t, None, :], W)[:, 0] + local[:, t - 1]
    norms = np.linalg.norm(G, axis=-1)
    grads = {
        "W_hh": np.matmul(np.swapaxes(D, -1, -2), H[:, :-1]),
        "W_hx": np.matmul(np.swapaxes(D, -1, -2), x),
        "b_h": D.sum(axis=1),
        "W_qh": np.matmul(np.swapaxes(dO, -1, -2), H[:, 1:]),
        "b_q": dO.sum(axis=1),
    }
    return norms, grads


def bare_each(singles: list[Network], cell: str, loss: str) -> None:
    """The bare recursion once per trial."""
    for net in singles:
        bare_numpy(net, cell, loss)


def torch_autograd(net: Network, cell: str, loss: str) -> None:  # pragma: no cover - optional
    import torch

    W, Wx, Wq, bh, bq, x, y = (torch.tensor(np.ascontiguousarray(a[0])) for a in (
        net.W_hh, net.W_hx, net.W_qh, net.b_h, net.b_q, net.x, net.y))
    for p in (W, Wx, Wq, bh, bq):
        p.requires_grad_(True)
    T = x.shape[0]
    h = torch.zeros(W.shape[0], dtype=torch.float64)
    hs, total = [], 0.0
    for t in range(T):
        a = Wx @ x[t] + W @ h + bh
        h = torch.tanh(a) if cell == "tanh" else a
        h.retain_grad()
        hs.append(h)
        if loss == "mean" or t == T - 1:
            total = total + 0.5 * ((Wq @ h + bq - y[t]) ** 2).sum()
    (total / T if loss == "mean" else total).backward()
    [hh.grad.norm() for hh in hs]


def blas_rates(h: int) -> tuple[float, float, float]:
    """GF/s of dgemm (h x h times h x h), dgemv (h x h times h) and seconds per dgemv."""
    rng = np.random.default_rng(0)
    A, B, v = rng.standard_normal((h, h)), rng.standard_normal((h, h)), rng.standard_normal(h)
    reps = max(3, int(2e9 / h**3))
    A @ B
    t0 = time.perf_counter()
    for _ in range(reps):
        A @ B
    gemm = 2 * h**3 * reps / (time.perf_counter() - t0) / 1e9
    reps = max(10, int(2e8 / h**2))
    t0 = time.perf_counter()
    for _ in range(reps):
        A @ v
    gemv_s = (time.perf_counter() - t0) / reps
    return gemm, 2 * h**2 / gemv_s / 1e9, gemv_s


def startup(repeats: int) -> dict[str, float]:
    """Median wall seconds of ``bptt --help`` and ``bptt analyze --T 100`` (fresh processes)."""
    cmds = {"bptt --help": ["--help"], "bptt analyze --T 100": ["analyze", "--T", "100"]}
    out = {}
    for label, args in cmds.items():
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "bptt_cli", *args], check=True, capture_output=True)
            runs.append(time.perf_counter() - t0)
        out[label] = statistics.median(runs)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="h in {64, 256}, T in {1000, 10000} only")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", default="1", help="BLAS threads (default 1, as bptt uses)")
    ap.add_argument("--hidden", type=int, nargs="*")
    ap.add_argument("--T", type=int, nargs="*", dest="Ts")
    ap.add_argument("--trials", type=int, nargs="*")
    ap.add_argument("--cells", nargs="*", default=["identity", "tanh"])
    ap.add_argument("--losses", nargs="*", default=["mean"])
    ap.add_argument("--budget", type=float, default=60.0, help="skip runs estimated above this (s)")
    ap.add_argument("--max-gb", type=float, default=6.0, help="skip sizes whose arrays exceed this")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args()
    warnings.simplefilter("ignore")  # the bare recursion overflows on exploding networks
    hs = args.hidden or ([64, 256] if args.quick else [64, 256, 1024])
    Ts = args.Ts or ([1000, 10000] if args.quick else [1000, 10000, 100000])
    trials = args.trials or [1, 32]
    try:
        if args.no_torch:
            raise ImportError
        import torch

        torch.set_num_threads(int(args.threads))
        have_torch = True
    except ImportError:
        have_torch = False

    cpu = platform.processor() or platform.machine()
    versions = f"Python {sys.version.split()[0]}, numpy {np.__version__}" + (
        f", torch {torch.__version__}" if have_torch else ""
    )
    print(f"# {time.strftime('%Y-%m-%d')}, {cpu}, {os.cpu_count()} CPUs, {versions}, "
          f"BLAS threads {args.threads}")
    print(f"# medians of {args.repeats} interleaved runs; losses {', '.join(args.losses)}; seconds")
    gemv_s = {}
    for h in hs:
        gemm, gemv, gemv_s[h] = blas_rates(h)
        print(f"# h={h}: dgemm {gemm:.1f} GF/s, dgemv {gemv:.1f} GF/s")
    for label, secs in startup(max(args.repeats, 3)).items():
        print(f"# start-up: {label}: {secs:.2f} s")
    cols = ["cell", "loss", "h", "T", "trials", "bptt", "bare", "ratio", "bare x n", "ratio x n",
            "GF/s", "torch"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for cell in args.cells:
        for loss in args.losses:
            for h in hs:
                for T in Ts:
                    for n in trials:
                        gb = 5 * n * T * h * 8 / 1e9
                        estimate = 6 * n * T * max(gemv_s[h], 4e-6)
                        if gb > args.max_gb or estimate > args.budget:
                            why = f"~{gb:.0f} GB of arrays" if gb > args.max_gb else f"~{estimate:.0f} s/run"
                            skipped = f"| {cell} | {loss} | {h} | {T} | {n} | skipped: {why} |"
                            print(skipped + " |" * (len(cols) - 6))
                            continue
                        row = _measure(cell, loss, h, T, n, args.repeats, have_torch)
                        print("| " + " | ".join(row) + " |", flush=True)


def _measure(cell: str, loss: str, h: int, T: int, n: int, repeats: int, have_torch: bool) -> list[str]:
    spec = Spec(cell=cell, loss=loss, T=T, hidden=h, trials=n)
    net = build_network(spec)
    fns: dict[str, Callable[[], object]] = {
        "bptt": partial(bptt, net, CELLS[cell], loss),
        "bare": partial(bare_numpy, net, cell, loss),
    }
    if n > 1:
        singles = [build_network(spec, seeds=[seq]) for seq in net.seeds]
        fns["bare x n"] = partial(bare_each, singles, cell, loss)
    if have_torch and n == 1 and T * h <= 10000 * 256:
        fns["torch"] = partial(torch_autograd, net, cell, loss)
    t = interleaved(fns, repeats)
    flops = n * T * 4 * h * h
    row = [cell, loss, str(h), str(T), str(n), f"{t['bptt']:.3f}", f"{t['bare']:.3f}",
           f"{t['bptt'] / t['bare']:.2f}"]
    row += [f"{t['bare x n']:.3f}", f"{t['bptt'] / t['bare x n']:.2f}"] if "bare x n" in t else ["-", "-"]
    row += [f"{flops / t['bptt'] / 1e9:.1f}", f"{t['torch']:.2f}" if "torch" in t else "-"]
    return row


if __name__ == "__main__":
    main()
