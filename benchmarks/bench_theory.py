"""Time of each theory quantity beside the BPTT core and the spectrum, per size.

Run by hand:  python benchmarks/bench_theory.py [--sizes 64:100 256:1000 1024:10000] [--cell tanh]

For each (hidden, T): one trial; the core (forward + backward), the spectrum (eigenvalues and
singular values), then every theory quantity separately, best of ``--repeats`` runs. The
theory quantities should not dominate: their total is printed beside the core's time.
"""

from __future__ import annotations

import argparse
import os
import platform

from timing import best

from bptt_cli.core.cells import CELLS
from bptt_cli.core.elman import backward, bptt, stored_blocks
from bptt_cli.core.network import Spec, build_network
from bptt_cli.theory.alignment import alignment, dominant_subspace
from bptt_cli.theory.horizons import effective_memory, horizons
from bptt_cli.theory.lyapunov import lyapunov_exponents, stored_dphi
from bptt_cli.theory.meanfield import mean_field
from bptt_cli.theory.nonnormal import henrici, numerical_abscissa, transient_growth
from bptt_cli.theory.rates import observed_rate
from bptt_cli.theory.spectra import spectrum


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["64:100", "256:1000", "1024:10000"])
    parser.add_argument("--cell", default="tanh")
    parser.add_argument("--loss", default="last")
    parser.add_argument("--gain", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    machine = platform.processor() or platform.machine()
    print(f"# {machine}, {os.cpu_count()} cores, OPENBLAS_NUM_THREADS={threads}")
    print(f"# cell {args.cell}, loss {args.loss}, gain {args.gain}, 1 trial; seconds, best of {args.repeats}")
    import scipy.linalg  # noqa: F401  (import time is not the quantities' time)

    for size in args.sizes:
        h, T = map(int, size.split(":"))
        bench_size(h, T, args)


def bench_size(h: int, T: int, args: argparse.Namespace) -> None:
    """Time the core, the spectrum and every theory quantity for one size."""
    spec = Spec(cell=args.cell, loss=args.loss, hidden=h, T=T, gain=args.gain)
    net = build_network(spec)
    cell = CELLS[args.cell]
    r = args.repeats
    t_core, (fwd, grads) = best(lambda: bptt(net, cell, args.loss), r)
    t_spec, sp = best(lambda: spectrum(net.W_hh), r)
    rows: dict[str, float] = {}
    if args.loss == "mean":
        rows["chain (mean loss)"], chain = best(lambda: backward(net, fwd, cell, "last"), r)
    else:
        chain = grads
    rows["observed rate"], _ = best(lambda: observed_rate(chain.dL_dh_s), r)
    rows["mean field"], _ = best(lambda: mean_field(cell, net.W_hh, net.W_hx, net.b_h, net.x), r)
    rows["Lyapunov (K=4)"], _ = best(
        lambda: lyapunov_exponents(net.W_hh, stored_dphi(fwd.dphi, T), T, min(h, 4)), r
    )
    rows["horizons"], _ = best(lambda: horizons(grads.dL_dh_s), r)
    rows["effective memory"], mem = best(
        lambda: effective_memory(stored_blocks(fwd, chain), chain.dL_da_s, fwd.h_s, *chain.params["W_hh"]), r
    )
    rows["dominant subspace"], dom = best(lambda: dominant_subspace(net.W_hh, sp.eigenvalues), r)
    rows["alignment"], _ = best(lambda: alignment(stored_blocks(fwd, grads), T, dom), r)
    rows["Henrici"], _ = best(lambda: henrici(net.W_hh, sp.eigenvalues), r)
    rows["numerical abscissa"], _ = best(lambda: numerical_abscissa(net.W_hh), r)
    rows["peak ||W^k||"], growth = best(lambda: transient_growth(net.W_hh, T, sp.spectral_norm), r)
    total = sum(rows.values())
    print(f"\nhidden {h}, T {T}: core {t_core:.3f}, spectrum {t_spec:.3f}, theory total {total:.3f}")
    for name, t in rows.items():
        print(f"  {name:20s} {t:8.3f}")
    print(f"  (effective memory {mem[0]:g}; peak growth {growth.method[0]}, {growth.evaluated[0]:g} k, "
          f"up to {growth.up_to[0]:g})")


if __name__ == "__main__":
    main()
