"""bptt's LSTM/GRU core against a bare numpy recursion doing the same work.

Run by hand:  python benchmarks/bench_gated.py [--hidden 256] [--T 10000] [--trials 1] [--repeats 3]

"The same work": float64 forward pass, every dL/dh_t (and the LSTM's dL/dc_t; their norms for
t = 1..T) and every parameter gradient, for the mean loss. The bare recursion is what a careful
user writes in numpy: one matrix-vector product per step each way, the gates through
scipy.special.expit, parameter gradients by one GEMM over t, trials batched; it has no
protection against overflow or underflow. Optional: PyTorch autograd (nn.LSTM/nn.GRU on the whole
sequence, parameters only) with --torch. Run torch separately from the numpy timings: its thread
pool and OpenBLAS's compete for the 2 cores and slow both down when interleaved.

Timings are medians of interleaved repeats; ratios are bptt / bare.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from functools import partial

import numpy as np
from scipy.special import expit
from timing import interleaved

from bptt_cli.core.gated import gated_bptt
from bptt_cli.core.network import GatedNetwork, GatedSpec, build_network


def bare_lstm(net: GatedNetwork, loss: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Plain float64 BPTT of an LSTM, trials batched ``(n, ...)``, no scaling."""
    n, T, h, _, _ = net.shape
    Wi, W, bi, bh, Wq, bq, x, y = (net.weight_ih_l0, net.weight_hh_l0, net.bias_ih_l0, net.bias_hh_l0,
                                    net.W_qh, net.b_q, net.x, net.y)
    U = np.matmul(x, np.swapaxes(Wi, -1, -2)) + (bi + bh)[:, None, :]
    WT = np.swapaxes(W, -1, -2)
    H, C = np.zeros((n, T + 1, h)), np.zeros((n, T + 1, h))
    gates = np.empty((n, T, 4 * h))
    for t in range(T):
        a = np.matmul(H[:, t, None, :], WT)[:, 0] + U[:, t]
        s = expit(a)
        s[:, 2 * h : 3 * h] = np.tanh(a[:, 2 * h : 3 * h])
        gates[:, t] = s
        C[:, t + 1] = s[:, h : 2 * h] * C[:, t] + s[:, :h] * s[:, 2 * h : 3 * h]
        H[:, t + 1] = s[:, 3 * h :] * np.tanh(C[:, t + 1])
    E = np.matmul(H[:, 1:], np.swapaxes(Wq, -1, -2)) + bq[:, None, :] - y
    dO = E / T if loss == "mean" else np.concatenate([np.zeros_like(E[:, :-1]), E[:, -1:]], axis=1)
    local = np.matmul(dO, Wq)
    tc = np.tanh(C[:, 1:])
    i, f, g, o = (gates[..., k * h : (k + 1) * h] for k in range(4))
    A = o * (1 - tc**2)
    B = tc * o * (1 - o)
    Ci, Cf, Cg = g * i * (1 - i), C[:, :-1] * f * (1 - f), i * (1 - g**2)
    DH, DC, DA = np.empty((n, T, h)), np.empty((n, T, h)), np.empty((n, T, 4 * h))
    carry, gc = np.zeros((n, h)), np.zeros((n, h))
    for t in range(T - 1, -1, -1):
        dh = DH[:, t] = local[:, t] + carry
        dc = DC[:, t] = dh * A[:, t] + gc
        da = DA[:, t]
        da[:, :h], da[:, h : 2 * h], da[:, 2 * h : 3 * h] = dc * Ci[:, t], dc * Cf[:, t], dc * Cg[:, t]
        da[:, 3 * h :] = dh * B[:, t]
        carry = np.matmul(da[:, None, :], W)[:, 0]
        gc = dc * f[:, t]
    DAT = np.swapaxes(DA, -1, -2)
    grads = {
        "weight_ih_l0": np.matmul(DAT, x), "weight_hh_l0": np.matmul(DAT, H[:, :-1]),
        "bias": DA.sum(axis=1), "W_qh": np.matmul(np.swapaxes(dO, -1, -2), H[:, 1:]), "b_q": dO.sum(axis=1),
    }
    return np.linalg.norm(DH, axis=-1), np.linalg.norm(DC, axis=-1), grads


def bare_gru(net: GatedNetwork, loss: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Plain float64 BPTT of a GRU, trials batched ``(n, ...)``, no scaling."""
    n, T, h, _, _ = net.shape
    Wi, W, bi, bh, Wq, bq, x, y = (net.weight_ih_l0, net.weight_hh_l0, net.bias_ih_l0, net.bias_hh_l0,
                                    net.W_qh, net.b_q, net.x, net.y)
    U = np.matmul(x, np.swapaxes(Wi, -1, -2)) + bi[:, None, :]
    WT = np.swapaxes(W, -1, -2)
    H = np.zeros((n, T + 1, h))
    R, Z, N, GHN = (np.empty((n, T, h)) for _ in range(4))
    for t in range(T):
        gh = np.matmul(H[:, t, None, :], WT)[:, 0] + bh
        rz = expit(U[:, t, : 2 * h] + gh[:, : 2 * h])
        N[:, t] = np.tanh(U[:, t, 2 * h :] + rz[:, :h] * gh[:, 2 * h :])
        R[:, t], Z[:, t], GHN[:, t] = rz[:, :h], rz[:, h:], gh[:, 2 * h :]
        H[:, t + 1] = (1 - Z[:, t]) * N[:, t] + Z[:, t] * H[:, t]
    E = np.matmul(H[:, 1:], np.swapaxes(Wq, -1, -2)) + bq[:, None, :] - y
    dO = E / T if loss == "mean" else np.concatenate([np.zeros_like(E[:, :-1]), E[:, -1:]], axis=1)
    local = np.matmul(dO, Wq)
    Pn = (1 - Z) * (1 - N**2)
    Pr, Pz = Pn * GHN * R * (1 - R), (H[:, :-1] - N) * Z * (1 - Z)
    DH, GI, GH = np.empty((n, T, h)), np.empty((n, T, 3 * h)), np.empty((n, T, 3 * h))
    carry = np.zeros((n, h))
    for t in range(T - 1, -1, -1):
        dh = DH[:, t] = local[:, t] + carry
        gi, gh = GI[:, t], GH[:, t]
        gi[:, :h], gi[:, h : 2 * h], gi[:, 2 * h :] = dh * Pr[:, t], dh * Pz[:, t], dh * Pn[:, t]
        gh[:, : 2 * h], gh[:, 2 * h :] = gi[:, : 2 * h], gi[:, 2 * h :] * R[:, t]
        carry = np.matmul(gh[:, None, :], W)[:, 0] + dh * Z[:, t]
    grads = {
        "weight_ih_l0": np.matmul(np.swapaxes(GI, -1, -2), x),
        "weight_hh_l0": np.matmul(np.swapaxes(GH, -1, -2), H[:, :-1]),
        "bias_ih_l0": GI.sum(axis=1), "bias_hh_l0": GH.sum(axis=1),
        "W_qh": np.matmul(np.swapaxes(dO, -1, -2), H[:, 1:]), "b_q": dO.sum(axis=1),
    }
    return np.linalg.norm(DH, axis=-1), grads


def torch_autograd(net: GatedNetwork, loss: str) -> None:  # pragma: no cover - optional
    import torch

    _, _, h, d, _ = net.shape
    rnn = (torch.nn.LSTM if net.cell == "lstm" else torch.nn.GRU)(d, h, dtype=torch.float64)
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(rnn, name).copy_(torch.from_numpy(getattr(net, name)[0]))
    Wq, bq = torch.tensor(net.W_qh[0], requires_grad=True), torch.tensor(net.b_q[0], requires_grad=True)
    out, _ = rnn(torch.from_numpy(net.x[0]))
    e = 0.5 * ((out @ Wq.T + bq - torch.from_numpy(net.y[0])) ** 2).sum(dim=1)
    (e.mean() if loss == "mean" else e[-1]).backward()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, nargs="*", default=[256])
    ap.add_argument("--T", type=int, nargs="*", dest="Ts", default=[10000])
    ap.add_argument("--trials", type=int, nargs="*", default=[1])
    ap.add_argument("--cells", nargs="*", default=["lstm", "gru"])
    ap.add_argument("--loss", default="mean")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--torch", action="store_true", help="also time torch.autograd (trials = 1)")
    args = ap.parse_args()
    have_torch = False
    if args.torch:
        import torch  # noqa: F401

        have_torch = True
    print(f"# {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, numpy {np.__version__}")
    print(f"# medians of {args.repeats} interleaved runs; loss {args.loss}; seconds")
    cols = ["cell", "h", "T", "trials", "bptt_s", "bare_s", "ratio"] + (["torch_s"] if have_torch else [])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for cell in args.cells:
        for h in args.hidden:
            for T in args.Ts:
                for n in args.trials:
                    net = build_network(GatedSpec(cell=cell, loss=args.loss, T=T, hidden=h, trials=n))
                    bare = bare_lstm if cell == "lstm" else bare_gru
                    fns: dict[str, Callable[[], object]] = {
                        "bptt": partial(gated_bptt, net, args.loss),
                        "bare": partial(bare, net, args.loss),
                    }
                    if have_torch and n == 1:
                        fns["torch"] = partial(torch_autograd, net, args.loss)
                    t = interleaved(fns, args.repeats)
                    ratio = t["bptt"] / t["bare"]
                    row = [cell, h, T, n, f"{t['bptt']:.2f}", f"{t['bare']:.2f}", f"{ratio:.2f}"]
                    if have_torch:
                        row.append(f"{t['torch']:.2f}" if "torch" in t else "-")
                    print("| " + " | ".join(map(str, row)) + " |", flush=True)


if __name__ == "__main__":
    main()
