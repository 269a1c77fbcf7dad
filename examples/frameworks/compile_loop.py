"""A torch.compile'd MLP trained in a plain loop (CPU or GPU), no perfkit import.

    perfkit profile examples/frameworks/compile_loop.py [--steps 12]

The first step compiles (Inductor: C++ kernels on a CPU, Triton on a GPU); the
profiled steps run the compiled forward and backward graphs.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--width", type=int, default=256)
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, args.width), nn.GELU(), nn.Linear(args.width, args.width), nn.GELU(),
                          nn.Linear(args.width, 1)).to(device)
    compiled = torch.compile(model)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(64, 64, device=device)
    y = torch.randn(64, 1, device=device)
    for _ in range(args.steps):
        loss = nn.functional.mse_loss(compiled(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    print(f"done: {args.steps} steps, loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
