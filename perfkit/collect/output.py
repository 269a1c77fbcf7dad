"""Write a finished session's run directory: analysis.json, report.md, and the report on screen."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from .session import ProfileSession


def write_run(session: "ProfileSession") -> Optional[str]:
    """Analyze the trace (if any), merge the runtime section, write files. Never raises."""
    from ..errors import PerfkitError
    from ..report import render_markdown

    run_dir = session.run_dir
    doc: dict[str, Any]
    trace = session.trace_path
    analysis_error = None
    if trace and os.path.exists(trace):
        try:
            from ..analysis import analyze_paths

            doc = analyze_paths(trace).to_dict()
        except PerfkitError as exc:
            analysis_error = str(exc)
            doc = _empty_doc()
    else:
        doc = _empty_doc()
        if session.options.mode == "trace":
            s = session.options.schedule
            analysis_error = (
                f"no kernel trace: the run ended after {session.steps} step(s), before the profiled "
                f"window (steps {s.skip_first + s.wait + s.warmup + 1}-{s.last_step}); "
                "lower --skip-first/--warmup or run more steps"
            )
    runtime = session.runtime_section(doc)
    if analysis_error:
        runtime["analysis_error"] = analysis_error
        doc["trace"].setdefault("warnings", []).append(analysis_error)
    doc["runtime"] = runtime
    try:
        from ..analysis import runtime_findings

        runtime_findings.merge(doc)
    except Exception as exc:  # findings must never cost the run its outputs
        runtime["findings_error"] = str(exc)
    path = os.path.join(run_dir, "analysis.json")
    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2, default=_default)
        with open(os.path.join(run_dir, "report.md"), "w", encoding="utf-8") as f:
            f.write(render_markdown(doc))
    except OSError as exc:
        print(f"perfkit: could not write the run directory {run_dir}: {exc}", file=sys.stderr)
        return None
    if session.options.report and not session.options.quiet:
        _print_report(doc, session, trace)
    return path


def _print_report(doc: dict[str, Any], session: "ProfileSession", trace: Optional[str]) -> None:
    from rich.console import Console

    from ..report import render_console

    console = Console(stderr=True)
    try:
        render_console(doc, console)
    except Exception as exc:  # the report must never take the run down
        console.print(f"perfkit: report failed: {exc}")
    console.print(f"perfkit: wrote {session.run_dir}/ (analysis.json, report.md{', trace' if trace else ''})")
    if trace:
        console.print(f"perfkit: re-run the analysis with:  perfkit analyze {trace}")


def _empty_doc() -> dict[str, Any]:
    from ..analysis.result import SCHEMA

    return {"schema": SCHEMA, "trace": {"paths": [], "warnings": []}, "findings": []}


def _default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)
