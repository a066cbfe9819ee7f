"""A user's own network and data: --weights (.npz/.npy), --inputs, --targets.

Good files are checked end to end against the independent reference computed from the
same arrays; bad files must each give exit 2 and one ``bptt: error:`` line naming the
problem (and both shapes when two arrays disagree), never a traceback.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import reference as ref
from adapters import PARAMS, random_trial
from clitools import assert_bad_input, bptt, bptt_json

from bptt_cli.errors import BadInput
from bptt_cli.io.weights import given_from_files, load_weights


@pytest.fixture
def trial() -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    return random_trial(np.random.default_rng(17), 5, 3, 2, 30, gain=1.2)


def save_trial(tmp_path: Path, p: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> list[str]:
    np.savez(tmp_path / "w.npz", **p)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return [
        "--weights",
        str(tmp_path / "w.npz"),
        "--inputs",
        str(tmp_path / "x.npy"),
        "--targets",
        str(tmp_path / "y.npy"),
    ]


@pytest.mark.parametrize(("cell", "loss"), [("tanh", "mean"), ("identity", "last"), ("sigmoid", "last")])
def test_given_network_end_to_end_against_reference(tmp_path: Path, trial, cell: str, loss: str) -> None:  # type: ignore[no-untyped-def]
    """Every number of the JSON output for a fully given network equals the oracle's."""
    p, x, y = trial
    rec = bptt_json(*save_trial(tmp_path, p, x, y), "--cell", cell, "--loss", loss)
    assert rec["config"]["T"] == 30 and rec["config"]["hidden"] == 5
    assert rec["config"]["inputs_dim"] == 3 and rec["config"]["outputs_dim"] == 2
    assert rec["config"]["weights"] == str(tmp_path / "w.npz")
    r = ref.bptt(p, x, y, cell, loss)
    tr = rec["trials"][0]
    np.testing.assert_allclose(
        tr["grad_h_log10"], np.log10(np.linalg.norm(r.dL_dh, axis=1)), rtol=0, atol=1e-12
    )
    for name in PARAMS:
        assert tr["grad_params_log10"][name] == pytest.approx(
            math.log10(np.linalg.norm(r.grads[name])), abs=1e-12
        )
    assert tr["loss_log10"] == pytest.approx(math.log10(r.loss), abs=1e-12)
    assert tr["gain_log10"] == pytest.approx(r.gain_ln / math.log(10), abs=1e-12)
    eig = np.linalg.eigvals(p["W_hh"])
    eig = eig[np.argsort(-np.abs(eig), kind="stable")]
    np.testing.assert_allclose(
        np.abs(np.array(tr["spectrum"]["eigenvalues"]) @ [1, 1j]), np.abs(eig), rtol=1e-13
    )
    assert tr["spectrum"]["spectral_radius"] == pytest.approx(np.abs(eig[0]), rel=1e-13)
    assert tr["spectrum"]["spectral_norm"] == pytest.approx(np.linalg.norm(p["W_hh"], 2), rel=1e-13)
    assert tr["spectrum"]["condition_number"] == pytest.approx(np.linalg.cond(p["W_hh"], 2), rel=1e-10)


def test_pytorch_names_biases_summed(tmp_path: Path, trial) -> None:  # type: ignore[no-untyped-def]
    """nn.RNN's state_dict names are accepted; bias_hh_l0 + bias_ih_l0 is b_h."""
    p, x, y = trial
    rng = np.random.default_rng(1)
    b_hh, b_ih = rng.standard_normal(5), rng.standard_normal(5)
    np.savez(
        tmp_path / "torch.npz",
        weight_hh_l0=p["W_hh"],
        weight_ih_l0=p["W_hx"],
        bias_hh_l0=b_hh,
        bias_ih_l0=b_ih,
        W_qh=p["W_qh"],
        b_q=p["b_q"],
    )
    loaded = load_weights(tmp_path / "torch.npz")
    assert set(loaded) == set(PARAMS)
    np.testing.assert_array_equal(loaded["b_h"], b_hh + b_ih)
    np.testing.assert_array_equal(loaded["W_hh"], p["W_hh"])
    np.testing.assert_array_equal(loaded["W_hx"], p["W_hx"])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    data = ["--inputs", tmp_path / "x.npy", "--targets", tmp_path / "y.npy", "--cell", "tanh"]
    torch_rec = bptt_json("--weights", tmp_path / "torch.npz", *data)
    p_sum = {**p, "b_h": b_hh + b_ih}
    np.savez(tmp_path / "ours.npz", **p_sum)
    ours_rec = bptt_json("--weights", tmp_path / "ours.npz", *data)
    assert torch_rec["trials"] == ours_rec["trials"]
    r = ref.bptt(p_sum, x, y, "tanh", "last")
    np.testing.assert_allclose(
        torch_rec["trials"][0]["grad_h_log10"], np.log10(np.linalg.norm(r.dL_dh, axis=1)), rtol=0, atol=1e-12
    )


def test_npy_is_W_hh_alone_rest_drawn(tmp_path: Path) -> None:
    W = np.diag([0.5, -0.25, 0.125])
    np.save(tmp_path / "w.npy", W)
    rec = bptt_json("--weights", tmp_path / "w.npy", "--T", 7, "--inputs-dim", 2, "--outputs-dim", 4)
    assert rec["config"]["hidden"] == 3
    assert rec["trials"][0]["spectrum"]["eigenvalues"] == [[0.5, 0.0], [-0.25, 0.0], [0.125, 0.0]]
    assert rec["trials"][0]["spectrum"]["spectral_norm"] == 0.5
    assert rec["trials"][0]["spectrum"]["condition_number"] == 4.0
    assert len(rec["trials"][0]["grad_h_log10"]) == 7


def test_integer_arrays_accepted(tmp_path: Path) -> None:
    np.save(tmp_path / "w.npy", np.eye(3, dtype=np.int64))
    rec = bptt_json("--weights", tmp_path / "w.npy", "--T", 5)
    assert rec["trials"][0]["spectrum"]["spectral_radius"] == 1.0


def test_sizes_come_from_files(tmp_path: Path, trial) -> None:  # type: ignore[no-untyped-def]
    p, x, y = trial
    save_trial(tmp_path, p, x, y)
    given, sizes = given_from_files(tmp_path / "w.npz", tmp_path / "x.npy", tmp_path / "y.npy")
    assert {k: v[0] for k, v in sizes.items()} == {"hidden": 5, "inputs_dim": 3, "outputs_dim": 2, "T": 30,
                                                   "layers": 1, "bidirectional": False}
    assert given.x is not None and given.x.dtype == np.float64
    # the same values given on the command line agree, so they are accepted
    rec = bptt_json(
        *save_trial(tmp_path, p, x, y), "--T", 30, "--hidden", 5, "--inputs-dim", 3, "--outputs-dim", 2
    )
    assert rec["config"]["T"] == 30


# --------------------------------------------------------------------------- bad files
Maker = Callable[[Path], list[object]]


def _npy(name: str, array: np.ndarray, flag: str = "--weights") -> Maker:
    def make(d: Path) -> list[object]:
        np.save(d / name, array)
        return [flag, d / name]

    return make


def _npz(name: str, flag: str = "--weights", **arrays: np.ndarray) -> Maker:
    def make(d: Path) -> list[object]:
        np.savez(d / name, **arrays)  # type: ignore[arg-type]
        return [flag, d / name]

    return make


def _raw(name: str, data: bytes, flag: str = "--weights") -> Maker:
    def make(d: Path) -> list[object]:
        (d / name).write_bytes(data)
        return [flag, d / name]

    return make


def _truncated(d: Path) -> list[object]:
    np.savez(d / "full.npz", W_hh=np.eye(4))
    data = (d / "full.npz").read_bytes()
    (d / "w.npz").write_bytes(data[: len(data) // 2])
    return ["--weights", d / "w.npz"]


def _pickled_npz(d: Path) -> list[object]:
    np.savez(d / "w.npz", W_hh=np.array([[1, 2], [3, 4]], dtype=object))
    return ["--weights", d / "w.npz"]


def _pickled_npy(d: Path) -> list[object]:
    np.save(d / "w.npy", np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    return ["--weights", d / "w.npy"]


def _two(*makers: Maker) -> Maker:
    def make(d: Path) -> list[object]:
        return [a for m in makers for a in m(d)]

    return make


NAN = np.array([[0.5, np.nan], [0.0, 0.5]])
BAD_FILES: list[tuple[str, Maker, tuple[str, ...]]] = [
    ("nan in W_hh", _npy("w.npy", NAN), ("NaN", "w.npy")),
    ("inf in W_hh", _npy("w.npy", np.array([[np.inf, 0.0], [0.0, 1.0]])), ("inf", "w.npy")),
    ("-inf in b_h", _npz("w.npz", W_hh=np.eye(2), b_h=np.array([1.0, -np.inf])), ("inf", "b_h")),
    ("nan in inputs", _npy("x.npy", np.full((5, 2), np.nan), "--inputs"), ("NaN", "inputs")),
    ("nan in targets", _npy("y.npy", np.full((5, 2), np.nan), "--targets"), ("NaN", "targets")),
    ("non-square W_hh", _npy("w.npy", np.ones((3, 4))), ("square", "(3, 4)")),
    ("1-D W_hh", _npy("w.npy", np.ones(3)), ("W_hh", "(3,)", "2-D")),
    ("3-D W_hh", _npy("w.npy", np.ones((2, 2, 2))), ("W_hh", "(2, 2, 2)")),
    ("1-D inputs", _npy("x.npy", np.ones(5), "--inputs"), ("inputs", "(5,)")),
    ("2-D b_h", _npz("w.npz", W_hh=np.eye(2), b_h=np.ones((2, 1))), ("b_h", "(2, 1)")),
    ("complex W_hh", _npy("w.npy", np.eye(2) * 1j), ("W_hh", "complex")),
    ("string W_hh", _npy("w.npy", np.array([["a", "b"], ["c", "d"]])), ("W_hh",)),
    ("W_hx vs W_hh", _npz("w.npz", W_hh=np.eye(4), W_hx=np.ones((5, 2))), ("(5, 2)", "(4, 4)")),
    ("W_qh vs W_hh", _npz("w.npz", W_hh=np.eye(4), W_qh=np.ones((2, 3))), ("(2, 3)", "(4, 4)")),
    ("b_h vs W_hh", _npz("w.npz", W_hh=np.eye(4), b_h=np.ones(3)), ("(3,)", "(4, 4)")),
    ("b_q vs W_qh", _npz("w.npz", W_hh=np.eye(4), W_qh=np.ones((2, 4)), b_q=np.ones(3)), ("(3,)", "(2, 4)")),
    (
        "inputs vs W_hx",
        _two(
            _npz("w.npz", W_hh=np.eye(4), W_hx=np.ones((4, 2))), _npy("x.npy", np.ones((10, 3)), "--inputs")
        ),
        ("(10, 3)", "(4, 2)"),
    ),
    (
        "targets vs W_qh",
        _two(
            _npz("w.npz", W_hh=np.eye(4), W_qh=np.ones((2, 4))), _npy("y.npy", np.ones((10, 3)), "--targets")
        ),
        ("(10, 3)", "(2, 4)"),
    ),
    (
        "targets T vs inputs T",
        _two(_npy("x.npy", np.ones((10, 3)), "--inputs"), _npy("y.npy", np.ones((9, 2)), "--targets")),
        ("(9, 2)", "(10, 3)"),
    ),
    ("inputs without time steps", _npy("x.npy", np.ones((0, 3)), "--inputs"), ("(0, 3)",)),
    ("unknown array name", _npz("w.npz", W_hh=np.eye(2), W_xx=np.eye(2)), ("W_xx",)),
    ("no W_hh", _npz("w.npz", W_hx=np.eye(2)), ("W_hh",)),
    ("W_hh twice", _npz("w.npz", W_hh=np.eye(2), weight_hh_l0=np.eye(2)), ("W_hh", "twice")),
    ("archive as inputs", _npz("x.npz", "--inputs", x=np.ones((3, 2))), ("x.npz", ".npy")),
    ("pickled npz", _pickled_npz, ("pickle",)),
    ("pickled npy", _pickled_npy, ("pickle",)),
    ("truncated npz", _truncated, ("w.npz",)),
    ("empty file", _raw("w.npz", b""), ("w.npz",)),
    ("text file as npz", _raw("w.npz", b"W_hh = [[1, 0], [0, 1]]\n"), ("w.npz", "not a valid")),
    ("text file as npy", _raw("w.npy", b"1 0\n0 1\n"), ("w.npy", "not a valid")),
    ("text file as inputs", _raw("x.npy", b"hello", "--inputs"), ("x.npy", "not a valid")),
    ("missing file", lambda d: ["--weights", d / "nope.npz"], ("nope.npz",)),
    ("missing inputs", lambda d: ["--inputs", d / "nope.npy"], ("nope.npy",)),
    ("directory", lambda d: ["--weights", d], ("cannot read",)),
]


@pytest.mark.parametrize(("name", "make", "words"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_file_one_line_exit_2(tmp_path: Path, name: str, make: Maker, words: tuple[str, ...]) -> None:
    args = make(tmp_path)
    out = tmp_path / "out.json"
    result = bptt("analyze", *args, "--output", out)
    assert_bad_input(result, *words)
    assert not out.exists(), "bad input must not create the output file"
    assert not list(tmp_path.glob(".out.json*")), "no temporary file may be left behind"


def test_bad_file_api_raises_badinput(tmp_path: Path) -> None:
    """The loader itself raises BadInput (the CLI's one-line error), never numpy's errors."""
    _pickled_npz(tmp_path)
    with pytest.raises(BadInput, match="pickle"):
        load_weights(tmp_path / "w.npz")
    np.save(tmp_path / "n.npy", NAN)
    with pytest.raises(BadInput, match="NaN"):
        load_weights(tmp_path / "n.npy")


def test_pickle_never_executed(tmp_path: Path) -> None:
    """A pickle that would run code when unpickled is refused without running it."""
    marker = tmp_path / "pwned"
    payload = (
        b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    )  # protocol-0 pickle calling os.system
    (tmp_path / "w.npy").write_bytes(payload)
    result = bptt("analyze", "--weights", tmp_path / "w.npy")
    assert_bad_input(result)
    assert not marker.exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    np.save(tmp_path / "w.npy", np.eye(2))
    (tmp_path / "w.npy").chmod(0)
    try:
        assert_bad_input(bptt("analyze", "--weights", tmp_path / "w.npy"), "cannot read", "w.npy")
    finally:
        (tmp_path / "w.npy").chmod(0o644)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--hidden", "5"], ("--hidden 5", "(4, 4)")),
        (["--inputs-dim", "3"], ("--inputs-dim 3", "(4, 2)")),
        (["--outputs-dim", "7"], ("--outputs-dim 7",)),
        (["--ensemble", "orthogonal"], ("--ensemble", "--weights")),
        (["--gain", "2"], ("--gain", "--weights")),
    ],
)
def test_options_conflicting_with_weights_file(
    tmp_path: Path, extra: list[str], words: tuple[str, ...]
) -> None:
    np.savez(tmp_path / "w.npz", W_hh=np.eye(4), W_hx=np.ones((4, 2)), W_qh=np.ones((6, 4)))
    assert_bad_input(bptt("analyze", "--weights", tmp_path / "w.npz", *extra), *words)


def test_T_conflicting_with_inputs(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((10, 2)))
    assert_bad_input(bptt("analyze", "--inputs", tmp_path / "x.npy", "--T", "5"), "--T 5", "(10, 2)")
    np.save(tmp_path / "y.npy", np.ones((10, 2)))
    assert_bad_input(bptt("analyze", "--targets", tmp_path / "y.npy", "--T", "11"), "--T 11", "(10, 2)")


def test_radius_rescales_given_W_hh_and_nilpotent_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "w.npy", np.diag([0.5, -0.25]))
    rec = bptt_json("--weights", tmp_path / "w.npy", "--radius", "2", "--T", "4")
    assert rec["trials"][0]["spectrum"]["eigenvalues"] == [[2.0, 0.0], [-1.0, 0.0]]
    np.save(tmp_path / "n.npy", np.array([[0.0, 1.0], [0.0, 0.0]]))
    assert_bad_input(bptt("analyze", "--weights", tmp_path / "n.npy", "--radius", "2"), "nilpotent")


def test_gated_weights_without_a_gated_cell_say_which_cell(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "lstm.npz"
    np.savez(path, weight_hh_l0=rng.standard_normal((16, 4)), weight_ih_l0=rng.standard_normal((16, 3)))
    message = assert_bad_input(bptt("analyze", "--weights", path), "square", "(16, 4)")
    assert "--cell lstm" in message
