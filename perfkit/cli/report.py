"""``perfkit report RUN --html FILE [--plots DIR]``: the report of a run, analysis or trace as HTML and figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from . import app


@app.command("report")
def report_cmd(
    run: str = typer.Argument(..., help="A run directory, an analysis.json or a trace (analysed now)."),
    html_out: Optional[Path] = typer.Option(None, "--html", help="Write one self-contained HTML report here."),
    plots_dir: Optional[Path] = typer.Option(None, "--plots", help="Write the figures (PNG) into this directory."),
    top: int = typer.Option(10, "--top", min=1, help="Rows in the top-ops and top-kernels tables."),
) -> None:
    """Render a run's report: HTML (tables, findings, figures inline) and/or figures; else the terminal report."""
    from rich.console import Console

    from ..analysis.diff import load_doc

    doc = load_doc(run)
    if html_out is None and plots_dir is None:
        from ..report import render_console

        render_console(doc, Console(), top=top)
        return
    write_outputs(doc, html_out=html_out, plots_dir=plots_dir, top=top, err=Console(stderr=True))


def write_outputs(doc: dict[str, Any], *, html_out: Optional[Path], plots_dir: Optional[Path], top: int,
                  err: Any) -> None:
    """Write the figures (when ``plots_dir``) and the HTML page (when ``html_out``); one line on ``err`` per file.

    The figures are drawn once and shared. ``--plots`` needs matplotlib (MissingDependencyError
    otherwise); the HTML alone is written without it, its plots section saying how to install it.
    """
    plots = None
    if plots_dir is not None:
        from ..report.plots import write_plots

        plots = write_plots(doc, plots_dir)
        written = [p for p in plots if p.path]
        err.print(f"wrote {len(written)} figure(s) to {plots_dir}")
        for p in plots:
            if p.skipped:
                err.print(f"  not drawn: {p.name}: {p.skipped}", highlight=False, soft_wrap=True)
    if html_out is not None:
        from ..report.html import render_html

        html_out.write_text(render_html(doc, top=top, plots=plots), encoding="utf-8")
        err.print(f"wrote {html_out}")
