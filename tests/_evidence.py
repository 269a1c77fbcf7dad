"""Raw facts of a Kineto trace, computed the slow and obvious way.

This is the reference the corpus tests compare perfkit against, so it must not
share code with perfkit: plain ``json`` and lists, no numpy, no perfkit import.
Every figure is read straight from the events:

* counts of events by ``cat``;
* device work = complete (``ph: X``) events whose category is a kernel, a
  device memcpy or a device memset (all spellings Kineto used: ``kernel``,
  ``Kernel``, ``gpu_memcpy``, ``Memcpy``, ``gpu_memset``, ``Memset``, MTIA's
  ``mtia_ccp_events``/``mtia_memcpy``); its device is the event's ``pid``;
* device busy time per device (µs) = length of the union of its intervals;
* each device interval's exclusive share of that union (where k intervals
  overlap, each gets 1/k of the time), computed by a sweep over boundaries;
* ``ProfilerStep#N`` steps (CPU ranges), and the step of each device interval
  whose launch (runtime/driver call with the same ``correlation``) lies inside a
  step's CPU range;
* threads issuing launch calls, graph launches, device ids missing from
  ``deviceProperties``, Python frames, communication kernels by family.

Run as a script to print the facts of one or more traces as JSON.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from collections import Counter, defaultdict
from decimal import Decimal

DEVICE_CATS = {
    "kernel": "kernel",
    "gpu_memcpy": "memcpy",
    "memcpy": "memcpy",
    "gpu_memset": "memset",
    "memset": "memset",
    "mtia_ccp_events": "kernel",
    "mtia_memcpy": "memcpy",
}
HOST_LAUNCH_CATS = {"cuda_runtime", "runtime", "hip_runtime", "cuda_driver", "hip_driver", "mtia_runtime",
                    "xpu_runtime", "privateuse1_runtime", "privateuse1_driver"}
#: Runtime/driver calls that put work on a device.
LAUNCH_NAME = re.compile(r"LaunchKernel|LaunchCooperativeKernel|GraphLaunch|ModuleLaunchKernel|Memcpy|Memset",
                         re.IGNORECASE)
STEP_NAME = re.compile(r"^ProfilerStep#(\d+)$")
STEP_CATS = {"user_annotation", "cpu_op", "operator"}
#: Communication kernel families, by name.
COMM_FAMILIES = [
    ("nccl", re.compile(r"nccl", re.IGNORECASE)),
    ("rccl", re.compile(r"rccl", re.IGNORECASE)),
    ("deep_ep", re.compile(r"deep_ep|notify_dispatch", re.IGNORECASE)),
    ("nvshmem", re.compile(r"nvshmem", re.IGNORECASE)),
    ("custom_all_reduce", re.compile(r"cross_device_reduce|custom_?all_?reduce|multimem_all_reduce|"
                                     r"one_shot_all_reduce|two_shot_all_reduce", re.IGNORECASE)),
]


def load(path: str, exact: bool = False) -> dict:
    """The trace as a dict with ``traceEvents`` (a bare event list is wrapped).

    With ``exact`` every JSON number with a fraction is a ``Decimal``: epoch
    microseconds with nanosecond fractions (1.7e15) do not fit a float exactly.
    """
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        doc = json.load(f, parse_float=Decimal) if exact else json.load(f)
    if isinstance(doc, list):
        doc = {"traceEvents": doc}
    return doc


def device_id(pid):
    """The device index an event's ``pid`` names (ints; numeric strings; "stream 7" -> 7)."""
    if isinstance(pid, bool):
        return None
    if isinstance(pid, int):
        return pid
    if isinstance(pid, float):
        return int(pid)
    if isinstance(pid, str):
        text = pid.strip()
        if text.startswith("stream "):
            text = text[7:].strip()
        try:
            return int(text)
        except ValueError:
            return pid
    return None


def union_length(intervals) -> float:
    """Length of the union of (start, end) intervals."""
    total = 0.0
    cur_s = cur_e = None
    for s, e in sorted(intervals):
        if e < s:
            e = s
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        elif e > cur_e:
            cur_e = e
    if cur_e is not None:
        total += cur_e - cur_s
    return total


def exclusive_shares(intervals) -> list:
    """Each interval's share of the union: where k intervals are active, each gets 1/k."""
    n = len(intervals)
    bounds = sorted({s for s, _ in intervals} | {max(e, s) for s, e in intervals})
    # Weighted time per elementary segment [bounds[i], bounds[i+1]).
    starts_at = defaultdict(list)
    ends_at = defaultdict(list)
    for i, (s, e) in enumerate(intervals):
        e = max(e, s)
        if e > s:
            starts_at[s].append(i)
            ends_at[e].append(i)
    active = set()
    share = [0.0] * n
    # Sweep over the boundaries: acc is the time credited so far to any interval
    # active throughout; an interval's share is acc at its end minus acc at its start.
    acc = 0.0
    acc_at = {}
    for k, b in enumerate(bounds):
        if k:
            length = b - bounds[k - 1]
            if active:
                acc += length / len(active)
        acc_at[b] = acc
        for i in ends_at.get(b, ()):
            active.discard(i)
        for i in starts_at.get(b, ()):
            active.add(i)
    for i, (s, e) in enumerate(intervals):
        e = max(e, s)
        if e > s:
            share[i] = acc_at[e] - acc_at[s]
    return share


def facts(path: str) -> dict:
    """Raw facts of one trace (see the module docstring). Times in µs."""
    doc = load(path, exact=True)
    events = [e for e in doc.get("traceEvents", []) if isinstance(e, dict)]
    # Times relative to the first whole microsecond, computed exactly, then as floats.
    base = min((int(e["ts"]) for e in events if isinstance(e.get("ts"), (int, Decimal))), default=0)
    props = doc.get("deviceProperties") or doc.get("computeProperties") or []
    listed = []
    for i, p in enumerate(props):
        if isinstance(p, dict):
            listed.append(p.get("id", i))

    cat_counts = Counter()
    device_rows = []  # (device, start, end, kind, name, correlation)
    launch_by_corr = {}  # correlation -> launch start (first seen)
    launch_threads = Counter()
    runtime_names = Counter()
    graph_launches = 0
    python_frames = 0
    steps = {}  # N -> (start, end), first event per N
    host_lo = host_hi = None
    cpu_op_count = 0
    for e in events:
        cat = e.get("cat")
        cat_counts[cat if isinstance(cat, str) else ""] += 1
        if e.get("ph") != "X":
            continue
        lc = cat.lower() if isinstance(cat, str) else ""
        args = e.get("args") if isinstance(e.get("args"), dict) else {}
        name = e.get("name", "")
        ts = e.get("ts")
        dur = e.get("dur", 0) or 0
        if isinstance(ts, str) and ts.replace(".", "", 1).isdigit():
            ts = Decimal(ts)
        if not isinstance(ts, (int, Decimal)):
            continue
        ts = float(ts - base)
        dur = float(Decimal(dur) if isinstance(dur, str) else dur)
        if lc in DEVICE_CATS:
            corr = args.get("correlation")
            device_rows.append((device_id(e.get("pid")), ts, ts + dur, DEVICE_CATS[lc],
                                name, corr if isinstance(corr, int) else None))
            continue
        if lc in HOST_LAUNCH_CATS:
            corr = args.get("correlation")
            if isinstance(corr, int) and corr >= 0 and corr not in launch_by_corr:
                launch_by_corr[corr] = ts
            runtime_names[name] += 1
            if LAUNCH_NAME.search(name or ""):
                launch_threads[(e.get("pid"), e.get("tid"))] += 1
            if "GraphLaunch" in (name or ""):
                graph_launches += 1
        if lc in ("python_function", "python"):
            python_frames += 1
        if lc in ("cpu_op", "operator"):
            cpu_op_count += 1
        if lc in STEP_CATS:
            mt = STEP_NAME.match(name or "")
            if mt and int(mt.group(1)) not in steps:
                steps[int(mt.group(1))] = (ts, ts + dur)
        if lc in ("cpu_op", "operator", "user_annotation", "python_function", "python") or lc in HOST_LAUNCH_CATS:
            host_lo = ts if host_lo is None else min(host_lo, ts)
            host_hi = ts + dur if host_hi is None else max(host_hi, ts + dur)

    by_device = defaultdict(list)
    for row in device_rows:
        by_device[row[0]].append(row)
    busy = {}
    share_of_row = {}
    for d, rows in by_device.items():
        ivs = [(r[1], r[2]) for r in rows]
        busy[d] = union_length(ivs)
        for r, s in zip(rows, exclusive_shares(ivs)):
            share_of_row[id(r)] = s

    # Step of each device row from its launch (latest-starting step whose start <= t, if t < its end).
    order = sorted(steps.items(), key=lambda kv: kv[1][0])
    linked_share_by_step = defaultdict(float)
    linked = unlinked = 0
    unlinked_share = 0.0
    for r in device_rows:
        t = launch_by_corr.get(r[5]) if r[5] is not None and r[5] >= 0 else None
        if t is None:
            unlinked += 1
            unlinked_share += share_of_row[id(r)]
            continue
        linked += 1
        owner = None
        for n, (s, e) in order:
            if s <= t:
                owner = (n, e)
            else:
                break
        if owner is not None and t < owner[1]:
            linked_share_by_step[owner[0]] += share_of_row[id(r)]

    comm = Counter()
    for r in device_rows:
        if r[3] != "kernel":
            continue
        for fam, rx in COMM_FAMILIES:
            if rx.search(r[4] or ""):
                comm[fam] += 1
                break
    dev_lo = min((r[1] for r in device_rows), default=None)
    dev_hi = max((r[2] for r in device_rows), default=None)
    used = sorted({r[0] for r in device_rows}, key=str)
    return {
        "events": len(events),
        "cat_counts": dict(cat_counts),
        "device_names": sorted({p.get("name") for p in props if isinstance(p, dict) and p.get("name")}),
        "devices_listed": listed,
        "devices_used": used,
        "devices_unlisted": [d for d in used if d not in listed],
        "device_events": {k: sum(1 for r in device_rows if r[3] == k) for k in ("kernel", "memcpy", "memset")},
        "busy_us": {str(d): v for d, v in busy.items()},
        "busy_us_total": sum(busy.values()),
        "steps": sorted(steps),
        "step_ranges_us": {str(n): list(v) for n, v in steps.items()},
        "linked_device_events": linked,
        "unlinked_device_events": unlinked,
        "unlinked_share_us": unlinked_share,
        "linked_share_us_by_step": {str(n): v for n, v in linked_share_by_step.items()},
        "launch_threads": {f"{p}/{t}": c for (p, t), c in launch_threads.most_common()},
        "runtime_calls": dict(runtime_names.most_common(12)),
        "graph_launches": graph_launches,
        "python_frames": python_frames,
        "cpu_ops": cpu_op_count,
        "comm_kernels": dict(comm),
        "time_base_us": base,
        "host_span_us": [host_lo, host_hi],
        "device_span_us": [dev_lo, dev_hi],
        "distributed": doc.get("distributedInfo"),
        "top_level_keys": sorted(k for k in doc if k != "traceEvents"),
    }


def top_kernels(path: str, k: int = 10) -> list:
    """(name, total µs, count) of the k kernels with the most summed duration."""
    doc = load(path)
    tot = Counter()
    cnt = Counter()
    for e in doc.get("traceEvents", []):
        if isinstance(e, dict) and e.get("ph") == "X" and str(e.get("cat", "")).lower() == "kernel":
            tot[e.get("name")] += float(e.get("dur", 0) or 0)
            cnt[e.get("name")] += 1
    return [(n, t, cnt[n]) for n, t in tot.most_common(k)]


if __name__ == "__main__":
    for p in sys.argv[1:]:
        f = facts(p)
        f.pop("step_ranges_us")
        print(json.dumps({"path": p, **f}, default=str))
