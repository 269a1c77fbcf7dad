"""Gradient accumulation with autocast and GradScaler in a plain loop, no perfkit import.

    perfkit profile examples/frameworks/accum_amp.py [--steps 8] [--accum 4]

Each optimizer step accumulates ``--accum`` micro-batches. bf16 autocast on a
CPU (fp16 with a GradScaler that scales on a GPU; on a CPU the scaler is
created disabled, as bf16 needs no loss scaling); torch.optim.AdamW.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--accum", type=int, default=4)
    ap.add_argument("--width", type=int, default=256)
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtype = torch.float16 if cuda else torch.bfloat16
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, args.width), nn.ReLU(), nn.Linear(args.width, args.width), nn.ReLU(),
                          nn.Linear(args.width, 1)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(device, enabled=cuda)
    g = torch.Generator().manual_seed(0)
    for _ in range(args.steps):
        for _ in range(args.accum):
            x = torch.randn(32, 64, generator=g).to(device)
            y = torch.randn(32, 1, generator=g).to(device)
            with torch.autocast(device_type=device, dtype=dtype):
                loss = nn.functional.mse_loss(model(x).float(), y) / args.accum
            scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
    print(f"done: {args.steps} steps of {args.accum} micro-batches")


if __name__ == "__main__":
    main()
