"""bptt's BPTT core against a bare numpy recursion doing the same work, and the machine's BLAS rates.

Run by hand:  python benchmarks/bench_core.py [--quick] [--repeats 3]

"The same work": float64 forward pass, every dL/dh_t (its norm for t = 1..T) and every
parameter gradient, for the given cell and the mean loss. The bare recursion is what a careful
user writes in numpy (one matrix-vector product per step each way, parameter gradients by one
GEMM over t); it has no protection against overflow. Optional: PyTorch autograd (a loop over t,
retain_grad on every h_t, backward), when torch is importable.

Timings are medians of interleaved repeats (A, B, A, B, ...) measured in one run; ratios are
bptt / bare. The machine's dgemm and dgemv rates are measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial

import numpy as np

from bptt_cli.bptt import bptt
from bptt_cli.cells import CELLS
from bptt_cli.network import Network, Spec, build_network


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


def blas_rates(h: int) -> tuple[float, float]:
    """GF/s of dgemm (h x h times h x h) and dgemv (h x h times h) on this machine."""
    rng = np.random.default_rng(0)
    A, B, v = rng.standard_normal((h, h)), rng.standard_normal((h, h)), rng.standard_normal(h)
    reps = max(1, int(2e8 / h**3))
    t0 = time.perf_counter()
    for _ in range(reps):
        A @ B
    gemm = 2 * h**3 * reps / (time.perf_counter() - t0) / 1e9
    reps = max(10, int(2e8 / h**2))
    t0 = time.perf_counter()
    for _ in range(reps):
        A @ v
    gemv = 2 * h**2 * reps / (time.perf_counter() - t0) / 1e9
    return gemm, gemv


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="h in {64, 256}, T in {1000, 10000} only")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hidden", type=int, nargs="*")
    ap.add_argument("--T", type=int, nargs="*", dest="Ts")
    ap.add_argument("--trials", type=int, nargs="*")
    ap.add_argument("--cells", nargs="*", default=["identity", "tanh"])
    ap.add_argument("--loss", default="mean")
    ap.add_argument("--max-gb", type=float, default=6.0, help="skip sizes whose arrays exceed this")
    args = ap.parse_args()
    hs = args.hidden or ([64, 256] if args.quick else [64, 256, 1024])
    Ts = args.Ts or ([1000, 10000] if args.quick else [1000, 10000, 100000])
    trials = args.trials or [1, 32]
    try:
        import torch  # noqa: F401

        have_torch = True
    except ImportError:
        have_torch = False

    print(f"# {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, numpy {np.__version__}")
    print(f"# medians of {args.repeats} interleaved runs; loss {args.loss}; seconds")
    for h in hs:
        gemm, gemv = blas_rates(h)
        print(f"# h={h}: dgemm {gemm:.1f} GF/s, dgemv {gemv:.1f} GF/s")
    cols = ["cell", "h", "T", "trials", "bptt_s", "bare_s", "ratio", "GF/s(bptt)"]
    if have_torch:
        cols += ["torch_s"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for cell in args.cells:
        for h in hs:
            for T in Ts:
                for n in trials:
                    gb = 4 * n * T * h * 8 / 1e9
                    if gb > args.max_gb:
                        skipped = f"| {cell} | {h} | {T} | {n} | skipped: ~{gb:.0f} GB of arrays |"
                        print(skipped + " |" * (len(cols) - 5))
                        continue
                    spec = Spec(cell=cell, loss=args.loss, T=T, hidden=h, trials=n)
                    net = build_network(spec)
                    fns: dict[str, Callable[[], object]] = {
                        "bptt": partial(bptt, net, CELLS[cell], args.loss),
                        "bare": partial(bare_numpy, net, cell, args.loss),
                    }
                    if have_torch and n == 1 and T * h <= 10000 * 256:
                        fns["torch"] = partial(torch_autograd, net, cell, args.loss)
                    t = interleaved(fns, args.repeats)
                    flops = n * T * 2 * (2 * h * h)  # one matvec forward, one backward per step
                    row = [cell, h, T, n, f"{t['bptt']:.3f}", f"{t['bare']:.3f}",
                           f"{t['bptt'] / t['bare']:.2f}", f"{flops / t['bptt'] / 1e9:.1f}"]
                    if have_torch:
                        row.append(f"{t['torch']:.3f}" if "torch" in t else "-")
                    print("| " + " | ".join(map(str, row)) + " |", flush=True)


if __name__ == "__main__":
    main()
