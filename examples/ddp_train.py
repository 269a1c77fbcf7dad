"""The example GPT trained with DistributedDataParallel (no perfkit import), with a straggler or a hang on demand.

    torchrun --nproc-per-node 2 examples/ddp_train.py [--steps 20] [--size auto|tiny|100m]
    torchrun --nproc-per-node 2 -m perfkit profile examples/ddp_train.py --slow-rank 1 --slow-ms 40
    torchrun --nproc-per-node 2 -m perfkit profile --watchdog 5 examples/ddp_train.py --hang-rank 1 --hang-after 8

Backend: NCCL on GPUs (one per local rank), gloo on CPUs. The model, data and
loss are those of ``examples/train_gpt.py`` (``build`` / ``forward_loss``); each
rank sees its own shard of the random token data.

* ``--slow-rank R --slow-ms X``: rank R does about X ms of extra work in every
  step, in ``straggler_work``: matrix multiplies (``--slow-mode compute``,
  calibrated before training) or a host sleep (``--slow-mode sleep``). The other
  ranks wait for it in the gradient all-reduce.
* ``--hang-rank R --hang-after N``: rank R stops in ``stuck_in_python`` (a
  Python loop that never returns) at step N; the other ranks block in the next
  all-reduce until the process group times out (``--pg-timeout-s``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_gpt import CONFIGS, build, forward_loss  # noqa: E402


def straggler_work(a: torch.Tensor, reps: int, sleep_s: float) -> torch.Tensor:
    """The straggler's extra work per step: ``reps`` matmuls, or a host sleep."""
    if sleep_s > 0:
        time.sleep(sleep_s)
        return a
    for _ in range(reps):
        a = torch.tanh(a @ a)
    return a


def calibrate(ms: float, device: str) -> tuple[torch.Tensor, int]:
    """A square matrix and the number of ``tanh(a @ a)`` rounds that take about ``ms`` milliseconds."""
    n = 2048 if device == "cuda" else 256
    a = torch.randn(n, n, device=device) / n**0.5
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    straggler_work(a, 3, 0.0)
    sync()
    reps = 5
    while True:
        t0 = time.perf_counter()
        straggler_work(a, reps, 0.0)
        sync()
        dt = time.perf_counter() - t0
        if dt > 0.05 or reps > 1_000_000:
            break
        reps *= 4
    return a, max(1, round(reps * (ms / 1000.0) / dt))


def stuck_in_python(step: int) -> None:
    """A hang on purpose: a Python loop that never returns (the watchdog dumps it)."""
    n = 0
    while True:
        n += 1
        if n % 100_000 == 0:
            time.sleep(0.01)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--seq", type=int, default=None)
    ap.add_argument("--size", choices=("auto", "tiny", "100m"), default="auto")
    ap.add_argument("--slow-rank", type=int, default=None, help="This rank is the straggler.")
    ap.add_argument("--slow-ms", type=float, default=40.0, help="Extra work per step on --slow-rank, in ms.")
    ap.add_argument("--slow-mode", choices=("compute", "sleep"), default="compute")
    ap.add_argument("--hang-rank", type=int, default=None, help="This rank hangs in a Python loop.")
    ap.add_argument("--hang-after", type=int, default=8, help="... at this step.")
    ap.add_argument("--log-every", type=int, default=10, help="Rank 0 prints the loss (a GPU sync) every N steps.")
    ap.add_argument("--pg-timeout-s", type=float, default=1800.0, help="Process-group timeout (blocked collectives fail after it).")
    args = ap.parse_args()

    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=args.pg_timeout_s))
    rank, world = dist.get_rank(), dist.get_world_size()

    # One global batch per step (each rank takes its shard): --batch is per rank.
    size = args.size if args.size != "auto" else ("100m" if cuda else "tiny")
    per_rank = args.batch or CONFIGS[size][5]
    model, opt, loader, cfg = build(size, per_rank * world, args.seq, steps=args.steps)
    device = cfg["device"]  # "cuda" is this rank's device (set_device above)
    ddp = DDP(model, device_ids=[local_rank] if cuda else None)

    slow = args.slow_rank == rank and args.slow_ms > 0
    extra, reps, sleep_s = None, 0, 0.0
    if slow:
        if args.slow_mode == "sleep":
            extra, sleep_s = torch.zeros(1), args.slow_ms / 1000.0
        else:
            extra, reps = calibrate(args.slow_ms, device)
    if rank == 0:
        params = sum(p.numel() for p in model.parameters())
        print(f"model: {params / 1e6:.1f}M parameters, {world} ranks on {device}, backend {dist.get_backend()}")
    if slow:
        print(f"rank {rank}: straggler, {args.slow_ms:g} ms extra per step ({args.slow_mode}"
              + (f", {reps} matmuls" if reps else "") + ")", flush=True)

    t0 = time.perf_counter()
    for step, data in enumerate(loader):
        if step >= args.steps:
            break
        if args.hang_rank == rank and step == args.hang_after:
            print(f"rank {rank}: hanging at step {step}", flush=True)
            stuck_in_python(step)
        data = data[rank::world]  # this rank's shard of the global batch
        loss = forward_loss(ddp, data, cfg)
        if slow:
            extra = straggler_work(extra, reps, sleep_s)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if rank == 0 and (step % args.log_every == 0 or step == args.steps - 1):
            print(f"step {step:4d} loss {loss.item():.3f}", flush=True)
    if rank == 0:
        print(f"{args.steps} steps in {time.perf_counter() - t0:.1f} s")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
