"""Stage 3: pure functions from a Trace to an Analysis. No printing, no plotting.

``analyze_trace(trace)`` (:mod:`perfkit.analysis.pipeline`) runs the passes in order: timeline ->
steps -> attribution (step/phase/category/share per device op) -> step statistics -> breakdowns
(phases, categories, copies, overview, top ops and kernels). ``analyze_paths`` reads and analyzes
one trace file, or several (:mod:`perfkit.analysis.ranks`: ranks of one job give the job view).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Optional, Union

from typing import TYPE_CHECKING

from .document import SCHEMA

if TYPE_CHECKING:
    from .pipeline import analyze_trace, merge
    from .result import Analysis, JobAnalysis

__all__ = ["analyze_trace", "analyze_paths", "merge", "Analysis", "JobAnalysis", "SCHEMA"]


def __getattr__(name: str) -> Any:
    # Loaded on first use, so that the document contract (:mod:`.document`) is importable by the
    # stages below analysis without numpy or the pipeline.
    if name in ("analyze_trace", "merge"):
        from . import pipeline

        return getattr(pipeline, name)
    if name in ("Analysis", "JobAnalysis"):
        from . import result

        return getattr(result, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def analyze_paths(path_or_paths: Union[str, os.PathLike, Iterable[Any]], *,
                  progress: Optional[Callable[[str, int, int], None]] = None,
                  workers: Optional[int] = None) -> "Analysis":
    """Load and analyze one trace, or several (merged: step-weighted means).

    ``progress(description, done, total)``, if given, is called before reading and
    before analysing each trace (two units per trace) and once at the end.
    """
    if isinstance(path_or_paths, (str, os.PathLike)):
        paths = [os.fspath(path_or_paths)]
    else:
        paths = [os.fspath(p) for p in path_or_paths]
    from ..errors import TraceFormatError
    from ..trace import read_trace
    from .pipeline import analyze_trace, merge

    if not paths:
        raise TraceFormatError("no trace given")
    report = progress or (lambda description, done, total: None)
    if len(paths) > 1:  # each trace in its own process; ranks of one job -> the job view
        from . import ranks

        return ranks.analyze_many(paths, workers=workers, progress=report)
    results = []
    for i, p in enumerate(paths):
        report(f"reading {os.path.basename(p)}", 2 * i, 2 * len(paths))
        trace = read_trace(p, workers=workers)
        report(f"analyzing {os.path.basename(p)}", 2 * i + 1, 2 * len(paths))
        results.append(analyze_trace(trace))
        del trace
    report("analysed", 2 * len(paths), 2 * len(paths))
    return results[0] if len(results) == 1 else merge(results)
