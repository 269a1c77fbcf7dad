"""Pathology: 128 low-rank components applied one by one in a Python loop (launch-bound).

Mirrors a user report on a model with ``num_ranks=128`` low-rank components
per layer: the forward looped ``for i in range(num_ranks): x @ W_down[i] @
W_up[i]``. Each iteration launches a few tiny matmuls (and twice as many in the
backward), so the step is hundreds of kernels of a few microseconds each: the
GPU waits for the CPU to launch them. The report's fix (3x faster forward) was
stacked weights and two ``torch.einsum`` calls.

Expected perfkit finding: ``launch_bound`` first, ``where`` naming the op
launched from the loop (``aten::mm``, from ``LowRankComponents.forward``).

Fix (``--fixed``): :class:`StackedLowRankComponents`: the same weights stored
as stacked (n, d, r) / (n, r, d) tensors, applied with two einsums.

    python examples/pathologies/component_loop.py [--fixed] [--steps 12] [--small]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn as nn


class LowRankComponents(nn.Module):
    """sum_i (x @ W_down[i]) @ W_up[i], one component at a time."""

    def __init__(self, w_down: torch.Tensor, w_up: torch.Tensor):
        super().__init__()
        self.W_down = nn.ParameterList(nn.Parameter(w.clone()) for w in w_down)
        self.W_up = nn.ParameterList(nn.Parameter(w.clone()) for w in w_up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(x)
        for i in range(len(self.W_down)):
            out = out + (x @ self.W_down[i]) @ self.W_up[i]
        return out


class StackedLowRankComponents(nn.Module):
    """The same sum with stacked weights: two einsums, whatever the number of components."""

    def __init__(self, w_down: torch.Tensor, w_up: torch.Tensor):
        super().__init__()
        self.W_down = nn.Parameter(w_down.clone())  # (n, d, r)
        self.W_up = nn.Parameter(w_up.clone())  # (n, r, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.einsum("td,ndr->tnr", x, self.W_down)
        return torch.einsum("tnr,nrd->td", h, self.W_up)


class Layer(nn.Module):
    def __init__(self, d: int, n: int, r: int, fixed: bool):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.fc = nn.Linear(d, d)
        w_down, w_up = torch.randn(n, d, r) / d**0.5, torch.randn(n, r, d) / (r * n) ** 0.5
        self.components = (StackedLowRankComponents if fixed else LowRankComponents)(w_down, w_up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(self.ln(x))
        return x + h + self.components(h)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixed", action="store_true", help="stacked weights + einsum")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--small", action="store_true", help="CPU-sized model")
    ap.add_argument("--components", type=int, default=128)
    args = ap.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    batch, seq, d, r = (2, 32, 64, 8) if args.small else (2, 128, 1024, 64)
    torch.manual_seed(0)
    model = Layer(d, args.components, r, args.fixed).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch * seq, d, device=device)
    target = torch.randn(batch * seq, d, device=device)
    print(f"{args.components} components of rank {r}, d_model {d}, {batch}x{seq} tokens on {device}")

    t0 = time.perf_counter()
    for step in range(args.steps):
        loss = (model(x) - target).pow(2).mean()
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
