"""A user's own network and data from ``.npz``/``.npy`` files, checked before use.

Files are data, never code: they are read with ``allow_pickle=False``. Every problem
(unreadable file, pickled objects, NaN, a wrong or mismatched shape) is a
:class:`~bptt_cli.errors.BadInput` whose message names the file and the shapes.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from bptt_cli.core.network import Given
from bptt_cli.core.scaled import Array
from bptt_cli.errors import BadInput

# PyTorch nn.RNN state_dict names; the two biases are summed into b_h.
TORCH_NAMES = {"weight_hh_l0": "W_hh", "weight_ih_l0": "W_hx", "bias_hh_l0": "b_h", "bias_ih_l0": "b_h"}
NAMES = ("W_hh", "W_hx", "W_qh", "b_h", "b_q")
LABELS = {"x": "inputs", "y": "targets"}
NDIM = {"W_hh": 2, "W_hx": 2, "W_qh": 2, "b_h": 1, "b_q": 1, "inputs": 2, "targets": 2}


def check_array(value: np.ndarray, name: str, path: Path, ndim: int | None = None) -> Array:
    """``value`` as float64, checked: real numbers, ``ndim`` dimensions (default ``NDIM[name]``),
    no NaN or inf; every problem is a :class:`BadInput` naming ``name`` and ``path``.
    """
    ndim = NDIM[name] if ndim is None else ndim
    if value.dtype.kind not in "biuf":
        raise BadInput(f"{name} in {path} has dtype {value.dtype}; expected real numbers")
    if value.ndim != ndim:
        raise BadInput(f"{name} in {path} has shape {value.shape}; expected a {ndim}-D array")
    with np.errstate(over="ignore", invalid="ignore"):  # a wider float beyond float64: said below
        as64 = value.astype(np.float64)
    if not np.all(np.isfinite(as64)):
        if np.any(np.isnan(value)):
            raise BadInput(f"{name} in {path} contains NaN")
        if not np.all(np.isfinite(value)):
            raise BadInput(f"{name} in {path} contains inf")
        largest = np.format_float_scientific(np.max(np.abs(value)), precision=3, trim="-")
        raise BadInput(
            f"{name} in {path} ({value.dtype}) holds values beyond float64's range (up to {largest} in "
            f"magnitude, float64 stops at 1.8e308); bptt computes in float64"
        )
    return as64


NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # .npz files are zip archives


def load_arrays(path: Path) -> np.ndarray | dict[str, np.ndarray]:
    """Read a .npy or .npz file without pickle; every failure is a BadInput naming the file.

    The file is opened here (not by ``np.load``) so that it is closed even when numpy fails
    half-way, and anything without the .npy/.npz signature is refused before numpy would try
    to read it as a pickle.
    """
    try:
        with open(path, "rb") as f:
            magic = f.read(len(NPY_MAGIC))
            if not (magic.startswith(NPY_MAGIC) or magic.startswith(ZIP_MAGIC)):
                why = "it is empty" if not magic else "no .npy/.npz signature; pickles are never loaded"
                raise BadInput(f"{path} is not a valid .npy/.npz file ({why})")
            f.seek(0)
            loaded = np.load(f, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                return loaded
            with loaded:
                return {k: loaded[k] for k in loaded.files}
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        if isinstance(e, BadInput):
            raise
        if "pickle" in str(e):
            raise BadInput(
                f"{path} holds Python objects that need pickle; bptt only loads plain numeric arrays"
            ) from None
        raise BadInput(f"{path} is not a valid .npy/.npz file: {e}") from None
    except (zipfile.BadZipFile, EOFError) as e:
        raise BadInput(f"{path} is not a valid .npy/.npz file: {e}") from None


def load_weights(path: Path) -> dict[str, Array]:
    """Parameters from ``path``: a ``.npy`` with ``W_hh`` alone, or a ``.npz`` (or PyTorch ``.pt``)
    of named arrays.

    Accepted names: ``W_hh``, ``W_hx``, ``W_qh``, ``b_h``, ``b_q`` or PyTorch nn.RNN's
    ``weight_hh_l0``, ``weight_ih_l0``, ``bias_hh_l0``, ``bias_ih_l0`` (the two biases, of one
    shape, summed into ``b_h``), also under a module prefix with a Linear head
    (:func:`bptt_cli.io.statedict.unprefix`). A name given both ways is bad input, whatever the order
    of the arrays in the file.
    """
    from bptt_cli.io.statedict import layer_reason, read_weights_file, unprefix

    loaded = read_weights_file(path)
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


def load_series(path: Path, name: str) -> Array:
    """A ``(T, k)`` array (``inputs`` or ``targets``) from a ``.npy`` file."""
    loaded = load_arrays(path)
    if not isinstance(loaded, np.ndarray):
        raise BadInput(f"{name} file {path} must be a .npy array of shape (T, k), not an archive")
    return check_array(loaded, name, path)


SizeAxes = tuple[tuple[str, tuple[str | None, ...]], ...]
"""For each array, the size each axis fixes (``None``: an axis no other array shares)."""

ELMAN_AXES: SizeAxes = (
    ("W_hh", ("hidden", None)),
    ("W_hx", ("hidden", "inputs_dim")),
    ("W_qh", ("outputs_dim", "hidden")),
    ("x", ("T", "inputs_dim")),
    ("y", ("T", "outputs_dim")),
    ("b_h", ("hidden",)),
    ("b_q", ("outputs_dim",)),
)


def fixed_sizes(arrays: Mapping[str, Array], axes: SizeAxes) -> dict[str, tuple[int, str]]:
    """The sizes (``hidden``, ``inputs_dim``, ``outputs_dim``, ``T``) that ``arrays`` fix.

    ``axes`` names the size of each axis of each array, in the order they are checked. Returns
    each size as ``(size, description of the first array that fixes it)``; an array that
    disagrees with an earlier one, or a series without time steps, is a :class:`BadInput`.
    """
    sizes: dict[str, tuple[int, str]] = {}
    for key, names in axes:
        if key not in arrays:
            continue
        what = f"{LABELS.get(key, key)} of shape {arrays[key].shape}"
        for size, value in zip(names, arrays[key].shape, strict=False):
            if size is None:
                continue
            if size in sizes and sizes[size][0] != value:
                raise BadInput(
                    f"{what} does not match {sizes[size][1]}: {size} {value} against {sizes[size][0]}"
                )
            sizes.setdefault(size, (value, what))
    if "T" in sizes and sizes["T"][0] < 1:
        raise BadInput(f"{sizes['T'][1]} has no time steps")
    return sizes


def given_from_files(
    weights: Path | None, inputs: Path | None, targets: Path | None, command: str = "analyze"
) -> tuple[Given, dict[str, tuple[int, str]]]:
    """Load the files and check their shapes against each other.

    Returns the arrays and the sizes they fix (``hidden``, ``inputs_dim``,
    ``outputs_dim``, ``T``), each as ``(size, description of the array that fixes it)``.
    ``command``: the command reading them (``analyze`` or ``spectrum``), for the hint given
    with a gated cell's weights.
    """
    arrays = load_weights(weights) if weights else {}
    if inputs:
        arrays["x"] = load_series(inputs, "inputs")
    if targets:
        arrays["y"] = load_series(targets, "targets")

    W_hh = arrays.get("W_hh")
    if W_hh is not None and W_hh.shape[0] != W_hh.shape[1]:
        rows, cols = W_hh.shape
        gated = {
            4 * cols: ("an LSTM's (4h x h)", "lstm", "W_hg"),
            3 * cols: ("a GRU's (3h x h)", "gru", "W_hn"),
        }
        hint = ""
        if rows in gated:
            kind, cell, block = gated[rows]
            hint = f"; that is {kind}: " + (
                f"add --cell {cell}" if command != "spectrum" else
                f"bptt spectrum reads a square W_hh (bptt analyze --cell {cell} --weights {weights} "
                f"reports the spectrum of its candidate block {block})"
            )
        raise BadInput(f"W_hh must be square, got shape {W_hh.shape}{hint}")
    sizes = fixed_sizes(arrays, ELMAN_AXES)
    return Given(**arrays), sizes
