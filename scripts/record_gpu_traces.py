#!/usr/bin/env python3
"""Record real GPU profiler traces plus CUDA-event ground truth for perfkit tests.

Trains a GPT-style decoder LM (~100M non-embedding parameters) on random tokens
and, for each variant, produces:

  <outdir>/<variant>/truth.json               CUDA-event phase timings, no profiler
  <outdir>/<variant>/rank0.pt.trace.json.gz   torch.profiler chrome trace (gzip)

Variants (default batch 32 and 8 respectively, see DEFAULT_BATCH):
  bf16_adamw  autocast(bfloat16) + torch.optim.AdamW() defaults (foreach),
              profiled with with_stack=True (python_function events)
  fp32_sgd    plain fp32 (no autocast) + torch.optim.SGD(lr, momentum=0.9),
              profiled with profiler defaults (with_stack=False)

Model: 8 pre-LayerNorm blocks, d_model 1024, 16 heads, MLP 4x with GELU,
learned positional embeddings, vocab 32000, seq_len 1024, causal attention via
F.scaled_dot_product_attention(is_causal=True). The LM head is TIED to the token
embedding. Random token data is generated on the GPU up front (no data loader).

The profiled loop deliberately contains no user annotations (no
record_function) and no torch.cuda.synchronize(): the trace is the plain,
realistic case where the CPU runs ahead of the GPU, so some kernels executed in
the profiled window were launched before it.

Only torch and the standard library are needed. Needs a CUDA GPU.

Usage:
  python scripts/record_gpu_traces.py --variant all --outdir traces_out
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gzip
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

VARIANTS = ("bf16_adamw", "fp32_sgd")
# Default batch per variant, chosen so that the GPU work of a step clearly exceeds
# the CPU time to issue it *while profiling*. with_stack=True roughly triples the
# CPU cost of a bf16_adamw step (~43 ms on an H200 at batch 8 vs ~23 ms of GPU
# work, i.e. CPU-bound), so bf16_adamw uses batch 32 (~90 ms of GPU work).
DEFAULT_BATCH = {"bf16_adamw": 32, "fp32_sgd": 8}
TRACE_NAME = "rank0.pt.trace.json.gz"
TRUTH_NAME = "truth.json"


# --------------------------------------------------------------------------- model


@dataclass
class GPTConfig:
    vocab_size: int = 32000
    seq_len: int = 1024
    n_layer: int = 8
    n_head: int = 16
    d_model: int = 1024
    mlp_ratio: int = 4
    tied_embeddings: bool = True


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q = q.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
        k = k.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
        v = v.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(b, t, c)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model)
        self.act = nn.GELU()
        self.out = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.fc(x)))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        x = x + self.mlp(self.ln2(x))
        return x


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.seq_len, cfg.d_model)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tied_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        pos = torch.arange(t, device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(pos)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def param_counts(model: nn.Module) -> dict:
    total = sum(p.numel() for p in model.parameters())  # tied weight counted once
    emb = model.tok_emb.weight.numel() + model.pos_emb.weight.numel()
    return {"total": total, "non_embedding": total - emb, "embedding": emb}


# --------------------------------------------------------------------------- training


@dataclass
class RunSpec:
    variant: str
    batch: int
    seq_len: int
    amp_dtype: str | None  # "bfloat16" or None
    optimizer: str
    optimizer_kwargs: dict
    with_stack: bool


def make_spec(variant: str, batch: int, seq_len: int, sgd_lr: float) -> RunSpec:
    if variant == "bf16_adamw":
        return RunSpec(variant, batch, seq_len, "bfloat16", "AdamW", {}, True)
    if variant == "fp32_sgd":
        return RunSpec(variant, batch, seq_len, None, "SGD",
                       {"lr": sgd_lr, "momentum": 0.9}, False)
    raise ValueError(f"unknown variant {variant!r}")


class Trainer:
    """Model + optimizer + random data. step() is the exact loop body used for
    both the truth run and the traced run; `marks` optionally receives CUDA
    events at the phase boundaries (truth run only)."""

    def __init__(self, spec: RunSpec, cfg: GPTConfig, device: torch.device,
                 n_batches: int = 4, seed: int = 0):
        torch.manual_seed(seed)
        self.spec = spec
        self.device = device
        self.model = GPT(cfg).to(device)
        self.model.train()
        if cfg.tied_embeddings:
            assert self.model.lm_head.weight is self.model.tok_emb.weight
        opt_cls = getattr(torch.optim, spec.optimizer)
        self.optimizer = opt_cls(self.model.parameters(), **spec.optimizer_kwargs)
        self.amp_dtype = getattr(torch, spec.amp_dtype) if spec.amp_dtype else None
        g = torch.Generator(device=device)
        g.manual_seed(seed + 1)
        # random tokens generated on the device up front; rotate among a few batches
        self.data = torch.randint(0, cfg.vocab_size, (n_batches, spec.batch, spec.seq_len + 1),
                                  device=device, generator=g)
        self.i = 0
        self.last_loss: torch.Tensor | None = None

    def step(self, marks: list | None = None) -> None:
        tokens = self.data[self.i % self.data.shape[0]]
        self.i += 1
        x, y = tokens[:, :-1], tokens[:, 1:]
        if marks is not None:
            marks[0].record()
        if self.amp_dtype is not None:
            with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype):
                logits = self.model(x)
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))
        else:
            logits = self.model(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))
        if marks is not None:
            marks[1].record()
        loss.backward()
        if marks is not None:
            marks[2].record()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if marks is not None:
            marks[3].record()
        self.last_loss = loss.detach()


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def measure_truth(spec: RunSpec, cfg: GPTConfig, device: torch.device,
                  warmup: int, steps: int) -> dict:
    tr = Trainer(spec, cfg, device)
    for _ in range(warmup):
        tr.step()
    torch.cuda.synchronize()

    ev = [[torch.cuda.Event(enable_timing=True) for _ in range(4)] for _ in range(steps)]
    end_ev = torch.cuda.Event(enable_timing=True)
    cpu_issue_ms = []
    t0 = time.perf_counter()
    for s in range(steps):
        c0 = time.perf_counter()
        tr.step(ev[s])
        cpu_issue_ms.append((time.perf_counter() - c0) * 1e3)
    end_ev.record()  # stands in for "start of step N+1"
    torch.cuda.synchronize()
    wall_total_ms = (time.perf_counter() - t0) * 1e3
    final_loss = float(tr.last_loss.item())

    fwd, bwd, opt, step_gpu, interval = [], [], [], [], []
    for s in range(steps):
        e = ev[s]
        fwd.append(e[0].elapsed_time(e[1]))
        bwd.append(e[1].elapsed_time(e[2]))
        opt.append(e[2].elapsed_time(e[3]))
        step_gpu.append(e[0].elapsed_time(e[3]))
        nxt = ev[s + 1][0] if s + 1 < steps else end_ev
        interval.append(e[0].elapsed_time(nxt))
    shares = []
    for f, b, o in zip(fwd, bwd, opt):
        tot = f + b + o
        shares.append({"forward": f / tot, "backward": b / tot, "optimizer": o / tot})

    med = {
        "forward_ms": _median(fwd),
        "backward_ms": _median(bwd),
        "optimizer_ms": _median(opt),
        "step_gpu_ms": _median(step_gpu),
        "step_interval_ms": _median(interval),
        "cpu_issue_ms": _median(cpu_issue_ms),
    }
    phase_sum = med["forward_ms"] + med["backward_ms"] + med["optimizer_ms"]
    med_shares = {
        "forward": med["forward_ms"] / phase_sum,
        "backward": med["backward_ms"] / phase_sum,
        "optimizer": med["optimizer_ms"] / phase_sum,
    }
    share_medians = {k: _median([s[k] for s in shares]) for k in ("forward", "backward", "optimizer")}

    counts = param_counts(tr.model)
    del tr
    torch.cuda.empty_cache()
    return {
        "warmup_steps": warmup,
        "timed_steps": steps,
        "per_step": {
            "forward_ms": fwd,
            "backward_ms": bwd,
            "optimizer_ms": opt,
            "step_gpu_ms": step_gpu,
            "step_interval_ms": interval,
            "cpu_issue_ms": cpu_issue_ms,
        },
        "median": med,
        "shares_of_median": med_shares,
        "median_of_shares": share_medians,
        "wall_ms_per_step": wall_total_ms / steps,
        "wall_total_ms": wall_total_ms,
        # first timed step is issued right after a synchronize, i.e. with an empty
        # launch queue: its CPU issue time is the unthrottled CPU cost of a step.
        # Later steps block on the full launch queue, so their issue time ~= GPU time.
        "cpu_issue_unthrottled_ms": cpu_issue_ms[0],
        "gpu_bound": cpu_issue_ms[0] < med["step_gpu_ms"],
        "final_loss": final_loss,
        "param_counts": counts,
    }


def record_trace(spec: RunSpec, cfg: GPTConfig, device: torch.device, path: str,
                 wait: int, warmup: int, active: int) -> dict:
    tr = Trainer(spec, cfg, device)
    done = {"n": 0}

    def on_trace_ready(prof: torch.profiler.profile) -> None:
        prof.export_chrome_trace(path)  # .json.gz suffix -> gzip output
        done["n"] += 1

    sched = torch.profiler.schedule(wait=wait, warmup=warmup, active=active, repeat=1)
    total_steps = wait + warmup + active + 1
    t0 = time.perf_counter()
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA],
        schedule=sched,
        on_trace_ready=on_trace_ready,
        record_shapes=False,
        profile_memory=False,
        with_stack=spec.with_stack,
    ) as prof:
        for _ in range(total_steps):
            tr.step()
            prof.step()
    torch.cuda.synchronize()
    wall_s = time.perf_counter() - t0
    if done["n"] != 1:
        raise RuntimeError(f"expected exactly one trace export, got {done['n']}")
    del tr, prof
    torch.cuda.empty_cache()
    return {
        "file": os.path.basename(path),
        "bytes": os.path.getsize(path),
        "schedule": {"wait": wait, "warmup": warmup, "active": active, "repeat": 1},
        "steps_run": total_steps,
        "activities": ["CPU", "CUDA"],
        "with_stack": spec.with_stack,
        "record_shapes": False,
        "profile_memory": False,
        "wall_s": wall_s,
    }


def quick_trace_stats(path: str) -> dict:
    with gzip.open(path, "rt") as f:
        doc = json.load(f)
    evs = doc.get("traceEvents", [])
    by_cat: dict[str, int] = {}
    for e in evs:
        by_cat[e.get("cat", "")] = by_cat.get(e.get("cat", ""), 0) + 1
    cpu_steps = [e for e in evs if e.get("cat") == "user_annotation"
                 and str(e.get("name", "")).startswith("ProfilerStep#")]
    gpu = sorted((e for e in evs if e.get("cat") in ("kernel", "gpu_memset", "gpu_memcpy")),
                 key=lambda e: e["ts"])
    launches = {e["args"]["correlation"]: e for e in evs
                if e.get("cat") in ("cuda_runtime", "cuda_driver") and "correlation" in e.get("args", {})}
    # GPU busy fraction over the span of the recorded GPU activity
    busy, cur = 0.0, None
    for e in gpu:
        a, b = e["ts"], e["ts"] + e.get("dur", 0)
        if cur is None or a > cur[1]:
            if cur is not None:
                busy += cur[1] - cur[0]
            cur = [a, b]
        else:
            cur[1] = max(cur[1], b)
    if cur is not None:
        busy += cur[1] - cur[0]
    span = (max(e["ts"] + e.get("dur", 0) for e in gpu) - gpu[0]["ts"]) if gpu else 0.0
    lags = sorted(e["ts"] - launches[e["args"]["correlation"]]["ts"] for e in gpu
                  if e.get("args", {}).get("correlation") in launches)
    return {
        "events": len(evs),
        "by_cat": by_cat,
        "profiler_steps": len(cpu_steps),
        "cpu_profiler_step_ms": [e["dur"] / 1e3 for e in sorted(cpu_steps, key=lambda e: e["ts"])],
        "gpu_ops": len(gpu),
        "gpu_ops_launched_before_window": sum(
            1 for e in gpu if e.get("args", {}).get("correlation") not in launches),
        "gpu_busy_fraction": busy / span if span else 0.0,
        "median_launch_to_start_ms": (lags[len(lags) // 2] / 1e3) if lags else None,
    }


# --------------------------------------------------------------------------- main


def run_variant(variant: str, args: argparse.Namespace, cfg: GPTConfig,
                device: torch.device) -> dict:
    batch = args.batch if args.batch is not None else DEFAULT_BATCH[variant]
    spec = make_spec(variant, batch, cfg.seq_len, args.sgd_lr)
    out = os.path.join(args.outdir, variant)
    os.makedirs(out, exist_ok=True)
    print(f"[{variant}] batch {batch}; truth: warmup {args.warmup} + timed {args.steps} steps",
          flush=True)
    truth = measure_truth(spec, cfg, device, args.warmup, args.steps)
    m = truth["median"]
    print(f"[{variant}] fwd {m['forward_ms']:.2f} ms  bwd {m['backward_ms']:.2f} ms  "
          f"opt {m['optimizer_ms']:.2f} ms  step {m['step_gpu_ms']:.2f} ms  "
          f"cpu issue {m['cpu_issue_ms']:.2f} ms  loss {truth['final_loss']:.3f}", flush=True)

    trace_path = os.path.join(out, TRACE_NAME)
    active = args.active
    print(f"[{variant}] trace: wait {args.wait} warmup {args.prof_warmup} active {active} "
          f"with_stack={spec.with_stack}", flush=True)
    tinfo = record_trace(spec, cfg, device, trace_path, args.wait, args.prof_warmup, active)
    tinfo["reduced_active_for_size"] = False
    limit = args.max_trace_mb * 1e6
    if tinfo["bytes"] > limit and active > 2:
        print(f"[{variant}] trace is {tinfo['bytes'] / 1e6:.2f} MB > {args.max_trace_mb} MB; "
              f"re-recording with active=2", flush=True)
        first_bytes = tinfo["bytes"]
        tinfo = record_trace(spec, cfg, device, trace_path, args.wait, args.prof_warmup, 2)
        tinfo["reduced_active_for_size"] = True
        tinfo["bytes_with_active_%d" % active] = first_bytes
    if tinfo["bytes"] > limit:
        print(f"[{variant}] WARNING: trace still {tinfo['bytes'] / 1e6:.2f} MB", flush=True)
    tinfo["stats"] = quick_trace_stats(trace_path)
    if tinfo["stats"]["gpu_busy_fraction"] < 0.9:
        print(f"[{variant}] WARNING: GPU busy only {tinfo['stats']['gpu_busy_fraction']:.0%} of "
              f"the traced window: the profiled run is CPU-bound; use a larger --batch", flush=True)

    doc = {
        "schema": "perfkit.truth/v1",
        "variant": variant,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python"] + sys.argv),
        "device_name": torch.cuda.get_device_name(device),
        "device_capability": list(torch.cuda.get_device_capability(device)),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "python_version": platform.python_version(),
        "model": {"type": "GPT decoder, pre-LayerNorm, learned positional embeddings",
                  **asdict(cfg), "param_count": truth["param_counts"]["total"],
                  "param_counts": truth["param_counts"]},
        "batch": spec.batch,
        "seq_len": spec.seq_len,
        "tokens_per_step": spec.batch * spec.seq_len,
        "dtype": "bf16 autocast (fp32 params)" if spec.amp_dtype else "fp32",
        "autocast_dtype": spec.amp_dtype,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "optimizer": spec.optimizer,
        "optimizer_kwargs": spec.optimizer_kwargs,
        "optimizer_defaults": {k: v for k, v in _opt_defaults(spec).items()},
        "units": "ms",
        "phase_boundaries": {
            "forward": "step start -> after loss computed (F.cross_entropy)",
            "backward": "after loss -> after loss.backward()",
            "optimizer": "after backward -> after optimizer.step(); optimizer.zero_grad(set_to_none=True)",
        },
        "truth": {k: v for k, v in truth.items() if k != "param_counts"},
        "trace": tinfo,
    }
    with open(os.path.join(out, TRUTH_NAME), "w") as f:
        json.dump(doc, f, indent=1)
    return doc


def _opt_defaults(spec: RunSpec) -> dict:
    p = [nn.Parameter(torch.zeros(1))]
    opt = getattr(torch.optim, spec.optimizer)(p, **spec.optimizer_kwargs)
    d = dict(opt.defaults)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()
            if isinstance(v, (int, float, bool, str, tuple, type(None)))}


def print_summary(docs: list[dict]) -> None:
    print()
    hdr = (f"{'variant':<11} {'fwd ms':>8} {'bwd ms':>8} {'opt ms':>8} {'step ms':>8} "
           f"{'cpu0 ms':>7} {'fwd%':>6} {'bwd%':>6} {'opt%':>6} {'active':>6} {'trace MB':>8}")
    print("medians over timed steps; cpu0 = CPU time to issue one step with an empty launch queue")
    print(hdr)
    print("-" * len(hdr))
    for d in docs:
        m = d["truth"]["median"]
        s = d["truth"]["shares_of_median"]
        print(f"{d['variant']:<11} {m['forward_ms']:8.2f} {m['backward_ms']:8.2f} "
              f"{m['optimizer_ms']:8.2f} {m['step_gpu_ms']:8.2f} {d['truth']['cpu_issue_unthrottled_ms']:7.2f} "
              f"{100 * s['forward']:6.1f} {100 * s['backward']:6.1f} {100 * s['optimizer']:6.1f} "
              f"{d['trace']['schedule']['active']:6d} {d['trace']['bytes'] / 1e6:8.2f}")
    print()
    for d in docs:
        print(f"{d['variant']}: device={d['device_name']} torch={d['torch_version']} "
              f"batch={d['batch']} params={d['model']['param_count']:,}")
        st = d["trace"]["stats"]
        print(f"  truth: cpu issue (unthrottled) {d['truth']['cpu_issue_unthrottled_ms']:.2f} ms vs "
              f"step gpu {d['truth']['median']['step_gpu_ms']:.2f} ms -> gpu_bound={d['truth']['gpu_bound']}")
        print(f"  trace: {st['events']} events, {st['profiler_steps']} ProfilerStep, "
              f"cpu step ms {[round(x, 1) for x in st['cpu_profiler_step_ms']]}, "
              f"gpu busy {st['gpu_busy_fraction']:.1%}, gpu ops {st['gpu_ops']} "
              f"({st['gpu_ops_launched_before_window']} launched before window), "
              f"median launch->start {st['median_launch_to_start_ms']:.2f} ms")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", choices=VARIANTS + ("all",), default="all")
    ap.add_argument("--outdir", default="gpu_traces")
    ap.add_argument("--batch", type=int, default=None,
                    help="batch size (default: per variant, %s)" % DEFAULT_BATCH)
    ap.add_argument("--warmup", type=int, default=10, help="truth run: untimed warm-up steps")
    ap.add_argument("--steps", type=int, default=30, help="truth run: timed steps")
    ap.add_argument("--wait", type=int, default=5, help="profiler schedule wait")
    ap.add_argument("--prof-warmup", type=int, default=2, help="profiler schedule warmup")
    ap.add_argument("--active", type=int, default=3, help="profiler schedule active")
    ap.add_argument("--max-trace-mb", type=float, default=3.0,
                    help="if a trace is bigger, re-record it with active=2")
    ap.add_argument("--sgd-lr", type=float, default=0.01)
    args = ap.parse_args(argv)

    if not torch.cuda.is_available():
        print("a CUDA GPU is required", file=sys.stderr)
        return 2
    device = torch.device("cuda", torch.cuda.current_device())
    cfg = GPTConfig()
    variants = VARIANTS if args.variant == "all" else (args.variant,)
    print(f"torch {torch.__version__} cuda {torch.version.cuda} on "
          f"{torch.cuda.get_device_name(device)}; seq {cfg.seq_len}", flush=True)
    docs = [run_variant(v, args, cfg, device) for v in variants]
    print_summary(docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
