"""Memory-efficient BPTT: checkpointed and stored passes agree bit for bit; sizes and budgets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bptt_cli.analysis.memory import Sizes, choose_checkpoint, peak_rss_bytes
from bptt_cli.core.cells import CELLS
from bptt_cli.core.elman import BLOCK, bptt
from bptt_cli.core.network import PARAMS, Spec, build_network
from bptt_cli.errors import BadInput
from bptt_cli.estimators.estimator import CHAIN_PARAMS, Estimator
from bptt_cli.estimators.truncation import truncated_gradients
from bptt_cli.units import format_size, parse_size

CELL_NAMES = ("identity", "tanh", "relu", "sigmoid")


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bitwise equality, NaNs and infinities included."""
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("loss", ["last", "mean"])
@pytest.mark.parametrize(("T", "K"), [(37, 16), (37, 8), (40, 40), (5, 16)])
def test_checkpointed_pass_is_bitwise_the_stored_pass(cell: str, loss: str, T: int, K: int) -> None:
    """Every gradient, scale, loss and gain, for T not a multiple of K (and K >= T)."""
    radius = 1.6 if cell in ("identity", "relu") else 2.5  # exploding, some saturation
    spec = Spec(cell=cell, loss=loss, T=T, hidden=7, inputs_dim=3, outputs_dim=2, radius=radius, trials=3,
                bias=0.5)
    net = build_network(spec)
    f1, g1 = bptt(net, CELLS[cell], loss, None, block=8)
    f2, g2 = bptt(net, CELLS[cell], loss, K, block=8)
    assert f2.checkpoints is not None and f2.h_m is None and g2.dL_dh_m is None
    for a, b in ((f1.h_s, f2.h_s), (f1.e_s, f2.e_s), (g1.dL_dh_s, g2.dL_dh_s), (g1.dL_da_s, g2.dL_da_s),
                 (g1.loss_ln, g2.loss_ln), (g1.gain_ln, g2.gain_ln)):
        assert same(a, b)
    for name in PARAMS:
        assert same(g1.params[name][0], g2.params[name][0]) and same(g1.params[name][1], g2.params[name][1])
    # the estimators read the forward values segment by segment: the same numbers too
    ests = (Estimator("window", K=3), Estimator("chunk", K=5), Estimator("random", keep_prob=0.5, draws=3))
    for est in ests:
        a = truncated_gradients(net, CELLS[cell], loss, f1, est)
        b = truncated_gradients(net, CELLS[cell], loss, f2, est)
        assert same(a.backward_steps, b.backward_steps)
        for name in CHAIN_PARAMS:
            assert same(a.params[name][0], b.params[name][0]) and same(a.params[name][1], b.params[name][1])


def test_checkpointed_pass_at_the_default_block() -> None:
    spec = Spec(cell="tanh", loss="mean", T=700, hidden=5, radius=1.3, trials=2)
    net = build_network(spec)
    _, g1 = bptt(net, CELLS["tanh"], "mean")
    _, g2 = bptt(net, CELLS["tanh"], "mean", 2 * BLOCK)
    assert same(g1.dL_dh_s, g2.dL_dh_s)
    for name in PARAMS:
        assert same(g1.params[name][0], g2.params[name][0])


@pytest.mark.parametrize(
    ("text", "value"),
    [("100", 100), ("1K", 1024), ("512M", 512 * 2**20), ("512MB", 512 * 2**20), ("2GiB", 2 * 2**30),
     ("1.5g", 3 * 2**29), (" 64 kb ", 64 * 1024), ("1e6", 10**6), ("10B", 10)],
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["12Q", "", "M", "-5M", "0", "0.1", "1..5G", "5 M B", "inf", "nan"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(BadInput):
        parse_size(text)


def test_format_size() -> None:
    assert format_size(100) == "100 B"
    assert format_size(3 * 2**29) == "1.5 GiB"


def test_stored_estimate_is_about_four_T_h_floats() -> None:
    s = Sizes(1, 1_000_000, 1024, 8, 8, BLOCK)
    assert 4 * 1_000_000 * 1024 * 8 < s.stored() < 1.1 * 4 * 1_000_000 * 1024 * 8  # 8 GB, as issue 5 says
    K = choose_checkpoint("auto", s).checkpoint_every
    assert K is not None and K % BLOCK == 0 and 256 <= K <= 2048
    assert s.checkpointed(K) < s.stored() / 20


def test_choose_checkpoint() -> None:
    small = Sizes(1, 100, 64, 8, 8, BLOCK)
    big = Sizes(1, 1_000_000, 256, 8, 8, BLOCK)
    assert choose_checkpoint("auto", small).checkpoint_every is None
    assert choose_checkpoint("none", big).checkpoint_every is None
    assert choose_checkpoint("auto", big).checkpoint_every is not None
    assert choose_checkpoint("300", big).checkpoint_every == 512  # rounded up to a multiple of 256
    # beyond T: one segment, reported as the first multiple of 256 from T (it said 100096 for T 5000)
    assert choose_checkpoint("100000", Sizes(1, 5000, 64, 8, 8, BLOCK)).checkpoint_every == 5120
    assert choose_checkpoint("100000", small).checkpoint_every == 256
    assert choose_checkpoint("auto", small, max_memory=10**9).checkpoint_every is None
    # a budget below the stored pass but above the checkpointed one: checkpoint
    plan = choose_checkpoint("auto", big, max_memory=400 * 2**20)
    assert plan.checkpoint_every is not None and plan.estimated_bytes <= 400 * 2**20
    for setting, budget in (("none", 400 * 2**20), ("auto", 2**20), ("1024", 2**20)):
        with pytest.raises(BadInput, match="--max-memory"):
            choose_checkpoint(setting, big, max_memory=budget)
    for bad in ("0", "-3", "abc", "1.5"):
        with pytest.raises(BadInput, match="--checkpoint"):
            choose_checkpoint(bad, big)


def test_peak_rss_is_plausible() -> None:
    peak = peak_rss_bytes()
    assert 10 * 2**20 < peak < 64 * 2**30


@pytest.mark.parametrize(
    "args",
    [
        ["--cell", "tanh", "--loss", "mean", "--hidden", "4"],
        ["--cell", "tanh", "--loss", "last", "--hidden", "4", "--checkpoint", "256"],
        ["--cell", "relu", "--loss", "mean", "--hidden", "16", "--inputs-dim", "1", "--outputs-dim", "1"],
        ["--cell", "sigmoid", "--loss", "mean", "--hidden", "16", "--checkpoint", "256"],
        ["--cell", "identity", "--loss", "last", "--hidden", "4", "--trials", "3"],
        ["--cell", "tanh", "--loss", "last", "--hidden", "1", "--inputs-dim", "16", "--outputs-dim", "16"],
    ],
)
def test_estimate_against_tracemalloc_of_the_whole_command(args: list[str], tmp_path: Path) -> None:
    """The estimate counts what `bptt analyze --format json` holds at its peak (every numpy
    allocation and the JSON record streamed), not only the BPTT pass: within 1.0 to 1.4."""
    import json
    import tracemalloc

    from clitools import bptt as run

    out = tmp_path / "r.json"
    assert run("analyze", "--T", "300", "--hidden", "3", "--output", out).exit_code == 0  # imports first
    tracemalloc.start()
    try:
        result = run("analyze", "--T", "20000", *args, "--output", out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.stderr
    estimate = json.loads(out.read_text())["memory"]["estimated_bytes"]
    assert 1.0 <= estimate / peak <= 1.4, (estimate, peak)


@pytest.mark.parametrize(
    "args",
    [
        ["--cell", "tanh", "--T", "6000", "--hidden", "8", "--layers", "3"],
        ["--cell", "identity", "--T", "6000", "--hidden", "1", "--layers", "2", "--inputs-dim", "16"],
        ["--cell", "lstm", "--T", "1500", "--hidden", "8", "--layers", "2", "--bidirectional",
         "--loss", "mean"],
        ["--cell", "gru", "--T", "1500", "--hidden", "32", "--layers", "2", "--inputs-dim", "1"],
    ],
)
def test_stack_estimate_against_tracemalloc(args: list[str], tmp_path: Path) -> None:
    """A stacked or bidirectional network stores every layer's states: the estimate
    (`stack_bytes`) is within 0.95 to 1.6 of the peak of the whole command."""
    import json
    import tracemalloc

    from clitools import bptt as run

    out = tmp_path / "r.json"
    warm = ("--T", "300", "--hidden", "3", "--layers", "2", "--cell", args[1])
    assert run("analyze", *warm, "--output", out).exit_code == 0  # imports first
    tracemalloc.start()
    try:
        result = run("analyze", *args, "--output", out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.stderr
    estimate = json.loads(out.read_text())["memory"]["estimated_bytes"]
    assert 0.95 <= estimate / peak <= 1.6, (estimate, peak)


def test_a_stack_beyond_the_budget_is_refused_before_anything_runs() -> None:
    from clitools import bptt as run

    result = run("analyze", "--T", "100000", "--hidden", "64", "--layers", "3", "--cell", "lstm")
    assert result.exit_code == 2
    assert result.stderr.startswith("bptt: error: a stacked or bidirectional network stores every state")
    assert "(T 100000, hidden 64, 3 layers)" in result.stderr and result.stderr.count("\n") == 1
    small = run("analyze", "--T", "2000", "--hidden", "8", "--layers", "2", "--max-memory", "1M")
    assert small.exit_code == 2 and "--max-memory 1 MiB is too small" in small.stderr, small.stderr
