"""``perfkit analyze TRACE...``: the report for one or more Kineto traces (typer's registration of
:mod:`perfkit.cli.analyze_run`, which holds the parameters and the work)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from ._app import app
from .analyze_run import PARAMS, run


def _param(key: str) -> Any:
    """The typer argument or option of ``PARAMS[key]``."""
    p = PARAMS[key]
    if p.kind == "traces":
        return typer.Argument(p.default, help=p.help)
    return typer.Option(p.default, *p.flags, help=p.help, min=p.min)


@app.command("analyze")
def analyze_cmd(
    traces: List[str] = _param("traces"),
    json_out: Optional[Path] = _param("json_out"),
    markdown_out: Optional[Path] = _param("markdown_out"),
    top: int = _param("top"),
    workers: Optional[int] = _param("workers"),
    quiet: bool = _param("quiet"),
    plots_dir: Optional[Path] = _param("plots_dir"),
    html_out: Optional[Path] = _param("html_out"),
    engine: str = _param("engine"),
    address: Optional[str] = _param("address"),
) -> None:
    """Analyze traces: where each step's GPU time goes, and what to change."""
    run(traces, json_out=json_out, markdown_out=markdown_out, top=top, workers=workers, quiet=quiet,
        plots_dir=plots_dir, html_out=html_out, engine=engine, address=address)
