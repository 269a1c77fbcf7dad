"""Which files are traces: a path list where a directory stands for the traces inside it."""

from __future__ import annotations

from ..run.layout import SIDECAR_SUFFIXES, STACKS_SUFFIX, TRACE_SUFFIXES  # noqa: F401
from ..run.layout import stacks_path as sidecar_path  # noqa: F401  (``<trace>.stacks.json.gz``)
from ..run.resolve import trace_files

#: The Python stack samples beside a trace (written by perfkit/collect/stacks.py, read by
#: perfkit/trace/samples.py): their name (perfkit/run/layout.py), this schema, and the clock markers.
STACKS_SCHEMA = "perfkit.stacks/1"
STACKS_SYNC_PREFIX = "perfkit.clock_sync#"


def expand_traces(paths: list[str]) -> list[str]:
    """Files as given; a directory stands for the trace files directly inside it
    (:func:`perfkit.run.resolve.trace_files`, the one resolver of paths)."""
    return trace_files(paths)
