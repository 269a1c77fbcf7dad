"""``perfkit diff A B``: before/after for two runs, analyses or traces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from . import app


@app.command("diff")
def diff_cmd(
    a: str = typer.Argument(..., help="Before: a run directory, an analysis.json or a trace."),
    b: str = typer.Argument(..., help="After: the same kinds."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the diff document (JSON) here."),
    markdown_out: Optional[Path] = typer.Option(None, "--markdown", help="Write a Markdown table here."),
    top: int = typer.Option(10, "--top", min=1, help="Top ops compared."),
) -> None:
    """Compare two runs: step time, phases, categories, top ops, memory, findings."""
    from rich.console import Console

    from ..analysis.diff import diff, load_doc
    from ..report.diff import render_diff_console, render_diff_markdown

    d = diff(load_doc(a), load_doc(b), top=top)
    render_diff_console(d, Console())
    if json_out is not None:
        json_out.write_text(json.dumps(d, indent=2), encoding="utf-8")
    if markdown_out is not None:
        markdown_out.write_text(render_diff_markdown(d), encoding="utf-8")
