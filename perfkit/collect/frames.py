"""Other threads' Python stacks, read safely: the stack sampler and the stall watchdog use this.

Walking another thread's frames in Python (``f = f.f_back`` from ``sys._current_frames()``) can
hand the GIL over mid-walk; the thread then returns from frames the walk still holds, and on
CPython 3.11 that crashed a Lightning training process (SIGSEGV in the walk, 1 run in 40-90 under
load) or raised ``'int' object has no attribute 'f_code'``. The walk is done in C instead
(:mod:`perfkit.collect._frames`), without giving the GIL up. Where that extension is not built,
:data:`walker` is None: the sampler takes no samples, and the watchdog dumps stacks with
:mod:`faulthandler` (also C, also safe), which gives no thread names or source text.
"""

from __future__ import annotations

import linecache
from types import CodeType
from typing import Any, Optional

try:
    from . import _frames as walker
except ImportError:  # not compiled here
    walker = None  # type: ignore[assignment]

__all__ = ["NO_WALKER", "format_stack", "line_of", "stacks", "walker"]

#: Why there are no stack samples where the walker is not compiled.
NO_WALKER = ("stack samples are off: perfkit's compiled frame walker (perfkit.collect._frames) is not built "
             "here, and walking other threads' frames in Python can crash the training process")


def stacks(idents: Optional[tuple[int, ...]], max_depth: int) -> Optional[tuple[tuple[int, tuple[Any, ...]], ...]]:
    """``(ident, (code, lasti, code, lasti, ...))`` innermost first for these threads (None: all), or None
    where the walker is not compiled."""
    if walker is None:
        return None
    return walker.sample(idents, max_depth)


def line_of(code: CodeType, lasti: int) -> int:
    """The source line of the instruction at byte offset ``lasti`` of ``code`` (-1 if none)."""
    for start, end, line in code.co_lines():
        if start <= lasti < end:
            return line if line is not None else -1
    return -1


def format_stack(walked: tuple[Any, ...]) -> str:
    """A walked stack as :func:`traceback.format_stack` writes a frame's: outermost call first, each
    ``  File "...", line N, in name`` with its source line."""
    out = []
    for j in range(len(walked) - 2, -1, -2):
        code, lasti = walked[j], walked[j + 1]
        line = line_of(code, lasti)  # -1: not in the line table, written "?" (never a made-up number)
        out.append(f'  File "{code.co_filename}", line {line if line > 0 else "?"}, in {code.co_name}\n')
        text = linecache.getline(code.co_filename, line).strip() if line > 0 else ""
        if text:
            out.append(f"    {text}\n")
    return "".join(out)
