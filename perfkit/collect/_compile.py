"""Whether torch.compile is tracing: perfkit's hooks are no-ops there.

Dynamo traces the forward hooks of the modules it compiles. A hook that records a CUDA
event, reads the clock or the allocator cannot be traced and breaks the graph there, so
the user's compiled model would run as several smaller graphs, slower, only because it
is profiled. Every hook perfkit puts on a module returns at once when this is true:
compiled modules are timed as a whole from outside, never from inside.
"""

from __future__ import annotations


def compiling() -> bool:
    """True while torch.compile (Dynamo) traces the calling code.

    torch is imported here, not at module level: ``perfkit.cli`` imports the session module
    and must not import torch (an already imported module is one dictionary lookup)."""
    import torch

    fn = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(fn()) if fn is not None else False
