"""An independent reading of a CPU training trace: phases from the raw Kineto events.

A slow reference for tests, sharing no code with perfkit's analysis. It walks each
thread's ``cpu_op`` events as a call stack and gives every op its *self* time
(its duration less that of the ops it called), then decides the op's phase from
the ranges around it in the raw trace:

* backward: the op is, or runs under, ``autograd::engine::evaluate_function: ...``
  (the autograd engine runs each backward node under this range);
* optimizer: the op starts inside an ``Optimizer.step#...`` range and after the end
  of the last backward node inside that range (``optimizer.step(closure)`` runs the
  closure, forward and backward, first; the update is what follows it);
* other: an op under an ``enumerate(DataLoader)#...`` range (fetching the batch);
* forward: any other op of the step that starts before the step's *last* backward node
  starts (with gradient accumulation, each micro-batch's forward precedes its backward),
  unless the next boundary after it is the start of an ``Optimizer.step#`` range that runs
  a closure (holds backward nodes) rather than a backward node: what runs before
  ``optimizer.step(closure)`` (Lightning's transfer of the batch to the device, its
  ``on_train_batch_start`` hooks) is not the forward pass, which runs in the closure;
* other: the rest (that, and after the backward passes: clipping, unscaling, bookkeeping, logging).

A step is a ``ProfilerStep#N`` range; an op belongs to the step its start falls in.
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict

PHASES = ("forward", "backward", "optimizer", "other")
BACKWARD = "autograd::engine::evaluate_function"


def load_events(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as fh:
        return json.load(fh)["traceEvents"]


def _x(events, cat=None):
    return [e for e in events if e.get("ph") == "X" and (cat is None or e.get("cat") == cat)]


def self_times(events):
    """[(event, self µs, [ancestor names, outermost first])] for every cpu_op, by a stack walk per thread."""
    by_thread = defaultdict(list)
    for e in _x(events, "cpu_op"):
        by_thread[(e["pid"], e["tid"])].append(e)
    out = []
    for evs in by_thread.values():
        evs.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []  # [event, children's µs]

        def pop():
            done, kids = stack.pop()
            out.append((done, done["dur"] - kids, [s[0]["name"] for s in stack]))

        for e in evs:
            while stack and e["ts"] >= stack[-1][0]["ts"] + stack[-1][0]["dur"]:
                pop()
            if stack:
                stack[-1][1] += e["dur"]
            stack.append([e, 0.0])
        while stack:
            pop()
    return out


def step_ranges(events):
    """{step id: (start µs, end µs)} of the ProfilerStep#N ranges."""
    out = {}
    for e in _x(events):
        name = str(e.get("name", ""))
        if name.startswith("ProfilerStep#"):
            out[int(name.split("#", 1)[1])] = (e["ts"], e["ts"] + e["dur"])
    return out


def phases_per_step(events, step_ids=None):
    """Mean CPU self time (ms) per phase over the steps ``step_ids`` (default: all recorded steps)."""
    steps = step_ranges(events)
    ids = sorted(steps) if step_ids is None else list(step_ids)
    ops = self_times(events)
    backward = [e for e, _, _ in ops if e["name"].startswith(BACKWARD)]
    opt_ranges = [e for e in _x(events) if str(e.get("name", "")).startswith("Optimizer.step#")]
    update_from = []  # (range start, range end, start of the update) per Optimizer.step# range
    for r in opt_ranges:
        lo, hi = r["ts"], r["ts"] + r["dur"]
        inner_end = [b["ts"] + b["dur"] for b in backward if lo <= b["ts"] < hi]
        update_from.append((lo, hi, max(inner_end) if inner_end else lo))
    loading = [(e["ts"], e["ts"] + e["dur"]) for e in _x(events)
               if str(e.get("name", "")).startswith("enumerate(DataLoader)#")]
    closures = [a for a, _, u in update_from if u > a]  # Optimizer.step# ranges with backward nodes inside
    total = {p: 0.0 for p in PHASES}
    for sid in ids:
        lo, hi = steps[sid]
        mine = [(e, s, anc) for e, s, anc in ops if lo <= e["ts"] < hi]
        bwd_starts = sorted(e["ts"] for e, _, _ in mine if e["name"].startswith(BACKWARD))
        last_bwd = bwd_starts[-1] if bwd_starts else float("inf")
        step_closures = sorted(a for a in closures if lo <= a < hi)
        for e, self_us, anc in mine:
            t = e["ts"]
            if e["name"].startswith(BACKWARD) or any(a.startswith(BACKWARD) for a in anc):
                phase = "backward"
            elif any(a <= t < b and t >= u for a, b, u in update_from):
                phase = "optimizer"
            elif any(a <= t < b for a, b in loading):
                phase = "other"
            elif t < last_bwd:
                next_bwd = min(b for b in bwd_starts if b > t)
                next_closure = min((a for a in step_closures if a > t), default=float("inf"))
                phase = "forward" if next_bwd < next_closure else "other"
            else:
                phase = "other"
            total[phase] += self_us
    n = max(len(ids), 1)
    return {p: v / 1000.0 / n for p, v in total.items()}
