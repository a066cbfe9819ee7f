"""A user's own LSTM/GRU from a ``.npz`` (or, with PyTorch installed, ``.pt``) state_dict.

Names and layouts are PyTorch's: ``weight_ih_l0 (G h, d)``, ``weight_hh_l0 (G h, h)``,
``bias_ih_l0``, ``bias_hh_l0 (G h)`` with ``G = 4`` (LSTM) or 3 (GRU), and optionally the output
layer ``W_qh (q, h)``, ``b_q (q)``; so ``numpy.savez(path, **{k: v.numpy() for k, v in
rnn.state_dict().items()})`` and ``torch.save(rnn.state_dict(), path)`` both load directly. A file
without biases (``bias=False``) means zero biases. ``.npz`` files are read with
``allow_pickle=False`` and ``.pt`` files with ``torch.load(..., weights_only=True)``: a weights
file can never run code. Every problem is one :class:`~bptt_cli.errors.BadInput` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import BadInput
from .files import SizeAxes, check_array, fixed_sizes, load_arrays, load_series
from .gated_network import GATED, GATES, PARAMS, GatedGiven
from .scaled import Array

TORCH_SUFFIXES = (".pt", ".pth")
NDIM = {"weight_ih_l0": 2, "weight_hh_l0": 2, "bias_ih_l0": 1, "bias_hh_l0": 1, "W_qh": 2, "b_q": 1}
GATED_AXES: SizeAxes = (  # the rows of weight_*_l0 (G h) are checked against the cell separately
    ("weight_hh_l0", (None, "hidden")),
    ("weight_ih_l0", (None, "inputs_dim")),
    ("W_qh", ("outputs_dim", "hidden")),
    ("x", ("T", "inputs_dim")),
    ("y", ("T", "outputs_dim")),
    ("b_q", ("outputs_dim",)),
)


def read_state_dict(path: Path) -> dict[str, Any]:
    """The tensors of a PyTorch state_dict file as numpy arrays (float tensors as float64).

    Needs the optional ``torch`` extra; loads with ``weights_only=True`` on the CPU.
    """
    try:
        import torch
    except ImportError:
        raise BadInput(
            f"reading {path} needs PyTorch, which is not installed: pip install 'bptt-cli[torch]' "
            "(or save the state_dict with numpy.savez as .npz)"
        ) from None
    try:
        loaded = torch.load(path, weights_only=True, map_location="cpu")
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror or e}") from None
    except Exception as e:  # torch raises many kinds for a bad or unsafe file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise BadInput(f"{path} is not a state_dict that loads with weights_only=True: {first}") from None
    if not isinstance(loaded, dict):
        raise BadInput(f"{path} holds a {type(loaded).__name__}, not a state_dict (save rnn.state_dict())")
    out = {}
    for key, value in loaded.items():
        if not isinstance(value, torch.Tensor):
            raise BadInput(f"{key!r} in {path} is a {type(value).__name__}, not a tensor")
        value = value.detach().cpu()
        out[str(key)] = (value.double() if value.is_floating_point() else value).numpy()
    return out


def load_gated_weights(path: Path, cell: str) -> dict[str, Array]:
    """Parameters of an LSTM (``cell = "lstm"``) or GRU from ``path``, shapes checked against the cell.

    Missing biases are zeros (PyTorch's ``bias=False``); other missing arrays are drawn at random.
    """
    if path.suffix.lower() in TORCH_SUFFIXES:
        arrays = read_state_dict(path)
    else:
        loaded = load_arrays(path)
        if isinstance(loaded, np.ndarray):
            names = ", ".join(PARAMS)
            raise BadInput(f"{path} holds one array; --cell {cell} needs an .npz of PyTorch names ({names})")
        arrays = loaded
    out: dict[str, Array] = {}
    for key, value in arrays.items():
        if key not in PARAMS:
            why = " (bptt reads single-layer, one-direction networks, no proj_size)" if "_l" in key else ""
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
