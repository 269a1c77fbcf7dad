"""``perfkit merge ANALYSIS_JSON...``: the job view from per-rank analysis documents alone."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List, Optional

import typer

from ..documents import ANALYSIS_SCHEMA, ANALYSIS_SCHEMAS_READ, DocumentError, check_schema, read_json, validate_analysis, warn
from ..run.resolve import rank_document_files
from ._app import app


def load_rank_docs(paths: List[str]) -> list[dict[str, Any]]:
    """The documents of :func:`load_rank_files`."""
    return [doc for _, doc in load_rank_files(paths)]


def load_rank_files(paths: List[str]) -> list[tuple[str, dict[str, Any]]]:
    """Per-rank documents from files, or from directories (their ``rank<R>.analysis.json``, else ``analysis.json``).

    Each is checked (:mod:`perfkit.documents`) for the fields the job view reads: a job document, one
    without a trace analysis, or one whose needed fields are missing or of the wrong type is refused
    with one line naming it; fields it does not need are dropped with a warning.
    """
    files = rank_document_files(paths)
    docs = []
    for f in files:
        raw = check_schema(read_json(f, f"{ANALYSIS_SCHEMA} document"), f, ANALYSIS_SCHEMAS_READ)
        if "ranks" in raw:
            raise DocumentError(f"{f}: a job-level analysis already; merge the per-rank rank<R>.analysis.json files")
        steps = raw.get("steps")
        if not isinstance(steps, dict) or not steps.get("count"):
            raise DocumentError(f"{f}: holds no trace analysis (no analysed steps)")
        doc, notes = validate_analysis(raw, f, trace_analysis=True)
        warn(f, notes)
        docs.append((f, doc))
    _common_copy_keys([d for _, d in docs])
    return docs


def _common_copy_keys(docs: list[dict[str, Any]]) -> None:
    """Keep in each ``copies.<direction>`` only the figures every document has (older ones lack some)."""
    for direction in ("h2d", "d2h", "d2d"):
        keys = set.intersection(*(set(d["copies"][direction]) for d in docs)) if docs else set()
        for d in docs:
            d["copies"][direction] = {k: v for k, v in d["copies"][direction].items() if k in keys}


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

    from ..job.ranks import job_view, rank_of, stall_view
    from ..report import render_console, render_markdown, write_json

    from .._io import check_output_path, write_text

    for out in (json_out, markdown_out):  # a bad output path fails before the work, not after it
        if out is not None:
            check_output_path(out)
    loaded = load_rank_files(analyses)
    docs = [d for _, d in loaded]
    ranks = [rank_of(d) for d in docs]
    if any(r is None for r in ranks):
        bad = next(f for (f, _), r in zip(loaded, ranks) if r is None)
        raise DocumentError(f"{bad}: the document does not say its rank "
                            "(no distributedInfo, no rank in the trace file name)")
    dupes = sorted({r for r in ranks if r is not None and ranks.count(r) > 1})
    if dupes:
        twice = [f for (f, _), r in zip(loaded, ranks) if r == dupes[0]]
        raise DocumentError(f"{twice[-1]}: rank {dupes[0]} is given more than once (also {twice[0]})")
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
        write_text(markdown_out, render_markdown(doc, top=top))
        err.print(f"wrote {markdown_out}", markup=False, highlight=False)
