"""Train a 2-layer LSTM on the adding problem, saving its state_dict before and after training.

Needs PyTorch (``pip install torch``; the CPU wheel is enough), which bptt itself does not.

The adding problem (Hochreiter & Schmidhuber 1997): each step t = 1..T feeds a pair
(value, marker), the value uniform in [0, 1), the marker 1 on exactly two steps (one in each half
of the sequence) and 0 elsewhere; the target, read at the last step, is the sum of the two marked
values. Predicting the mean, 1, leaves a mean squared error of 1/6 ~ 0.167: anything well below
that needs the gradient to carry the marked values back over up to T steps.

    python examples/adding_problem.py --out runs            # 20-45 s on 2 CPU cores
    bptt analyze --weights runs/after.pt --cell lstm --inputs runs/inputs.npy --targets runs/targets.npy
    bptt sweep --weights runs/before.pt,runs/after.pt --cell lstm --T 50 --format json

The files: before.pt and after.pt (the model's state_dict: lstm.weight_ih_l0, ..., fc.weight,
fc.bias, which bptt reads as a 2-layer LSTM with a Linear head), and one sequence of the task,
inputs.npy (T x 2) and targets.npy (T x 1, the sum at every step), for --inputs/--targets.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

try:
    import torch
    from torch import nn
except ImportError:
    sys.exit("examples/adding_problem.py needs PyTorch: pip install torch")

import numpy as np


def adding_batch(batch: int, T: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (batch, T, 2) of (value, marker) pairs and targets (batch, 1), the marked values' sum."""
    values = torch.rand(batch, T, generator=gen)
    first = torch.randint(0, T // 2, (batch,), generator=gen)
    second = torch.randint(T // 2, T, (batch,), generator=gen)
    markers = torch.zeros(batch, T)
    rows = torch.arange(batch)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    targets = (values * markers).sum(dim=1, keepdim=True)
    return torch.stack([values, markers], dim=-1), targets


class AddingModel(nn.Module):
    """nn.LSTM (2 inputs, 2 layers) and a Linear head on the top layer's last state: its
    state_dict is lstm.weight_ih_l0, ..., lstm.bias_hh_l1, fc.weight (1 x hidden), fc.bias (1)."""

    def __init__(self, hidden: int, layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size=2, hidden_size=hidden, num_layers=layers, batch_first=True)
        self.fc = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states, _ = self.lstm(x)
        return self.fc(states[:, -1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("."), help="directory for the files (default .)")
    parser.add_argument("--T", type=int, default=50, help="sequence length (default 50)")
    parser.add_argument("--steps", type=int, default=2500, help="Adam steps (default 2500)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model and the data (default 0)")
    parser.add_argument("--hidden", type=int, default=32, help="LSTM hidden size (default 32)")
    parser.add_argument("--batch", type=int, default=64, help="sequences per step (default 64)")
    args = parser.parse_args()
    if args.T < 2:
        parser.error("--T must be at least 2 (one marker in each half)")

    # one thread: at this size (32 units, batches of 64) threads cost more than they save, by 10x
    # on a busy 2-core machine
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    model = AddingModel(args.hidden, layers=2)
    torch.save(model.state_dict(), args.out / "before.pt")

    x_test, y_test = adding_batch(1000, args.T, gen)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.MSELoss()
    start = time.perf_counter()
    print(f"adding problem, T {args.T}: a 2-layer LSTM (hidden {args.hidden}), {args.steps} Adam steps")
    print("   step  train MSE  test MSE   (predicting 1 gives 0.167)")
    for step in range(1, args.steps + 1):
        x, y = adding_batch(args.batch, args.T, gen)
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step == 1 or step % max(args.steps // 10, 1) == 0:
            with torch.no_grad():
                test = loss_fn(model(x_test), y_test).item()
            print(f"{step:7d}  {loss.item():9.4f}  {test:8.4f}")
    print(f"trained in {time.perf_counter() - start:.1f} s")
    torch.save(model.state_dict(), args.out / "after.pt")

    # one sequence of the task for bptt's --inputs/--targets (the target is read at step T)
    x, y = adding_batch(1, args.T, gen)
    np.save(args.out / "inputs.npy", x[0].double().numpy())
    np.save(args.out / "targets.npy", y.double().expand(args.T, 1).numpy())
    names = ("before.pt", "after.pt", "inputs.npy", "targets.npy")
    print("wrote " + ", ".join(str(args.out / name) for name in names))


if __name__ == "__main__":
    main()
