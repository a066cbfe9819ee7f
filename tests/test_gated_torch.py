"""The gated cells against torch.autograd on nn.LSTM / nn.GRU (float64), when torch is installed.

torch is an optional extra (``pip install 'bptt-cli[torch]'``); CI without it skips this file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bptt_cli.cli import app
from bptt_cli.core.gated import gated_bptt
from bptt_cli.core.network import GATED_PARAMS as PARAMS
from bptt_cli.core.network import GatedNetwork, GatedSpec, build_network
from bptt_cli.core.scaled import to_float

torch = pytest.importorskip("torch")

RUNNER = CliRunner()


def torch_gradients(net: GatedNetwork, i: int, loss: str) -> dict[str, np.ndarray]:
    """Every gradient of trial ``i`` by autograd: parameters through nn.LSTM/nn.GRU, and dL/dh_t,
    dL/dc_t through nn.LSTMCell/nn.GRUCell with the same weights (retain_grad on every state)."""
    _, T, h, d, _ = net.shape
    Module = torch.nn.LSTM if net.cell == "lstm" else torch.nn.GRU
    Cell = torch.nn.LSTMCell if net.cell == "lstm" else torch.nn.GRUCell
    rnn = Module(d, h, dtype=torch.float64)
    cell = Cell(d, h, dtype=torch.float64)
    with torch.no_grad():
        for name in PARAMS[:4]:
            getattr(rnn, name).copy_(torch.from_numpy(getattr(net, name)[i]))
            getattr(cell, name[:-3]).copy_(torch.from_numpy(getattr(net, name)[i]))
    W_qh = torch.tensor(net.W_qh[i], requires_grad=True)
    b_q = torch.tensor(net.b_q[i], requires_grad=True)
    x, y = torch.from_numpy(net.x[i]), torch.from_numpy(net.y[i])

    def total(hs: torch.Tensor) -> torch.Tensor:  # hs (T, h)
        e = hs @ W_qh.T + b_q - y
        per_step = 0.5 * (e**2).sum(dim=1)
        return per_step.mean() if loss == "mean" else per_step[-1]

    out, _ = rnn(x)
    total(out).backward()
    grads = {name: getattr(rnn, name).grad.numpy().copy() for name in PARAMS[:4]}
    grads["W_qh"], grads["b_q"] = W_qh.grad.numpy().copy(), b_q.grad.numpy().copy()

    hs, cs = [], []
    state = None
    for t in range(T):
        state = cell(x[t : t + 1], state)
        if net.cell == "lstm":
            state[0].retain_grad()
            state[1].retain_grad()
            hs.append(state[0])
            cs.append(state[1])
        else:
            state.retain_grad()
            hs.append(state)
    total(torch.cat(hs)).backward()
    grads["h"] = np.stack([v.grad[0].numpy() for v in hs])
    if net.cell == "lstm":
        grads["c"] = np.stack([v.grad[0].numpy() for v in cs])
    return grads


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("loss", ["last", "mean"])
def test_every_gradient_against_torch_autograd(cell: str, loss: str) -> None:
    spec = GatedSpec(
        cell=cell,
        loss=loss,
        T=300,
        hidden=6,
        inputs_dim=3,
        outputs_dim=2,
        trials=2,
        gain=2.0,
        forget_bias=1.0,
    )
    net = build_network(spec)
    _, g = gated_bptt(net, loss)
    for i in range(2):
        ref = torch_gradients(net, i, loss)
        for name in PARAMS:
            assert relative(to_float(g.params[name][0][i], g.params[name][1][i]), ref[name]) < 1e-10, name
        # dL/dh_t, dL/dc_t vector by vector, relative to each one's norm
        dh = to_float(g.dL_dh_m[i], g.dL_dh_s[i])
        err = np.linalg.norm(dh - ref["h"], axis=1) / np.linalg.norm(ref["h"], axis=1)
        assert np.max(err) < 1e-10
        if cell == "lstm":
            dc = to_float(g.dL_dc_m[i], g.dL_dc_s[i])
            err = np.linalg.norm(dc - ref["c"], axis=1) / np.linalg.norm(ref["c"], axis=1)
            assert np.max(err) < 1e-10


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_saved_state_dict_loads_like_the_npz(tmp_path: Path, cell: str) -> None:
    Module = torch.nn.LSTM if cell == "lstm" else torch.nn.GRU
    torch.manual_seed(0)
    rnn = Module(3, 5)  # float32, as most users train
    torch.save(rnn.state_dict(), tmp_path / "model.pt")
    np.savez(tmp_path / "model.npz", **{k: v.numpy() for k, v in rnn.state_dict().items()})
    records = []
    for name in ("model.pt", "model.npz"):
        result = RUNNER.invoke(
            app,
            ["analyze", "--cell", cell, "--weights", str(tmp_path / name), "--T", "50", "--format", "json"],
        )
        assert result.exit_code == 0, result.stderr
        records.append(json.loads(result.stdout))
    pt, npz = records
    assert pt["trials"] == npz["trials"]
    assert pt["summary"] == npz["summary"]
    assert pt["config"]["hidden"] == 5 and pt["config"]["inputs_dim"] == 3


def test_unsafe_or_wrong_pt_files_are_one_line(tmp_path: Path) -> None:
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    torch.save({"weight_hh_l0": torch.zeros(8, 2), "note": Path("x")}, tmp_path / "unsafe.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a zip")
    for name, words in (
        ("tensor.pt", "not a state_dict"),
        ("unsafe.pt", "weights_only"),
        ("garbage.pt", "weights_only"),
        ("missing.pt", "cannot read"),
    ):
        result = RUNNER.invoke(app, ["analyze", "--cell", "lstm", "--weights", str(tmp_path / name)])
        assert result.exit_code == 2, (name, result.stderr)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("bptt: error: ") and words in lines[0], (name, lines)
