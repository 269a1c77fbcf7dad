"""One way for perfkit's in-process instruments to fail: record the error, tell whoever asked, go on.

An instrument (module timers, the activation tracker, the watchdog...) that hits an error switches
itself off. :func:`report_failure` records ``Type: message`` on its ``error`` attribute and calls
its ``on_error`` callback (a profiling session sets one, which prints the one warning line and
notes the instrument in ``runtime.instrument_errors``); an error inside that callback is swallowed,
because the user's training must go on. Without a callback, ``fallback`` says it (a warning).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable


def report_failure(instrument: Any, exc: BaseException, fallback: Callable[[], None]) -> None:
    """Record ``exc`` on ``instrument.error`` and report it through ``instrument.on_error``, else ``fallback()``."""
    instrument.error = f"{type(exc).__name__}: {exc}"
    callback = getattr(instrument, "on_error", None)
    if callback is not None:
        with contextlib.suppress(Exception):
            callback(exc)
    else:
        fallback()
