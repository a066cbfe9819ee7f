"""Time of each gated-cell theory quantity beside the gated BPTT core, per size.

Run by hand:  OPENBLAS_NUM_THREADS=1 python benchmarks/bench_gated_theory.py [--cell lstm|gru]
              [--sizes 64:1000 256:10000] [--loss last|mean] [--forget-bias 1] [--repeats 2]

For each (hidden, T): one trial at PyTorch's initialisation; the core (forward + backward,
:func:`bptt_cli.core.gated.gated_bptt`), the spectrum of the candidate block, then each theory
quantity of :mod:`bptt_cli.theory.gated_predict` separately (best of ``--repeats``), their total, and
the peak of traced numpy memory of a full ``analyze(..., theory=True)`` beside the estimate.
"""

from __future__ import annotations

import argparse
import os
import platform
import tracemalloc

from timing import best

from bptt_cli.analysis.analyze import analyze
from bptt_cli.analysis.memory import gated_bytes
from bptt_cli.core.gated import backward, gated_bptt
from bptt_cli.core.network import GatedSpec, build_network, state_size
from bptt_cli.theory.horizons import gated_effective_memory, horizons
from bptt_cli.theory.lyapunov import gated_lyapunov, window
from bptt_cli.theory.nonnormal import henrici, numerical_abscissa, transient_growth
from bptt_cli.theory.rates import observed_rate
from bptt_cli.theory.spectra import spectrum


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["64:1000", "256:10000"])
    parser.add_argument("--cell", default="lstm", choices=("lstm", "gru"))
    parser.add_argument("--loss", default="last")
    parser.add_argument("--forget-bias", type=float, default=0.0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    machine = platform.processor() or platform.machine()
    print(f"# {machine}, {os.cpu_count()} cores, OPENBLAS_NUM_THREADS={threads}")
    print(f"# cell {args.cell}, loss {args.loss}, forget bias {args.forget_bias}, 1 trial; "
          f"seconds, best of {args.repeats}")
    import scipy.linalg  # noqa: F401  (import time is not the quantities' time)

    for size in args.sizes:
        h, T = map(int, size.split(":"))
        bench_size(h, T, args)


def bench_size(h: int, T: int, args: argparse.Namespace) -> None:
    spec = GatedSpec(cell=args.cell, loss=args.loss, T=T, hidden=h, forget_bias=args.forget_bias)
    net = build_network(spec)
    core, (fwd, grads) = best(lambda: gated_bptt(net, args.loss), args.repeats)
    t_sp, sp = best(lambda: spectrum(net.W_hh), args.repeats)
    parts: dict[str, float] = {}
    if args.loss == "mean":
        parts["chain (last loss)"], chain = best(lambda: backward(net, fwd, "last", keep=False), args.repeats)
    else:
        chain = grads
    parts["observed rate"], _ = best(lambda: observed_rate(chain.dL_dh_s), args.repeats)
    parts["horizons"], _ = best(lambda: horizons(grads.dL_dh_s), args.repeats)
    parts["Lyapunov (K=4)"], ly = best(lambda: gated_lyapunov(net, fwd, 4), args.repeats)
    parts["effective memory"], mem = best(lambda: gated_effective_memory(net, fwd, chain), args.repeats)
    W = net.W_hh
    parts["non-normality"], _ = best(
        lambda: (henrici(W, sp.eigenvalues), numerical_abscissa(W), transient_growth(W, T, sp.spectral_norm)),
        args.repeats,
    )
    total = sum(parts.values())
    D = state_size(args.cell, h)
    tr, st = window(T, D, 4)
    print(f"h {h}, T {T}: core {core:.3f}, spectrum {t_sp:.3f}, theory total {total:.3f} "
          f"({100 * total / core:.0f}% of the core)")
    for name, t in parts.items():
        print(f"    {name:20s} {t:.3f}")
    print(f"    Lyapunov window: {tr} skipped, {st} used (D = {D}); top exponent {ly.exponents[0, 0]:+.4f}, "
          f"observed {observed_rate(chain.dL_dh_s)[0][0]:+.4f}; effective memory {mem[0]:g}")
    tracemalloc.start()
    analyze(spec, theory=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"    memory: traced peak {peak / 2**20:.1f} MiB, estimate {gated_bytes(spec) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
