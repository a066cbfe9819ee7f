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
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .analysis import Analysis
from .gated_network import GATED


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


def analysis_record(an: Analysis, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON object of ``bptt analyze --format json`` (keys documented in the README)."""
    spec = an.spec
    spec_dict = {k: getattr(spec, k) for k in spec.__dataclass_fields__}
    trials = []
    params = an.grad_params_log10
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
                "grad_h_log10": an.grad_h_log10[i],
                "grad_params_log10": {k: v[i] for k, v in params.items()},
                **{k: v[i] for k, v in extra.items()},
            }
        )
    return {
        "version": __version__,
        "config": {**spec_dict, "tolerance": an.tolerance, **(config or {})},
        "trials": trials,
        "summary": an.summary(),
    }


def gated_trial_arrays(an: Analysis) -> dict[str, Any]:
    """The per-trial arrays of a gated cell (``grad_c_log10``, ``gate_product_log10``); ``{}`` for Elman."""
    from .gated_analysis import GatedAnalysis

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

    Exact zeros are empty cells; so is ``predicted_log10`` for the gated cells (no spectral prediction).
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    g = an.grad_h_log10
    n, T = g.shape
    lag = T - np.arange(1, T + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = g - g[:, -1:]
        predicted = lag[None, :] * np.log10(an.spectrum.spectral_radius)[:, None]
        predicted = np.where(lag[None, :] == 0, 0.0, predicted)
    if an.spec.cell in GATED:
        predicted = np.full_like(g, np.nan)
    for i in range(n):
        for k in range(T):
            row = (g[i, k], ratio[i, k], predicted[i, k])
            writer.writerow([i, k + 1, lag[k], *("" if not np.isfinite(v) else repr(float(v)) for v in row)])
    return buf.getvalue()


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: never half-written."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent or Path("."), prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
