"""What a compiled kernel gives for many small trials: numba's bare recursion against numpy's.

Run by hand (numba is not a dependency):  pip install numba && python benchmarks/bench_numba.py

The performance issue asks for 32 trials at h = 64, T = 2000 in a quarter of the time of 32
single bare numpy runs. This times, in one run, interleaved (medians): the bare recursion of
``bench_core.bare_numpy`` compiled by numba (one trial at a time, the same work: no scaling, no
exact phi', no gain chain), the same recursion in numpy with the trials stacked, once per trial
(``bare x32``), and bptt itself; ratios are against ``bare x32``. The compiled kernel sums in
another order, so its norms differ from numpy's in the last digits (printed).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one BLAS thread, as bench_core and bptt use; before numpy loads

import argparse  # noqa: E402
import time  # noqa: E402

import numba  # type: ignore[import-untyped]  # noqa: E402
import numpy as np  # noqa: E402
from bench_core import bare_each, bare_numpy  # noqa: E402
from timing import interleaved  # noqa: E402

from bptt_cli.core.cells import CELLS  # noqa: E402
from bptt_cli.core.elman import bptt  # noqa: E402
from bptt_cli.core.network import Spec, build_network  # noqa: E402


@numba.njit(cache=True)  # type: ignore[misc]
def bare_numba(W, Wx, Wq, bh, bq, x, y, tanh):  # type: ignore[no-untyped-def]
    """``bare_numpy``'s mean-loss recursion, one trial at a time: norms of dL/dh_t (n, T), dL/dW_hh."""
    n, h, _ = W.shape
    T = x.shape[1]
    norms = np.empty((n, T))
    grad_W = np.zeros((n, h, h))
    for i in range(n):
        H = np.zeros((T + 1, h))
        U = x[i] @ Wx[i].T
        WT = W[i].T.copy()
        for t in range(T):
            a = H[t] @ WT + U[t] + bh[i]
            H[t + 1] = np.tanh(a) if tanh else a
        dO = (H[1:] @ Wq[i].T + bq[i] - y[i]) / T
        local = dO @ Wq[i]
        D = np.empty((T, h))
        g = local[T - 1].copy()
        for t in range(T - 1, -1, -1):
            norms[i, t] = np.sqrt(np.dot(g, g))
            D[t] = (1.0 - H[t + 1] ** 2) * g if tanh else g
            if t:
                g = D[t] @ W[i] + local[t - 1]
        grad_W[i] = D.T @ H[:-1]
    return norms, grad_W


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--T", type=int, default=2000)
    ap.add_argument("--trials", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    n = args.trials
    print(f"# numba {numba.__version__}, numpy {np.__version__}; h {args.hidden}, T {args.T}, {n} trials")
    for cell in ("tanh", "identity"):
        spec = Spec(cell=cell, loss="mean", hidden=args.hidden, T=args.T, trials=n)
        net = build_network(spec)
        singles = [build_network(spec, seeds=[seq]) for seq in net.seeds]
        data = (net.W_hh, net.W_hx, net.W_qh, net.b_h, net.b_q, net.x, net.y, cell == "tanh")
        t0 = time.perf_counter()
        norms, _ = bare_numba(*data)
        first = time.perf_counter() - t0
        ref, _ = bare_numpy(net, cell, "mean")
        with np.errstate(invalid="ignore"):  # the unprotected recursions can overflow alike
            finite = np.isfinite(ref) & np.isfinite(norms)
            diff = np.max(np.abs(norms - ref)[finite] / ref[finite])
        t = interleaved({
            "numba": lambda data=data: bare_numba(*data),
            "bare stacked": lambda net=net, cell=cell: bare_numpy(net, cell, "mean"),
            "bare x32": lambda singles=singles, cell=cell: bare_each(singles, cell, "mean"),
            "bptt": lambda net=net, cell=cell: bptt(net, CELLS[cell], "mean"),
        }, args.repeats)
        ratios = ", ".join(f"{k} {v:.3f} s ({v / t['bare x32']:.2f})" for k, v in t.items())
        print(f"{cell}: {ratios}; first call {first:.1f} s; norms vs numpy {diff:.1e} relative")


if __name__ == "__main__":
    main()
