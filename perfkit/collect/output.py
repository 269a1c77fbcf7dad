"""Write a finished session's run directory: analysis.json, report.md, and the report on screen.

Every file is written atomically (:mod:`perfkit._io`: temporary name, fsync,
rename): a full disk leaves the previous file or none, never half of one, and a
file that cannot be written is named in one warning ("analysis.json could not
be written: ..."). Warnings that a result is partial (a truncated trace, a
lost file, an instrument switched off, no kernel trace) are printed even with
``--quiet``, which only leaves out the report.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import TYPE_CHECKING, Any, Callable, Optional

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
        except Exception as exc:  # the run's own figures must still be written
            analysis_error = f"the trace could not be analysed: {type(exc).__name__}: {exc}"
            doc = _empty_doc()
    else:
        doc = _empty_doc()
        trace_error = getattr(session, "trace_error", None)
        if trace_error:
            analysis_error = trace_error
        elif session.options.mode == "trace":
            s = session.options.schedule
            if session.steps == 0:
                analysis_error = "no kernel trace: " + no_steps_message(session)
            else:
                window = f"steps {s.skip_first + s.wait + s.warmup + 1}-{s.last_step}"
                failed = list(getattr(session, "instrument_errors", {}) or {})
                if failed:  # profiling was switched off early: the run itself may well have gone on
                    analysis_error = (
                        f"no kernel trace: profiling was switched off after step {session.steps}, when the "
                        f"{failed[0]} failed, before the profiled window ({window})")
                else:
                    analysis_error = (
                        f"no kernel trace: the run ended after {session.steps} step(s), before the profiled "
                        f"window ({window}); lower --skip-first/--warmup or run more steps"
                    )
        elif session.steps == 0:
            analysis_error = no_steps_message(session)
    runtime = session.runtime_section(doc)
    if analysis_error:
        runtime["analysis_error"] = analysis_error
        doc["trace"].setdefault("warnings", []).append(analysis_error)
    for line in _step_warnings(runtime):
        doc["trace"].setdefault("warnings", []).append(line)
    doc["runtime"] = runtime
    try:
        from ..analysis import runtime_findings

        runtime_findings.merge(doc)
    except Exception as exc:  # findings must never cost the run its outputs
        runtime["findings_error"] = str(exc)
    for line in getattr(session, "lost", []):
        if line not in doc["trace"]["warnings"]:
            doc["trace"]["warnings"].append(line)
    world = getattr(session, "world", None)
    if world is not None and world.multi:
        return _write_rank(session, doc, trace)
    path = os.path.join(run_dir, "analysis.json")
    wrote = _write(session, path, lambda f: json.dump(doc, f, indent=2, default=_default))
    wrote_md = _write(session, os.path.join(run_dir, "report.md"), lambda f: f.write(render_markdown(doc)))
    if session.options.report and not session.options.quiet:
        files = [n for n, ok in (("analysis.json", wrote), ("report.md", wrote_md)) if ok]
        _print_report(doc, session, trace if trace and os.path.exists(trace) else None, files)
    else:
        _print_partial(doc, session)
    return path if wrote else None


def no_steps_message(session: "ProfileSession") -> str:
    """Why no step boundary was seen, and exactly what to do about it."""
    calls = getattr(session, "backward_calls", 0)
    if calls and getattr(session, "_optimizer_exists", False):
        seen = (f"the script ran {calls} autograd backward call(s) and has a torch.optim optimizer, "
                "but the optimizer never stepped")
    elif calls:
        seen = f"the script ran only {calls} autograd backward call(s), too few to tell steps apart"
    else:
        seen = "the script stepped no torch.optim optimizer and ran no autograd backward"
    return (
        f"no training step was seen: {seen}. perfkit ends a step at each optimizer.step(), or, with no "
        "torch.optim optimizer, at each backward. Name the function that runs one step: "
        "perfkit profile --step-fn __main__:train_step SCRIPT (a function of the script; "
        "package.module:function for one elsewhere), or decorate it with @perfkit.step"
    )


def _step_warnings(runtime: dict[str, Any]) -> list[str]:
    """The run timer's warnings: unsteady step times (over the steps the profiler did not record)."""
    from ..analysis.steps import spread_warning

    steps = runtime.get("steps") if isinstance(runtime.get("steps"), dict) else {}
    line = spread_warning(steps.get("spread"), "Step times of the run (run timer, unprofiled steps)", "run step")
    return [line] if line else []


def _write(session: "ProfileSession", path: str, fill: Callable[[Any], Any]) -> bool:
    """Write one file of the run atomically; on failure say exactly which file was lost (one warning)."""
    from .._io import atomic_open

    try:
        with atomic_open(path, "w") as f:
            fill(f)
        return True
    except Exception as exc:
        why = str(exc)
        if why.startswith(path + ": "):  # OutputError names the file already
            why = why[len(path) + 2:]
        _lost(session, f"{os.path.basename(path)} could not be written ({path}): {why}")
        return False


def _lost(session: "ProfileSession", message: str) -> None:
    say = getattr(session, "say_lost", None)
    if say is not None:
        say(message)
    else:
        print(f"perfkit: warning: {message}", file=sys.stderr)


#: Trace warnings that say a result is partial: never hidden by --quiet.
PARTIAL_WARNING = re.compile(
    r"truncat|ends early|cut short|could not|cannot|not decoded|undecodable|lost|not written|failed|"
    r"skipped|dropped|no kernel trace|no training step|incomplete|partial", re.IGNORECASE)


def _print_partial(doc: dict[str, Any], session: "ProfileSession") -> None:
    """With --quiet (or no report): still print the warnings that a result is partial, once each.

    Lost files and switched-off instruments were said when they happened.
    """
    said = set(getattr(session, "lost", []))
    for w in (doc.get("trace") or {}).get("warnings") or []:
        text = str(w)
        if text not in said and PARTIAL_WARNING.search(text):
            said.add(text)
            print(f"perfkit: warning: {text}", file=sys.stderr)


def _write_rank(session: "ProfileSession", doc: dict[str, Any], trace: Optional[str]) -> Optional[str]:
    """One rank of several: rank<R>.analysis.json (its done marker) and rank<R>.report.md; rank 0 then
    waits for the others and writes the job's analysis.json and report.md (perfkit/collect/job.py)."""
    from ..report import render_markdown
    from . import job

    run_dir, world = session.run_dir, session.world
    path = job.rank_doc_path(run_dir, world.rank)
    _write(session, os.path.join(run_dir, f"rank{world.rank}.report.md"), lambda f: f.write(render_markdown(doc)))
    if not _write(session, path, lambda f: json.dump(doc, f, indent=2, default=_default)):
        return None
    if world.rank != 0 or not session.options.report or session.options.quiet:
        _print_partial(doc, session)
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
        job_doc: Optional[dict[str, Any]] = job.job_document(docs, missing, run_dir, world)
    except Exception as exc:  # the job view must never cost the ranks their own files
        print(f"perfkit: warning: no job analysis in {run_dir}: {exc}", file=sys.stderr)
        job_doc = None
    if job_doc is not None:
        if not _write(session, job_path, lambda f: json.dump(job_doc, f, indent=2, default=_default)):
            job_doc, job_path = None, path
        else:
            _write(session, os.path.join(run_dir, "report.md"), lambda f: f.write(render_markdown(job_doc)))
    else:
        job_path = path
    if job_doc is not None and session.options.report and not session.options.quiet:
        _print_report(job_doc, session, None)
        session_traces = sorted(f for f in os.listdir(run_dir) if f.endswith(".pt.trace.json.gz"))
        if session_traces:
            print(f"perfkit: re-run the job analysis with:  perfkit analyze {shell_quote(run_dir)}", file=sys.stderr)
    if interrupted is not None:
        raise interrupted
    return job_path


def _print_report(doc: dict[str, Any], session: "ProfileSession", trace: Optional[str],
                  files: tuple[str, ...] | list[str] = ("analysis.json", "report.md")) -> None:
    from rich.console import Console

    from ..report import render_console

    console = Console(stderr=True)
    try:
        render_console(doc, console)
    except Exception as exc:  # the report must never take the run down
        say(console, f"perfkit: report failed: {exc}")
    written = [*files, *(["trace"] if trace else [])]
    if written:
        say(console, f"perfkit: wrote {session.run_dir}/ ({', '.join(written)})")
    if trace:
        say(console, f"perfkit: re-run the analysis with:  perfkit analyze {shell_quote(trace)}")


def say(console: Any, line: str) -> None:
    """One line as it is: no rich markup (a path or message may hold ``[...]``), no highlighting, and no
    wrapping by rich (a command or path broken mid-word cannot be copied; the terminal wraps it)."""
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def shell_quote(path: str) -> str:
    """``path`` as a shell word (quoted only when it needs to be)."""
    import shlex

    return shlex.quote(path)


def _empty_doc() -> dict[str, Any]:
    from ..analysis.result import SCHEMA

    return {"schema": SCHEMA, "trace": {"paths": [], "warnings": []}, "findings": []}


def _default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)
