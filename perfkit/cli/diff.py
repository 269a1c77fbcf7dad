"""``perfkit diff A B``: before/after for two runs, analyses or traces."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import app


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

    from .._io import check_output_path, write_text
    from ..analysis.diff import diff
    from ..report import write_json
    from ..report.diff import render_diff_console, render_diff_markdown
    from ..run.load import load_document

    for out in (json_out, markdown_out):  # a bad output path fails before the work, not after it
        if out is not None:
            check_output_path(out)
    d = diff(load_document(a), load_document(b), top=top)
    render_diff_console(d, Console())
    if json_out is not None:
        write_json(d, json_out)
    if markdown_out is not None:
        write_text(markdown_out, render_diff_markdown(d))
