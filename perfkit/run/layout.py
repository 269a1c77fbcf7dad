"""Every file name of a run directory, in one place (the run directory is what ``perfkit profile``,
``perfkit.profile()`` and the framework callbacks write; docs/architecture.md has the table).

Names only: no file is read or written here, and nothing of perfkit is imported.
"""

from __future__ import annotations

import os
import re

#: The job's (or a single process's) analysis document, and its Markdown report.
ANALYSIS = "analysis.json"
REPORT = "report.md"

#: What a trace file's name ends with (Kineto/Chrome trace JSON, plain or gzip).
TRACE_SUFFIXES = (".json", ".json.gz")
#: A trace perfkit writes: ``rank<R>.pt.trace.json.gz``.
TRACE_SUFFIX = ".pt.trace.json.gz"
#: The Python stack samples beside a trace: ``<trace>.stacks.json.gz`` (collect/stacks.py writes it,
#: trace/samples.py reads it).
STACKS_SUFFIX = ".stacks.json.gz"
#: Files beside a trace that are not traces.
SIDECAR_SUFFIXES = (STACKS_SUFFIX, STACKS_SUFFIX[: -len(".gz")])

#: One rank of several: its document (written last: the rank's *done* marker) and its report.
RANK_ANALYSIS_SUFFIX = ".analysis.json"
RANK_ANALYSIS_GLOB = "rank*.analysis.json"
#: The watchdog's files (collect/watchdog.py writes them, job/stalls.py reads them).
HEARTBEAT_PREFIX = "heartbeat_rank"
STALL_PREFIX = "stall_rank"
HEARTBEAT_RE = re.compile(r"^heartbeat_rank(\d+)\.jsonl$")
STALL_RE = re.compile(r"^stall_rank(\d+)_(\d{8}-\d{6})(?:-(\d+))?\.txt$")
FAULT_RE = re.compile(r"^stall_rank(\d+)_faulthandler\.txt$")


def trace_name(rank: int) -> str:
    """``rank<R>.pt.trace.json.gz``."""
    return f"rank{rank}{TRACE_SUFFIX}"


def stacks_path(trace_path: str) -> str:
    """``rank0.pt.trace.json.gz`` -> ``rank0.pt.trace.stacks.json.gz`` (beside the trace)."""
    base = trace_path
    for suffix in (".json.gz", ".json"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base + STACKS_SUFFIX


def rank_analysis_name(rank: int) -> str:
    """``rank<R>.analysis.json``."""
    return f"rank{rank}{RANK_ANALYSIS_SUFFIX}"


def rank_report_name(rank: int) -> str:
    """``rank<R>.report.md``."""
    return f"rank{rank}.report.md"


def heartbeat_name(rank: int) -> str:
    """``heartbeat_rank<R>.jsonl``."""
    return f"{HEARTBEAT_PREFIX}{rank}.jsonl"


def stall_base(rank: int, stamp: str) -> str:
    """``stall_rank<R>_<YYYYmmdd-HHMMSS>`` (``.txt``, or ``-2.txt`` ... when taken)."""
    return f"{STALL_PREFIX}{rank}_{stamp}"


def faulthandler_name(rank: int) -> str:
    """``stall_rank<R>_faulthandler.txt``."""
    return f"{STALL_PREFIX}{rank}_faulthandler.txt"


def is_trace_name(name: str) -> bool:
    """A file name that may be a trace: ``.json``/``.json.gz``, not a stack-samples sidecar."""
    return name.endswith(TRACE_SUFFIXES) and not name.endswith(SIDECAR_SUFFIXES)


def is_watchdog_name(name: str) -> bool:
    return name.startswith((STALL_PREFIX, HEARTBEAT_PREFIX))


def analysis_path(run_dir: str) -> str:
    return os.path.join(run_dir, ANALYSIS)


def report_path(run_dir: str) -> str:
    return os.path.join(run_dir, REPORT)


def rank_analysis_path(run_dir: str, rank: int) -> str:
    return os.path.join(run_dir, rank_analysis_name(rank))
