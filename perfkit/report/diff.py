"""Render a ``perfkit.diff/2`` document: terminal (rich) and Markdown."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table


def _fmt(v: Any, unit: str = "ms") -> str:
    if v is None:
        return "-"
    if unit == "%":
        return f"{100 * v:.1f}"
    if unit == "MB":
        return f"{v / 1e6:,.1f}"
    return f"{v:,.2f}"


def _ratio(p: dict[str, Any]) -> str:
    r = p.get("ratio")
    return "-" if r is None else f"{r:.2f}x"


def _rows(d: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(section/label, A, B, delta, ratio) rows shared by both renderers."""
    rows = []
    labels = {"window_ms_median": ("Step time, GPU (median)", "ms"), "wall_ms_median": ("Step time, CPU wall (median)", "ms"),
              "busy_ms_per_step": ("GPU busy per step", "ms"), "idle_ms_per_step": ("GPU idle per step", "ms"),
              "utilization": ("GPU utilization", "%")}
    for key, (label, unit) in labels.items():
        p = d.get("step", {}).get(key)
        if p:
            rows.append((f"{label} ({unit})", _fmt(p["a"], unit), _fmt(p["b"], unit),
                         _fmt(p.get("delta"), unit), _ratio(p)))
    for group in ("phases", "categories"):
        for name, p in d.get(group, {}).items():
            if (p.get("a") or 0) == 0 and (p.get("b") or 0) == 0:
                continue
            rows.append((f"{group[:-1] if group == 'phases' else 'category'} {name} (ms/step)",
                         _fmt(p["a"]), _fmt(p["b"]), _fmt(p.get("delta")), _ratio(p)))
    for name, p in d.get("memory", {}).items():
        rows.append((f"memory {name.replace('_bytes', '')} (MB)", _fmt(p["a"], "MB"), _fmt(p["b"], "MB"),
                     _fmt(p.get("delta"), "MB"), _ratio(p)))
    for r in d.get("top_ops", []):
        rows.append((f"op {r['name']} (ms/step)", _fmt(r["a"]), _fmt(r["b"]), _fmt(r.get("delta")), _ratio(r)))
    return rows


def render_diff_console(d: dict[str, Any], console: Console) -> None:
    a, b = d.get("a", {}), d.get("b", {})
    console.print(f"[bold]A[/bold] {', '.join(a.get('paths') or ['?'])}  [bold]B[/bold] {', '.join(b.get('paths') or ['?'])}",
                  highlight=False, markup=True)
    table = Table(box=box.SIMPLE, header_style="bold")
    for col, just in (("Measure", "left"), ("A", "right"), ("B", "right"), ("B - A", "right"), ("B / A", "right")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for row in _rows(d):
        table.add_row(*row)
    console.print(table)
    f = d.get("findings", {})
    for key, word in (("appeared", "new in B"), ("disappeared", "gone in B")):
        for item in f.get(key, []):
            console.print(f"finding {word}: [{item['severity']}] {item['title']} ({item['id']})", markup=False)


def render_diff_markdown(d: dict[str, Any]) -> str:
    out = ["## perfkit diff", "", f"- **A:** {', '.join(d.get('a', {}).get('paths') or ['?'])}",
           f"- **B:** {', '.join(d.get('b', {}).get('paths') or ['?'])}", "",
           "| Measure | A | B | B - A | B / A |", "| --- | ---: | ---: | ---: | ---: |"]
    for row in _rows(d):
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    f = d.get("findings", {})
    for key, word in (("appeared", "New in B"), ("disappeared", "Gone in B")):
        if f.get(key):
            out += ["", f"**Findings {word.lower()}:**"]
            out += [f"- [{i['severity']}] {i['title']} (`{i['id']}`)" for i in f[key]]
    return "\n".join(out) + "\n"
