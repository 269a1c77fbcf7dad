"""Stage 3: pure functions from a Trace to an Analysis. No printing, no plotting.

``analyze_trace(trace)`` (:mod:`perfkit.analysis.pipeline`) runs the passes in order: timeline ->
steps -> attribution (step/phase/category/share per device op) -> step statistics -> breakdowns
(phases, categories, copies, overview, top ops and kernels) -> findings. Several traces (the ranks
of a job, or traces merged) are :mod:`perfkit.job`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .document import SCHEMA

if TYPE_CHECKING:
    from .pipeline import analyze_file, analyze_trace
    from .result import Analysis, JobAnalysis

__all__ = ["analyze_trace", "analyze_file", "Analysis", "JobAnalysis", "SCHEMA"]


def __getattr__(name: str) -> Any:
    # Loaded on first use, so that the document contract (:mod:`.document`) is importable by the
    # stages below analysis without numpy or the pipeline.
    if name in ("analyze_trace", "analyze_file"):
        from . import pipeline

        return getattr(pipeline, name)
    if name in ("Analysis", "JobAnalysis"):
        from . import result

        return getattr(result, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
