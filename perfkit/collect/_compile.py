"""Whether torch.compile is tracing: perfkit's hooks are no-ops there.

Dynamo traces the forward hooks of the modules it compiles. A hook that records a CUDA
event, reads the clock or the allocator cannot be traced and breaks the graph there, so
the user's compiled model would run as several smaller graphs, slower, only because it
is profiled. Every hook perfkit puts on a module returns at once when this is true:
compiled modules are timed as a whole from outside, never from inside.
"""

from __future__ import annotations

import torch


#: Looked up once: the hooks call :func:`compiling` on every module call.
_is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None) or (lambda: False)


def compiling() -> bool:
    """True while torch.compile (Dynamo) traces the calling code."""
    return bool(_is_compiling())
