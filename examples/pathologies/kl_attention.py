"""Pathology: attention from pairwise Gaussian KL divergences in a nested Python loop.

Mirrors a user report on a "gauge" transformer whose attention weights are
softmax(-KL(q_i || q_j) / kappa) between per-token Gaussians N(mu_i, Sigma_i):
the KL was computed in ``for i in range(N): for j in range(N):`` with a matrix
inverse and two log-determinants per pair, so N^2 pairs x a dozen small ops
(each batched over the batch only) in the forward, and more in the backward.
Even at N=24 tokens and K=8 dimensions the step is tens of thousands of tiny
ops. (The report's gauge transport between tokens is left out: it only adds
more of the same.)

Expected perfkit finding: ``launch_bound`` or ``slow_op`` first (on a CPU
trace, where kernel launches are not visible: ``slow_op`` on
``aten::linalg_inv``), ``where`` naming ``aten::linalg_inv`` or
:func:`kl_attention`.

Fix (``--fixed``): :func:`kl_attention_batched`: one Cholesky factorisation
per token (``cholesky_ex``, no error-check sync), the inverses and
log-determinants from it, and all N^2 divergences at once by broadcasting.

    python examples/pathologies/kl_attention.py [--fixed] [--steps 12] [--small]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn as nn


def kl_attention(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """KL(N_i || N_j) for every token pair, (B, N, K), (B, N, K, K) -> (B, N, N); one pair at a time."""
    B, N, K = mu.shape
    rows = []
    for i in range(N):
        row = []
        for j in range(N):
            sigma_j_inv = torch.linalg.inv(sigma[:, j])
            diff = (mu[:, j] - mu[:, i]).unsqueeze(-1)
            trace = (sigma_j_inv @ sigma[:, i]).diagonal(dim1=-2, dim2=-1).sum(-1)
            maha = (diff.transpose(-1, -2) @ sigma_j_inv @ diff).reshape(B)
            row.append(0.5 * (trace + maha - K + torch.logdet(sigma[:, j]) - torch.logdet(sigma[:, i])))
        rows.append(torch.stack(row, -1))
    return torch.stack(rows, -2)


def kl_attention_batched(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The same (B, N, N) divergences, all pairs at once."""
    K = mu.shape[-1]
    chol, _ = torch.linalg.cholesky_ex(sigma)  # once per token
    sigma_inv = torch.cholesky_inverse(chol)
    logdet = 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (B, N)
    trace = torch.einsum("bjkl,bilk->bij", sigma_inv, sigma)  # tr(S_j^-1 S_i)
    diff = mu[:, None, :, :] - mu[:, :, None, :]  # [b, i, j] = mu_j - mu_i
    maha = torch.einsum("bijk,bjkl,bijl->bij", diff, sigma_inv, diff)
    return 0.5 * (trace + maha - K + logdet[:, None, :] - logdet[:, :, None])


class KLAttention(nn.Module):
    """Each token is a Gaussian belief; attention weights are softmax(-KL / kappa)."""

    def __init__(self, d: int, k: int, fixed: bool, kappa: float = 1.0):
        super().__init__()
        self.k, self.kappa, self.fixed = k, kappa, fixed
        self.mu = nn.Linear(d, k)
        self.chol = nn.Linear(d, k * k)
        self.value, self.out = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        L = self.chol(x).view(B, N, self.k, self.k).tril()
        sigma = L @ L.transpose(-1, -2) + 0.1 * torch.eye(self.k, device=x.device)  # SPD
        kl = (kl_attention_batched if self.fixed else kl_attention)(self.mu(x), sigma)
        attn = torch.softmax(-kl / self.kappa, dim=-1)
        return x + self.out(attn @ self.value(x))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixed", action="store_true", help="batched pairwise KL")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--small", action="store_true", help="CPU-sized problem")
    args = ap.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    batch, tokens, d, k = (2, 8, 32, 4) if args.small else (8, 24, 64, 8)
    torch.manual_seed(0)
    model = KLAttention(d, k, args.fixed).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch, tokens, d, device=device)
    target = torch.randn(batch, tokens, d, device=device)
    print(f"{tokens} tokens ({tokens * tokens} pairs), K={k}, batch {batch} on {device}")

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
