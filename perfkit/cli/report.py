"""``perfkit report RUN --html FILE [--plots DIR]``: the report of a run, analysis or trace as HTML and figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from ._app import app


@app.command("report")
def report_cmd(
    run: str = typer.Argument(..., help="A run directory, an analysis.json or a trace (analysed now)."),
    html_out: Optional[Path] = typer.Option(None, "--html", help="Write one self-contained HTML report here."),
    plots_dir: Optional[Path] = typer.Option(None, "--plots", help="Write the figures (PNG) into this directory."),
    top: int = typer.Option(10, "--top", min=1, help="Rows in the top-ops and top-kernels tables."),
) -> None:
    """Render a run's report: HTML (tables, findings, figures inline) and/or figures; else the terminal report."""
    from rich.console import Console

    from .._io import check_output_path
    from ..run.load import load_document

    if html_out is not None:  # a bad output path fails before the work, not after it
        check_output_path(html_out)
    if plots_dir is not None:
        check_output_dir(plots_dir)
    doc = load_document(run)
    if html_out is None and plots_dir is None:
        from ..report import render_console

        render_console(doc, Console(), top=top)
        return
    write_outputs(doc, html_out=html_out, plots_dir=plots_dir, top=top, err=Console(stderr=True))


def check_output_dir(path: Any) -> None:
    """OutputError (one line) unless ``path`` is a folder, or one perfkit can create, with room to write in."""
    import os

    from .._io import OutputError

    p = os.fspath(path)
    if os.path.exists(p) and not os.path.isdir(p):
        raise OutputError(f"{p}: exists and is not a directory, expected a folder for the figures")
    probe = os.path.abspath(p)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise OutputError(f"{p}: cannot create the folder, {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{p}: cannot write, no permission to create files in {probe}")


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
        # soft_wrap: a long path stays on one line (copyable), not cut at the console's 80 columns
        err.print(f"wrote {len(written)} figure(s) to {plots_dir}", markup=False, highlight=False, soft_wrap=True)
        for p in plots:
            if p.skipped:
                err.print(f"  not drawn: {p.name}: {p.skipped}", markup=False, highlight=False, soft_wrap=True)
    if html_out is not None:
        from ..report.html import render_html

        from .._io import write_text

        write_text(html_out, render_html(doc, top=top, plots=plots))
        err.print(f"wrote {html_out}", markup=False, highlight=False, soft_wrap=True)
