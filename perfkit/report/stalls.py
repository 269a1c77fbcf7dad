"""The terminal table of ``perfkit stalls``: the watchdog's summary (``summarize_stalls``) drawn with rich.

Takes only the summary document (plain JSON-ready data), so a saved summary renders like a fresh one.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..units import format_seconds

_STYLE = {"stuck": "bold red", "recovered": "yellow", "healthy": "green", "silent": "magenta"}

COLUMNS = (("rank", "right"), ("status", "left"), ("dumps", "right"), ("first dump", "left"),
           ("last step", "right"), ("last beat", "left"), ("stalled s", "right"), ("where", "left"))


def when(t: Any) -> str:
    """A Unix time as local "MM-DD HH:MM:SS"; "-" when unknown."""
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        return "-"
    return time.strftime("%m-%d %H:%M:%S", time.localtime(t))


def render_stalls(doc: dict[str, Any], console: Console, *, title: str) -> None:
    """Per rank: status, dumps, last step and heartbeat, time stalled and where; then the verdict."""
    table = Table(title=title, title_justify="left")
    for name, justify in COLUMNS:
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
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
            Text(name),
            f"[{_STYLE[r['status']]}]{status}[/]",
            str(r["dumps"]),
            when(r["first_dump_time"]),
            "-" if r["last_step"] is None else str(r["last_step"]),
            when(r["last_heartbeat_time"]),
            "-" if r["seconds_stalled"] is None else f"{r['seconds_stalled']:.1f}",
            Text(where),  # a frame, not markup: "[faulthandler]" and brackets in names stay as they are
        )
    console.print(table)
    for note in fault_notes:
        console.print(note, markup=False, highlight=False, soft_wrap=True)
    console.print(doc["verdict"], markup=False, highlight=False, soft_wrap=True)
    ago = doc["seconds_since_newest_activity"]
    if ago is not None and ago > max(doc["stale_s"], 60.0):
        since = format_seconds(ago, exact=False, digits=2)
        console.print(f"(newest heartbeat or dump {since} ago: the run may have ended)", markup=False, highlight=False)


__all__ = ["render_stalls"]
