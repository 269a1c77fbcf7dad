"""Terminal report: the analysis document (schema ``perfkit.analysis/2``) drawn with rich.

The renderer takes only the JSON document (``Analysis.to_dict()``), never a Trace or torch, and
never fails on a missing key: sections without data are skipped. What each section shows (rows,
labels, number formats, notes, the word GPU or CPU) comes from :mod:`perfkit.report.rows`, shared
with the Markdown and HTML reports; this module only draws it.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from ..analysis.result import Analysis, document_of
from . import ranks
from .rows import (
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
    fit_name,
    fit_source,
    fmt_count,
    fmt_pct,
    fmt_us,
    fmt_value,
    fmt_where,
    header_facts,
    launcher_name,
    leading_ops_line,
    MODULE_HEADERS,
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
    warnings_list,
)
from .values import fmt_ms, num, text


# ---------------------------------------------------------------------------
# Console rendering
# ---------------------------------------------------------------------------

_SEVERITY_STYLES = {
    "critical": "bold red", "high": "bold red", "error": "bold red",
    "medium": "bold yellow", "warning": "bold yellow", "warn": "bold yellow",
    "low": "bold cyan", "info": "bold cyan",
}
_BLOCKS = " ▏▎▍▌▋▊▉█"
_BAR_WIDTH = 20
_NUM: dict[str, Any] = {"justify": "right", "no_wrap": True}
_FOLD: dict[str, Any] = {"overflow": "fold"}


def bar(share: float | None, width: int = _BAR_WIDTH) -> str:
    """A horizontal bar of unicode eighth-blocks, ``width`` cells for a share of 1.0."""
    v = min(max(num(share) or 0.0, 0.0), 1.0)
    eighths = int(round(v * width * 8))
    full, part = divmod(eighths, 8)
    return "█" * full + (_BLOCKS[part] if part else "")


def _heading(console: Console, title: str) -> None:
    console.print()
    console.print(Rule(Text(title, style="bold"), align="left", style="dim"))


def _table(*columns: tuple[str, dict[str, Any]], footer: bool = False) -> Table:
    table = Table(box=box.SIMPLE, show_edge=False, pad_edge=False, collapse_padding=True, header_style="bold",
                  show_footer=footer,
                  footer_style="bold")
    for name, kwargs in columns:
        table.add_column(name, **kwargs)
    return table


def _note(console: Console, message: str) -> None:
    console.print(Text(message, style="dim"))


def _header(doc: dict[str, Any], console: Console, w: Words) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for name, value in header_facts(doc):
        grid.add_row(name, Text(value))
    for step_id, reason in excluded_steps(doc):
        grid.add_row("Excluded", Text(f"step {step_id}: {reason}"))
    for warning in warnings_list(doc):
        grid.add_row(Text("Warning", style="bold yellow"), Text(warning, style="yellow"))
    console.print(Panel(grid, title=Text("perfkit report", style="bold"), title_align="left",
                        box=box.ROUNDED, expand=True))
    breakdown = breakdown_line(doc)
    if breakdown:
        console.print(Text.assemble(("Time breakdown: ", "bold"), breakdown))
    leading = leading_ops_line(doc)
    if leading:
        console.print(Text.assemble((f"{w.top_time}: ", "bold"), leading))


def _step_summary(doc: dict[str, Any], console: Console) -> None:
    rows = summary_rows(doc)
    if not rows:
        return
    _heading(console, "Step summary")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column(justify="right", no_wrap=True)
    grid.add_column(no_wrap=True)
    for name, value, unit in rows:
        grid.add_row(name, value, unit)
    console.print(grid)
    for note in step_notes(doc):
        _note(console, note)


def _share_table(first: str, rows: list[tuple[str, float | None, float | None]], style: str, w: Words) -> Table:
    table = _table((first, {"no_wrap": True}), (w.ms_per_step, _NUM), (w.share_of_busy, _NUM), ("", {"no_wrap": True}))
    for name, ms, share in rows:
        table.add_row(name, fmt_ms(ms), fmt_pct(share), Text(bar(share), style=style))
    return table


def _phases(doc: dict[str, Any], console: Console, w: Words) -> None:
    rows = phase_rows(doc)
    if not rows:
        return
    _heading(console, w.phases_title)
    if not any(ms for _, ms, _ in rows):
        _note(console, w.no_time)
        return
    console.print(_share_table("Phase", rows, "cyan", w))
    evidence = phase_evidence_line(doc)
    if evidence:
        _note(console, f"Evidence: {evidence}")
    unknown = phase_unknown_note(doc)
    if unknown:
        console.print(Text(unknown, style="yellow"))


def _categories(doc: dict[str, Any], console: Console, w: Words) -> None:
    if not isinstance(doc.get("categories"), dict):
        return
    _heading(console, w.categories_title)
    rows = category_rows(doc)
    if not rows:
        _note(console, w.no_kernel_time)
        return
    console.print(_share_table("Category", [(name, ms, share) for _k, name, ms, share in rows], "magenta", w))
    for note in category_notes(doc):
        _note(console, note)


def _top_ops(doc: dict[str, Any], console: Console, top: int, w: Words) -> None:
    if "top_ops" not in doc:
        return
    _heading(console, w.top_ops_title)
    ops = top_ops(doc, top)
    if not ops:
        _note(console, w.no_ops)
        return
    table = _table(
        ("#", _NUM), ("Op / source line", {**_FOLD, "min_width": 20}),
        (w.ms, _NUM), ("Self ms", _NUM), ("% busy", _NUM), ("Calls", _NUM),
    )
    for i, op in enumerate(ops, 1):
        cell = Text(fit_name(short_op_name(op.get("name"))))
        if op.get("source"):
            cell.append("\n  " + fit_source(op.get("source")), style="dim")
        table.add_row(
            str(i), cell, fmt_ms(op.get("ms_per_step")), fmt_ms(op.get("self_ms_per_step")),
            fmt_pct(op.get("share")), fmt_count(op.get("calls_per_step")),
        )
    console.print(table)
    _note(console, w.top_ops_note)
    note = source_note(doc)
    if note:
        _note(console, note)


def _top_kernels(doc: dict[str, Any], console: Console, top: int, w: Words) -> None:
    if "top_kernels" not in doc:
        return
    _heading(console, w.top_kernels_title)
    kernels = top_kernels(doc, top)
    if not kernels:
        _note(console, w.no_kernels)
        return
    # Below 100 columns the category moves under the kernel name to leave the name room.
    wide = console.width >= 100
    columns: list[tuple[str, dict[str, Any]]] = [("#", _NUM), (w.ms, _NUM), ("% busy", _NUM), ("Calls", _NUM),
                                                 ("Avg µs", _NUM)]
    if wide:
        columns.append(("Category", {"no_wrap": True}))
    columns.append(("Kernel / launching op" if wide else "Kernel / category, launching op", {**_FOLD, "min_width": 20}))
    table = _table(*columns)
    for i, k in enumerate(kernels, 1):
        op, source = launcher_name(k), k.get("source")
        origin = "from " + (op or "an unknown op") + (f" ({short_source(source)})" if source else "")
        if not wide:
            origin = f"{text(k.get('category'))}, {origin}"
        cell = Text(short_kernel_name(k.get("name")))
        cell.append("\n  " + origin, style="dim")
        cells = [str(i), fmt_ms(k.get("ms_per_step")), fmt_pct(k.get("share")), fmt_count(k.get("calls_per_step")),
                 fmt_us(k.get("avg_us"))]
        if wide:
            cells.append(text(k.get("category")))
        table.add_row(*cells, cell)
    table.show_lines = True
    console.print(table)
    note = top_kernels_note(doc, top)
    if note:
        _note(console, note)


def _compiled(doc: dict[str, Any], console: Console, top: int, w: Words) -> None:
    rows = compiled_graph_rows(doc, top)
    if not rows:
        return
    _heading(console, "Compiled graphs (torch.compile, per step)")
    table = _table(("#", _NUM), ("Graph / user code", {**_FOLD, "min_width": 24}), ("Phase", {"no_wrap": True}),
                   (w.ms, _NUM), ("Calls", _NUM))
    for i, (name, phase, ms, calls, source) in enumerate(rows, 1):
        cell = Text(name)
        cell.append("\n  " + source, style="dim")
        table.add_row(str(i), cell, phase, ms, calls)
    console.print(table)
    _note(console, w.compiled_note)


def _copies(doc: dict[str, Any], console: Console, top: int, w: Words) -> None:
    if not isinstance(doc.get("copies"), dict):
        return
    _heading(console, "Memory copies (per step)")
    rows = copy_rows(doc)
    if not rows:
        _note(console, "No host/device copies in the analysed steps.")
        return
    table = _table(
        ("Direction", {"no_wrap": True}), ("Copies", _NUM), ("Via copy engine", _NUM), ("MB", _NUM), (w.ms, _NUM),
    )
    for row in rows:
        table.add_row(*row)
    console.print(table)
    _note(console, "Copy engine: cudaMemcpy transfers; the rest are copy kernels (casts, .contiguous()), "
                   "which record no byte count (MB shown as -).")
    sources = copy_sources(doc, top)
    if sources:
        console.print()
        console.print(Text("Top copy sources", style="bold"))
        src_table = _table(
            ("Op", _FOLD), ("Source", {**_FOLD, "style": "dim"}), ("Dir", {"no_wrap": True}),
            (w.ms, _NUM), ("Copies", _NUM),
        )
        for s in sources:
            src_table.add_row(
                Text(launcher_name(s) or "-"), Text(fit_source(s.get("source"), 30)), text(s.get("direction")).upper(),
                fmt_ms(s.get("ms_per_step")), fmt_count(s.get("count_per_step")),
            )
        console.print(src_table)


def _overview(doc: dict[str, Any], console: Console) -> None:
    rows = overview_rows(doc)
    if not rows:
        return
    _heading(console, "Step time breakdown (torch-tb-profiler Overview roles)")
    total_ms = sum(ms or 0.0 for _, ms, _ in rows)
    table = _table(("Role", {"no_wrap": True, "footer": "Total"}), ("ms/step", {**_NUM, "footer": fmt_ms(total_ms)}),
                   ("% of step", {**_NUM, "footer": fmt_pct(1.0 if total_ms else 0.0)}), footer=True)
    for name, ms, share in rows:
        table.add_row(name, fmt_ms(ms), fmt_pct(share))
    console.print(table)
    _note(console, overview_note(doc))


def _runtime(doc: dict[str, Any], console: Console) -> None:
    rows = runtime_rows(doc)
    if not rows:
        return
    _heading(console, "Measured in the run (perfkit profile)")
    table = _table(("Measure", {"no_wrap": True}), ("Value", _NUM), ("Unit", _FOLD))
    for label, value, unit in rows:
        table.add_row(Text(label), Text(value), Text(unit))
    console.print(table)
    note = runtime_note(doc)
    if note:
        _note(console, note)


def _modules(doc: dict[str, Any], console: Console) -> None:
    rows = module_rows(doc)
    note = modules_note(doc)
    if not rows and not note:
        return
    _heading(console, "Modules (perfkit profile --modules)")
    if rows:
        table = _table(*[(h, {**_FOLD, "min_width": 12} if i == 0 else (_NUM if i >= 2 else {"no_wrap": True}))
                         for i, h in enumerate(MODULE_HEADERS)])
        for row in rows:
            table.add_row(*[Text(c) for c in row])
        console.print(table)
    if note:
        _note(console, note)


def _findings(doc: dict[str, Any], console: Console) -> None:
    _heading(console, "Findings")
    items = findings(doc)
    if not items:
        console.print("No findings.")
        return
    for i, f in enumerate(items, 1):
        if i > 1:
            console.print()
        severity = text(f.get("severity"), "")
        style = _SEVERITY_STYLES.get(severity.lower(), "bold")
        title = Text(f"{i}. ", style="bold")
        if severity:
            title.append(f"[{severity.upper()}] ", style=style)
        title.append(text(f.get("title"), "(untitled finding)"), style=style)
        if f.get("id"):
            title.append(f"  ({f['id']})", style="dim")
        console.print(title)
        body = Table.grid(padding=(0, 1))
        body.add_column(width=2)
        body.add_column(style="bold", no_wrap=True)
        body.add_column(overflow="fold")
        if f.get("where"):
            body.add_row("", "Where", Text(fmt_where(f["where"])))
        evidence = evidence_items(f.get("evidence"))
        if evidence:
            ev = Text()
            for j, (key, value) in enumerate(evidence):
                if j:
                    ev.append("\n")
                if key is not None:
                    ev.append(f"{key}: ", style="dim")
                ev.append(value)
            body.add_row("", "Evidence", ev)
        if f.get("remedy"):
            body.add_row("", "Remedy", Text(fmt_value(f["remedy"]), style="green"))
        if body.row_count:
            console.print(body)


def _ranks(doc: dict[str, Any], console: Console) -> None:
    if not ranks.has_ranks(doc):
        return
    _heading(console, "Ranks")
    for line in ranks.job_lines(doc):
        console.print(Text(line))
    rows, hidden = ranks.rank_table(doc)
    if rows:
        table = _table(*[(h, _NUM if i else {"no_wrap": True}) for i, h in enumerate(ranks.HEADERS)])
        for row in rows:
            table.add_row(*row)
        console.print(table)
        if hidden:
            _note(console, f"{hidden} more ranks in the document's ranks list.")
        _note(console, ranks.NOTE)


def render_console(doc: "Analysis | dict[str, Any]", console: Console, *, top: int = 10) -> None:
    """Print the analysis report to ``console``.

    Args:
        doc: the analysis document (``Analysis.to_dict()``, schema ``perfkit.analysis/2``).
            Missing keys are tolerated: their sections are skipped or say there is no data.
        console: where to print; the layout adapts to ``console.width`` (designed for 100
            columns, still readable at 80).
        top: rows in the top ops, top kernels and copy sources tables. Defaults to 10.
    """
    doc = document_of(doc)
    _render(doc if isinstance(doc, dict) else {}, console, top)


def _render(doc: dict[str, Any], console: Console, top: int) -> None:
    w = basis_words(doc)
    _header(doc, console, w)
    _step_summary(doc, console)
    _ranks(doc, console)
    _phases(doc, console, w)
    _categories(doc, console, w)
    _top_ops(doc, console, top, w)
    _compiled(doc, console, top, w)
    if not w.cpu:  # kernels and device copies do not exist in a CPU-only trace
        _top_kernels(doc, console, top, w)
        _copies(doc, console, top, w)
    _overview(doc, console)
    _runtime(doc, console)
    _modules(doc, console)
    _findings(doc, console)
