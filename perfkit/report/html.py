"""One self-contained HTML file of the analysis: tables, findings and figures inline.

``render_html(doc)`` takes only the analysis document (schema
``perfkit.analysis/2``), like the terminal and Markdown reports, and reads it
through the same rows (:mod:`perfkit.report.rows`), so the three agree on
names, order, labels and number formats. The page loads nothing: the CSS is inline, the
figures are PNG ``data:`` URIs, there is no script and no external URL, so it
can be opened anywhere or attached to a PR. Every string from the document is
HTML-escaped.

Sections (each a ``<section id=...>``): ``summary``, ``findings``, ``phases``,
``categories``, ``plots``, ``top-ops``, ``top-kernels``, ``copies``,
``overview``, ``runtime`` (runs made by ``perfkit profile``), ``modules`` (with
``--modules``) and ``steps`` (one row per step).

Figures need matplotlib; without it the page is still written and the plots
section says how to install it.
"""

from __future__ import annotations

import base64
import html
from typing import Any, Iterable, Optional, Sequence

from ..analysis.result import Analysis, document_of
from .._version import __version__ as _version
from ..errors import MissingDependencyError
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
    warnings_list,
)
from .values import as_dict, as_list, fmt_ms, num, text

#: Rows of the per-step table shown in full; longer tables show the first and last half of this.
MAX_STEP_ROWS = 200

_CSS = """
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --bg:#ffffff; --band:#f6f8fa; --accent:#4C78A8; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
       font: 14px/1.45 -apple-system, "Segoe UI", "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; }
nav { margin: 10px 0 18px; font-size: 13px; }
nav a { color: var(--accent); margin-right: 12px; text-decoration: none; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 10px 0; }
dl.facts dt { font-weight: 600; color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
table { border-collapse: collapse; margin: 6px 0 8px; font-size: 13px; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: var(--band); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.excluded td { color: var(--muted); font-style: italic; }
code { font: 12px/1.4 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; overflow-wrap: anywhere; }
.bar { display: inline-block; height: 10px; background: var(--accent); border-radius: 2px; vertical-align: middle; }
.note { color: var(--muted); font-size: 12.5px; margin: 4px 0; }
.warning { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 6px; padding: 6px 10px; margin: 6px 0; }
.finding { border: 1px solid var(--line); border-left: 5px solid #8c959f; border-radius: 6px; padding: 8px 14px; margin: 10px 0; }
.finding.critical { border-left-color: #cf222e; }
.finding.warning-sev { border-left-color: #d4a72c; }
.finding.info { border-left-color: #0969da; }
.finding h3 { margin: 2px 0 6px; }
.finding dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0; }
.finding dt { font-weight: 600; color: var(--muted); }
.finding dd { margin: 0; overflow-wrap: anywhere; }
.sev { display: inline-block; font-size: 11px; font-weight: 700; padding: 1px 7px; border-radius: 10px; color: #fff;
       background: #8c959f; margin-right: 6px; vertical-align: middle; }
.sev.critical { background: #cf222e; } .sev.warning { background: #9a6700; } .sev.info { background: #0969da; }
figure { margin: 14px 0 22px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 12.5px; margin-top: 3px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"""


def render_html(doc: "Analysis | dict[str, Any]", *, top: int = 10, plots: Optional[Sequence[Any]] = None,
                with_plots: bool = True) -> str:
    """The analysis report as one self-contained HTML page.

    Args:
        doc: the analysis document (``Analysis.to_dict()``, schema ``perfkit.analysis/2``).
            Missing keys are tolerated: their sections are skipped or say there is no data.
        top: rows in the top ops, top kernels and copy sources tables.
        plots: figures already drawn (:func:`perfkit.report.plots.build_plots` or
            ``write_plots``); None draws them here when ``with_plots``.
        with_plots: False leaves the figures out (the plots section says so).

    Returns:
        The HTML text.
    """
    doc = document_of(doc)
    doc = doc if isinstance(doc, dict) else {}
    w = basis_words(doc)
    parts: list[str] = []
    parts += _header(doc, w)
    parts += _summary(doc, w)
    parts += _findings(doc)
    figures, no_figures = _draw(doc, plots, with_plots)
    rank_figure = next((p for p in figures if p.name == "rank_steps"), None)  # drawn in the Ranks section
    parts += _ranks(doc, rank_figure)
    parts += _phases(doc, w)
    parts += _categories(doc, w)
    parts += _plots([p for p in figures if p is not rank_figure], no_figures)
    parts += _top_ops(doc, top, w)
    parts += _compiled(doc, top, w)
    if not w.cpu:
        parts += _top_kernels(doc, top, w)
        parts += _copies(doc, top, w)
    parts += _overview(doc)
    parts += _runtime(doc)
    parts += _modules(doc)
    parts += _steps(doc, w)
    title = "perfkit report"
    paths = as_list(as_dict(doc.get("trace")).get("paths"))
    if paths:
        title += " - " + str(paths[0]).rsplit("/", 1)[-1]
    nav = "".join(f'<a href="#{sid}">{_e(name)}</a>' for sid, name in _NAV if f'<section id="{sid}"' in "".join(parts))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        f"<h1>perfkit report</h1>\n<nav>{nav}</nav>\n"
        + "\n".join(parts)
        + f"\n<footer>Generated by perfkit {_e(_version)} from a document of schema "
        f"{_e(text(doc.get('schema'), '?'))}. Every figure is defined in docs/analysis.md.</footer>\n"
        "</main>\n</body>\n</html>\n"
    )


_NAV = [
    ("summary", "Summary"), ("findings", "Findings"), ("ranks", "Ranks"), ("phases", "Phases"), ("categories", "Categories"),
    ("plots", "Plots"), ("top-ops", "Top ops"), ("compiled", "Compiled graphs"), ("top-kernels", "Top kernels"), ("copies", "Copies"),
    ("overview", "Overview"), ("runtime", "Run"), ("modules", "Modules"), ("steps", "Steps"),
]


# ---------------------------------------------------------------------------
# Building blocks (every argument text is escaped here)
# ---------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _code(value: Any, full: Any = None) -> str:
    s = text(value, default="")
    if not s:
        return "-"
    title = f' title="{_e(full)}"' if full is not None and str(full) != s else ""
    return f"<code{title}>{_e(s)}</code>"


def _section(sid: str, title: str, body: Iterable[str]) -> list[str]:
    return [f'<section id="{_e(sid)}">', f"<h2>{_e(title)}</h2>", *body, "</section>"]


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], right: Sequence[int] = (),
           row_classes: Optional[Sequence[str]] = None) -> str:
    """A table; ``rows`` hold HTML (already escaped), ``headers`` plain text."""
    num_cls = ' class="num"'
    head = "".join(f"<th{num_cls if i in right else ''}>{_e(h)}</th>" for i, h in enumerate(headers))
    body = []
    for k, row in enumerate(rows):
        cls = f' class="{_e(row_classes[k])}"' if row_classes and row_classes[k] else ""
        cells = "".join(f"<td{num_cls if i in right else ''}>{c}</td>" for i, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _bar(share: Any) -> str:
    v = num(share)
    pct = 0.0 if v is None else max(0.0, min(1.0, v)) * 100
    return f'<span class="bar" style="width:{pct * 1.6:.0f}px"></span>'


def _note(s: str) -> str:
    return f'<p class="note">{_e(s)}</p>'


# ---------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------


def _header(doc: dict[str, Any], w: Words) -> list[str]:
    facts = [f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in header_facts(doc)]
    for step_id, reason in excluded_steps(doc):
        facts.append(f"<dt>Excluded</dt><dd>step {_e(step_id)}: {_e(reason)}</dd>")
    out = [f'<dl class="facts">{"".join(facts)}</dl>']
    for warning in warnings_list(doc):
        out.append(f'<div class="warning"><strong>Warning:</strong> {_e(warning)}</div>')
    for line, head in ((breakdown_line(doc), "Time breakdown"), (leading_ops_line(doc), w.top_time)):
        if line:
            out.append(f"<p><strong>{_e(head)}:</strong> {_e(line)}</p>")
    return out


def _summary(doc: dict[str, Any], w: Words) -> list[str]:
    rows = summary_rows(doc)
    if not rows:
        return []
    body = [_table(["Metric", "Value", "Unit"], [[_e(a), _e(b), _e(c)] for a, b, c in rows], right=(1,))]
    body += [_note(n) for n in step_notes(doc)]
    return _section("summary", "Step summary", body)


def _findings(doc: dict[str, Any]) -> list[str]:
    items = findings(doc)
    if not items:
        return _section("findings", "Findings", ["<p>No findings.</p>"])
    body = []
    for i, f in enumerate(items, 1):
        severity = text(f.get("severity"), "").lower()
        css = {"warning": "warning-sev"}.get(severity, severity)
        badge = f'<span class="sev {_e(severity)}">{_e(severity.upper())}</span>' if severity else ""
        ident = f" <code>{_e(f['id'])}</code>" if f.get("id") else ""
        rows = []
        if f.get("trace"):
            rows.append(f"<dt>Trace</dt><dd>{_code(f['trace'])}</dd>")
        if f.get("where"):
            rows.append(f"<dt>Where</dt><dd>{_e(fmt_where(f['where']))}</dd>")
        evidence = evidence_items(f.get("evidence"))
        if evidence:
            ev = "<br>".join((f"{_e(k)}: " if k is not None else "") + _e(v) for k, v in evidence)
            rows.append(f"<dt>Evidence</dt><dd>{ev}</dd>")
        if f.get("remedy"):
            rows.append(f"<dt>Remedy</dt><dd>{_e(fmt_value(f['remedy']))}</dd>")
        if num(f.get("cost_ms_per_step")) is not None:
            rows.append(f"<dt>At stake</dt><dd>{_e(fmt_ms(f.get('cost_ms_per_step')))} ms per step</dd>")
        title = _e(text(f.get("title"), "(untitled finding)"))
        body.append(f'<div class="finding {_e(css)}"><h3>{i}. {badge}{title}{ident}</h3><dl>{"".join(rows)}</dl></div>')
    return _section("findings", "Findings", body)


def _ranks(doc: dict[str, Any], figure: Any = None) -> list[str]:
    """The job view of a multi-rank run (the same rows as the terminal and Markdown reports), and the
    ranks x steps figure of step times when drawn (``rank_steps``, :func:`perfkit.report.plots.plot_rank_steps`)."""
    if not ranks.has_ranks(doc):
        return []
    rows, hidden = ranks.rank_table(doc)
    body = [f"<p>{_e(line)}</p>" for line in ranks.job_lines(doc)]
    body.append(_table(list(ranks.HEADERS), [[_e(c) for c in row] for row in rows], right=tuple(range(1, len(ranks.HEADERS)))))
    if hidden:
        body.append(_note(ranks.hidden_note(doc, hidden)))
    body.append(_note(ranks.NOTE))
    if figure is not None and figure.figure is not None:
        body.append(_figure_html(figure))
    return _section("ranks", "Ranks", body)


def _phases(doc: dict[str, Any], w: Words) -> list[str]:
    rows = phase_rows(doc)
    if not rows:
        return []
    if not any(ms for _, ms, _ in rows):
        return _section("phases", w.phases_title, [_e(w.no_time)])
    table = _table(["Phase", w.ms_per_step, w.share_of_busy, ""],
                   [[_e(n), _e(fmt_ms(ms)), _e(fmt_pct(s)), _bar(s)] for n, ms, s in rows], right=(1, 2))
    body = [table]
    evidence = phase_evidence_line(doc)
    if evidence:
        body.append(_note(f"Evidence: {evidence}"))
    unknown = phase_unknown_note(doc)
    if unknown:
        body.append(f'<div class="warning">{_e(unknown)}</div>')
    return _section("phases", w.phases_title, body)


def _categories(doc: dict[str, Any], w: Words) -> list[str]:
    if not isinstance(doc.get("categories"), dict):
        return []
    rows = category_rows(doc)
    if not rows:
        return _section("categories", w.categories_title, [_e(w.no_kernel_time)])
    table = _table(["Category", w.ms_per_step, w.share_of_busy, ""],
                   [[_e(n), _e(fmt_ms(ms)), _e(fmt_pct(s)), _bar(s)] for _k, n, ms, s in rows], right=(1, 2))
    return _section("categories", w.categories_title, [table, *(_note(n) for n in category_notes(doc))])


def _draw(doc: dict[str, Any], plots: Optional[Sequence[Any]], with_plots: bool) -> tuple[list[Any], Optional[str]]:
    """(the figures, drawn here when not given; why there are none, as the Plots section's HTML, or None)."""
    if not with_plots:
        return [], _note("Figures left out (--no-plots).")
    if plots is None:
        from .plots import build_plots

        try:
            plots = build_plots(doc)
        except MissingDependencyError as exc:
            return [], f'<div class="warning">No figures: {_e(exc)}</div>'
    return list(plots), None


def _figure_html(p: Any) -> str:
    from .plots import figure_bytes

    data = base64.b64encode(figure_bytes(p.figure, "png")).decode("ascii")
    return (f'<figure id="plot-{_e(p.name)}"><img alt="{_e(p.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(p.title)}</figcaption></figure>")


def _plots(plots: Sequence[Any], no_figures: Optional[str]) -> list[str]:
    if no_figures is not None:
        return _section("plots", "Plots", [no_figures])
    body = []
    skipped = []
    for p in plots:
        if p.figure is None:
            skipped.append(f"<li>{_e(p.title)}: {_e(p.skipped)}</li>")
            continue
        body.append(_figure_html(p))
    if skipped:
        body.append(f'<p class="note">Not drawn:</p><ul class="note">{"".join(skipped)}</ul>')
    return _section("plots", "Plots", body)


def _top_ops(doc: dict[str, Any], top: int, w: Words) -> list[str]:
    if "top_ops" not in doc:
        return []
    ops = top_ops(doc, top)
    if not ops:
        return _section("top-ops", w.top_ops_title, [_e(w.no_ops)])
    rows = [
        [_e(i), _code(short_op_name(o.get("name")), o.get("name")), _e(fmt_ms(o.get("ms_per_step"))),
         _e(fmt_ms(o.get("self_ms_per_step"))), _e(fmt_pct(o.get("share"))), _e(fmt_count(o.get("calls_per_step"))),
         _code(short_source(o.get("source")) if o.get("source") else None, o.get("source"))]
        for i, o in enumerate(ops, 1)
    ]
    table = _table(["#", "Op", w.ms, "Self ms", "% busy", "Calls", "Source"], rows, right=(0, 2, 3, 4, 5))
    note = _note(w.top_ops_note)
    src_note = source_note(doc)
    return _section("top-ops", w.top_ops_title, [table, note] + ([_note(src_note)] if src_note else []))


def _compiled(doc: dict[str, Any], top: int, w: Words) -> list[str]:
    rows = compiled_graph_rows(doc, top)
    if not rows:
        return []
    full = [g.get("name") for g in as_list(doc.get("compiled_graphs")) if isinstance(g, dict)]
    table = _table(["#"] + list(w.compiled_headers),
                   [[_e(i), _code(r[0], full[i - 1] if i - 1 < len(full) else None), _e(r[1]), _e(r[2]), _e(r[3]),
                     _code(r[4]) if r[4] != "unknown" else "unknown"] for i, r in enumerate(rows, 1)], right=(0, 3, 4))
    return _section("compiled", "Compiled graphs (torch.compile, per step)", [table, _note(w.compiled_note)])


def _top_kernels(doc: dict[str, Any], top: int, w: Words) -> list[str]:
    if "top_kernels" not in doc:
        return []
    kernels = top_kernels(doc, top)
    if not kernels:
        return _section("top-kernels", w.top_kernels_title, [_e(w.no_kernels)])
    rows = [
        [_e(i), _code(short_kernel_name(k.get("name")), k.get("name")), _e(text(k.get("category"))),
         _e(fmt_ms(k.get("ms_per_step"))), _e(fmt_pct(k.get("share"))), _e(fmt_count(k.get("calls_per_step"))),
         _e(fmt_us(k.get("avg_us"))), _code(launcher_name(k), k.get("op")),
         _code(short_source(k.get("source")) if k.get("source") else None, k.get("source"))]
        for i, k in enumerate(kernels, 1)
    ]
    table = _table(["#", "Kernel", "Category", w.ms, "% busy", "Calls", "Avg µs", "Launched by", "Source"],
                   rows, right=(0, 3, 4, 5, 6))
    note = top_kernels_note(doc, top)
    return _section("top-kernels", w.top_kernels_title, [table] + ([_note(note)] if note else []))


def _copies(doc: dict[str, Any], top: int, w: Words) -> list[str]:
    if not isinstance(doc.get("copies"), dict):
        return []
    rows = copy_rows(doc)
    if not rows:
        return _section("copies", "Memory copies (per step)", ["No host/device copies in the analysed steps."])
    body = [_table(["Direction", "Copies", "Via copy engine", "MB", w.ms], [[_e(c) for c in r] for r in rows],
                   right=(1, 2, 3, 4)),
            _note("Copy engine: cudaMemcpy transfers; the rest are copy kernels (casts, .contiguous()), "
                  "which record no byte count (MB shown as -).")]
    sources = copy_sources(doc, top)
    if sources:
        body.append("<h3>Top copy sources</h3>")
        body.append(_table(
            ["Op", "Source", "Dir", w.ms, "Copies"],
            [[_code(launcher_name(s), s.get("op")),
              _code(short_source(s.get("source")) if s.get("source") else None, s.get("source")),
              _e(text(s.get("direction")).upper()),
              _e(fmt_ms(s.get("ms_per_step"))), _e(fmt_count(s.get("count_per_step")))] for s in sources],
            right=(3, 4)))
    return _section("copies", "Memory copies (per step)", body)


def _overview(doc: dict[str, Any]) -> list[str]:
    rows = overview_rows(doc)
    if not rows:
        return []
    total = sum(ms or 0.0 for _, ms, _ in rows)
    table_rows = [[_e(n), _e(fmt_ms(ms)), _e(fmt_pct(s)), _bar(s)] for n, ms, s in rows]
    table_rows.append(["<strong>Total</strong>", f"<strong>{_e(fmt_ms(total))}</strong>",
                       f"<strong>{_e(fmt_pct(1.0 if total else 0.0))}</strong>", ""])
    body = [_table(["Role", "ms/step", "% of step", ""], table_rows, right=(1, 2)),
            _note(overview_note(doc))]
    return _section("overview", "Step time breakdown (torch-tb-profiler Overview roles)", body)


def _runtime(doc: dict[str, Any]) -> list[str]:
    rows = runtime_rows(doc)
    if not rows:
        return []
    note = runtime_note(doc)
    return _section("runtime", "Measured in the run (perfkit profile)",
                    [_table(["Measure", "Value", "Unit"], [[_e(a), _e(b), _e(c)] for a, b, c in rows], right=(1,))]
                    + ([_note(note)] if note else []))


def _modules(doc: dict[str, Any]) -> list[str]:
    rows = module_rows(doc)
    note = modules_note(doc)
    if not rows and not note:
        return []
    body = []
    if rows:
        body.append(_table(list(MODULE_HEADERS), [[_code(r[0])] + [_e(c) for c in r[1:]] for r in rows],
                           right=(2, 3, 4, 5, 6)))
    if note:
        body.append(_note(note))
    return _section("modules", "Modules (perfkit profile --modules)", body)


def _steps(doc: dict[str, Any], w: Words) -> list[str]:
    rows = [r for r in as_list(as_dict(doc.get("steps")).get("table")) if isinstance(r, dict)]
    if not rows:
        return []
    shown = rows
    note = []
    if len(rows) > MAX_STEP_ROWS:
        half = MAX_STEP_ROWS // 2
        shown = rows[:half] + rows[-half:]
        note.append(_note(f"{len(rows)} steps: the first and last {half} are shown (all are in the JSON document)."))
    columns = ["wall_ms", "window_ms", "busy_ms", "idle_ms", "forward_ms", "backward_ms", "optimizer_ms", "other_ms"]
    headers = ["Step", "Wall ms", *w.step_columns, "Forward ms", "Backward ms",
               "Optimizer ms", "Other ms"]
    if any(num(r.get("unknown_ms")) for r in rows):  # time no evidence places in a phase
        columns.append("unknown_ms")
        headers.append("Unknown ms")
    headers.append("Kept")
    by_rank = any(r.get("rank") is not None for r in rows)  # a job's steps: one table of every rank's
    body_rows = [
        [*([_e(text(r.get("rank")))] if by_rank else []), _e(text(r.get("id"))), *(_e(fmt_ms(r.get(k))) for k in columns),
         _e("yes" if r.get("kept", True) else f"no: {text(r.get('reason'), 'excluded')}")]
        for r in shown
    ]
    if by_rank:
        headers.insert(0, "Rank")
    off = 1 if by_rank else 0
    classes = ["" if r.get("kept", True) else "excluded" for r in shown]
    return _section("steps", "Steps", [_table(headers, body_rows, right=range(1 + off, len(columns) + 1 + off),
                                              row_classes=classes), *note])


__all__ = ["render_html"]
