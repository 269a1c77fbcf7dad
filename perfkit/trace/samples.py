"""Python stack samples recorded beside a trace (``<trace>.stacks.json.gz``, schema ``perfkit.stacks/1``).

``perfkit profile`` samples the training loop's Python stack during the recorded
steps (perfkit/collect/stacks.py) instead of torch's costly Python tracer. The
samples carry the line each frame was *executing*: for an op, the line that
called it. This module finds the file beside a trace, checks it and puts the
sample times on the trace's own clock:

* ``clock_sync``: the sampler brackets ``record_function("perfkit.clock_sync#N")``
  ranges with readings of its clock; the middle of each range in the trace,
  minus the middle of its bracket, is the offset (the mean over the pairings;
  pairings that disagree by more than ``MAX_SYNC_SPREAD_US`` are reported).
* ``unix_time``: no marker in the trace (e.g. it was cut): a Unix-time reading
  paired with the sampler's clock, against the trace's epoch-based ``ts``
  (``baseTimeNanoseconds`` + ``ts``). Approximate: Kineto converts its own clock.

Nothing here fails a read: a missing, unreadable or inconsistent file gives a
warning on the trace, and the analysis goes on without samples.
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from . import model as m

from .files import STACKS_SCHEMA as SCHEMA
from .files import STACKS_SYNC_PREFIX as SYNC_PREFIX
from .files import sidecar_path
#: Offsets of two pairings further apart than this are reported (clock steps, a wrong file).
MAX_SYNC_SPREAD_US = 1000.0


@dataclass
class StackSamples:
    """Python stack samples on the trace's clock.

    Attributes:
        ts_us: float64 sample time, µs, on the trace's ``ts`` axis (same units and origin).
        pid, tid: int64 process and native thread id of each sample (Kineto's ``pid``/``tid``).
        stack: int32 index into ``stacks`` of each sample.
        stacks: frames of each distinct stack, innermost first, as ``path/file.py(LINE): func``
            where LINE is the line being executed.
        interval_us: the sampler's nominal interval (µs).
        switch_interval_us: ``sys.getswitchinterval()`` of the run (µs).
        alignment: how ``ts_us`` was put on the trace's clock (``clock_sync`` or ``unix_time``).
        path: the sidecar file.
    """

    ts_us: np.ndarray
    pid: np.ndarray
    tid: np.ndarray
    stack: np.ndarray
    stacks: list[list[str]]
    interval_us: float
    alignment: str
    path: str
    thread_names: dict[tuple[int, int], str] = field(default_factory=dict)
    switch_interval_us: float = 5000.0  #: the run's GIL switch interval: a GIL-holding loop is sampled this often

    def __len__(self) -> int:
        return len(self.ts_us)


def attach(trace: m.Trace) -> None:
    """Load the samples beside ``trace`` into ``trace.stack_samples``; problems become warnings."""
    path = sidecar_path(trace.path)
    try:
        syncs = _sync_events(trace)
        if not os.path.exists(path):
            if syncs:
                trace.warnings.append(
                    f"{os.path.basename(path)}: the trace has perfkit stack-sampler markers but no stack samples "
                    "file beside it: source lines come from the trace alone")
            return
        trace.stack_samples = load(path, trace, syncs)
    except Exception as exc:  # a corrupt file must not cost the analysis
        trace.warnings.append(f"{os.path.basename(path)}: stack samples not used ({type(exc).__name__}: {exc})")


def load(path: str, trace: m.Trace, syncs: Optional[dict[str, tuple[float, float]]] = None) -> StackSamples:
    """Read and align one sidecar (raises on a malformed file; :func:`attach` turns that into a warning)."""
    with gzip.open(path, "rb") as f:
        doc = json.loads(f.read())
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ValueError(f"not a {SCHEMA} document")
    cols = doc["samples"]
    ts = np.asarray(cols["ts_us"], dtype=np.float64)
    thread = np.asarray(cols["thread"], dtype=np.int64)
    stack = np.asarray(cols["stack"], dtype=np.int64)
    stacks = doc["stacks"]
    threads = doc["threads"]
    if not (len(ts) == len(thread) == len(stack)):
        raise ValueError("sample columns differ in length")
    if len(ts) and (thread.min() < 0 or thread.max() >= len(threads) or stack.min() < 0 or stack.max() >= len(stacks)):
        raise ValueError("sample refers to a thread or stack the file does not list")
    if not all(isinstance(s, list) and all(isinstance(x, str) for x in s) for s in stacks):
        raise ValueError("stacks must be lists of frame strings")
    pids = np.asarray([int(t["pid"]) for t in threads], dtype=np.int64)
    tids = np.asarray([int(t["tid"]) for t in threads], dtype=np.int64)
    offset, alignment = _offset(doc, trace, _sync_events(trace) if syncs is None else syncs)
    if doc.get("warning"):
        trace.warnings.append(f"{os.path.basename(path)}: {doc['warning']}")
    return StackSamples(
        ts_us=ts + offset,
        pid=pids[thread] if len(ts) else np.zeros(0, np.int64),
        tid=tids[thread] if len(ts) else np.zeros(0, np.int64),
        stack=stack.astype(np.int32),
        stacks=stacks,
        interval_us=float(doc.get("interval_us") or 1000.0),
        alignment=alignment,
        path=path,
        thread_names={(int(t["pid"]), int(t["tid"])): str(t.get("name", "")) for t in threads},
        switch_interval_us=float(doc.get("switch_interval_us") or 5000.0),
    )


def _sync_events(trace: m.Trace) -> dict[str, tuple[float, float]]:
    """``perfkit.clock_sync#N`` -> (ts, dur) of its range in the trace (first one of each name)."""
    codes = {i: s for i, s in enumerate(trace.names) if s.startswith(SYNC_PREFIX)}
    if not codes:
        return {}
    names = trace.events[m.NAME]
    rows = np.flatnonzero(np.isin(names, np.fromiter(codes, dtype=np.int64)))
    out: dict[str, tuple[float, float]] = {}
    for r in rows.tolist():
        out.setdefault(codes[int(names[r])], (float(trace.events[m.TS][r]), float(trace.events[m.DUR][r])))
    return out


def _offset(doc: dict[str, Any], trace: m.Trace, syncs: dict[str, tuple[float, float]]) -> tuple[float, str]:
    """What to add to the sampler's clock (µs) to get the trace's ``ts`` (µs), and how it was found."""
    clock, offs = [], []
    for s in doc.get("syncs") or []:
        hit = syncs.get(str(s.get("name")))
        if hit is None:
            continue
        mid_clock = (float(s["clock_before_us"]) + float(s["clock_after_us"])) / 2.0
        clock.append(mid_clock)
        offs.append(hit[0] + max(hit[1], 0.0) / 2.0 - mid_clock)
    if clock:
        o = np.asarray(offs)
        if float(o.max() - o.min()) > MAX_SYNC_SPREAD_US:
            trace.warnings.append(
                f"stack samples: the clock pairings disagree by {float(o.max() - o.min()):.0f} µs; sample times "
                "use their mean offset")
        return float(o.mean()), "clock_sync"
    pairs = [s for s in doc.get("syncs") or [] if "unix_us" in s and "unix_clock_us" in s]
    if not pairs:
        raise ValueError("no clock pairing: the samples cannot be placed on the trace's clock")
    base_ns = trace.meta.get("baseTimeNanoseconds")
    base_us = float(base_ns) / 1000.0 if isinstance(base_ns, (int, float)) else 0.0
    p = pairs[0]
    trace.warnings.append(
        "stack samples: no perfkit.clock_sync marker in the trace; sample times are placed by Unix time "
        "(approximate)")
    return float(p["unix_us"]) - float(p["unix_clock_us"]) - base_us, "unix_time"

