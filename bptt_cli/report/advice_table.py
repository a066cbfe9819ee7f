"""``bptt advise`` in a table: one row per recommendation, its value, the evidence and the measured
check ("before -> after"); pieces that do not apply are listed with their reason."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.table import Table

from bptt_cli.report.format import pow10

if TYPE_CHECKING:
    from rich.console import Console


def _g(x: Any, digits: int = 3) -> str:
    """A number in a short form, ``-`` for none."""
    return "-" if x is None else f"{x:.{digits}g}"


def _gain(x: Any) -> str:
    """A gain in orders of magnitude: ``10^-2.31`` (``10^+3.1e+05`` far out)."""
    if x is None or not math.isfinite(x):
        return "0" if x == -math.inf else "-"
    return f"10^{x:+.2f}" if abs(x) < 1e4 else f"10^{x:+.3g}"


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
                "full BPTT" if tr["full_bptt"] else str(tr["K"]) + (
                    "" if tr["cheaper_than_full"] else " (dearer than full BPTT: keep full BPTT)"),
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
                pow10(clip["threshold_log10"]) if clip["threshold_log10"] is not None else "0",
                f"quantile {clip['quantile']:g} of ||g|| over {clip['draws']} sequences",
                f"clips {clip['clipped_fraction']:.0%} of them; "
                f"bias of the mean gradient {_g(clip['relative_bias'])}",
            )
        )
    init = advice.get("init")
    if init is not None:
        knob = init["knob"]
        at = {c["factor"]: c["gain_log10"] for c in init["checks"]}
        found = "gradient ratio 1 measured" if init["bracketed"] else "gradient ratio nearest 1 measured"
        value = f"W_hh x {init['rescale']:.6g}" if knob == "rescale" else f"--{knob} {init['value']:.6g}"
        if init["edge_of_chaos"] is not None:
            where = "x" if knob == "rescale" else f"--{knob}"
            edge = (
                f"mean field: chi_1 = 1 at {where} {init['edge_of_chaos']:.4g} "
                f"(now {_g(init['chi_1_before'])}), ratio there {_gain(at[1.0])}, "
                f"at 0.8x {_gain(at[0.8])}, at 1.2x {_gain(at[1.2])}"
            )
        else:
            edge = f"no mean field: {init['mean_field_reason']}"
        evidence = f"{found} here; {edge}"
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
    worst = " (the worst layer's)" if config.get("layers", 1) > 1 or config.get("bidirectional") else ""
    console.print(f"diagnosis {diagnosis['verdict']}, gain {_gain(diagnosis['gain_log10'])}{worst}")
    table = Table(title="Advice, each checked by re-running the exact analysis", title_justify="left")
    for col in ("recommendation", "value", "evidence", "measured check"):
        table.add_column(col, overflow="fold")
    for row in advice_rows(advice):
        table.add_row(*row)
    console.print(table)
    for name, reason in advice.get("reasons", {}).items():
        console.print(f"no {name.replace('_', ' ')}: {reason}")
