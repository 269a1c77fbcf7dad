"""A helper process forked from ``perfkit analyze`` itself, for the small ranks of a job.

A server process started with ``python -m perfkit.job.pool --serve`` costs about 0.1 s of
interpreter, numpy and perfkit imports before its first trace (0.45 s of CPU on a loaded machine),
so the local engine starts one only for a second or more of small work: 8 ranks of 1 MB (about
0.1 s of work after the first) stayed on the command's own thread. A copy of the command's process
made with ``fork()`` costs a millisecond or two and has the interpreter already. It is made as soon
as the command knows it has several small traces, before numpy or the analysis are imported: the
copy imports them (:func:`_helper`) while the command does the same, on the machine's other CPU,
so both are ready at the same moment, and neither copies the other's pages for them (a copy made
after those imports made both processes fault in and copy the pages of every module object they
touched: in one side-by-side run 8 DLRM ranks took 1.51x one rank that way, 1.39x this way; docs/performance.md). It then
analyses small ranks beside the command's thread from the first rank on.

``fork()`` is safe only where nothing else runs: a lock held by another thread at that instant
stays locked in the copy forever, and libraries that start threads of their own (a CUDA context,
macOS system frameworks) are not made for it. So a helper is forked only

* on Linux;
* by a process that is the command's alone (``perfkit analyze`` run as a command, not the
  ``perfkit.analyze`` API inside a user's program): the local engine's ``forker`` argument;
* while that process has one thread, as the kernel counts them (a C library's threads too): before
  numpy is imported, the progress bar or any pool starts
  (:meth:`perfkit.job.engines.LocalEngine.prepare`, called by the command), checked here again.

Elsewhere the engine works as before (servers started as fresh interpreters when the work pays for
them). The helper speaks the servers' protocol (:func:`perfkit.job.engines.serve`: a JSON line with
the path in, a JSON line with the document or error out, over two pipes), ends when its request
pipe closes (the command is done, or died), and never returns into the command's code: it leaves
with ``os._exit``, so no exit handler, buffer or temporary file of the command is run, flushed or
removed twice. What it prints (warnings about a rank) goes to the command's stderr, as the
command's own thread's does. If it dies (killed: out of memory), the rank it held is a failed rank
with the reason, as with any worker.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from typing import IO, Optional

from .engines import Outcome, PipeServer, worker_died, serve

__all__ = ["ForkedServer", "can_fork", "fork_server"]

#: File descriptors of the command's ends of the helpers' pipes: a helper forked later closes its
#: copies, so a helper sees its request pipe end when the command closes it, whatever forks after.
_COMMAND_FDS: set[int] = set()


def can_fork() -> bool:
    """True where a helper may be forked now: Linux, ``os.fork`` present, and one thread in this process,
    counting the threads that C libraries start (OpenBLAS, a CUDA runtime), which Python does not list."""
    return (sys.platform.startswith("linux") and hasattr(os, "fork") and threading.active_count() == 1
            and _os_threads() == 1)


def _os_threads() -> int:
    """The threads of this process as the kernel counts them (``/proc/self/status``); 0 if unreadable."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Threads:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def fork_server(workers: Optional[int]) -> Optional["ForkedServer"]:
    """A helper forked from this process, or None where :func:`can_fork` says no (or fork fails)."""
    if not can_fork():
        return None
    requests_r, requests_w = os.pipe()
    answers_r, answers_w = os.pipe()
    for stream in (sys.stdout, sys.stderr):  # nothing buffered is written twice (the copy never flushes: _exit)
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    gc.freeze()  # collections in either copy skip what exists now: its pages are not copied for them
    command = os.getpid()
    try:
        pid = os.fork()
    except OSError:  # no memory or process left for a copy: the engine goes on without it
        for fd in (requests_r, requests_w, answers_r, answers_w):
            os.close(fd)
        return None
    if pid == 0:  # pragma: no cover (the copy: measured by the parent's tests through its answers)
        _helper(requests_r, requests_w, answers_r, answers_w, workers, command)
    os.close(requests_r)
    os.close(answers_w)
    _COMMAND_FDS.update((requests_w, answers_r))
    return ForkedServer(pid, os.fdopen(requests_w, "wb"), os.fdopen(answers_r, "rb"))


def _die_with(command: int) -> None:  # pragma: no cover (runs in the copy)
    """Have the kernel kill this process when the command's process ends (Linux ``PR_SET_PDEATHSIG``):
    a helper busy with a trace when the command is killed stops at once instead of finishing it."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no prctl: the helper still ends at its request pipe's end
        return
    if os.getppid() != command:  # the command ended before the call above
        os._exit(0)


def _helper(requests_r: int, requests_w: int, answers_r: int, answers_w: int,
            workers: Optional[int], command: int) -> None:  # pragma: no cover (runs in the copy)
    """The copy's whole life: serve until the request pipe closes, then leave without cleanup."""
    code = 1
    try:
        _die_with(command)
        for fd in (requests_w, answers_r, *_COMMAND_FDS):
            try:
                os.close(fd)
            except OSError:
                pass
        from ..analysis.pipeline import analyze_file  # noqa: F401  (now, while the command imports it too)

        with os.fdopen(requests_r, "r", encoding="utf-8") as inp, \
                os.fdopen(answers_w, "w", encoding="utf-8") as out:
            code = serve(inp, out, workers)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the command reports it
        code = 130
    except BrokenPipeError:  # the command is gone (its answer pipe closed): nobody to answer
        code = 1
    except BaseException:  # a bug: its traceback on stderr, and the rank fails with the exit status
        try:
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
        except BaseException:
            pass
    finally:
        os._exit(code)


class ForkedServer(PipeServer):
    """The command's end of a forked helper: :meth:`analyse` one path at a time, :meth:`close` once."""

    def __init__(self, pid: int, requests: IO[bytes], answers: IO[bytes]) -> None:
        super().__init__(requests, answers)
        self._fds = (requests.fileno(), answers.fileno())  # in _COMMAND_FDS until closed
        self.pid = pid
        self._ended = False
        self._status: Optional[int] = None

    def _wait(self, timeout_s: Optional[float]) -> tuple[bool, Optional[int]]:
        """(ended, exit code: negative for a signal, None when unknown), waiting at most ``timeout_s``."""
        if self._ended:
            return True, self._status
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        delay = 0.0005
        while True:
            try:
                pid, status = os.waitpid(self.pid, 0 if deadline is None else os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: its status is lost
                self._ended = True
                return True, None
            if pid:
                self._ended, self._status = True, os.waitstatus_to_exitcode(status)
                return True, self._status
            assert deadline is not None
            if time.monotonic() >= deadline:
                return False, None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _end(self) -> Optional[int]:
        """The helper's exit code once it has ended: it is given 10 s (its pipes are closed or broken),
        then killed."""
        ended, status = self._wait(10.0)
        if not ended:
            import signal

            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            status = self._wait(None)[1]
        return status

    def died(self, path: str) -> Outcome:
        return worker_died(path, self._end(), "")

    def close(self) -> None:
        """Close the pipes, the helper's cue to end, without waiting for it (its exit takes a few ms
        more, and it writes nothing): reaped here if it has ended already, else by the system once
        the command ends (a helper still busy with a trace ends after it, or with the command)."""
        self._close_pipes()
        self._wait(0.0)
        _COMMAND_FDS.difference_update(self._fds)
