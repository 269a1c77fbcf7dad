"""Which files are traces: a path list where a directory stands for the traces inside it."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import TraceFormatError

TRACE_SUFFIXES = (".json", ".json.gz")
#: The Python stack samples beside a trace (written by perfkit/collect/stacks.py, read by
#: perfkit/trace/samples.py): ``<trace>.stacks.json.gz``, this schema, and the clock markers.
STACKS_SUFFIX = ".stacks.json.gz"
STACKS_SCHEMA = "perfkit.stacks/1"
STACKS_SYNC_PREFIX = "perfkit.clock_sync#"
#: Files beside a trace that are not traces.
SIDECAR_SUFFIXES = (STACKS_SUFFIX, STACKS_SUFFIX[: -len(".gz")])


def sidecar_path(trace_path: str) -> str:
    """``rank0.pt.trace.json.gz`` -> ``rank0.pt.trace.stacks.json.gz``."""
    base = trace_path
    for suffix in (".json.gz", ".json"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base + STACKS_SUFFIX


def expand_traces(paths: list[str]) -> list[str]:
    """Files as given; a directory stands for the trace files directly inside it."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            try:
                files = sorted(f for f in Path(p).iterdir() if f.is_file() and f.name.endswith(TRACE_SUFFIXES)
                               and not f.name.endswith(SIDECAR_SUFFIXES))
            except OSError as exc:  # an unreadable folder: one line naming it
                raise TraceFormatError(f"{p}: cannot list the directory ({exc.strerror or exc})") from None
            # Prefer files named like traces (*.pt.trace.json.gz); other JSON
            # (analysis.json, truth.json) sits beside them in run folders.
            found = [str(f) for f in files if "trace" in f.name] or [
                str(f) for f in files if f.name != "analysis.json"
            ]
            if not found:
                raise TraceFormatError(f"{p}: directory holds no .json or .json.gz trace")
            out.extend(found)
        else:
            out.append(p)
    return out
