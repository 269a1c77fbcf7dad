"""A small but realistic GPT training script (no perfkit import): the example to profile.

    python examples/train_gpt.py [--steps 20] [--batch 8] [--seq 1024] [--size auto|tiny|100m|150m]

On a GPU it trains a ~100M-parameter GPT (8 layers, d_model 1024, 16 heads,
vocab 32k) with bf16 autocast, AdamW and scaled_dot_product_attention. On a CPU
it sizes itself down (2 layers, d_model 128, seq 128) so a profile finishes in
seconds. Data: random token sequences from a DataLoader.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.out = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (y.view(b, t, self.heads, d // self.heads).transpose(1, 2) for y in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, vocab: int, d: int, layers: int, heads: int, seq: int):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(seq, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.tok.weight  # tied

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.tok(idx) + self.pos(pos)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


class RandomTokens(torch.utils.data.Dataset):
    def __init__(self, vocab: int, seq: int, n: int):
        self.vocab, self.seq, self.n = vocab, seq, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(i)
        return torch.randint(0, self.vocab, (self.seq + 1,), generator=g)


CONFIGS = {
    # vocab, d_model, layers, heads, seq, batch
    "100m": (32000, 1024, 8, 16, 1024, 8),
    "150m": (32000, 1024, 9, 16, 1024, 8),
    "tiny": (2048, 128, 2, 4, 128, 4),
}


def build(size: str = "auto", batch: int | None = None, seq: int | None = None, lr: float = 3e-4, steps: int = 20):
    """Model, optimizer, data loader and settings for ``size`` ("auto": 100m on a GPU, tiny on a CPU)."""
    cuda = torch.cuda.is_available()
    size = size if size != "auto" else ("100m" if cuda else "tiny")
    vocab, d, layers, heads, seq0, batch0 = CONFIGS[size]
    seq = seq or seq0
    batch = batch or batch0
    device = "cuda" if cuda else "cpu"
    torch.manual_seed(0)
    model = GPT(vocab, d, layers, heads, seq).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, fused=cuda)
    loader = torch.utils.data.DataLoader(RandomTokens(vocab, seq, batch * steps), batch_size=batch)
    return model, opt, loader, {"device": device, "vocab": vocab, "batch": batch, "seq": seq, "cuda": cuda}


def forward_loss(model: nn.Module, data: torch.Tensor, cfg: dict) -> torch.Tensor:
    data = data.to(cfg["device"], non_blocking=True)
    x, y = data[:, :-1], data[:, 1:]
    with torch.autocast(device_type=cfg["device"], dtype=torch.bfloat16, enabled=cfg["cuda"]):
        logits = model(x)
        return F.cross_entropy(logits.reshape(-1, cfg["vocab"]).float(), y.reshape(-1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--seq", type=int, default=None)
    ap.add_argument("--size", choices=tuple(["auto", *CONFIGS]), default="auto")
    ap.add_argument("--lr", type=float, default=3e-4)
    args = ap.parse_args()

    model, opt, loader, cfg = build(args.size, args.batch, args.seq, args.lr, args.steps)
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {params / 1e6:.1f}M parameters on {cfg['device']}; batch {cfg['batch']} x {cfg['seq']} tokens")

    t0 = time.perf_counter()
    for step, data in enumerate(loader):
        loss = forward_loss(model, data, cfg)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 10 == 0 or step == args.steps - 1:
            print(f"step {step:4d} loss {loss.item():.3f}")
    dt = time.perf_counter() - t0
    tokens = args.steps * cfg["batch"] * cfg["seq"]
    print(f"{args.steps} steps in {dt:.1f} s ({tokens / dt:,.0f} tokens/s)")
    assert math.isfinite(loss.item())


if __name__ == "__main__":
    main()
