"""Several traces, one view: the ranks of a job, or traces merged. Torch-free, like analysis/.

* :func:`analyze_paths`: any number of traces; one is analysed here, several each in a worker
  process (:mod:`.pool`), then the ranks of one job give the job view (:func:`.ranks.job_view`:
  per-rank table, straggler, arrival order, cross-rank findings) and other traces a merge
  (:func:`.merge.merge`: step-weighted means);
* :mod:`.stalls`: the watchdog's files of a run directory read back (``perfkit stalls``).

Per-rank documents (``rank<R>.analysis.json``) are merged the same way by ``perfkit merge`` and
by rank 0 at the end of a run (:mod:`perfkit.run.finish`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Union

if TYPE_CHECKING:
    from ..analysis.result import Analysis

__all__ = ["analyze_paths"]


def analyze_paths(path_or_paths: Union[str, "os.PathLike[str]", Iterable[Any]], *,
                  progress: Optional[Callable[[str, int, int], None]] = None,
                  workers: Optional[int] = None) -> "Analysis":
    """Load and analyze one trace, or several (the job view for ranks of one job, else a merge).

    ``progress(description, done, total)``, if given, is called before reading and before analysing
    each trace (two units per trace) and once at the end. ``workers``: decode threads of one trace.
    """
    from ..errors import TraceFormatError

    if isinstance(path_or_paths, (str, os.PathLike)):
        paths = [os.fspath(path_or_paths)]
    else:
        paths = [os.fspath(p) for p in path_or_paths]
    if not paths:
        raise TraceFormatError("no trace given")
    report = progress or (lambda description, done, total: None)
    if len(paths) > 1:  # each trace in its own process; ranks of one job -> the job view
        from .ranks import analyze_many

        return analyze_many(paths, workers=workers, progress=report)
    from ..analysis.pipeline import analyze_trace
    from ..trace import read_trace

    report(f"reading {os.path.basename(paths[0])}", 0, 2)
    trace = read_trace(paths[0], workers=workers)
    report(f"analyzing {os.path.basename(paths[0])}", 1, 2)
    result = analyze_trace(trace)
    del trace
    report("analysed", 2, 2)
    return result
