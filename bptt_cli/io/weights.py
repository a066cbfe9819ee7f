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
from bptt_cli.core.stack import DIRECTIONS, KINDS, StackGiven, param_name
from bptt_cli.errors import BadInput
from bptt_cli.io.arrays import (
    NDIM,
    SizeAxes,
    check_array,
    fixed_sizes,
    load_classes,
    load_initial,
    load_series,
)
from bptt_cli.io.statedict import depth, layer_reason, read_weights_file, tensors_to_numpy, unprefix

# PyTorch nn.RNN state_dict names; the two biases are summed into b_h.
TORCH_NAMES = {"weight_hh_l0": "W_hh", "weight_ih_l0": "W_hx", "bias_hh_l0": "b_h", "bias_ih_l0": "b_h"}
NAMES = ("W_hh", "W_hx", "W_qh", "b_h", "b_q")
# Dive into Deep Learning's from-scratch RNN, row-vector layout: H_t = phi(X_t W_xh + H_{t-1} W_hh + b_h),
# O_t = H_t W_hq + b_q; its W_xh, W_hh, W_hq are the transposes of our W_hx, W_hh, W_qh
D2L_NAMES = {"W_xh": "W_hx", "W_hq": "W_qh"}
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
    """The Elman parameters of ``source`` (see :func:`_elman_arrays`)."""
    return _elman_arrays(*read_source(source))


def _elman_arrays(loaded: Any, path: str) -> dict[str, Array]:
    """The Elman parameters of ``source``: a ``.npy`` with ``W_hh`` alone, or a ``.npz`` (or PyTorch
    ``.pt``) of named arrays (or those arrays in memory, or a module's state_dict), read as
    ``loaded``; ``path`` names it in messages.

    Accepted names: ``W_hh``, ``W_hx``, ``W_qh``, ``b_h``, ``b_q`` or PyTorch nn.RNN's
    ``weight_hh_l0``, ``weight_ih_l0``, ``bias_hh_l0``, ``bias_ih_l0`` (the two biases, of one
    shape, summed into ``b_h``), also under a module prefix with a Linear head
    (:func:`bptt_cli.io.statedict.unprefix`). A name given both ways is bad input, whatever the order
    of the arrays in the file; the names of *Dive into Deep Learning*'s from-scratch RNN are read
    in that book's layout (:func:`d2l_layout`).
    """
    if isinstance(loaded, np.ndarray):
        return {"W_hh": check_array(loaded, "W_hh", path)}
    arrays = d2l_layout(unprefix(loaded, path), path)
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


def d2l_layout(arrays: dict[str, np.ndarray], path: Path | str) -> dict[str, np.ndarray]:
    """The arrays of *Dive into Deep Learning*'s from-scratch RNN (``W_xh``, ``W_hh``, ``b_h``,
    ``W_hq``, ``b_q``, row-vector layout), told by ``W_xh`` or ``W_hq``, in our layout (transposed);
    other arrays as they are. A file mixing the two layouts is bad input naming the keys."""
    book = [k for k in D2L_NAMES if k in arrays]
    if not book:
        return arrays
    ours = [k for k in ("W_hx", "W_qh", *TORCH_NAMES) if k in arrays]
    if ours:
        raise BadInput(
            f"{path} mixes Dive into Deep Learning's layout ({', '.join(book)}) with ours or PyTorch's "
            f"({', '.join(ours)}): give one of them"
        )
    out = {}
    for key, value in arrays.items():
        name = D2L_NAMES.get(key, key)
        value = np.asarray(value)
        out[name] = value.T if key in (*D2L_NAMES, "W_hh") and value.ndim == 2 else value
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


STACK_AXES: SizeAxes = (
    ("x", ("T", "inputs_dim")),
    ("y", ("T", "outputs_dim")),
    ("W_qh", ("outputs_dim", None)),
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
    """Parameters of an LSTM (``cell = "lstm"``) or GRU from ``source`` (see :func:`_gated_arrays`)."""
    return _gated_arrays(*read_source(source), cell)


def _gated_arrays(loaded: Any, path: str, cell: str) -> dict[str, Array]:
    """Parameters of an LSTM (``cell = "lstm"``) or GRU from the arrays ``loaded`` of ``path``,
    shapes checked against the cell.

    Missing biases are zeros (PyTorch's ``bias=False``); other missing arrays are drawn at random.
    """
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


def load_stack_weights(loaded: Any, path: str, cell: str) -> tuple[dict[str, Array], int, int]:
    """The parameters of a stacked (or bidirectional) network from a state_dict's arrays, by
    PyTorch's names, and its ``(layers, directions)``: every layer-direction's ``weight_hh`` must be
    there, with one hidden size; ``weight_ih`` of layer 0 reads the inputs, above it the ``D h``
    states below; a missing bias is zeros (``bias=False``), a missing ``weight_ih`` is drawn."""
    if isinstance(loaded, np.ndarray):
        raise BadInput(f"{path} holds one array; a stacked network needs a state_dict of PyTorch names")
    arrays = unprefix(loaded, path)
    L, D = depth(arrays)
    G = len(GATES[cell]) if cell in GATED else 1
    names = {param_name(kind, k, d) for kind in KINDS for k in range(L) for d in range(D)}
    for key in arrays:
        if key not in names and key not in ("W_qh", "b_q"):
            raise BadInput(f"unknown array {key!r} in {path}{layer_reason(key)}; expected PyTorch's names "
                           f"of {L} layer(s){' in both directions' if D == 2 else ''}, W_qh, b_q")
    out: dict[str, Array] = {}
    for key, value in arrays.items():
        out[key] = check_array(np.asarray(value), key, path, 2 if key.startswith(("weight", "W_")) else 1)
    first = param_name("weight_hh", 0, 0)
    if first not in out:
        raise BadInput(f"{path} has no {first} (the recurrent weights of layer 0)")
    h = out[first].shape[1]
    for k in range(L):
        for d in range(D):
            key = param_name("weight_hh", k, d)
            if key not in out:
                where = f"layer {k}" + (f", {DIRECTIONS[d]} direction" if D == 2 else "")
                raise BadInput(f"{path} has no {key}: {where} of its {L} layers is missing")
            if out[key].shape != (G * h, h):
                rows = out[key].shape[0]
                if G == 1 and out[key].shape[1] == h and rows in (3 * h, 4 * h):
                    kind = "lstm" if rows == 4 * h else "gru"
                    raise BadInput(
                        f"{key} in {path} has shape {out[key].shape}, not square: an {kind.upper()}'s "
                        f"({rows // h}h x h); bptt analyze --cell {kind} reads it (bptt spectrum reads "
                        "the square W_hh of Elman layers)"
                    )
                raise BadInput(f"{key} in {path} has shape {out[key].shape}; every layer of --cell {cell} "
                               f"must be ({G * h}, {h}) like {first}")
            ih = param_name("weight_ih", k, d)
            width = D * h if k else None
            if ih in out and (out[ih].shape[0] != G * h or (width is not None and out[ih].shape[1] != width)):
                need = f"({G * h}, {width}): it reads the {D} direction(s) of layer {k - 1}" if width else (
                    f"{G * h} rows")
                raise BadInput(f"{ih} in {path} has shape {out[ih].shape}; it must be {need}")
            for kind in ("bias_ih", "bias_hh"):
                b = param_name(kind, k, d)
                if b in out and out[b].shape != (G * h,):
                    raise BadInput(f"{b} in {path} has shape {out[b].shape}; it must be ({G * h},)")
                out.setdefault(b, np.zeros(G * h))
    if "W_qh" in out and out["W_qh"].shape[1] != D * h:
        raise BadInput(f"W_qh in {path} has shape {out['W_qh'].shape}; the output layer reads {D * h} states")
    return out, L, D


def given_from_files(
    weights: Source | None, inputs: Path | np.ndarray | None, targets: Path | np.ndarray | None,
    command: str = "analyze", cell: str = "identity", criterion: str = "mse",
    layers: int | None = None, bidirectional: bool | None = None, h0: Path | np.ndarray | None = None,
) -> tuple[Given | GatedGiven | StackGiven, dict[str, tuple[Any, str]]]:
    """Load the network's files (or in-memory arrays) for ``cell`` and check their shapes against
    each other: a :class:`~bptt_cli.core.network.Given` for a one-layer Elman cell, a
    :class:`~bptt_cli.core.network.GatedGiven` (PyTorch's names) for ``lstm`` and ``gru``, a
    :class:`~bptt_cli.core.stack.StackGiven` for a stacked or bidirectional network (the file's
    layers, or ``layers`` and ``bidirectional`` asked for).

    Returns the arrays and the sizes they fix (``hidden``, ``inputs_dim``, ``outputs_dim``, ``T``,
    ``layers``, ``bidirectional``), each as ``(size, description of the array that fixes it)``.
    ``command``: the command reading them (``analyze`` or ``spectrum``), for the hint given with a
    gated cell's weights. ``criterion``: ``cross-entropy`` reads targets as classes ``(T,)``.
    ``h0``: initial states (``(h,)`` or one row per layer-direction; a ``.npz`` with ``h0``, ``c0``),
    shaped by the caller once the sizes are known.
    """
    gated = cell in GATED
    loaded, label = read_source(weights) if weights is not None else (None, "")
    file_layers, file_dirs = depth(loaded) if isinstance(loaded, dict) else (1, 1)
    fixed: dict[str, tuple[Any, str]] = {}
    if weights is not None:
        what = f"{label} ({file_layers} layer{'s' if file_layers > 1 else ''}"
        fixed["layers"] = (file_layers, what + ")")
        both = ", both directions)" if file_dirs == 2 else ", one direction)"
        fixed["bidirectional"] = (file_dirs == 2, what + both)
    L = layers if layers is not None else file_layers
    D = (2 if bidirectional else 1) if bidirectional is not None else file_dirs
    if weights is not None and (file_layers, file_dirs) != (L, D):  # before reading it the wrong way
        flag, name = ((f"--layers {L}", "layers") if file_layers != L
                      else ("--bidirectional" if D == 2 else "--no-bidirectional", "bidirectional"))
        raise BadInput(f"{flag} conflicts with {fixed[name][1]}")
    series: dict[str, Any] = {}
    if inputs is not None:
        series["x"] = load_series(inputs, "inputs")
    if targets is not None:
        classes = criterion == "cross-entropy"
        series["y"] = load_classes(targets) if classes else load_series(targets, "targets")
    h0_arrays = load_initial(h0) if h0 is not None else (None, None)
    if L > 1 or D == 2:
        params: dict[str, Array] = {}
        if weights is not None:
            params, _, _ = load_stack_weights(loaded, label, cell)
            h = params[param_name("weight_hh", 0, 0)].shape[1]
            fixed["hidden"] = (h, f"weight_hh_l0 of shape {params[param_name('weight_hh', 0, 0)].shape}")
            ih = params.get(param_name("weight_ih", 0, 0))
            if ih is not None:
                fixed["inputs_dim"] = (ih.shape[1], f"weight_ih_l0 of shape {ih.shape}")
            if "W_qh" in params:
                fixed["outputs_dim"] = (params["W_qh"].shape[0], f"W_qh of shape {params['W_qh'].shape}")
        sizes = fixed_sizes({**series, **{k: v for k, v in params.items() if k in ("W_qh", "b_q")}},
                            STACK_AXES if criterion == "mse" else (*STACK_AXES[:1], ("y", ("T",))))
        fixed = {**fixed, **{k: v for k, v in sizes.items() if k not in fixed}}
        return StackGiven(params, series.get("x"), series.get("y"), *h0_arrays), fixed
    if weights is None:
        arrays: dict[str, Array] = {}
    elif gated:
        arrays = _gated_arrays(loaded, label, cell)
    else:
        arrays = _elman_arrays(loaded, label)
    arrays.update(series)
    axes = GATED_AXES if gated else ELMAN_AXES
    if criterion == "cross-entropy":  # classes (T,) fix only T
        axes = tuple((k, ("T",) if k == "y" else names) for k, names in axes)
    if gated:
        return GatedGiven(**arrays, h0=h0_arrays[0], c0=h0_arrays[1]), {**fixed, **fixed_sizes(arrays, axes)}
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
    if h0_arrays[1] is not None:
        raise BadInput(f"--h0 {h0}: c0 is for an LSTM, not --cell {cell}")
    return Given(**arrays, h0=h0_arrays[0]), {**fixed, **fixed_sizes(arrays, axes)}
