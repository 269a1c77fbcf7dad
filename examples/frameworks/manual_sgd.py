"""A hand-written SGD update (no torch.optim) in a plain loop, no perfkit import.

    perfkit profile --step-fn __main__:train_step examples/frameworks/manual_sgd.py [--steps 12]

There is no optimizer whose ``step`` perfkit can hook: ``--step-fn`` names the
function that runs one step.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(p.grad, alpha=-lr)
            p.grad = None
    return loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--width", type=int, default=256)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, args.width), nn.ReLU(), nn.Linear(args.width, 1))
    x, y = torch.randn(64, 64), torch.randn(64, 1)
    for _ in range(args.steps):
        loss = train_step(model, x, y, 1e-3)
    print(f"done: {args.steps} steps, loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
