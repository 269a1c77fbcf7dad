"""Several traces, one view: the ranks of a job, or traces merged. Torch-free, like analysis/.

* :func:`analyze_paths`: any number of traces; one is analysed here, several on an engine
  (:mod:`.engines`: this machine, by default; :mod:`.ray_engine`: a Ray cluster), then the
  ranks of one job give the job view (:func:`.ranks.job_view`:
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
    from .engines import Engine

#: The names ``perfkit analyze --engine`` takes.
ENGINES = ("local", "ray")

__all__ = ["analyze_paths"]


def analyze_paths(path_or_paths: Union[str, "os.PathLike[str]", Iterable[Any]], *,
                  progress: Optional[Callable[[str, int, int], None]] = None,
                  workers: Optional[int] = None, engine: Union[str, "Engine", None] = None,
                  address: Optional[str] = None) -> "Analysis":
    """Load and analyze one trace, or several (the job view for ranks of one job, else a merge).

    ``progress(description, done, total)``, if given, is called before reading and analysing one
    trace (two units), or as each of several traces is analysed (one unit per trace).
    ``workers``: decode threads of one trace. ``engine``: where several traces are analysed:
    ``"local"`` (default, this machine), ``"ray"`` (a Ray cluster; ``address``: the cluster's, else
    one is started on this machine) or an :class:`~perfkit.job.engines.Engine`. One trace is always
    analysed in this process.
    """
    from ..errors import TraceFormatError

    if isinstance(path_or_paths, (str, os.PathLike)):
        paths = [os.fspath(path_or_paths)]
    else:
        paths = [os.fspath(p) for p in path_or_paths]
    if not paths:
        raise TraceFormatError("no trace given")
    eng = make_engine(engine, address=address, workers=workers)
    report = progress or (lambda description, done, total: None)
    if len(paths) > 1:  # on the engine; ranks of one job -> the job view
        from .ranks import analyze_many

        return analyze_many(paths, workers=workers, progress=report, engine=eng)
    from ..analysis.pipeline import analyze_trace
    from ..trace import read_trace

    report(f"reading {os.path.basename(paths[0])}", 0, 2)
    trace = read_trace(paths[0], workers=workers)
    report(f"analyzing {os.path.basename(paths[0])}", 1, 2)
    result = analyze_trace(trace)
    del trace
    report("analysed", 2, 2)
    return result


def make_engine(engine: Union[str, "Engine", None], *, address: Optional[str] = None,
                workers: Optional[int] = None) -> Optional["Engine"]:
    """The engine named (``local``, ``ray``), or the one given; None for the default (local)."""
    from ..errors import UsageError

    if engine is None or engine == "local":
        if address is not None:
            raise UsageError("--address is the Ray cluster's: give it with --engine ray")
        return None
    if engine == "ray":
        from .ray_engine import RayEngine

        return RayEngine(address=address, workers=workers)
    if isinstance(engine, str):
        raise UsageError(f"--engine {engine}: not an engine (choose one of {', '.join(ENGINES)})")
    return engine
