"""Host cost of the Python stack sampler (perfkit/collect/stacks.py) on CPU.

    python scripts/bench_stack_sampler.py [--rounds 7] [--iters 20000] [--profiler] [--out FILE]

A Python-heavy loop (nested Python calls, a small torch op and a pure-Python
inner loop per iteration: the shape of a host-bound training step) runs in
turns, round by round, so machine drift hits the variants alike:

* bare: the loop alone;
* sampler: the loop while a StackSampler (1 ms nominal interval) samples its
  thread;
* with ``--profiler``, also torch.profiler (CPU activity) with
  ``with_stack=False``, the same plus the sampler (what ``perfkit profile``
  records by default), and ``with_stack=True`` (torch's Python tracer).

Time per variant = median over rounds of the loop's wall time. Ratio = variant
/ its baseline (bare, or the profiler without stacks). Prints a JSON document.

``--walk``: the cost of one sample's stack walk alone, on a thread paused 5 and
40 frames deep: the sampler's walk in C (perfkit/collect/_frames.c, plus
interning the stack as the sampler does) against the Python walk it replaced
(``f = f.f_back``, safe here only because the thread does not move). Median
over rounds of the mean µs per walk.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def leaf(x, k):
    s = 0
    for i in range(k):
        s += i
    return x + s


def middle(t, k):
    return leaf(t, k)


def workload(iters: int):
    import torch

    t = torch.zeros(8)
    for _ in range(iters):
        t = middle(t, 20)
        t = torch.add(t, 1.0)
    return t


def run_once(variant: str, iters: int) -> tuple[float, int]:
    from torch.profiler import ProfilerActivity, profile

    from perfkit.collect.stacks import StackSampler

    sampler = StackSampler() if "sampler" in variant else None
    prof = None
    if variant.startswith("profiler"):
        prof = profile(activities=[ProfilerActivity.CPU], with_stack=variant == "profiler+with_stack")
    ctx = prof if prof is not None else contextlib.nullcontext()
    with ctx:
        if sampler is not None:
            sampler.start()
        t0 = time.perf_counter()
        workload(iters)
        elapsed = time.perf_counter() - t0
        if sampler is not None:
            sampler.stop()
    return elapsed, (len(sampler.ts_us) if sampler is not None else 0)


def walk_costs(rounds: int, calls: int) -> dict[str, dict[str, float]]:
    """µs per walk (median over rounds): the sampler's C walk + interning, and the Python walk it replaced."""
    import threading

    from perfkit.collect import _frames

    def c_walk(ident: int) -> None:
        for _, walked in _frames.sample((ident,), 256):
            key = []
            for j in range(0, len(walked), 2):
                key.append(id(walked[j]))
                key.append(walked[j + 1])

    def python_walk(ident: int) -> None:
        f = sys._current_frames().get(ident)
        key = []
        while f is not None:
            key.append(id(f.f_code))
            key.append(f.f_lasti)
            f = f.f_back

    out: dict[str, dict[str, float]] = {}
    for depth in (5, 40):
        ready, release = threading.Event(), threading.Event()

        def inner(n: int) -> None:
            if n == 0:
                ready.set()
                release.wait()
                return
            inner(n - 1)

        t = threading.Thread(target=inner, args=(depth,), daemon=True)
        t.start()
        ready.wait()
        assert t.ident is not None
        per: dict[str, list[float]] = {"c_walk": [], "python_walk": []}
        for _ in range(rounds):
            for name, fn in (("c_walk", c_walk), ("python_walk", python_walk)):
                t0 = time.perf_counter()
                for _ in range(calls):
                    fn(t.ident)
                per[name].append((time.perf_counter() - t0) / calls * 1e6)
        release.set()
        t.join()
        out[f"depth_{depth}"] = {k: round(statistics.median(v), 2) for k, v in per.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--iters", type=int, default=20000)
    ap.add_argument("--profiler", action="store_true", help="also compare torch.profiler with and without with_stack")
    ap.add_argument("--out", default=None, help="write the JSON here too")
    ap.add_argument("--walk", action="store_true", help="only the cost of one stack walk, C against Python")
    args = ap.parse_args()
    if args.walk:
        print(json.dumps({"python": sys.version.split()[0], "us_per_walk": walk_costs(args.rounds, 5000)}, indent=2))
        return
    import torch

    torch.set_num_threads(1)
    variants = ["bare", "sampler"]
    if args.profiler:
        variants += ["profiler", "profiler+sampler", "profiler+with_stack"]
    workload(200)  # warm up
    times: dict[str, list[float]] = {v: [] for v in variants}
    samples: dict[str, list[int]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for v in variants:
            s, n = run_once(v, args.iters)
            times[v].append(s)
            samples[v].append(n)
    med = {v: statistics.median(times[v]) for v in variants}
    base = {"bare": "bare", "sampler": "bare", "profiler": "bare", "profiler+sampler": "profiler",
            "profiler+with_stack": "profiler"}
    doc = {
        "python": sys.version.split()[0], "torch": torch.__version__, "rounds": args.rounds, "iters": args.iters,
        "median_s": med,
        "ratio_to_baseline": {v: med[v] / med[base[v]] for v in variants if v != "bare"},
        "baseline": {v: base[v] for v in variants if v != "bare"},
        "samples_median": {v: statistics.median(samples[v]) for v in variants if "sampler" in v},
        "per_iteration_us": {v: med[v] / args.iters * 1e6 for v in variants},
    }
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
