"""GitHub-flavoured Markdown report (for PR comments and CI summaries).

Same sections, rows, labels and number formats as the console report: both draw
the rows of :mod:`perfkit.report.rows`. Names from the
trace (ops, kernels, sources) go in code spans with ``|`` escaped, so C++
template brackets are not taken for HTML and pipes do not split table cells.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..analysis.result import Analysis, document_of
from . import ranks
from .rows import (
    MODULE_HEADERS,
    Words,
    basis_words,
    breakdown_line,
    category_notes,
    category_rows,
    compiled_graph_rows,
    copy_rows,
    copy_sources,
    evidence_items,
    excluded_steps,
    findings,
    fmt_count,
    fmt_pct,
    fmt_us,
    fmt_value,
    fmt_where,
    header_facts,
    launcher_name,
    leading_ops_line,
    module_rows,
    modules_note,
    overview_note,
    overview_rows,
    phase_evidence_line,
    phase_rows,
    phase_unknown_note,
    runtime_note,
    runtime_rows,
    short_kernel_name,
    short_op_name,
    short_source,
    source_note,
    step_notes,
    summary_rows,
    top_kernels,
    top_kernels_note,
    top_ops,
    trace_parts,
    warnings_list,
)
from .values import DASH, fmt_ms, text


def md_text(value: Any) -> str:
    """Free text for Markdown: pipes, angle brackets and backslashes escaped, newlines flattened."""
    s = str(value).replace("\\", "\\\\").replace("|", "\\|").replace("<", "\\<").replace(">", "\\>")
    return " ".join(s.split())


def md_code(value: Any) -> str:
    """A code span for a name from the trace; "-" for a missing one. Pipes escaped for table cells."""
    s = text(value, default="")
    if not s:
        return DASH
    s = " ".join(s.split()).replace("|", "\\|")
    fence = "``" if "`" in s else "`"
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> list[str]:
    """Lines of a GFM table; ``right`` lists the right-aligned (numeric) column indexes."""
    align = ["---:" if i in right else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(cell if cell != "" else " " for cell in row) + " |")
    return lines


def _section(out: list[str], title: str) -> None:
    out += ["", f"### {title}", ""]


def _header(doc: dict[str, Any], out: list[str], w: Words) -> None:
    out.append("## perfkit report")
    out.append("")
    for name, value in header_facts(doc):
        if name == "Trace":
            paths, extras = trace_parts(doc)
            if paths:
                value_md = ", ".join(md_code(p) for p in paths[:8])
                value_md += f" (+{len(paths) - 8} more)" if len(paths) > 8 else ""
                value_md += f" ({md_text(extras)})" if extras else ""
                out.append(f"- **Trace:** {value_md}")
                continue
        out.append(f"- **{name}:** {md_text(value)}")
    for step_id, reason in excluded_steps(doc):
        out.append(f"- **Excluded:** step {md_text(step_id)}: {md_text(reason)}")
    for warning in warnings_list(doc):
        out.append(f"- **Warning:** {md_text(warning)}")
    lines = []
    breakdown = breakdown_line(doc)
    if breakdown:
        lines.append(f"**Time breakdown:** {md_text(breakdown)}")
    leading = leading_ops_line(doc)
    if leading:
        lines.append(f"**{w.top_time}:** {md_text(leading)}")
    if lines:
        out.append("")
        out.append("  \n".join(lines))


def _step_summary(doc: dict[str, Any], out: list[str]) -> None:
    rows = summary_rows(doc)
    if not rows:
        return
    _section(out, "Step summary")
    out += md_table(["Metric", "Value", "Unit"], [list(r) for r in rows], right=(1,))
    notes = step_notes(doc)
    if notes:
        out.append("")
        out += [f"_{md_text(n)}_" for n in notes]


def _phases(doc: dict[str, Any], out: list[str], w: Words) -> None:
    rows = phase_rows(doc)
    if not rows:
        return
    _section(out, w.phases_title)
    if not any(ms for _, ms, _ in rows):
        out.append(w.no_time)
        return
    out += md_table(["Phase", w.ms_per_step, w.share_of_busy],
                    [[name, fmt_ms(ms), fmt_pct(share)] for name, ms, share in rows], right=(1, 2))
    evidence, unknown = phase_evidence_line(doc), phase_unknown_note(doc)
    notes = ([f"Evidence: {evidence}"] if evidence else []) + ([unknown] if unknown else [])
    if notes:
        out.append("")
        out += [f"_{md_text(n)}_" for n in notes]


def _categories(doc: dict[str, Any], out: list[str], w: Words) -> None:
    if not isinstance(doc.get("categories"), dict):
        return
    _section(out, w.categories_title)
    rows = category_rows(doc)
    if not rows:
        out.append(w.no_kernel_time)
        return
    out += md_table(["Category", w.ms_per_step, w.share_of_busy],
                    [[name, fmt_ms(ms), fmt_pct(share)] for _k, name, ms, share in rows], right=(1, 2))
    for note in category_notes(doc):
        out += ["", f"_{md_text(note)}_"]


def _top_ops(doc: dict[str, Any], out: list[str], top: int, w: Words) -> None:
    if "top_ops" not in doc:
        return
    _section(out, w.top_ops_title)
    ops = top_ops(doc, top)
    if not ops:
        out.append(w.no_ops)
        return
    rows = [
        [str(i), md_code(short_op_name(op.get("name"))), fmt_ms(op.get("ms_per_step")),
         fmt_ms(op.get("self_ms_per_step")), fmt_pct(op.get("share")), fmt_count(op.get("calls_per_step")),
         md_code(short_source(op.get("source")) if op.get("source") else None)]
        for i, op in enumerate(ops, 1)
    ]
    out += md_table(["#", "Op", w.ms, "Self ms", "% busy", "Calls", "Source"], rows, right=(0, 2, 3, 4, 5))
    out += ["", f"_{md_text(w.top_ops_note)}_"]
    note = source_note(doc)
    if note:
        out += ["", f"_{md_text(note)}_"]


def _compiled(doc: dict[str, Any], out: list[str], top: int, w: Words) -> None:
    rows = compiled_graph_rows(doc, top)
    if not rows:
        return
    _section(out, "Compiled graphs (torch.compile, per step)")
    out += md_table(["#"] + list(w.compiled_headers),
                    [[str(i), md_code(r[0]), md_text(r[1]), r[2], r[3], md_code(r[4]) if r[4] != "unknown" else "unknown"]
                     for i, r in enumerate(rows, 1)], right=(0, 3, 4))
    out += ["", f"_{md_text(w.compiled_note)}_"]


def _top_kernels(doc: dict[str, Any], out: list[str], top: int, w: Words) -> None:
    if "top_kernels" not in doc:
        return
    _section(out, w.top_kernels_title)
    kernels = top_kernels(doc, top)
    if not kernels:
        out.append(w.no_kernels)
        return
    rows = [
        [str(i), md_code(short_kernel_name(k.get("name"))), md_text(text(k.get("category"))),
         fmt_ms(k.get("ms_per_step")), fmt_pct(k.get("share")), fmt_count(k.get("calls_per_step")),
         fmt_us(k.get("avg_us")), md_code(launcher_name(k)),
         md_code(short_source(k.get("source")) if k.get("source") else None)]
        for i, k in enumerate(kernels, 1)
    ]
    out += md_table(["#", "Kernel", "Category", w.ms, "% busy", "Calls", "Avg µs", "Launched by", "Source"],
                    rows, right=(0, 3, 4, 5, 6))
    note = top_kernels_note(doc, top)
    if note:
        out += ["", f"_{md_text(note)}_"]


def _copies(doc: dict[str, Any], out: list[str], top: int, w: Words) -> None:
    if not isinstance(doc.get("copies"), dict):
        return
    _section(out, "Memory copies (per step)")
    rows = copy_rows(doc)
    if not rows:
        out.append("No host/device copies in the analysed steps.")
        return
    out += md_table(["Direction", "Copies", "Via copy engine", "MB", w.ms], [list(r) for r in rows],
                    right=(1, 2, 3, 4))
    out += ["", "_Copy engine: cudaMemcpy transfers; the rest are copy kernels (casts, .contiguous()), "
                "which record no byte count (MB shown as -)._"]
    sources = copy_sources(doc, top)
    if sources:
        out += ["", "**Top copy sources**", ""]
        out += md_table(
            ["Op", "Source", "Dir", w.ms, "Copies"],
            [[md_code(launcher_name(s)), md_code(short_source(s.get("source")) if s.get("source") else None),
              md_text(text(s.get("direction")).upper()),
              fmt_ms(s.get("ms_per_step")), fmt_count(s.get("count_per_step"))] for s in sources],
            right=(3, 4),
        )


def _overview(doc: dict[str, Any], out: list[str]) -> None:
    rows = overview_rows(doc)
    if not rows:
        return
    _section(out, "Step time breakdown (torch-tb-profiler Overview roles)")
    total_ms = sum(ms or 0.0 for _, ms, _ in rows)
    table = [[name, fmt_ms(ms), fmt_pct(share)] for name, ms, share in rows]
    table.append(["**Total**", f"**{fmt_ms(total_ms)}**", f"**{fmt_pct(1.0 if total_ms else 0.0)}**"])
    out += md_table(["Role", "ms/step", "% of step"], table, right=(1, 2))
    out += ["", f"_{md_text(overview_note(doc))}_"]


def _runtime(doc: dict[str, Any], out: list[str]) -> None:
    rows = runtime_rows(doc)
    if not rows:
        return
    _section(out, "Measured in the run (perfkit profile)")
    out.extend(md_table(["Measure", "Value", "Unit"], [[md_text(a), md_text(b), md_text(c)] for a, b, c in rows], right=[1]))
    note = runtime_note(doc)
    if note:
        out += ["", f"_{md_text(note)}_"]


def _modules(doc: dict[str, Any], out: list[str]) -> None:
    rows = module_rows(doc)
    note = modules_note(doc)
    if not rows and not note:
        return
    _section(out, "Modules (perfkit profile --modules)")
    if rows:
        out += md_table(list(MODULE_HEADERS), [[md_code(r[0])] + [md_text(c) for c in r[1:]] for r in rows],
                        right=(2, 3, 4, 5, 6))
    if note:
        out += ["", f"_{md_text(note)}_"]


def _findings(doc: dict[str, Any], out: list[str]) -> None:
    _section(out, "Findings")
    items = findings(doc)
    if not items:
        out.append("No findings.")
        return
    for i, f in enumerate(items, 1):
        severity = text(f.get("severity"), "")
        title = md_text(text(f.get("title"), "(untitled finding)"))
        head = f"{i}. **{'[' + md_text(severity.upper()) + '] ' if severity else ''}{title}**"
        if f.get("id"):
            head += f" ({md_code(f['id'])})"
        out.append(head)
        if f.get("where"):
            out.append(f"   - Where: {md_text(fmt_where(f['where']))}")
        evidence = evidence_items(f.get("evidence"))
        if evidence:
            if len(evidence) == 1 and evidence[0][0] is None:
                out.append(f"   - Evidence: {md_text(evidence[0][1])}")
            else:
                out.append("   - Evidence:")
                for key, value in evidence:
                    out.append(f"     - {md_text(key) + ': ' if key is not None else ''}{md_text(value)}")
        if f.get("remedy"):
            out.append(f"   - Remedy: {md_text(fmt_value(f['remedy']))}")


def _ranks(doc: dict[str, Any], out: list[str]) -> None:
    if not ranks.has_ranks(doc):
        return
    _section(out, "Ranks")
    out += [f"- {md_text(line)}" for line in ranks.job_lines(doc)]
    rows, hidden = ranks.rank_table(doc)
    if rows:
        out.append("")
        out += md_table(list(ranks.HEADERS), [[md_text(c) for c in row] for row in rows], right=range(1, len(ranks.HEADERS)))
        out.append("")
        if hidden:
            out.append(f"_{md_text(ranks.hidden_note(doc, hidden))}_")
        out.append(f"_{md_text(ranks.NOTE)}_")


def render_markdown(doc: "Analysis | dict[str, Any]", *, top: int = 10) -> str:
    """The analysis report as GitHub-flavoured Markdown.

    Args:
        doc: the analysis document (``Analysis.to_dict()``, schema ``perfkit.analysis/2``).
            Missing keys are tolerated: their sections are skipped or say there is no data.
        top: rows in the top ops, top kernels and copy sources tables. Defaults to 10.

    Returns:
        The Markdown text, ending with a newline.
    """
    doc = document_of(doc)
    doc = doc if isinstance(doc, dict) else {}
    out: list[str] = []
    w = basis_words(doc)
    _header(doc, out, w)
    _step_summary(doc, out)
    _ranks(doc, out)
    _phases(doc, out, w)
    _categories(doc, out, w)
    _top_ops(doc, out, top, w)
    _compiled(doc, out, top, w)
    _top_kernels(doc, out, top, w)
    _copies(doc, out, top, w)
    _overview(doc, out)
    _runtime(doc, out)
    _modules(doc, out)
    _findings(doc, out)
    return "\n".join(out) + "\n"
