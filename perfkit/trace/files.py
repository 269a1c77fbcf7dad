"""Which files are traces: a path list where a directory stands for the traces inside it."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import TraceFormatError

TRACE_SUFFIXES = (".json", ".json.gz")
#: Files beside a trace that are not traces (Python stack samples, perfkit/trace/samples.py).
SIDECAR_SUFFIXES = (".stacks.json", ".stacks.json.gz")


def expand_traces(paths: list[str]) -> list[str]:
    """Files as given; a directory stands for the trace files directly inside it."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            files = sorted(f for f in Path(p).iterdir() if f.is_file() and f.name.endswith(TRACE_SUFFIXES)
                           and not f.name.endswith(SIDECAR_SUFFIXES))
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
