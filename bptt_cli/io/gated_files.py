"""A user's own LSTM/GRU from a ``.npz`` (or, with PyTorch installed, ``.pt``) state_dict.

Names and layouts are PyTorch's: ``weight_ih_l0 (G h, d)``, ``weight_hh_l0 (G h, h)``,
``bias_ih_l0``, ``bias_hh_l0 (G h)`` with ``G = 4`` (LSTM) or 3 (GRU), and optionally the output
layer ``W_qh (q, h)``, ``b_q (q)``; so ``numpy.savez(path, **{k: v.numpy() for k, v in
rnn.state_dict().items()})`` and ``torch.save(rnn.state_dict(), path)`` both load directly, and so
does a model's state_dict with one recurrent sub-module and a Linear head
(:func:`bptt_cli.io.statedict.unprefix`: ``lstm.weight_ih_l0``, ..., ``fc.weight``, ``fc.bias``). A file
without biases (``bias=False``) means zero biases. ``.npz`` files are read with
``allow_pickle=False`` and ``.pt`` files with ``torch.load(..., weights_only=True)``: a weights
file can never run code. Every problem is one :class:`~bptt_cli.errors.BadInput` line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bptt_cli.core.gated_network import GATED, GATES, PARAMS, GatedGiven
from bptt_cli.core.scaled import Array
from bptt_cli.errors import BadInput
from bptt_cli.io.arrays import SizeAxes, check_array, fixed_sizes, load_series
from bptt_cli.io.statedict import layer_reason, read_weights_file, unprefix

NDIM = {"weight_ih_l0": 2, "weight_hh_l0": 2, "bias_ih_l0": 1, "bias_hh_l0": 1, "W_qh": 2, "b_q": 1}
GATED_AXES: SizeAxes = (  # the rows of weight_*_l0 (G h) are checked against the cell separately
    ("weight_hh_l0", (None, "hidden")),
    ("weight_ih_l0", (None, "inputs_dim")),
    ("W_qh", ("outputs_dim", "hidden")),
    ("x", ("T", "inputs_dim")),
    ("y", ("T", "outputs_dim")),
    ("b_q", ("outputs_dim",)),
)


def load_gated_weights(path: Path, cell: str) -> dict[str, Array]:
    """Parameters of an LSTM (``cell = "lstm"``) or GRU from ``path``, shapes checked against the cell.

    Missing biases are zeros (PyTorch's ``bias=False``); other missing arrays are drawn at random.
    """
    loaded = read_weights_file(path)
    if isinstance(loaded, np.ndarray):
        names = ", ".join(PARAMS)
        raise BadInput(f"{path} holds one array; --cell {cell} needs an .npz of PyTorch names ({names})")
    arrays = unprefix(loaded, path)
    out: dict[str, Array] = {}
    for key, value in arrays.items():
        if key not in PARAMS:
            why = layer_reason(key)
            raise BadInput(f"unknown array {key!r} in {path}{why}; expected some of {', '.join(PARAMS)}")
        out[key] = check_array(np.asarray(value), key, path, NDIM[key])
    if "weight_hh_l0" not in out:
        raise BadInput(f"{path} has no weight_hh_l0 (the recurrent weights of the {cell.upper()})")
    G = len(GATES[cell])
    rows, h = out["weight_hh_l0"].shape
    if rows != G * h:
        kinds = {4: "an LSTM's (4h x h)", 3: "a GRU's (3h x h)", 1: "an nn.RNN's (h x h)"}
        kind = next((v for k, v in kinds.items() if rows == k * h), None)
        what = f"; that is {kind}" if kind else ""
        shape = out["weight_hh_l0"].shape
        raise BadInput(f"weight_hh_l0 in {path} has shape {shape}; --cell {cell} needs {G}h x h{what}")
    for name in ("weight_ih_l0", "bias_ih_l0", "bias_hh_l0"):
        if name in out and out[name].shape[0] != G * h:
            raise BadInput(
                f"{name} in {path} has shape {out[name].shape}; with weight_hh_l0 of shape "
                f"{out['weight_hh_l0'].shape} its first size must be {G * h}"
            )
    for name in ("bias_ih_l0", "bias_hh_l0"):
        out.setdefault(name, np.zeros(G * h))
    return out


def gated_given_from_files(
    cell: str, weights: Path | None, inputs: Path | None, targets: Path | None
) -> tuple[GatedGiven, dict[str, tuple[int, str]]]:
    """Load the files of a gated-cell experiment and check their shapes against each other.

    Returns the arrays and the sizes they fix (``hidden``, ``inputs_dim``, ``outputs_dim``,
    ``T``), each as ``(size, description of the array that fixes it)``.
    """
    if cell not in GATED:
        raise BadInput(f"unknown gated cell {cell!r} (choose from {', '.join(GATED)})")
    arrays = load_gated_weights(weights, cell) if weights else {}
    if inputs:
        arrays["x"] = load_series(inputs, "inputs")
    if targets:
        arrays["y"] = load_series(targets, "targets")
    return GatedGiven(**arrays), fixed_sizes(arrays, GATED_AXES)
