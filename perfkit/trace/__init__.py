"""Stage 2: the on-disk trace format and its in-memory model. Never imports torch."""

from .model import Kind, Trace
from .reader import read_trace

__all__ = ["Kind", "Trace", "read_trace", "load_trace"]


def load_trace(path: str) -> Trace:
    """Read a ``.json``/``.json.gz`` Kineto trace; see :func:`read_trace`."""
    return read_trace(path)
