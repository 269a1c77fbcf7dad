"""What torch.profiler's recording options cost on a GPU, and perfkit's verdicts on GPU-bound runs.

    python scripts/validate_recording_cost.py --out DIR [--models gpt150m,gpt2] [--steps 8]

For each model (the example GPT at ~150M parameters, bf16 autocast, fused AdamW,
batch 8x1024; GPT-2 124M from transformers, bf16 autocast, AdamW, batch
8x1024, when transformers is installed):

1. **Truth, bare.** Two kinds of step, no profiler:
   * *elapsed*: steps back to back, CUDA events at the step boundaries: the
     step time the run sees;
   * *busy*: each step starts with ``torch.cuda._sleep`` long enough for the
     CPU to queue the whole step behind it, so CUDA events after the sleep
     and after forward, backward and the optimizer bracket back-to-back
     kernels: the GPU busy time per phase. The CPU time to issue the step
     (perf_counter, no sync inside the step) is the host cost.
   The step is GPU-bound when the host cost is below the GPU busy time.
2. **Recording options.** The same two kinds of step under ``torch.profiler``
   (CPU + CUDA activities) with nothing else, perfkit's stack sampler, ``with_stack``,
   ``record_shapes``, ``profile_memory``, and all three. Each trace is read
   back to count, per step, the events each option adds (Python frames, ops
   with shapes, memory events, ops and runtime calls). The extra host time per
   added event is the option's per-event cost.
3. **perfkit profile** on the unmodified scripts (default options), and
   ``perfkit analyze`` on the trace it wrote: phases against the busy-time
   truth and the findings, for the CLI path (runtime facts known) and the
   trace-only path.

Writes ``recording_cost.json`` and the perfkit run directories into --out.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples"))
sys.path.insert(0, str(REPO / "examples" / "frameworks"))

CONFIGS: dict[str, dict[str, bool]] = {
    "profiler": {},
    "stack_sampler": {},  # the plain profiler plus perfkit's stack sampler (perfkit profile's default)
    "with_stack": {"with_stack": True},
    "record_shapes": {"record_shapes": True},
    "profile_memory": {"profile_memory": True},
    "all": {"with_stack": True, "record_shapes": True, "profile_memory": True},
}


def make_model(name: str) -> tuple[Callable[[int], Any], list[tuple[str, Callable[[Any], Any]]], str]:
    """(batch for step i, [(phase, fn)], script command) for a model."""
    import torch

    if name == "gpt150m":
        import train_gpt as ex

        model, opt, loader, cfg = ex.build("150m", batch=8, steps=400)
        # The script's own DataLoader (random tokens made in the main process), as the script runs it.
        state = {"it": iter(loader)}

        def next_batch(_: int) -> Any:
            try:
                return next(state["it"])
            except StopIteration:
                state["it"] = iter(loader)
                return next(state["it"])

        def fwd(data: Any) -> Any:
            return ex.forward_loss(model, data, cfg)

        def opt_step(_: Any) -> None:
            opt.step()
            opt.zero_grad(set_to_none=True)

        script = [str(REPO / "examples" / "train_gpt.py"), "--size", "150m", "--batch", "8"]
        return next_batch, [("forward", fwd), ("backward", lambda loss: loss.backward()),
                            ("optimizer", opt_step)], json.dumps(script)
    if name == "gpt2":
        import hf_gpt2_loop as hf

        model, opt, cfg = hf.build(8, 1024, True)
        g = torch.Generator().manual_seed(0)
        batches = [torch.randint(0, cfg.vocab_size, (8, 1024), generator=g) for _ in range(4)]

        def fwd(ids: Any) -> Any:
            ids = ids.to("cuda", non_blocking=True)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                return model(input_ids=ids, labels=ids).loss

        def opt_step(_: Any) -> None:
            opt.step()
            opt.zero_grad(set_to_none=True)

        script = [str(REPO / "examples" / "frameworks" / "hf_gpt2_loop.py"), "--batch", "8", "--seq", "1024"]
        return (lambda i: batches[i % len(batches)]), [("forward", fwd), ("backward", lambda loss: loss.backward()),
                                                        ("optimizer", opt_step)], json.dumps(script)
    raise SystemExit(f"unknown model {name}")


def run_steps(batch: Callable[[int], Any], parts: list[tuple[str, Callable[[Any], Any]]], n: int,
              sleep_cycles: int = 0, on_step: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """n steps; with sleep_cycles, the busy-time kind (see the module docstring)."""
    import torch

    out: dict[str, list[float]] = {"elapsed_ms": [], "host_ms": [], **{f"{p}_ms": [] for p, _ in parts}}
    if sleep_cycles == 0:
        evs = [torch.cuda.Event(enable_timing=True) for _ in range(n + 1)]
        evs[0].record()
        for i in range(n):
            x = batch(i)
            for _, fn in parts:
                x = fn(x)
            evs[i + 1].record()
            on_step()
        torch.cuda.synchronize()
        out["elapsed_ms"] = [evs[i].elapsed_time(evs[i + 1]) for i in range(n)]
        return out
    for i in range(n):
        # Each phase behind its own sleep: a whole step can hold more kernels than the launch queue
        # (about 1,000), which would block the host and count the sleep as host time.
        x = batch(i)
        host = 0.0
        for p, fn in parts:
            torch.cuda.synchronize()
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            t0 = time.perf_counter()
            torch.cuda._sleep(sleep_cycles)
            a.record()
            x = fn(x)
            b.record()
            host += time.perf_counter() - t0
            torch.cuda.synchronize()
            out[f"{p}_ms"].append(a.elapsed_time(b))
        out["host_ms"].append(host * 1000.0)
        on_step()
    return out


def sleep_cycles_for(ms: float) -> int:
    import torch

    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    torch.cuda._sleep(10_000_000)
    b.record()
    torch.cuda.synchronize()
    per_ms = 10_000_000 / max(a.elapsed_time(b), 1e-3)
    return int(per_ms * ms)


def med(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def count_events(trace_path: str) -> dict[str, Any]:
    """Per-ProfilerStep medians of what the trace recorded (events starting inside each step's CPU window)."""
    import bisect

    with (gzip.open if trace_path.endswith(".gz") else open)(trace_path, "rt") as f:
        doc = json.load(f)
    ev = [e for e in doc.get("traceEvents", []) if isinstance(e, dict) and isinstance(e.get("ts"), (int, float))]
    steps = sorted((float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0))) for e in ev
                   if str(e.get("name", "")).startswith("ProfilerStep#") and e.get("cat") in ("cpu_op", "user_annotation"))
    kinds: dict[str, Callable[[dict[str, Any]], bool]] = {
        "python_function": lambda e: e.get("cat") == "python_function",
        "cpu_op": lambda e: e.get("cat") == "cpu_op",
        "cpu_op_with_shapes": lambda e: e.get("cat") == "cpu_op" and bool((e.get("args") or {}).get("Input Dims")),
        "cuda_runtime": lambda e: e.get("cat") in ("cuda_runtime", "cuda_driver"),
        "memory": lambda e: e.get("name") == "[memory]",
    }
    out: dict[str, Any] = {"steps": len(steps), "kernels_in_trace": sum(1 for e in ev if e.get("cat") == "kernel")}
    for key, pred in kinds.items():
        ts = sorted(float(e["ts"]) for e in ev if pred(e))
        per_step = [bisect.bisect_left(ts, hi) - bisect.bisect_left(ts, lo) for lo, hi in steps]
        out[key] = med([float(x) for x in per_step]) if per_step else 0.0
    return out


def recording_options(model_name: str, steps: int, tmp: str, configs: tuple[str, ...] = tuple(CONFIGS)) -> dict[str, Any]:
    import torch
    from torch.profiler import ProfilerActivity, profile, schedule

    batch, parts, script = make_model(model_name)
    run_steps(batch, parts, 6)  # warm-up: allocator, cuBLAS handles, autotuning
    run_steps(batch, parts, 3, sleep_cycles=sleep_cycles_for(50))
    bare_elapsed = run_steps(batch, parts, steps)
    probe = run_steps(batch, parts, 3, sleep_cycles=sleep_cycles_for(50))
    host_guess = max(probe["host_ms"])
    cycles = sleep_cycles_for(max(4 * host_guess, 60.0))
    bare_busy = run_steps(batch, parts, steps, sleep_cycles=cycles)
    result: dict[str, Any] = {
        "bare": {"elapsed_ms": med(bare_elapsed["elapsed_ms"]), "host_ms": med(bare_busy["host_ms"]),
                 **{f"{p}_busy_ms": med(bare_busy[f"{p}_ms"]) for p, _ in parts}},
        "script": json.loads(script),
    }
    result["bare"]["busy_ms"] = sum(result["bare"][f"{p}_busy_ms"] for p, _ in parts)
    for name, opts in CONFIGS.items():
        if name != "profiler" and name not in configs:
            continue
        path = os.path.join(tmp, f"{model_name}_{name}.pt.trace.json.gz")
        prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA],
                       schedule=schedule(wait=0, warmup=2, active=2 * steps, repeat=1),
                       on_trace_ready=lambda p, path=path: p.export_chrome_trace(path), **opts)
        sampler = None
        if name == "stack_sampler":
            sys.path.insert(0, str(REPO))
            from perfkit.collect.stacks import StackSampler

            sampler = StackSampler()
        with prof:
            run_steps(batch, parts, 2, on_step=prof.step)  # the profiler's warm-up steps
            if sampler is not None:
                sampler.start()
            el = run_steps(batch, parts, steps, on_step=prof.step)
            # Busy-time kind: the sleep must cover the slower host of this option.
            hb = run_steps(batch, parts, steps, sleep_cycles=sleep_cycles_for(max(8 * host_guess, 150.0)), on_step=prof.step)
            if sampler is not None:
                sampler.stop()
        counts = count_events(path)
        if sampler is not None:
            counts["stack_samples"] = len(sampler.ts_us) / (2.0 * steps)
        result[name] = {"elapsed_ms": med(el["elapsed_ms"]), "host_ms": med(hb["host_ms"]),
                        "busy_ms": sum(med(hb[f"{p}_ms"]) for p, _ in parts), "events_per_step": counts,
                        "trace_bytes": os.path.getsize(path)}
        os.remove(path)
        torch.cuda.synchronize()
    # Per-event cost of each option: extra host time over the plain profiler / events it added per step.
    base = result["profiler"]
    per_event: dict[str, Any] = {
        "profiler_per_op_us": (base["host_ms"] - result["bare"]["host_ms"]) * 1000.0
        / max(base["events_per_step"]["cpu_op"] + base["events_per_step"]["cuda_runtime"], 1.0),
    }
    for name, key in (("with_stack", "python_function"), ("record_shapes", "cpu_op_with_shapes"),
                      ("profile_memory", "memory")):
        if name not in result:
            continue
        added = result[name]["events_per_step"][key] - base["events_per_step"][key]
        per_event[f"{name}_per_event_us"] = ((result[name]["host_ms"] - base["host_ms"]) * 1000.0 / added
                                            if added > 0 else None)
        per_event[f"{name}_events_per_step"] = added
    if "stack_sampler" in result:
        samples = result["stack_sampler"]["events_per_step"].get("stack_samples") or 0.0
        per_event["stack_sampler_per_sample_us"] = ((result["stack_sampler"]["host_ms"] - base["host_ms"]) * 1000.0
                                                    / samples if samples > 0 else None)
        per_event["stack_sampler_samples_per_step"] = samples
    result["per_event_cost"] = per_event
    return result


def perfkit_runs(model_name: str, script: list[str], out: Path, truth: dict[str, Any],
                 options: tuple[str, ...] = (), label: str = "profile") -> dict[str, Any]:
    """perfkit profile (default options, or ``options``) on the unmodified script, then perfkit analyze on its trace."""
    run = out / f"{model_name}_{label}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    cmd = [sys.executable, "-m", "perfkit", "profile", "--quiet", "--out", str(run), *options, *script, "--steps", "30"]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    (out / f"{model_name}_{label}_stderr.txt").write_text(proc.stderr[-20000:])
    res: dict[str, Any] = {"command": " ".join(cmd[1:]), "exit": proc.returncode, "wall_s": round(time.time() - t0, 1)}
    doc_path = run / "analysis.json"
    if not doc_path.exists():
        return res
    doc = json.loads(doc_path.read_text())
    res["cli"] = summarise(doc, truth)
    traces = sorted(run.glob("*.pt.trace.json*"))
    if traces:
        only = out / f"{model_name}_{label}_trace_only.json"
        proc = subprocess.run([sys.executable, "-m", "perfkit", "analyze", str(traces[0]), "--json", str(only)],
                              capture_output=True, text=True, env=env)
        if only.exists():
            res["trace_only"] = summarise(json.loads(only.read_text()), truth)
    return res


def summarise(doc: dict[str, Any], truth: dict[str, Any]) -> dict[str, Any]:
    busy = sum(truth[f"{p}_busy_ms"] for p in ("forward", "backward", "optimizer"))
    phases = {p: (doc.get("phases") or {}).get(p, {}).get("share") for p in ("forward", "backward", "optimizer", "other")}
    diff = {p: round(100 * (phases[p] - truth[f"{p}_busy_ms"] / busy), 2) for p in ("forward", "backward", "optimizer")
            if phases.get(p) is not None}
    rt = doc.get("runtime") or {}
    return {
        "phases": phases,
        "truth_shares": {p: truth[f"{p}_busy_ms"] / busy for p in ("forward", "backward", "optimizer")},
        "phase_diff_points": diff,
        "gpu_busy_ms_per_step": (doc.get("device") or {}).get("busy_ms_per_step"),
        "traced_step_wall_ms": (doc.get("steps") or {}).get("wall_ms_median"),
        "recording": doc.get("recording"),
        "run_step_wall_ms_median": (rt.get("steps") or {}).get("wall_ms_median"),
        "run_step_gpu_ms_median": (rt.get("steps") or {}).get("gpu_ms_median"),
        "run_steps": {k: (rt.get("steps") or {}).get(k) for k in ("wall_ms", "gpu_ms")},
        "findings": [(f["id"], f["severity"], f["title"]) for f in doc.get("findings", [])],
    }


def host_cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "unknown")
    except OSError:
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("recording-cost"))
    ap.add_argument("--models", default="gpt150m,gpt2")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--configs", default=",".join(CONFIGS),
                    help="recording options to measure (profiler is always measured: the others are costed against it)")
    ap.add_argument("--no-stack-run", action="store_true", help="skip the perfkit profile --stack run")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    results: dict[str, Any] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                               "python": sys.version.split()[0], "host_cpu": host_cpu(), "models": {}}
    tmp = tempfile.mkdtemp()
    for name in args.models.split(","):
        try:
            r = recording_options(name, args.steps, tmp, tuple(args.configs.split(",")))
        except ImportError as exc:
            results["models"][name] = {"skipped": str(exc)}
            continue
        torch.cuda.empty_cache()
        r["perfkit"] = perfkit_runs(name, r["script"], args.out, r["bare"])
        if not args.no_stack_run:
            r["perfkit_with_stack"] = perfkit_runs(name, r["script"], args.out, r["bare"], ("--stack",), "profile_stack")
        results["models"][name] = r
        (args.out / "recording_cost.json").write_text(json.dumps(results, indent=2))
        print(json.dumps({name: {k: r[k] for k in ("bare", "per_event_cost")}}, indent=1), flush=True)
        for k in CONFIGS:
            if k in r:
                print(name, k, {x: r[k][x] for x in ("elapsed_ms", "host_ms", "busy_ms")}, r[k]["events_per_step"], flush=True)
        print(json.dumps({k: r[k] for k in ("perfkit", "perfkit_with_stack") if k in r}, indent=1), flush=True)
    (args.out / "recording_cost.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
