"""Pathology (benign): the first step pays one-off setup costs and is far slower than the rest.

Mirrors a user report where attention layer 0 ran 40x longer than the others
on its first call (JIT warm-up). Here the first forward builds a cached
relative-position bucket table with Python loops (a lazily initialised module),
and ``torch.backends.cudnn.benchmark = True`` autotunes every conv shape on
first use; later steps are a plain, GPU-bound conv + attention step.

Profile it with the first steps in the trace:

    perfkit profile --skip-first 0 --warmup 0 --active 6 examples/pathologies/warmup.py

Expected perfkit finding: ``warmup_outlier`` (severity info), the first step
excluded from the steady-state figures.

Fix (``--fixed``): do the setup before the loop: build the table and run one
forward/backward (which also autotunes cuDNN) before the first optimizer step.
Usually nothing needs fixing: perfkit's default ``--skip-first 5`` leaves
start-up out of the trace.

    python examples/pathologies/warmup.py [--fixed] [--steps 12] [--small]
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RelPosAttention(nn.Module):
    """Self-attention over an H x W grid with a learned bias per relative-distance bucket."""

    def __init__(self, dim: int, heads: int, buckets: int = 32):
        super().__init__()
        self.heads, self.buckets = heads, buckets
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.bias = nn.Parameter(torch.zeros(heads, buckets))
        self.table: torch.Tensor | None = None  # (T, T) bucket ids, built on the first call

    def build_table(self, h: int, w: int, device: torch.device) -> None:
        rows = []
        for i in range(h * w):  # one-off, but O(T^2) Python iterations
            yi, xi = divmod(i, w)
            rows.append([min(int(6 * math.log1p(math.hypot(yi - j // w, xi - j % w))), self.buckets - 1)
                         for j in range(h * w)])
        self.table = torch.tensor(rows, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        if self.table is None:
            self.build_table(H, W, x.device)
        t = x.flatten(2).transpose(1, 2)  # (B, T, C)
        q, k, v = self.qkv(t).view(B, H * W, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        bias = F.embedding(self.table, self.bias.t()).permute(2, 0, 1)  # (heads, T, T)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        y = self.proj(y.transpose(1, 2).reshape(B, H * W, C))
        return x + y.transpose(1, 2).reshape(B, C, H, W)


def model_for(width: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, width, 4, stride=4), nn.BatchNorm2d(width), nn.GELU(),
        nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.GELU(),
        RelPosAttention(width, heads=4),
        nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.GELU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixed", action="store_true", help="set up (and autotune) before the loop")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--small", action="store_true", help="CPU-sized model")
    args = ap.parse_args()

    torch.backends.cudnn.benchmark = True  # autotune each conv shape on first use
    device = "cuda" if torch.cuda.is_available() else "cpu"
    batch, size, width = (4, 64, 32) if args.small else (128, 96, 256)
    torch.manual_seed(0)
    model = model_for(width).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    print(f"batch {batch}, {size}x{size} images, {(size // 4) ** 2} attention tokens on {device}")

    if args.fixed:  # one-off work before the first step: table, kernels, cuDNN autotuning, allocator
        t = time.perf_counter()
        F.cross_entropy(model(x), y).backward()
        model.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        print(f"set-up before the loop: {1000 * (time.perf_counter() - t):.0f} ms")

    t0 = time.perf_counter()
    for step in range(args.steps):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step == 0 or step == args.steps - 1:
            print(f"step {step:3d} loss {loss.item():.4f} ({1000 * (time.perf_counter() - t0):.0f} ms so far)")
    if device == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print(f"{args.steps} steps in {dt:.2f} s ({1000 * dt / args.steps:.1f} ms/step)")


if __name__ == "__main__":
    main()
