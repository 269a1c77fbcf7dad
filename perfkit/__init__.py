"""perfkit: a PyTorch training-performance profiler.

Public API (imports nothing heavy at import time)::

    import perfkit
    result = perfkit.analyze("rank0.pt.trace.json.gz")
    result.to_dict()          # the JSON document (schema perfkit.analysis/1)
    result.phases             # pandas DataFrame
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .analysis.result import Analysis
    from .collect.scaling import ScaleResult


def analyze(path_or_paths: Any, **kwargs: Any) -> "Analysis":
    """Analyze one trace file (or a list of them) and return an :class:`Analysis`."""
    from .analysis import analyze_paths

    return analyze_paths(path_or_paths, **kwargs)


def scale(fn: Any, sizes: Any, **kwargs: Any) -> "ScaleResult":
    """Time ``fn`` at growing sizes and fit ``t = c * n^k`` (see docs/scaling.md); returns a ScaleResult."""
    from .collect.scaling import scale as _scale

    return _scale(fn, sizes, **kwargs)


def load_trace(path: str) -> Any:
    """Read a Kineto trace into a :class:`perfkit.trace.Trace`."""
    from .trace import load_trace as _load

    return _load(path)


_COLLECT = {"profile", "step", "phase", "ProfileSession"}


def __getattr__(name: str) -> Any:
    # Collection needs torch: import it only when asked for.
    if name in _COLLECT:
        from . import collect

        return getattr(collect, name)
    if name == "ModuleTimer":
        from .collect.modules import ModuleTimer

        return ModuleTimer
    if name == "Watchdog":
        from .collect.watchdog import Watchdog

        return Watchdog
    raise AttributeError(f"module 'perfkit' has no attribute {name!r}")


__all__ = ["__version__", "analyze", "load_trace", "scale", "profile", "step", "phase", "ModuleTimer", "Watchdog"]
