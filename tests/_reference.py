"""A slow, obvious re-implementation of perfkit's attribution, used as a test oracle.

It reads the trace with the standard library's json module into plain dicts,
and applies the documented rules (docs/analysis.md) event by event with dicts,
lists and bisect: no numpy, nothing shared with perfkit except the rule
patterns in perfkit.analysis.rules (the rules are the specification; this
checks the vectorised machinery that applies them).
"""

from __future__ import annotations

import bisect
import gzip
import json
import re
from collections import defaultdict

from perfkit.analysis import rules
from perfkit.analysis.attribute import classify

DEVICE_CATS = {"kernel": "kernel", "gpu_memcpy": "memcpy", "memcpy": "memcpy", "gpu_memset": "memset", "memset": "memset"}
HOST_CATS = {"cpu_op", "operator", "user_annotation"}
LAUNCH_CATS = {"cuda_runtime", "runtime", "cuda_driver"}


def _load(path):
    op = gzip.open if str(path).endswith(".gz") else open
    with op(path, "rt") as f:
        doc = json.load(f)
    events = doc["traceEvents"] if isinstance(doc, dict) else doc
    return doc, [e for e in events if isinstance(e, dict)]


def _tid(v):
    if isinstance(v, str) and v.startswith("stream "):
        v = v[7:]
    try:
        return int(v)
    except (TypeError, ValueError):
        return v


def _merge(ranges):
    out = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def _inside(merged, t):
    i = bisect.bisect_right([a for a, _ in merged], t) - 1
    return i >= 0 and t < merged[i][1]


def reference_attribution(path):
    """Per device op (keyed by (device, stream, ts)): (step id or None, phase, category, share_us)."""
    doc, events = _load(path)
    xs = [e for e in events if e.get("ph") == "X" and isinstance(e.get("ts"), (int, float))]
    for e in xs:
        e["_end"] = e["ts"] + float(e.get("dur", 0) or 0)
        e["_thread"] = (_tid(e.get("pid")), _tid(e.get("tid")))
        e["_cat"] = str(e.get("cat", "")).lower()
    threads = {}
    for e in events:
        if e.get("ph") == "M" and e.get("name") == "thread_name":
            threads[(_tid(e.get("pid")), _tid(e.get("tid")))] = (e.get("args") or {}).get("name", "")

    step_rx = re.compile(rules.STEP_PATTERN)
    steps = {}
    for e in xs:
        mt = step_rx.match(str(e.get("name", "")))
        if mt and e["_cat"] in HOST_CATS and int(mt.group(1)) not in steps:
            steps[int(mt.group(1))] = e
    step_list = sorted(steps.items(), key=lambda kv: kv[1]["ts"])
    synthetic = not step_list

    def step_of(t):
        if synthetic:
            return 0
        for sid, e in step_list:
            if e["ts"] <= t < e["_end"]:
                return sid
        return None

    runtime = {}
    for e in xs:
        if e["_cat"] in LAUNCH_CATS:
            c = (e.get("args") or {}).get("correlation")
            if isinstance(c, int) and c >= 0 and c not in runtime:
                runtime[c] = e
    ops_by_ext = {}
    for pref in ("cpu_op", "operator", "user_annotation"):
        for e in xs:
            if e["_cat"] == pref:
                x = (e.get("args") or {}).get("External id")
                if isinstance(x, int) and x >= 0 and x not in ops_by_ext:
                    ops_by_ext[x] = e
    host = [e for e in xs if e["_cat"] in HOST_CATS]
    opt_rx, optstep_rx = re.compile(rules.OPTIMIZER_PATTERN), re.compile(rules.OPTIMIZER_STEP_PATTERN)
    bwd_rx = re.compile(rules.BACKWARD_OP_PATTERN)
    opt = [e for e in host if opt_rx.search(str(e.get("name", "")))]
    bwd = [e for e in host if bwd_rx.search(str(e.get("name", ""))) or ((e.get("args") or {}).get("Fwd thread id") or 0) > 0]
    by_thread = lambda evs: {th: _merge([(e["ts"], e["_end"]) for e in evs if e["_thread"] == th]) for th in {e["_thread"] for e in evs}}  # noqa: E731
    opt_ranges, bwd_ranges = by_thread(opt), by_thread(bwd)
    annotations = []  # (event, phase) of names that match exactly one phase pattern
    ann_rx = [(phase, re.compile(pattern)) for phase, pattern in rules.PHASE_ANNOTATIONS]
    for e in host:
        named = [phase for phase, rx in ann_rx if rx.search(str(e.get("name", "")))]
        if len(named) == 1:
            annotations.append((e, named[0]))
    loop_threads = {e["_thread"] for _, e in step_list} | {e["_thread"] for e in opt}
    bwd_threads = {th for th, name in threads.items() if re.search(rules.BACKWARD_THREAD_PATTERN, name)}
    bwd_threads |= {e["_thread"] for e in bwd} - loop_threads
    bwd_marks = sorted([e["ts"] for e in bwd] + [e["ts"] for e in xs if e["_cat"] in LAUNCH_CATS and e["_thread"] in bwd_threads]
                       + [e["ts"] for e, phase in annotations if phase == rules.BACKWARD])
    name_rx = [(rules.BACKWARD, re.compile(rules.BACKWARD_KERNEL_PATTERN)),
               (rules.OPTIMIZER, re.compile(rules.OPTIMIZER_KERNEL_PATTERN)),
               (rules.FORWARD, re.compile(rules.FORWARD_KERNEL_PATTERN))]

    def phase_by_name(device_op):
        if device_op["_cat"] != "kernel":
            return None
        for phase, rx in name_rx:
            if rx.search(str(device_op.get("name", ""))):
                return phase
        return None
    opt_marks = sorted(e["ts"] for e in opt if optstep_rx.search(str(e.get("name", ""))))

    def phase_of(launch, device_op):
        t, th = launch["ts"], launch["_thread"]
        if _inside(opt_ranges.get(th, []), t):
            return rules.OPTIMIZER
        around = [(e, phase) for e, phase in annotations if e["_thread"] == th and e["ts"] <= t < e["_end"]]
        if around:  # the innermost annotation decides
            return max(around, key=lambda ep: (ep[0]["ts"], -ep[0]["_end"]))[1]
        if _inside(bwd_ranges.get(th, []), t) or th in bwd_threads:
            return rules.BACKWARD
        by_name = phase_by_name(device_op)
        if by_name is not None:
            return by_name
        sid = step_of(t)
        if synthetic:
            lo, hi = float("-inf"), float("inf")
        elif sid is not None:
            lo, hi = steps[sid]["ts"], steps[sid]["_end"]
        else:
            before = [e["_end"] for _, e in step_list if e["ts"] <= t]
            after = [e["ts"] for _, e in step_list if e["ts"] > t]
            lo = max(before) if before else float("-inf")
            hi = min(after) if after else float("inf")
        nb = [m for m in bwd_marks if m > t]
        no = [m for m in opt_marks if m > t]
        nxt_b = nb[0] if nb else float("inf")
        nxt_o = no[0] if no else float("inf")
        if nxt_b < hi and nxt_b <= nxt_o:
            return rules.FORWARD
        if not any(lo <= m < hi for m in bwd_marks):
            return rules.FORWARD
        return rules.PHASE_OTHER

    devs = [e for e in xs if e["_cat"] in DEVICE_CATS]
    # exclusive shares, per device: sweep over elementary segments
    shares = defaultdict(float)
    by_dev = defaultdict(list)
    for i, e in enumerate(devs):
        by_dev[e.get("pid")].append(i)
    for idx in by_dev.values():
        pts = sorted({devs[i]["ts"] for i in idx} | {devs[i]["_end"] for i in idx})
        order = sorted(idx, key=lambda i: devs[i]["ts"])
        active = []
        j = 0
        for a, b in zip(pts, pts[1:]):
            while j < len(order) and devs[order[j]]["ts"] <= a:
                active.append(order[j])
                j += 1
            active = [i for i in active if devs[i]["_end"] > a]
            if active:
                for i in active:
                    shares[i] += (b - a) / len(active)

    out = {}
    for i, e in enumerate(devs):
        a = e.get("args") or {}
        launch = runtime.get(a.get("correlation")) if isinstance(a.get("correlation"), int) else None
        ext = a.get("External id", a.get("external id"))
        op = ops_by_ext.get(ext) if isinstance(ext, int) else None
        if op is None and launch is not None:
            lx = (launch.get("args") or {}).get("External id", (launch.get("args") or {}).get("external id"))
            op = ops_by_ext.get(lx) if isinstance(lx, int) else None
        if op is None and launch is not None:
            # innermost cpu op on the launching thread that holds the launch
            holding = [h for h in xs if h["_cat"] in ("cpu_op", "operator") and h["_thread"] == launch["_thread"]
                       and h["ts"] <= launch["ts"] < h["_end"]]
            if holding:
                op = max(holding, key=lambda h: (h["ts"], -h["_end"]))
        category = classify(str(e.get("name", "")), str(op.get("name", "")) if op else "", DEVICE_CATS[e["_cat"]])
        if launch is not None:
            sid, phase = step_of(launch["ts"]), phase_of(launch, e)
        else:
            sid, phase = "unlinked", None
        key = (_tid(e.get("pid")), _tid(e.get("tid")), round(e["ts"], 3))
        out[key] = (sid, phase, category, shares[i])
    return out


def cpu_op_self_times(events):
    """Slow reference: (event, self µs) of every complete ``cpu_op`` event, by a stack walk per thread
    (an op's self time is its duration minus its direct children's)."""
    by_thread = defaultdict(list)
    for e in events:
        if e.get("ph") == "X" and e.get("cat") == "cpu_op":
            by_thread[(e["pid"], e["tid"])].append(e)
    out = []
    for evs in by_thread.values():
        evs.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []  # [event, children's time]
        for e in evs:
            while stack and e["ts"] >= stack[-1][0]["ts"] + stack[-1][0]["dur"]:
                done, kids = stack.pop()
                out.append((done, done["dur"] - kids))
            if stack:
                stack[-1][1] += e["dur"]
            stack.append([e, 0.0])
        while stack:
            done, kids = stack.pop()
            out.append((done, done["dur"] - kids))
    return out
