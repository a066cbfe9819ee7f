"""Stacked and bidirectional networks (PyTorch's ``num_layers`` and ``bidirectional=True``): the exact
BPTT through depth and time, layer by layer.

Layer ``l`` (0 nearest the input) runs in each direction ``d`` (0 forward, 1 reverse: the same
recursion over the reversed sequence) on the input ``u^(l)_t``: the data ``x_t`` for ``l = 0``,
the concatenation of layer ``l-1``'s states of every direction (``D h`` wide) above it. The output
layer reads the top layer's concatenated states, ``o_t = W_qh [h^(L-1,0)_t, h^(L-1,1)_t] + b_q``.

Forward: every layer in turn, both directions, each by its family's core (:mod:`bptt_cli.core.elman`,
:mod:`bptt_cli.core.gated`) with the states of the layer below as inputs (scaled for the Elman
cells, whose identity and relu states may leave float64; plain for the gated cells, whose states
are bounded). Backward, from the top: the local terms of the top layer are ``W_qh^T dL/do_t`` (its
direction's columns); each layer's exact backward pass gives, besides its own gradients,
``dL/du^(l)_t = W_ih^(l)T dL/d(W_ih u + b_ih)_t``, whose columns of direction ``d'`` are the local
terms of layer ``l-1``, direction ``d'`` (summed over the directions of layer ``l``). Every
quantity is a mantissa and a natural-log scale, so nothing over- or underflows; every layer's
states are stored (no checkpointing across layers).

Parameters carry PyTorch's names: ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
``bias_hh_l{k}`` and ``_reverse`` for direction 1; an Elman layer's one bias ``b_h`` is
``bias_ih + bias_hh`` (both get its gradient).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bptt_cli.core.cells import CELLS
from bptt_cli.core.elman import Gradients, block_sum, given_local, vector_sum
from bptt_cli.core.head import loss_ln, output_grad_block, output_grads
from bptt_cli.core.network import GATED, GatedNetwork, Network
from bptt_cli.core.scaled import Array, add, finite_or_zero, normalize

DIRECTIONS = ("forward", "reverse")
KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def param_name(kind: str, layer: int, direction: int) -> str:
    """PyTorch's name of a layer's parameter: ``weight_hh_l1_reverse``."""
    return f"{kind}_l{layer}" + ("_reverse" if direction else "")


@dataclass(frozen=True)
class StackNetwork:
    """Parameters and data of ``n`` trials of a stacked network.

    ``cell``; ``layers[l][d]``: the parameters of layer ``l``, direction ``d``, by :data:`KINDS`
    (PyTorch layouts: ``weight_ih (n, G h, w)``, ``weight_hh (n, G h, h)``, ``bias_ih``, ``bias_hh
    (n, G h)``; ``G`` = 1 Elman, 4 LSTM, 3 GRU; ``w = d`` for layer 0, ``D h`` above);
    ``W_qh (n, q, D h)``, ``b_q (n, q)``; ``x (n, T, d)``; ``y (n, T, q)`` or ``(n, T)`` classes;
    ``h0``, ``c0 (n, L D, h)`` or ``None`` (zeros), in PyTorch's order (layer-major, directions
    inner).
    """

    cell: str
    layers: list[list[dict[str, Array]]]
    W_qh: Array
    b_q: Array
    x: Array
    y: Array
    criterion: str = "mse"
    h0: Array | None = None
    c0: Array | None = None
    seeds: list[np.random.SeedSequence] = field(default_factory=list, compare=False)

    @property
    def depth(self) -> tuple[int, int]:
        """``(L, D)``: layers and directions."""
        return len(self.layers), len(self.layers[0])

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(n, T, h, d, q)``."""
        n, T, d = self.x.shape
        return n, T, self.layers[0][0]["weight_hh"].shape[-1], d, self.W_qh.shape[-2]

    def params(self) -> dict[str, Array]:
        """Every parameter by PyTorch's name (the layers in order, then ``W_qh``, ``b_q``)."""
        out = {
            param_name(kind, k, d): p[kind]
            for k, row in enumerate(self.layers) for d, p in enumerate(row) for kind in KINDS
        }
        return {**out, "W_qh": self.W_qh, "b_q": self.b_q}

    def layer_network(self, k: int, d: int, u: Array, u_s: Array | None) -> Network | GatedNetwork:
        """Layer ``k``, direction ``d`` as a one-layer network of its family on inputs ``u`` (in the
        direction's own time: reversed for ``d = 1``; ``u_s``: their log norms, or ``None`` for plain
        floats), without an output layer."""
        p = self.layers[k][d]
        n, T = u.shape[:2]
        h = p["weight_hh"].shape[-1]
        j = k * len(self.layers[0]) + d  # PyTorch's order of h_0: layer-major, directions inner
        h0 = None if self.h0 is None else self.h0[:, j]
        none_q, none_b, none_y = np.zeros((n, 0, h)), np.zeros((n, 0)), np.zeros((n, T, 0))
        if self.cell in GATED:
            c0 = None if self.c0 is None else self.c0[:, j]
            return GatedNetwork(self.cell, p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"],
                                none_q, none_b, u, none_y, self.seeds, h0=h0, c0=c0)
        return Network(p["weight_hh"], p["weight_ih"], none_q, p["bias_ih"] + p["bias_hh"], none_b, u, none_y,
                       self.seeds, h0=h0, x_s=u_s)


@dataclass
class LayerRun:
    """One layer, one direction of a stack after its exact BPTT: ``net`` (its inputs filled in, in
    its own time), ``fwd``, ``grads`` and the ``local`` terms it was run with (its own time, so that
    the theory can run the same backward passes again). ``grad_h_s (n, T)``: ``ln ||dL/dh_t||`` in
    real time (index 0 is t = 1); ``params``: its gradients by PyTorch's names."""

    layer: int
    direction: int
    net: Any
    fwd: Any
    grads: Gradients
    local: Any
    grad_h_s: Array
    params: dict[str, tuple[Array, Array]]


@dataclass(frozen=True)
class StackGradients:
    """The exact BPTT of a stack: every layer-direction (``runs[l][d]``), the output layer's
    gradients (``head``: ``W_qh``, ``b_q``), the loss ``loss_ln (n,)``."""

    runs: list[list[LayerRun]]
    head: dict[str, tuple[Array, Array]]
    loss_ln: Array

    def params(self) -> dict[str, tuple[Array, Array]]:
        """Every parameter gradient by PyTorch's name, the output layer's last."""
        out: dict[str, tuple[Array, Array]] = {}
        for row in self.runs:
            for run in row:
                out.update(run.params)
        return {**out, **self.head}


def _flip(a: Array | None) -> Array | None:
    """The time axis (axis 1) reversed."""
    return None if a is None else a[:, ::-1]


def _concat(parts: list[tuple[Array, Array]]) -> tuple[Array, Array]:
    """Scaled rows ``[a, b, ...]`` joined along the last axis: unit rows and log norms."""
    if len(parts) == 1:
        return parts[0]
    top = finite_or_zero(np.max(np.stack([s for _, s in parts]), axis=0))
    with np.errstate(under="ignore"):
        joined = np.concatenate([m * np.exp(s - top)[..., None] for m, s in parts], axis=-1)
    return normalize(joined, top)


def _states(run_fwd: Any, gated: bool) -> tuple[Array, Array]:
    """A layer's states h_1..h_T in its own time as scaled rows."""
    if gated:
        return normalize(run_fwd.h[:, 1:])
    return run_fwd.h_m[:, 1:], run_fwd.h_s[:, 1:]


def stack_bptt(net: StackNetwork, loss: str) -> StackGradients:
    """The exact BPTT of every layer and direction of ``net`` (see the module doc)."""
    from bptt_cli.core import elman, gated

    L, D = net.depth
    _, T, h, _, _ = net.shape
    is_gated = net.cell in GATED
    cell = None if is_gated else CELLS[net.cell]
    # forward, layer by layer
    u: Array = net.x
    u_s: Array | None = None
    runs: list[list[dict[str, Any]]] = []
    for k in range(L):
        row = []
        outs = []
        for d in range(D):
            layer = net.layer_network(k, d, u[:, ::-1] if d else u, _flip(u_s) if d else u_s)
            fwd = gated.KERNELS[net.cell].forward(layer) if is_gated else elman.forward(layer, cell)  # type: ignore[arg-type]
            m, s = _states(fwd, is_gated)
            outs.append((m[:, ::-1], s[:, ::-1]) if d else (m, s))
            row.append({"net": layer, "fwd": fwd})
        runs.append(row)
        H_m, H_s = _concat(outs)
        if is_gated:  # bounded states: the next layer reads plain floats
            u, u_s = H_m * np.exp(H_s)[..., None], None
        else:
            u, u_s = H_m, H_s
    # the output layer
    e_m, e_s, l_ln = output_grads(net.W_qh, net.b_q, net.y, net.criterion, H_m, H_s, 0)
    do_m, do_s = output_grad_block(e_m, e_s, loss, T, T)
    head = {"W_qh": block_sum(do_m, H_m, do_s + H_s), "b_q": vector_sum(do_m, do_s)}
    locals_: list[tuple[Array, Array]] = [
        normalize(np.matmul(do_m, net.W_qh[:, :, d * h : (d + 1) * h]), do_s) for d in range(D)
    ]
    every = loss == "mean"
    # backward, from the top
    done: list[list[LayerRun]] = [[] for _ in range(L)]
    for k in range(L - 1, -1, -1):
        below: list[tuple[Array, Array] | None] = [None] * D
        for d in range(D):
            r = runs[k][d]
            lm, ls = locals_[d]
            if d:
                lm, ls = lm[:, ::-1], ls[:, ::-1]
            # local terms before the direction's last step: the mean loss, a layer below, the reverse
            every_step = every or k < L - 1 or d == 1
            local = given_local(np.ascontiguousarray(lm), np.ascontiguousarray(ls), every_step)
            if is_gated:
                grads: Gradients = gated.backward(r["net"], r["fwd"], local, input_grads=k > 0)
            else:
                grads = elman.backward(r["net"], r["fwd"], cell, local, input_grads=k > 0)  # type: ignore[arg-type]
            done[k].append(LayerRun(k, d, r["net"], r["fwd"], grads, local,
                                    grads.dL_dh_s[:, ::-1] if d else grads.dL_dh_s,
                                    _named(grads.params, k, d, is_gated)))
            if grads.dL_dx is not None:  # the local terms of layer l-1, direction by direction
                xm, xs = grads.dL_dx
                if d:
                    xm, xs = xm[:, ::-1], xs[:, ::-1]
                for e in range(D):
                    part = normalize(xm[..., e * h : (e + 1) * h], xs)
                    prev = below[e]
                    below[e] = part if prev is None else add(prev[0], prev[1], part[0], part[1])
        if k:
            locals_ = [b for b in below if b is not None]
    return StackGradients(done, head, loss_ln(e_s, l_ln, loss))


def _named(
    params: dict[str, tuple[Array, Array]], k: int, d: int, is_gated: bool
) -> dict[str, tuple[Array, Array]]:
    """Layer ``k``'s gradients under PyTorch's names (an Elman layer's ``b_h`` as both biases)."""
    if is_gated:
        pairs = {k: params[f"{k}_l0"] for k in KINDS}
    else:
        pairs = {"weight_ih": params["W_hx"], "weight_hh": params["W_hh"],
                 "bias_ih": params["b_h"], "bias_hh": params["b_h"]}
    return {param_name(kind, k, d): v for kind, v in pairs.items()}


# -- drawing a stack ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StackGiven:
    """Arrays of a stack supplied by the user: ``params`` by PyTorch's names (any of them; the others
    are drawn, a missing bias is zeros as for PyTorch's ``bias=False``), and ``W_qh``, ``b_q``; the
    data ``x``, ``y``; the initial states ``h0``, ``c0`` (``(h,)`` or ``(L D, h)``)."""

    params: dict[str, Array] = field(default_factory=dict)
    x: Array | None = None
    y: Array | None = None
    h0: Array | None = None
    c0: Array | None = None


ELMAN_STREAM, GATED_STREAM = 20, 30  # child streams of the layers beyond layer 0, forward


def _rng(seq: np.random.SeedSequence, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, *key)))


def _draw_layer(
    spec: Any, seq: np.random.SeedSequence, k: int, d: int, given: dict[str, Array]
) -> dict[str, Array]:
    """Layer ``k``, direction ``d`` of one trial: the given arrays, the rest drawn. Layer 0, forward
    uses the streams of a one-layer network of the same seed (the same parameters); every other
    layer-direction its own stream ``(20 | 30, k, d, j)``."""
    from bptt_cli.core.ensembles import random_W_hh

    h, first = spec.hidden, (k, d) == (0, 0)
    w = spec.inputs_dim if k == 0 else spec.directions * h
    gated = spec.cell in GATED
    G = {"lstm": 4, "gru": 3}.get(spec.cell, 1)

    def stream(j: int) -> np.random.Generator:
        if first:
            return _rng(seq, (7 + j) if gated else (0, 1, 3, 3)[j])
        return _rng(seq, GATED_STREAM if gated else ELMAN_STREAM, k, d, j)

    def take(kind: str, j: int, draw: Any) -> Array:
        value = given.get(param_name(kind, k, d))
        return np.asarray(value, dtype=np.float64) if value is not None else draw(stream(j))

    def zeros(_: np.random.Generator) -> Array:
        return np.zeros(G * h)

    if gated:
        bound = 1.0 / np.sqrt(h)
        out = {
            "weight_ih": take("weight_ih", 0, lambda r: r.uniform(-bound, bound, (G * h, w))),
            "weight_hh": take("weight_hh", 1, lambda r: np.concatenate(
                [random_W_hh(r, h, spec.ensemble, spec.gain) for _ in range(G)])),
        }
        from_file = bool(given)
        out["bias_ih"] = take("bias_ih", 2, zeros if from_file else lambda r: r.uniform(-bound, bound, G * h))
        out["bias_hh"] = take("bias_hh", 3, zeros if from_file else lambda r: r.uniform(-bound, bound, G * h))
        return out
    from_file = bool(given)
    return {
        "weight_hh": take("weight_hh", 0, lambda r: random_W_hh(r, h, spec.ensemble, spec.gain)),
        "weight_ih": take("weight_ih", 1, lambda r: r.standard_normal((h, w)) / np.sqrt(max(w, 1))),
        "bias_ih": take("bias_ih", 2, zeros if from_file else lambda r: r.standard_normal(h) * spec.bias),
        "bias_hh": take("bias_hh", 3, zeros),
    }


def build_stack(
    spec: Any, given: StackGiven | None = None, seeds: list[np.random.SeedSequence] | None = None
) -> StackNetwork:
    """Draw (or take) every trial's stacked network (``spec.layers``, ``spec.directions``).

    ``W_hh`` of every layer-direction (each ``h x h`` gate block of a gated cell's) is rescaled to
    ``spec.radius`` or ``spec.norm`` when one is set; ``spec.forget_bias`` is added to every LSTM
    layer's forget rows of ``bias_ih``. The output layer reads ``D h`` states: ``W_qh (q, D h)``.
    """
    from bptt_cli.core.ensembles import rescale
    from bptt_cli.core.network import C0_STREAM, child_rng, draw_targets, initial_states, trial_seeds

    given = given or StackGiven()
    seeds = seeds if seeds is not None else trial_seeds(spec.seed, spec.trials)
    L, D, h, q, T, d = spec.layers, spec.directions, spec.hidden, spec.outputs_dim, spec.T, spec.inputs_dim
    G = {"lstm": 4, "gru": 3}.get(spec.cell, 1)
    layers = []
    for k in range(L):
        row = []
        for e in range(D):
            trials = [_draw_layer(spec, seq, k, e, given.params) for seq in seeds]
            p = {kind: np.stack([tr[kind] for tr in trials]) for kind in KINDS}
            n = len(seeds)
            blocks = p["weight_hh"].reshape(n, G, h, h)
            p["weight_hh"] = rescale(blocks, spec.radius, spec.norm).reshape(n, G * h, h)
            if spec.cell == "lstm" and getattr(spec, "forget_bias", 0.0):
                p["bias_ih"] = p["bias_ih"].copy()
                p["bias_ih"][:, h : 2 * h] += spec.forget_bias
            row.append(p)
        layers.append(row)

    def data(name: str, j: int, draw: Any) -> Array:
        value = given.params.get(name) if name in ("W_qh", "b_q") else getattr(given, name)
        if value is not None:
            out = value if name == "y" else np.asarray(value, dtype=np.float64)
            return np.broadcast_to(out, (len(seeds), *np.shape(out))).copy()
        return np.stack([draw(child_rng(seq, j)) for seq in seeds])

    W_qh = data("W_qh", 2, lambda r: r.standard_normal((q, D * h)) / np.sqrt(D * h))
    b_q = data("b_q", 4, lambda r: r.standard_normal(q) * spec.bias)
    x = data("x", 5, lambda r: r.standard_normal((T, d)))
    y = data("y", 6, lambda r: draw_targets(r, spec.criterion, T, q))
    h0 = initial_states(spec, given.h0, seeds, L * D)
    c0 = initial_states(spec, given.c0, seeds, L * D, C0_STREAM) if spec.cell == "lstm" else None
    return StackNetwork(spec.cell, layers, W_qh, b_q, x, y, spec.criterion, h0, c0, seeds)
