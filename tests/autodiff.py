"""A tiny reverse-mode automatic differentiation on numpy arrays, for the test oracles.

Nothing here imports from ``bptt_cli``: it is an independent second formulation of every gradient
(the chain rule applied mechanically to the plain float64 forward pass, node by node), beside
central finite differences and, where installed, ``torch.autograd``. ``Var`` holds a value and,
after :meth:`Var.backward`, the gradient of the output with respect to it (the total derivative:
every path counted).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


class Var:
    """A node: ``value`` (a float64 array), ``grad`` (filled by :meth:`backward`)."""

    def __init__(
        self,
        value: np.ndarray | float,
        parents: Sequence[tuple[Var, Callable[[np.ndarray], np.ndarray]]] = (),
    ):
        self.value = np.asarray(value, dtype=np.float64)
        self.parents = list(parents)  # (parent, the gradient of the output w.r.t. the parent from ours)
        self.grad = np.zeros_like(self.value)

    def __add__(self, other: Var) -> Var:
        return Var(self.value + other.value, [(self, lambda g: g), (other, lambda g: g)])

    def __sub__(self, other: Var) -> Var:
        return Var(self.value - other.value, [(self, lambda g: g), (other, lambda g: -g)])

    def __mul__(self, other: Var) -> Var:
        a, b = self.value, other.value
        return Var(a * b, [(self, lambda g: g * b), (other, lambda g: g * a)])

    def scale(self, c: float) -> Var:
        return Var(self.value * c, [(self, lambda g: g * c)])

    def backward(self) -> None:
        """Fill ``grad`` of every node this one depends on (``self`` is a scalar)."""
        order: list[Var] = []
        seen: set[int] = set()

        def visit(v: Var) -> None:
            if id(v) in seen:
                return
            seen.add(id(v))
            for p, _ in v.parents:
                visit(p)
            order.append(v)

        visit(self)
        self.grad = np.ones_like(self.value)
        for v in reversed(order):
            for p, local in v.parents:
                p.grad = p.grad + local(v.grad)


def matvec(W: Var, x: Var) -> Var:
    """``W x`` for ``W (a, b)``, ``x (b,)``."""
    return Var(W.value @ x.value, [(W, lambda g: np.outer(g, x.value)), (x, lambda g: W.value.T @ g)])


def apply(f: Callable[[np.ndarray], np.ndarray], df: Callable[[np.ndarray], np.ndarray], x: Var) -> Var:
    """An elementwise function ``f`` with derivative ``df``."""
    return Var(f(x.value), [(x, lambda g: g * df(x.value))])


def sigmoid_np(a: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def tanh(x: Var) -> Var:
    return apply(np.tanh, lambda a: 1.0 - np.tanh(a) ** 2, x)


def sigmoid(x: Var) -> Var:
    return apply(sigmoid_np, lambda a: sigmoid_np(a) * (1.0 - sigmoid_np(a)), x)


def relu(x: Var) -> Var:
    return apply(lambda a: np.maximum(a, 0.0), lambda a: (a > 0).astype(np.float64), x)


def part(x: Var, i0: int, i1: int) -> Var:
    """``x[i0:i1]``."""
    n = x.value.shape[0]

    def back(g: np.ndarray) -> np.ndarray:
        out = np.zeros(n)
        out[i0:i1] = g
        return out

    return Var(x.value[i0:i1], [(x, back)])


def concat(xs: Sequence[Var]) -> Var:
    """The vectors ``xs`` joined."""
    sizes = np.cumsum([0, *(x.value.shape[0] for x in xs)])
    return Var(np.concatenate([x.value for x in xs]),
               [(x, (lambda g, a=a, b=b: g[a:b])) for x, a, b in zip(xs, sizes[:-1], sizes[1:], strict=True)])


def total(xs: Sequence[Var]) -> Var:
    """The sum of scalars ``xs``."""
    return Var(sum(float(x.value) for x in xs), [(x, lambda g: g) for x in xs])


def half_square(e: Var) -> Var:
    """``1/2 ||e||^2``."""
    return Var(0.5 * float(e.value @ e.value), [(e, lambda g: g * e.value)])


def cross_entropy(o: Var, y: int) -> Var:
    """``logsumexp(o) - o[y]``."""
    z = o.value - o.value.max()
    p = np.exp(z) / np.exp(z).sum()
    onehot = np.zeros_like(p)
    onehot[y] = 1.0
    return Var(float(np.log(np.exp(z).sum()) - z[y]), [(o, lambda g: g * (p - onehot))])
