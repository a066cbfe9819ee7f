"""A user's own network: weights from ``.npz``/``.npy`` files, PyTorch state_dicts (``.pt``) or in-memory
arrays and modules, with inputs and targets, checked against each other before use.

One interface for every cell, :func:`given_from_files`:

- Elman cells read ``W_hh``, ``W_hx``, ``W_qh``, ``b_h``, ``b_q`` or PyTorch nn.RNN's names
  (``weight_hh_l0``, ``weight_ih_l0``, ``bias_hh_l0``, ``bias_ih_l0``: the two biases, of one
  shape, summed into ``b_h``); a ``.npy`` is ``W_hh`` alone.
- Gated cells (Names and layouts are PyTorch's: ``weight_ih_l0 (G h, d)``, ``weight_hh_l0 (G h, h)``,
  ``bias_ih_l0``, ``bias_hh_l0 (G h)`` with ``G = 4`` (LSTM) or 3 (GRU), and optionally the output
  layer ``W_qh (q, h)``, ``b_q (q)``; so ``numpy.savez(path, **{k: v.numpy() for k, v in
  rnn.state_dict().items()})`` and ``torch.save(rnn.state_dict(), path)`` both load directly, and so
  does a model's state_dict with one recurrent sub-module and a Linear head
  (:func:`bptt_cli.io.statedict.unprefix`: ``lstm.weight_ih_l0``, ..., ``fc.weight``, ``fc.bias``). A file
  without biases (``bias=False``) means zero biases. ``.npz`` files are read with
  ``allow_pickle=False`` and ``.pt`` files with ``torch.load(..., weights_only=True)``: a weights
  file can never run code. Every problem is one :class:`~bptt_cli.errors.BadInput` line.

Files are data, never code: ``.npz`` is read with ``allow_pickle=False``, ``.pt`` with
``torch.load(..., weights_only=True)``. Every problem is one :class:`~bptt_cli.errors.BadInput`
line naming the file (or the in-memory source) and the shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bptt_cli.core.network import GATED, GATES, GatedGiven, Given
from bptt_cli.core.network import GATED_PARAMS as PARAMS
from bptt_cli.core.scaled import Array
from bptt_cli.errors import BadInput
from bptt_cli.io.arrays import NDIM, SizeAxes, check_array, fixed_sizes, load_series
from bptt_cli.io.statedict import layer_reason, read_weights_file, tensors_to_numpy, unprefix

# PyTorch nn.RNN state_dict names; the two biases are summed into b_h.
TORCH_NAMES = {"weight_hh_l0": "W_hh", "weight_ih_l0": "W_hx", "bias_hh_l0": "b_h", "bias_ih_l0": "b_h"}
NAMES = ("W_hh", "W_hx", "W_qh", "b_h", "b_q")
Source = Path | Mapping[str, Any] | np.ndarray | Any
"""Where weights come from: a file, a mapping of names to arrays (or tensors), one array (``W_hh``),
or a PyTorch module (its ``state_dict()``)."""


def read_source(source: Source) -> tuple[np.ndarray | dict[str, np.ndarray], str]:
    """The arrays of a weights source and how messages name it: a file's path; ``the given
    weights`` for arrays; ``the given nn.LSTM`` (the class name) for a module."""
    if isinstance(source, str | Path):
        return read_weights_file(Path(source)), str(source)
    if isinstance(source, np.ndarray):
        return source, "the given W_hh"
    if isinstance(source, Mapping):
        return tensors_to_numpy(source), "the given weights"
    state_dict = getattr(source, "state_dict", None)
    if callable(state_dict):
        return tensors_to_numpy(state_dict()), f"the given {type(source).__name__}"
    kind = type(source).__name__
    raise BadInput(f"weights must be a file, a mapping of names to arrays or a PyTorch module, got {kind}")


def load_weights(source: Source) -> dict[str, Array]:
    """The Elman parameters of ``source``: a ``.npy`` with ``W_hh`` alone, or a ``.npz`` (or PyTorch
    ``.pt``) of named arrays (or those arrays in memory, or a module's state_dict).

    Accepted names: ``W_hh``, ``W_hx``, ``W_qh``, ``b_h``, ``b_q`` or PyTorch nn.RNN's
    ``weight_hh_l0``, ``weight_ih_l0``, ``bias_hh_l0``, ``bias_ih_l0`` (the two biases, of one
    shape, summed into ``b_h``), also under a module prefix with a Linear head
    (:func:`bptt_cli.io.statedict.unprefix`). A name given both ways is bad input, whatever the order
    of the arrays in the file.
    """
    loaded, path = read_source(source)
    if isinstance(loaded, np.ndarray):
        return {"W_hh": check_array(loaded, "W_hh", path)}
    arrays = unprefix(loaded, path)
    for key in arrays:
        if key not in NAMES and key not in TORCH_NAMES:
            known = ", ".join((*NAMES, *TORCH_NAMES))
            raise BadInput(f"unknown array {key!r} in {path}{layer_reason(key)} (expected some of {known})")
    for key, name in TORCH_NAMES.items():
        if key in arrays and name in arrays:
            raise BadInput(
                f"{path} gives {name} twice (as {name!r} and as PyTorch's {key!r}): give one of them"
            )
    checked = {k: check_array(v, k, path, NDIM[TORCH_NAMES.get(k, k)]) for k, v in arrays.items()}
    if "bias_ih_l0" in checked and "bias_hh_l0" in checked:
        ih, hh = checked.pop("bias_ih_l0"), checked.pop("bias_hh_l0")
        if ih.shape != hh.shape:
            raise BadInput(
                f"bias_ih_l0 of shape {ih.shape} and bias_hh_l0 of shape {hh.shape} in {path} must have "
                "the same shape (PyTorch's two biases, summed into b_h)"
            )
        checked["b_h"] = ih + hh
    out = {TORCH_NAMES.get(key, key): value for key, value in checked.items()}
    if "W_hh" not in out:
        raise BadInput(f"{path} has no W_hh (or weight_hh_l0)")
    return out


ELMAN_AXES: SizeAxes = (

    ("W_hh", ("hidden", None)),
    ("W_hx", ("hidden", "inputs_dim")),
    ("W_qh", ("outputs_dim", "hidden")),
    ("x", ("T", "inputs_dim")),
    ("y", ("T", "outputs_dim")),
    ("b_h", ("hidden",)),
    ("b_q", ("outputs_dim",)),
)


GATED_NDIM = {"weight_ih_l0": 2, "weight_hh_l0": 2, "bias_ih_l0": 1, "bias_hh_l0": 1, "W_qh": 2, "b_q": 1}
GATED_AXES: SizeAxes = (  # the rows of weight_*_l0 (G h) are checked against the cell separately
    ("weight_hh_l0", (None, "hidden")),
    ("weight_ih_l0", (None, "inputs_dim")),
    ("W_qh", ("outputs_dim", "hidden")),
    ("x", ("T", "inputs_dim")),
    ("y", ("T", "outputs_dim")),
    ("b_q", ("outputs_dim",)),
)


def load_gated_weights(source: Source, cell: str) -> dict[str, Array]:
    """Parameters of an LSTM (``cell = "lstm"``) or GRU from ``path``, shapes checked against the cell.

    Missing biases are zeros (PyTorch's ``bias=False``); other missing arrays are drawn at random.
    """
    loaded, path = read_source(source)
    if isinstance(loaded, np.ndarray):
        names = ", ".join(PARAMS)
        raise BadInput(f"{path} holds one array; --cell {cell} needs an .npz of PyTorch names ({names})")
    arrays = unprefix(loaded, path)
    out: dict[str, Array] = {}
    for key, value in arrays.items():
        if key not in PARAMS:
            why = layer_reason(key)
            raise BadInput(f"unknown array {key!r} in {path}{why}; expected some of {', '.join(PARAMS)}")
        out[key] = check_array(np.asarray(value), key, path, GATED_NDIM[key])
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


def given_from_files(
    weights: Source | None, inputs: Path | np.ndarray | None, targets: Path | np.ndarray | None,
    command: str = "analyze", cell: str = "identity",
) -> tuple[Given | GatedGiven, dict[str, tuple[int, str]]]:
    """Load the network's files (or in-memory arrays) for ``cell`` and check their shapes against
    each other: a :class:`~bptt_cli.core.network.Given` for an Elman cell, a
    :class:`~bptt_cli.core.network.GatedGiven` (PyTorch's names) for ``lstm`` and ``gru``.

    Returns the arrays and the sizes they fix (``hidden``, ``inputs_dim``,
    ``outputs_dim``, ``T``), each as ``(size, description of the array that fixes it)``.
    ``command``: the command reading them (``analyze`` or ``spectrum``), for the hint given
    with a gated cell's weights.
    """
    gated = cell in GATED
    arrays = {} if weights is None else load_gated_weights(weights, cell) if gated else load_weights(weights)
    if inputs is not None:
        arrays["x"] = load_series(inputs, "inputs")
    if targets is not None:
        arrays["y"] = load_series(targets, "targets")
    if gated:
        return GatedGiven(**arrays), fixed_sizes(arrays, GATED_AXES)

    W_hh = arrays.get("W_hh")
    if W_hh is not None and W_hh.shape[0] != W_hh.shape[1]:
        rows, cols = W_hh.shape
        gated_shapes = {
            4 * cols: ("an LSTM's (4h x h)", "lstm", "W_hg"),
            3 * cols: ("a GRU's (3h x h)", "gru", "W_hn"),
        }
        hint = ""
        if rows in gated_shapes:
            kind, other, block = gated_shapes[rows]
            hint = f"; that is {kind}: " + (
                f"add --cell {other}" if command != "spectrum" else
                f"bptt spectrum reads a square W_hh (bptt analyze --cell {other} --weights {weights} "
                f"reports the spectrum of its candidate block {block})"
            )
        raise BadInput(f"W_hh must be square, got shape {W_hh.shape}{hint}")
    sizes = fixed_sizes(arrays, ELMAN_AXES)
    return Given(**arrays), sizes
