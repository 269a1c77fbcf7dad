"""The per-rank section of a job report (the document's ``ranks``, ``job`` and ``stalls``).

Rows and lines are built here once (plain strings, no rich) and drawn by both
the terminal and the Markdown renderer. A document without ``ranks`` (one
trace) has no such section.
"""

from __future__ import annotations

from typing import Any

from .values import DASH, as_dict, as_list, compress_ids, fmt_ms, num, text

#: Ranks shown in the table; larger jobs show the ranks that keep the others waiting most and least.
MAX_ROWS = 16
#: Reasons listed for failed or missing ranks (one line each, ranks with the same reason together); the rest counted.
MAX_REASONS = 4
#: A reason is cut to this many characters in the report (the document keeps it whole).
MAX_REASON_CHARS = 160
#: Rank ranges are cut after this many characters (every other rank of 1,000 would be a 2,000-character line).
MAX_IDS_CHARS = 80

HEADERS = ("Rank", "Steps", "Step", "Busy", "Idle", "Comm", "Exposed", "Last", "Waits", "Causes")


def has_ranks(doc: dict[str, Any]) -> bool:
    return bool(as_list(doc.get("ranks")))


def _analysed(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in as_list(doc.get("ranks")) if isinstance(r, dict) and r.get("status") == "analysed"]


def cut_measure(doc: dict[str, Any]) -> tuple[str, str]:
    """(row key, words) of the one measure that picks the ranks shown when the table is cut.

    The others' wait caused by the rank when every analysed rank has it (collectives matched),
    else work per step against the median (a figure every rank has): never a mix of the two.
    """
    rows = _analysed(doc)
    if rows and all(num(r.get("caused_wait_ms_per_step")) is not None for r in rows):
        return "caused_wait_ms_per_step", "the wait they cause the others (Causes)"
    return "work_vs_median_ms", "work per step against the median (step minus exposed communication)"


def rank_table(doc: dict[str, Any]) -> tuple[list[list[str]], int]:
    """(rows of HEADERS as strings, ranks not shown) for the analysed ranks.

    When cut, the ranks highest and lowest by :func:`cut_measure`, in rank order.
    """
    rows = _analysed(doc)
    straggler = as_dict(as_dict(doc.get("job")).get("straggler")).get("rank")
    shown = rows
    if len(rows) > MAX_ROWS:
        key, _ = cut_measure(doc)
        by_wait = sorted(rows, key=lambda r: -(num(r.get(key)) or 0.0))
        keep = by_wait[: MAX_ROWS - 4] + by_wait[-4:]
        shown = sorted(keep, key=lambda r: num(r.get("rank")) or 0)
    out = []
    for r in shown:
        mark = " *" if r.get("rank") == straggler and straggler is not None else ""
        last, matched = num(r.get("last_arrivals")), num(r.get("collectives_matched"))
        out.append([
            text(r.get("rank")) + mark,
            text(r.get("steps")),
            fmt_ms(r.get("step_ms_median")),
            fmt_ms(r.get("busy_ms_per_step")),
            fmt_ms(r.get("idle_ms_per_step")),
            fmt_ms(r.get("comm_ms_per_step")),
            fmt_ms(r.get("comm_exposed_ms_per_step")),
            f"{int(last)}/{int(matched)}" if last is not None and matched is not None else DASH,
            fmt_ms(r.get("arrival_wait_ms_per_step")),
            fmt_ms(r.get("caused_wait_ms_per_step")),
        ])
    return out, len(rows) - len(shown)


def hidden_note(doc: dict[str, Any], hidden: int) -> str:
    """The note under a cut rank table: how many ranks are left out and by which measure the rest were chosen."""
    _, words = cut_measure(doc)
    return (f"{hidden} more ranks in the document's ranks list; shown: the {MAX_ROWS - 4} highest and the 4 lowest "
            f"by {words}.")


def job_steps_line(doc: dict[str, Any]) -> str:
    """Steps of a job, per rank: "1 step per rank (id 10) on 8 ranks", "3-5 steps per rank (ids 2-6) on 4 ranks"."""
    rows = _analysed(doc)
    if not rows:
        return ""
    counts = [int(num(r.get("steps")) or 0) for r in rows]
    lo, hi = min(counts), max(counts)
    noun = "step" if hi == 1 else "steps"
    line = f"{lo} {noun} per rank" if lo == hi else f"{lo}-{hi} {noun} per rank ({sum(counts)} in all)"
    ids = as_list(as_dict(doc.get("steps")).get("ids"))
    if ids:
        distinct = {int(i) for i in ids if num(i) is not None}
        line += f" ({'id' if len(distinct) == 1 else 'ids'} {compress_ids(distinct)})"
    return line + f" on {len(rows)} rank{'s' if len(rows) != 1 else ''}"


def _percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of sorted values, linear between the closest ranks (numpy's default)."""
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def distribution_line(doc: dict[str, Any]) -> str:
    """Step time across the analysed ranks when the table is cut (more than :data:`MAX_ROWS` ranks), else "".

    ``step time across 1024 ranks: min 84.96 ms (rank 1020), median 85.45, p90 86.10, max 90.72 ms (rank 7)``:
    each rank's median step (``step_ms_median``); the lowest rank where several share the min or max.
    """
    rows = _analysed(doc)
    if len(rows) <= MAX_ROWS:
        return ""
    known = sorted((v, int(r)) for v, r in ((num(x.get("step_ms_median")), num(x.get("rank"))) for x in rows)
                   if v is not None and r is not None)
    if not known:
        return ""
    values = [v for v, _ in known]
    lo_rank = known[0][1]
    hi_rank = min(r for v, r in known if v == values[-1])
    unknown = len(rows) - len(known)
    return (f"step time across {len(known)} ranks: min {fmt_ms(values[0])} ms (rank {lo_rank}), "
            f"median {fmt_ms(_percentile(values, 50))}, p90 {fmt_ms(_percentile(values, 90))}, "
            f"max {fmt_ms(values[-1])} ms (rank {hi_rank})"
            + (f"; {unknown} ranks without a step time" if unknown else ""))


def _ids(ranks_: list[int]) -> str:
    """Rank ranges (``3, 17-19``), cut after :data:`MAX_IDS_CHARS` characters with the count of ranks left out."""
    return compress_ids(ranks_, MAX_IDS_CHARS)


def _reason(value: Any) -> str:
    """A reason on one line, cut to :data:`MAX_REASON_CHARS`."""
    s = " ".join(text(value).split())
    return s if len(s) <= MAX_REASON_CHARS else s[: MAX_REASON_CHARS - 1] + "…"


def status_lines(doc: dict[str, Any], status: str) -> list[str]:
    """The ranks of one status (``failed``, ``missing``), ranks with the same reason on one line.

    ``missing: ranks 3, 17-19: no rank3.analysis.json after 120 s``; the reasons shared by most ranks first, at
    most :data:`MAX_REASONS` lines, then one line counting the rest.
    """
    by_reason: dict[str, list[int]] = {}
    for r in as_list(doc.get("ranks")):
        if isinstance(r, dict) and r.get("status") == status and num(r.get("rank")) is not None:
            by_reason.setdefault(_reason(r.get("reason")), []).append(int(num(r.get("rank")) or 0))
    groups = sorted(by_reason.items(), key=lambda kv: (-len(kv[1]), min(kv[1])))
    lines = [f"{status}: rank{'s' if len(ranks_) > 1 else ''} {_ids(ranks_)}: {why}"
             for why, ranks_ in groups[:MAX_REASONS]]
    rest = groups[MAX_REASONS:]
    if rest:
        n = sum(len(v) for _, v in rest)
        lines.append(f"{status}: {n} more rank{'s' if n > 1 else ''} ({_ids([r for _, v in rest for r in v])}) "
                     f"with {len(rest)} other reason{'s' if len(rest) > 1 else ''} (each in the document's ranks list)")
    return lines


def job_lines(doc: dict[str, Any]) -> list[str]:
    """One-line facts about the job: ranks analysed and missing, the straggler, the stall verdict."""
    job = as_dict(doc.get("job"))
    if not job:
        return []
    lines = []
    world, got = num(job.get("world_size")), num(job.get("ranks_analysed"))
    if world is not None and got is not None:
        lines.append(f"{int(got)} of {int(world)} ranks analysed")
    for status in ("failed", "missing"):
        lines += status_lines(doc, status)
    strag = as_dict(job.get("straggler"))
    arr = as_dict(job.get("arrivals"))
    if strag and strag.get("others_wait_ms_per_step") is not None:
        line = (f"straggler: rank {strag.get('rank')}, last to arrive at {text(strag.get('late_collectives'))} of "
                f"{text(strag.get('collectives_matched'))} matched collectives; the others wait "
                f"{fmt_ms(strag.get('others_wait_ms_per_step'))} ms per step for it")
        if num(strag.get("lead_ms_per_step")) is not None:
            line += f" (it arrives {fmt_ms(strag.get('lead_ms_per_step'))} ms per step after the next-latest rank)"
        lines.append(line)
    elif strag:  # a document from before arrival order was compared: extra_ms_per_step is more work
        lines.append(f"straggler: rank {strag.get('rank')}, {fmt_ms(strag.get('extra_ms_per_step'))} ms more work "
                     "per step than the median of the others")
    elif (num(job.get("ranks_analysed")) or 0) < 2:
        pass  # one rank: nobody to wait for, nothing to say
    elif arr.get("status") == "unknown":
        lines.append(f"straggler: unknown ({text(arr.get('reason'))})")
    elif arr.get("status") == "matched":
        lines.append(f"straggler: none ({text(arr.get('collectives'))} collectives matched per rank; no rank keeps "
                     "the others waiting much longer than any other does)")
    offsets = as_dict(arr.get("clock_offsets_us"))
    shifted = as_list(arr.get("clocks_shifted"))
    if shifted:
        lines.append("clocks aligned on collective ends: " + ", ".join(
            f"rank {r} {(num(offsets.get(str(r))) or 0.0) / 1000.0:+.3f} ms" for r in shifted[:8])
            + (" ..." if len(shifted) > 8 else ""))
    verdict = as_dict(doc.get("stalls")).get("verdict")
    if verdict:
        lines.append(f"stalls (watchdog): {verdict}")
    dist = distribution_line(doc)  # last: the table below lists some of these ranks
    if dist:
        lines.append(dist)
    return lines


NOTE = ("ms per step (median step, means of kept steps). Busy/idle: device time (CPU time on a CPU-only trace); "
        "comm: time in collectives; exposed: the part no compute overlaps. The collectives are matched across "
        "ranks (n-th of each kind in each step): last = collectives where the rank started last; waits = time "
        "it waited for later ranks; causes = the others' mean wait for it where it came last. * the straggler.")
