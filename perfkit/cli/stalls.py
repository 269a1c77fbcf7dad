"""``perfkit stalls RUN_DIR``: summarise the watchdog's heartbeats and stack dumps across ranks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import typer

from ..units import format_seconds
from ._app import app

_STYLE = {"stuck": "bold red", "recovered": "yellow", "healthy": "green", "silent": "magenta"}


def _when(t: Any) -> str:
    if not isinstance(t, (int, float)):
        return "-"
    return time.strftime("%m-%d %H:%M:%S", time.localtime(t))


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
    from rich.table import Table

    from ..analysis.stalls import summarize_stalls

    from .._io import check_output_path
    from ..report import write_json

    if json_out is not None:
        check_output_path(json_out)
    doc = summarize_stalls(run_dir, stale_s=stale)
    if not quiet:
        out = Console()
        table = Table(title=f"perfkit stalls: {run_dir}", title_justify="left")
        for name, justify in (
            ("rank", "right"),
            ("status", "left"),
            ("dumps", "right"),
            ("first dump", "left"),
            ("last step", "right"),
            ("last beat", "left"),
            ("stalled s", "right"),
            ("where", "left"),
        ):
            table.add_column(name, justify=justify, overflow="fold")
        fault_notes = []
        for r in doc["ranks"]:
            name = f"{r['dir']}/{r['rank']}" if r["dir"] else str(r["rank"])
            where = r["where_text"] or "-"
            if r["where_source"] == "faulthandler":
                where += " [faulthandler]"
            if r["faulthandler_dumps"]:
                fault_notes.append(f"rank {name}: {r['faulthandler_dumps']} faulthandler dump(s) in {r['faulthandler_file']}")
            status = r["status"] + (" (run ended)" if r.get("ended_stalled") else "")
            table.add_row(
                name,
                f"[{_STYLE[r['status']]}]{status}[/]",
                str(r["dumps"]),
                _when(r["first_dump_time"]),
                "-" if r["last_step"] is None else str(r["last_step"]),
                _when(r["last_heartbeat_time"]),
                "-" if r["seconds_stalled"] is None else f"{r['seconds_stalled']:.1f}",
                where,
            )
        out.print(table)
        for note in fault_notes:
            out.print(note, markup=False, highlight=False, soft_wrap=True)
        out.print(doc["verdict"], markup=False, highlight=False, soft_wrap=True)
        ago = doc["seconds_since_newest_activity"]
        if ago is not None and ago > max(doc["stale_s"], 60.0):
            since = format_seconds(ago, exact=False, digits=2)
            out.print(f"(newest heartbeat or dump {since} ago: the run may have ended)", markup=False, highlight=False)
    if json_out is not None:
        write_json(doc, json_out)
        Console(stderr=True).print(f"wrote {json_out}", markup=False, highlight=False)
