"""Findings: what is wrong with the step, where, how much it costs, what to change.

Each detector is a function ``(ctx) -> Optional[Finding dict]`` over the
analysis context (timeline, steps, device work, step statistics, the document
built so far). A finding is ``{id, severity, title, where, evidence, remedy,
cost_ms_per_step}``; the list is ranked by the time at stake. Thresholds are
constants in :mod:`perfkit.analysis.rules` style, here at the top, so a healthy
GPU-bound step raises nothing above ``info``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from ..trace import model as m
from ..arrays import distinct, distinct_inverse, median
from . import intervals, rules
from .attribute import DeviceWork, Steps, innermost_around
from .intervals import Coverage
from .document import launcher_text
from .ops import NO_LAUNCH_LABEL, NO_OP_LABEL, Sources
from .steps import StepStats, capture_windows, in_kept_steps
from .timeline import Timeline, name_mask
from .document import Device, DeviceTime, OpRow, Share, TimeBasis, basis_word, finding_order, severity_rank
from .document import Steps as Steps_

# --------------------------------------------------------------------- thresholds (shares of the step)

IDLE_WARN = 0.20  #: GPU idle share of the step window for host_bound_idle: warning
IDLE_CRIT = 0.50  #: ... critical
MIN_IDLE_OVERLAP_US = 10.0  #: host intervals covering less idle time than this are folded into their parents
#: A launch's own latency: from its runtime call's return to its device op's start on an idle
#: device, 1-8 µs measured (p10-p99) on H100, V100 and MI250 traces, p90 14 µs on a busy
#: multi-stream one. Pending work counts as device queue latency only beyond this.
LAUNCH_LATENCY_US = 50.0
#: A host op instance is one-off work (start-up, lazy initialisation, autotuning, a worker start,
#: a checkpoint) when it runs at least this many times longer than the median instance of its
#: name (of at least ONE_OFF_MIN_CALLS), and at least ONE_OFF_MIN_US.
ONE_OFF_FACTOR = 20.0
ONE_OFF_MIN_CALLS = 3
ONE_OFF_MIN_US = 1000.0
SYNC_WARN_SHARE = 0.05  #: time blocked in host-device syncs / step wall time: warning
SYNC_WARN_COUNT = 20  #: or this many syncs per step
TINY_KERNEL_US = 10.0  #: a kernel shorter than this is "tiny"
LAUNCH_MIN_KERNELS = 300  #: kernels per step before launch-bound is considered
DATALOADER_WARN = 0.10  #: data-loader time / step wall time: warning
COPY_INFO = 0.05  #: copy share of GPU time: info
COPY_WARN = 0.20  #: ... warning
COPY_MIN_STEP_SHARE = 0.02  #: ... and the copies take at least this share of the step's GPU window
SLOW_OP_WARN = 0.05  #: one slow op's share of the step: warning
MEMORY_WARN = 0.90  #: peak allocated / device memory: warning

#: Host calls that block until the GPU catches up.
SYNC_RUNTIME = r"^(cudaStreamSynchronize|cudaDeviceSynchronize|cudaEventSynchronize|cudaMemcpy|hipStreamSynchronize|hipDeviceSynchronize|hipMemcpy)$"
#: ATen ops that synchronise (a scalar or a data-dependent shape read back to the host).
SYNC_OPS = r"^aten::(item|_local_scalar_dense|nonzero|unique|_unique2|unique_consecutive|unique_dim|masked_select|repeat_interleave|tolist)$"
#: Ops whose cost is often out of proportion.
SLOW_OPS = r"^aten::(unique|_unique2|unique_consecutive|unique_dim|sort|argsort|nonzero|index_put_|_index_put_impl_|scatter_add_?|masked_select|masked_scatter_|topk|bincount|histc|linalg_inv|inverse|linalg_svd|svd|linalg_eigh|cholesky|matrix_exp|linalg_matrix_exp|logdet|linalg_slogdet)$"

SLOW_OP_REMEDIES = {
    "unique": "call torch.unique once outside the loop, with sorted=False, or keep a boolean mask instead",
    "sort": "sort once and reuse the permutation, or use topk when only the largest values are needed",
    "nonzero": "use a boolean mask (torch.where / masked ops) instead of materialising indices",
    "index_put": "use scatter_/index_copy_ on contiguous indices, or build the tensor with torch.where",
    "masked_select": "keep the mask and use torch.where; masked_select returns a data-dependent shape",
    "inv": "solve instead of inverting (torch.linalg.solve / cholesky_solve), batched over the pairs",
    "svd": "batch the decompositions, or use torch.linalg.svdvals / a truncated method when possible",
    "exp": "batch matrix exponentials over the pairs (torch.linalg.matrix_exp accepts a batch)",
}


@dataclass(frozen=True)
class Tables:
    """The finished sections of the document the late detectors read (typed; never the document itself)."""

    steps: Steps_
    device: DeviceTime
    categories: dict[str, Share]
    copies: dict[str, Any]
    top_ops: list[OpRow]
    devices: list[Device]


@dataclass
class Context:
    """What a detector reads: the timeline and step statistics, the time basis and, for the detectors
    that run after the tables are built, those tables (:class:`Tables`; None for the early ones)."""

    tl: Timeline
    steps: Steps
    dw: DeviceWork
    stats: StepStats
    basis: TimeBasis
    src: Sources
    kept: np.ndarray  #: device rows in kept steps
    tables: Optional[Tables] = None

    @property
    def t(self) -> Tables:
        """The tables (a late detector only; an early one that asks is a bug)."""
        if self.tables is None:
            raise RuntimeError("an early detector read the tables, which are not built yet")
        return self.tables

    @property
    def n(self) -> int:
        return max(int(self.stats.kept.sum()), 1)

    def kept_windows(self) -> tuple[np.ndarray, np.ndarray]:
        return self.stats.win_start[self.stats.kept], self.stats.win_end[self.stats.kept]

    def step_wall_ms(self) -> float:
        return float(self.t.steps.get("wall_ms_median") or 0.0)

    def in_kept_steps(self, t: np.ndarray) -> np.ndarray:
        return in_kept_steps(self.steps, self.stats, t)


def finding(fid: str, severity: str, title: str, where: Any, evidence: dict[str, Any], remedy: str,
            cost_ms: float) -> dict[str, Any]:
    return {"id": fid, "severity": severity, "title": title, "where": where, "evidence": evidence,
            "remedy": remedy, "cost_ms_per_step": round(float(cost_ms), 4)}


def _basis(ctx: Context) -> str:
    return basis_word(ctx.basis)


def _src(ctx: Context, code: int) -> Optional[str]:
    """A source line as the evidence supports it: "(def)" marks a definition line (``Sources.label``)."""
    return ctx.src.label(code) if code >= 0 else None


def _per_step_count(total: int, steps: int, one: str, many: str) -> str:
    """"5 host-device syncs per step", or "1 host-device sync in 5 steps" when fewer than one per step
    (never "0 ... per step" for a count that is not zero)."""
    if steps <= 0 or total >= steps:
        per = total / max(steps, 1)
        text = f"{per:.0f}" if abs(per - round(per)) < 0.05 else f"{per:.1f}"
        return f"{text} {one if text == '1' else many} per step"
    return f"{total} {one if total == 1 else many} in {steps} steps"


def _ms_text(ms: float) -> str:
    """Milliseconds with enough digits that a non-zero figure never reads 0.0."""
    return f"{ms:.1f}" if ms >= 0.05 or ms == 0 else f"{ms:.3f}"


def _top_by(ctx: Context, rows: np.ndarray, weight: np.ndarray, k: int = 3, use_source: bool = True) -> list[dict[str, Any]]:
    """The names (and source lines) of ``rows`` carrying the most ``weight`` (µs), as [{name, source, ms_per_step}]."""
    if len(rows) == 0 or weight.sum() <= 0:
        return []
    names = ctx.tl.name[rows].astype(np.int64)
    srcs = ctx.src.at(rows) if use_source else np.full(len(rows), -1)
    key = names * (len(ctx.tl.trace.names) + 2) + (srcs + 1)
    uniq, inv = distinct_inverse(key)
    tot = np.bincount(inv.reshape(-1), weights=weight, minlength=len(uniq))
    out = []
    for i in np.argsort(-tot)[:k].tolist():
        if tot[i] <= 0:
            break
        code, s = divmod(int(uniq[i]), len(ctx.tl.trace.names) + 2)
        out.append({"name": ctx.tl.trace.names[code], "source": _src(ctx, s - 1),
                    "ms_per_step": round(float(tot[i]) / 1000.0 / ctx.n, 4)})
        if not use_source:
            out[-1]["code"] = code
    return out


# --------------------------------------------------------------------- detectors


def host_bound_idle(ctx: Context) -> Optional[dict[str, Any]]:
    """The GPU idles a large part of the step while the threads that feed it run host work.

    The kept steps' idle time is split into classes (:func:`_idle_classes`); only
    ``host_bound`` time raises this finding, and only frames and ops of the
    feeding threads that ran during that time are named. When the idle time is
    large but not host-bound, an ``info`` finding ``idle_not_host_bound`` says
    what it is instead.
    """
    if ctx.basis == "cpu" or len(ctx.dw) == 0:
        return None
    a, b = ctx.kept_windows()
    window = float((b - a).sum())
    idle = float(ctx.stats.idle_us[ctx.stats.kept].sum())
    if window <= 0 or idle / window < IDLE_WARN:
        return None
    # The idle gaps of the kept windows, split by what explains each moment of them.
    busy = ctx.dw.busy
    gap_s, gap_e = _complement(busy.starts, busy.ends, a, b)
    feed = _feeding_threads(ctx)
    cls = _idle_classes(ctx, gap_s, gap_e, feed)
    per_step = {k: round(v / 1000.0 / ctx.n, 3) for k, v in cls.total_us.items()}
    host_us = cls.total_us["host_bound"]
    evidence: dict[str, Any] = {
        "gpu_idle_ms_per_step": round(idle / 1000.0 / ctx.n, 3), "idle_share": round(idle / window, 4),
        "host_bound_idle_ms_per_step": per_step["host_bound"], "host_bound_share": round(host_us / window, 4),
        "step_window_ms": round(window / 1000.0 / ctx.n, 3),
        "idle_classes_ms_per_step": per_step,
        "feeding_threads": _thread_labels(ctx, feed),
    }
    if host_us / window < IDLE_WARN:
        return _idle_not_host_bound(ctx, cls, idle, window, evidence)
    gaps = Coverage(cls.host_s, cls.host_e)  # the host-bound moments only
    tl = ctx.tl
    frames = ctx.src.frames  # user Python frames of the feeding threads
    host_rows = tl.rows(m.Kind.CPU_OP, m.Kind.USER_ANNOTATION)
    host_rows = host_rows[feed[tl.thread[host_rows]]]
    if len(frames):  # the innermost user frames say the most
        rows = frames
    else:
        rows = host_rows[~name_mask(tl.trace.names, rules.STEP_PATTERN)[tl.name[host_rows]]]
    # Only intervals covering some host-bound idle time matter (a parent of one that
    # does covers it too); those under 10 µs in all are folded into their parents,
    # which keeps the call-tree pass small on traces with millions of short ops. An
    # interval shorter than 10 µs cannot cover 10 µs: dropped before the interval query.
    rows = rows[(tl.end[rows] - tl.start[rows]) >= MIN_IDLE_OVERLAP_US]
    overlap = gaps.within(tl.start[rows], tl.end[rows])
    touch = overlap >= MIN_IDLE_OVERLAP_US
    rows, overlap = rows[touch], overlap[touch]
    # Credit each frame/op with the idle time it covers itself, not through a
    # function it called: outer frames (<module>, main) would otherwise tie.
    overlap = _self_overlap(tl, rows, overlap)
    sel = overlap > 0
    where = _top_by(ctx, rows[sel], overlap[sel], use_source=not len(frames))
    if len(frames):
        for w in where:
            w["source"] = _src(ctx, int(w.pop("code")))  # the frame itself: its line as the evidence supports it
    sampled = _sampled_where(ctx, gaps) if not len(frames) else []
    if sampled:  # stack samples in the host-bound moments: the executing user lines, weighted by samples
        where = sampled
        evidence["source_basis"] = "sampled"
    untraced_us = cls.untraced_us
    evidence["host_bound_untraced_ms_per_step"] = round(untraced_us / 1000.0 / ctx.n, 3)
    share = host_us / window
    sev = "critical" if share >= IDLE_CRIT else "warning"
    host_ms = host_us / 1000.0 / ctx.n
    if where and (untraced_us < 0.5 * host_us or sampled):
        top = where[0]
        lead = " ".join(x for x in (top.get("name"), f"({top['source']})" if top.get("source") and top.get("name") else top.get("source")) if x)
    else:  # most of the host-bound time has no op or frame recorded: say so, do not guess
        lead = ("code the trace does not show (no op, Python frame or stack sample recorded: profile with perfkit "
                "profile, which samples the stacks, or with_stack=True)")
    # How much of the host-bound idle time the data loader explains (the merge in detect() uses it).
    loader = host_rows[tl.matches(rules.DATALOADER_PATTERN)[host_rows]]
    loader_idle = float(gaps.within(tl.start[loader], tl.end[loader]).sum()) if len(loader) else 0.0
    evidence["dataloader_share_of_idle"] = round(loader_idle / host_us, 4) if host_us else 0.0
    return finding(
        "host_bound_idle", sev,
        f"GPU idle {share:.0%} of each step ({host_ms:.1f} ms) while the CPU runs {lead}",
        where, evidence,
        "Take the CPU work off the step's critical path: vectorise or compile it (e.g. a compiled solver such as "
        "scipy.optimize.linear_sum_assignment instead of a Python loop), run it on the GPU, overlap it with GPU "
        "work (prefetch in a DataLoader worker, a background thread, or async copies), or do it less often.",
        host_ms,
    )


#: Classes of GPU idle time, in the order they claim a moment of it (the first that holds wins).
IDLE_CLASSES = ("device_queue_latency", "before_first_device_op", "trace_edges", "graph_capture",
                "one_off_host_work", "host_bound", "no_host_activity")

#: What each class means, for titles and docs.
IDLE_CLASS_TEXT = {
    "device_queue_latency": "device queue latency (work already launched had not started)",
    "before_first_device_op": "before the first device op of the trace (or before work launched before the trace)",
    "trace_edges": "outside the recorded CPU timeline (the trace's edges)",
    "graph_capture": "a CUDA/HIP graph was being captured (its kernels are recorded, not run)",
    "one_off_host_work": "one-off host work (an op instance at least 20x its usual time: start-up, lazy "
    "initialisation, autotuning, a worker start)",
    "host_bound": "the feeding threads ran host work",
    "no_host_activity": "the feeding threads recorded nothing (cause unknown)",
}

IDLE_CLASS_REMEDY = {
    "device_queue_latency": "The GPU had work queued and did not start it: the CPU is not the cause. Look at the "
    "device side: another process or an untraced stream on the same GPU, a graph launch's setup, a stream waiting "
    "on an event, or an offset between the CPU and GPU clocks of the trace.",
    "before_first_device_op": "The window opens before the first device op of the trace: profile steady-state "
    "steps (a profiler schedule with wait/warmup steps) so the window starts with the step's own work.",
    "trace_edges": "The CPU timeline ends (or starts) inside the window: record whole steps (a profiler schedule, "
    "ProfilerStep markers) so both sides cover the same time.",
    "graph_capture": "Capturing a graph runs nothing on the GPU: this is set-up, not a step. Profile the replayed "
    "steps (after capture) to see their cost.",
    "one_off_host_work": "One-off work, not the steady step: profile after warm-up (perfkit profile --skip-first N, "
    "or a profiler schedule with wait/warmup steps). If it recurs every step, it is not one-off: look at the op "
    "named in the evidence.",
    "no_host_activity": "The threads that feed the GPU recorded nothing while it idled: the cause is unknown. "
    "Profile with perfkit profile (it samples the Python stacks) or with_stack=True, and check for untraced "
    "threads or processes that launch the work.",
}


@dataclass
class _IdleClasses:
    total_us: dict[str, float]  #: idle µs per class (all of IDLE_CLASSES), summing to the gaps' length
    host_s: np.ndarray  #: the host-bound moments: disjoint sorted intervals (µs)
    host_e: np.ndarray
    untraced_us: float  #: host-bound µs covered by no op, frame or runtime call (only step markers)


def _feeding_threads(ctx: Context) -> np.ndarray:
    """Bool per dense thread: the threads that launch device work, or the main thread."""
    feed = ctx.src.threads.copy()
    launch = ctx.dw.launch[ctx.dw.launch >= 0]
    feed[ctx.tl.thread[launch]] = True  # any runtime call the device work links to
    return feed


def _thread_labels(ctx: Context, feed: np.ndarray, k: int = 4) -> list[str]:
    """Up to k feeding threads as 'pid/tid name' strings (for the evidence)."""
    tl = ctx.tl
    out = []
    for i in np.flatnonzero(feed)[:k].tolist():  # a few threads: one scan each
        r = int(np.argmax(tl.thread == i))
        pid, tid = int(tl.col(m.PID)[r]), int(tl.col(m.TID)[r])
        name = tl.thread_name(pid, tid)
        out.append(f"{pid}/{tid}" + (f" {name}" if name else ""))
    return out


def _idle_classes(ctx: Context, gap_s: np.ndarray, gap_e: np.ndarray, feed: np.ndarray) -> _IdleClasses:
    """Split the idle gaps [gap_s, gap_e) by what explains each moment (IDLE_CLASSES, first match wins).

    * ``device_queue_latency``: a launch has returned (more than ``LAUNCH_LATENCY_US``
      ago: the launch's own latency is not the queue's) and its device op has not
      started: the GPU had work and did not run it.
    * ``before_first_device_op``: before the trace's first device op, or before the last
      device op that starts before the first recorded launch (launched before the trace).
    * ``trace_edges``: before the first or after the last host event of any thread.
    * ``graph_capture``: a thread was between ``*StreamBeginCapture`` and ``*StreamEndCapture``.
    * ``one_off_host_work``: a feeding thread was inside a one-off op instance
      (:func:`_one_off`: start-up, lazy initialisation, autotuning).
    * ``host_bound``: a feeding thread was inside a host event (op, Python frame, runtime
      call, annotation, the step marker itself).
    * ``no_host_activity``: the rest: inside the CPU timeline, but the feeding threads
      recorded nothing.
    """
    tl, dw = ctx.tl, ctx.dw
    empty = np.zeros(0)
    if len(gap_s) == 0:
        return _IdleClasses({c: 0.0 for c in IDLE_CLASSES}, empty, empty, 0.0)
    # Work launched and not yet started.
    linked = np.flatnonzero(dw.launch >= 0)
    ret = tl.end[dw.launch[linked]] + LAUNCH_LATENCY_US
    wait = dw.start[linked] > ret
    pending = Coverage(ret[wait], dw.start[linked][wait])
    # Before the first device op (and before work launched before the trace).
    rt = tl.rows(m.Kind.RUNTIME, m.Kind.DRIVER)
    launches = rt[tl.matches(rules.LAUNCH_API_PATTERN)[rt]]
    first_launch = float(tl.start[launches].min()) if len(launches) else np.inf
    first_dev = float(dw.start.min())
    early = dw.start[(dw.launch < 0) & (dw.start < first_launch)]
    first_own = max(first_dev, float(early.max())) if len(early) else first_dev
    # The recorded CPU timeline, and the host events of the feeding threads.
    host = tl.rows(*m.HOST_KINDS)
    cpu_lo = float(tl.start[host].min()) if len(host) else np.inf
    cpu_hi = float(tl.end[host].max()) if len(host) else -np.inf
    host = host[feed[tl.thread[host]]]
    active = Coverage(tl.start[host], tl.end[host])
    steps = tl.matches(rules.STEP_PATTERN)[host] & (tl.kind[host] == int(m.Kind.USER_ANNOTATION))
    recorded = Coverage(tl.start[host[~steps]], tl.end[host[~steps]])
    capture = capture_windows(tl)
    ops = host[((tl.kind[host] == int(m.Kind.CPU_OP)) | (tl.kind[host] == int(m.Kind.USER_ANNOTATION))) & ~steps]
    one_off_rows = ops[_one_off(tl, ops)]
    one_off = Coverage(tl.start[one_off_rows], tl.end[one_off_rows])
    # Elementary segments between every boundary, each in one class.
    pts = distinct(np.concatenate([gap_s, gap_e, pending.starts, pending.ends, active.starts, active.ends,
                                    capture.starts, capture.ends, one_off.starts, one_off.ends,
                                    [first_own, cpu_lo, cpu_hi]]))
    pts = pts[np.isfinite(pts)]
    lo, hi = pts[:-1], pts[1:]
    mid = (lo + hi) / 2.0
    in_gap = Coverage(gap_s, gap_e).contains(mid)
    lo, hi, mid = lo[in_gap], hi[in_gap], mid[in_gap]
    label = np.select(
        [pending.contains(mid), mid < first_own, (mid < cpu_lo) | (mid >= cpu_hi), capture.contains(mid),
         one_off.contains(mid), active.contains(mid)],
        [0, 1, 2, 3, 4, 5], default=6)
    length = hi - lo
    tot = np.bincount(label, weights=length, minlength=len(IDLE_CLASSES))
    hb = label == IDLE_CLASSES.index("host_bound")
    host_s, host_e = lo[hb], hi[hb]
    untraced = float((host_e - host_s).sum() - recorded.within(host_s, host_e).sum())
    return _IdleClasses({c: float(tot[i]) for i, c in enumerate(IDLE_CLASSES)}, host_s, host_e, max(untraced, 0.0))


def _one_off(tl: Timeline, rows: np.ndarray) -> np.ndarray:
    """Bool per row: an instance at least ONE_OFF_FACTOR x the median duration of its name's instances."""
    if len(rows) == 0:
        return np.zeros(0, dtype=bool)
    codes = tl.name[rows]
    dur = tl.end[rows] - tl.start[rows]
    # by name, then by duration (equal durations in any order: the flags do not depend on it); two
    # argsorts, the second stable on the int32 codes, take ~2/3 of np.lexsort's time
    by_dur = np.argsort(dur)
    order = by_dur[np.argsort(codes[by_dur], kind="stable")]
    c, d = codes[order], dur[order]
    first = np.flatnonzero(np.concatenate(([True], c[1:] != c[:-1])))  # (np.r_: ~4 µs more a call)
    counts = np.diff(np.concatenate((first, [len(c)])))
    median = d[first + counts // 2]
    group = np.repeat(np.arange(len(first)), counts)
    flag = (counts[group] >= ONE_OFF_MIN_CALLS) & (d >= ONE_OFF_FACTOR * median[group]) & (d >= ONE_OFF_MIN_US)
    out = np.zeros(len(rows), dtype=bool)
    out[order] = flag
    return out


def _idle_not_host_bound(ctx: Context, cls: _IdleClasses, idle: float, window: float,
                         evidence: dict[str, Any]) -> dict[str, Any]:
    """An info finding: the GPU idles much of the step, but the host is not what it waits for."""
    others = {k: v for k, v in cls.total_us.items() if k != "host_bound"}
    top = max(others, key=lambda k: others[k])
    where = [{"class": k, "name": IDLE_CLASS_TEXT[k], "ms_per_step": round(v / 1000.0 / ctx.n, 4)}
             for k, v in sorted(cls.total_us.items(), key=lambda kv: -kv[1]) if v > 0]
    idle_ms = idle / 1000.0 / ctx.n
    top_ms = others[top] / 1000.0 / ctx.n
    return finding(
        "idle_not_host_bound", "info",
        f"GPU idle {idle / window:.0%} of each step ({idle_ms:.1f} ms), not host-bound: "
        f"{top_ms:.1f} ms {IDLE_CLASS_TEXT[top]}",
        where, evidence, IDLE_CLASS_REMEDY[top],
        sum(others.values()) / 1000.0 / ctx.n,
    )


def host_device_sync(ctx: Context) -> Optional[dict[str, Any]]:
    """Synchronisations in the step: the host blocks until the GPU catches up.

    A sync is a blocking runtime call (cudaStreamSynchronize, cudaMemcpy, ...);
    ``.item()``/``.tolist()``/``nonzero`` on a GPU tensor show up as one inside
    their ATen op. (``.item()`` on a CPU tensor is not a sync and is not counted.)
    """
    tl = ctx.tl
    rt = tl.rows(m.Kind.RUNTIME, m.Kind.DRIVER)
    syncs = rt[tl.matches(SYNC_RUNTIME)[rt]]
    syncs = syncs[ctx.in_kept_steps(tl.start[syncs])]
    if len(syncs) == 0:
        return None
    blocked = tl.end[syncs] - tl.start[syncs]
    count = len(syncs) / ctx.n
    blocked_ms = float(blocked.sum()) / 1000.0 / ctx.n
    wall = ctx.step_wall_ms()
    share = blocked_ms / wall if wall else 0.0
    sev = "warning" if (share >= SYNC_WARN_SHARE or count >= SYNC_WARN_COUNT) else "info"
    # where: the ATen op around each sync (item, nonzero, unique, copy_...), with its source line
    cpu = tl.rows(m.Kind.CPU_OP)
    cpu = cpu[~tl.matches(r"^aten::_local_scalar_dense$|^aten::copy_$|^aten::_to_copy$|^aten::to$|" + rules.STEP_PATTERN)[cpu]]
    holder = innermost_around(tl, cpu, syncs)
    rows = np.where(holder >= 0, holder, syncs)
    where = _top_by(ctx, rows, np.maximum(blocked, 1e-3))
    lead = where[0] if where else {"name": "?", "source": None}
    at = f" at {lead['source']}" if lead.get("source") else ""
    by_op = sorted({ctx.tl.trace.names[c] for c in tl.name[holder[holder >= 0]]})
    # GPU idle that follows the syncs: after a sync the GPU's queue is empty and it
    # waits for whatever the CPU does next (the loop's Python work).
    idle_after_ms = _idle_after(ctx, tl.end[syncs]) / 1000.0 / ctx.n
    return finding(
        "host_device_sync", sev,
        f"{_per_step_count(len(syncs), ctx.n, 'host-device sync', 'host-device syncs')} "
        f"({_ms_text(blocked_ms)} ms blocked per step) from {lead['name']}{at}",
        where, {"syncs_per_step": round(count, 2), "blocked_ms_per_step": round(blocked_ms, 3),
                "share_of_step": round(share, 4), "syncing_ops": by_op[:8],
                "gpu_idle_after_syncs_ms_per_step": round(idle_after_ms, 3)},
        "Keep values on the GPU: avoid .item(), .tolist(), .cpu() and data-dependent shapes (nonzero, unique, "
        "boolean indexing) inside the step; log scalars every N steps; replace Python loops over tensor values "
        "with tensor ops (masks, torch.where, scatter). torch.cuda.set_sync_debug_mode('warn') lists them.",
        blocked_ms,
    )


def launch_bound(ctx: Context) -> Optional[dict[str, Any]]:
    """Many tiny kernels: the CPU's launch rate, not the GPU, sets the pace."""
    dw = ctx.dw
    if ctx.basis == "cpu":
        return None
    kern = ctx.kept & (dw.kind == int(m.Kind.KERNEL))
    # Kernels a graph replay started (one cudaGraphLaunch for hundreds) were not launched one by one.
    graph = np.zeros(len(dw), dtype=bool)
    linked = dw.launch >= 0
    graph[linked] = ctx.tl.matches(rules.GRAPH_LAUNCH_PATTERN)[dw.launch[linked]]
    graph_per_step = int((kern & graph).sum()) / ctx.n
    kern &= ~graph
    n_k = int(kern.sum()) / ctx.n
    if n_k < LAUNCH_MIN_KERNELS:
        return None
    dur = (dw.end - dw.start)[kern]
    med = median(dur)
    util = float(ctx.t.device["utilization"])
    tiny = kern & ((dw.end - dw.start) < TINY_KERNEL_US)
    tiny_share = float(tiny.sum()) / max(int(kern.sum()), 1)
    if med >= TINY_KERNEL_US or util >= 0.9:
        return None
    rows = np.flatnonzero(tiny & (dw.launch >= 0))
    launches = dw.launch[rows]
    has_op = dw.op[rows] >= 0
    where = _top_by(ctx, dw.op[rows][has_op], (dw.end - dw.start)[rows][has_op])  # GPU time of their tiny kernels
    idle_ms = float(ctx.stats.idle_us[ctx.stats.kept].sum()) / 1000.0 / ctx.n
    # At stake: the CPU time spent launching (bounded by the GPU idle it can explain).
    rt = ctx.tl.rows(m.Kind.RUNTIME, m.Kind.DRIVER)
    rt = rt[ctx.tl.matches(rules.LAUNCH_API_PATTERN)[rt] & ctx.in_kept_steps(ctx.tl.start[rt])]
    launch_ms = float((ctx.tl.end[rt] - ctx.tl.start[rt]).sum()) / 1000.0 / ctx.n
    lead = where[0] if where else {"name": "?", "source": None}
    at = f" at {lead['source']}" if lead.get("source") else ""
    sev = "warning" if util < 0.8 else "info"
    return finding(
        "launch_bound", sev,
        f"{n_k:.0f} kernels per step, median {med:.1f} µs: launch-bound ({lead['name']}{at})",
        where, {"kernels_per_step": round(n_k, 1), "median_kernel_us": round(med, 3),
                "tiny_kernel_share": round(tiny_share, 4), "gpu_utilization": round(util, 4),
                "launches_from_top_op_per_step": round(len(launches) / ctx.n, 1),
                "cpu_launch_ms_per_step": round(launch_ms, 3), "gpu_idle_ms_per_step": round(idle_ms, 3),
                "graph_replayed_kernels_per_step": round(graph_per_step, 1)},
        "Batch the work: replace Python loops over components with one batched op (torch.einsum, bmm, "
        "torch.vmap over stacked weights), fuse elementwise chains with torch.compile, or capture the step in a "
        "CUDA graph (torch.cuda.graphs / torch.compile mode='reduce-overhead').",
        min(launch_ms, idle_ms) if launch_ms > 0 else idle_ms,
    )


def dataloader_bound(ctx: Context) -> Optional[dict[str, Any]]:
    tl = ctx.tl
    host = tl.rows(m.Kind.CPU_OP, m.Kind.USER_ANNOTATION)
    loader = host[tl.matches(rules.DATALOADER_PATTERN)[host]]
    loader = loader[ctx.in_kept_steps(tl.start[loader])]
    if len(loader) == 0:
        return None
    # A first fetch that starts the workers (or fills a cache) is start-up, not the steady wait.
    one_off = _one_off(tl, loader)
    one_off_ms = float((tl.end[loader[one_off]] - tl.start[loader[one_off]]).sum()) / 1000.0 / ctx.n
    loader = loader[~one_off]
    if len(loader) == 0:
        return None
    wait_ms = float(Coverage(tl.start[loader], tl.end[loader]).total) / 1000.0 / ctx.n
    wall = ctx.step_wall_ms()
    share = wait_ms / wall if wall else 0.0
    if share < DATALOADER_WARN / 2:
        return None
    sev = "warning" if share >= DATALOADER_WARN else "info"
    return finding(
        "dataloader_bound", sev,
        f"The step waits {wait_ms:.1f} ms ({share:.0%}) for its next batch",
        _top_by(ctx, loader, tl.end[loader] - tl.start[loader], k=2),
        {"dataloader_ms_per_step": round(wait_ms, 3), "share_of_step": round(share, 4),
         "one_off_fetch_ms_per_step": round(one_off_ms, 3)},
        "Load data in parallel and ahead: DataLoader(num_workers=N, pin_memory=True, prefetch_factor=4, "
        "persistent_workers=True), move decoding/tokenisation offline, and copy with .to(device, non_blocking=True).",
        wait_ms,
    )


def warmup_outlier(ctx: Context) -> Optional[dict[str, Any]]:
    excluded = [e for e in ctx.t.steps["excluded"] if e["reason"].startswith("warm-up")]
    if not excluded:
        return None
    rows = {r["id"]: r for r in ctx.t.steps["table"]}
    median_ms = float(ctx.t.steps.get("window_ms_median") or 0.0)
    extra = [max(rows[e["id"]]["wall_ms"], rows[e["id"]]["window_ms"]) - median_ms
             for e in excluded if e["id"] in rows]
    return finding(
        "warmup_outlier", "info",
        f"{len(excluded)} step(s) far slower than steady state ({sum(extra):.0f} ms extra), excluded from the figures",
        [{"step": e["id"], "reason": e["reason"]} for e in excluded],
        {"excluded_steps": [e["id"] for e in excluded], "extra_ms": [round(x, 3) for x in extra]},
        "Nothing to fix if it happens once (compilation, cuDNN/cuBLAS autotuning, allocator growth); profile after "
        "warm-up (perfkit profile --skip-first N). If it recurs, look for recompilation (torch._dynamo.explain) or "
        "shapes that change between steps.",
        sum(extra) / ctx.n,  # one-off, spread over the analysed steps
    )


def copy_overhead(ctx: Context) -> Optional[dict[str, Any]]:
    cats = ctx.t.categories
    share = float(cats.get("copy", {}).get("share") or 0.0)
    if share < COPY_INFO:
        return None
    ms = float(cats["copy"].get("ms_per_step") or 0.0)
    copies = ctx.t.copies
    where = copies.get("sources", [])[:3]
    # A large share of very little GPU work (a trace that is mostly idle) is not worth a warning.
    window_ms = float(ctx.stats.window_us[ctx.stats.kept].sum()) / 1000.0 / ctx.n
    sev = "warning" if share >= COPY_WARN and ms >= COPY_MIN_STEP_SHARE * window_ms else "info"
    most = ""
    if where:
        lead = where[0]
        op = str(lead.get("op"))
        who = f"an unknown launcher {op}" if op in (NO_OP_LABEL, NO_LAUNCH_LABEL) else launcher_text(op, lead.get("op_basis"))
        most = f", most from {who}" + (f" at {lead['source']}" if lead.get("source") else "")
    return finding(
        "copy_overhead", sev,
        f"Copies take {share:.0%} of {_basis(ctx)} time ({ms:.1f} ms per step){most}",
        where, {d: copies[d] for d in ("h2d", "d2h", "d2d") if d in copies} | {"copy_share": round(share, 4)},
        "Remove avoidable copies: dtype round trips (a .float() of bf16 logits, casts inside the loop), "
        ".contiguous() after transpose/slicing, .cpu()/.to() of tensors that stay on the GPU; keep weights in the "
        "compute dtype; use pinned memory and non_blocking=True for host copies.",
        ms,
    )


def slow_op(ctx: Context) -> Optional[dict[str, Any]]:
    tl = ctx.tl
    top = ctx.t.top_ops
    rx = re.compile(SLOW_OPS)
    cands = [o for o in top if rx.search(rules.match_text(o["name"]))]
    wall = ctx.step_wall_ms()
    # CPU time of slow ops too (unique/sort on the host, or their synchronising part)
    cpu = tl.rows(m.Kind.CPU_OP)
    slow = cpu[tl.matches(SLOW_OPS)[cpu]]
    slow = slow[ctx.in_kept_steps(tl.start[slow])]
    if len(slow):
        by = _top_by(ctx, slow, tl.end[slow] - tl.start[slow], k=3)
        best_cpu = by[0] if by else None
    else:
        best_cpu = None
    best_gpu = max(cands, key=lambda o: o["ms_per_step"]) if cands else None
    gpu_ms = best_gpu["ms_per_step"] if best_gpu else 0.0
    cpu_ms = best_cpu["ms_per_step"] if best_cpu else 0.0
    if max(gpu_ms, cpu_ms) <= 0 or max(gpu_ms, cpu_ms) / max(wall, 1e-9) < SLOW_OP_WARN / 2:
        return None
    best = best_gpu if gpu_ms >= cpu_ms else best_cpu
    assert best is not None  # the larger of the two figures is > 0, so its op exists
    name = best["name"]
    source = best.get("source")
    ms = max(gpu_ms, cpu_ms)
    calls = sum(1 for r in slow if tl.trace.names[tl.name[r]] == name) / ctx.n
    share = ms / wall if wall else 0.0
    remedy = next((v for k, v in SLOW_OP_REMEDIES.items() if k in name), "avoid this op in the step or batch it")
    return finding(
        "slow_op", "warning" if share >= SLOW_OP_WARN else "info",
        f"{name} takes {ms:.1f} ms per step ({share:.0%}) in {calls:.0f} calls" + (f" at {source}" if source else ""),
        {"op": name, "source": source}, {"ms_per_step": round(ms, 3), "calls_per_step": round(calls, 1),
                                         "share_of_step": round(share, 4)},
        remedy[0].upper() + remedy[1:] + ".",
        ms,
    )


def memory_pressure(ctx: Context) -> Optional[dict[str, Any]]:
    mem = ctx.tl.trace.memory
    if len(mem[m.MEM_TS]) == 0:
        return None
    alloc = mem[m.MEM_ALLOCATED]
    dev = mem[m.MEM_DEVICE_TYPE]
    sel = (alloc >= 0) & (dev == 1)
    if not sel.any():
        return None
    peak = int(alloc[sel].max())
    total = next((d.get("memory_bytes") for d in ctx.t.devices if d.get("memory_bytes")), None)
    if not total:
        return None
    frac = peak / total
    if frac < MEMORY_WARN:
        return None
    return finding(
        "memory_pressure", "warning",
        f"Peak GPU memory {peak / 2**30:.1f} GiB is {frac:.0%} of the device",
        None, {"peak_allocated_bytes": peak, "device_bytes": total, "fraction": round(frac, 4)},
        "Cut the peak: chunked / fused cross-entropy instead of materialising full logits, activation "
        "checkpointing on the largest blocks, a smaller micro-batch with gradient accumulation, or bf16 weights.",
        0.0,
    )


DETECTORS: tuple[Callable[[Context], Optional[dict[str, Any]]], ...] = (
    host_bound_idle, host_device_sync, launch_bound, dataloader_bound, warmup_outlier, copy_overhead,
    slow_op, memory_pressure,
)

#: Detectors that read nothing of the document but ``trace``: they may run early,
#: beside the tables (``run_early``), and their results be handed to ``detect``.
EARLY_DETECTORS = (host_bound_idle,)



def _run(det: Callable[[Context], Optional[dict[str, Any]]], ctx: Context) -> Optional[dict[str, Any]]:
    try:
        return det(ctx)
    except Exception as exc:  # a detector must never take the analysis down
        return finding(det.__name__, "info", f"detector {det.__name__} failed: {exc}", None, {}, "", 0.0)


def run_early(ctx: Context) -> dict[str, Optional[dict[str, Any]]]:
    """The early detectors' findings by detector name (they read no tables: ``ctx.tables`` may be None)."""
    return {det.__name__: _run(det, ctx) for det in EARLY_DETECTORS}


def detect(ctx: Context, early: Optional[dict[str, Optional[dict[str, Any]]]] = None
           ) -> tuple[list[dict[str, Any]], Optional[dict[str, Any]]]:
    """Run every detector (or take its result from ``early``): (the findings, ranked by severity then by the
    time at stake; the recording-cost estimate, document key ``recording``)."""
    early = early or {}
    out = []
    for det in DETECTORS:
        f = early[det.__name__] if det.__name__ in early else _run(det, ctx)
        if f is not None:
            out.append(f)
    # One cause, one finding: when the GPU's idle time is explained by the data
    # loader or by launch overhead, that finding carries the idle time instead.
    ids = {f["id"]: f for f in out}
    idle = ids.get("host_bound_idle")
    cause = None
    loader, launch = ids.get("dataloader_bound"), ids.get("launch_bound")
    sync = ids.get("host_device_sync")
    idle_ms = idle["evidence"]["gpu_idle_ms_per_step"] if idle else 0.0
    if idle and loader and idle["evidence"].get("dataloader_share_of_idle", 0.0) >= 0.5:
        cause = loader
    elif idle and sync and sync["severity"] != "info" and \
            sync["evidence"].get("gpu_idle_after_syncs_ms_per_step", 0.0) >= 0.5 * idle_ms:
        cause = sync  # the GPU waits after each sync: the syncs set the pace
    elif idle and launch and launch["severity"] != "info":
        cause = launch
    if idle and cause:
        out.remove(idle)
        cause["evidence"]["gpu_idle_ms_per_step"] = idle["evidence"]["gpu_idle_ms_per_step"]
        cause["evidence"]["idle_share"] = idle["evidence"]["idle_share"]
        cause["cost_ms_per_step"] = max(cause["cost_ms_per_step"], idle["cost_ms_per_step"])
        if severity_rank(idle["severity"]) < severity_rank(cause["severity"]):
            cause["severity"] = idle["severity"]
    out.sort(key=finding_order)
    # A host made slow by the recording itself is not a finding about the training code.
    recording: Optional[dict[str, Any]]
    try:
        recording = recording_cost(ctx)
    except Exception as exc:  # an estimate must never take the analysis down
        recording = {"error": str(exc)}
    lower_recording_artifacts(out, recording)
    return out, recording


def _idle_after(ctx: Context, t: np.ndarray) -> float:
    """GPU idle time (µs) from each time t (the GPU idle then) to the next device op, within kept windows."""
    dw = ctx.dw
    if len(dw) == 0 or len(t) == 0:
        return 0.0
    busy = dw.busy
    idle_now = ~busy.contains(t)
    starts = np.sort(dw.start)
    k = np.searchsorted(starts, t, side="left")
    nxt = np.where(k < len(starts), starts[np.minimum(k, len(starts) - 1)], t)
    # bound each gap by the end of the step window it falls in
    a, b = ctx.kept_windows()
    w = np.searchsorted(a, t, side="right") - 1
    inside = (w >= 0) & (t < b[np.maximum(w, 0)])
    end = np.minimum(nxt, b[np.maximum(w, 0)])
    gap = np.where(idle_now & inside, np.maximum(end - t, 0.0), 0.0)
    return float(gap.sum())


def _sampled_where(ctx: Context, gaps: Coverage, k: int = 3) -> list[dict[str, Any]]:
    """[{source, ms_per_step, samples, source_basis}] of the stack samples (feeding threads) in ``gaps``."""
    sm = ctx.src.samples
    if sm is None:
        return []
    codes, us, count = sm.totals(gaps.contains(sm.t))
    return [{"source": _src(ctx, int(c)), "ms_per_step": round(float(w) / 1000.0 / ctx.n, 4),
             "samples": int(n), "source_basis": "sampled"}
            for c, w, n in zip(codes[:k].tolist(), us[:k].tolist(), count[:k].tolist())]


def _self_overlap(tl: Timeline, rows: np.ndarray, overlap: np.ndarray) -> np.ndarray:
    """Overlap of each interval minus the overlap of the intervals nested directly in it (same thread)."""
    if len(rows) == 0:
        return overlap
    s, e = tl.offset_span(rows)
    parent = intervals.parent_index(s, e)
    has = parent >= 0
    child_sum = np.bincount(parent[has], weights=overlap[has], minlength=len(rows))
    return np.maximum(overlap - child_sum, 0.0)


def _complement(bs: np.ndarray, be: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gaps of the disjoint, sorted busy intervals [bs, be) inside the windows [a, b)."""
    gs, ge = [], []
    for lo, hi in zip(a.tolist(), b.tolist()):  # one iteration per step window
        i = np.searchsorted(be, lo, side="right")
        j = np.searchsorted(bs, hi, side="left")
        s = np.concatenate([[lo], be[i:j]])
        e = np.concatenate([bs[i:j], [hi]])
        s = np.maximum(s, lo)
        e = np.minimum(e, hi)
        keep = e > s
        gs.append(s[keep])
        ge.append(e[keep])
    return (np.concatenate(gs) if gs else np.zeros(0)), (np.concatenate(ge) if ge else np.zeros(0))


# --------------------------------------------------------------------- the recording's own cost

#: Host time torch.profiler adds per recorded event, µs, measured on a GPU machine's host CPU
#: (``scripts/validate_recording_cost.py``: extra host time per step of each recording option over
#: the bare loop, divided by the events it added per step; docs/findings.md, "The profiler's own
#: cost"). ``op``: every CPU op and runtime call (the profiler itself); ``python_frame``: each
#: ``python_function`` event of ``with_stack``; ``memory``: each ``[memory]`` event of
#: ``profile_memory``. ``record_shapes`` (0.17 µs per op) is not counted: the trace does not say
#: whether it was on, and it is within the estimate's error.
RECORDING_COST_US = {"op": 3.2, "python_frame": 1.8, "memory": 1.3}
#: Without the recording the step is GPU-bound when the host's own work per step is at most this
#: multiple of the GPU busy time (the step then waits on the GPU, not the host).
GPU_BOUND_TOLERANCE = 1.10
#: Findings that say the host is too slow: a profiler that slows the host can raise them falsely.
HOST_SIDE_FINDINGS = ("host_bound_idle", "launch_bound")


def recording_cost(ctx: Context) -> Optional[dict[str, Any]]:
    """What recording the trace cost the host per kept step (an estimate from the events recorded).

    ``host_ms_without_recording`` is the host's work per step (its median step time on the CPU minus
    the time it blocked in synchronising calls) minus that cost; ``gpu_bound_without_recording`` says
    whether that is within :data:`GPU_BOUND_TOLERANCE` of the GPU busy time. None on CPU-only traces.
    """
    if ctx.basis == "cpu" or len(ctx.dw) == 0:
        return None
    tl = ctx.tl

    def per_step(rows: np.ndarray) -> float:
        return float(ctx.in_kept_steps(tl.start[rows]).sum()) / ctx.n

    ops = per_step(tl.rows(m.Kind.CPU_OP)) + per_step(tl.rows(m.Kind.RUNTIME, m.Kind.DRIVER))
    frames = per_step(tl.rows(m.Kind.PYTHON))
    mem_ts = np.asarray(tl.trace.memory[m.MEM_TS], dtype=np.float64) - tl.t0_us
    memory = float(ctx.in_kept_steps(mem_ts).sum()) / ctx.n if len(mem_ts) else 0.0
    cost_ms = (ops * RECORDING_COST_US["op"] + frames * RECORDING_COST_US["python_frame"]
               + memory * RECORDING_COST_US["memory"]) / 1000.0
    rt = tl.rows(m.Kind.RUNTIME, m.Kind.DRIVER)
    syncs = rt[tl.matches(SYNC_RUNTIME)[rt]]
    syncs = syncs[ctx.in_kept_steps(tl.start[syncs])]
    blocked_ms = float((tl.end[syncs] - tl.start[syncs]).sum()) / 1000.0 / ctx.n
    host_step_ms = median(ctx.stats.wall_us[ctx.stats.kept]) / 1000.0
    busy_ms = float(ctx.dw.share_us[ctx.kept].sum()) / 1000.0 / ctx.n
    without = max(host_step_ms - blocked_ms - cost_ms, 0.0)
    samples = ctx.src.samples
    return {
        "basis": "estimate",
        "events_per_step": {"ops_and_runtime_calls": round(ops, 1), "python_frames": round(frames, 1),
                            "memory_events": round(memory, 1)},
        # perfkit's stack sampler has no calibrated GPU-host cost yet: its samples are not counted.
        "not_counted": "stack samples" if samples is not None and len(samples.t) else None,
        "cost_us_per_event": dict(RECORDING_COST_US),
        "estimated_cost_ms_per_step": round(cost_ms, 3),
        "host_step_ms": round(host_step_ms, 3),
        "host_blocked_ms_per_step": round(blocked_ms, 3),
        "host_ms_without_recording": round(without, 3),
        "gpu_busy_ms_per_step": round(busy_ms, 3),
        "gpu_bound_without_recording": bool(busy_ms > 0 and without <= GPU_BOUND_TOLERANCE * busy_ms),
    }


def lower_recording_artifacts(found: list[dict[str, Any]], recording: Optional[dict[str, Any]]) -> None:
    """Host-side findings of a step that is GPU-bound without the recording become ``info``, saying why.

    ``recording`` is :func:`recording_cost`'s section, or the measured one that ``perfkit profile``
    builds from the unprofiled steps (``basis: "measured"``). A finding lowered by the estimate is
    restored when the measurement says the step is not GPU-bound; the finding's own severity,
    title and remedy are kept in ``evidence.recording`` (``*_before``).
    """
    if not recording or "gpu_bound_without_recording" not in recording:
        return
    gpu_bound = recording["gpu_bound_without_recording"]
    for f in found:
        if f["id"] not in HOST_SIDE_FINDINGS:
            continue
        ev = f.setdefault("evidence", {})
        prev = ev.get("recording") or {}
        before = {k: prev.get(f"{k}_before", f[k]) for k in ("severity", "title", "remedy")}
        if gpu_bound and before["severity"] != "info":
            ev["recording"] = {**recording, **{f"{k}_before": v for k, v in before.items()}}
            f["severity"] = "info"
            f["title"] = RECORDING_TITLE_PREFIX + before["title"]
            f["remedy"] = _recording_remedy(recording) + " If it is confirmed host-bound: " + before["remedy"]
        elif not gpu_bound and recording.get("basis") == "measured":
            f.update(before)
            ev["recording"] = dict(recording)
            if f["id"] == "host_bound_idle":
                _restate_measured_idle(f, recording)
    found.sort(key=finding_order)


RECORDING_TITLE_PREFIX = "Probably the profiler's own cost: "


def _restate_measured_idle(f: dict[str, Any], r: dict[str, Any]) -> None:
    """``host_bound_idle`` with the unprofiled steps' figures: the GPU idles (step - GPU work) per step.

    The traced idle time includes the recording's cost; the unprofiled step against the GPU busy
    time is what the run loses. Severity and cost come from that; the traced figures stay in the
    evidence.
    """
    step, busy = float(r.get("unprofiled_step_ms") or 0.0), float(r.get("gpu_busy_ms_per_step") or 0.0)
    if step <= 0 or busy <= 0:
        return
    idle_ms = max(step - busy, 0.0)
    share = idle_ms / step
    f["severity"] = "critical" if share >= IDLE_CRIT else "warning" if share >= IDLE_WARN else "info"
    f["cost_ms_per_step"] = round(idle_ms, 4)
    f["evidence"]["unprofiled_idle_ms_per_step"] = round(idle_ms, 3)
    f["evidence"]["unprofiled_idle_share"] = round(share, 4)
    f["title"] = (f"{f['title']}; without the profiler: {idle_ms:.1f} ms ({share:.0%}) of a {step:.1f} ms step "
                  f"against {busy:.1f} ms of GPU work")


def _recording_remedy(r: dict[str, Any]) -> str:
    if r.get("basis") == "measured":
        lead = (f"Unprofiled, the step took {r['unprofiled_step_ms']:.1f} ms against {r['gpu_busy_ms_per_step']:.1f} ms "
                f"of GPU work (traced: {r['profiled_step_ms']:.1f} ms): the run is GPU-bound and the idle time is "
                "the profiler's. Nothing to change on the host.")
    else:
        lead = (f"Recording the trace cost the host an estimated {r['estimated_cost_ms_per_step']:.1f} ms per step "
                f"({r['events_per_step']['ops_and_runtime_calls']:.0f} ops and runtime calls, "
                f"{r['events_per_step']['python_frames']:.0f} Python frames, {r['events_per_step']['memory_events']:.0f} "
                f"memory events); without it the host's {r['host_ms_without_recording']:.1f} ms per step is within "
                f"the GPU's {r['gpu_busy_ms_per_step']:.1f} ms of work, so the step is likely GPU-bound. Confirm with the "
                "unprofiled step time (perfkit profile reports it) or a trace without --stack / profile_memory.")
    return lead
