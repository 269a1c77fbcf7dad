"""The profiling session in progress, for the collection modules that the session itself imports.

:mod:`perfkit.collect.modules` registers a module timer with the running session; importing
:mod:`perfkit.collect.session` for that would be an import cycle (the session imports the module
timers). The session module registers its lookup here when it is imported; before that, no session
can be running.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

_lookup: Optional[Callable[[], Any]] = None


def register(lookup: Callable[[], Any]) -> None:
    """Called once by :mod:`perfkit.collect.session` with its ``current``."""
    global _lookup
    _lookup = lookup


def current_session() -> Any:
    """The :class:`perfkit.collect.session.Session` in progress in this process, or None."""
    return _lookup() if _lookup is not None else None
