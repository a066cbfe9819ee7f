"""Machine-readable output: the JSON record of an analysis (a public contract), CSV rows,
and atomic file writes.

Non-finite numbers never reach the JSON text: ``-inf`` (an exact zero on the log scale)
and NaN (undefined) are written as ``null`` on purpose, and ``allow_nan=False`` guards it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from bptt_cli import __version__
from bptt_cli.analysis.analyze import Analysis, quantiles
from bptt_cli.core.gated_network import GATED
from bptt_cli.errors import BadInput

if TYPE_CHECKING:
    from bptt_cli.analysis.memory import MemoryUse
    from bptt_cli.analysis.spectrum import SpectrumReport
    from bptt_cli.theory.predict import Theory


def jsonable(obj: Any) -> Any:
    """Plain Python values for ``json``: numpy scalars and arrays unwrapped, non-finite to None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps(obj: Any, indent: int | None = None) -> str:
    return json.dumps(jsonable(obj), allow_nan=False, indent=indent)


CHUNK = 8192  # array entries formatted at a time by write_json


def write_json(obj: Any, write: Callable[[str], object]) -> None:
    """``obj`` as the JSON text ``dumps`` gives, written in pieces.

    numpy arrays are formatted a chunk of entries at a time, so a record with millions of
    numbers (``grad_h_log10`` at T = 1e6) never exists as one Python list or one string.
    """
    if isinstance(obj, dict):
        write("{")
        for j, (k, v) in enumerate(obj.items()):
            write(("" if j == 0 else ", ") + json.dumps(str(k)) + ": ")
            write_json(v, write)
        write("}")
    elif (isinstance(obj, np.ndarray) and obj.ndim > 1) or isinstance(obj, list | tuple):
        write("[")
        for j, v in enumerate(obj):
            if j:
                write(", ")
            write_json(v, write)
        write("]")
    elif isinstance(obj, np.ndarray) and obj.ndim == 1 and obj.dtype.kind in "fiub":
        write("[")
        for j in range(0, len(obj), CHUNK):
            values = jsonable(obj[j : j + CHUNK].tolist())
            write(("" if j == 0 else ", ") + json.dumps(values, allow_nan=False)[1:-1])
        write("]")
    else:
        write(json.dumps(jsonable(obj), allow_nan=False))


def analysis_record(an: Analysis, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON object of ``bptt analyze --format json`` (keys documented in the README)."""
    spec = an.spec
    spec_dict = {k: getattr(spec, k) for k in spec.__dataclass_fields__}
    trials = []
    params = an.grad_params_log10
    grad_h = an.grad_h_log10  # once: each access makes a new (n, T) array, which a row would keep alive
    extra = gated_trial_arrays(an)
    for i, verdict in enumerate(an.verdicts):
        eig = an.spectrum.eigenvalues[i]
        trials.append(
            {
                "trial": i,
                "seed_spawn_key": list(an.net.seeds[i].spawn_key) if an.net.seeds else None,
                "loss_log10": an.grads.loss_ln[i] / math.log(10),
                "gain_log10": an.gain_log10[i],
                "verdict": verdict,
                "spectrum": {
                    "spectral_radius": an.spectrum.spectral_radius[i],
                    "spectral_norm": an.spectrum.spectral_norm[i],
                    "condition_number": an.spectrum.condition_number[i],
                    "eigenvalues": np.stack([eig.real, eig.imag], axis=-1),
                },
                "grad_h_log10": grad_h[i],
                "grad_params_log10": {k: v[i] for k, v in params.items()},
                **(
                    {"grad_param_terms_log10": {k: v[i] for k, v in an.param_terms_log10.items()}}
                    if an.param_terms_log10 is not None else {}
                ),
                **{k: v[i] for k, v in extra.items()},
                **(theory_record(an.theory, i) if an.theory is not None else {}),
            }
        )
        if an.estimates:
            from bptt_cli.report.truncation_report import trial_estimates

            trials[-1]["estimators"] = trial_estimates(an.estimates, i)
    summary = an.summary()
    if an.theory is not None:
        summary["theory"] = theory_summary(an.theory)
    record = {
        "version": __version__,
        "config": {**spec_dict, "tolerance": an.tolerance, **(config or {})},
        "trials": trials,
        "summary": summary,
    }
    if an.memory is not None:
        record["memory"] = memory_record(an.memory)
    return record


def _lag(x: float) -> int | None:
    """A lag or step count: ``None`` for NaN (never / undefined)."""
    return None if not math.isfinite(x) else int(x)


def _median(values: np.ndarray) -> float:
    return float(quantiles(np.asarray(values, dtype=np.float64), (0.5,))[0])


def theory_record(th: Theory, i: int) -> dict[str, Any]:
    """Trial ``i``'s predictions: the keys ``rates``, ``mean_field``, ``lyapunov``, ``horizon``,
    ``effective_memory``, ``nonnormality``, ``alignment`` of ``trials[i]`` (see the README).
    """
    mf = th.mean_field
    g = th.growth
    return {
        "rates": {
            **{name: float(v[i]) for name, v in th.rates.items()},
            "window": None if np.isnan(th.window[i, 0]) else [_lag(th.window[i, 0]), _lag(th.window[i, 1])],
            "observed_of": th.observed_of,
            "mean_field_reason": th.mean_field_reason,
            "gelfand_reason": th.reasons.get("gelfand"),
            "spectral_norm_bound_reason": th.reasons.get("spectral_norm_bound"),
        },
        "mean_field": None if mf is None else {
            "q_star": mf.q_star[i],
            "chi_1": mf.chi_1[i],
            "weight_variance": mf.weight_variance[i],
            "input_variance": mf.input_variance[i],
            "bias_variance": mf.bias_variance[i],
        },
        "lyapunov": None if th.lyapunov is None else {
            "exponents": th.lyapunov.exponents[i],
            "transient": th.lyapunov.transient,
            "steps": th.lyapunov.steps,
        },
        "horizon": {"vanish": _lag(th.vanish[i]), "explode": _lag(th.explode[i])},
        "effective_memory": _lag(th.effective_memory[i]),
        "nonnormality": nonnormality_record(th.henrici[i], th.abscissa[i], g, i),
        "alignment": alignment_record(th, i),
    }


def alignment_record(th: Theory, i: int) -> dict[str, Any]:
    """Trial ``i``'s ``alignment`` object; every value ``null`` (and ``reason`` set) where it does
    not apply (gated cells)."""
    dom = th.dominant
    if dom is None:
        keys = ("dimension", "eigenvalue", "ratio", "rate", "projection", "tan_log10")
        return {**dict.fromkeys(keys), "reason": th.reasons.get("alignment")}
    lam = complex(dom.eigenvalue[i])
    return {
        "dimension": int(dom.dimension[i]),
        "eigenvalue": [lam.real, lam.imag],
        "ratio": dom.ratio[i],
        "rate": dom.rate[i],
        "projection": None if th.projection is None else th.projection[i],
        "tan_log10": None if th.tan_log10 is None else th.tan_log10[i],
        "reason": th.reasons.get("alignment"),
    }


def theory_summary(th: Theory) -> dict[str, Any]:
    """Medians over trials (``summary.theory``); a horizon never reached counts as infinite."""

    def never_inf(x: np.ndarray) -> float:
        return float(np.median(np.where(np.isnan(x), np.inf, x)))

    return {
        "rates": {name: _median(v) for name, v in th.rates.items()},
        "lyapunov": None if th.lyapunov is None else [_median(c) for c in th.lyapunov.exponents.T],
        "horizon": {"vanish": never_inf(th.vanish), "explode": never_inf(th.explode)},
        "effective_memory": _median(th.effective_memory),
        "nonnormality": {
            "henrici": _median(th.henrici),
            "peak_growth_log10": _median(th.growth.peak_log10),
            "numerical_abscissa": _median(th.abscissa),
        },
        "alignment": {
            "ratio": None if th.dominant is None else _median(th.dominant.ratio),
            "rate": None if th.dominant is None else _median(th.dominant.rate),
        },
    }


def memory_record(mem: MemoryUse) -> dict[str, Any]:
    """``memory``: the checkpoint interval (``null``: every state stored), estimate, budget, peak RSS."""
    return {
        "checkpoint_every": mem.checkpoint_every,
        "stored": mem.checkpoint_every is None,
        "estimated_bytes": mem.estimated_bytes,
        "max_memory": mem.max_memory,
        "peak_memory_bytes": mem.peak_memory_bytes,
    }


def gated_trial_arrays(an: Analysis) -> dict[str, Any]:
    """The per-trial arrays of a gated cell (``grad_c_log10``, ``gate_product_log10``); ``{}`` for Elman."""
    from bptt_cli.analysis.gated_analysis import GatedAnalysis

    if not isinstance(an, GatedAnalysis):
        return {}
    out: dict[str, Any] = {}
    if an.grad_c_log10 is not None:
        out["grad_c_log10"] = an.grad_c_log10
    out["gate_product_log10"] = an.gate_product_log10
    return out


CSV_COLUMNS = ("trial", "t", "lag", "grad_h_log10", "ratio_log10", "predicted_log10")


def analysis_csv(an: Analysis) -> str:
    """One row per trial and step t: ``log10 ||dL/dh_t||``, its ratio to t = T and ``rho^(T-t)``.

    Gated cells add ``grad_c_log10`` (LSTM: ``log10 ||dL/dc_t||``) and ``gate_product_log10``
    (the forget- or update-gate product over s = t+1..T, median over units), the JSON's arrays.
    Exact zeros are empty cells; so is ``predicted_log10`` for the gated cells (no spectral prediction).
    """
    buf = io.StringIO()
    write_analysis_csv(an, buf.write)
    return buf.getvalue()


CSV_ROWS = 4096  # rows formatted at a time by write_analysis_csv


def write_analysis_csv(an: Analysis, write: Callable[[str], object]) -> None:
    """The text of :func:`analysis_csv`, written ``CSV_ROWS`` rows at a time (T = 1e8 never
    exists as one string)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    # grad_c_log10 (LSTM), gate_product_log10, in that order (no gated import for the Elman cells)
    extra = gated_trial_arrays(an) if an.spec.cell in GATED else {}
    writer.writerow((*CSV_COLUMNS, *extra))
    g = an.grad_h_log10
    n, T = g.shape
    lag = T - np.arange(1, T + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = g - g[:, -1:]
        predicted = lag[None, :] * np.log10(an.spectrum.spectral_radius)[:, None]
        predicted = np.where(lag[None, :] == 0, 0.0, predicted)
    if an.spec.cell in GATED:
        predicted = np.full_like(g, np.nan)
    columns = [g, ratio, predicted, *(np.asarray(v, dtype=np.float64) for v in extra.values())]
    for i in range(n):
        for k in range(T):
            row = [c[i, k] for c in columns]
            writer.writerow([i, k + 1, lag[k], *("" if not np.isfinite(v) else repr(float(v)) for v in row)])
            if k % CSV_ROWS == CSV_ROWS - 1:
                write(buf.getvalue())
                buf.seek(0)
                buf.truncate()
    write(buf.getvalue())


@contextmanager
def atomic_open(path: Path, binary: bool = False) -> Iterator[IO[Any]]:
    """A file to write ``path`` through: a temporary file in the same directory, fsynced and
    renamed over ``path`` when the block ends, removed if it fails. Never half-written; the new
    file gets the permissions of any new file (``mkstemp`` alone would make it private)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent or Path("."), prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def output_format(
    output: Path | None, fmt: str | None, suffixes: Mapping[str, str], default: str = "table"
) -> str:
    """The format of a command's output: ``--format``, else from the ``--output`` suffix (one of
    ``suffixes``), else ``default``; :class:`BadInput` if the two disagree (``--format csv
    --output m.jsonl``; ``.txt``, plain text, takes any format) or ``output`` cannot be written
    (checked now, before any work)."""
    if output is None:
        return fmt or default
    check_writable(output)
    known = suffixes.get(output.suffix.lower())
    if fmt is None:
        if known is None:
            listed = ", ".join(s for s in suffixes)
            raise BadInput(f"cannot tell the format of {output} from its suffix (use {listed}, or --format)")
        return known
    if known is not None and known != fmt and output.suffix.lower() != ".txt":
        raise BadInput(
            f"--format {fmt} conflicts with --output {output} (a {output.suffix} file is {known}): "
            "drop --format or give the file a matching suffix"
        )
    return fmt


def check_writable(path: Path) -> None:
    """:class:`BadInput` unless a file can be written at ``path`` (its directory exists and takes
    a new file, and ``path`` is not a directory). Leaves nothing behind."""
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise BadInput(f"cannot write {path}: directory {parent} does not exist")
    if path.is_dir():
        raise BadInput(f"cannot write {path}: it is a directory")
    try:  # the same temporary file atomic_open writes through
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise BadInput(f"cannot write {path}: {e.strerror or e}") from None
    os.close(fd)
    os.unlink(tmp)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through :func:`atomic_open`: never half-written."""
    with atomic_open(path) as f:
        f.write(text)


def nonnormality_record(henrici: float, abscissa: float, growth: Any, i: int) -> dict[str, Any]:
    """The ``nonnormality`` object of trial ``i`` (same keys in analyze and spectrum)."""
    return {
        "henrici": henrici,
        "peak_growth_log10": growth.peak_log10[i],
        "peak_growth_k": _lag(growth.k[i]),
        "peak_growth_method": growth.method[i],
        "peak_growth_evaluated": _lag(growth.evaluated[i]),
        "peak_growth_up_to": _lag(growth.up_to[i]),
        "numerical_abscissa": abscissa,
    }


def spectrum_record(rep: SpectrumReport, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON object of ``bptt spectrum --format json`` (keys documented in the README)."""
    spec = rep.spec
    sp = rep.spectrum
    keys = ("hidden", "ensemble", "gain", "radius", "norm", "trials", "seed", "T")
    trials = []
    for i in range(sp.eigenvalues.shape[0]):
        eig = sp.eigenvalues[i]
        trials.append(
            {
                "trial": i,
                "seed_spawn_key": list(rep.seeds[i].spawn_key) if rep.seeds else None,
                "spectrum": {
                    "spectral_radius": sp.spectral_radius[i],
                    "spectral_norm": sp.spectral_norm[i],
                    "condition_number": sp.condition_number[i],
                    "eigenvalues": np.stack([eig.real, eig.imag], axis=-1),
                    "singular_values": sp.singular_values[i],
                },
                "nonnormality": nonnormality_record(rep.henrici[i], rep.abscissa[i], rep.growth, i),
                "prediction": {
                    "law": rep.law,
                    "radius": rep.predicted_radius,
                    "relative_error": rep.relative_error[i],
                },
            }
        )
    return {
        "version": __version__,
        "config": {**{k: getattr(spec, k) for k in keys}, **(config or {})},
        "trials": trials,
        "summary": {
            "spectral_radius": _median(sp.spectral_radius),
            "spectral_norm": _median(sp.spectral_norm),
            "predicted_radius": rep.predicted_radius,
            "law": rep.law,
            "relative_error": _median(rep.relative_error),
            "henrici": _median(rep.henrici),
            "numerical_abscissa": _median(rep.abscissa),
            "peak_growth_log10": _median(rep.growth.peak_log10),
        },
    }


SPECTRUM_CSV_COLUMNS = ("trial", "i", "eigenvalue_re", "eigenvalue_im", "modulus", "singular_value")


def spectrum_csv(rep: SpectrumReport) -> str:
    """One row per trial and index i (eigenvalues by decreasing modulus, singular values decreasing)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SPECTRUM_CSV_COLUMNS)
    eig, sv = rep.spectrum.eigenvalues, rep.spectrum.singular_values
    for t in range(eig.shape[0]):
        for i in range(eig.shape[1]):
            lam = complex(eig[t, i])
            writer.writerow([t, i + 1, repr(lam.real), repr(lam.imag), repr(abs(lam)), repr(float(sv[t, i]))])
    return buf.getvalue()
