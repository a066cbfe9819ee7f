"""PyTorch state_dicts as weights files: reading ``.pt`` safely, and a model's module names.

A model's ``state_dict`` names each tensor by its module path: a typical model with an ``lstm``
(or ``rnn``, ``gru``) sub-module and a Linear head ``fc`` gives ``lstm.weight_ih_l0``, ...,
``fc.weight``, ``fc.bias``. :func:`unprefix` turns that into the names the loaders read: the
recurrent layer's own names (``weight_ih_l0``, ...; one module prefix, the same on all of them) and
``W_qh``, ``b_q`` from the head (exactly one other module, ``<name>.weight`` of shape ``(q, h)``
and optionally ``<name>.bias`` of shape ``(q,)``). Anything else is a :class:`BadInput` naming the
key. ``.pt`` files are read with ``torch.load(..., weights_only=True)``: a file can never run code.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bptt_cli.errors import BadInput
from bptt_cli.io.arrays import load_arrays

TORCH_SUFFIXES = (".pt", ".pth")
# the parameter names of PyTorch's nn.RNN / nn.LSTM / nn.GRU: layer k, "_reverse" for the second
# direction, "weight_hr" for proj_size
RECURRENT = re.compile(r"^(weight|bias)_(ih|hh|hr)_l(\d+)(_reverse)?$")
# an Elman module's own names, ours or those of Dive into Deep Learning's from-scratch RNN (whose
# RNNLMScratch keeps them under ``rnn.``, its W_hq and b_q outside)
ELMAN_OWN = frozenset({"W_hh", "W_hx", "W_xh", "b_h"})
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def layer_reason(key: str) -> str:
    """Why a recurrent-looking ``key`` is refused: a projection (``proj_size``)."""
    m = RECURRENT.match(key.rsplit(".", 1)[-1])
    if m and m.group(2) == "hr":
        return " (an LSTM with proj_size: bptt does not support projections)"
    return ""


def depth(arrays: Mapping[str, Any]) -> tuple[int, int]:
    """``(layers, directions)`` of the recurrent names of a state_dict (``(1, 1)`` without any)."""
    found = [RECURRENT.match(k.rsplit(".", 1)[-1]) for k in arrays]
    layers = max((int(m.group(3)) + 1 for m in found if m), default=1)
    directions = 2 if any(m and m.group(4) for m in found) else 1
    return layers, directions


def is_torch_file(path: Path) -> bool:
    """``path`` is a ``.pt``/``.pth`` file, or a zip archive written by ``torch.save`` (whatever
    its suffix: it holds ``<name>/data.pkl``)."""
    if path.suffix.lower() in TORCH_SUFFIXES:
        return True
    try:
        with zipfile.ZipFile(path) as z:
            return any(name.endswith("/data.pkl") for name in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def read_weights_file(path: Path) -> np.ndarray | dict[str, np.ndarray]:
    """The arrays of a weights file: a ``.npy`` array, or the named arrays of a ``.npz`` or of a
    PyTorch state_dict (:func:`read_state_dict`)."""
    return read_state_dict(path) if is_torch_file(path) else load_arrays(path)


def _torch_error(path: Path, e: Exception) -> BadInput:
    """One clean line for torch's refusal (its messages span lines and carry ANSI codes)."""
    text = ANSI.sub("", str(e))
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return BadInput(
            f"{path} holds pickled Python objects ({found.group(1)}), not a state_dict of tensors: "
            "torch.load(weights_only=True) refuses them so that a file cannot run code; "
            "save model.state_dict() instead"
        )
    first = (text.strip().splitlines() or [type(e).__name__])[0].strip()
    first = first.split(". ")[0].rstrip(".")
    return BadInput(f"{path} is not a state_dict that loads with weights_only=True: {first}")


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
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
    import warnings

    try:
        with warnings.catch_warnings():  # torch's deprecation and beta notes are not the user's problem
            warnings.simplefilter("ignore")
            loaded = torch.load(path, weights_only=True, map_location="cpu")
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror or e}") from None
    except Exception as e:  # torch raises many kinds for a bad or unsafe file
        raise _torch_error(path, e) from None
    if not isinstance(loaded, dict):
        raise BadInput(f"{path} holds a {type(loaded).__name__}, not a state_dict (save model.state_dict())")
    return tensors_to_numpy(loaded, path)


def tensors_to_numpy(
    arrays: Mapping[str, Any], path: Path | str = "the given weights"
) -> dict[str, np.ndarray]:
    """Named tensors (a state_dict) or arrays as numpy arrays, float tensors as float64; anything
    else is a :class:`BadInput` naming the key and ``path``."""
    out = {}
    for key, value in arrays.items():
        if isinstance(value, np.ndarray | np.generic | int | float | list | tuple):
            out[str(key)] = np.asarray(value)
            continue
        detach = getattr(value, "detach", None)
        if detach is None:
            kind = type(value).__name__
            article = "an" if kind[0].upper() in "AEIOU" else "a"
            raise BadInput(f"{key!r} in {path} is {article} {kind}, not a tensor")
        layout = str(getattr(value, "layout", "torch.strided"))
        meta, quantized = getattr(value, "is_meta", False), getattr(value, "is_quantized", False)
        if layout != "torch.strided" or quantized or meta:
            kind = "meta" if meta else ("quantized" if quantized else layout.removeprefix("torch."))
            raise BadInput(f"{key!r} in {path} is a {kind} tensor: save dense tensors (.to_dense(), "
                           f".dequantize(), real values)")
        try:
            value = detach().cpu()
            out[str(key)] = (value.double() if value.is_floating_point() else value).numpy()
        except (TypeError, RuntimeError, NotImplementedError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise BadInput(f"{key!r} in {path} cannot be read as an array: {reason}") from None
    return out


def _hidden(arrays: Mapping[str, Any]) -> int | None:
    """h, from the recurrent weights (``weight_hh_l0``'s or ``W_hh``'s columns), if known."""
    for name in ("weight_hh_l0", "W_hh"):
        value = arrays.get(name)
        if value is not None and np.ndim(value) == 2:
            return int(np.shape(value)[1])
    return None


def unprefix(arrays: Mapping[str, np.ndarray], path: Path | str) -> dict[str, np.ndarray]:
    """A model's state_dict with the module prefixes taken off (see the module doc).

    Keys without a dot are kept as they are. Raises :class:`BadInput` for recurrent weights of
    several modules, more than one other module, a head that is not ``weight`` (and ``bias``) of
    the right shapes, or a name given twice (``W_qh`` beside a head).
    """
    dotted = [k for k in arrays if "." in k]
    out = {k: v for k, v in arrays.items() if "." not in k}
    if not dotted:
        return out

    def put(name: str, key: str) -> None:
        if name in out:
            raise BadInput(f"{path} gives {name} twice (as {key!r} and as {name!r}): give one of them")
        out[name] = arrays[key]

    own = [k.rsplit(".", 1)[1] for k in dotted]
    recurrent = [k for k, name in zip(dotted, own, strict=True) if RECURRENT.match(name) or name in ELMAN_OWN]
    prefixes = sorted({k.rsplit(".", 1)[0] for k in recurrent})
    if len(prefixes) > 1:
        listed = ", ".join(repr(p) for p in prefixes)
        raise BadInput(
            f"{path} holds the recurrent weights of several modules ({listed}); "
            "bptt reads one recurrent module"
        )
    for key in recurrent:
        put(key.rsplit(".", 1)[1], key)
    others = [k for k in dotted if k not in recurrent]
    if not others:
        return out
    heads = sorted({k.rsplit(".", 1)[0] for k in others})
    expected = (
        "besides the recurrent layer bptt reads one Linear output layer, <name>.weight (q x h) and "
        "<name>.bias (q), as W_qh and b_q"
    )
    if len(heads) > 1:
        keys = sorted(others)
        listed = ", ".join(repr(k) for k in keys[:4]) + (", ..." if len(keys) > 4 else "")
        raise BadInput(f"unknown arrays {listed} in {path} (modules {', '.join(heads)}): {expected}")
    head = heads[0]
    weight_key, bias_key = f"{head}.weight", f"{head}.bias"
    stray = [k for k in others if k not in (weight_key, bias_key)] or ([] if weight_key in arrays else others)
    if stray:
        key = stray[0]
        raise BadInput(f"unknown array {key!r} in {path}{layer_reason(key)}: {expected}")
    weight = arrays[weight_key]
    h = _hidden(out)
    D = depth(out)[1]
    if h is not None:
        h *= D  # the output layer reads every direction of the top layer
    if weight.ndim != 2 or (h is not None and weight.shape[1] != h):
        need = (f"(q, {h}), {'2h' if D == 2 else 'h'} from the recurrent weights" if h is not None
                else "(q, h)")
        raise BadInput(
            f"{weight_key!r} in {path} has shape {weight.shape}; as the output layer W_qh it must be {need}"
        )
    put("W_qh", weight_key)
    if bias_key in arrays:
        bias = arrays[bias_key]
        if bias.shape != weight.shape[:1]:
            raise BadInput(
                f"{bias_key!r} in {path} has shape {bias.shape}; as b_q it must be ({weight.shape[0]},), "
                f"like {weight_key!r} of shape {weight.shape}"
            )
        put("b_q", bias_key)
    return out


def write_weights_file(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write named arrays as ``.npz`` (numpy) or ``.pt`` (a PyTorch state_dict of float32 tensors,
    needs torch), atomically: a failed write leaves nothing at ``path``. :class:`BadInput` for any
    other suffix, a missing torch or an error of the file system."""
    from bptt_cli.io.output import atomic_open

    suffix = Path(path).suffix.lower()
    if suffix not in (".npz", ".pt"):
        got = suffix or "no suffix"
        raise BadInput(f"--apply {path}: the network is written as .npz or .pt, not {got!r}")
    if suffix == ".pt":
        try:
            import torch
        except ImportError:
            raise BadInput(f"writing {path} needs PyTorch, which is not installed: use .npz") from None
    try:
        with atomic_open(Path(path), binary=True) as f:
            if suffix == ".npz":
                np.savez(f, **arrays)  # type: ignore[arg-type]
            else:
                tensors = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in arrays.items()}
                torch.save(tensors, f)
    except OSError as e:
        raise BadInput(f"cannot write {path}: {e.strerror or e}") from None
