"""The records of the commands: the JSON objects of ``bptt analyze``, ``spectrum`` and ``truncate`` (a
public contract, docs/json.md) and their CSV rows.

The objects hold numpy arrays and scalars as they are; :mod:`bptt_cli.io.jsontext` writes them
(``-inf``, an exact zero on the log scale, and NaN, undefined, as ``null``).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from bptt_cli import __version__
from bptt_cli.analysis.result import VERDICTS, Analysis, GatedAnalysis, LayerAnalysis
from bptt_cli.analysis.stats import median, quantiles, spread
from bptt_cli.core.network import GATED
from bptt_cli.core.stack import DIRECTIONS
from bptt_cli.io.estimator_records import (
    comparison_rows,
    estimate_record,
    estimate_summary,
    estimates_summary,
    pow10_value,
    trial_estimates,
)

if TYPE_CHECKING:
    from bptt_cli.analysis.memory import MemoryUse
    from bptt_cli.analysis.spectrum import SpectrumReport
    from bptt_cli.theory.predict import Theory


def summary(an: Analysis) -> dict[str, Any]:
    """``summary`` of ``bptt analyze``'s JSON (and of each sweep record): the median verdict and the
    spread over trials, and the estimators' medians."""
    gain = spread(an.gain_log10)
    verdicts = an.verdicts
    out = {
        "gain_log10": gain["median"],
        "verdict": an.verdict,
        "tolerance": an.tolerance,
        "trials": len(verdicts),
        "spread": {"gain_log10": gain, "grad_h1_log10": spread(an.grad_h_log10[:, 0])},
        "verdict_fractions": {v: verdicts.count(v) / len(verdicts) for v in VERDICTS},
        "spectral_radius": float(median(an.spectrum.spectral_radius)),
        "spectral_norm": float(median(an.spectrum.spectral_norm)),
        "grad_params_log10": {k: spread(v)["median"] for k, v in an.grad_params_log10.items()},
    }
    if an.estimates:
        out["estimators"] = estimates_summary(an.estimates)
    out["layers"] = [
        {"layer": lay.layer, "direction": DIRECTIONS[lay.direction], "gain_log10": lay.median_gain_log10,
         "verdict": lay.verdict}
        for lay in an.layers
    ]
    return out


def spectrum_entry(sp: Any, i: int) -> dict[str, Any]:
    """The ``spectrum`` object of trial ``i`` (spectral radius, norm, condition number, eigenvalues:
    those ``--eigenvalues`` lists, :attr:`~bptt_cli.theory.spectra.Spectrum.listed_eigenvalues`)."""
    eig = sp.listed_eigenvalues[i]
    return {
        "spectral_radius": sp.spectral_radius[i],
        "spectral_norm": sp.spectral_norm[i],
        "condition_number": sp.condition_number[i],
        "eigenvalues": np.stack([eig.real, eig.imag], axis=-1),
    }


def layer_record(lay: LayerAnalysis, i: int) -> dict[str, Any]:
    """Trial ``i``'s object of one layer-direction (``trials[i].layers[j]``): its gradient, gain,
    verdict, spectrum, parameter gradients and, with the theory, the rates, mean field, Lyapunov
    exponents and horizons that apply to it."""
    out: dict[str, Any] = {
        "layer": lay.layer,
        "direction": DIRECTIONS[lay.direction],
        "grad_h_log10": lay.grad_h_log10[i],
        "gain_log10": lay.gain_log10[i],
        "verdict": lay.verdicts[i],
        "spectrum": spectrum_entry(lay.spectrum, i),
        "grad_params_log10": {k: v[i] for k, v in lay.grad_params_log10.items()},
    }
    if lay.theory is not None:
        theory = theory_record(lay.theory, i)
        out.update({k: theory[k] for k in ("rates", "mean_field", "lyapunov", "horizon")})
    return out


def analysis_record(an: Analysis, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON object of ``bptt analyze --format json`` (keys documented in docs/json.md)."""
    spec = an.spec
    spec_dict = {k: getattr(spec, k) for k in spec.__dataclass_fields__}
    trials = []
    params = an.grad_params_log10
    grad_h = an.grad_h_log10  # once: each access makes a new (n, T) array, which a row would keep alive
    extra = gated_trial_arrays(an)
    for i, verdict in enumerate(an.verdicts):
        trials.append(
            {
                "trial": i,
                "seed_spawn_key": list(an.net.seeds[i].spawn_key) if an.net.seeds else None,
                "loss_log10": an.grads.loss_ln[i] / math.log(10),
                "gain_log10": an.gain_log10[i],
                "verdict": verdict,
                "spectrum": spectrum_entry(an.spectrum, i),
                "grad_h_log10": grad_h[i],
                "grad_params_log10": {k: v[i] for k, v in params.items()},
                **(
                    {"grad_param_terms_log10": {k: v[i] for k, v in an.param_terms_log10.items()}}
                    if an.param_terms_log10 is not None else {}
                ),
                **{k: v[i] for k, v in extra.items()},
                **(theory_record(an.theory, i) if an.theory is not None else {}),
                "layers": [layer_record(lay, i) for lay in an.layers],
            }
        )
        if an.estimates:
            trials[-1]["estimators"] = trial_estimates(an.estimates, i)
    totals = summary(an)
    if an.theory is not None:
        totals["theory"] = theory_summary(an.theory)
    record = {
        "version": __version__,
        "config": {**spec_dict, "tolerance": an.tolerance, **(config or {})},
        "trials": trials,
        "summary": totals,
    }
    if an.memory is not None:
        record["memory"] = memory_record(an.memory)
    return record


STEP_KEYS = ("grad_h_log10", "grad_param_terms_log10", "projection", "tan_log10", "grad_c_log10",
             "gate_product_log10")
"""The per-step arrays of a trial (T numbers each, index 0 is t = 1), which ``--steps K`` thins."""


def step_indices(T: int, every: int) -> slice:
    """The steps ``--steps K`` keeps, as 0-based indices: t = T, T - K, T - 2K, ... (increasing)."""
    return slice((T - 1) % every, T, every)


def output_record(
    record: dict[str, Any], T: int, steps: int = 1, summary_only: bool = False
) -> dict[str, Any]:
    """``bptt analyze --format json``'s object as the output options shape it: unchanged by default;
    else with the key ``output`` (``{"steps": K, "summary_only": ...}``) added, and with
    ``summary_only`` no ``trials``, with ``steps`` K > 1 every per-step array (:data:`STEP_KEYS`)
    holding t = T, T - K, T - 2K, ... only (in increasing t: index ``i`` of an array of ``m``
    numbers is t = T - (m - 1 - i) K)."""
    if steps == 1 and not summary_only:
        return record
    out = {**record, "output": {"steps": steps, "summary_only": summary_only}}
    if summary_only:
        del out["trials"]
    elif steps > 1:
        keep = step_indices(T, steps)
        out["trials"] = [_thin(trial, keep) for trial in record["trials"]]
    return out


def _thin(node: dict[str, Any], keep: slice, inside: bool = False) -> dict[str, Any]:
    """``node`` with its per-step arrays (:data:`STEP_KEYS`, at any depth: those of
    ``trials[i].layers[j]`` too) cut to the steps ``keep``."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        step = inside or key in STEP_KEYS
        if isinstance(value, dict):
            out[key] = _thin(value, keep, key in STEP_KEYS)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out[key] = [_thin(v, keep, step) for v in value]
        elif step and isinstance(value, np.ndarray) and value.ndim == 1:
            out[key] = value[keep]
        else:
            out[key] = value
    return out


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
            "warmup": th.lyapunov.warmup,
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
        return float(median(np.where(np.isnan(x), np.inf, x)))

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
    if not isinstance(an, GatedAnalysis):
        return {}
    out: dict[str, Any] = {}
    if an.grad_c_log10 is not None:
        out["grad_c_log10"] = an.grad_c_log10
    out["gate_product_log10"] = an.gate_product_log10
    return out


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


def analysis_columns(an: Analysis) -> dict[str, Any]:
    """The columns of ``bptt analyze --format csv``, flat over trials and steps (row ``i T + k`` is
    trial ``i``, step ``t = k + 1``): ``trial``, ``t``, ``lag`` (integers), ``grad_h_log10``, its
    ``ratio_log10`` to t = T and the chapter's ``predicted_log10`` = ``(T - t) log10 rho`` (NaN for
    the gated cells), and a gated cell's ``grad_c_log10`` (LSTM) and ``gate_product_log10``.
    ``-inf`` is an exact zero; NaN undefined (both empty cells in the CSV). A stacked or
    bidirectional network has a row per trial, layer, direction and step (:func:`_stack_columns`)."""
    if len(an.layers) > 1:
        return _stack_columns(an)
    g = an.grad_h_log10
    n, T = g.shape
    lag = T - np.arange(1, T + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = g - g[:, -1:]
        predicted = lag[None, :] * np.log10(an.spectrum.spectral_radius)[:, None]
        predicted = np.where(lag[None, :] == 0, 0.0, predicted)
    extra = gated_trial_arrays(an) if an.spec.cell in GATED else {}
    if an.spec.cell in GATED:
        predicted = np.full_like(g, np.nan)
    columns: dict[str, Any] = {
        "trial": np.repeat(np.arange(n), T),
        "t": np.tile(np.arange(1, T + 1), n),
        "lag": np.tile(lag, n),
        "grad_h_log10": g.ravel(),
        "ratio_log10": ratio.ravel(),
        "predicted_log10": predicted.ravel(),
    }
    for name, values in extra.items():  # grad_c_log10 (LSTM), gate_product_log10, in that order
        columns[name] = np.asarray(values, dtype=np.float64).ravel()
    return columns


def _stack_columns(an: Analysis) -> dict[str, Any]:
    """The CSV columns of a stack: ``trial``, ``layer``, ``direction`` (``forward``/``reverse``),
    ``t``, ``lag`` (steps from its chain's start: ``T - t`` forward, ``t - 1`` reverse), then as for
    one layer, each layer's own: its ``grad_h_log10``, the ratio to its chain's start (t = T forward,
    t = 1 reverse) and ``steps log10 rho`` of its ``W_hh`` (NaN for
    gated cells); a gated cell's extra columns hold layer 0 forward's (NaN for the others). Rows:
    trial, then layer and direction, then t."""
    from bptt_cli.core.stack import DIRECTIONS

    n, T = an.grad_h_log10.shape
    t = np.arange(1, T + 1)
    gated = an.spec.cell in GATED
    extra = gated_trial_arrays(an) if gated else {}
    parts: dict[str, list[Any]] = {k: [] for k in ("trial", "layer", "direction", "t", "lag", "grad_h_log10",
                                                    "ratio_log10", "predicted_log10", *extra)}
    for i in range(n):
        for lay in an.layers:
            g = np.asarray(lay.grad_h_log10[i], dtype=np.float64)
            start = -1 if lay.direction == 0 else 0
            steps = (T - t) if lay.direction == 0 else (t - 1)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = g - g[start]
                rho = float(lay.spectrum.spectral_radius[i])
                predicted = np.full(T, np.nan) if gated else np.where(steps == 0, 0.0, steps * np.log10(rho))
            first = (lay.layer, lay.direction) == (0, 0)
            for key, value in (("trial", np.full(T, i)), ("layer", np.full(T, lay.layer)),
                               ("direction", np.full(T, DIRECTIONS[lay.direction], dtype=object)), ("t", t),
                               ("lag", steps), ("grad_h_log10", g), ("ratio_log10", ratio),
                               ("predicted_log10", predicted),
                               *((k, np.asarray(v[i], dtype=np.float64) if first else np.full(T, np.nan))
                                 for k, v in extra.items())):
                parts[key].append(value)
    return {k: np.concatenate(v) for k, v in parts.items()}


def write_analysis_csv(an: Analysis, write: Callable[[str], object], steps: int = 1) -> None:
    """The text of :func:`analysis_csv`, written ``CSV_ROWS`` rows at a time (T = 1e8 never
    exists as one string). Each column is formatted in bulk (:func:`bptt_cli.io.jsontext.number_tokens`:
    the floats' ``repr``, non-finite numbers empty), then the rows are joined. ``steps`` K > 1:
    only the rows of t = T, T - K, ... (:func:`step_indices`)."""
    from bptt_cli.io.jsontext import number_tokens

    buf = io.StringIO()
    columns = analysis_columns(an)
    if steps > 1:
        T = an.grad_h_log10.shape[1]
        chains = len(columns["t"]) // T  # trials, or trials x layer-directions
        rows = np.arange(chains * T).reshape(chains, T)[:, step_indices(T, steps)].ravel()
        columns = {k: np.asarray(v)[rows] for k, v in columns.items()}
    csv.writer(buf, lineterminator="\n").writerow(columns)
    write(buf.getvalue())
    labels = [columns.pop(k) for k in ("direction",) if k in columns]
    ints = [columns.pop(k) for k in ("trial", "layer", "t", "lag") if k in columns]
    floats = list(columns.values())
    for r0 in range(0, len(ints[0]), CSV_ROWS):
        r1 = r0 + CSV_ROWS
        cells = [number_tokens(c[r0:r1]) for c in ints] + [number_tokens(c[r0:r1], null="") for c in floats]
        if labels:  # a stack: trial, layer, direction, t, ...
            cells.insert(2, [str(v) for v in labels[0][r0:r1]])
        write("".join([",".join(row) + "\n" for row in zip(*cells, strict=True)]))


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
    """The JSON object of ``bptt spectrum --format json`` (keys documented in docs/json.md)."""
    spec = rep.spec
    sp = rep.spectrum
    keys = ("hidden", "ensemble", "gain", "radius", "norm", "trials", "seed", "T", "layers", "bidirectional")
    trials = []
    for i in range(sp.eigenvalues.shape[0]):
        eig = sp.eigenvalues[i]
        layers = [
            {
                "layer": lay.layer,
                "direction": DIRECTIONS[lay.direction],
                "spectrum": {
                    **spectrum_entry(lay.spectrum, i), "singular_values": lay.spectrum.singular_values[i]
                },
                "nonnormality": nonnormality_record(lay.henrici[i], lay.abscissa[i], lay.growth, i),
            }
            for lay in rep.layers
        ]
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
                "layers": layers,
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


def spectrum_columns(rep: SpectrumReport) -> dict[str, Any]:
    """The columns of ``bptt spectrum --format csv``, one row per trial and index i (eigenvalues
    by decreasing modulus, singular values decreasing); for a stacked or bidirectional network,
    per layer-direction too, in the ``layer`` and ``direction`` columns."""
    stacked = len(rep.layers) > 1
    parts = []
    for lay in rep.layers if stacked else rep.layers[:1]:
        eig, sv = lay.spectrum.eigenvalues, lay.spectrum.singular_values
        n, h = eig.shape
        part = {
            "trial": np.repeat(np.arange(n), h),
            "i": np.tile(np.arange(1, h + 1), n),
            "eigenvalue_re": eig.real.ravel(),
            "eigenvalue_im": eig.imag.ravel(),
            "modulus": np.hypot(eig.real, eig.imag).ravel(),  # as Python's abs(complex): libm's hypot
            "singular_value": sv.ravel(),
        }
        if stacked:
            part["layer"] = np.full(n * h, lay.layer)
            part["direction"] = np.full(n * h, DIRECTIONS[lay.direction])
        parts.append(part)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def spectrum_csv(rep: SpectrumReport) -> str:
    """One row per trial and index i (eigenvalues by decreasing modulus, singular values decreasing)
    and, for a stacked network, per layer-direction."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    columns = spectrum_columns(rep)
    writer.writerow(columns)
    trial, i, *floats = list(columns.values())[:6]
    rest = list(columns.values())[6:]
    for r in range(len(trial)):
        row = [int(trial[r]), int(i[r]), *(repr(float(c[r])) for c in floats)]
        writer.writerow([*row, int(rest[0][r]), str(rest[1][r])] if rest else row)
    return buf.getvalue()


def comparison_record(an: Analysis, param: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The JSON object of ``bptt truncate --format json`` (keys documented in docs/json.md)."""
    spec = an.spec
    rows = []
    for r in comparison_rows(an, param):
        row = {k: v for k, v in r.items() if not k.endswith("_log10")}
        for key in ("relative_error", "bias", "variance"):
            row[key], row[key + "_log10"] = pow10_value(r[key + "_log10"]), r[key + "_log10"]
        rows.append(row)
    params = an.grad_params_log10
    trials = [
        {
            "trial": i,
            "seed_spawn_key": list(an.net.seeds[i].spawn_key) if an.net.seeds else None,
            "grad_params_log10": {k: v[i] for k, v in params.items()},
            "estimators": [estimate_record(res, i) for res in an.estimates],
        }
        for i in range(an.net.shape[0])
    ]
    record: dict[str, Any] = {
        "version": __version__,
        "config": {**{k: getattr(spec, k) for k in spec.__dataclass_fields__}, **settings},
        "param": param,
        "rows": rows,
        "estimators": [estimate_summary(res) for res in an.estimates],
        "trials": trials,
    }
    if an.memory is not None:
        record["memory"] = memory_record(an.memory)
    return record
