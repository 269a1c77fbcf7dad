"""``perfkit stalls RUN_DIR``: summarise the watchdog's heartbeats and stack dumps across ranks."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import app


@app.command("stalls")
def stalls_cmd(
    run_dir: str = typer.Argument(..., help="Run directory of a run with --watchdog (rank sub-folders are read too)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the summary (JSON) here."),
    stale: Optional[float] = typer.Option(
        None, "--stale", min=0.0, help="Seconds behind the newest heartbeat that still count as healthy (default: the watchdog period, else 60)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the table."),
) -> None:
    """Which ranks are stuck, since when, and where (the main thread's innermost frame)."""
    from rich.console import Console

    from .._io import check_output_path
    from ..job.stalls import summarize_stalls
    from ..report import write_json
    from ..report.stalls import render_stalls

    if json_out is not None:
        check_output_path(json_out)
    doc = summarize_stalls(run_dir, stale_s=stale)
    if not quiet:
        render_stalls(doc, Console(), title=f"perfkit stalls: {run_dir}")
    if json_out is not None:
        write_json(doc, json_out)
        Console(stderr=True).print(f"wrote {json_out}", markup=False, highlight=False)
