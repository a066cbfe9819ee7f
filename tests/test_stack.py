"""Stacked and bidirectional networks, cross-entropy, initial states, autonomous networks and the
book's layout (issue 15).

1. The core (:func:`~bptt_cli.core.stack.stack_bptt`) against the independent autodiff reference
   (:mod:`stack_reference`) for every cell, depth, direction, loss and criterion, with given, random
   and zero initial states and without inputs; central finite differences spot-check both.
2. The public path (a model's whole state_dict in a .pt, ``bptt analyze --weights``, the API with
   ``weights=module``) against torch.autograd in float64, every layer's dL/dh_t and every parameter;
   cross-entropy at logits of size 1e4 (skipped where torch is absent).
3. Dive into Deep Learning's row-vector layout gives the numbers of ours; a file mixing them is bad.
4. Bad input: one line, exit 2, no traceback.
5. The JSON's layers against its top-level keys, the summary, spectrum and sweep; ``--h0 random``
   draws from a stream of its own.
6. The autonomous tanh network's top Lyapunov exponent against the mean-field theory (slow).
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import stack_reference as ref
from clitools import assert_bad_input, bptt, bptt_json

import bptt_cli as api
from bptt_cli.core.scaled import to_float
from bptt_cli.core.stack import KINDS, StackNetwork, param_name, stack_bptt

CELLS = ("identity", "tanh", "relu", "sigmoid", "lstm", "gru")
GATES = {"lstm": 4, "gru": 3}
T, D_IN, H, Q = 6, 3, 4, 5
LN10 = math.log(10.0)


# ------------------------------------------------------------------------------------ helpers
def random_params(
    cell: str, L: int, D: int, rng: np.random.Generator, d: int = D_IN, h: int = H, q: int = Q
) -> dict[str, np.ndarray]:
    """Every parameter of a stack by PyTorch's names, and ``W_qh (q, D h)``, ``b_q``."""
    G = GATES.get(cell, 1)
    P: dict[str, np.ndarray] = {}
    for k in range(L):
        for e in range(D):
            w = d if k == 0 else D * h
            P[param_name("weight_ih", k, e)] = rng.standard_normal((G * h, w)) / np.sqrt(max(w, 1))
            P[param_name("weight_hh", k, e)] = rng.standard_normal((G * h, h)) * 0.9 / np.sqrt(h)
            P[param_name("bias_ih", k, e)] = rng.standard_normal(G * h) * 0.3
            P[param_name("bias_hh", k, e)] = rng.standard_normal(G * h) * 0.3
    P["W_qh"] = rng.standard_normal((q, D * h)) / np.sqrt(D * h)
    P["b_q"] = rng.standard_normal(q) * 0.3
    return P


def targets(rng: np.random.Generator, criterion: str, steps: int = T, q: int = Q) -> np.ndarray:
    return rng.integers(0, q, steps) if criterion == "cross-entropy" else rng.standard_normal((steps, q))


def as_stack(
    cell: str, P: dict[str, np.ndarray], L: int, D: int, x: np.ndarray, y: np.ndarray, criterion: str,
    h0: np.ndarray | None = None, c0: np.ndarray | None = None,
) -> StackNetwork:
    """One trial of the core's stack from the reference's arrays."""
    layers = [[{kind: P[param_name(kind, k, e)][None] for kind in KINDS} for e in range(D)] for k in range(L)]
    return StackNetwork(cell, layers, P["W_qh"][None], P["b_q"][None], x[None], y[None], criterion,
                        None if h0 is None else h0[None], None if c0 is None else c0[None])


Grads = tuple[float, dict[str, np.ndarray], dict[tuple[int, int], np.ndarray]]


def core_gradients(net: StackNetwork, loss: str, trial: int = 0) -> Grads:
    """The core's loss, parameter gradients and dL/dh_t (real time) of every layer-direction."""
    g = stack_bptt(net, loss)
    params = {k: to_float(m, s)[trial] for k, (m, s) in g.params().items()}
    dh = {}
    for row in g.runs:
        for run in row:
            assert run.grads.dL_dh_m is not None
            v = to_float(run.grads.dL_dh_m[trial], run.grads.dL_dh_s[trial])
            dh[(run.layer, run.direction)] = v[::-1] if run.direction else v
    return float(np.exp(g.loss_ln[trial])), params, dh


def relative(a: np.ndarray, b: np.ndarray) -> float:
    """``||a - b|| / ||b||`` (0 when both are exactly zero)."""
    scale = float(np.linalg.norm(b))
    return float(np.linalg.norm(a - b)) / scale if scale else float(np.linalg.norm(a))


def step_relative(a: np.ndarray, b: np.ndarray) -> float:
    """The largest ``||a_t - b_t|| / ||b_t||`` over the steps; a true zero must be zero."""
    return max(relative(a[t], b[t]) for t in range(b.shape[0]))


def assert_same(got: Grads, want: Grads, tol: float = 1e-10) -> None:
    assert got[0] == pytest.approx(want[0], rel=tol, abs=0)
    assert set(got[1]) == set(want[1]) and set(got[2]) == set(want[2])
    for name, v in want[1].items():
        assert relative(got[1][name], v) < tol, name
    for key, v in want[2].items():
        assert step_relative(got[2][key], v) < tol, key


# ---------------------------------------------------- 1. the core against the autodiff reference
@pytest.mark.parametrize("criterion", ["mse", "cross-entropy"])
@pytest.mark.parametrize("loss", ["last", "mean"])
@pytest.mark.parametrize("D", [1, 2], ids=["one-way", "bidirectional"])
@pytest.mark.parametrize("L", [1, 2, 3])
@pytest.mark.parametrize("cell", CELLS)
def test_every_gradient_against_the_autodiff_reference(
    cell: str, L: int, D: int, loss: str, criterion: str
) -> None:
    """Given h_0 (and c_0): every layer's dL/dh_t and every parameter's gradient to 1e-10."""
    rng = np.random.default_rng([CELLS.index(cell), L, D, loss == "mean", criterion == "mse"])
    P = random_params(cell, L, D, rng)
    x, y = rng.standard_normal((T, D_IN)), targets(rng, criterion)
    h0 = rng.standard_normal((L * D, H)) * 0.5
    c0 = rng.standard_normal((L * D, H)) * 0.5 if cell == "lstm" else None
    want = ref.gradients(cell, P, x, y, L, D, loss, criterion, h0, c0)
    got = core_gradients(as_stack(cell, P, L, D, x, y, criterion, h0, c0), loss)
    assert_same(got, want)


@pytest.mark.parametrize(
    ("cell", "L", "D"),
    [("tanh", 3, 2), ("lstm", 2, 2), ("gru", 3, 1), ("relu", 2, 2), ("identity", 1, 2), ("sigmoid", 2, 1)],
)
@pytest.mark.parametrize("inputs_dim", [0, 3])
def test_zero_initial_states_and_no_inputs_against_the_reference(
    cell: str, L: int, D: int, inputs_dim: int
) -> None:
    """h_0 = 0 (the default, ``None``) and the autonomous network (``d = 0``, no weight_ih_l0
    columns): driven by h_0 alone or by the biases."""
    rng = np.random.default_rng([L, D, inputs_dim, len(cell)])
    P = random_params(cell, L, D, rng, d=inputs_dim)
    x, y = rng.standard_normal((T, inputs_dim)), targets(rng, "mse")
    for h0 in (None, rng.standard_normal((L * D, H))):
        c0 = None if h0 is None or cell != "lstm" else rng.standard_normal((L * D, H))
        for loss, criterion in (("mean", "mse"), ("last", "cross-entropy")):
            yy = y if criterion == "mse" else targets(rng, criterion)
            want = ref.gradients(cell, P, x, yy, L, D, loss, criterion, h0, c0)
            assert_same(core_gradients(as_stack(cell, P, L, D, x, yy, criterion, h0, c0), loss), want)


def finite_difference(f: Any, value: np.ndarray, idx: tuple[int, ...], eps: float = 1e-6) -> float:
    """Central difference of ``f(array)`` in entry ``idx`` of ``value``."""
    out = []
    for sign in (1.0, -1.0):
        bumped = value.copy()
        bumped[idx] += sign * eps
        out.append(f(bumped))
    return (out[0] - out[1]) / (2 * eps)


@pytest.mark.parametrize(
    ("cell", "L", "D", "loss", "criterion"),
    [("tanh", 3, 2, "mean", "cross-entropy"), ("lstm", 2, 2, "last", "mse"), ("gru", 2, 1, "mean", "mse"),
     ("relu", 2, 2, "last", "cross-entropy"), ("sigmoid", 3, 1, "last", "mse")],
)
def test_central_differences_spot_check_the_core(
    cell: str, L: int, D: int, loss: str, criterion: str
) -> None:
    """A few entries of layer 0's parameters (the furthest from the loss), of the top layer's and of
    the head's, and one dL/dh_t of layer 0 (reverse where there is one), by central differences of
    the reference's forward loss: independent of both backward passes."""
    rng = np.random.default_rng([L, D, len(cell)])
    P = random_params(cell, L, D, rng)
    x, y = rng.standard_normal((T, D_IN)), targets(rng, criterion)
    h0 = rng.standard_normal((L * D, H)) * 0.5
    _, got, dh = core_gradients(as_stack(cell, P, L, D, x, y, criterion, h0), loss)

    def loss_of(Q: dict[str, np.ndarray]) -> float:
        return float(ref.forward(cell, Q, x, y, L, D, loss, criterion, h0).loss.value)

    top = L - 1
    picks = [(param_name("weight_hh", 0, D - 1), (1, 2)), (param_name("weight_ih", 0, 0), (0, 1)),
             (param_name("bias_hh", 0, 0), (2,)), (param_name("weight_ih", top, 0), (3, 2 * D - 1)),
             ("W_qh", (1, D * H - 1)), ("b_q", (0,))]
    for name, idx in picks:
        fd = finite_difference(lambda v, name=name: loss_of({**P, name: v}), P[name], idx)
        assert got[name][idx] == pytest.approx(fd, rel=1e-6, abs=1e-9), (name, idx)
    # dL/dh_t of layer 0 at t = 3 (real time), its last direction
    key = (0, D - 1)
    fd_dh = ref.fd_dh((cell, P, x, y, L, D, loss, criterion, h0), key, 2, H)
    np.testing.assert_allclose(dh[key][2], fd_dh, rtol=1e-6, atol=1e-9)


# ------------------------------------------- the public path (JSON) against the reference
def log10_norm(v: np.ndarray) -> float | None:
    n = float(np.linalg.norm(v))
    return math.log10(n) if n else None


def assert_log10(got: float | None, want: float | None, what: object, tol: float = 1e-10) -> None:
    """A reported log10 norm equals ``want`` to ``tol`` relative in the norm (``None``: a true zero)."""
    if want is None:
        assert got is None, what
    else:
        assert got is not None and abs(got - want) * LN10 < tol, (what, got, want)


def trial_arrays(net: Any, i: int = 0) -> tuple[dict[str, np.ndarray], int, int, Any, Any, Any, Any]:
    """``(P, L, D, x, y, h0 (L D, h) | None, c0 | None)`` of trial ``i`` of the network a run
    analysed: a stack, a one-layer Elman or a one-layer gated network, in the reference's terms."""
    if isinstance(net, StackNetwork):
        L, D = net.depth
        P = {k: v[i] for k, v in net.params().items()}
        h0, c0 = (None if a is None else a[i] for a in (net.h0, net.c0))
        return P, L, D, net.x[i], net.y[i], h0, c0

    def one(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a[i][None]

    if hasattr(net, "weight_hh_l0"):
        P = {f"{kind}_l0": getattr(net, f"{kind}_l0")[i] for kind in KINDS}
        P.update(W_qh=net.W_qh[i], b_q=net.b_q[i])
        return P, 1, 1, net.x[i], net.y[i], one(net.h0), one(net.c0)
    P = {"weight_ih_l0": net.W_hx[i], "weight_hh_l0": net.W_hh[i], "bias_ih_l0": net.b_h[i],
         "bias_hh_l0": np.zeros_like(net.b_h[i]), "W_qh": net.W_qh[i], "b_q": net.b_q[i]}
    return P, 1, 1, net.x[i], net.y[i], one(net.h0), None


def assert_record_matches(trial: dict[str, Any], want: Grads) -> None:
    """Every layer's grad_h_log10 and grad_params_log10, the head's and the loss of one JSON trial."""
    loss, params, dh = want
    assert_log10(trial["loss_log10"], math.log10(loss), "loss")
    assert [(e["layer"], e["direction"]) for e in trial["layers"]] == [
        (k, ("forward", "reverse")[e]) for k, e in sorted(dh)
    ]
    for entry in trial["layers"]:
        k, e = entry["layer"], ("forward", "reverse").index(entry["direction"])
        assert len(entry["grad_h_log10"]) == dh[(k, e)].shape[0]
        for t, (got, v) in enumerate(zip(entry["grad_h_log10"], dh[(k, e)], strict=True)):
            assert_log10(got, log10_norm(v), (k, e, t))
        names = {param_name(kind, k, e) for kind in KINDS}
        reported = entry["grad_params_log10"]
        assert set(reported) <= names
        for name in names:
            if params[name].size:  # the autonomous network has no weight_ih_l0
                assert_log10(reported[name], log10_norm(params[name]), name)
            else:
                assert name not in reported
    for name in ("W_qh", "b_q"):
        assert_log10(trial["grad_params_log10"][name], log10_norm(params[name]), name)


PUBLIC_CASES = [  # cell, layers, bidirectional, h0, inputs_dim, loss, criterion
    ("tanh", 1, False, "random", 3, "mean", "mse"),
    ("lstm", 1, False, "file", 3, "last", "cross-entropy"),
    ("gru", 1, False, "file (h,)", 0, "mean", "mse"),
    ("identity", 1, False, "random", 0, "last", "cross-entropy"),
    ("gru", 2, True, "random", 0, "mean", "cross-entropy"),
    ("relu", 2, True, "file", 3, "last", "mse"),
    ("lstm", 3, True, "random", 0, "mean", "mse"),
    ("lstm", 2, False, "file (h,)", 3, "mean", "cross-entropy"),
    ("sigmoid", 3, False, "file", 0, "last", "cross-entropy"),
    ("tanh", 1, True, "zeros", 0, "mean", "mse"),
]


@pytest.mark.parametrize(("cell", "L", "bidi", "h0", "inputs_dim", "loss", "criterion"), PUBLIC_CASES)
def test_the_json_of_a_run_against_the_reference(
    tmp_path: Path, cell: str, L: int, bidi: bool, h0: str, inputs_dim: int, loss: str, criterion: str
) -> None:
    """``bptt.analyze`` (its ``to_dict()`` is the CLI's JSON) with ``--h0 random|FILE`` and
    ``--inputs-dim 0``: the reported numbers are the reference's on the arrays the run drew."""
    D = 2 if bidi else 1
    rng = np.random.default_rng([L, D, len(h0), inputs_dim])
    given: dict[str, np.ndarray] = {}
    option = h0
    if h0.startswith("file"):
        given["h0"] = rng.standard_normal((H,) if h0 == "file (h,)" else (L * D, H))
        if cell == "lstm":
            given["c0"] = rng.standard_normal(given["h0"].shape)
            np.savez(tmp_path / "h0.npz", **given)
            option = str(tmp_path / "h0.npz")
        else:
            np.save(tmp_path / "h0.npy", given["h0"])
            option = str(tmp_path / "h0.npy")
    result = api.analyze(cell=cell, layers=L, bidirectional=bidi, h0=option, inputs_dim=inputs_dim, loss=loss,
                         criterion=criterion, T=T, hidden=H, outputs_dim=Q, trials=2, seed=5)
    record = result.to_dict()
    for i, trial in enumerate(record["trials"]):
        P, L_, D_, x, y, start, c_start = trial_arrays(result.analysis.net, i)
        assert (L_, D_) == (L, D) and x.shape == (T, inputs_dim)
        if h0 == "zeros":
            assert start is None or not start.any()
        elif h0 == "random":
            assert start is not None and start.shape == (L * D, H) and np.all(start != 0)
            assert len({row.tobytes() for row in start}) == L * D  # one stream per layer-direction
        else:  # the file's rows, every layer-direction the same for a (h,) file
            np.testing.assert_array_equal(start, np.broadcast_to(given["h0"], (L * D, H)))
            if cell == "lstm":
                np.testing.assert_array_equal(c_start, np.broadcast_to(given["c0"], (L * D, H)))
        want = ref.gradients(cell, P, x, y, L, D, loss, criterion, start, c_start)
        assert_record_matches(trial, want)


# ------------------------------------------------------------- 2. against torch.autograd (float64)
TORCH_KINDS = {"tanh": "RNN", "relu": "RNN", "lstm": "LSTM", "gru": "GRU"}


def torch_model(cell: str, L: int, bidi: bool, seed: int) -> Any:
    """A model as users write one: an ``rnn`` sub-module (nn.RNN / nn.LSTM / nn.GRU of ``L`` layers)
    and an ``fc`` nn.Linear head on its output (``2h`` wide when bidirectional), float64."""
    torch = pytest.importorskip("torch")

    class Model(torch.nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            extra = {"nonlinearity": cell} if TORCH_KINDS[cell] == "RNN" else {}
            self.rnn = getattr(torch.nn, TORCH_KINDS[cell])(
                D_IN, H, num_layers=L, bidirectional=bidi, batch_first=True, dtype=torch.float64, **extra
            )
            self.fc = torch.nn.Linear((1 + bidi) * H, Q, dtype=torch.float64)

        def forward(self, x: Any) -> Any:
            out, _ = self.rnn(x)
            return self.fc(out)

    torch.manual_seed(seed)
    model = Model()
    with torch.no_grad():
        for p in model.rnn.parameters():  # beyond PyTorch's small uniform start: gradients that travel
            p.mul_(2.5)
    return model


def torch_loss(logits: Any, y: np.ndarray, loss: str, criterion: str) -> Any:
    torch = pytest.importorskip("torch")
    if criterion == "mse":
        per_step = 0.5 * ((logits - torch.from_numpy(y)) ** 2).sum(dim=-1)
    else:
        per_step = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y), reduction="none")
    return per_step[-1] if loss == "last" else per_step.mean()


def torch_gradients(model: Any, x: np.ndarray, y: np.ndarray, loss: str, criterion: str) -> Grads:
    """The loss, every parameter's gradient (module names without the ``rnn.`` prefix; the head as
    ``W_qh``, ``b_q``) and every layer-direction's dL/dh_t, by autograd.

    The parameters' gradients come from the model's own multi-layer module. dL/dh_t (every path:
    the next step, the layer above, the head) needs each state as a node of its own, so the network
    is unrolled again with nn.RNNCell / nn.LSTMCell / nn.GRUCell holding the same weights and
    ``retain_grad`` on every h_t; that unrolled network is first checked to be the module (the same
    outputs and the same parameter gradients)."""
    torch = pytest.importorskip("torch")
    rnn = model.rnn
    L, D, T_ = rnn.num_layers, 1 + rnn.bidirectional, x.shape[0]
    xt = torch.from_numpy(x)[None]
    model.zero_grad()
    value = torch_loss(model(xt)[0], y, loss, criterion)
    value.backward()
    params = {name.removeprefix("rnn."): p.grad.numpy().copy() for name, p in model.named_parameters()}
    params["W_qh"], params["b_q"] = params.pop("fc.weight"), params.pop("fc.bias")

    Cell = {"RNN": torch.nn.RNNCell, "LSTM": torch.nn.LSTMCell, "GRU": torch.nn.GRUCell}[type(rnn).__name__]
    extra = {"nonlinearity": rnn.nonlinearity} if type(rnn).__name__ == "RNN" else {}
    cells: dict[tuple[int, int], Any] = {}
    inputs = [xt[0, t][None] for t in range(T_)]
    states: dict[tuple[int, int], list[Any]] = {}
    for k in range(L):
        for e in range(D):
            cell = Cell(inputs[0].shape[1], H, dtype=torch.float64, **extra)
            with torch.no_grad():
                for kind in KINDS:
                    getattr(cell, kind).copy_(getattr(rnn, param_name(kind, k, e)))
            cells[(k, e)] = cell
            seq: list[Any] = [None] * T_
            state = None
            for t in reversed(range(T_)) if e else range(T_):
                state = cell(inputs[t], state)
                h = state[0] if isinstance(state, tuple) else state
                h.retain_grad()
                seq[t] = h
            states[(k, e)] = seq
        inputs = [torch.cat([states[(k, e)][t] for e in range(D)], dim=1) for t in range(T_)]
    top = torch.cat(inputs)  # (T, D h)
    with torch.no_grad():
        out, _ = rnn(xt)
    np.testing.assert_allclose(top.detach().numpy(), out[0].numpy(), rtol=1e-13, atol=1e-14)
    unrolled = torch_loss(top @ model.fc.weight.detach().T + model.fc.bias.detach(), y, loss, criterion)
    unrolled.backward()
    assert unrolled.item() == pytest.approx(value.item(), rel=1e-14)
    for (k, e), cell in cells.items():
        for kind in KINDS:
            assert relative(getattr(cell, kind).grad.numpy(), params[param_name(kind, k, e)]) < 1e-12
    dh = {key: np.concatenate([h.grad.numpy() for h in seq]) for key, seq in states.items()}
    return value.item(), params, dh


def torch_data(rng: np.random.Generator, criterion: str) -> tuple[np.ndarray, np.ndarray]:
    return rng.standard_normal((T, D_IN)), targets(rng, criterion)


@pytest.mark.parametrize("bidi", [False, True], ids=["one-way", "bidirectional"])
@pytest.mark.parametrize("L", [2, 3])
@pytest.mark.parametrize("cell", list(TORCH_KINDS))
def test_a_saved_model_against_torch_autograd(tmp_path: Path, cell: str, L: int, bidi: bool) -> None:
    """The model's whole state_dict in a .pt through ``bptt analyze --weights m.pt --format json``:
    every layer's ||dL/dh_t||, every parameter's gradient norm and the loss are torch.autograd's to
    1e-10, for both criteria and both losses."""
    torch = pytest.importorskip("torch")
    model = torch_model(cell, L, bidi, seed=L + 10 * bidi)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    rng = np.random.default_rng([L, bidi, len(cell)])
    for criterion in ("mse", "cross-entropy"):
        x, y = torch_data(rng, criterion)
        np.save(tmp_path / "x.npy", x)
        np.save(tmp_path / "y.npy", y)
        for loss in ("last", "mean"):
            record = bptt_json("--cell", cell, "--weights", tmp_path / "m.pt", "--inputs", tmp_path / "x.npy",
                               "--targets", tmp_path / "y.npy", "--loss", loss, "--criterion", criterion,
                               "--lyapunov", 0)
            assert record["config"]["layers"] == L and record["config"]["bidirectional"] is bidi
            assert record["config"]["drawn"] == []
            assert_record_matches(record["trials"][0], torch_gradients(model, x, y, loss, criterion))


def test_the_api_with_the_module_in_memory_is_the_cli_on_its_pt(tmp_path: Path) -> None:
    """``bptt.analyze(weights=model, inputs=x, targets=y)`` reports what the CLI reports for the
    model's state_dict saved as a .pt (and as a .npz of the same names)."""
    torch = pytest.importorskip("torch")
    model = torch_model("gru", 2, True, seed=4)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    np.savez(tmp_path / "m.npz", **{k: v.numpy() for k, v in model.state_dict().items()})
    x, y = torch_data(np.random.default_rng(4), "cross-entropy")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    kw = dict(cell="gru", loss="mean", criterion="cross-entropy", lyapunov=2)
    from_api = api.analyze(weights=model, inputs=x, targets=y, **kw).to_dict()
    for name in ("m.pt", "m.npz"):
        cli = bptt_json("--weights", tmp_path / name, "--inputs", tmp_path / "x.npy", "--targets",
                        tmp_path / "y.npy", "--cell", "gru", "--loss", "mean", "--criterion", "cross-entropy",
                        "--lyapunov", 2)
        assert cli["trials"] == from_api["trials"] and cli["summary"] == from_api["summary"], name
    assert_record_matches(from_api["trials"][0], torch_gradients(model, x, y, "mean", "cross-entropy"))


def exact_ce_tail(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per step, ``ln CE_t`` and ``ln ||dCE_t/do_t||`` where the target is the largest logit by far,
    so that ``CE_t = ln(1 + sum_{j != y} e^{o_j - o_y}) ~ sum_{j != y} e^{o_j - o_y}`` underflows in
    float64 (torch says 0): computed in logs, ``dCE/do = softmax(o) - onehot(y)``."""
    from scipy.special import logsumexp

    ln_ce, ln_grad = [], []
    for o, c in zip(logits, y, strict=True):
        others = np.delete(o, c) - o[c]  # all far below 0
        ln_rest = logsumexp(others)  # ln sum_{j != y} e^{o_j - o_y}, ~ ln CE (log1p(u) = u here)
        ln_ce.append(ln_rest)
        ln_p = others - np.logaddexp(0.0, ln_rest)  # ln softmax_j, j != y
        # |softmax_y - 1| = sum_{j != y} softmax_j
        ln_grad.append(0.5 * logsumexp(2 * np.append(ln_p, logsumexp(ln_p))))
    return np.array(ln_ce), np.array(ln_grad)


@pytest.mark.parametrize("cell", ["lstm", "tanh"])
def test_cross_entropy_at_logits_of_size_1e4_against_torch(cell: str) -> None:
    """A head scaled so that the logits are ~1e4: with targets that are not the largest logit the
    loss is ~1e4 and every reported number is finite and torch's (F.cross_entropy); with the largest
    logit as target the loss, below e^-700, underflows in torch's float64 but is reported exactly."""
    torch = pytest.importorskip("torch")
    model = torch_model(cell, 2, True, seed=7)
    x = np.random.default_rng(7).standard_normal((T, D_IN))
    with torch.no_grad():
        scale = 1e4 / model(torch.from_numpy(x)[None]).abs().max()
        model.fc.weight.mul_(scale)
        model.fc.bias.mul_(scale)
        logits = model(torch.from_numpy(x)[None])[0].numpy()
        top = model.rnn(torch.from_numpy(x)[None])[0][0].numpy()
    assert np.abs(logits).max() == pytest.approx(1e4, rel=1e-12)
    far = logits.argmin(axis=1)
    for loss in ("last", "mean"):
        record = api.analyze(cell=cell, weights=model, inputs=x, targets=far, loss=loss,
                             criterion="cross-entropy", lyapunov=0).to_dict()
        trial = record["trials"][0]
        assert trial["loss_log10"] > 3  # ~1e4
        want = torch_gradients(model, x, far, loss, "cross-entropy")
        assert np.isfinite(want[0]) and all(np.isfinite(v).all() for v in want[1].values())
        assert_record_matches(trial, want)
    # the target is the winner by hundreds: torch's loss and gradients underflow to exactly 0
    best = logits.argmax(axis=1)
    ln_ce, ln_grad = exact_ce_tail(logits, best)
    assert ln_ce.max() < -700
    assert torch_gradients(model, x, best, "last", "cross-entropy")[0] == 0.0
    trial = api.analyze(cell=cell, weights=model, inputs=x, targets=best, loss="last",
                        criterion="cross-entropy", lyapunov=0).to_dict()["trials"][0]
    # an error of 1e-12 in a logit of 1e4 moves e^(o_j - o_y) by 1e-12 relative
    assert trial["loss_log10"] == pytest.approx(ln_ce[-1] / LN10, abs=1e-9)
    assert trial["grad_params_log10"]["b_q"] == pytest.approx(ln_grad[-1] / LN10, abs=1e-9)
    # dL/dW_qh = dL/do_T h_T^T: a rank-one matrix, norm ||dL/do_T|| ||h_T||
    w_qh = (ln_grad[-1] + math.log(np.linalg.norm(top[-1]))) / LN10
    assert trial["grad_params_log10"]["W_qh"] == pytest.approx(w_qh, abs=1e-9)
    assert all(v is not None and math.isfinite(v) for v in trial["layers"][0]["grad_h_log10"])


# ------------------------------------------------------------- 3. Dive into Deep Learning's layout
def d2l_pair(tmp_path: Path, rng: np.random.Generator, dtype: Any = np.float64) -> tuple[Path, Path]:
    """One Elman network saved twice: ours (``W_hh``, ``W_hx``, ``W_qh``, ``b_h``, ``b_q``) and the
    book's row-vector layout (``H_t = phi(X_t W_xh + H_{t-1} W_hh + b_h)``, ``O_t = H_t W_hq + b_q``):
    the transposed matrices."""
    W_hh = (rng.standard_normal((H, H)) * 0.6).astype(dtype)
    W_hx, W_qh = rng.standard_normal((H, D_IN)).astype(dtype), rng.standard_normal((Q, H)).astype(dtype)
    b_h, b_q = rng.standard_normal(H).astype(dtype), rng.standard_normal(Q).astype(dtype)
    np.savez(tmp_path / "ours.npz", W_hh=W_hh, W_hx=W_hx, W_qh=W_qh, b_h=b_h, b_q=b_q)
    np.savez(tmp_path / "d2l.npz", W_xh=W_hx.T, W_hh=W_hh.T, b_h=b_h, W_hq=W_qh.T, b_q=b_q)
    return tmp_path / "ours.npz", tmp_path / "d2l.npz"


@pytest.mark.parametrize(("cell", "criterion", "dtype"),
                         [("tanh", "cross-entropy", np.float32), ("relu", "mse", np.float64)])
def test_the_books_layout_gives_the_numbers_of_ours(
    tmp_path: Path, cell: str, criterion: str, dtype: Any
) -> None:
    rng = np.random.default_rng(11)
    ours, d2l = d2l_pair(tmp_path, rng, dtype)
    np.save(tmp_path / "x.npy", rng.standard_normal((T, D_IN)))
    np.save(tmp_path / "y.npy", targets(rng, criterion))
    data = ["--cell", cell, "--criterion", criterion, "--inputs", tmp_path / "x.npy",
            "--targets", tmp_path / "y.npy"]
    a, b = bptt_json("--weights", ours, *data), bptt_json("--weights", d2l, *data)
    assert a["trials"] == b["trials"] and a["summary"] == b["summary"]
    assert {k: v for k, v in a["config"].items() if k != "weights"} == {
        k: v for k, v in b["config"].items() if k != "weights"
    }
    assert b["config"]["drawn"] == []
    assert (b["config"]["inputs_dim"], b["config"]["outputs_dim"]) == (D_IN, Q)
    # the book's W_hh really is read transposed: W_hh.T under our name is another network
    W = dict(np.load(ours))
    np.savez(tmp_path / "wrong.npz", **{**W, "W_hh": W["W_hh"].T})
    assert bptt_json("--weights", tmp_path / "wrong.npz", *data)["trials"] != a["trials"]
    # spectrum and truncate read it the same way
    for command in (["spectrum"], ["truncate", "--cell", cell, "--T", T]):
        outs = [bptt(*command, "--weights", w, "--format", "json") for w in (ours, d2l)]
        assert all(r.exit_code == 0 for r in outs), [r.stderr for r in outs]
        a_, b_ = (json.loads(r.stdout) for r in outs)
        assert a_["trials"] == b_["trials"], command


@pytest.mark.parametrize(
    ("arrays", "words"),
    [
        ({"W_xh": np.ones((D_IN, H)), "W_hh": np.eye(H), "W_qh": np.ones((Q, H))}, ("W_xh", "W_qh")),
        ({"W_hx": np.ones((H, D_IN)), "W_hh": np.eye(H), "W_hq": np.ones((H, Q))}, ("W_hq", "W_hx")),
        ({"W_xh": np.ones((D_IN, H)), "weight_hh_l0": np.eye(H)}, ("W_xh", "weight_hh_l0")),
    ],
    ids=["W_xh+W_qh", "W_hq+W_hx", "W_xh+weight_hh_l0"],
)
def test_a_file_mixing_the_layouts_is_one_line_naming_the_keys(
    tmp_path: Path, arrays: dict[str, np.ndarray], words: tuple[str, ...]
) -> None:
    np.savez(tmp_path / "mixed.npz", **arrays)
    result = bptt("analyze", "--cell", "tanh", "--weights", tmp_path / "mixed.npz")
    assert_bad_input(result, "mixed.npz", *words)


# ---------------------------------------------------------------------------- 4. bad input
def model_npz(path: Path, cell: str, L: int, D: int, drop: str = "", **replace: np.ndarray) -> Path:
    """A model's whole state_dict (``rnn.`` sub-module, ``fc`` head) in a .npz, without the arrays
    whose names contain ``drop``, with ``replace`` swapped in (by their names in the module)."""
    P = random_params(cell, L, D, np.random.default_rng(0))
    head = {"W_qh": "fc.weight", "b_q": "fc.bias"}
    arrays = {head.get(k, f"rnn.{k}"): v for k, v in P.items()}
    arrays = {k: v for k, v in arrays.items() if not (drop and drop in k)}
    arrays.update({f"rnn.{k}": v for k, v in replace.items()})
    np.savez(path, **arrays)
    return path


def test_a_state_dict_with_a_layer_missing_is_one_line(tmp_path: Path) -> None:
    for cell in ("lstm", "tanh"):
        gap = model_npz(tmp_path / "gap.npz", cell, 3, 2, drop="_l1")
        result = bptt("analyze", "--cell", cell, "--weights", gap)
        assert_bad_input(result, "gap.npz", "l1", "layer 1", "missing")
    gap = model_npz(tmp_path / "gap.npz", "tanh", 3, 1, drop="weight_hh_l1")  # l1 half there
    assert_bad_input(bptt("analyze", "--cell", "tanh", "--weights", gap), "weight_hh_l1", "missing")
    assert_bad_input(bptt("spectrum", "--weights", gap), "weight_hh_l1", "missing")


def test_mismatched_layer_widths_are_one_line(tmp_path: Path) -> None:
    G = 4  # lstm
    cases = [  # layer 1 reads the 2h = 8 states of both directions of layer 0
        ({"weight_ih_l1": np.zeros((G * H, H))}, ("weight_ih_l1", f"({G * H}, {H})", f"({G * H}, {2 * H})")),
        ({"weight_ih_l1_reverse": np.zeros((G * H, 2 * H + 1))}, ("weight_ih_l1_reverse", f"{2 * H + 1}")),
        ({"weight_hh_l1": np.zeros((G * (H + 1), H + 1))}, ("weight_hh_l1", f"({G * (H + 1)}, {H + 1})")),
        ({"bias_hh_l1_reverse": np.zeros(G * H + 2)}, ("bias_hh_l1_reverse", f"({G * H + 2},)")),
    ]
    for replace, words in cases:
        path = model_npz(tmp_path / "w.npz", "lstm", 2, 2, **replace)
        assert_bad_input(bptt("analyze", "--cell", "lstm", "--weights", path), "w.npz", *words)
    # the head must read the top layer's 2h states
    path = model_npz(tmp_path / "w.npz", "lstm", 2, 2)
    arrays = dict(np.load(path))
    np.savez(path, **{**arrays, "fc.weight": np.zeros((Q, H))})
    assert_bad_input(bptt("analyze", "--cell", "lstm", "--weights", path), "fc.weight", f"({Q}, {H})")


def test_a_layer_beyond_the_stack_is_one_line(tmp_path: Path) -> None:
    path = model_npz(tmp_path / "w.npz", "gru", 3, 1)
    gru, small = ["--cell", "gru", "--weights", path], ["--cell", "tanh", "--T", 4, "--hidden", 3]
    for args, words in (
        ([*gru, "--layer", 3], ("--layer 3", "3 layers", "0..2")),
        ([*gru, "--layer", "1:reverse"], ("--layer 1:reverse", "one direction")),
        ([*small, "--layers", 2, "--bidirectional", "--layer", 2], ("--layer 2", "2 layers")),
        ([*small, "--layer", 1], ("--layer 1", "1 layer")),
        ([*small, "--layer", "x"], ("--layer 'x'",)),
    ):
        assert_bad_input(bptt("analyze", *args), *words)
    ok = bptt("analyze", *small, "--layers", 2, "--bidirectional", "--layer", "1:reverse")
    assert ok.exit_code == 0 and "layer 1" in ok.stdout


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_a_layer_beyond_the_stack_is_bad_in_every_format(fmt: str) -> None:
    result = bptt("analyze", "--layers", 2, "--layer", 5, "--T", 4, "--hidden", 3, "--format", fmt)
    assert_bad_input(result, "--layer 5")


def test_an_initial_state_file_of_the_wrong_shape_is_one_line(tmp_path: Path) -> None:
    gru_stack = ["--cell", "gru", "--layers", 2, "--bidirectional"]
    bad = [
        ("h0.npy", np.zeros(H + 1), ["--cell", "tanh"], ("h0.npy", f"({H + 1},)", f"({H},)")),
        ("h0.npy", np.zeros((3, H)), ["--cell", "tanh", "--layers", 2], ("h0.npy", f"(3, {H})", f"(2, {H})")),
        ("h0.npy", np.zeros((2, H)), gru_stack, (f"(2, {H})", f"(4, {H})")),
        ("h0.npy", np.zeros((H, 1)), ["--cell", "tanh"], (f"({H}, 1)",)),
        ("hc.npz", {"h0": np.zeros(H), "c0": np.zeros(H + 2)}, ["--cell", "lstm"], ("c0", f"({H + 2},)")),
    ]
    for name, value, args, words in bad:
        if isinstance(value, dict):
            np.savez(tmp_path / name, **value)
        else:
            np.save(tmp_path / name, value)
        result = bptt("analyze", *args, "--hidden", H, "--T", 4, "--h0", tmp_path / name)
        assert_bad_input(result, "h0" if name.endswith("npy") else "hc.npz", *words)
    for missing in (tmp_path / "nowhere.npy", "ones", "Random"):
        assert_bad_input(bptt("analyze", "--hidden", H, "--T", 4, "--h0", missing), str(missing),
                         "choose from zeros, random, FILE")


@pytest.mark.parametrize(
    ("y", "words"),
    [
        (np.array([0.0, 1.0, 2.0, 1.0]), ("float64", "integer classes")),
        (np.array([0.5, 1.0, 2.0, 1.0]), ("float64", "integer classes")),
        (np.array([0, 1, Q, 1]), (f"class {Q}", "t = 3", f"{Q} outputs")),
        (np.array([0, -1, 2, 1]), ("class -1", "t = 2", "negative")),
        (np.zeros((4, Q), dtype=np.int64), ("(T,)",)),
    ],
    ids=["integral-floats", "floats", ">=q", "negative", "one-hot-shaped"],
)
def test_bad_cross_entropy_targets_are_one_line(
    tmp_path: Path, y: np.ndarray, words: tuple[str, ...]
) -> None:
    np.save(tmp_path / "y.npy", y)
    for stack in ([], ["--layers", 2, "--bidirectional"]):
        result = bptt("analyze", "--cell", "tanh", "--criterion", "cross-entropy", "--outputs-dim", Q,
                      "--T", 4, "--hidden", 3, "--targets", tmp_path / "y.npy", *stack)
        assert_bad_input(result, "targets", *words)


def test_every_bad_class_names_the_targets_file(tmp_path: Path) -> None:
    for y in (np.array([0, 1, Q, 1]), np.array([0, -1, 2, 1]), np.array([0.5, 1.0, 2.0, 1.0])):
        np.save(tmp_path / "classes.npy", y)
        result = bptt("analyze", "--criterion", "cross-entropy", "--outputs-dim", Q, "--T", 4, "--hidden", 3,
                      "--targets", tmp_path / "classes.npy")
        assert_bad_input(result, "classes.npy")


def test_depth_and_directions_conflicting_with_the_weights_are_one_line(tmp_path: Path) -> None:
    three = model_npz(tmp_path / "three.npz", "lstm", 3, 1)
    both = model_npz(tmp_path / "both.npz", "tanh", 2, 2)
    for args, words in (
        (["--cell", "lstm", "--weights", three, "--layers", 2], ("--layers 2", "three.npz", "3 layers")),
        (["--cell", "lstm", "--weights", three, "--layers", 4], ("--layers 4", "3 layers")),
        (["--cell", "lstm", "--weights", three, "--bidirectional"], ("--bidirectional", "three.npz")),
        (["--cell", "tanh", "--weights", both, "--no-bidirectional"], ("bidirectional", "both.npz")),
        (["--cell", "tanh", "--weights", both, "--layers", 1], ("--layers 1", "2 layers")),
    ):
        assert_bad_input(bptt("analyze", *args), *words)
    # agreeing with the file is fine
    assert bptt("analyze", "--cell", "lstm", "--weights", three, "--layers", 3, "--T", 3).exit_code == 0
    two = model_npz(tmp_path / "r.npz", "tanh", 2, 1)
    assert_bad_input(bptt("spectrum", "--weights", two, "--layers", 3), "--layers 3", "2 layers")
    # truncate measures one-layer, one-direction networks only
    bi = model_npz(tmp_path / "bi.npz", "tanh", 1, 2)
    for path, words in ((two, ("2 layers",)), (bi, ("both directions",))):
        result = bptt("truncate", "--cell", "tanh", "--weights", path, "--T", 5)
        assert_bad_input(result, "one-layer, one-direction", *words)


def test_a_projection_is_unsupported_in_one_line(tmp_path: Path) -> None:
    path = model_npz(tmp_path / "p.npz", "lstm", 2, 1, weight_hr_l1=np.zeros((H, 2)))
    assert_bad_input(bptt("analyze", "--cell", "lstm", "--weights", path), "weight_hr_l1", "proj_size")
    torch = pytest.importorskip("torch")
    torch.save(torch.nn.LSTM(D_IN, H, num_layers=2, proj_size=2).state_dict(), tmp_path / "proj.pt")
    for cell in ("lstm", "tanh"):
        line = assert_bad_input(bptt("analyze", "--cell", cell, "--weights", tmp_path / "proj.pt"),
                                "proj.pt", "weight_hr_l0", "proj_size")
        assert "support" in line


def test_spectrum_of_a_stacked_gated_state_dict_says_what_fits(tmp_path: Path) -> None:
    path = model_npz(tmp_path / "l3.npz", "lstm", 3, 1)
    line = assert_bad_input(bptt("spectrum", "--weights", path), "square")
    assert "--cell identity" not in line and "bptt analyze --cell lstm" in line


# ------------------------------------------------------------------------------- 5. consistency
ELMAN_NAMES = {"W_hh": ["weight_hh_l0"], "W_hx": ["weight_ih_l0"], "b_h": ["bias_ih_l0", "bias_hh_l0"]}


def layer_params(top: dict[str, Any], cell: str) -> dict[str, Any]:
    """Layer 0's own parameters in the top-level ``grad_params_log10`` under PyTorch's names (an Elman
    network keeps its native names there: ``W_hh``, ``W_hx``, ``b_h``, the last for both biases)."""
    if cell in GATES:
        return {k: v for k, v in top.items() if k not in ("W_qh", "b_q")}
    return {new: top[old] for old, news in ELMAN_NAMES.items() if old in top for new in news}


@pytest.mark.parametrize(
    "kw",
    [dict(cell="tanh"), dict(cell="lstm", loss="mean"), dict(cell="gru", inputs_dim=0),
     dict(cell="relu", criterion="cross-entropy", trials=3)],
    ids=lambda kw: kw["cell"],
)
def test_a_single_layer_has_one_layers_entry_equal_to_the_top_level_keys(kw: dict[str, Any]) -> None:
    record = api.analyze(T=12, hidden=4, h0="random", **kw).to_dict()
    for trial in record["trials"]:
        (entry,) = trial["layers"]
        assert (entry["layer"], entry["direction"]) == (0, "forward")
        shared = set(entry) - {"layer", "direction", "grad_params_log10"}
        assert shared <= set(trial) and {k: trial[k] for k in shared} == {k: entry[k] for k in shared}
        assert layer_params(trial["grad_params_log10"], kw["cell"]) == entry["grad_params_log10"]
    (summary_entry,) = record["summary"]["layers"]
    assert summary_entry["verdict"] == record["summary"]["verdict"]
    assert summary_entry["gain_log10"] == record["summary"]["gain_log10"]


def worst_verdict(layers: list[dict[str, Any]]) -> str:
    """Vanishing or exploding before stable before undefined; of two unstable layers the one whose
    median gain is further from 0 (an exact zero, null, the furthest)."""
    unstable = [e for e in layers if e["verdict"] in ("vanishing", "exploding")]
    if unstable:
        far = max(unstable, key=lambda e: math.inf if e["gain_log10"] is None else abs(e["gain_log10"]))
        return str(far["verdict"])
    return "stable" if any(e["verdict"] == "stable" for e in layers) else "undefined"


STACKS = [
    dict(cell="tanh", layers=3, gain=2.5, T=40),
    dict(cell="tanh", layers=2, bidirectional=True, gain=0.4, T=30, loss="mean"),
    dict(cell="relu", layers=3, gain=1.6, T=40, bidirectional=True, trials=3),
    dict(cell="identity", layers=2, gain=1.3, T=30, trials=2),
    dict(cell="lstm", layers=2, bidirectional=True, T=30, forget_bias=3.0),
    dict(cell="gru", layers=3, T=30, loss="mean", criterion="cross-entropy", trials=2),
]


def test_a_stacks_top_level_keys_are_layer_0_forward_and_its_verdict_the_worst() -> None:
    seen: set[str] = set()
    for kw in STACKS:
        record = api.analyze(hidden=6, **kw).to_dict()
        L, D = kw["layers"], 1 + bool(kw.get("bidirectional"))
        for trial in record["trials"]:
            assert [(e["layer"], e["direction"]) for e in trial["layers"]] == [
                (k, d) for k in range(L) for d in ("forward", "reverse")[:D]
            ]
            first = trial["layers"][0]
            for key in ("grad_h_log10", "gain_log10", "verdict", "spectrum", "rates", "mean_field",
                        "lyapunov", "horizon"):
                assert trial[key] == first[key], (kw, key)
            assert layer_params(trial["grad_params_log10"], kw["cell"]) == first["grad_params_log10"]
            assert {"W_qh", "b_q"} <= set(trial["grad_params_log10"])
        summary = record["summary"]
        assert [(e["layer"], e["direction"]) for e in summary["layers"]] == [
            (e["layer"], e["direction"]) for e in record["trials"][0]["layers"]
        ]
        if len(record["trials"]) == 1:
            assert [e["verdict"] for e in summary["layers"]] == [
                e["verdict"] for e in record["trials"][0]["layers"]
            ]
        assert summary["verdict"] == worst_verdict(summary["layers"]), kw
        assert summary["layers"][0]["gain_log10"] == summary["gain_log10"]
        seen |= {e["verdict"] for e in summary["layers"]}
    assert seen == {"vanishing", "stable", "exploding", "undefined"}  # the cases cover every verdict


def orthogonal_stack(tmp_path: Path, scales: list[float], D: int) -> Path:
    """An identity-cell stack whose layer k's W_hh (each direction) is ``scales[k]`` times an orthogonal
    matrix: its chain's gain is exactly ``scales[k]^(T-1)``."""
    rng = np.random.default_rng(len(scales) + D)
    P = random_params("identity", len(scales), D, rng)
    for k, c in enumerate(scales):
        for e in range(D):
            P[param_name("weight_hh", k, e)] = c * np.linalg.qr(rng.standard_normal((H, H)))[0]
    np.savez(tmp_path / "orth.npz", **P)
    return tmp_path / "orth.npz"


@pytest.mark.parametrize("D", [1, 2])
def test_every_layers_gain_and_the_worst_verdict_of_orthogonal_layers(tmp_path: Path, D: int) -> None:
    """Layer 0 stable, layer 1 vanishing (10^-4.2), layer 2 exploding (10^4.8): the summary is the
    exploding layer 2, not layer 0; every gain is (T - 1) log10 c to 1e-12."""
    scales, steps = [1.0, 0.6, 1.8], 20
    path = orthogonal_stack(tmp_path, scales, D)
    verdicts = [v for v in ("stable", "vanishing", "exploding") for _ in range(D)]
    for loss in ("mean", "last"):
        record = bptt_json("--cell", "identity", "--weights", path, "--T", steps, "--loss", loss)
        trial = record["trials"][0]
        assert len(trial["layers"]) == 3 * D
        for entry in trial["layers"]:
            if (entry["layer"], entry["direction"], loss) == (2, "reverse", "last"):
                # only its first step (t = T) reaches the loss at T: no chain, dL/dh_t = 0 for t < T
                assert entry["gain_log10"] is None and entry["verdict"] == "undefined"
                assert entry["grad_h_log10"][:-1] == [None] * (steps - 1)
                continue
            gain = (steps - 1) * math.log10(scales[entry["layer"]])
            assert entry["gain_log10"] == pytest.approx(gain, abs=1e-12)
            assert entry["spectrum"]["spectral_radius"] == pytest.approx(scales[entry["layer"]], rel=1e-12)
        want = verdicts if loss == "mean" or D == 1 else [*verdicts[:-1], "undefined"]
        assert [e["verdict"] for e in record["summary"]["layers"]] == want
        assert trial["verdict"] == "stable" and record["summary"]["verdict"] == "exploding"
    failed = bptt("analyze", "--cell", "identity", "--weights", path, "--T", steps,
                  "--fail-on", "vanishing", "--format", "json")
    assert failed.exit_code == 1  # a layer vanishes, though the summary explodes


@pytest.mark.parametrize("D", [1, 2])
def test_a_stack_far_beyond_float64_keeps_every_gain_exact(tmp_path: Path, D: int) -> None:
    """Identity layers of W_hh = 3 Q (states ~3^1000 = 10^477) below 0.5 Q over T = 1000: every number
    is finite (in log10), every layer's gain exactly 999 log10 c, for both losses."""
    steps = 1000
    path = orthogonal_stack(tmp_path, [3.0, 0.5], D)
    for loss in ("last", "mean"):
        result = api.analyze(cell="identity", weights=str(path), T=steps, loss=loss, lyapunov=0)
        trial = result.to_dict()["trials"][0]
        assert trial["loss_log10"] > 900
        for entry in trial["layers"]:
            c = (3.0, 0.5)[entry["layer"]]
            if (entry["layer"], entry["direction"], loss) == (1, "reverse", "last"):  # no chain (see above)
                assert entry["grad_h_log10"][-1] > 400
                assert entry["grad_params_log10"]["weight_hh_l1_reverse"] is None
                continue
            assert entry["gain_log10"] == pytest.approx((steps - 1) * math.log10(c), abs=1e-11)
            assert all(v is not None and 100 < v < 1e4 for v in entry["grad_h_log10"])
            assert all(v is not None and 400 < v < 1e4 for v in entry["grad_params_log10"].values())


def test_layer_0_forward_of_a_random_stack_is_the_one_layer_network_of_the_same_seed() -> None:
    """``spectrum`` and ``analyze``: layer 0, forward draws what a one-layer network of the seed draws;
    the other layer-directions draw their own (different) matrices."""
    kw = dict(hidden=5, seed=3, trials=2, T=20)
    one = api.spectrum(**kw).to_dict()
    stack = api.spectrum(layers=2, bidirectional=True, **kw).to_dict()
    assert stack["config"]["layers"] == 2 and stack["config"]["bidirectional"] is True
    for a, b in zip(one["trials"], stack["trials"], strict=True):
        assert [(e["layer"], e["direction"]) for e in b["layers"]] == [
            (0, "forward"), (0, "reverse"), (1, "forward"), (1, "reverse")
        ]
        first = b["layers"][0]
        assert first["spectrum"] == a["spectrum"] and first["nonnormality"] == a["nonnormality"]
        assert b["spectrum"] == a["spectrum"]  # the top-level keys: layer 0, forward
        radii = [e["spectrum"]["spectral_radius"] for e in b["layers"]]
        assert len(set(radii)) == 4
    for cell in ("tanh", "lstm"):
        a = api.analyze(cell=cell, inputs_dim=3, bias=0.5, **kw)
        b = api.analyze(cell=cell, inputs_dim=3, bias=0.5, layers=3, bidirectional=True, **kw)
        for ta, tb in zip(a.to_dict()["trials"], b.to_dict()["trials"], strict=True):
            assert tb["layers"][0]["spectrum"] == ta["spectrum"]
        for i in range(2):
            one, stack = trial_arrays(a.analysis.net, i)[0], trial_arrays(b.analysis.net, i)[0]
            for name in ("weight_ih_l0", "weight_hh_l0"):
                np.testing.assert_array_equal(stack[name], one[name], err_msg=name)
            np.testing.assert_array_equal(stack["bias_ih_l0"] + stack["bias_hh_l0"],
                                          one["bias_ih_l0"] + one["bias_hh_l0"])
            assert not np.array_equal(stack["weight_hh_l0"], stack["weight_hh_l0_reverse"])


def test_spectrum_of_a_stacked_state_dict_reports_every_layer(tmp_path: Path) -> None:
    P = random_params("tanh", 3, 2, np.random.default_rng(2))
    np.savez(tmp_path / "rnn.npz", **{f"rnn.{k}": v for k, v in P.items() if k not in ("W_qh", "b_q")})
    record = json.loads(bptt("spectrum", "--weights", tmp_path / "rnn.npz", "--format", "json").stdout)
    assert record["config"]["layers"] == 3 and record["config"]["bidirectional"] is True
    (trial,) = record["trials"]
    assert [(e["layer"], e["direction"]) for e in trial["layers"]] == [
        (k, d) for k in range(3) for d in ("forward", "reverse")
    ]
    for entry in trial["layers"]:
        W = P[param_name("weight_hh", entry["layer"], entry["direction"] == "reverse")]
        eig = np.linalg.eigvals(W)
        assert entry["spectrum"]["spectral_radius"] == pytest.approx(np.abs(eig).max(), rel=1e-12)
        assert entry["spectrum"]["spectral_norm"] == pytest.approx(np.linalg.norm(W, 2), rel=1e-12)
        got = np.sort_complex(np.array([complex(re, im) for re, im in entry["spectrum"]["eigenvalues"]]))
        np.testing.assert_allclose(got, np.sort_complex(eig), atol=1e-12)
    csv = bptt("spectrum", "--weights", tmp_path / "rnn.npz", "--format", "csv").stdout.splitlines()
    header = csv[0].split(",")
    assert "layer" in header and "direction" in header and len(csv) == 1 + 6 * H
    rows = [dict(zip(header, line.split(","), strict=True)) for line in csv[1:]]
    assert {(r["layer"], r["direction"]) for r in rows} == {
        (str(k), d) for k in range(3) for d in ("forward", "reverse")
    }


def test_a_sweep_over_layers_gives_records_with_every_layer() -> None:
    result = bptt("sweep", "--layers", "1,2", "--bidirectional", "false,true", "--cell", "gru", "--hidden", 3,
                  "--T", 6, "--workers", 1, "--format", "jsonl")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(records) == 4
    for rec in records:
        L, bidi = rec["point"]["layers"], rec["point"]["bidirectional"]
        assert len(rec["summary"]["layers"]) == L * (1 + bidi)
        alone = api.analyze(cell="gru", hidden=3, T=6, layers=L, bidirectional=bidi).to_dict()
        assert rec["summary"] == alone["summary"]


@pytest.mark.parametrize(
    "kw",
    [dict(cell="tanh"), dict(cell="lstm"), dict(cell="gru", layers=2, bidirectional=True),
     dict(cell="lstm", layers=3, inputs_dim=0), dict(cell="relu", layers=2)],
    ids=["tanh", "lstm", "gru-2-bi", "lstm-3-autonomous", "relu-2"],
)
def test_a_random_initial_state_changes_nothing_else(kw: dict[str, Any]) -> None:
    """``--h0 random`` draws from streams of its own: every weight, input and target is what
    ``--h0 zeros`` draws, the spectra too; only the gradients move."""
    common = dict(T=8, hidden=4, trials=2, seed=9, **kw)
    zeros, random = api.analyze(**common), api.analyze(h0="random", **common)
    for i in range(2):
        P0, *rest0 = trial_arrays(zeros.analysis.net, i)
        P1, *rest1 = trial_arrays(random.analysis.net, i)
        assert P0.keys() == P1.keys()
        for name in P0:
            np.testing.assert_array_equal(P0[name], P1[name], err_msg=name)
        for a, b in zip(rest0[:4], rest1[:4], strict=True):  # L, D, x, y
            np.testing.assert_array_equal(a, b)
        start = rest1[4]
        assert rest0[4] is None or not rest0[4].any()
        assert start is not None and np.all(start != 0) and np.abs(start).max() < 6
        if kw["cell"] == "lstm":
            assert rest1[5] is not None and np.all(rest1[5] != 0) and not np.array_equal(rest1[5], start)
    a, b = zeros.to_dict(), random.to_dict()
    assert b["config"]["h0"] == "random" and a["config"]["h0"] == "zeros"
    assert {**a["config"], "h0": None} == {**b["config"], "h0": None}
    for ta, tb in zip(a["trials"], b["trials"], strict=True):
        assert [e["spectrum"] for e in ta["layers"]] == [e["spectrum"] for e in tb["layers"]]
        assert ta["grad_h_log10"] != tb["grad_h_log10"]
    # each trial its own draw
    first, second = (trial_arrays(random.analysis.net, i)[5] for i in range(2))
    assert not np.array_equal(first, second)


def test_an_autonomous_network_from_an_h0_file_is_the_one_from_the_same_random_h0(tmp_path: Path) -> None:
    """``--inputs-dim 0 --h0 FILE`` with the state ``--h0 random`` drew gives the same run, stacked too."""
    for kw in (dict(cell="tanh", gain=2.0), dict(cell="gru", layers=2, bidirectional=True)):
        common = dict(inputs_dim=0, T=60, hidden=30, lyapunov=2, **kw)
        drawn = api.analyze(h0="random", **common)
        start = trial_arrays(drawn.analysis.net)[5]
        np.save(tmp_path / "h0.npy", start)
        a = drawn.to_dict()
        b = bptt_json("--inputs-dim", 0, "--T", 60, "--hidden", 30, "--lyapunov", 2, "--cell", kw["cell"],
                      *(["--gain", 2.0] if "gain" in kw else ["--layers", 2, "--bidirectional"]),
                      "--h0", tmp_path / "h0.npy")
        assert a["trials"] == b["trials"] and a["summary"] == b["summary"]
        assert b["config"]["inputs_dim"] == 0 and b["config"]["h0"].endswith("h0.npy")


@pytest.mark.parametrize(
    "kw",
    [dict(criterion="cross-entropy"), dict(h0="random"), dict(h0="random", inputs_dim=0)],
    ids=["cross-entropy", "h0-random", "autonomous-h0-random"],
)
def test_truncate_measures_the_gradient_analyze_measures(kw: dict[str, Any]) -> None:
    """truncate's full gradient is analyze's with ``--loss mean``, its cross-entropy and h_0 too (both
    were accepted and ignored: config said mse and zeros, the numbers were those)."""
    common = dict(cell="tanh", T=6, hidden=3, outputs_dim=3, bias=0.5, **kw)
    truncated = api.truncate(**common).to_dict()
    analyzed = api.analyze(loss="mean", **common).to_dict()
    assert {k: truncated["config"][k] for k in kw} == kw
    assert truncated["trials"][0]["grad_params_log10"] == analyzed["trials"][0]["grad_params_log10"]


def test_an_autonomous_network_draws_no_inputs(tmp_path: Path) -> None:
    np.save(tmp_path / "w.npy", 0.5 * np.eye(3))
    record = bptt_json("--weights", tmp_path / "w.npy", "--inputs-dim", 0, "--T", 4)
    assert record["config"]["drawn"] == ["W_qh", "b_h", "b_q", "y"]


# ------------------------------------------------- 6. the autonomous tanh network's Lyapunov exponent
def gaussian_mean(f: Any, q: float) -> float:
    """``E[f(sqrt(q) z)]``, ``z ~ N(0, 1)``, by adaptive quadrature."""
    from scipy.integrate import quad

    root = math.sqrt(q)
    value, _ = quad(lambda z: f(root * z) * math.exp(-0.5 * z * z), -math.inf, math.inf, epsabs=1e-14,
                    epsrel=1e-13, limit=200)
    return value / math.sqrt(2 * math.pi)


def mean_field_lyapunov(g2: float) -> tuple[float, float]:
    """``(q*, lambda_max)`` of ``h_t = tanh(W h_{t-1})``, ``W_ij ~ N(0, g^2/N)``, ``N -> infinity``
    (dynamic mean-field theory of discrete-time networks: Molgedey, Schuchhardt & Schuster, PRL 69,
    3717 (1992); Cessac, J. Phys. I 5, 409 (1995); Toyoizumi & Abbott, PRE 84, 051908 (2011)): the
    pre-activations are N(0, q*) with ``q* = g^2 E[tanh(sqrt(q*) z)^2]`` (> 0 for g > 1), and a small
    perturbation grows per step, in mean square, by ``g^2 E[tanh'(sqrt(q*) z)^2]``:
    ``lambda_max = 1/2 ln (g^2 E[(1 - tanh^2)^2])``."""
    from scipy.optimize import brentq

    def excess(q: float) -> float:
        return g2 * gaussian_mean(lambda a: math.tanh(a) ** 2, q) - q

    q = brentq(excess, 1e-6, g2, xtol=1e-15, rtol=1e-14)
    return q, 0.5 * math.log(g2 * gaussian_mean(lambda a: (1 - math.tanh(a) ** 2) ** 2, q))


def test_the_mean_field_lyapunov_exponent_of_the_test() -> None:
    """The test's own formula against its two limits: chaos sets in at g = 1 (lambda ~ 0 just above);
    for large g the units saturate, q* -> g^2 and E[sech^4(sqrt(q*) z)] -> (4/3) / sqrt(2 pi q*), so
    lambda -> 1/2 ln(4 g / (3 sqrt(2 pi))); in between lambda grows with g, below ln g."""
    q, _ = mean_field_lyapunov(4.0)
    assert q == pytest.approx(4 * gaussian_mean(lambda a: math.tanh(a) ** 2, q), rel=1e-12)
    assert 0 < mean_field_lyapunov(1.01**2)[1] < 1e-4
    assert mean_field_lyapunov(200.0**2)[1] == pytest.approx(
        0.5 * math.log(4 * 200 / (3 * math.sqrt(2 * math.pi))), abs=2e-3
    )
    gains = (1.2, 1.5, 2.0, 3.0, 5.0)
    lams = [mean_field_lyapunov(g * g)[1] for g in gains]
    assert all(b > a > 0 for a, b in itertools.pairwise(lams))
    assert all(lam < math.log(g) for lam, g in zip(lams, gains, strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("g", [2.0, 3.0])
def test_the_top_lyapunov_exponent_of_a_large_autonomous_tanh_network(g: float) -> None:
    """N = 1000 units, no input, started from ``--h0 random``: the top Lyapunov exponent, averaged over
    the steps after a forward transient of hundreds of steps (tens reach the attractor), is the
    mean-field value to 0.01 (finite N and the finite average move it by ~0.003); the package's own
    mean-field rate is this test's formula at the drawn matrix's variance ||W||_F^2 / N."""
    N, steps = 1000, 1500
    record = bptt_json("--cell", "tanh", "--inputs-dim", 0, "--h0", "random", "--gain", g, "--hidden", N,
                       "--T", steps, "--outputs-dim", 1, "--lyapunov", 1, "--seed", 1)
    (trial,) = record["trials"]
    ly = trial["lyapunov"]
    assert ly["steps"] >= 900 and steps - ly["transient"] - ly["steps"] >= 300  # the forward transient
    _, lam = mean_field_lyapunov(g * g)
    assert ly["exponents"][0] == pytest.approx(lam, abs=0.01)
    mf = trial["mean_field"]
    assert mf["input_variance"] == 0 and mf["bias_variance"] == 0
    assert mf["weight_variance"] == pytest.approx(g * g, rel=0.02)
    q, rate = mean_field_lyapunov(mf["weight_variance"])
    assert mf["q_star"] == pytest.approx(q, rel=1e-8)
    assert trial["rates"]["mean_field"] == pytest.approx(rate, abs=1e-9)


# ------------------------------------------------------------------- what a user of a stack reads
def mixed_stack(path: Path) -> Path:
    """Identity cells, layer 0 W_hh = 0.9 I (stable over T = 20), layer 1 W_hh = 1.5 I (exploding)."""
    h, d = 4, 3
    np.savez(path, weight_ih_l0=np.full((h, d), 0.1), weight_hh_l0=0.9 * np.eye(h), bias_ih_l0=np.zeros(h),
             bias_hh_l0=np.zeros(h), weight_ih_l1=0.1 * np.eye(h), weight_hh_l1=1.5 * np.eye(h),
             bias_ih_l1=np.zeros(h), bias_hh_l1=np.zeros(h))
    return path


def test_the_verdict_line_and_fail_on_name_the_worst_layer(tmp_path: Path) -> None:
    path = mixed_stack(tmp_path / "mixed.npz")
    text = bptt("analyze", "--weights", path, "--T", 20).stdout
    line = text[text.index("verdict: "):]
    gain = 19 * math.log10(1.5)  # layer 1's own chain: (1.5 I)^19
    assert line.startswith("verdict: exploding (worst of the layers: layer 1, forward;")
    assert f"10^+{gain:.2f}" in line and "10^-0.87" not in line
    result = bptt("analyze", "--weights", path, "--T", 20, "--fail-on", "exploding")
    assert result.exit_code == 1
    assert result.stderr.strip() == "bptt: verdict exploding (layer 1, forward) matches --fail-on exploding"
    assert bptt("analyze", "--weights", path, "--T", 20, "--fail-on", "vanishing").exit_code == 0


def test_the_theory_table_follows_the_layer_shown(tmp_path: Path) -> None:
    path = mixed_stack(tmp_path / "mixed.npz")
    text = bptt("analyze", "--weights", path, "--T", 20, "--layer", 1).stdout
    title = next(line for line in text.splitlines() if line.startswith("Theory beside measurement"))
    assert title.rstrip().endswith("(layer 1, forward)")
    gelfand = next(line for line in text.splitlines() if "Gelfand rate" in line)
    assert f"{math.log(1.5):+.4f}" in gelfand  # layer 1's ln rho, not layer 0's ln 0.9


def test_depth_asked_against_the_file_is_a_conflict_before_reading(tmp_path: Path) -> None:
    path = mixed_stack(tmp_path / "mixed.npz")
    assert_bad_input(bptt("analyze", "--weights", path, "--layers", 1), "--layers 1 conflicts", "2 layers")
    assert_bad_input(bptt("analyze", "--weights", path, "--bidirectional"), "--bidirectional conflicts")


def test_d2l_s_own_model_state_dict_reads_as_its_layout(tmp_path: Path) -> None:
    """RNNLMScratch's state_dict: rnn.W_xh, rnn.W_hh, rnn.b_h, W_hq, b_q (row-vector layout)."""
    r = np.random.default_rng(3)
    h, d, q = 5, 3, 4
    W_xh, W_hh, b_h = r.normal(size=(d, h)), 0.3 * r.normal(size=(h, h)), r.normal(size=h)
    W_hq, b_q = r.normal(size=(h, q)), r.normal(size=q)
    np.savez(tmp_path / "model.npz", **{"rnn.W_xh": W_xh, "rnn.W_hh": W_hh, "rnn.b_h": b_h, "W_hq": W_hq,
                                        "b_q": b_q})
    np.savez(tmp_path / "ours.npz", W_hx=W_xh.T, W_hh=W_hh.T, b_h=b_h, W_qh=W_hq.T, b_q=b_q)
    book = bptt_json("--weights", tmp_path / "model.npz", "--T", 10)
    ours = bptt_json("--weights", tmp_path / "ours.npz", "--T", 10)
    assert book["trials"] == ours["trials"]


def test_the_csv_of_a_stack_has_every_layer() -> None:
    args = ("--T", 6, "--hidden", 3, "--layers", 2, "--bidirectional", "--trials", 2, "--cell", "tanh")
    record = bptt_json(*args)
    text = bptt("analyze", *args, "--format", "csv").stdout.splitlines()
    assert text[0] == "trial,layer,direction,t,lag,grad_h_log10,ratio_log10,predicted_log10"
    rows = [line.split(",") for line in text[1:]]
    assert len(rows) == 2 * 4 * 6
    for row in rows:
        trial, layer, direction, t = int(row[0]), int(row[1]), row[2], int(row[3])
        entry = next(e for e in record["trials"][trial]["layers"]
                     if (e["layer"], e["direction"]) == (layer, direction))
        g = entry["grad_h_log10"]
        value, start = g[t - 1], g[-1 if direction == "forward" else 0]
        assert int(row[4]) == (6 - t if direction == "forward" else t - 1)  # steps from its chain's start
        if value is None:  # an exact zero (the top reverse layer before T under the last loss): empty
            assert row[5] == ""
            continue
        assert float(row[5]) == value
        if start is None:  # its chain starts at an exact zero: no ratio
            assert row[6] == ""
        else:
            assert math.isclose(float(row[6]), value - start, abs_tol=1e-12)


def test_the_autonomous_network_leaves_its_approach_to_the_attractor_out() -> None:
    """--inputs-dim 0 started from --h0 random: the first min(T // 10, 100) steps after h_0 are not
    averaged (lyapunov.warmup says how many are not); a driven network keeps its window."""
    common = ("--T", 300, "--hidden", 8, "--cell", "tanh", "--gain", 2, "--h0", "random")
    free = bptt_json(*common, "--inputs-dim", 0)["trials"][0]["lyapunov"]
    driven = bptt_json(*common)["trials"][0]["lyapunov"]
    assert (free["transient"], free["steps"], free["warmup"]) == (30, 240, 30)
    assert (driven["transient"], driven["steps"], driven["warmup"]) == (30, 270, 0)


def test_the_sweep_legend_says_which_layer_a_stacked_cell_shows() -> None:
    """The number is layer 0 forward's gain, the mark the worst layer's verdict: they can disagree
    (-0.8 beside v), so the legend says so for stacked networks and only for them."""
    stacked = bptt("sweep", "--T", "5,8", "--cell", "tanh", "--layers", "2", "--bidirectional", "true",
                   "--gain", "1.2", "--workers", "1")
    single = bptt("sweep", "--T", "5,8", "--cell", "tanh", "--workers", "1")
    assert stacked.exit_code == 0 and single.exit_code == 0, stacked.stderr + single.stderr
    note = "the number is layer 0 forward's gain, the mark the worst layer's verdict"
    assert note in " ".join(stacked.stdout.split()) and note not in " ".join(single.stdout.split())
