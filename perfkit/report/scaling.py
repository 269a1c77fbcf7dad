"""The terminal report of ``perfkit scale``: the probe's document (schema ``perfkit.scale/1``) drawn with rich.

Takes only the document of ``ScaleResult.to_dict()``, so a saved JSON renders like a fresh result;
the plot of the same document is :mod:`perfkit.report.scaling_plot`.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..units import format_seconds


def summary_line(doc: dict[str, Any]) -> str:
    """One line: ``time grows as n^2.98 (O(n^3)), r2 0.999; at n=1024: ~53 s`` (as ``ScaleResult.summary()``)."""
    if doc.get("exponent") is None or doc.get("r2") is None:
        return (f"no fit: {len(doc.get('fit_sizes') or [])} size(s) above {float(doc.get('min_fit_s', 1e-3)) * 1e3:g} ms, "
                "2 needed; use larger sizes")
    line = f"time grows as n^{doc['exponent']:.2f} ({doc.get('label')}), r2 {doc['r2']:.3f}"
    projections = doc.get("projections") or []
    at = [p for p in projections if p["size"] == doc.get("target")] or projections[-1:]
    if at:
        line += f"; at n={at[0]['size']}: ~{format_seconds(at[0]['predicted_s'])}"
    return line


def render_scale(doc: dict[str, Any], console: Console) -> None:
    """The table of times per size, the fit line, the projections and the warnings."""
    table = Table(title=f"scaling of {escape(doc['function'])}", title_justify="left")
    for name, justify in (("size", "right"), ("median s", "right"), ("min s", "right"), ("max s", "right"),
                          ("runs", "right"), ("fit", "center")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for t in doc["timings"]:
        table.add_row(
            str(t["size"]),
            f"{t['median_s']:.4g}",
            f"{t['min_s']:.4g}",
            f"{t['max_s']:.4g}",
            str(t["runs"]),
            "yes" if t["in_fit"] else "-",
        )
    for n in doc["skipped_sizes"]:
        table.add_row(str(n), "skipped", "", "", "", "-", style="dim")
    console.print(table)
    if doc["skip_reason"]:
        console.print(
            f"skipped {', '.join(map(str, doc['skipped_sizes']))}: {doc['skip_reason']}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    console.print(summary_line(doc), markup=False, highlight=False, soft_wrap=True)
    for p in doc["projections"]:
        how = f"{p['x_largest']:g}x the largest size" if p["size"] != doc["target"] else "target"
        line = f"  n={p['size']} ({how}): ~{format_seconds(p['predicted_s'])}"
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    for w in doc["warnings"]:
        console.print(f"[yellow]note:[/] {escape(w)}", highlight=False, soft_wrap=True)


__all__ = ["render_scale", "summary_line"]
