"""The job view: one row per rank, and what only a comparison of ranks shows.

Built from per-rank analysis documents alone (``perfkit merge`` runs exactly
this on ``analysis.json`` files; ``perfkit analyze RUN_DIR`` analyses the rank
traces in parallel, :mod:`perfkit.analysis.pool`, then runs it too), so a
cluster can analyse each rank where it ran and merge the small results.

The job document is the step-weighted merge of the ranks' documents
(:func:`perfkit.analysis.merge`: the top-level sections describe the mean
rank) plus:

* ``ranks``: per rank ``rank``, ``trace``, ``steps``, ``step_ms_median``,
  ``gpu_busy_ms_per_step``, ``gpu_idle_ms_per_step``, ``phase_ms_per_step``,
  ``comm_ms_per_step``, ``comm_exposed_ms_per_step``, ``work_ms_per_step``
  (step time minus exposed communication: the time the rank did not wait) and
  ``work_vs_median_ms``; ranks that wrote nothing are rows with ``status``
  ``missing``;
* ``job``: ``world_size``, ``ranks_analysed``, ``missing_ranks``, ``straggler``;
* ``stalls``: the watchdog's view across ranks (``perfkit stalls``), when the
  run directory has heartbeat or stall files;
* findings: ``straggler_rank``, ``comm_exposed`` (job-wide), ``rank_stuck``,
  ``rank_missing``, then every rank's own findings tagged with ``rank``.
"""

from __future__ import annotations

import copy
import os
import re
from typing import Any, Callable, Iterable, Optional

import numpy as np

from . import comm, rules
from .result import Analysis

# --------------------------------------------------------------------- thresholds and texts (data)

STRAGGLER_INFO = 0.05  #: extra work of the slowest rank / median step time: info
STRAGGLER_WARN = 0.10  #: ... warning
STRAGGLER_CRIT = 0.25  #: ... critical
STRAGGLER_MIN_MS = 0.5  #: and at least this many ms per step
#: A rank's trace or document file name that carries its rank.
RANK_FILE_PATTERN = r"(?:^|[^a-z])rank[-_]?(\d+)(?=\D|$)"
#: Ops that are not where a straggler's time goes (wrappers and waits).
NOT_A_CAUSE_PATTERN = rules.STEP_PATTERN + r"|^autograd::engine::evaluate_function: |^DistributedDataParallel\.forward$|" + \
    rules.COMM_OP_PATTERN

FINDING_TEXTS = {
    "straggler_rank": (
        "Make the ranks' work equal: look at what the slow rank does more (the ops, phase or Python lines in "
        "`where`): uneven data (sequence lengths, padding: bucket or pack batches by length), work only one rank "
        "does (logging, evaluation, checkpointing on rank 0: do it less often or asynchronously), a slower or "
        "throttled device or host (check clocks, temperature, other jobs on the node, CPU affinity of the data "
        "loader), or a rank that loads data in the main process. Every other rank waits for it in each collective."
    ),
    "rank_stuck": (
        "Look at the stuck rank's stack (perfkit stalls RUN_DIR; the stall_rank<R>_*.txt files): the ranks that "
        "wait in a collective are victims. Fix or bound the stuck code (an algorithm that never converges, a "
        "Python loop over a large tensor, a deadlock, I/O), and set a process-group timeout "
        "(init_process_group(timeout=...)) so a hang fails fast instead of holding every GPU."
    ),
    "rank_missing": (
        "A rank wrote no analysis: it crashed, was killed, hung, or wrote to another directory or node. Check its "
        "log and exit code; for runs on several nodes give every rank the same --out on a shared filesystem, or "
        "merge the per-rank analysis.json files afterwards with perfkit merge."
    ),
}

_SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}


# --------------------------------------------------------------------- which rank a document is


def rank_of(doc: dict[str, Any]) -> Optional[int]:
    """The rank of a per-rank document: ``trace.distributed.rank``, else from the trace file name."""
    trace = doc.get("trace") or {}
    dist = trace.get("distributed") or {}
    if isinstance(dist.get("rank"), int):
        return int(dist["rank"])
    runtime = doc.get("runtime") or {}
    if isinstance(runtime.get("rank"), int) and (runtime.get("world_size") or 1) > 1:
        return int(runtime["rank"])
    for p in trace.get("paths") or []:
        found = re.findall(RANK_FILE_PATTERN, os.path.basename(str(p)).lower())
        if found:
            return int(found[-1])
    return None


def is_job(docs: list[dict[str, Any]]) -> bool:
    """Several per-rank documents of distinct, known ranks (else a plain merge of traces)."""
    if len(docs) < 2 or any("ranks" in d for d in docs):
        return False
    ranks = [rank_of(d) for d in docs]
    return all(r is not None for r in ranks) and len(set(ranks)) == len(ranks)


def world_size_of(docs: Iterable[dict[str, Any]]) -> Optional[int]:
    sizes = []
    for d in docs:
        dist = (d.get("trace") or {}).get("distributed") or {}
        runtime = d.get("runtime") or {}
        for v in (dist.get("world_size"), runtime.get("world_size")):
            if isinstance(v, int) and v > 0:
                sizes.append(v)
    return max(sizes) if sizes else None


# --------------------------------------------------------------------- per-rank rows


def rank_row(doc: dict[str, Any]) -> dict[str, Any]:
    """The ``ranks`` row of one per-rank document (ms per kept step)."""
    steps = doc.get("steps") or {}
    gpu = doc.get("gpu") or {}
    com = doc.get("communication") or {}
    step_ms = float(steps.get("gpu_ms_median") or steps.get("wall_ms_median") or 0.0)
    exposed = float(com.get("exposed_ms_per_step") or 0.0)
    paths = (doc.get("trace") or {}).get("paths") or []
    return {
        "rank": rank_of(doc),
        "status": "analysed",
        "trace": paths[0] if paths else None,
        "steps": int(steps.get("count") or 0),
        "step_ms_median": step_ms,
        "wall_ms_median": float(steps.get("wall_ms_median") or 0.0),
        "time_basis": (doc.get("trace") or {}).get("time_basis"),
        "gpu_busy_ms_per_step": float(gpu.get("busy_ms_per_step") or 0.0),
        "gpu_idle_ms_per_step": float(gpu.get("idle_ms_per_step") or 0.0),
        "phase_ms_per_step": {p: float(((doc.get("phases") or {}).get(p) or {}).get("gpu_ms_per_step") or 0.0)
                              for p in rules.PHASES},
        "comm_ms_per_step": float(com.get("ms_per_step") or 0.0),
        "comm_exposed_ms_per_step": exposed,
        "comm_by_phase_ms_per_step": {p: float((com.get("by_phase_ms_per_step") or {}).get(p) or 0.0)
                                      for p in rules.PHASES},
        "work_ms_per_step": max(step_ms - exposed, 0.0),
    }


# --------------------------------------------------------------------- the job view


def job_view(docs: list[dict[str, Any]], *, world_size: Optional[int] = None,
             missing: Optional[dict[int, str]] = None, stalls: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """The job document from per-rank documents alone.

    Args:
        docs: per-rank analysis documents (``analysis.json`` of each rank).
        world_size: ranks in the job; defaults to the traces' ``distributedInfo``.
        missing: ranks known to have written nothing, with the reason.
        stalls: ``summarize_stalls`` of the run directory, if it has watchdog files.
    """
    from . import merge

    docs = sorted(docs, key=lambda d: (rank_of(d) is None, rank_of(d) or 0))
    job = merge([Analysis(doc=d) for d in docs]).doc if len(docs) > 1 else copy.deepcopy(docs[0])
    rows = [rank_row(d) for d in docs]
    if rows:
        med = float(np.median([r["work_ms_per_step"] for r in rows]))
        for r in rows:
            r["work_vs_median_ms"] = r["work_ms_per_step"] - med
    world = world_size or world_size_of(docs) or len(rows)
    seen = {r["rank"] for r in rows}
    missing = dict(missing or {})
    for r in range(world):
        if r not in seen and r not in missing and world <= 4096:
            missing[r] = "no trace or analysis given for this rank"
    missing_rows = [{"rank": r, "status": "missing", "reason": why} for r, why in sorted(missing.items())]

    dist = dict((job.get("trace") or {}).get("distributed") or {})
    dist.pop("rank", None)
    dist["world_size"] = world
    job["trace"] = {**job.get("trace", {}), "distributed": dist}
    job["trace"]["warnings"] = list(dict.fromkeys(job["trace"].get("warnings") or []))  # once, not once per rank
    job["communication"] = _mean_communication(docs)
    job.pop("runtime", None)  # each rank's runtime section stays in its own document
    job["ranks"] = rows + missing_rows
    strag = straggler(rows, docs)
    job["job"] = {
        "world_size": world,
        "ranks_analysed": len(rows),
        "missing_ranks": sorted(missing),
        "step_ms_median": float(np.median([r["step_ms_median"] for r in rows])) if rows else 0.0,
        "straggler": ({"rank": strag["evidence"]["rank"], "extra_ms_per_step": strag["evidence"]["extra_ms_per_step"]}
                      if strag else None),
    }
    if stalls is not None:
        job["stalls"] = stalls

    # Step rows say which rank they are from.
    job["steps"]["table"] = [{**row, "rank": rank_of(d)} for d in docs for row in (d.get("steps") or {}).get("table", [])]
    found = [f for f in job.get("findings", []) if f.get("id") != "comm_exposed"]
    by_trace = {r["trace"]: r["rank"] for r in rows}
    for f in found:
        if "rank" not in f:
            f["rank"] = by_trace.get(f.get("trace"), rows[0]["rank"] if len(rows) == 1 else None)
    found = _one_per_id(found, len(rows))
    job_found = [strag, comm.exposed_finding([
        {"rank": r["rank"], "step_ms": r["step_ms_median"], "communication": d.get("communication")}
        for r, d in zip(rows, docs)
    ]), rank_stuck(stalls), rank_missing(missing_rows, world)]
    if strag is not None:
        strag["rank"] = strag["evidence"]["rank"]
        found = _absorb_straggler_idle(strag, found)
    found = [f for f in job_found if f is not None] + found
    job["findings"] = sorted(found, key=lambda f: (_SEVERITY_RANK.get(f["severity"], 3), -f.get("cost_ms_per_step", 0.0)))
    return job


def _absorb_straggler_idle(strag: dict[str, Any], found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One cause, one finding across ranks: idle GPU time on the straggler alone is the straggler's extra work.

    When ``host_bound_idle`` is raised by the straggler rank only (a rank whose host
    is slow leaves its own GPU idle), it is the same cause seen from that rank: the
    straggler finding carries its idle figures, its severity if worse, and its cost.
    Idle time present on other ranks too has another cause and stays its own finding.
    """
    out = []
    for f in found:
        if f.get("id") == "host_bound_idle" and f.get("ranks") == [strag["rank"]]:
            ev = f.get("evidence") or {}
            for key in ("gpu_idle_ms_per_step", "idle_share"):
                if key in ev:
                    strag["evidence"][f"straggler_{key}"] = ev[key]
            if _SEVERITY_RANK.get(f["severity"], 3) < _SEVERITY_RANK.get(strag["severity"], 3):
                strag["severity"] = f["severity"]
            strag["cost_ms_per_step"] = max(strag["cost_ms_per_step"], f.get("cost_ms_per_step", 0.0))
            continue
        out.append(f)
    return out


def _one_per_id(found: list[dict[str, Any]], n_ranks: int) -> list[dict[str, Any]]:
    """The ranks' own findings, one per id: the worst rank's, with ``ranks`` listing every rank that has it.

    A job of 1,000 ranks with the same idle GPU would otherwise list 1,000 findings.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for f in found:
        groups.setdefault(f["id"], []).append(f)
    out = []
    for fs in groups.values():
        worst = min(fs, key=lambda f: (_SEVERITY_RANK.get(f["severity"], 3), -f.get("cost_ms_per_step", 0.0)))
        g = dict(worst)
        have = sorted({f["rank"] for f in fs if f.get("rank") is not None})
        g["ranks"] = have
        if g.get("rank") is not None and n_ranks > 1:
            g["title"] = f"{g['title']} (rank {g['rank']}" + (f"; {len(have)} of {n_ranks} ranks)" if len(have) > 1 else ")")
        out.append(g)
    return out


def _mean_communication(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean rank's communication figures (per-rank values are in ``ranks``)."""
    secs = [d.get("communication") or {} for d in docs]
    keys = ("ms_per_step", "exposed_ms_per_step", "overlapped_ms_per_step", "exposed_share")
    out: dict[str, Any] = {k: float(np.mean([float(s.get(k) or 0.0) for s in secs])) if secs else 0.0 for k in keys}
    out["basis"] = next((s.get("basis") for s in secs if s.get("basis")), None)
    out["by_phase_ms_per_step"] = {
        p: float(np.mean([float((s.get("by_phase_ms_per_step") or {}).get(p) or 0.0) for s in secs])) for p in rules.PHASES
    }
    return out


# --------------------------------------------------------------------- job findings


def straggler(rows: list[dict[str, Any]], docs: Optional[list[dict[str, Any]]] = None) -> Optional[dict[str, Any]]:
    """``straggler_rank``: the rank that works longest per step while the others wait for it.

    A rank's work is its step time minus its exposed communication (in a
    synchronous job every rank's step takes as long as the slowest; the fast
    ones spend the difference waiting inside collectives). The straggler is the
    rank with the most work; its extra work over the median of the others is
    what it costs every step, and the others' exposed communication beyond its
    own is that cost seen from their side.
    """
    pairs = [(r, d) for r, d in zip(rows, docs or [{}] * len(rows)) if r.get("status") == "analysed" and r.get("steps")]
    if len(pairs) < 2:
        return None
    rows = [r for r, _ in pairs]
    docs = [d for _, d in pairs]
    work = np.array([r["work_ms_per_step"] for r in rows])
    s = int(np.argmax(work))
    others = np.delete(np.arange(len(rows)), s)
    extra = float(work[s] - np.median(work[others]))
    step = float(np.median([r["step_ms_median"] for r in rows]))
    share = extra / step if step > 0 else 0.0
    if share < STRAGGLER_INFO or extra < STRAGGLER_MIN_MS:
        return None
    slow = rows[s]
    exposed = np.array([r["comm_exposed_ms_per_step"] for r in rows])
    others_wait = float(np.median(np.maximum(exposed[others] - exposed[s], 0.0)))
    phase, phase_ms = _largest_excess(rows, s)
    causes = _excess_items(docs, s, "top_ops", "name", "gpu_ms_per_step") + \
        _excess_items(docs, s, "frames", "source", "ms_per_step")
    causes = sorted((c for c in causes if c["ms_per_step"] >= 0.3 * extra), key=lambda c: -c["ms_per_step"])[:3]
    where: list[dict[str, Any]] = [{"rank": slow["rank"], "name": phase, "ms_per_step": round(phase_ms, 4)}] if phase \
        else [{"rank": slow["rank"]}]
    where += causes
    lead = ""
    if causes:
        c = causes[0]
        lead = f", most of it in {c.get('name') or c.get('source')}" + (f" at {c['source']}" if c.get("name") and c.get("source") else "")
    sev = "critical" if share >= STRAGGLER_CRIT else "warning" if share >= STRAGGLER_WARN else "info"
    return {
        "id": "straggler_rank",
        "severity": sev,
        "title": f"Rank {slow['rank']} is the straggler: {extra:.1f} ms more work per step ({share:.0%} of the step)"
                 + (f" in {phase}" if phase else "") + lead
                 + f"; the other ranks wait {others_wait:.1f} ms per step for it",
        "where": where,
        "evidence": {
            "rank": slow["rank"],
            "extra_ms_per_step": round(extra, 3),
            "share_of_step": round(share, 4),
            "work_ms_per_step": round(float(work[s]), 3),
            "others_work_ms_per_step": round(float(np.median(work[others])), 3),
            "others_wait_ms_per_step": round(others_wait, 3),
            "straggler_wait_ms_per_step": round(float(exposed[s]), 3),
            "step_ms": round(step, 3),
            "ranks_compared": len(rows),
        },
        "remedy": FINDING_TEXTS["straggler_rank"],
        "cost_ms_per_step": round(max(extra, others_wait), 4),
    }


def _largest_excess(rows: list[dict[str, Any]], s: int) -> tuple[Optional[str], float]:
    """The part of the step (phase, excluding its communication, or idle time) where rank s does most more."""
    parts: dict[str, np.ndarray] = {}
    for p in rules.PHASES:
        parts[p] = np.array([r["phase_ms_per_step"].get(p, 0.0) - r["comm_by_phase_ms_per_step"].get(p, 0.0) for r in rows])
    # Idle time not spent waiting in collectives: on the CPU basis a rank's wait for
    # the others is idle host time inside a collective (its exposed communication);
    # on a GPU the wait is a running NCCL kernel, so GPU idle time has no part of it.
    parts["idle"] = np.array([r["gpu_idle_ms_per_step"] - (r["comm_exposed_ms_per_step"] if r.get("time_basis") == "cpu"
                                                          else 0.0) for r in rows])
    others = np.delete(np.arange(len(rows)), s)
    best, best_ms = None, 0.0
    for name, v in parts.items():
        d = float(v[s] - np.median(v[others]))
        if d > best_ms:
            best, best_ms = name, d
    if best is None:
        return None, 0.0
    label = "idle time (host time outside ops)" if best == "idle" else f"the {best} phase"
    return label, best_ms


def _excess_items(docs: list[dict[str, Any]], s: int, key: str, ident: str, value: str) -> list[dict[str, Any]]:
    """Rows of a per-rank list (top ops, frames) where rank s has more ms per step than the others' median."""
    rx = re.compile(NOT_A_CAUSE_PATTERN)
    tables = [{str(r.get(ident)): r for r in (d.get(key) or []) if r.get(ident)} for d in docs]
    out = []
    for name, row in tables[s].items():
        if key == "top_ops" and rx.search(name):
            continue
        others = [float((t.get(name) or {}).get(value) or 0.0) for i, t in enumerate(tables) if i != s]
        d = float(row.get(value) or 0.0) - float(np.median(others))
        if d > 0:
            item = {"name": name, "source": row.get("source"), "ms_per_step": round(d, 4)} if key == "top_ops" \
                else {"source": name, "ms_per_step": round(d, 4)}
            out.append(item)
    return out


def rank_stuck(stalls: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """``rank_stuck``: the watchdog found ranks stuck (from ``perfkit stalls``' summary)."""
    if not stalls or not stalls.get("stuck"):
        return None
    ranks = stalls.get("ranks") or []
    culprits = [r for r in ranks if r.get("status") == "stuck" and not r.get("waiting_in")]
    waiting = [r for r in ranks if r.get("status") == "stuck" and r.get("waiting_in")]
    lead = culprits or waiting
    names = ", ".join(str(r["rank"]) for r in lead)
    where_ = lead[0].get("where_text") or "an unknown place"
    title = f"Rank{'s' if len(lead) > 1 else ''} {names} stuck in {where_}"
    if culprits and waiting:
        many = len(waiting) > 1
        title += f"; rank{'s' if many else ''} {', '.join(str(r['rank']) for r in waiting)} wait{'' if many else 's'} " \
                 "for it (in a collective or a GPU sync)"
    return {
        "id": "rank_stuck",
        "severity": "critical",
        "title": title,
        "where": [{"rank": r["rank"], "name": r.get("where_text"),
                   "source": r.get("user_where_text") if _other_function(r) else None} for r in lead],
        "evidence": {
            "stuck_ranks": [r["rank"] for r in culprits] or [r["rank"] for r in waiting],
            "waiting_ranks": [r["rank"] for r in waiting] if culprits else [],
            "seconds_stalled": {str(r["rank"]): r.get("seconds_stalled") for r in culprits + waiting},
            "last_step": {str(r["rank"]): r.get("last_step") for r in culprits + waiting},
            "verdict": stalls.get("verdict"),
        },
        "remedy": FINDING_TEXTS["rank_stuck"],
        # A stuck job loses every step from now on: the stall so far (ms) outranks any per-step cost.
        "cost_ms_per_step": round(1000.0 * max([float(r.get("seconds_stalled") or 0.0) for r in lead] or [0.0]), 1),
    }


def _other_function(r: dict[str, Any]) -> bool:
    """Whether the innermost user frame is another function than the innermost frame (worth naming too)."""
    a, b = r.get("where") or {}, r.get("user_where") or {}
    return bool(b) and (a.get("function"), a.get("file")) != (b.get("function"), b.get("file"))


def rank_missing(missing_rows: list[dict[str, Any]], world: int) -> Optional[dict[str, Any]]:
    """``rank_missing``: ranks of the job that wrote no analysis (only when the run expected them)."""
    # Not ranks that were merely not given, nor stuck ones (rank_stuck names those).
    known = [r for r in missing_rows if r["reason"] != "no trace or analysis given for this rank"
             and not r["reason"].startswith("stuck")]
    if not known:
        return None
    return {
        "id": "rank_missing",
        "severity": "warning",
        "title": f"{len(known)} of {world} ranks wrote no analysis (rank{'s' if len(known) > 1 else ''} "
                 + ", ".join(str(r["rank"]) for r in known[:16]) + (" ..." if len(known) > 16 else "") + ")",
        "where": [{"rank": r["rank"], "name": f"rank {r['rank']}", "reason": r["reason"]} for r in known[:16]],
        "evidence": {"missing_ranks": [r["rank"] for r in known], "world_size": world},
        "remedy": FINDING_TEXTS["rank_missing"],
        "cost_ms_per_step": 0.0,
    }


# --------------------------------------------------------------------- several traces at once


def analyze_many(paths: list[str], *, workers: Optional[int] = None,
                 progress: Optional[Callable[[str, int, int], None]] = None) -> Analysis:
    """Analyse several traces in parallel; ranks of one job give the job view, others a plain merge."""
    from . import merge
    from .pool import analyze_docs

    docs = analyze_docs(paths, workers=workers, progress=progress)
    if not is_job(docs):
        return merge([Analysis(doc=d) for d in docs])
    folders = {os.path.dirname(os.path.abspath(p)) for p in paths}
    stalls = stall_view(folders.pop()) if len(folders) == 1 else None
    return Analysis(doc=job_view(docs, stalls=stalls))


def stall_view(run_dir: str) -> Optional[dict[str, Any]]:
    """``perfkit stalls``' summary of a run directory, or None when it has no watchdog files."""
    from ..collect.watchdog import summarize_stalls
    from ..errors import PerfkitError

    try:
        return summarize_stalls(run_dir)
    except PerfkitError:
        return None
