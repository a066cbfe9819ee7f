"""``bptt advise`` in a table: one row per recommendation, its value, the evidence and the measured
check ("before -> after"); pieces that do not apply are listed with their reason."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.table import Table

if TYPE_CHECKING:
    from rich.console import Console


def _g(x: Any, digits: int = 3) -> str:
    """A number in a short form, ``-`` for none."""
    return "-" if x is None else f"{x:.{digits}g}"


def _gain(x: Any) -> str:
    """A gain in orders of magnitude: ``10^-2.31``."""
    return "-" if x is None else f"10^{x:+.2f}"


def advice_rows(advice: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """``(recommendation, value, evidence, check)`` of every piece that applies."""
    rows = []
    tr = advice.get("truncation")
    if tr is not None:
        below = (
            f"; {_g(tr['relative_error_below'])} at K = {tr['K_below']}"
            if tr.get("relative_error_below") is not None
            else ""
        )
        half = (
            f", {_g(tr['relative_error_half'])} at K = {tr['K_half']}"
            if tr.get("relative_error_half") is not None and tr["K_half"] != tr.get("K_below")
            else ""
        )
        rnd = tr.get("randomized")
        other = (
            ""
            if rnd is None
            else (
                f"; randomized P = {rnd['keep_prob']:g}: error {_g(rnd['relative_error'])} at cost "
                f"{rnd['cost_ratio']:.2f}x ({'better' if tr['randomized_beats_window'] else 'worse'})"
            )
        )
        rows.append(
            (
                "truncation window K",
                "full BPTT" if tr["full_bptt"] else str(tr["K"]),
                f"error of dL/dW_hh {_g(tr['relative_error'])} <= budget {tr['budget']:g}"
                f"{below}{half}{other}",
                f"cost {tr['cost_ratio']:.2f}x full BPTT",
            )
        )
    clip = advice.get("clip")
    if clip is not None:
        rows.append(
            (
                "clipping threshold",
                _g(clip["threshold"]),
                f"quantile {clip['quantile']:g} of ||g|| over {clip['draws']} sequences",
                f"clips {clip['clipped_fraction']:.0%} of them; "
                f"bias of the mean gradient {_g(clip['relative_bias'])}",
            )
        )
    init = advice.get("init")
    if init is not None:
        knob = init["knob"]
        at = {c["factor"]: c["gain_log10"] for c in init["checks"]}
        nearest = "measured gain 1" if init["bracketed"] else "measured gain nearest 1 within x1/2..x2"
        if knob == "rescale":
            value = f"W_hh x {init['rescale']:.4g}"
            evidence = (
                f"{nearest}; mean field: edge of chaos at x {_g(init['edge_of_chaos'], 4)}, "
                f"chi_1 {_g(init['chi_1_before'])} -> {_g(init['chi_1'])}"
            )
        else:
            value = f"--{knob} {init['value']:.4g}"
            evidence = (
                f"mean field chi_1 = 1 (now {_g(init['chi_1_before'])}); gains at 0.8x, 1.2x: "
                f"{_gain(at[0.8])}, {_gain(at[1.2])}; {nearest} at --{knob} {init['measured_value']:.4g}"
            )
            alt = init.get("alternatives")
            if alt:
                evidence += "; " + ", ".join(f"--ensemble {k}: {_gain(v)}" for k, v in alt.items())
        rows.append(
            (
                "initial scale of W_hh",
                value,
                evidence,
                f"gain {_gain(init['gain_log10_before'])} -> {_gain(init['gain_log10_after'])}",
            )
        )
    fb = advice.get("forget_bias")
    if fb is not None:
        rows.append(
            (
                "LSTM forget bias",
                f"--forget-bias {fb['value']:.3g}",
                f"least bias keeping the gain above 10^{fb['floor_log10']:g} (from {fb['before']:g})",
                f"gain {_gain(fb['gain_log10_before'])} -> {_gain(fb['gain_log10_after'])}",
            )
        )
    hz = advice.get("horizon")
    if hz is not None:
        rate = hz["rate_log10_per_step"]
        which = "vanishe" if hz["vanish"] is not None else "explode" if hz["explode"] is not None else None
        steps = hz["vanish"] if which == "vanishe" else hz["explode"] if which else None
        value = f"{which}s after {steps:.3g} steps" if steps is not None else "none within T"
        check = (
            f"T = {hz['T']} is {hz['T_over_horizon']:.3g}x the horizon"
            if hz["exceeds"]
            else f"T = {hz['T']} is within it"
        )
        rows.append(
            (
                "gradient horizon",
                value,
                f"measured rate {_g(rate)} decades per step, tolerance {hz['tolerance']:g}",
                check,
            )
        )
        if hz.get("predictability_steps") is not None:
            rows.append(
                (
                    "chaos: truncation / teacher forcing interval",
                    str(hz["interval"]),
                    f"lambda_1 = {hz['lyapunov']:.3g} per step > 0: predictability ln 2 / lambda_1 = "
                    f"{hz['predictability_steps']:.3g} steps",
                    "gradients over longer spans diverge",
                )
            )
    return rows


def render_advice(record: Mapping[str, Any], console: Console) -> None:
    """The diagnosis line, the table of recommendations, and why the others do not apply."""
    config, diagnosis, advice = record["config"], record["diagnosis"], record["advice"]
    net = f"cell {config['cell']}, T {config['T']}, hidden {config['hidden']}"
    if config.get("layers", 1) > 1 or config.get("bidirectional"):
        net += f", {config['layers']} layers" + (", bidirectional" if config.get("bidirectional") else "")
    source = config.get("weights") or f"{config['ensemble']} ensemble"
    console.print(f"network   {net} ({source})")
    console.print(f"diagnosis {diagnosis['verdict']}, gain {_gain(diagnosis['gain_log10'])} from t = T to 1")
    table = Table(title="Advice, each checked by re-running the exact analysis", title_justify="left")
    for col in ("recommendation", "value", "evidence", "measured check"):
        table.add_column(col, overflow="fold")
    for row in advice_rows(advice):
        table.add_row(*row)
    console.print(table)
    for name, reason in advice.get("reasons", {}).items():
        console.print(f"no {name.replace('_', ' ')}: {reason}")
