"""The example GPT with gradient accumulation, fp16 autocast and ``GradScaler`` (no perfkit import).

    python scripts/stacks/accumulation_gpt.py [--steps 30] [--micro 4] [--size 100m]

Each optimizer step runs ``--micro`` forward/backward passes of a quarter batch, then
``scaler.step(opt)``. On a CPU: bf16 autocast, no scaler.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
import train_gpt  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--micro", type=int, default=4)
    ap.add_argument("--size", default="auto")
    args = ap.parse_args()
    model, opt, loader, cfg = train_gpt.build(args.size, steps=args.steps)
    dev, cuda = cfg["device"], cfg["cuda"]
    dtype = torch.float16 if cuda else torch.bfloat16
    scaler = torch.amp.GradScaler(dev, enabled=cuda)
    for data in loader:
        data = data.to(dev, non_blocking=True)
        for chunk in data.chunk(args.micro):
            x, y = chunk[:, :-1], chunk[:, 1:]
            with torch.autocast(device_type=dev, dtype=dtype):
                logits = model(x)
            loss = F.cross_entropy(logits.reshape(-1, cfg["vocab"]).float(), y.reshape(-1)) / args.micro
            scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
    print(f"trained {args.steps} steps")


if __name__ == "__main__":
    main()
