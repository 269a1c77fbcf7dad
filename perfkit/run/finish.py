"""Finish a run: analyse its trace, write ``analysis.json`` and ``report.md``, print the report; with
several ranks, rank 0 waits for the others and writes the job view.

:func:`finish_run` takes the :class:`~perfkit.run.recording.Recording` a session hands over; ``perfkit
profile``, :func:`perfkit.profile` and the framework callbacks call it (collection itself never
analyses or renders).

Every file is written atomically (:mod:`perfkit._io`: temporary name, fsync,
rename): a full disk leaves the previous file or none, never half of one, and a
file that cannot be written is named in one warning ("analysis.json could not
be written: ..."). Warnings that a result is partial (a truncated trace, a
lost file, an instrument switched off, no kernel trace) are printed even with
``--quiet``, which only leaves out the report.

Several ranks, one run directory: each rank writes ``rank<R>.analysis.json`` (written last,
atomically: it is the rank's *done* marker) and ``rank<R>.report.md``. Rank 0 then waits for the other
ranks' ``rank<R>.analysis.json`` (at most ``job_wait_s`` seconds, and not for a rank the watchdog shows
stuck) and writes the job's ``analysis.json`` and ``report.md``: the job view
(:func:`perfkit.job.ranks.job_view`), with the ranks that never finished listed as missing.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from typing import Any, Callable, Optional

from . import layout
from .recording import MfuInputs, Recording, World

#: A rank file older than this many seconds before our own start is from an earlier run.
STALE_SLACK_S = 60.0


def finish_run(rec: Recording) -> Optional[str]:
    """Analyze the trace (if any), merge the runtime section, write files; returns the analysis.json
    written (None when none could be). Never raises, but re-raises a SIGTERM or Ctrl-C that ended rank
    0's wait once the job files are written."""
    from ..errors import PerfkitError
    from ..report import render_markdown

    run = _Run(rec)
    doc: dict[str, Any]
    trace = rec.trace_path
    analysis_error = None
    if trace and os.path.exists(trace):
        try:
            from ..job import analyze_paths

            doc = analyze_paths(trace).to_dict()
        except PerfkitError as exc:
            analysis_error = str(exc)
            doc = _empty_doc()
        except Exception as exc:  # the run's own figures must still be written
            analysis_error = f"the trace could not be analysed: {type(exc).__name__}: {exc}"
            doc = _empty_doc()
    else:
        doc = _empty_doc()
        analysis_error = rec.no_trace_reason
    runtime = dict(rec.runtime)
    if rec.mfu is not None:
        try:
            runtime.update(mfu_section(rec.mfu, runtime.get("steps") or {}, doc))
        except Exception as exc:  # MFU must never cost the run its outputs
            runtime["flops_error"] = f"MFU: {type(exc).__name__}: {exc}"
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
    for line in rec.lost:
        if line not in doc["trace"]["warnings"]:
            doc["trace"]["warnings"].append(line)
    if rec.world.multi:
        return _write_rank(run, doc, trace)
    path = layout.analysis_path(rec.run_dir)
    wrote = run.write(path, lambda f: json.dump(doc, f, indent=2, default=_default))
    wrote_md = run.write(layout.report_path(rec.run_dir), lambda f: f.write(render_markdown(doc)))
    if rec.report and not rec.quiet:
        files = [n for n, ok in ((layout.ANALYSIS, wrote), (layout.REPORT, wrote_md)) if ok]
        _print_report(doc, rec, trace if trace and os.path.exists(trace) else None, files)
    else:
        _print_partial(doc, run)
    return path if wrote else None


class _Run:
    """A recording being finished, with the warnings said about lost files (said once each)."""

    def __init__(self, rec: Recording) -> None:
        self.rec = rec
        self.lost = list(rec.lost)

    def write(self, path: str, fill: Callable[[Any], Any]) -> bool:
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
            self.say_lost(f"{os.path.basename(path)} could not be written ({path}): {why}")
            return False

    def say_lost(self, message: str) -> None:
        self.lost.append(message)
        if self.rec.say_lost is not None:
            self.rec.say_lost(message)
        else:
            print(f"perfkit: warning: {message}", file=sys.stderr)


def dtype_from_kernels(doc: Optional[dict[str, Any]]) -> Optional[str]:
    """The matmul dtype seen in the trace's top kernels (bf16/fp16), if any."""
    names = " ".join(str(k.get("name", "")) for k in (doc or {}).get("top_kernels", []) if k.get("category") == "matmul")
    if re.search(r"bf16|bfloat16", names, re.I):
        return "bf16"
    if re.search(r"f16|half|h884|h1688|hmma", names, re.I):
        return "fp16"
    return None


def mfu_section(inputs: MfuInputs, steps: dict[str, Any], doc: Optional[dict[str, Any]]) -> dict[str, Any]:
    """Model FLOPs utilisation against the device's dense peak (``mfu_dtype``, ``peak_tflops``, ``mfu``)."""
    from ..peaks import mfu, peak_tflops

    dtype = inputs.dtype or dtype_from_kernels(doc) or inputs.fallback_dtype
    step_ms = steps.get("gpu_ms_median") or steps.get("wall_ms_median")
    out: dict[str, Any] = {"mfu_dtype": dtype, "peak_tflops": peak_tflops(inputs.device_name, dtype)}
    world = inputs.world_size
    if step_ms:
        value = mfu(inputs.flops_per_step * world, step_ms / 1000.0, inputs.device_name, dtype, n_devices=world)
        if value is not None:
            out["mfu"] = value
    return out


def _step_warnings(runtime: dict[str, Any]) -> list[str]:
    """The run timer's warnings: unsteady step times (over the steps the profiler did not record)."""
    from ..analysis.steps import spread_warning

    found = runtime.get("steps")
    steps: dict[str, Any] = found if isinstance(found, dict) else {}
    line = spread_warning(steps.get("spread"), "Step times of the run (run timer, unprofiled steps)", "run step")
    return [line] if line else []


#: Trace warnings that say a result is partial: never hidden by --quiet.
PARTIAL_WARNING = re.compile(
    r"truncat|ends early|cut short|could not|cannot|not decoded|undecodable|lost|not written|failed|"
    r"skipped|dropped|no kernel trace|no training step|incomplete|partial", re.IGNORECASE)


def _print_partial(doc: dict[str, Any], run: _Run) -> None:
    """With --quiet (or no report): still print the warnings that a result is partial, once each.

    Lost files and switched-off instruments were said when they happened.
    """
    said = set(run.lost)
    for w in (doc.get("trace") or {}).get("warnings") or []:
        text = str(w)
        if text not in said and PARTIAL_WARNING.search(text):
            said.add(text)
            print(f"perfkit: warning: {text}", file=sys.stderr)


def _write_rank(run: _Run, doc: dict[str, Any], trace: Optional[str]) -> Optional[str]:
    """One rank of several: rank<R>.analysis.json (its done marker) and rank<R>.report.md; rank 0 then
    waits for the others and writes the job's analysis.json and report.md."""
    from ..report import render_markdown

    rec = run.rec
    run_dir, world = rec.run_dir, rec.world
    path = layout.rank_analysis_path(run_dir, world.rank)
    run.write(os.path.join(run_dir, layout.rank_report_name(world.rank)), lambda f: f.write(render_markdown(doc)))
    if not run.write(path, lambda f: json.dump(doc, f, indent=2, default=_default)):
        return None
    if world.rank != 0 or not rec.report or rec.quiet:
        _print_partial(doc, run)
    if world.rank != 0 or rec.mode != "trace":  # light mode: no traces to compare
        if not rec.quiet:
            print(f"perfkit: rank {world.rank} wrote {path}", file=sys.stderr)
        return path
    quiet = rec.quiet
    docs, missing, interrupted = wait_for_ranks(
        run_dir, world, wait_s=rec.job_wait_s, started_at=rec.started_at,
        say=lambda line: None if quiet else print(line, file=sys.stderr, flush=True))
    job_path = layout.analysis_path(run_dir)
    try:
        job_doc: Optional[dict[str, Any]] = job_document(docs, missing, run_dir, world)
    except Exception as exc:  # the job view must never cost the ranks their own files
        print(f"perfkit: warning: no job analysis in {run_dir}: {exc}", file=sys.stderr)
        job_doc = None
    if job_doc is not None:
        if not run.write(job_path, lambda f: json.dump(job_doc, f, indent=2, default=_default)):
            job_doc, job_path = None, path
        else:
            run.write(layout.report_path(run_dir), lambda f: f.write(render_markdown(job_doc)))
    else:
        job_path = path
    if job_doc is not None and rec.report and not rec.quiet:
        _print_report(job_doc, rec, None)
        session_traces = sorted(f for f in os.listdir(run_dir) if f.endswith(layout.TRACE_SUFFIX))
        if session_traces:
            print(f"perfkit: re-run the job analysis with:  perfkit analyze {shell_quote(run_dir)}", file=sys.stderr)
    if interrupted is not None:
        raise interrupted
    return job_path


def _print_report(doc: dict[str, Any], rec: Recording, trace: Optional[str],
                  files: tuple[str, ...] | list[str] = (layout.ANALYSIS, layout.REPORT)) -> None:
    from rich.console import Console

    from ..report import render_console

    console = Console(stderr=True)
    try:
        render_console(doc, console)
    except Exception as exc:  # the report must never take the run down
        say(console, f"perfkit: report failed: {exc}")
    written = [*files, *(["trace"] if trace else [])]
    if written:
        say(console, f"perfkit: wrote {rec.run_dir}/ ({', '.join(written)})")
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


# --------------------------------------------------------------------- rank 0: wait, then the job view


def write_json_atomic(path: str, doc: dict[str, Any], default: Callable[[Any], Any]) -> None:
    """Write to a temporary file, fsync and rename: a reader never sees half a document.

    Raises :class:`perfkit._io.OutputError` (an OSError's message, naming the file) when it cannot.
    """
    from .._io import atomic_open

    with atomic_open(path, "w") as f:
        json.dump(doc, f, indent=2, default=default)


def wait_for_ranks(run_dir: str, world: World, *, wait_s: float, started_at: float,
                   say: Callable[[str], None], poll_s: float = 0.5,
                   ) -> tuple[list[dict[str, Any]], dict[int, str], Optional[BaseException]]:
    """Collect every rank's ``rank<R>.analysis.json`` (rank 0's own is already there).

    Waits at most ``wait_s`` seconds, and stops early for ranks the watchdog
    shows stuck. Returns (documents, {missing rank: reason}, the exception that
    interrupted the wait). A SIGTERM or Ctrl-C during the wait ends it early: the
    caller writes the job files, then re-raises it.
    """
    deadline = time.monotonic() + max(wait_s, 0.0)
    have: dict[int, dict[str, Any]] = {}
    stuck: dict[int, str] = {}
    announced = False
    interrupted: Optional[BaseException] = None
    while True:
        for r in range(world.world_size):
            if r in have:
                continue
            doc = _read_rank_doc(layout.rank_analysis_path(run_dir, r), started_at)
            if doc is not None:
                have[r] = doc
        waiting = [r for r in range(world.world_size) if r not in have]
        if not waiting or time.monotonic() >= deadline or interrupted is not None:
            break
        stuck = _stuck_ranks(run_dir, waiting)
        if set(waiting) <= set(stuck):
            break  # the rest are stuck: they will not finish
        if not announced:
            say(f"perfkit: rank 0 waiting up to {wait_s:.0f} s for the analyses of rank(s) "
                f"{_short(waiting)} (--job-wait)")
            announced = True
        try:
            time.sleep(poll_s)
        except BaseException as exc:  # SIGTERM (the launcher turns it into an exception) or Ctrl-C
            interrupted = exc
    missing = {}
    for r in range(world.world_size):
        if r not in have:
            missing[r] = stuck.get(r) or (f"no {layout.rank_analysis_name(r)} after {wait_s:.0f} s (crashed, "
                                          "killed, still running, or on another node)")
    if interrupted is not None:
        missing = {r: why + " (rank 0 was interrupted while waiting)" for r, why in missing.items()}
    return [have[r] for r in sorted(have)], missing, interrupted


def _read_rank_doc(path: str, started_at: float) -> Optional[dict[str, Any]]:
    try:
        if os.path.getmtime(path) < started_at - STALE_SLACK_S:
            return None  # left by an earlier run in the same directory
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _stuck_ranks(run_dir: str, ranks: list[int]) -> dict[int, str]:
    """Ranks among ``ranks`` the watchdog shows stuck, with where."""
    if not any(layout.is_watchdog_name(f) for f in _listdir(run_dir)):
        return {}
    try:
        from ..job.stalls import summarize_stalls

        doc = summarize_stalls(run_dir)
    except Exception:
        return {}
    out = {}
    for r in doc["ranks"]:
        if r["dir"] == "" and r["rank"] in ranks and r["status"] == "stuck":
            out[r["rank"]] = f"stuck in {r['where_text'] or 'an unknown place'} (watchdog)"
    return out


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _short(ranks: list[int]) -> str:
    return ", ".join(str(r) for r in ranks[:16]) + (" ..." if len(ranks) > 16 else "")


def job_document(docs: list[dict[str, Any]], missing: dict[int, str], run_dir: str, world: World) -> dict[str, Any]:
    """The job view of the ranks' documents, with the run directory's stall view."""
    from ..job.ranks import job_view, stall_view

    usable = [d for d in docs if (d.get("steps") or {}).get("count")]
    for d in docs:
        if d not in usable:
            r = (d.get("runtime") or {}).get("rank")
            if isinstance(r, int):
                missing.setdefault(r, (d.get("runtime") or {}).get("analysis_error") or "no kernel trace")
    if not usable:
        raise ValueError("no rank has a trace analysis")
    return job_view(usable, world_size=world.world_size, missing=missing, stalls=stall_view(run_dir))
