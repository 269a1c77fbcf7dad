"""The per-rank section of a job report (the document's ``ranks``, ``job`` and ``stalls``).

Rows and lines are built here once (plain strings, no rich) and drawn by both
the terminal and the Markdown renderer. A document without ``ranks`` (one
trace) has no such section.
"""

from __future__ import annotations

from typing import Any

from .console import as_dict, as_list, compress_ids, fmt_ms, num, text

#: Ranks shown in the table; larger jobs show the slowest and the fastest ranks.
MAX_ROWS = 16

HEADERS = ("Rank", "Steps", "Step", "Busy", "Idle", "Comm", "Exposed", "Work", "vs median")


def has_ranks(doc: dict[str, Any]) -> bool:
    return bool(as_list(doc.get("ranks")))


def rank_table(doc: dict[str, Any]) -> tuple[list[list[str]], int]:
    """(rows of HEADERS as strings, ranks not shown) for the analysed ranks, slowest work first when cut."""
    rows = [r for r in as_list(doc.get("ranks")) if isinstance(r, dict) and r.get("status") == "analysed"]
    straggler = as_dict(as_dict(doc.get("job")).get("straggler")).get("rank")
    shown = rows
    if len(rows) > MAX_ROWS:
        by_work = sorted(rows, key=lambda r: -(num(r.get("work_vs_median_ms")) or 0.0))
        keep = by_work[: MAX_ROWS - 4] + by_work[-4:]
        shown = sorted(keep, key=lambda r: num(r.get("rank")) or 0)
    out = []
    for r in shown:
        vs = num(r.get("work_vs_median_ms"))
        mark = " *" if r.get("rank") == straggler and straggler is not None else ""
        out.append([
            text(r.get("rank")) + mark,
            text(r.get("steps")),
            fmt_ms(r.get("step_ms_median")),
            fmt_ms(r.get("gpu_busy_ms_per_step")),
            fmt_ms(r.get("gpu_idle_ms_per_step")),
            fmt_ms(r.get("comm_ms_per_step")),
            fmt_ms(r.get("comm_exposed_ms_per_step")),
            fmt_ms(r.get("work_ms_per_step")),
            ("+" if vs is not None and vs > 0 else "") + fmt_ms(vs),
        ])
    return out, len(rows) - len(shown)


def job_lines(doc: dict[str, Any]) -> list[str]:
    """One-line facts about the job: ranks analysed and missing, the straggler, the stall verdict."""
    job = as_dict(doc.get("job"))
    if not job:
        return []
    lines = []
    world, got = num(job.get("world_size")), num(job.get("ranks_analysed"))
    if world is not None and got is not None:
        lines.append(f"{int(got)} of {int(world)} ranks analysed")
    missing = [r for r in as_list(doc.get("ranks")) if isinstance(r, dict) and r.get("status") == "missing"]
    if missing:
        reasons = {text(r.get("reason")) for r in missing}
        why = f" ({reasons.pop()})" if len(reasons) == 1 else ""
        noun = "rank" if len(missing) == 1 else "ranks"
        lines.append(f"missing: {noun} {compress_ids(r.get('rank') for r in missing)}{why}")
    strag = as_dict(job.get("straggler"))
    if strag:
        lines.append(f"straggler: rank {strag.get('rank')}, {fmt_ms(strag.get('extra_ms_per_step'))} ms more work "
                     "per step than the median of the others")
    verdict = as_dict(doc.get("stalls")).get("verdict")
    if verdict:
        lines.append(f"stalls (watchdog): {verdict}")
    return lines


NOTE = ("ms per step (median step, means of kept steps). Busy/idle: device time (CPU time on a CPU-only trace); "
        "comm: time in collectives; exposed: the part no compute overlaps; work = step - exposed, the time a rank "
        "did not wait for the others. * the straggler: the most work; the ranks waiting for it have the most "
        "exposed communication.")
