"""``perfkit analyze TRACE...``: the report for one or more Kineto traces."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from ..run.resolve import trace_files
from ._app import app

@app.command("analyze")
def analyze_cmd(
    traces: List[str] = typer.Argument(..., help="Kineto trace files (.json / .json.gz) or directories of them."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the analysis document (JSON) here."),
    markdown_out: Optional[Path] = typer.Option(None, "--markdown", help="Write a Markdown report here."),
    top: int = typer.Option(10, "--top", min=1, help="Rows in the top-ops and top-kernels tables."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="Decode processes (default: CPU count for large files)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the terminal report."),
    plots_dir: Optional[Path] = typer.Option(None, "--plots", help="Write the figures (PNG) into this directory."),
    html_out: Optional[Path] = typer.Option(None, "--html", help="Write one self-contained HTML report here."),
    engine: str = typer.Option("local", "--engine", help="Where the ranks of several traces are analysed: local (this machine) or ray (a Ray cluster; pip install 'perfkit[ray]')."),
    address: Optional[str] = typer.Option(None, "--address", help="With --engine ray: the cluster to join (ray.init address, e.g. auto or ray://HOST:10001); default: start one on this machine."),
) -> None:
    """Analyze traces: where each step's GPU time goes, and what to change."""
    from ..job import analyze_paths
    from ..report import write_json
    from ..report.progress import progress_bar

    from .._io import check_output_path, write_text

    from ..job import make_engine

    eng = make_engine(engine, address=address, workers=workers)  # a bad --engine or a missing Ray fails first
    for out in (json_out, markdown_out, html_out):  # a bad output path fails before the analysis
        if out is not None:
            check_output_path(out)
    if plots_dir is not None:  # fail before a long analysis, not after it
        from ..report.plots import require_matplotlib
        from .report import check_output_dir

        check_output_dir(plots_dir)
        require_matplotlib()
    with progress_bar(enabled=sys.stderr.isatty()) as progress:
        result = analyze_paths(trace_files(traces), workers=workers, progress=progress, engine=eng)
    doc = result.to_dict()
    if not quiet:
        from rich.console import Console

        from ..report import render_console

        render_console(doc, Console(), top=top)
    # "wrote FILE" is one plain line (no rich import on the --json -q path, ~15 ms; a long path is not
    # wrapped at 80 columns nor an emoji code in it replaced, as rich's print did)
    if json_out is not None:
        write_json(doc, str(json_out))
        print(f"wrote {json_out}", file=sys.stderr, flush=True)
    if markdown_out is not None:
        from ..report import render_markdown

        write_text(markdown_out, render_markdown(doc, top=top))
        print(f"wrote {markdown_out}", file=sys.stderr, flush=True)
    if plots_dir is not None or html_out is not None:
        from rich.console import Console

        from .report import write_outputs

        write_outputs(doc, html_out=html_out, plots_dir=plots_dir, top=top, err=Console(stderr=True))
