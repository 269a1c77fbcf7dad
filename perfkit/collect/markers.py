"""Markers a training script can use: ``@perfkit.step`` and ``perfkit.phase``.

Both are cheap no-ops when no session is running, so they can stay in code.
Neither ever raises into the script: an error of perfkit's own (a timer, the
profiler's range) switches the markers off with one warning, and the marked
code runs, returns and raises exactly as it would unmarked.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator, Optional, TypeVar, overload

from . import session as _session

F = TypeVar("F", bound=Callable[..., Any])


@overload
def step(fn: F) -> F: ...
@overload
def step(fn: None = None, *, tokens: Optional[float] = None, samples: Optional[float] = None) -> Callable[[F], F]: ...


def step(fn: Optional[F] = None, *, tokens: Optional[float] = None, samples: Optional[float] = None) -> Any:
    """Mark one training step per call of the decorated function.

    ``@perfkit.step`` or ``@perfkit.step(tokens=4096, samples=8)``; tokens and
    samples per step give throughput. Once a script marks steps, optimizer steps
    no longer count as step boundaries.
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            s = _session.current()
            if s is None:
                return func(*args, **kwargs)
            s.explicit_steps = True  # optimizer.step inside no longer marks steps
            try:
                return func(*args, **kwargs)
            finally:
                _guard(s, "step markers", lambda: s.mark_step(tokens=tokens, samples=samples))

        return wrapper  # type: ignore[return-value]

    return decorate(fn) if fn is not None else decorate


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Time a named phase (``data``, ``forward``, ``backward``, ``optimizer`` or any name).

    Shows in the trace as ``perfkit.phase:<name>`` (the analyzer uses the
    standard names to refine its forward/backward split) and in the run's
    ``runtime.phases`` with wall and GPU time.
    """
    s = _session.current()
    if s is None or "phase markers" in s.instrument_errors:
        yield
        return
    rf = _guard(s, "phase markers", lambda: _open_phase(s, name))
    if rf is None:
        yield
        return
    token, cm = rf
    try:
        yield
    finally:
        _guard(s, "phase markers", lambda: _close_phase(s, name, token, cm))


def _open_phase(s: Any, name: str) -> tuple[Any, Any]:
    import torch

    token = s.phases.begin(name)
    cm = torch.profiler.record_function(f"perfkit.phase:{name}")
    cm.__enter__()
    return token, cm


def _close_phase(s: Any, name: str, token: Any, cm: Any) -> None:
    try:
        cm.__exit__(None, None, None)
    finally:
        s.phases.end(name, token)


def _guard(s: Any, instrument: str, fn: Callable[[], Any]) -> Any:
    """``fn()``; an Exception switches ``instrument`` off (one warning) and gives None."""
    try:
        return fn()
    except Exception as exc:
        failed = getattr(s, "instrument_failed", None)
        if failed is not None:
            failed(instrument, exc)
        return None
