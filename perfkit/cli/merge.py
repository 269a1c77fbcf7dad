"""``perfkit merge ANALYSIS_JSON...``: the job view from per-rank analysis documents alone."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List, Optional

import typer

from ..analysis.result import read_document
from ..errors import TraceFormatError
from . import app


def load_rank_docs(paths: List[str]) -> list[dict[str, Any]]:
    """Per-rank documents from files, or from directories (their ``rank<R>.analysis.json``, else ``analysis.json``)."""
    files: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(str(f) for f in Path(p).glob("rank*.analysis.json"))
            if not found and (Path(p) / "analysis.json").is_file():
                found = [str(Path(p) / "analysis.json")]
            if not found:
                raise TraceFormatError(f"{p}: directory holds no rank*.analysis.json or analysis.json")
            files += found
        else:
            files.append(p)
    docs = []
    for f in files:
        doc = read_document(f)
        if "ranks" in doc:
            raise TraceFormatError(f"{f}: a job-level analysis already; merge the per-rank rank<R>.analysis.json files")
        if not (doc.get("steps") or {}).get("count"):
            raise TraceFormatError(f"{f}: holds no trace analysis (no analysed steps)")
        docs.append(doc)
    return docs


@app.command("merge")
def merge_cmd(
    analyses: List[str] = typer.Argument(..., help="Per-rank analysis.json files (perfkit analyze --json, or a run's rank<R>.analysis.json), or directories of them."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the job's analysis document (JSON) here."),
    markdown_out: Optional[Path] = typer.Option(None, "--markdown", help="Write a Markdown report here."),
    world_size: Optional[int] = typer.Option(None, "--world-size", min=1, help="Ranks in the job (default: from the traces)."),
    top: int = typer.Option(10, "--top", min=1, help="Rows in the top-ops and top-kernels tables."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the terminal report."),
) -> None:
    """Merge per-rank analyses into the job view (per-rank table, straggler, exposed communication)."""
    from rich.console import Console

    from ..analysis.ranks import job_view, rank_of, stall_view
    from ..report import render_console, render_markdown, write_json

    docs = load_rank_docs(analyses)
    ranks = [rank_of(d) for d in docs]
    if any(r is None for r in ranks):
        bad = next(p for p, r in zip(docs, ranks) if r is None)
        raise TraceFormatError(f"{(bad.get('trace') or {}).get('paths')}: the document does not say its rank "
                               "(no distributedInfo, no rank in the trace file name)")
    dupes = sorted({r for r in ranks if ranks.count(r) > 1})  # type: ignore[arg-type]
    if dupes:
        raise TraceFormatError(f"rank {dupes[0]} is given more than once")
    dirs = {os.path.abspath(p) for p in analyses if os.path.isdir(p)}
    stalls = stall_view(dirs.pop()) if len(dirs) == 1 and len(dirs) == len(analyses) else None
    doc = job_view(docs, world_size=world_size, stalls=stalls)
    if not quiet:
        render_console(doc, Console(), top=top)
    err = Console(stderr=True)
    if json_out is not None:
        write_json(doc, str(json_out))
        err.print(f"wrote {json_out}", markup=False, highlight=False)
    if markdown_out is not None:
        markdown_out.write_text(render_markdown(doc, top=top), encoding="utf-8")
        err.print(f"wrote {markdown_out}", markup=False, highlight=False)
