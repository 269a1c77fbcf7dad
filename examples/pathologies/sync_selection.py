"""Pathology: block selection with host round trips (.tolist(), .item(), torch.unique) in the forward.

Mirrors a user report on a sparse-attention model (~6 tokens/s): the selection
scorer picked the top-n key blocks of each (batch, head) group, then walked
them on the host (``for s, e in ranges.tolist():``, ``.item()`` per block,
``torch.unique(blocks, sorted=True)``). Every one of these reads a value back
from the GPU, so the host waits for the GPU at each call, and the GPU then waits
for the host to launch the next tiny op. Here :func:`select_blocks` does the
same for every (batch, head) group of every layer.

Expected perfkit finding: ``host_device_sync`` first, ``where`` naming
``select_blocks``.

Fix (``--fixed``): :func:`select_blocks_masked` builds the same key mask with
tensor ops (``topk`` -> ``scatter_`` into a block mask -> expand to tokens); no
value leaves the GPU.

    python examples/pathologies/sync_selection.py [--fixed] [--steps 12] [--small]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def select_blocks(scores: torch.Tensor, n_sel: int, block: int) -> torch.Tensor:
    """Key mask (B, H, T) keeping the top ``n_sel`` blocks of each group: host loops, syncs."""
    B, H, nb = scores.shape
    mask = torch.zeros(B, H, nb * block, dtype=torch.bool, device=scores.device)
    top = scores.topk(n_sel, dim=-1).indices
    for b in range(B):
        for h in range(H):
            ranges = torch.stack([top[b, h] * block, (top[b, h] + 1) * block], dim=-1)
            for s, e in ranges.tolist():  # copy to the host: sync
                if e > s and scores[b, h, s // block].isfinite().item():  # one more sync per block
                    mask[b, h, s:e] = True
            blocks = torch.unique(top[b, h], sorted=True)  # data-dependent size: sync
            assert blocks.numel() == n_sel
    return mask


def select_blocks_masked(scores: torch.Tensor, n_sel: int, block: int) -> torch.Tensor:
    """The same mask with tensor ops only: nothing is read back to the host."""
    top = scores.topk(n_sel, dim=-1).indices
    keep = torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, top, True) & scores.isfinite()
    return keep.unsqueeze(-1).expand(*keep.shape, block).flatten(-2)


class SelectAttentionBlock(nn.Module):
    """Attention over the top-n key blocks (scored by mean-pooled keys), then an MLP."""

    def __init__(self, d: int, heads: int, block: int, n_sel: int, fixed: bool):
        super().__init__()
        self.heads, self.block, self.n_sel, self.fixed = heads, block, n_sel, fixed
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, d = x.shape
        q, k, v = (y.view(B, T, self.heads, -1).transpose(1, 2) for y in self.qkv(self.ln1(x)).chunk(3, -1))
        with torch.no_grad():  # block scores: the mean query against mean-pooled key blocks
            kb = k.unflatten(2, (T // self.block, self.block)).mean(3)
            scores = (q.mean(2, keepdim=True) @ kb.transpose(-1, -2)).squeeze(2)  # (B, H, T / block)
            select = select_blocks_masked if self.fixed else select_blocks
            mask = select(scores, self.n_sel, self.block)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, :, None, :])
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, d))
        return x + self.mlp(self.ln2(x))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixed", action="store_true", help="mask-based selection, no host round trip")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--small", action="store_true", help="CPU-sized model")
    args = ap.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    # batch, seq, d_model, heads, layers, block, blocks kept
    B, T, d, H, L, block, n_sel = (2, 256, 64, 2, 2, 16, 4) if args.small else (4, 4096, 1024, 8, 2, 64, 8)
    torch.manual_seed(0)
    blocks = nn.Sequential(*[SelectAttentionBlock(d, H, block, n_sel, args.fixed) for _ in range(L)]).to(device)
    opt = torch.optim.SGD(blocks.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(B, T, d, device=device)
    print(f"{L} layers x {B * H} (batch, head) groups, {n_sel} of {T // block} blocks kept, on {device}")

    t0 = time.perf_counter()
    for step in range(args.steps):
        loss = blocks(x).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step == 0 or step == args.steps - 1:
            print(f"step {step:3d} loss {loss.item():.4f}")
    if device == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print(f"{args.steps} steps in {dt:.2f} s ({1000 * dt / args.steps:.1f} ms/step)")


if __name__ == "__main__":
    main()
