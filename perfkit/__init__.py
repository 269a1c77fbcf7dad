"""perfkit: a PyTorch training-performance profiler.

Public API (``import perfkit`` imports neither torch nor the analysis stack: each
name below is imported when first used)::

    import perfkit
    result = perfkit.analyze("rank0.pt.trace.json.gz")   # an Analysis; needs no torch
    result.to_dict()          # the JSON document (schema perfkit.analysis/2)
    result.phases             # pandas DataFrame
    trace = perfkit.load_trace("rank0.pt.trace.json.gz")  # the columnar Trace

    with perfkit.profile(out="runs/exp1"):                # collection: needs torch
        ...

Analysis: :func:`analyze`, :func:`load_trace`, :class:`Analysis` (:class:`JobAnalysis` for the ranks of a
job), :class:`Trace`.
Collection (torch): :func:`profile`, :func:`step`, :func:`phase`, :class:`ModuleTimer`,
:class:`Watchdog`. Scaling probes: :func:`scale`. Every error perfkit raises on bad
input is a :class:`PerfkitError` (one line naming the file and the problem).
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from .errors import PerfkitError

from ._version import __version__

if TYPE_CHECKING:
    from .analysis.result import Analysis as Analysis
    from .analysis.result import JobAnalysis as JobAnalysis
    from .collect.markers import phase as phase
    from .collect.markers import step as step
    from .collect.modules import ModuleTimer as ModuleTimer
    from .collect.scaling import ScaleResult as ScaleResult
    from .collect.scaling import scale as scale
    from ._profile import ProfileSession as ProfileSession
    from ._profile import profile as profile
    from .collect.watchdog import Watchdog as Watchdog
    from .trace.model import Trace as Trace

def analyze(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    workers: Optional[int] = None,
    progress: Optional[Callable[[str, int, int], None]] = None,
    engine: Optional[str] = None,
    address: Optional[str] = None,
) -> Analysis:
    """Analyze one Kineto trace (``.json`` or ``.json.gz``), or several, and return an :class:`Analysis`.

    Args:
        path: a trace file, or a sequence of them (the ranks of one job give the job view).
        workers: decode processes per trace; default: the CPU count for large files,
            in-process for small ones.
        progress: called as ``progress(description, done, total)``: before reading and
            before analysing one trace, and once at the end; with several, as each is analysed.
        engine: where several traces are analysed: ``"local"`` (default: small traces in this
            process, large ones each in a fresh interpreter) or ``"ray"`` (each a Ray task;
            ``pip install 'perfkit[ray]'``). docs/ranks.md, "Analysis at scale".
        address: with ``engine="ray"``, the cluster to join (``ray.init`` address); default:
            the cluster this process is connected to, else one started on this machine.

    Raises:
        TraceFormatError: (a :class:`PerfkitError`) a file is missing, unreadable or not a trace.
    """
    from .job import analyze_paths

    return analyze_paths(path, workers=workers, progress=progress, engine=engine, address=address)


def load_trace(path: str | os.PathLike[str], *, workers: Optional[int] = None) -> Trace:
    """Read a ``.json``/``.json.gz`` Kineto trace into a columnar :class:`Trace` (no analysis).

    ``workers``: decode processes, as for :func:`analyze`. Raises TraceFormatError
    (a :class:`PerfkitError`) for a missing, unreadable or malformed file.
    """
    from .trace.reader import read_trace

    return read_trace(os.fspath(path), workers=workers)


#: Names imported on first use: collection needs torch, analysis needs numpy and pandas.
_LAZY = {
    "profile": "perfkit._profile",
    "ProfileSession": "perfkit._profile",
    "step": "perfkit.collect.markers",
    "phase": "perfkit.collect.markers",
    "ModuleTimer": "perfkit.collect.modules",
    "Watchdog": "perfkit.collect.watchdog",
    "scale": "perfkit.collect.scaling",
    "ScaleResult": "perfkit.collect.scaling",
    "Analysis": "perfkit.analysis.result",
    "JobAnalysis": "perfkit.analysis.result",
    "Trace": "perfkit.trace.model",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'perfkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "__version__",
    "analyze",
    "load_trace",
    "profile",
    "step",
    "phase",
    "ModuleTimer",
    "Watchdog",
    "scale",
    "Analysis",
    "JobAnalysis",
    "Trace",
    "PerfkitError",
]
