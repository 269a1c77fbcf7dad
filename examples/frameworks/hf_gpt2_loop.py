"""GPT-2 124M from Hugging Face transformers in a plain training loop (no perfkit import).

    python examples/frameworks/hf_gpt2_loop.py [--steps 30] [--batch 8] [--seq 1024]

Random initialisation (no download), bf16 autocast on a GPU, torch.optim.AdamW,
random token batches. Needs ``pip install transformers``. On a CPU it shrinks
the model (2 layers, d_model 128, seq 128) so a profile finishes in seconds.
"""

from __future__ import annotations

import argparse
import math
import time

import torch


def build(batch: int, seq: int, cuda: bool):  # type: ignore[no-untyped-def]
    from transformers import GPT2Config, GPT2LMHeadModel

    if cuda:
        cfg = GPT2Config(n_positions=max(seq, 1024))  # the 124M model: 12 layers, d_model 768, 12 heads
    else:
        cfg = GPT2Config(n_layer=2, n_embd=128, n_head=4, n_positions=max(seq, 128))
    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg).to("cuda" if cuda else "cpu")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    return model, opt, cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--seq", type=int, default=None)
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    batch = args.batch or (8 if cuda else 4)
    seq = args.seq or (1024 if cuda else 128)
    device = "cuda" if cuda else "cpu"
    model, opt, cfg = build(batch, seq, cuda)
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters on {device}")
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for step in range(args.steps):
        ids = torch.randint(0, cfg.vocab_size, (batch, seq), generator=g).to(device, non_blocking=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=cuda):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 10 == 0 or step == args.steps - 1:
            print(f"step {step:4d} loss {loss.item():.3f}")
    dt = time.perf_counter() - t0
    print(f"{args.steps} steps in {dt:.1f} s ({args.steps * batch * seq / dt:,.0f} tokens/s)")
    assert math.isfinite(loss.item())


if __name__ == "__main__":
    main()
