"""Validate ``perfkit profile`` on a GPU against CUDA-event timings and torch.cuda counters.

    python scripts/validate_profile.py --out results/ [--steps 30]

1. Truth: the example GPT (examples/train_gpt.py, ~100M parameters, bf16
   autocast, fused AdamW) runs without any profiler; CUDA events on the
   current stream at step start, after the loss, after backward and after
   the optimizer give forward / backward / optimizer GPU time per step. The
   run also records torch.cuda.max_memory_allocated and the bytes of weights,
   gradients and optimizer state.
2. ``python -m perfkit profile examples/train_gpt.py`` runs the unmodified
   script in a fresh process; its analysis.json gives the phase shares (from
   the trace) and the memory breakdown (from the live run).
3. The two are compared: phase shares within 3 percentage points, memory parts
   exact (weights, gradients, optimizer state) and the steady peak within 10%.

Writes ``validate_profile.json`` into --out and prints a table; exit code 1 if
a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Large enough that the GPU, not the CPU, bounds the step, with and without the profiler
#: (CUDA-event phase times then measure GPU work, which is what the trace attributes).
BATCH = 32
sys.path.insert(0, str(REPO / "examples"))
sys.path.insert(0, str(REPO))


def truth(steps: int, warmup: int) -> dict:
    import torch
    import train_gpt as ex

    model, opt, loader, cfg = ex.build("100m", batch=BATCH, steps=steps + warmup)
    timed = []
    it = iter(loader)
    for i in range(steps + warmup):
        data = next(it)
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        ev[0].record()
        loss = ex.forward_loss(model, data, cfg)
        ev[1].record()
        loss.backward()
        ev[2].record()
        opt.step()
        opt.zero_grad(set_to_none=True)
        ev[3].record()
        if i == warmup - 1:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        if i >= warmup:
            timed.append(ev)
    torch.cuda.synchronize()
    f = [e[0].elapsed_time(e[1]) for e in timed]
    b = [e[1].elapsed_time(e[2]) for e in timed]
    o = [e[2].elapsed_time(e[3]) for e in timed]
    med = {k: statistics.median(v) for k, v in (("forward", f), ("backward", b), ("optimizer", o))}
    tot = sum(med.values())
    seen: set[int] = set()
    weights = grads = state = 0
    for p in model.parameters():
        if p.data_ptr() in seen:
            continue
        seen.add(p.data_ptr())
        weights += p.numel() * p.element_size()
    for st in opt.state.values():
        for v in st.values():
            if torch.is_tensor(v):
                state += v.numel() * v.element_size()
    grads = weights  # every parameter gets a gradient of its own size
    return {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "median_ms": med,
        "shares": {k: v / tot for k, v in med.items()},
        "peak_allocated_bytes": int(torch.cuda.max_memory_allocated()),
        "weights_bytes": weights,
        "gradients_bytes": grads,
        "optimizer_state_bytes": state,
    }


def profiled(out: Path, steps: int, extra: tuple[str, ...] = (), name: str = "profile_run") -> dict:
    run = out / name
    cmd = [sys.executable, "-m", "perfkit", "profile", "--quiet", "--out", str(run), *extra,
           str(REPO / "examples" / "train_gpt.py"), "--steps", str(steps), "--size", "100m", "--batch", str(BATCH)]
    t0 = time.time()
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path})
    (out / f"{name}_stderr.txt").write_text(proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"perfkit profile failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    doc = json.loads((run / "analysis.json").read_text())
    doc["_wall_s"] = time.time() - t0
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("validate-results"))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=10)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    t = truth(args.steps, args.warmup)
    doc = profiled(args.out, args.steps)
    mem = doc["runtime"]["memory"]
    checks = []
    for phase in ("forward", "backward", "optimizer"):
        got = doc["phases"][phase]["share"]
        want = t["shares"][phase]
        checks.append((f"{phase} share", got, want, abs(got - want) <= 0.03, "within 3 points"))
    for key in ("weights_bytes", "gradients_bytes", "optimizer_state_bytes"):
        checks.append((key, mem.get(key), t[key], mem.get(key) == t[key], "exact"))
    peak = mem.get("peak_bytes") or 0
    steady_peaks = mem.get("step_peak_bytes", [])[6:] or [peak]
    steady = statistics.median(steady_peaks)
    checks.append(("steady step peak bytes", steady, t["peak_allocated_bytes"],
                   abs(steady - t["peak_allocated_bytes"]) <= 0.10 * t["peak_allocated_bytes"], "within 10%"))
    # Second run with the module hooks and FLOP counting on: module table,
    # activation memory per module, forward/backward peaks and MFU.
    hooked = profiled(args.out, args.steps, ("--modules", "--flops"), "profile_run_modules")
    hrt = hooked["runtime"]
    hmem = hrt["memory"]
    rows = hrt.get("modules", [])
    acts = hmem.get("activations", {}).get("modules", [])
    checks.append(("module rows (blocks + others)", len(rows), 12, len(rows) == 12, "8 blocks, tok, pos, ln, head"))
    checks.append(("activation rows", len(acts), len(rows), len(acts) >= 8, "one per module with activations"))
    checks.append(("forward peak < step peak", hmem.get("peak_forward_bytes", 0), hmem.get("peak_bytes", 0),
                   0 < hmem.get("peak_forward_bytes", 0) <= hmem.get("peak_bytes", 0), "forward peak is part of the step"))
    mfu_value = hrt.get("mfu")
    checks.append(("MFU", mfu_value or 0.0, 1.0, mfu_value is not None and 0.05 < mfu_value < 1.0, "known device, 5-100%"))
    ratio = hrt["steps"]["gpu_ms_median"] / doc["runtime"]["steps"]["gpu_ms_median"]
    checks.append(("step time with hooks / without", ratio, 1.0, ratio < 1.03, "module timers cost < 3%"))
    result = {
        "hooked_run": {"modules": rows, "activations": hmem.get("activations"), "flops_per_step": hrt.get("flops_per_step"),
                       "mfu": mfu_value, "mfu_dtype": hrt.get("mfu_dtype"), "peak_forward_bytes": hmem.get("peak_forward_bytes"),
                       "peak_backward_bytes": hmem.get("peak_backward_bytes"), "steps": hrt["steps"]},
        "truth": t,
        "perfkit": {"phases": doc["phases"], "memory": mem, "steps": doc["steps"]["ids"],
                    "runtime_steps": doc["runtime"]["steps"], "warnings": doc["trace"]["warnings"]},
        "checks": [{"name": n, "perfkit": g, "truth": w, "ok": ok, "rule": r} for n, g, w, ok, r in checks],
    }
    (args.out / "validate_profile.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"device {t['device']}, torch {t['torch']}")
    print(f"{'check':28s} {'perfkit':>16s} {'truth':>16s}  ok")
    for n, g, w, ok, r in checks:
        fmt = (lambda v: f"{v:.4f}") if isinstance(w, float) and w < 1.5 else (lambda v: f"{v:,}")
        print(f"{n:28s} {fmt(g):>16s} {fmt(w):>16s}  {'PASS' if ok else 'FAIL'} ({r})")
    sys.exit(0 if all(c[3] for c in checks) else 1)


if __name__ == "__main__":
    main()
