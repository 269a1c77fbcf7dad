"""User Python frames by their own wall time per step (the ``frames`` section).

With ``with_stack=True`` the trace holds every Python call as a
``python_function`` range. A user frame's *own* time is its duration minus that
of the user frames it called directly (library frames, ops and waits inside it
stay its own): a function that sleeps, spins in Python or waits on the host
keeps that time, while ``main`` keeps only what its callees do not explain.
Without the tracer, the stack samples of ``perfkit profile`` (``Sources.samples``)
give the same figure estimated: each sample credits its innermost user frame,
at the line being executed, with the time since the previous sample of its
thread, at most a bound (``SampledFrames``; ``source_basis`` ``sampled``; no
call counts).

The job view compares these between ranks to say where a straggler spends its
extra time when no op carries it (a host sleep, a Python loop).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..arrays import distinct_inverse
from . import intervals
from .ops import Sources, format_frame
from .steps import StepStats, in_kept_steps
from .attribute import Steps
from .timeline import Timeline

#: Frames listed in ``frames`` (the most own time first).
TOP_FRAMES = 15


def user_frames(tl: Timeline, steps: Steps, stats: StepStats, src: Sources) -> list[dict[str, Any]]:
    """[{source, ms_per_step, calls_per_step}] of user frames that start in kept steps."""
    rows = src.frames
    if len(rows) == 0:
        return _sampled_frames(steps, stats, src) if src.samples is not None else []
    rows = rows[in_kept_steps(steps, stats, tl.start[rows])]
    if len(rows) == 0:
        return []
    s, e = tl.offset_span(rows)
    incl = e - s
    parent = intervals.parent_index(s, e)
    has = parent >= 0
    own = incl - np.bincount(parent[has], weights=incl[has], minlength=len(rows))
    own = np.maximum(own, 0.0)
    codes, inv = distinct_inverse(tl.name[rows].astype(np.int64))
    tot = np.bincount(inv.reshape(-1), weights=own, minlength=len(codes))
    calls = np.bincount(inv.reshape(-1), minlength=len(codes))
    n = max(int(stats.kept.sum()), 1)
    order = [i for i in np.argsort(-tot, kind="stable")[:TOP_FRAMES].tolist() if tot[i] > 0]
    return [
        {"source": src.label(int(codes[i])), "ms_per_step": float(tot[i]) / 1000.0 / n,
         "calls_per_step": float(calls[i]) / n, "source_line": src.line_kind(int(codes[i])),
         "source_basis": "python_function"}
        for i in order
    ]


def _sampled_frames(steps: Steps, stats: StepStats, src: Sources) -> list[dict[str, Any]]:
    """[{source, ms_per_step, samples_per_step, calls_per_step=None, source_basis}] from stack samples."""
    sm = src.samples
    assert sm is not None  # the caller checks
    codes, us, count = sm.totals(in_kept_steps(steps, stats, sm.t))
    n = max(int(stats.kept.sum()), 1)
    return [
        {"source": format_frame(src.tl.trace.names[c]), "ms_per_step": w / 1000.0 / n,
         "samples_per_step": c_n / n, "calls_per_step": None, "source_basis": "sampled"}
        for c, w, c_n in zip(codes[:TOP_FRAMES].tolist(), us[:TOP_FRAMES].tolist(), count[:TOP_FRAMES].tolist())
    ]
