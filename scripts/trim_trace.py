#!/usr/bin/env python3
"""Trim a Kineto (PyTorch profiler) trace to a few whole steps, and write it gzipped.

Standard library only, so a fixture can be re-made anywhere from its source file.

The kept window is the union of whole steps: the first K ``ProfilerStep#N``
ranges after skipping S (``--steps K --skip S``; another annotation can mark the
steps with ``--step-pattern``). A trace without step markers can instead be cut
to its first T milliseconds of host activity (``--until-ms T``); the MANIFEST
then says so, since such a window is not a step.

Kept, in file order:

* every top-level key (``deviceProperties``, ``distributedInfo``,
  ``baseTimeNanoseconds``...) and every event without a time (``ph: M``
  metadata: process and thread names, sort indices);
* every host event (CPU ops, annotations, Python frames, runtime/driver calls,
  instant and counter events) that overlaps the window, kept whole, never cut;
* every device event (kernel, memcpy, memset, GPU-side annotation) whose
  launch (the runtime/driver call with the same ``correlation``) was kept, and
  device events without a kept launch that overlap the window's device span
  (work already queued when the window opened);
* flow events (``ac2g``, ``async_gpu``, ``fwdbwd``...) whose id is a kept
  correlation, or whose time lies in the window.

With ``--drop-python`` the ``python_function`` frames (``with_stack=True``) are
dropped as well, with ``--drop-flows`` the launch flow arrows (``ac2g``: the
same links the ``correlation`` args carry); without ``--steps``/``--until-ms``
every other event of the whole trace is kept.

A perfkit run's Python stack samples (``<trace>.stacks.json.gz`` beside the
trace) are not carried over: a trimmed trace keeps only what the trace holds.

Usage:
    python scripts/trim_trace.py SRC DST.json.gz --steps 2 [--skip 1]
    python scripts/trim_trace.py SRC DST.json.gz --until-ms 40
    python scripts/trim_trace.py SRC DST.json.gz --drop-python
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import re
import sys

#: Categories of events on device rows (the same names as perfkit.trace.model.CATEGORY_KINDS; kept
#: here so the script needs only the standard library: tests/test_trim_trace.py checks they agree).
DEVICE_CATS = {"kernel", "gpu_memcpy", "memcpy", "gpu_memset", "memset", "gpu_user_annotation",
               "mtia_ccp_events", "mtia_memcpy", "cuda_sync"}
LAUNCH_CATS = {"cuda_runtime", "runtime", "hip_runtime", "cuda_driver", "hip_driver", "mtia_runtime",
               "xpu_runtime", "privateuse1_runtime", "privateuse1_driver"}
STEP_CATS = {"user_annotation", "cpu_op", "operator"}


def _num(x):
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return float(x)
    if isinstance(x, str):
        try:
            return float(x)
        except ValueError:
            return None
    return None


def _span(e):
    ts = _num(e.get("ts"))
    if ts is None:
        return None
    dur = _num(e.get("dur")) or 0.0
    return ts, ts + max(dur, 0.0)


def _corr(e):
    args = e.get("args")
    if isinstance(args, dict):
        c = args.get("correlation")
        if isinstance(c, int) and not isinstance(c, bool):
            return c
    return None


def window(events, steps, skip, pattern, until_ms):
    """(lo, hi, step ids kept) of the host window to keep."""
    if until_ms is not None:
        host = [_span(e) for e in events if e.get("ph") == "X" and str(e.get("cat", "")).lower() not in DEVICE_CATS]
        host = [s for s in host if s is not None]
        if not host:
            raise SystemExit("no host events to cut by time")
        lo = min(s for s, _ in host)
        return lo, lo + until_ms * 1000.0, []
    rx = re.compile(pattern)
    found = {}
    for e in events:
        if e.get("ph") != "X" or str(e.get("cat", "")).lower() not in STEP_CATS:
            continue
        m = rx.match(str(e.get("name", "")))
        sp = _span(e)
        if m and sp is not None:
            key = m.group(1) if m.groups() else str(e.get("name"))
            if key not in found:
                found[key] = sp
    order = sorted(found.items(), key=lambda kv: kv[1][0])
    chosen = order[skip:skip + steps]
    if len(chosen) < steps:
        raise SystemExit(f"only {len(order)} steps match {pattern!r}; asked for {steps} after skipping {skip}")
    return chosen[0][1][0], max(e for _, (_, e) in chosen), [k for k, _ in chosen]


def trim(doc, lo, hi):
    events = doc.get("traceEvents", [])
    keep = [False] * len(events)
    kept_corr = set()
    # Pass 1: host events overlapping the window; launches remember their correlation.
    for i, e in enumerate(events):
        if not isinstance(e, dict):
            continue
        ph = e.get("ph")
        cat = str(e.get("cat", "")).lower()
        sp = _span(e)
        if sp is None or ph == "M":
            keep[i] = True  # metadata and events without a time
            continue
        if cat in DEVICE_CATS or ph in ("s", "f", "t"):
            continue
        s, t = sp
        if t >= lo and s <= hi:
            keep[i] = True
            if cat in LAUNCH_CATS:
                c = _corr(e)
                if c is not None:
                    kept_corr.add(c)
    # Pass 2: device events launched in the window; the device span they cover.
    dev_lo, dev_hi = lo, hi
    for i, e in enumerate(events):
        if isinstance(e, dict) and str(e.get("cat", "")).lower() in DEVICE_CATS and e.get("ph") != "M":
            c = _corr(e)
            if c is not None and c in kept_corr:
                keep[i] = True
                sp = _span(e)
                if sp:
                    dev_hi = max(dev_hi, sp[1])
    # Pass 3: device events with no kept launch that overlap the device span; flows.
    for i, e in enumerate(events):
        if keep[i] or not isinstance(e, dict):
            continue
        cat = str(e.get("cat", "")).lower()
        sp = _span(e)
        if sp is None:
            continue
        if e.get("ph") in ("s", "f", "t"):
            fid = e.get("id")
            if (isinstance(fid, int) and fid in kept_corr and cat in ("ac2g", "async_gpu", "async_cpu_to_gpu", "async")) \
                    or (cat not in ("ac2g", "async_gpu", "async_cpu_to_gpu") and lo <= sp[0] <= hi):
                keep[i] = True
            continue
        if cat in DEVICE_CATS and _corr(e) not in kept_corr:
            if sp[1] >= dev_lo and sp[0] <= dev_hi:
                keep[i] = True
    out = {k: v for k, v in doc.items() if k != "traceEvents"}
    out_events = [e for e, k in zip(events, keep) if k]
    # Keep traceEvents where it was among the keys.
    ordered = {}
    for k in doc:
        ordered[k] = out_events if k == "traceEvents" else out[k]
    return ordered, len(events), len(out_events)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--steps", type=int, default=None, help="number of whole steps to keep")
    ap.add_argument("--skip", type=int, default=0, help="steps to skip first (warm-up)")
    ap.add_argument("--step-pattern", default=r"^ProfilerStep#(\d+)$",
                    help="regex naming a step range (default ProfilerStep#N)")
    ap.add_argument("--drop-python", action="store_true",
                    help="also drop python_function frames (with_stack traces; the rest is unchanged)")
    ap.add_argument("--drop-flows", action="store_true",
                    help="also drop launch flow arrows (ac2g/async_gpu 's'/'f' events: the same links as 'correlation')")
    ap.add_argument("--until-ms", type=float, default=None,
                    help="no steps: keep the first T ms of host activity (and the device work it launched)")
    a = ap.parse_args(argv)
    if a.steps is not None and a.until_ms is not None:
        ap.error("give at most one of --steps or --until-ms")
    opener = gzip.open if a.src.endswith(".gz") else open
    with opener(a.src, "rt", encoding="utf-8") as f:
        doc = json.load(f)
    if isinstance(doc, list):
        doc = {"traceEvents": doc}
    if a.drop_python:
        doc["traceEvents"] = [e for e in doc.get("traceEvents", [])
                              if not (isinstance(e, dict) and str(e.get("cat", "")).lower() == "python_function")]
    if a.drop_flows:
        doc["traceEvents"] = [e for e in doc.get("traceEvents", [])
                              if not (isinstance(e, dict) and e.get("ph") in ("s", "f", "t")
                                      and str(e.get("cat", "")).lower() in ("ac2g", "async_gpu", "async_cpu_to_gpu"))]
    events = doc.get("traceEvents", [])
    if a.steps is None and a.until_ms is None:  # only dropping: every other event kept
        lo, hi, ids = float("-inf"), float("inf"), []
    else:
        lo, hi, ids = window(events, a.steps, a.skip, a.step_pattern, a.until_ms)
    out, n_in, n_out = trim(doc, lo, hi)
    # mtime=0: the same input gives the same bytes.
    with open(a.dst, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as gz, \
            io.TextIOWrapper(gz, encoding="utf-8") as f:
        json.dump(out, f)
    print(f"{a.src}: kept {n_out} of {n_in} events; window {(hi - lo) / 1000:.3f} ms"
          + (f"; steps {', '.join(ids)}" if ids else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
