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
    world = getattr(session, "world", None)
    if world is not None and world.multi:
        return _write_rank(session, doc, trace)
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


def _write_rank(session: "ProfileSession", doc: dict[str, Any], trace: Optional[str]) -> Optional[str]:
    """One rank of several: rank<R>.analysis.json (its done marker) and rank<R>.report.md; rank 0 then
    waits for the others and writes the job's analysis.json and report.md (perfkit/collect/job.py)."""
    from ..report import render_markdown
    from . import job

    run_dir, world = session.run_dir, session.world
    path = job.rank_doc_path(run_dir, world.rank)
    try:
        with open(os.path.join(run_dir, f"rank{world.rank}.report.md"), "w", encoding="utf-8") as f:
            f.write(render_markdown(doc))
        job.write_json_atomic(path, doc, _default)
    except OSError as exc:
        print(f"perfkit: could not write the run directory {run_dir}: {exc}", file=sys.stderr)
        return None
    if world.rank != 0 or session.options.mode != "trace":  # light mode: no traces to compare
        if not session.options.quiet:
            print(f"perfkit: rank {world.rank} wrote {path}", file=sys.stderr)
        return path
    quiet = session.options.quiet
    docs, missing, interrupted = job.wait_for_ranks(
        run_dir, world, wait_s=session.options.job_wait_s, started_at=session._started_at,
        say=lambda line: None if quiet else print(line, file=sys.stderr, flush=True))
    job_path = os.path.join(run_dir, "analysis.json")
    try:
        job_doc = job.job_document(docs, missing, run_dir, world)
        job.write_json_atomic(job_path, job_doc, _default)
        with open(os.path.join(run_dir, "report.md"), "w", encoding="utf-8") as f:
            f.write(render_markdown(job_doc))
    except Exception as exc:  # the job view must never cost the ranks their own files
        print(f"perfkit: could not write the job analysis in {run_dir}: {exc}", file=sys.stderr)
        job_doc, job_path = None, path
    if job_doc is not None and session.options.report and not session.options.quiet:
        _print_report(job_doc, session, None)
        session_traces = sorted(f for f in os.listdir(run_dir) if f.endswith(".pt.trace.json.gz"))
        if session_traces:
            print(f"perfkit: re-run the job analysis with:  perfkit analyze {run_dir}", file=sys.stderr)
    if interrupted is not None:
        raise interrupted
    return job_path


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
