"""Overhead of perfkit's collection modes on a GPU, against the bare training loop.

    python scripts/bench_overhead.py [--rounds 5] [--steps 20] [--out DIR]

The example GPT (examples/train_gpt.py, ~100M parameters, bf16 autocast, fused
AdamW) runs in one process; the modes take turns round by round so drift of
the machine hits them alike:

* bare: the loop alone;
* light: a ``perfkit.profile(mode="light")`` session (step timers by CUDA
  events, memory counters; steps found by the optimizer hook);
* light+modules: the same plus ``perfkit.ModuleTimer(model)`` (depth 1);
* torch.profiler: full kernel tracing (CPU+CUDA activities) on every step.

Step time = GPU time between CUDA events at step boundaries, median over the
steps of a round, then the median over rounds. Overhead = mode / bare - 1.
Writes ``bench_overhead.json`` into --out and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples"))
sys.path.insert(0, str(REPO))


def main() -> None:
    import torch
    import train_gpt as ex

    import perfkit

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path("overhead-results"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    model, opt, loader, cfg = ex.build("100m", batch=args.batch, steps=4)
    batches = [b for b in loader]
    tmp = tempfile.mkdtemp()

    def run_steps(n: int) -> list[float]:
        evs = [torch.cuda.Event(enable_timing=True) for _ in range(n + 1)]
        evs[0].record()
        for i in range(n):
            loss = ex.forward_loss(model, batches[i % len(batches)], cfg)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            evs[i + 1].record()
        torch.cuda.synchronize()
        return [a.elapsed_time(b) for a, b in zip(evs, evs[1:])]

    @contextlib.contextmanager
    def mode_ctx(mode: str):
        if mode == "bare":
            yield
        elif mode == "light":
            with perfkit.profile(out=f"{tmp}/light", mode="light", report=False):
                yield
        elif mode == "light+modules":
            with perfkit.profile(out=f"{tmp}/mods", mode="light", report=False), perfkit.ModuleTimer(model):
                yield
        elif mode == "torch.profiler":
            acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
            with torch.profiler.profile(activities=acts):
                yield

    modes = ["bare", "light", "light+modules", "torch.profiler"]
    run_steps(10)  # warm-up: compile kernels, grow the allocator
    per_round: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(args.rounds):
        for mode in modes if r % 2 == 0 else list(reversed(modes)):
            with mode_ctx(mode):
                times = run_steps(args.steps)
            per_round[mode].append(statistics.median(times[3:]))
    base = statistics.median(per_round["bare"])
    result = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "batch": args.batch,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "step_ms": {m: {"median": statistics.median(v), "min": min(v), "max": max(v), "rounds": v}
                    for m, v in per_round.items()},
        "overhead": {m: statistics.median(v) / base - 1 for m, v in per_round.items()},
    }
    (args.out / "bench_overhead.json").write_text(json.dumps(result, indent=2))
    print(f"device {result['device']}, torch {result['torch']}, batch {args.batch} x 1024 tokens")
    print(f"{'mode':16s} {'step ms':>9s} {'min':>8s} {'max':>8s} {'overhead':>9s}")
    for m in modes:
        s = result["step_ms"][m]
        print(f"{m:16s} {s['median']:9.2f} {s['min']:8.2f} {s['max']:8.2f} {result['overhead'][m]:+9.2%}")


if __name__ == "__main__":
    main()
