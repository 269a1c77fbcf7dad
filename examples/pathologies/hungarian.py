"""Pathology: a Python Hungarian solver in the loss, the GPU idles while the CPU solves it.

Mirrors a user report of a training job stalled in a hand-written
``_hungarian_linear_sum_assignment``: similarity matrices computed on the GPU
were copied to the host (``.cpu().numpy()``), matched by an O(n^3) Hungarian
written with Python/NumPy loops, and the matching sent back to the GPU. Here a
small set-prediction model predicts ``--n`` vectors per step; the loss matches
them to ``--n`` targets (DETR-style) with :func:`hungarian_assignment`.

Expected perfkit finding: ``host_bound_idle`` first, ``where`` naming
``hungarian_assignment``.

Fix (``--fixed``): no Python loop on the critical path: a compiled solver
(``scipy.optimize.linear_sum_assignment``) on a CPU when SciPy is installed, otherwise (and on a GPU) an
entropic (Sinkhorn) soft assignment computed with tensor ops on the device,
which needs no host round trip at all.

    python examples/pathologies/hungarian.py [--fixed] [--steps 12] [--small]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def hungarian_assignment(cost: np.ndarray) -> np.ndarray:
    """Minimum-cost perfect matching of a square cost matrix; returns col[row]. O(n^3).

    Shortest augmenting paths with row/column potentials, one Python iteration
    per visited column (each a few NumPy operations over the columns).
    """
    n = cost.shape[0]
    u, v = np.zeros(n + 1), np.zeros(n + 1)
    p = np.zeros(n + 1, dtype=np.int64)  # p[j]: row (1-based) matched to column j, 0 = free
    way = np.zeros(n + 1, dtype=np.int64)
    for i in range(1, n + 1):
        p[0], j0 = i, 0
        minv = np.full(n + 1, np.inf)
        used = np.zeros(n + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            free = ~used
            free[0] = False
            cur = cost[i0 - 1] - u[i0] - v[1:]
            better = free[1:] & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            cand = np.where(free, minv, np.inf)
            j1 = int(np.argmin(cand))
            delta = cand[j1]
            u[p[used]] += delta
            v[used] -= delta
            minv[free] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:  # augment along the path
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    col = np.empty(n, dtype=np.int64)
    col[p[1:] - 1] = np.arange(n)
    return col


def sinkhorn_plan(cost: torch.Tensor, eps: float = 0.02, iters: int = 50) -> torch.Tensor:
    """Entropic (soft) assignment with tensor ops only, no host round trip: an (n, n) plan
    whose rows and columns sum to 1; it tends to the Hungarian permutation as eps -> 0."""
    logp = -(cost - cost.mean()) / (cost.std() * eps)
    for _ in range(iters):
        logp = logp - logp.logsumexp(1, keepdim=True)
        logp = logp - logp.logsumexp(0, keepdim=True)
    return logp.exp()


class SetPredictor(nn.Module):
    """An MLP over a batch of tokens, pooled into ``n`` predicted vectors."""

    def __init__(self, d: int, hidden: int, layers: int, n: int):
        super().__init__()
        self.n = n
        blocks = [(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d)) for _ in range(layers)]
        self.mlp = nn.Sequential(*[m for block in blocks for m in block])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x).view(self.n, -1, x.shape[-1]).mean(1)  # (n, d)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixed", action="store_true", help="use a compiled / on-device assignment")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--small", action="store_true", help="CPU-sized problem")
    ap.add_argument("--n", type=int, default=None, help="vectors to match per step")
    args = ap.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    n, tokens, d, hidden, layers = (64, 1024, 128, 256, 2) if args.small else (256, 16384, 1024, 4096, 3)
    n = args.n or n
    torch.manual_seed(0)
    model = SetPredictor(d, hidden, layers, n).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(n * (tokens // n), d, device=device)
    target = torch.randn(n, d, device=device)

    solver, lsa = "hungarian_assignment (Python loops)", None
    if args.fixed:
        solver = "sinkhorn_plan (on the device)"
        if device == "cpu":  # on a CPU there is no device to keep busy: a compiled solver is the fix
            try:
                from scipy.optimize import linear_sum_assignment as lsa
                solver = "scipy.optimize.linear_sum_assignment"
            except ImportError:
                pass
    print(f"{n} vectors matched per step on {device}; solver: {solver}")

    t0 = time.perf_counter()
    for step in range(args.steps):
        pred = model(x)
        cost = torch.cdist(pred.detach(), target)  # (n, n), on the device
        if args.fixed and lsa is None:  # soft matching, no host round trip
            with torch.no_grad():
                plan = sinkhorn_plan(cost)
            loss = (plan * torch.cdist(pred, target).pow(2)).sum() / pred.numel()
        else:  # GPU -> CPU copy, solve on the host, send the matching back
            solve = (lambda c: lsa(c)[1]) if args.fixed else hungarian_assignment
            col = torch.from_numpy(solve(cost.cpu().numpy())).to(device)
            loss = F.mse_loss(pred, target[col])
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
