"""The job view: one row per rank, and what only a comparison of ranks shows.

Built from per-rank analysis documents alone (``perfkit merge`` runs exactly
this on ``analysis.json`` files; ``perfkit analyze RUN_DIR`` analyses the rank
traces in parallel, :mod:`perfkit.job.pool`, then runs it too), so a
cluster can analyse each rank where it ran and merge the small results.

The job document is the step-weighted merge of the ranks' documents
(:func:`perfkit.analysis.merge`: the top-level sections describe the mean
rank) plus:

* ``ranks``: per rank ``rank``, ``trace``, ``steps``, ``step_ms_median``,
  ``busy_ms_per_step``, ``idle_ms_per_step``, ``phase_ms_per_step``,
  ``comm_ms_per_step``, ``comm_exposed_ms_per_step``, ``work_ms_per_step``
  (step time minus exposed communication: the time the rank did not wait) and
  ``work_vs_median_ms``; ranks that wrote nothing are rows with ``status``
  ``missing``, ranks whose analysis failed rows with ``status`` ``failed`` (both with the ``reason``);
* ``job``: ``world_size``, ``ranks_analysed``, ``missing_ranks``, ``failed_ranks``, ``straggler``;
* ``stalls``: the watchdog's view across ranks (``perfkit stalls``), when the
  run directory has heartbeat or stall files;
* findings: ``straggler_rank``, ``comm_exposed`` (job-wide), ``rank_stuck``,
  ``rank_failed``, ``rank_missing``, then every rank's own findings tagged with ``rank``.

Built for thousands of ranks: every step is linear in the ranks (n log n where they are sorted).
"""

from __future__ import annotations

import copy
import os
import re
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, cast

import numpy as np

from ..arrays import distinct, median, median_along

from ..units import compress_ids
from ..analysis import comm, intervals, rules
from ..analysis.document import AnalysisDoc, finding_order, severity_rank
from ..analysis.result import Analysis

if TYPE_CHECKING:
    from .engines import Engine

# --------------------------------------------------------------------- thresholds and texts (data)

#: The straggler's severity: the others' wait for it per step (mean over the waiting ranks) / median step time.
STRAGGLER_INFO = 0.05  #: ... info (the same thresholds grade the work-based fallback's extra work)
STRAGGLER_WARN = 0.10  #: ... warning
STRAGGLER_CRIT = 0.25  #: ... critical
STRAGGLER_MIN_MS = 0.5  #: and at least this many ms per step
#: A rank's clock is shifted onto the reference rank's only when its collectives end this far away (median, µs):
#: closer than that the clocks are taken as one (ranks of one host), further the ends set the offset.
CLOCK_SHIFT_MIN_US = 100.0
#: Ops named as what the straggler's device ran before its late collectives.
BEFORE_OPS = 3
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
    "rank_failed": (
        "A rank's trace could not be analysed (the reason is listed per rank): a truncated or corrupt file "
        "(the rank was killed while writing it: check its log; perfkit analyze RANK_TRACE on it alone says what "
        "is wrong), a path the analysing machine cannot read (with --engine ray every worker must see the traces "
        "at the same path), or an analysis that ran out of memory (give the workers more memory, or analyse that "
        "rank alone). The job view covers the other ranks only."
    ),
}

#: Ranks a job may name in its ``ranks`` list as missing (beyond, only the analysed and failed ones are rows).
MAX_MISSING_ROWS_WORLD = 4096
#: Ranks named in the title and ``where`` of ``rank_missing`` / ``rank_failed`` (all are in the evidence).
FINDING_RANKS_SHOWN = 16
#: Rank-count groups listed in a skipped collective's text (``step 7 all_reduce: ranks 0-6 have 13, ...``).
SKIPPED_GROUPS_SHOWN = 4
#: Rank ranges in a text are cut after this many characters (``0, 2, 4, ... (480 more)``).
MAX_IDS_CHARS = 80



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
    gpu = doc.get("device") or {}
    com = doc.get("communication") or {}
    step_ms = float(steps.get("window_ms_median") or steps.get("wall_ms_median") or 0.0)
    exposed = float(com.get("exposed_ms_per_step") or 0.0)
    trace = doc.get("trace") or {}
    paths = trace.get("paths") or []
    return {
        "rank": rank_of(doc),
        "status": "analysed",
        "trace": paths[0] if paths else None,
        "bytes": trace.get("bytes"),
        "events": trace.get("events"),
        "steps": int(steps.get("count") or 0),
        "step_ms_median": step_ms,
        "wall_ms_median": float(steps.get("wall_ms_median") or 0.0),
        "time_basis": (doc.get("trace") or {}).get("time_basis"),
        "busy_ms_per_step": float(gpu.get("busy_ms_per_step") or 0.0),
        "idle_ms_per_step": float(gpu.get("idle_ms_per_step") or 0.0),
        "phase_ms_per_step": {p: float(((doc.get("phases") or {}).get(p) or {}).get("ms_per_step") or 0.0)
                              for p in rules.PHASES},
        "comm_ms_per_step": float(com.get("ms_per_step") or 0.0),
        "comm_exposed_ms_per_step": exposed,
        "comm_by_phase_ms_per_step": {p: float((com.get("by_phase_ms_per_step") or {}).get(p) or 0.0)
                                      for p in rules.PHASES},
        "work_ms_per_step": max(step_ms - exposed, 0.0),
    }


# --------------------------------------------------------------------- the job view


def job_view(docs: list[dict[str, Any]], *, world_size: Optional[int] = None,
             missing: Optional[dict[int, str]] = None, stalls: Optional[dict[str, Any]] = None,
             failed: Optional[Iterable[dict[str, Any]]] = None) -> dict[str, Any]:
    """The job document from per-rank documents alone.

    Linear in the ranks (n log n where they are sorted): no step scans every rank once per rank.

    Args:
        docs: per-rank analysis documents (``analysis.json`` of each rank). None at all (every rank failed):
            a document of the ``ranks``, ``job`` and ``findings`` only, so the job view is still written.
        world_size: ranks in the job; defaults to the traces' ``distributedInfo``.
        missing: ranks known to have written nothing, with the reason.
        stalls: ``summarize_stalls`` of the run directory, if it has watchdog files.
        failed: rows of ranks whose analysis failed, ``{"rank", "status": "failed", "reason"}``
            (:func:`failed_row`); a rank also among ``docs`` (a retry that worked) is analysed, not failed.
    """
    from .merge import merge

    if not docs:
        return _no_rank_analysed(world_size, missing or {}, stalls, failed)
    keyed = [(rank_of(d), d) for d in docs]
    docs = [d for _, d in sorted(keyed, key=lambda kd: (kd[0] is None, kd[0] or 0))]
    job: dict[str, Any] = (merge([Analysis(doc=cast(AnalysisDoc, d)) for d in docs]).to_dict() if len(docs) > 1
                           else copy.deepcopy(docs[0]))
    rows = [rank_row(d) for d in docs]
    if rows:
        med = float(median([r["work_ms_per_step"] for r in rows]))
        for r in rows:
            r["work_vs_median_ms"] = r["work_ms_per_step"] - med
    seen = {r["rank"] for r in rows}
    failed_rows = _failed_rows(failed, seen)
    gone = seen | {r["rank"] for r in failed_rows}
    world = world_size or world_size_of(docs) or len(gone)
    missing = {r: why for r, why in (missing or {}).items() if r not in gone}
    if world <= MAX_MISSING_ROWS_WORLD:  # before the loop: a corrupt world size of 10**9 costs nothing
        for rank in range(world):
            if rank not in gone and rank not in missing:
                missing[rank] = "no trace or analysis given for this rank"
    missing_rows = [{"rank": r, "status": "missing", "reason": why} for r, why in sorted(missing.items())]

    dist = dict((job.get("trace") or {}).get("distributed") or {})
    dist.pop("rank", None)
    dist["world_size"] = world
    job["trace"] = {**job.get("trace", {}), "distributed": dist}
    job["trace"]["warnings"] = list(dict.fromkeys(job["trace"].get("warnings") or []))  # once, not once per rank
    job["communication"] = _mean_communication(docs)
    job.pop("runtime", None)  # each rank's runtime section stays in its own document
    arr = arrivals(docs)
    _arrival_columns(rows, arr)
    job["ranks"] = rows + sorted(failed_rows + missing_rows, key=lambda r: r["rank"])
    strag = straggler(rows, docs, arr)
    lead = strag["evidence"] if strag is not None and strag["evidence"].get("rank") is not None else None
    known = lead is not None
    job["job"] = {
        "world_size": world,
        "ranks_analysed": len(rows),
        "missing_ranks": sorted(missing),
        "failed_ranks": [r["rank"] for r in failed_rows],
        "step_ms_median": float(median([r["step_ms_median"] for r in rows])) if rows else None,
        "straggler": ({"rank": lead["rank"],
                       "others_wait_ms_per_step": lead["others_wait_ms_per_step"],
                       "lead_ms_per_step": lead["lead_ms_per_step"],
                       "late_collectives": lead["late_collectives"],
                       "collectives_matched": lead["collectives_matched"]}
                      if lead is not None else None),
        "arrivals": _arrival_summary(arr),
    }
    if stalls is not None:
        job["stalls"] = stalls

    # Steps: per rank, not pooled (one step on each of 8 ranks is "1 step per rank", not "8 of 8").
    job["steps"]["ids"] = sorted({int(i) for d in docs for i in (d.get("steps") or {}).get("ids", [])})
    # Step rows say which rank they are from.
    job["steps"]["table"] = [{**row, "rank": r} for r, d in zip((row["rank"] for row in rows), docs)
                             for row in (d.get("steps") or {}).get("table", [])]
    found = [f for f in job.get("findings", []) if f.get("id") != "comm_exposed"]
    by_trace = {r["trace"]: r["rank"] for r in rows}
    for f in found:
        if "rank" not in f:
            f["rank"] = by_trace.get(f.get("trace"), rows[0]["rank"] if len(rows) == 1 else None)
    found = _one_per_id(found, len(rows))
    job_found = [strag, comm.exposed_finding([
        {"rank": r["rank"], "step_ms": r["step_ms_median"], "communication": d.get("communication")}
        for r, d in zip(rows, docs)
    ]), rank_stuck(stalls), rank_failed(failed_rows, world), rank_missing(missing_rows, world)]
    if strag is not None:
        strag["rank"] = strag["evidence"]["rank"]
        if known:
            found = _absorb_straggler_idle(strag, found)
    found = [f for f in job_found if f is not None] + found
    job["findings"] = sorted(found, key=finding_order)
    return job


def _no_rank_analysed(world_size: Optional[int], missing: dict[int, str], stalls: Optional[dict[str, Any]],
                      failed: Optional[Iterable[dict[str, Any]]]) -> dict[str, Any]:
    """The job document when no rank was analysed (every task failed): the ranks, the job and the findings only."""
    from ..analysis.document import SCHEMA

    failed_rows = _failed_rows(failed, set())
    gone = {r["rank"] for r in failed_rows}
    world = world_size or (max(gone | set(missing)) + 1 if gone or missing else 0)
    missing = {r: why for r, why in missing.items() if r not in gone}
    if world <= MAX_MISSING_ROWS_WORLD:
        for rank in range(world):
            if rank not in gone and rank not in missing:
                missing[rank] = "no trace or analysis given for this rank"
    missing_rows = [{"rank": r, "status": "missing", "reason": why} for r, why in sorted(missing.items())]
    found = [f for f in (rank_stuck(stalls), rank_failed(failed_rows, world), rank_missing(missing_rows, world))
             if f is not None]
    job: dict[str, Any] = {
        "schema": SCHEMA,
        "trace": {"paths": [], "warnings": [], "distributed": {"world_size": world}},
        "ranks": sorted(failed_rows + missing_rows, key=lambda r: r["rank"]),
        "job": {"world_size": world, "ranks_analysed": 0, "missing_ranks": sorted(missing),
                "failed_ranks": [r["rank"] for r in failed_rows], "step_ms_median": None, "straggler": None,
                "arrivals": _unknown("no rank was analysed")},
        "findings": sorted(found, key=finding_order),
    }
    if stalls is not None:
        job["stalls"] = stalls
    return job


def _count_groups(rks: list[Optional[int]], counts: np.ndarray) -> str:
    """How many collectives each rank has, ranks with the same count together, most ranks first:
    ``rank 0 has 13, rank 1 has 12``; ``ranks 0-6, 8-1023 have 13, rank 7 has 12``.

    At most :data:`SKIPPED_GROUPS_SHOWN` counts (then ``...``): the text stays short at any number of ranks.
    """
    by_count: dict[int, list[int]] = {}
    for r, n in zip(rks, counts.tolist()):
        by_count.setdefault(int(n), []).append(-1 if r is None else int(r))
    # In rank order while every rank has its own count (two ranks), else the largest groups first.
    order = sorted(by_count.items(), key=lambda kv: (-len(kv[1]), min(kv[1])))
    if all(len(v) == 1 for v in by_count.values()):
        order = sorted(by_count.items(), key=lambda kv: kv[1][0])
    bits = [(f"rank {v[0]} has {n}" if len(v) == 1 else f"ranks {compress_ids(v, MAX_IDS_CHARS)} have {n}")
            for n, v in order[:SKIPPED_GROUPS_SHOWN]]
    return ", ".join(bits) + (" ..." if len(order) > SKIPPED_GROUPS_SHOWN else "")


def _arrival_columns(rows: list[dict[str, Any]], arr: dict[str, Any]) -> None:
    """Each rank row's arrival figures (ms per matched step); null when the collectives were not matched."""
    ok = arr.get("status") == "matched"
    at = {r: i for i, r in enumerate(arr["ranks"])} if ok else {}
    n_steps = max(len(arr["steps"]), 1) if ok else 1
    for r in rows:
        i = at.get(r["rank"])
        r["last_arrivals"] = int(arr["last"][i]) if i is not None else None
        r["collectives_matched"] = int(arr["collectives"]) if i is not None else None
        r["arrival_wait_ms_per_step"] = float(arr["wait_us"][i]) / 1000.0 / n_steps if i is not None else None
        r["caused_wait_ms_per_step"] = float(arr["caused_wait_us"][i]) / 1000.0 / n_steps if i is not None else None


def _arrival_summary(arr: dict[str, Any]) -> dict[str, Any]:
    """``job.arrivals``: how the collectives were matched (or why not)."""
    if arr.get("status") != "matched":
        return {"status": "unknown", "reason": arr.get("reason")}
    return {
        "status": "matched",
        "collectives": int(arr["collectives"]),
        "kinds": arr["kinds"],
        "steps": arr["steps"],
        "skipped": arr["skipped"][:8],
        "ranks_without_collectives": arr["ranks_without_collectives"],
        "clock_offsets_us": {str(r): round(float(o), 3) for r, o in zip(arr["ranks"], arr["clock_offset_us"].tolist())},
        "clocks_shifted": [r for r, sh in zip(arr["ranks"], arr["clock_shifted"].tolist()) if sh],
        "end_spread_us": round(arr["end_spread_us"], 3),
        "arrival": "device kernel start (host range start on a CPU-only trace)",
    }


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
            if severity_rank(f["severity"]) < severity_rank(strag["severity"]):
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
        worst = min(fs, key=finding_order)
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


def _unknown(reason: str) -> dict[str, Any]:
    return {"status": "unknown", "reason": reason}


def arrivals(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """Who waits for whom, from the collectives themselves (each document's ``communication.collectives``).

    The n-th collective of each kind in each step is the same collective on every rank. It
    is matched across ranks where every rank lists that step and the same number of that
    kind in it (else that step and kind is left out, and said). Clocks: each rank's times
    are put on the reference (lowest) rank's clock through the documents' absolute
    origins; a rank whose collectives then still end more than :data:`CLOCK_SHIFT_MIN_US`
    from the reference's (median over collectives) is shifted by that median: a collective
    ends within microseconds on every rank. A rank *arrives* at a collective when its
    kernel starts (the host range on a CPU trace); the last to arrive keeps every other
    rank waiting ``its arrival - their arrival``.

    Returns ``{"status": "unknown", "reason"}`` when nothing can be matched, else
    ``status: "matched"`` with per-rank arrays (in ``ranks`` order): ``last`` (collectives
    where it arrived last), ``caused_wait_us`` (the others' mean wait for it, summed over
    those), ``caused_max_wait_us`` (the first arrival's wait, summed), ``lead_us`` (how much
    later than the next-latest rank, summed), ``wait_us`` (its own wait for later ranks),
    ``clock_offset_us``, plus the matched matrices needed to explain the straggler.
    """
    if len(docs) < 2:
        return _unknown("one rank: there is nobody to wait for")
    lists = [((d.get("communication") or {}).get("collectives") or {}) for d in docs]
    rks = [rank_of(d) for d in docs]
    if not any("origin_ns" in c for c in lists):
        return _unknown("the rank documents list no collectives (analysed by an older perfkit: analyse the traces again)")
    have = [i for i, c in enumerate(lists) if c.get("listed")]
    have_set = set(have)
    without = [rks[i] for i in range(len(docs)) if i not in have_set]
    if len(have) < 2:
        return _unknown("no collectives in the kept steps of " + ("any rank" if not have else
                                                                  f"ranks other than {rks[have[0]]}"))
    lists = [lists[i] for i in have]
    rks = [rks[i] for i in have]
    kinds = sorted({k for c in lists for k in c.get("kinds") or []})
    # Per rank: key (step, kind, n) as one integer; steps and kinds through common tables.
    step_sets = [set(c["step"]) for c in lists]
    common_steps = sorted(set.intersection(*step_sets))
    if not common_steps:
        return _unknown("the ranks' listed collectives share no step id (" + ", ".join(
            f"rank {r}: steps {compress_ids(sorted(ss))}" for r, ss in zip(rks, step_sets)) + ")")
    n_max = max(max(c["n"]) for c in lists) + 1
    steps_arr = np.array(common_steps)
    per_rank = []
    for c in lists:
        kind_map = np.array([kinds.index(k) for k in c["kinds"]], dtype=np.int64)
        step = np.asarray(c["step"], dtype=np.int64)
        sp = np.searchsorted(steps_arr, step)
        ok = (sp < len(steps_arr)) & (steps_arr[np.minimum(sp, len(steps_arr) - 1)] == step)
        kind = kind_map[np.asarray(c["kind"], dtype=np.int64)]
        group = sp * len(kinds) + kind
        key = group * n_max + np.asarray(c["n"], dtype=np.int64)
        per_rank.append((key[ok], group[ok], np.flatnonzero(ok)))
    groups = distinct(np.concatenate([g for _, g, _ in per_rank]))
    counts = np.stack([np.bincount(np.searchsorted(groups, g), minlength=len(groups)) for _, g, _ in per_rank])
    agreed = (counts == counts[0]).all(axis=0)
    skipped = [
        f"step {common_steps[int(g) // len(kinds)]} {kinds[int(g) % len(kinds)]}: " + _count_groups(rks, counts[:, j])
        for j, g in enumerate(groups.tolist()) if not agreed[j]
    ]
    good = groups[agreed]
    if not len(good):
        return _unknown("no step has the same number of each kind of collective on every rank ("
                        + "; ".join(skipped[:4]) + (" ..." if len(skipped) > 4 else "") + ")")

    def take(c: dict[str, Any], col: str, rows: np.ndarray) -> np.ndarray:
        """A column as floats (null -> NaN; a column an older document lacks: all NaN)."""
        if c.get(col) is None:
            return np.full(len(rows), np.nan)
        values: np.ndarray = np.asarray(c[col], dtype=float)[rows]
        return values

    mats: dict[str, list[np.ndarray]] = {k: [] for k in ("start", "end", "launch", "gap", "busy", "before", "before_us")}
    keys_ref = None
    for c, (key, group, rows) in zip(lists, per_rank):
        sel = np.isin(group, good)
        order = np.argsort(key[sel], kind="stable")
        rows_ = rows[sel][order]
        if keys_ref is None:
            keys_ref = key[sel][order]
        shift = (int(c["origin_ns"]) - int(lists[0]["origin_ns"])) / 1000.0  # onto the reference's clock
        mats["start"].append(take(c, "start_us", rows_) + shift)
        mats["end"].append(take(c, "end_us", rows_) + shift)
        mats["launch"].append(take(c, "launch_us", rows_) + shift)
        mats["gap"].append(take(c, "gap_us", rows_))
        mats["busy"].append(take(c, "before_busy_us", rows_))
        mats["before_us"].append(take(c, "before_op_us", rows_))
        ops = np.array(list(c.get("ops") or []) + [""], dtype=object)  # -1 (none) -> ""
        codes = np.asarray(c["before_op"], dtype=np.int64)[rows_]
        mats["before"].append(ops[np.where((codes >= 0) & (codes < len(ops) - 1), codes, -1)])
    start, end, launch = (np.stack(mats[k]) for k in ("start", "end", "launch"))
    offset = median_along(end - end[0], 1)
    shifted = np.abs(offset) > CLOCK_SHIFT_MIN_US
    applied = np.where(shifted, offset, 0.0)
    start -= applied[:, None]
    end -= applied[:, None]
    launch -= applied[:, None]
    step_start = []
    for c in lists:  # each listed step's CPU start on the reference clock
        shift = (int(c["origin_ns"]) - int(lists[0]["origin_ns"])) / 1000.0
        by_id = dict(zip(c["steps"]["id"], c["steps"]["start_us"]))
        step_start.append([np.nan if by_id.get(s) is None else float(by_id[s]) + shift for s in common_steps])
    step_start_arr = np.array(step_start) - applied[:, None]

    n_ranks, n_coll = start.shape
    last = np.argmax(start, axis=0)
    a_last = start[last, np.arange(n_coll)]
    wait = a_last[None, :] - start
    srt = np.sort(start, axis=0)
    lead = srt[-1] - srt[-2]
    is_last = last[None, :] == np.arange(n_ranks)[:, None]
    caused = (is_last * (wait.sum(axis=0) / (n_ranks - 1))[None, :]).sum(axis=1)
    caused_max = (is_last * wait.max(axis=0)[None, :]).sum(axis=1)
    key_steps = distinct(keys_ref // n_max // len(kinds))
    return {
        "status": "matched",
        "ranks": rks,
        "ranks_without_collectives": without,
        "kinds": kinds,
        "steps": [common_steps[int(i)] for i in key_steps.tolist()],
        "collectives": int(n_coll),
        "skipped": skipped,
        "clock_offset_us": offset,
        "clock_shifted": shifted,
        "end_spread_us": float(median(end.max(axis=0) - end.min(axis=0))),
        "last": is_last.sum(axis=1),
        "caused_wait_us": caused,
        "caused_max_wait_us": caused_max,
        "lead_us": (is_last * lead[None, :]).sum(axis=1),
        "wait_us": wait.sum(axis=1),
        "is_last": is_last,
        "start": start,
        "launch": launch,
        "wait": wait,
        "kind": np.array([kinds[int(k)] for k in (keys_ref // n_max % len(kinds)).tolist()], dtype=object),
        "gap": np.stack(mats["gap"]),
        "busy": np.stack(mats["busy"]),
        "before": np.stack(mats["before"]),
        "before_us": np.stack(mats["before_us"]),
        "step_start": step_start_arr,
        "common_steps": common_steps,
    }




def straggler(rows: list[dict[str, Any]], docs: list[dict[str, Any]], arr: dict[str, Any]) -> Optional[dict[str, Any]]:
    """``straggler_rank``: the rank that arrives last at the collectives, and what the others wait for it.

    From :func:`arrivals`: the rank whose late arrivals cost the others the most waiting
    (their mean wait, summed over its late collectives, per matched step). Severity from
    that wait against the median step time. When the collectives cannot be matched the
    finding says "unknown" and why, with the older work-based estimate (step minus exposed
    communication, :func:`work_estimate`) as a labelled fallback when it finds anything.
    With one analysed rank there is nobody to wait for: no finding.

    Args:
        rows: the analysed ranks' rows (:func:`rank_row`), in ``docs`` order.
        docs: their documents.
        arr: :func:`arrivals` of ``docs``.
    """
    if len(rows) < 2:
        return None
    if arr["status"] != "matched":
        return _straggler_unknown(rows, docs, arr["reason"])
    by_rank = {r["rank"]: i for i, r in enumerate(rows)}
    n_steps = max(len(arr["steps"]), 1)
    caused = arr["caused_wait_us"] / 1000.0 / n_steps
    s = int(np.argmax(caused))
    rank = arr["ranks"][s]
    wait_ms = float(caused[s])
    # Jitter makes every rank last now and then: only the wait beyond what a typical rank
    # causes is this rank's own (in a balanced job the ranks cause about the same).
    typical_ms = float(median(np.delete(caused, s)))
    excess_ms = wait_ms - typical_ms
    step = float(median([r["step_ms_median"] for r in rows])) if rows else 0.0
    share = excess_ms / step if step > 0 else 0.0
    if share < STRAGGLER_INFO or excess_ms < STRAGGLER_MIN_MS:
        return None
    late = arr["is_last"][s]
    n_late, n_coll = int(late.sum()), int(arr["collectives"])
    max_ms = float(arr["caused_max_wait_us"][s]) / 1000.0 / n_steps
    lead_ms = float(arr["lead_us"][s]) / 1000.0 / n_steps
    # Who waits longest for it: the earliest arrival on its late collectives.
    waits_for_it = (arr["wait"][:, late]).sum(axis=1) / 1000.0 / n_steps
    first_rank = arr["ranks"][int(np.argmax(waits_for_it))]
    # Host or device: did it also enqueue last, and how long did its kernels queue? Only where
    # the launches are in the traces (none on a CPU trace: the figures are then null, not 0).
    launch = arr["launch"][:, late]
    known = np.isfinite(launch).all(axis=0)
    n_enqueue = int(known.sum())
    host_last = int((np.argmax(launch[:, known], axis=0) == s).sum()) if n_enqueue else None
    # Queued = launched, not started; collectives queue at the same time, so the wall time any is queued.
    start = arr["start"][:, late]
    queue_ms = _queued_ms(launch[s], start[s], n_steps)
    others_queue_ms = _finite_median(_queued_ms(launch[i], start[i], n_steps) for i in range(len(launch)) if i != s)
    # Its step start against the earliest rank's (median over matched steps with a known start).
    ss = arr["step_start"]
    cols = np.isfinite(ss).any(axis=0)
    behind = ss[s, cols] - np.nanmin(ss[:, cols], axis=0) if cols.any() else np.zeros(0)
    step_late_ms = float(median(behind[np.isfinite(behind)])) / 1000.0 if np.isfinite(behind).any() else None
    med_start = np.array([median(row[np.isfinite(row)]) if np.isfinite(row).any() else np.inf for row in ss])
    earliest = arr["ranks"][int(np.argmin(med_start))] if np.isfinite(med_start).any() else None
    # What its device ran in the gaps before its late collectives: each gap's top op, by its own device time there.
    before: dict[str, float] = {}
    for name, b in zip(arr["before"][s][late].tolist(), arr["before_us"][s][late].tolist()):
        if name and b == b:
            before[name] = before.get(name, 0.0) + b / 1000.0 / n_steps
    gap_ms = _finite_sum(arr["gap"][s][late], n_steps)
    busy_ms = _finite_sum(arr["busy"][s][late], n_steps)
    others_gap_ms = _finite_median(_finite_sum(g[late], n_steps) for i, g in enumerate(arr["gap"]) if i != s)
    top_before = sorted(before.items(), key=lambda kv: -kv[1])[:BEFORE_OPS]
    kinds_late = sorted(set(arr["kind"][late].tolist()))

    where: list[dict[str, Any]] = [{"rank": rank, "name": f"last to arrive at {n_late} of {n_coll} collectives",
                                    "ms_per_step": round(wait_ms, 4)}]
    causes: list[dict[str, Any]] = []
    phase, phase_ms = None, 0.0
    i = by_rank.get(rank)
    if i is not None and len(rows) >= 2:  # what it does more per step than the others' median
        phase, phase_ms = _largest_excess(rows, i)
        if phase:
            where.append({"rank": rank, "name": phase, "ms_per_step": round(phase_ms, 4)})
        causes = _excess_items(docs, i, "top_ops", "name", "ms_per_step") + \
            _excess_items(docs, i, "frames", "source", "ms_per_step")
        causes = sorted((c for c in causes if c["ms_per_step"] >= 0.3 * wait_ms), key=lambda c: -c["ms_per_step"])[:3]
        where += causes
    where += [{"rank": rank, "name": n, "ms_per_step": round(v, 4), "before_late_collectives": True}
              for n, v in top_before if v >= 0.1 * wait_ms]

    bits = [f"Rank {rank} arrives last at {n_late} of {n_coll} collectives"
            + (f" per step" if n_steps == 1 else f" in {n_steps} steps")
            + f": the other ranks wait {wait_ms:.1f} ms per step for it"
            + (f" on average (rank {first_rank}: {max_ms:.1f} ms)" if len(rows) > 2 else "")
            + (f", a typical rank {typical_ms:.1f} ms" if typical_ms >= 0.05 * wait_ms else "")
            + f", {share:.0%} of the step"]
    if step_late_ms is not None and step_late_ms >= 0.5 * wait_ms and earliest is not None and earliest != rank:
        bits.append(f"its step begins {step_late_ms:.1f} ms after rank {earliest}'s")
    if gap_ms is not None and busy_ms is not None and host_last is not None and gap_ms > 0 \
            and busy_ms < 0.5 * gap_ms and host_last >= max(n_enqueue // 2, 1):
        bits.append("its GPU idles before them: the host enqueues them late")
    elif top_before and top_before[0][1] >= 0.3 * wait_ms:
        bits.append(f"before them its GPU runs {top_before[0][0]}")
    if (phase and phase_ms >= 0.3 * excess_ms) or causes:
        more = f"it does {phase_ms:.1f} ms more in {phase}" if phase and phase_ms >= 0.3 * excess_ms else "it does more"
        if causes:
            c = causes[0]
            more += (", most of it " if more != "it does more" else " ") + str(c.get("name") or c.get("source")) \
                + (f" at {c['source']}" if c.get("name") and c.get("source") else "")
        bits.append(more)
    sev = "critical" if share >= STRAGGLER_CRIT else "warning" if share >= STRAGGLER_WARN else "info"
    return {
        "id": "straggler_rank",
        "severity": sev,
        "title": "; ".join(bits),
        "where": where,
        "evidence": {
            "rank": rank,
            "method": "collective arrival order",
            "others_wait_ms_per_step": round(wait_ms, 3),
            "typical_rank_caused_wait_ms_per_step": round(typical_ms, 3),
            "excess_wait_ms_per_step": round(excess_ms, 3),
            "max_wait_ms_per_step": round(max_ms, 3),
            "longest_waiting_rank": first_rank,
            "lead_ms_per_step": round(lead_ms, 3),
            "share_of_step": round(share, 4),
            "late_collectives": n_late,
            "collectives_matched": n_coll,
            "late_kinds": kinds_late,
            "steps_matched": arr["steps"],
            "enqueued_last": host_last,
            "enqueue_compared": n_enqueue,
            "queue_ms_per_step": _round(queue_ms),
            "others_queue_ms_per_step": _round(others_queue_ms),
            "gap_before_ms_per_step": _round(gap_ms),
            "others_gap_before_ms_per_step": _round(others_gap_ms),
            "busy_before_ms_per_step": _round(busy_ms),
            "step_start_after_earliest_ms": _round(step_late_ms),
            "earliest_rank": earliest,
            "step_ms": round(step, 3),
            "ranks_compared": len(arr["ranks"]),
        },
        "remedy": FINDING_TEXTS["straggler_rank"],
        "cost_ms_per_step": round(excess_ms, 4),
    }


def _finite_sum(x: np.ndarray, n_steps: int) -> Optional[float]:
    """The sum of the finite values in ms per step (x in µs), None when none is finite (unmeasured)."""
    ok = np.isfinite(x)
    return float(x[ok].sum()) / 1000.0 / n_steps if ok.any() else None


def _queued_ms(launch_us: np.ndarray, start_us: np.ndarray, n_steps: int) -> Optional[float]:
    """Wall time (ms per step) when at least one of the collectives was launched and not started; None if unknown."""
    ok = np.isfinite(launch_us) & np.isfinite(start_us)
    if not ok.any():
        return None
    return intervals.Coverage(launch_us[ok], np.maximum(start_us[ok], launch_us[ok])).total / 1000.0 / n_steps


def _finite_median(values: Iterable[Optional[float]]) -> Optional[float]:
    known = [v for v in values if v is not None]
    return float(median(known)) if known else None


def _round(x: Optional[float], digits: int = 3) -> Optional[float]:
    return None if x is None else round(x, digits)


def _straggler_unknown(rows: list[dict[str, Any]], docs: list[dict[str, Any]], reason: str) -> dict[str, Any]:
    """The straggler is unknown from the collectives: say why, with the work-based estimate labelled as such."""
    est = work_estimate(rows, docs)
    evidence: dict[str, Any] = {"rank": None, "method": "unknown", "reason": reason}
    title = f"Straggler unknown: the collectives cannot be compared across ranks ({reason})"
    if est is not None:
        evidence["work_estimate"] = est["evidence"]
        e = est["evidence"]
        title += (f"; by work per step (step minus exposed communication, a weaker estimate) rank {e['rank']} "
                  f"does {e['extra_ms_per_step']:.1f} ms more than the others")
    return {
        "id": "straggler_rank",
        "severity": "info",
        "title": title,
        "where": est["where"] if est is not None else [],
        "evidence": evidence,
        "remedy": FINDING_TEXTS["straggler_rank"],
        "cost_ms_per_step": 0.0,
    }


def work_estimate(rows: list[dict[str, Any]], docs: Optional[list[dict[str, Any]]] = None) -> Optional[dict[str, Any]]:
    """The older, weaker straggler estimate: the rank that works longest per step inside its own window.

    Used only as a labelled fallback when the collectives cannot be matched across ranks.

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
    extra = float(work[s] - median(work[others]))
    step = float(median([r["step_ms_median"] for r in rows]))
    share = extra / step if step > 0 else 0.0
    if share < STRAGGLER_INFO or extra < STRAGGLER_MIN_MS:
        return None
    slow = rows[s]
    exposed = np.array([r["comm_exposed_ms_per_step"] for r in rows])
    others_wait = float(median(np.maximum(exposed[others] - exposed[s], 0.0)))
    phase, phase_ms = _largest_excess(rows, s)
    causes = _excess_items(docs, s, "top_ops", "name", "ms_per_step") + \
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
            "others_work_ms_per_step": round(float(median(work[others])), 3),
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
    parts["idle"] = np.array([r["idle_ms_per_step"] - (r["comm_exposed_ms_per_step"] if r.get("time_basis") == "cpu"
                                                          else 0.0) for r in rows])
    others = np.delete(np.arange(len(rows)), s)
    best, best_ms = None, 0.0
    for name, v in parts.items():
        d = float(v[s] - median(v[others]))
        if d > best_ms:
            best, best_ms = name, d
    if best is None:
        return None, 0.0
    if best == "idle":
        label = "idle time (host time outside ops)" if rows[s].get("time_basis") == "cpu" else "GPU idle time"
    else:
        label = f"the {best} phase"
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
        d = float(row.get(value) or 0.0) - float(median(others))
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
                 + ", ".join(str(r["rank"]) for r in known[:FINDING_RANKS_SHOWN])
                 + (" ..." if len(known) > FINDING_RANKS_SHOWN else "") + ")",
        "where": [{"rank": r["rank"], "name": f"rank {r['rank']}", "reason": r["reason"]}
                  for r in known[:FINDING_RANKS_SHOWN]],
        "evidence": {"missing_ranks": [r["rank"] for r in known], "world_size": world},
        "remedy": FINDING_TEXTS["rank_missing"],
        "cost_ms_per_step": 0.0,
    }


def failed_row(rank: int, reason: str, trace: Optional[str] = None) -> dict[str, Any]:
    """The ``ranks`` row of a rank whose analysis failed (its task raised, ran out of memory, was lost)."""
    row: dict[str, Any] = {"rank": int(rank), "status": "failed", "reason": _one_line(reason)}
    if trace is not None:
        row["trace"] = trace
    return row


def _one_line(reason: Any) -> str:
    """A failure reason as one line (a traceback's last line is what went wrong), at most 300 characters."""
    lines = [x.strip() for x in str(reason or "").splitlines() if x.strip()]
    if not lines:
        return "the analysis failed (no reason given)"
    line = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    return line if len(line) <= 300 else line[:299] + "…"


def _failed_rows(failed: Optional[Iterable[dict[str, Any]]], analysed: set[Any]) -> list[dict[str, Any]]:
    """The failed ranks' rows, one per rank (the first reason), in rank order; ranks also analysed left out."""
    out: dict[int, dict[str, Any]] = {}
    for r in failed or []:
        rank = r.get("rank")
        if isinstance(rank, int) and rank not in analysed and rank not in out:
            out[rank] = failed_row(rank, r.get("reason") or "", r.get("trace"))
    return [out[k] for k in sorted(out)]


def rank_failed(failed_rows: list[dict[str, Any]], world: int) -> Optional[dict[str, Any]]:
    """``rank_failed``: ranks whose analysis failed (the engine's task raised, ran out of memory or was lost).

    Args:
        failed_rows: rows ``{"rank", "status": "failed", "reason"}`` (:func:`failed_row`).
        world: ranks in the job.

    Returns:
        The finding (warning: the job view covers fewer ranks), or None when no rank failed. The title and
        ``where`` name at most :data:`FINDING_RANKS_SHOWN` ranks, grouped by reason; the evidence lists every
        failed rank and ``reasons`` {reason: [rank]}.
    """
    rows = [r for r in failed_rows if r.get("status") == "failed" and isinstance(r.get("rank"), int)]
    if not rows:
        return None
    rows = sorted(rows, key=lambda r: r["rank"])
    reasons: dict[str, list[int]] = {}
    for r in rows:
        reasons.setdefault(str(r.get("reason") or ""), []).append(r["rank"])
    groups = sorted(reasons.items(), key=lambda kv: (-len(kv[1]), kv[1][0]))
    n = len(rows)
    first_reason = groups[0][0]
    title = (f"The analysis of {n} of {world} rank{'s' if world != 1 else ''} failed "
             f"(rank{'s' if len(groups[0][1]) > 1 else ''} {compress_ids(groups[0][1], MAX_IDS_CHARS)}: {first_reason}"
             + (f"; {n - len(groups[0][1])} more with {len(groups) - 1} other reason{'s' if len(groups) > 2 else ''}"
                if len(groups) > 1 else "") + ")")
    return {
        "id": "rank_failed",
        "severity": "warning",
        "title": title,
        "where": [{"rank": r["rank"], "name": f"rank {r['rank']}", "reason": r["reason"],
                   **({"trace": r["trace"]} if r.get("trace") else {})} for r in rows[:FINDING_RANKS_SHOWN]],
        "evidence": {"failed_ranks": [r["rank"] for r in rows], "world_size": world,
                     "reasons": {why: ranks_ for why, ranks_ in groups}},
        "remedy": FINDING_TEXTS["rank_failed"],
        "cost_ms_per_step": 0.0,
    }


# --------------------------------------------------------------------- several traces at once


def analyze_many(paths: list[str], *, workers: Optional[int] = None,
                 progress: Optional[Callable[[str, int, int], None]] = None,
                 engine: Optional["Engine"] = None) -> Analysis:
    """Analyse several traces on an engine; ranks of one job give the job view, others a plain merge.

    Documents are kept as they arrive (the progress bar counts ranks); the driver holds only them.
    A trace that cannot be analysed is a ``failed`` rank of the job view (``rank_failed``) when its
    rank is known from its file name and the others make a job; else its error is raised.
    """
    from .engines import LocalEngine, RankFailure
    from .merge import merge

    eng = engine if engine is not None else LocalEngine(workers=workers)
    report = progress or (lambda description, done, total: None)
    n = len(paths)
    outcomes: dict[int, dict[str, Any] | RankFailure] = {}
    report(f"analysing {n} ranks ({eng.name})", 0, n)
    for done, (i, out) in enumerate(eng.map(paths), 1):
        outcomes[i] = out
        report(f"{'failed' if isinstance(out, RankFailure) else 'analysed'} {os.path.basename(paths[i])}", done, n)
    docs = [o for _, o in sorted(outcomes.items()) if not isinstance(o, RankFailure)]
    failures = [o for _, o in sorted(outcomes.items()) if isinstance(o, RankFailure)]
    if failures:
        failed = _failed_ranks(failures, docs)
        if failed is None:
            raise failures[0].error()
        folders = {os.path.dirname(os.path.abspath(p)) for p in paths}
        stalls = stall_view(folders.pop()) if len(folders) == 1 else None
        return Analysis.from_dict(job_view(docs, stalls=stalls, failed=failed))
    if not is_job(docs):
        return merge([Analysis(doc=cast(AnalysisDoc, d)) for d in docs])
    folders = {os.path.dirname(os.path.abspath(p)) for p in paths}
    stalls = stall_view(folders.pop()) if len(folders) == 1 else None
    return Analysis.from_dict(job_view(docs, stalls=stalls))


def _failed_ranks(failures: list[Any], docs: list[dict[str, Any]]) -> Optional[list[dict[str, Any]]]:
    """The ``failed`` rows (:func:`failed_row`) of the failed traces when they and the analysed ones are
    distinct ranks of a job (the failed ones' ranks from their file names), else None (no job view to put
    them in)."""
    if not docs or any("ranks" in d for d in docs):
        return None
    ranks = [rank_of(d) for d in docs]
    failed: dict[int, tuple[str, str]] = {}
    for f in failures:
        found = re.findall(RANK_FILE_PATTERN, os.path.basename(f.path).lower())
        if not found:
            return None
        failed[int(found[-1])] = (f.path, f.reason)
    known = [r for r in ranks if r is not None]
    if len(known) != len(ranks) or len(set(known)) != len(known) or set(known) & set(failed) \
            or len(failed) != len(failures):
        return None
    return [failed_row(rank, why, path) for rank, (path, why) in sorted(failed.items())]


def stall_view(run_dir: str) -> Optional[dict[str, Any]]:
    """``perfkit stalls``' summary of a run directory, or None when it has no watchdog files."""
    from .stalls import summarize_stalls
    from ..errors import PerfkitError

    try:
        return summarize_stalls(run_dir)
    except PerfkitError:
        return None
