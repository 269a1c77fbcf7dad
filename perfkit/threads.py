"""A few worker threads for perfkit's own coarse tasks (decoding a trace's chunks, building the
analysis tables), without :mod:`concurrent.futures`.

``Pool`` offers what perfkit used of ``ThreadPoolExecutor``: ``submit`` returns a :class:`Task`
whose ``result()`` waits and returns the value or raises the task's exception, and leaving
``with Pool(n)`` waits for every task. concurrent.futures imports :mod:`logging` (~3 ms of every
``perfkit analyze``, 1% of the command on a 50 MB trace) for messages perfkit never shows.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Generic, Optional, TypeVar

try:  # the C queue itself: the queue module also imports heapq (~0.7 ms); perfkit.job uses them too
    from _queue import Empty, SimpleQueue
except ImportError:  # pragma: no cover (other Pythons)
    from queue import Empty, SimpleQueue

__all__ = ["Empty", "Pool", "SimpleQueue", "Task", "done"]

T = TypeVar("T")


class Task(Generic[T]):
    """The outcome of one submitted call."""

    __slots__ = ("_done", "_value", "_error")

    def __init__(self) -> None:
        self._done = threading.Event()
        self._value: Optional[T] = None
        self._error: Optional[BaseException] = None

    def _run(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            self._value = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the caller of result(), as a Future does
            self._error = exc
        finally:
            self._done.set()

    def result(self) -> T:
        """The call's value, once it has run; its exception is raised here."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


def done(value: T) -> Task[T]:
    """A task that already holds ``value``."""
    task: Task[T] = Task()
    task._value = value
    task._done.set()
    return task


class Pool:
    """``workers`` threads running submitted calls in the order submitted; ``workers=0``: no thread,
    each call runs when submitted (for small work the handoff to a thread costs more than the work:
    ~3 ms of a 2,500-event trace's 10 ms analysis)."""

    def __init__(self, workers: int) -> None:
        self._inline = workers <= 0
        self._queue: SimpleQueue[Optional[tuple[Task[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]]]
        self._queue = SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"perfkit-{i}", daemon=True)
                         for i in range(max(0, workers))]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            task, fn, args, kwargs = item
            task._run(fn, args, kwargs)

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Task[T]:
        task: Task[T] = Task()
        if self._inline:
            task._run(fn, args, kwargs)
        else:
            self._queue.put((task, fn, args, kwargs))
        return task

    def shutdown(self) -> None:
        """Let the submitted calls finish, then stop the threads."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
