"""Weights files as PyTorch writes them: name clashes in any order, module prefixes and a Linear
head, .pt files for every cell, values beyond float64, and one clean line for each refusal.

The .npz cases are built by hand (they need no torch); the .pt cases and the check against
torch.autograd on a whole model (an ``lstm`` sub-module and an ``fc`` head) run when torch is
importable and are skipped otherwise.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from adapters import random_trial
from clitools import assert_bad_input, bptt, bptt_json

from bptt_cli.io.weights import load_weights

H, D, Q, T = 5, 3, 2, 30


def _elman(rng: np.random.Generator) -> dict[str, np.ndarray]:
    p, _, _ = random_trial(rng, H, D, Q, T)
    return p


def _data(tmp_path: Path, rng: np.random.Generator, d: int = D, q: int = Q) -> list[Any]:
    np.save(tmp_path / "x.npy", rng.standard_normal((T, d)))
    np.save(tmp_path / "y.npy", rng.standard_normal((T, q)))
    return ["--inputs", tmp_path / "x.npy", "--targets", tmp_path / "y.npy"]


# ------------------------------------------------------------------- item: name clashes
@pytest.mark.parametrize("order", [("W_hh", "b_h", "bias_hh_l0"), ("W_hh", "bias_hh_l0", "b_h")])
def test_a_native_name_beside_its_pytorch_name_is_bad_in_any_order(
    tmp_path: Path, order: tuple[str, ...]
) -> None:
    """b_h and bias_hh_l0 used to be summed in one key order and refused in the other."""
    arrays = {"W_hh": 0.5 * np.eye(6), "b_h": np.ones(6), "bias_hh_l0": np.ones(6)}
    np.savez(tmp_path / "w.npz", **{k: arrays[k] for k in order})
    assert list(np.load(tmp_path / "w.npz").files) == list(order)  # the order is really kept
    assert_bad_input(bptt("analyze", "--weights", tmp_path / "w.npz"), "b_h", "twice", "'bias_hh_l0'")


def test_pytorch_biases_of_different_shapes_name_both_shapes(tmp_path: Path) -> None:
    for order in (("bias_hh_l0", "bias_ih_l0"), ("bias_ih_l0", "bias_hh_l0")):
        arrays = {"weight_hh_l0": 0.5 * np.eye(6), "bias_hh_l0": np.ones(6), "bias_ih_l0": np.ones(7)}
        np.savez(tmp_path / "w.npz", weight_hh_l0=arrays["weight_hh_l0"], **{k: arrays[k] for k in order})
        line = assert_bad_input(
            bptt("analyze", "--weights", tmp_path / "w.npz"), "(6,)", "(7,)", "same shape"
        )
        assert "bias_hh_l0" in line and "bias_ih_l0" in line and "twice" not in line


def test_pytorch_biases_are_summed_whatever_their_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    b_hh, b_ih = rng.standard_normal(4), rng.standard_normal(4)
    np.savez(tmp_path / "a.npz", weight_hh_l0=0.5 * np.eye(4), bias_hh_l0=b_hh, bias_ih_l0=b_ih)
    np.savez(tmp_path / "b.npz", bias_ih_l0=b_ih, weight_hh_l0=0.5 * np.eye(4), bias_hh_l0=b_hh)
    a, b = load_weights(tmp_path / "a.npz"), load_weights(tmp_path / "b.npz")
    np.testing.assert_array_equal(a["b_h"], b_hh + b_ih)
    np.testing.assert_array_equal(b["b_h"], b_ih + b_hh)


# ------------------------------------------------------------- item: beyond float64
LONG = np.finfo(np.longdouble)


@pytest.mark.skipif(float(np.log10(LONG.max)) < 400, reason="this platform's long double is float64")
def test_a_wider_float_beyond_float64_is_one_line_without_a_warning(tmp_path: Path) -> None:
    """numpy's cast warned 'overflow' (pytest's filterwarnings=error makes that an exception
    here) and the message said 'inf' of a file holding no inf."""
    W = np.array([[np.longdouble("1e400"), 0], [0, 1]], dtype=np.longdouble)
    np.save(tmp_path / "ld.npy", W)
    line = assert_bad_input(
        bptt("analyze", "--weights", tmp_path / "ld.npy"), "W_hh", "ld.npy", "beyond float64"
    )
    assert "1e+400" in line and "contains inf" not in line
    W[0, 0] = np.inf
    np.save(tmp_path / "inf.npy", W)
    assert_bad_input(bptt("analyze", "--weights", tmp_path / "inf.npy"), "W_hh", "contains inf")
    np.save(tmp_path / "ok.npy", np.array([[0.5, 0], [0, 0.25]], dtype=np.longdouble))
    assert (
        bptt_json("--weights", tmp_path / "ok.npy", "--T", 3)["trials"][0]["spectrum"]["spectral_radius"]
        == 0.5
    )


# ------------------------------------------------ item: module prefixes and a Linear head
def _model_dict(
    prefix: str, rnn: dict[str, np.ndarray], head: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    return {**{f"{prefix}.{k}": v for k, v in rnn.items()}, **{f"fc.{k}": v for k, v in head.items()}}


def test_an_elman_models_state_dict_loads_as_its_parts(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    p = _elman(rng)
    b_ih = rng.standard_normal(H)
    rnn = {"weight_ih_l0": p["W_hx"], "weight_hh_l0": p["W_hh"], "bias_ih_l0": b_ih, "bias_hh_l0": p["b_h"]}
    np.savez(tmp_path / "model.npz", **_model_dict("rnn", rnn, {"weight": p["W_qh"], "bias": p["b_q"]}))
    np.savez(tmp_path / "ours.npz", **{**p, "b_h": p["b_h"] + b_ih})
    data = [*_data(tmp_path, rng), "--cell", "tanh"]
    model = bptt_json("--weights", tmp_path / "model.npz", *data)
    ours = bptt_json("--weights", tmp_path / "ours.npz", *data)
    assert model["trials"] == ours["trials"] and model["config"]["outputs_dim"] == Q


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_gated_models_state_dict_loads_as_its_parts(tmp_path: Path, cell: str) -> None:
    rng = np.random.default_rng(6)
    G = 4 if cell == "lstm" else 3
    rnn = {
        "weight_ih_l0": rng.uniform(-0.4, 0.4, (G * H, D)),
        "weight_hh_l0": rng.uniform(-0.4, 0.4, (G * H, H)),
        "bias_ih_l0": rng.uniform(-0.4, 0.4, G * H),
        "bias_hh_l0": rng.uniform(-0.4, 0.4, G * H),
    }
    head = {"weight": rng.standard_normal((Q, H)), "bias": rng.standard_normal(Q)}
    np.savez(tmp_path / "model.npz", **_model_dict(cell, rnn, head))
    np.savez(tmp_path / "ours.npz", **rnn, W_qh=head["weight"], b_q=head["bias"])
    data = [*_data(tmp_path, rng), "--cell", cell]
    model = bptt_json("--weights", tmp_path / "model.npz", *data)
    ours = bptt_json("--weights", tmp_path / "ours.npz", *data)
    assert model["trials"] == ours["trials"]
    # the head alone, without a bias, and no head at all
    np.savez(tmp_path / "nobias.npz", **_model_dict(cell, rnn, {"weight": head["weight"]}))
    assert bptt_json("--weights", tmp_path / "nobias.npz", *data)["config"]["outputs_dim"] == Q
    np.savez(tmp_path / "nohead.npz", **{f"encoder.{cell}.{k}": v for k, v in rnn.items()})
    assert bptt_json("--weights", tmp_path / "nohead.npz", *data[:2], "--cell", cell, "--outputs-dim", 4)


def _lstm_parts(rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rnn = {
        "weight_ih_l0": rng.standard_normal((4 * H, D)) * 0.3,
        "weight_hh_l0": rng.standard_normal((4 * H, H)) * 0.3,
        "bias_ih_l0": np.zeros(4 * H),
        "bias_hh_l0": np.zeros(4 * H),
    }
    return rnn, {"weight": rng.standard_normal((Q, H)), "bias": np.zeros(Q)}


def _bad_models() -> list[tuple[str, Any, tuple[str, ...]]]:
    rnn, head = _lstm_parts(np.random.default_rng(0))
    both = {**_model_dict("lstm", rnn, head), **{f"lstm2.{k}": v for k, v in rnn.items()}}
    return [
        ("two recurrent modules", both, ("'lstm'", "'lstm2'", "several modules")),
        (
            "two heads",
            {**_model_dict("lstm", rnn, head), "emb.weight": np.ones((7, D))},
            ("'emb.weight'", "'fc.weight'", "one Linear output layer"),
        ),
        (
            "a head's other tensor",
            {**_model_dict("lstm", rnn, head), "fc.running_mean": np.ones(Q)},
            ("'fc.running_mean'", "one Linear output layer"),
        ),
        (
            "a bias without a weight",
            {**{f"lstm.{k}": v for k, v in rnn.items()}, "fc.bias": np.ones(Q)},
            ("'fc.bias'",),
        ),
        (
            "head of the wrong width",
            _model_dict("lstm", rnn, {"weight": np.ones((Q, H + 1))}),
            ("'fc.weight'", f"({Q}, {H + 1})", f"(q, {H})"),
        ),
        (
            "head bias of the wrong size",
            _model_dict("lstm", rnn, {"weight": np.ones((Q, H)), "bias": np.ones(Q + 1)}),
            ("'fc.bias'", f"({Q + 1},)", f"({Q},)"),
        ),
        (
            "W_qh beside a head",
            {**_model_dict("lstm", rnn, head), "W_qh": np.ones((Q, H))},
            ("W_qh", "twice", "'fc.weight'"),
        ),
        (
            "a layer missing",
            {**_model_dict("lstm", rnn, head), "lstm.weight_hh_l2": rnn["weight_hh_l0"]},
            ("weight_hh_l1", "layer 1", "missing"),
        ),
        (
            "a second direction, the head one direction wide",
            {**_model_dict("lstm", rnn, head), "lstm.weight_hh_l0_reverse": rnn["weight_hh_l0"]},
            ("'fc.weight'", f"(q, {2 * H})", "2h"),
        ),
        (
            "a projection",
            {**_model_dict("lstm", rnn, head), "lstm.weight_hr_l0": np.ones((H, H))},
            ("'weight_hr_l0'", "proj_size"),
        ),
    ]


@pytest.mark.parametrize(("name", "arrays", "words"), _bad_models(), ids=[b[0] for b in _bad_models()])
def test_other_model_state_dicts_are_one_line_naming_the_key(
    tmp_path: Path, name: str, arrays: dict[str, np.ndarray], words: tuple[str, ...]
) -> None:
    np.savez(tmp_path / "m.npz", **arrays)
    assert_bad_input(bptt("analyze", "--cell", "lstm", "--weights", tmp_path / "m.npz"), "m.npz", *words)


def test_spectrum_of_gated_weights_says_what_fits_spectrum(tmp_path: Path) -> None:
    rnn, _ = _lstm_parts(np.random.default_rng(1))
    np.savez(tmp_path / "lstm.npz", **rnn)
    line = assert_bad_input(bptt("spectrum", "--weights", tmp_path / "lstm.npz"), "square", "(20, 5)")
    assert "bptt analyze --cell lstm" in line and "add --cell" not in line  # spectrum has no --cell
    line = assert_bad_input(bptt("analyze", "--weights", tmp_path / "lstm.npz"), "square")
    assert "add --cell lstm" in line


# ------------------------------------------------------------------------- with torch
def _torch() -> Any:
    return pytest.importorskip("torch")


def _state_dict_npz(path: Path, module: Any) -> None:
    np.savez(path, **{k: v.detach().numpy() for k, v in module.state_dict().items()})


def test_a_pt_file_is_read_by_torch_for_the_elman_cell_too(tmp_path: Path) -> None:
    """It used to be opened as a .npz: "unknown array 'rnn/data.pkl'"."""
    torch = _torch()
    torch.manual_seed(0)
    rnn = torch.nn.RNN(D, H)
    torch.save(rnn.state_dict(), tmp_path / "rnn.pt")
    _state_dict_npz(tmp_path / "rnn.npz", rnn)
    data = [*_data(tmp_path, np.random.default_rng(0)), "--cell", "tanh"]
    pt = bptt_json("--weights", tmp_path / "rnn.pt", *data)
    npz = bptt_json("--weights", tmp_path / "rnn.npz", *data)
    assert pt["trials"] == npz["trials"] and pt["config"]["hidden"] == H
    (tmp_path / "saved.npz").write_bytes((tmp_path / "rnn.pt").read_bytes())  # torch.save under a .npz name
    assert bptt_json("--weights", tmp_path / "saved.npz", *data)["trials"] == npz["trials"]


@pytest.mark.parametrize("cell", ["identity", "lstm"])
def test_a_pickled_whole_module_is_one_clean_line(tmp_path: Path, cell: str) -> None:
    torch = _torch()
    torch.save(torch.nn.LSTM(D, H), tmp_path / "whole.pt")
    line = assert_bad_input(
        bptt("analyze", "--cell", cell, "--weights", tmp_path / "whole.pt"),
        "whole.pt",
        "pickled",
        "torch.nn.modules.rnn.LSTM",
        "state_dict()",
    )
    assert "\t" not in line and "Weights only load failed" not in line


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_a_typical_models_state_dict_against_torch_autograd(tmp_path: Path, kind: str) -> None:
    """A module with an ``lstm`` (``gru``, ``rnn``) sub-module and an ``fc`` head, saved as .pt and as
    .npz, loads directly, and its loss and gradients are torch.autograd's on that model."""
    torch = _torch()
    cell = {"LSTM": "lstm", "GRU": "gru", "RNN": "tanh"}[kind]

    class Model(torch.nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            setattr(self, kind.lower(), getattr(torch.nn, kind)(D, H, batch_first=True, dtype=torch.float64))
            self.fc = torch.nn.Linear(H, Q, dtype=torch.float64)

        def forward(self, x: Any) -> Any:
            out, _ = getattr(self, kind.lower())(x)
            return self.fc(out)

    torch.manual_seed(1)
    model = Model()
    torch.save(model.state_dict(), tmp_path / "model.pt")
    _state_dict_npz(tmp_path / "model.npz", model)
    rng = np.random.default_rng(2)
    data = _data(tmp_path, rng)
    x, y = np.load(tmp_path / "x.npy"), np.load(tmp_path / "y.npy")
    loss = 0.5 * ((model(torch.from_numpy(x)[None])[0, -1] - torch.from_numpy(y[-1])) ** 2).sum()
    loss.backward()
    records = [
        bptt_json("--cell", cell, "--weights", tmp_path / name, *data) for name in ("model.pt", "model.npz")
    ]
    assert records[0]["trials"] == records[1]["trials"]
    trial = records[0]["trials"][0]
    assert trial["loss_log10"] == pytest.approx(math.log10(float(loss.detach())), abs=1e-12)
    rnn = getattr(model, kind.lower())
    expected = {"W_qh": model.fc.weight.grad, "b_q": model.fc.bias.grad}
    if cell == "tanh":
        expected.update(
            {"W_hh": rnn.weight_hh_l0.grad, "W_hx": rnn.weight_ih_l0.grad, "b_h": rnn.bias_hh_l0.grad}
        )
    else:
        expected.update(
            {name: getattr(rnn, name).grad for name in ("weight_ih_l0", "weight_hh_l0", "bias_hh_l0")}
        )
    for name, grad in expected.items():
        measured = trial["grad_params_log10"][name]
        assert measured == pytest.approx(math.log10(float(grad.norm())), abs=1e-11), name
    assert json.dumps(records[0]["config"]["weights"]).endswith('model.pt"')


# ------------------------------------------------------- item: what was drawn at random
ELMAN_ARRAYS = ["W_hh", "W_hx", "W_qh", "b_h", "b_q", "x", "y"]


def test_the_arrays_drawn_at_random_are_stated(tmp_path: Path) -> None:
    """W_qh, b_q (and x, y) missing from the files used to be drawn silently."""
    np.save(tmp_path / "w.npy", 0.5 * np.eye(3))
    assert bptt_json("--T", 4)["config"]["drawn"] == ELMAN_ARRAYS
    rec = bptt_json("--weights", tmp_path / "w.npy", "--T", 4)
    assert rec["config"]["drawn"] == ["W_hx", "W_qh", "b_h", "b_q", "x", "y"]
    rng = np.random.default_rng(4)
    p = _elman(rng)
    np.savez(tmp_path / "all.npz", **p)
    data = _data(tmp_path, rng)
    assert bptt_json("--weights", tmp_path / "all.npz", *data)["config"]["drawn"] == []
    assert bptt_json(*data, "--hidden", H)["config"]["drawn"] == ["W_hh", "W_hx", "W_qh", "b_h", "b_q"]
    table = bptt("analyze", "--weights", tmp_path / "w.npy", "--T", 4).stdout
    header = [line.rstrip() for line in table.splitlines() if line.startswith("drawn")]
    assert header == ["drawn     W_hx, W_qh, b_h, b_q, x, y drawn at random (seed 0): not in the files"]
    assert "drawn" not in bptt("analyze", "--T", 4).stdout  # nothing from files: everything is drawn
    assert not any(
        line.startswith("drawn")
        for line in bptt("analyze", "--weights", tmp_path / "all.npz", *data).stdout.splitlines()
    )
    # truncate and sweep say the same
    truncated = json.loads(
        bptt("truncate", "--weights", tmp_path / "w.npy", "--T", 4, "--format", "json").stdout
    )
    assert truncated["config"]["drawn"] == ["W_hx", "W_qh", "b_h", "b_q", "x", "y"]
    out = bptt("truncate", "--weights", tmp_path / "w.npy", "--T", 4).stdout
    assert "W_hh      from" in out and "drawn     W_hx" in out
    sweep = bptt("sweep", "--weights", tmp_path / "w.npy", "--T", "3,4", "--format", "jsonl", "--workers", 1)
    records = [json.loads(line) for line in sweep.stdout.splitlines() if line.strip()]
    assert [r["config"]["drawn"] for r in records] == [["W_hx", "W_qh", "b_h", "b_q", "x", "y"]] * 2


def test_a_gated_file_without_a_head_says_the_head_is_drawn(tmp_path: Path) -> None:
    rnn, head = _lstm_parts(np.random.default_rng(8))
    np.savez(tmp_path / "bare.npz", weight_hh_l0=rnn["weight_hh_l0"], weight_ih_l0=rnn["weight_ih_l0"])
    rec = bptt_json("--cell", "lstm", "--weights", tmp_path / "bare.npz", "--T", 4)
    assert rec["config"]["drawn"] == ["W_qh", "b_q", "x", "y"]  # no biases in a file: zeros, not drawn
    np.savez(tmp_path / "model.npz", **_model_dict("lstm", rnn, head))
    assert bptt_json("--cell", "lstm", "--weights", tmp_path / "model.npz", "--T", 4)["config"]["drawn"] == [
        "x",
        "y",
    ]
    line = next(
        text
        for text in bptt(
            "analyze", "--cell", "lstm", "--weights", tmp_path / "bare.npz", "--T", 4
        ).stdout.splitlines()
        if text.startswith("drawn")
    )
    assert "W_qh, b_q, x, y drawn at random (seed 0)" in line


@pytest.mark.parametrize("kind", ["sparse_coo", "sparse_csr", "meta", "quantized"])
def test_tensors_that_are_not_dense_values_are_bad_input(tmp_path: Path, kind: str) -> None:
    """They used to end in a traceback (``can't convert Sparse layout tensor to numpy``), with
    torch's warnings on stderr besides."""
    torch = _torch()
    W = torch.eye(H)
    tensor = {"sparse_coo": lambda: W.to_sparse(), "sparse_csr": lambda: W.to_sparse_csr(),
              "meta": lambda: W.to("meta"),
              "quantized": lambda: torch.quantize_per_tensor(W, 0.1, 0, torch.qint8)}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save({"weight_hh_l0": tensor[kind]()}, tmp_path / "w.pt")
    assert_bad_input(bptt("analyze", "--T", "5", "--weights", str(tmp_path / "w.pt")),
                     "'weight_hh_l0' in", f"is a {kind} tensor")
