"""The example GPT under ``torch.compile`` (Inductor: Triton kernels on a GPU, C++ on a CPU), bf16 autocast.

    python scripts/stacks/compiled_gpt.py [--steps 30] [--size 100m] [--mode reduce-overhead]

``--mode reduce-overhead`` replays the compiled forward and backward as CUDA graphs (one
``cudaGraphLaunch`` each per step, kernels inside it); the optimizer stays eager.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
import train_gpt  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--size", default="auto")
    ap.add_argument("--mode", default="default", choices=("default", "reduce-overhead"),
                    help="torch.compile mode; reduce-overhead captures CUDA graphs")
    args = ap.parse_args()
    model, opt, loader, cfg = train_gpt.build(args.size, steps=args.steps)
    compiled = torch.compile(model, mode=args.mode)
    for data in loader:
        if args.mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # each step's graphs may reuse the last step's outputs
        loss = train_gpt.forward_loss(compiled, data, cfg)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    print(f"trained {args.steps} steps, loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
