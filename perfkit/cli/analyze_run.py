"""``perfkit analyze``: its parameters as data and the command's work, without typer.

:mod:`perfkit.cli.analyze` registers the command with typer from :data:`PARAMS`. :func:`plain_args`
reads a plain command line (known options, valid values) into the same keyword arguments without
importing typer, ~22 ms of the command on the 54 MB anchor trace (0.351 against 0.373 s, medians of 9)
(docs/performance.md). Anything else (``--help``, an unknown or repeated option, a missing or bad
value, ``--``) is left to typer, so its help and its error messages are unchanged;
tests/unit/test_cli_analyze_plain.py checks both readings agree.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from ..job.engines import LocalEngine


@dataclass(frozen=True)
class Param:
    """One parameter of ``perfkit analyze``."""

    flags: tuple[str, ...]  #: the option's names; empty for the positional traces
    kind: str  #: "traces" (the positional list), "path", "int", "str" or "flag"
    default: Any
    help: str
    min: Optional[int] = None  #: the smallest value an "int" takes


#: The parameters, in the order of :func:`run`'s arguments and of ``perfkit analyze --help``.
PARAMS: dict[str, Param] = {
    "traces": Param((), "traces", ..., "Kineto trace files (.json / .json.gz) or directories of them."),
    "json_out": Param(("--json",), "path", None, "Write the analysis document (JSON) here."),
    "markdown_out": Param(("--markdown",), "path", None, "Write a Markdown report here."),
    "top": Param(("--top",), "int", 10, "Rows in the top-ops and top-kernels tables.", min=1),
    "workers": Param(("--workers",), "int", None, "Decode processes (default: CPU count for large files).", min=0),
    "quiet": Param(("--quiet", "-q"), "flag", False, "Do not print the terminal report."),
    "plots_dir": Param(("--plots",), "path", None, "Write the figures (PNG) into this directory."),
    "html_out": Param(("--html",), "path", None, "Write one self-contained HTML report here."),
    "engine": Param(("--engine",), "str", "local", "Where the ranks of several traces are analysed: local "
                    "(this machine) or ray (a Ray cluster; pip install 'perfkit[ray]')."),
    "address": Param(("--address",), "str", None, "With --engine ray: the cluster to join (ray.init address, "
                     "e.g. auto or ray://HOST:10001); default: start one on this machine."),
}

_INT = re.compile(r"0|[1-9][0-9]{0,17}")


def plain_args(args: list[str]) -> Optional[dict[str, Any]]:
    """``run``'s keyword arguments for ``args`` (``["analyze", ...]``) as typer would pass them, or
    None where only typer can tell (help, usage errors, values it checks further)."""
    if not args or args[0] != "analyze":
        return None
    by_flag = {flag: key for key, p in PARAMS.items() for flag in p.flags}
    out: dict[str, Any] = {key: p.default for key, p in PARAMS.items() if p.kind != "traces"}
    traces: list[str] = []
    seen: set[str] = set()
    i = 1
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-"):
            traces.append(arg)
            continue
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        key = by_flag.get(name)
        if key is None or key in seen:  # --help, --, an unknown or repeated option: typer's words
            return None
        seen.add(key)
        p = PARAMS[key]
        if p.kind == "flag":
            if eq:
                return None
            out[key] = True
            continue
        if not eq:
            if i >= len(args):
                return None
            value = args[i]
            i += 1
        if not value or value.startswith("-") or "\0" in value:
            return None
        if p.kind == "int":
            if not _INT.fullmatch(value) or (p.min is not None and int(value) < p.min):
                return None
            out[key] = int(value)
        elif p.kind == "path":
            out[key] = Path(value)
        else:
            out[key] = value
    if not traces:
        return None
    return {"traces": traces, **out}


def run(traces: list[str], json_out: Optional[Path] = None, markdown_out: Optional[Path] = None, top: int = 10,
        workers: Optional[int] = None, quiet: bool = False, plots_dir: Optional[Path] = None,
        html_out: Optional[Path] = None, engine: str = "local", address: Optional[str] = None) -> None:
    """Analyze traces: where each step's GPU time goes, and what to change."""
    from .._io import check_output_path, write_text
    from ..job import analyze_paths, make_engine
    from ..report import write_json
    from ..report.progress import progress_bar
    from ..run.resolve import trace_files

    eng = make_engine(engine, address=address, workers=workers)  # a bad --engine or a missing Ray fails first
    for out in (json_out, markdown_out, html_out):  # a bad output path fails before the analysis
        if out is not None:
            check_output_path(out)
    if plots_dir is not None:  # fail before a long analysis, not after it
        from ..report.plots import require_matplotlib
        from .report import check_output_dir

        check_output_dir(plots_dir)
        require_matplotlib()
    paths = trace_files(traces)
    local = _local_engine(paths, workers) if eng is None and len(paths) > 1 else None
    try:
        with progress_bar(enabled=sys.stderr.isatty()) as progress:
            result = analyze_paths(paths, workers=workers, progress=progress, engine=local or eng)
    finally:
        if local is not None:
            local.close()
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


def _local_engine(paths: list[str], workers: Optional[int]) -> "LocalEngine":
    """The local engine for several traces, its helpers forked now (before the progress bar's thread)
    when the command's process is its own (``perfkit`` run as a command, not :func:`perfkit.cli.main`
    called inside another program): see :mod:`perfkit.job.forked`."""
    from ..job.engines import LocalEngine
    from ..job.forked import fork_server
    from ._process import owns_process

    eng = LocalEngine(workers=workers, forker=fork_server if owns_process() else None)
    eng.prepare(paths)
    return eng
