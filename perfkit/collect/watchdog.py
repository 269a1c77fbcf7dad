"""Stall watchdog: heartbeats per step, and every thread's stack when steps stop.

A :class:`Watchdog` runs one Python daemon thread. The training loop calls
:meth:`Watchdog.beat` at the end of every step (``perfkit profile --watchdog
SECONDS`` does it for you). When no beat arrives for ``seconds`` (counted from
the last beat, or from :meth:`Watchdog.start`), the thread writes every
thread's Python stack to ``stall_rank<R>_<YYYYmmdd-HHMMSS>.txt`` in the run
directory and prints one line to stderr naming the main thread's innermost
frame; while the stall lasts it dumps again every ``seconds``. It never stops
the job unless ``kill=True``.

Files in the run directory:

* ``heartbeat_rank<R>.jsonl``: one JSON line per step (``step``, ``time``,
  ``step_ms``, ``tokens_per_s``, ``memory_bytes``, ``rank``).
* ``stall_rank<R>_<stamp>.txt``: a header (rank, pid, last step, seconds since
  the last step, time, where) and the stacks of all threads.
* ``stall_rank<R>_faulthandler.txt``: dumps of :mod:`faulthandler`'s C-level
  timer (the fallback below); removed when it stayed empty.

Choices:

* :meth:`beat` is on the training hot path: it takes two clock readings and
  appends a tuple to a deque (about a microsecond). The watchdog thread turns
  the tuples into JSON and writes them, at most once a second, and at a stall
  and at :meth:`stop`.
* A Python thread gets the GIL even while the main thread runs a pure-Python
  loop (the interpreter hands it over every 5 ms), so the dump shows where
  such a loop is. C code that holds the GIL and never returns (a kernel in an
  extension that does not release it) starves every Python thread; for that
  case :func:`faulthandler.dump_traceback_later` is armed with ``3 * seconds``
  as a fallback: its timer is a C thread that needs no GIL (a dump of the
  watchdog's own that comes late says so: ``late_s`` in its header). Re-arming it costs
  tens of microseconds, so :meth:`beat` never does it: the watchdog thread
  re-arms it when it sees that a beat happened, at most once per poll
  (``seconds / 10``, at most one second). faulthandler has one timer per
  process, and its C thread reads other threads' frames without the GIL: once
  seen to crash a process (SIGSEGV) while it was importing modules, so it is
  opt-in (``faulthandler=True``), never armed by ``perfkit profile``.
* The watchdog never takes the job down: the first error of its thread (a
  full disk, say) stops it, with one line on stderr (or a call of
  ``on_error``); the job runs on unwatched. Stall dumps are written atomically
  (temporary file, fsync, rename); the heartbeat file is appended to, and a
  line cut by a crash is skipped when it is read back.
* :func:`perfkit.job.stalls.summarize_stalls` reads a run directory back
  (``perfkit stalls``); it and this module import nothing heavy (no torch).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import threading
import time
from collections import deque
from typing import Any, Optional, TextIO

from ..run import layout
from ._failsoft import report_failure
from .frames import format_stack, line_of, stacks

__all__ = ["Watchdog"]

_FAULT_HEADER = "perfkit faulthandler fallback: rank {rank}, pid {pid}, main thread 0x{ident:x}\n"
_MAX_DUMPS = 1000  #: stall files one watchdog writes at most (a stall of days at a short period)


class Watchdog:
    """Dumps every thread's stack when no training step ends for ``seconds``.

    Args:
        run_dir: where the heartbeat and stall files go (created if needed).
        seconds: a step that takes longer than this is a stall.
        rank: the process's rank, in file names and messages.
        kill: after the first dump of a stall, send SIGTERM to this process.
        stream: where the one-line stall notices go (default: ``sys.stderr``).
        faulthandler: arm :mod:`faulthandler`'s timer (``3 * seconds``) as a
            fallback for C code that holds the GIL.
        on_error: called once, on the watchdog thread, with the error that
            stopped it (default: one line on ``stream``).

    Use ``wd = Watchdog(...).start()`` ... ``wd.stop()``, or ``with Watchdog(...) as wd:``.
    """

    def __init__(
        self,
        run_dir: str,
        seconds: float,
        *,
        rank: int = 0,
        kill: bool = False,
        stream: Optional[TextIO] = None,
        faulthandler: bool = False,
        on_error: Optional[Any] = None,
    ) -> None:
        try:
            seconds = float(seconds)
        except (TypeError, ValueError):
            seconds = float("nan")
        if not seconds > 0 or seconds == float("inf"):
            from ..errors import UsageError

            raise UsageError(f"watchdog seconds must be a number > 0 (got {seconds!r})")
        self.run_dir = str(run_dir)
        self.seconds = seconds
        self.rank = int(rank)
        self.kill = kill
        self.stream = stream
        self.use_faulthandler = faulthandler
        self.on_error = on_error
        self.error: Optional[str] = None  #: the error that stopped the watchdog thread, if one did
        self.heartbeat_path = os.path.join(self.run_dir, layout.heartbeat_name(self.rank))
        self.faulthandler_path = os.path.join(self.run_dir, layout.faulthandler_name(self.rank))
        self.dumps: list[str] = []  #: stall files written, in order
        self._poll = min(1.0, max(0.01, seconds / 10.0))
        self._pending: deque = deque(maxlen=100_000)
        self._last: tuple = (None, 0.0, 0.0)  # (step, monotonic, unix time) of the last beat or start
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._hb_file: Optional[TextIO] = None
        self._fh_file: Optional[TextIO] = None
        self._fh_header = 0
        self._watched_ident: Optional[int] = None
        self._started = False
        self._stopped = False
        self._killed = False
        self._capped = False
        self._dumped_after: Optional[float] = None  # the beat the last dump came after

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "Watchdog":
        """Open the files and start the watchdog thread; returns ``self``."""
        with self._lock:
            if self._started:
                return self
            self._started = True
        os.makedirs(self.run_dir, exist_ok=True)
        self._hb_file = open(self.heartbeat_path, "a", encoding="utf-8")
        self._watched_ident = threading.get_ident()
        self._last = (None, time.monotonic(), time.time())
        if self.use_faulthandler:
            self._fh_file = open(self.faulthandler_path, "a", encoding="utf-8")
            header = _FAULT_HEADER.format(rank=self.rank, pid=os.getpid(), ident=self._watched_ident)
            self._fh_file.write(header)
            self._fh_file.flush()
            self._fh_header = self._fh_file.tell()
            self._arm_faulthandler()
        self._thread = threading.Thread(target=self._run, name="perfkit-watchdog", daemon=True)
        self._thread.start()
        atexit.register(self.stop)
        return self

    def beat(
        self,
        step: int,
        step_ms: Optional[float] = None,
        tokens_per_s: Optional[float] = None,
        memory_bytes: Optional[float] = None,
    ) -> None:
        """One step ended. Cheap: no I/O, no JSON, no lock (the watchdog thread writes)."""
        now = time.time()
        self._last = (step, time.monotonic(), now)
        self._pending.append((step, now, step_ms, tokens_per_s, memory_bytes))

    def stop(self) -> None:
        """Stop the thread, cancel the faulthandler timer, flush and close the files. Idempotent."""
        with self._lock:
            if self._stopped or not self._started:
                self._stopped = True
                return
            self._stopped = True
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(5.0, 2 * self._poll))
        self._note_stop()
        if self._fh_file is not None:
            import faulthandler

            try:
                faulthandler.cancel_dump_traceback_later()
            except Exception:
                pass
            self._close_faulthandler_file()
        try:
            self._flush_heartbeats()
        except Exception:
            pass
        if self._hb_file is not None:
            try:
                self._hb_file.close()
            except Exception:
                pass
            self._hb_file = None
        try:
            atexit.unregister(self.stop)
        except Exception:
            pass

    def _note_stop(self) -> None:
        """A stall that lasted until stop(): say so at the end of its last dump."""
        if not self.dumps or self._dumped_after != self._last[1]:
            return
        now = time.time()
        from .._io import write_text
        from ..errors import PerfkitError

        try:
            with open(self.dumps[-1], encoding="utf-8") as f:
                text = f.read()
            write_text(self.dumps[-1], text + (
                f"\nwatchdog_stopped: {now:.6f} "
                f"({time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(now))}; no step ended since this dump)\n"
            ))
        except (OSError, PerfkitError):
            pass

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> "Watchdog":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        last_flush = time.monotonic()
        next_dump = 0.0
        seen = self._last[1]
        while not self._stop.wait(self._poll):
            try:
                step, beat_mono, _ = self._last
                now = time.monotonic()
                if beat_mono != seen:  # steps are moving: push the C-level fallback back
                    seen = beat_mono
                    self._arm_faulthandler()
                if self._pending and now - last_flush >= 1.0:
                    self._flush_heartbeats()
                    last_flush = now
                stalled = now - beat_mono
                if stalled >= self.seconds and now >= next_dump:
                    due = max(beat_mono + self.seconds, next_dump)
                    self._stall(step, beat_mono, now - due)  # the stacks first, then the heartbeats
                    next_dump = time.monotonic() + self.seconds
                    self._flush_heartbeats()
                    last_flush = now
            except Exception as exc:  # the watchdog must never take the job down (disk full ...): it stops
                report_failure(self, exc, lambda: self._say(
                    f"perfkit: warning: rank {self.rank} watchdog failed and is switched off ({self.error}); "
                    "the job goes on"))
                return

    def _arm_faulthandler(self) -> None:
        if self._fh_file is None or self._stop.is_set():
            return
        import faulthandler

        try:
            faulthandler.dump_traceback_later(self.seconds * 3, repeat=True, file=self._fh_file)
        except Exception:
            pass

    def _close_faulthandler_file(self) -> None:
        f, self._fh_file = self._fh_file, None
        if f is None:
            return
        try:
            f.flush()
            empty = os.fstat(f.fileno()).st_size <= self._fh_header
            f.close()
            if empty:  # only our header: the timer never fired
                os.remove(self.faulthandler_path)
        except Exception:
            pass

    def _flush_heartbeats(self) -> None:
        f = self._hb_file
        if f is None:
            return
        lines = []
        pending = self._pending
        while pending:
            try:
                step, t, step_ms, tps, mem = pending.popleft()
            except IndexError:
                break
            lines.append(
                f'{{"step": {_js(step)}, "time": {t:.6f}, "step_ms": {_js(step_ms)}, '
                f'"tokens_per_s": {_js(tps)}, "memory_bytes": {_js(mem)}, "rank": {self.rank}}}'
            )
        if lines:
            f.write("\n".join(lines) + "\n")
            f.flush()

    def _stall(self, step: Any, beat_mono: float, late: float = 0.0) -> None:
        if len(self.dumps) >= _MAX_DUMPS:
            if not self._capped:
                self._capped = True
                self._say(f"perfkit: rank {self.rank} still stalled; {_MAX_DUMPS} stack dumps written, no more")
            return
        # Every thread's stack, read in C without giving the GIL up (perfkit/collect/frames.py: a walk
        # in Python can crash the process while a thread runs); None where that walker is not built.
        walked = stacks(None, 512)
        frames = dict(walked) if walked is not None else {}
        stalled = time.monotonic() - beat_mono
        names = {t.ident: t for t in threading.enumerate()}
        watched = self._watched_ident
        main_stack = frames.get(watched) if watched is not None else None
        if main_stack is None:
            watched = threading.main_thread().ident
            main_stack = frames.get(watched) if watched is not None else None
        where = _stack_where(main_stack)
        now = time.time()
        path = self._dump_path(now)
        dump_no = len(self.dumps) + 1
        last_step_time = self._last[2] if step is not None else None
        header = [
            "perfkit stall dump",
            f"rank: {self.rank}",
            f"pid: {os.getpid()}",
            f"last_step: {step if step is not None else 'none'}",
            f"seconds_since_last_step: {stalled:.3f}" + ("" if step is not None else " (since the watchdog started)"),
            f"last_step_time: {last_step_time:.6f}" if last_step_time is not None else "last_step_time: none",
            f"time: {time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(now))}",
            f"unix_time: {now:.6f}",
            f"watchdog_s: {self.seconds:g}",
            f"dump: {dump_no}",
            f"where: {_where_text(where)}" if where else "where: unknown",
        ]
        # The thread could not run for a while: C code held the GIL, and the main
        # thread may have moved on since. faulthandler's dump saw it in the act.
        starved = late > max(1.0, 3 * self._poll)
        if starved:
            header.append(f"late_s: {late:.3f}")
        header.append("")
        me = threading.get_ident()
        order = sorted(frames, key=lambda i: (i != watched, i != threading.main_thread().ident, i))
        body = []
        for ident in order:
            if ident == me:
                continue  # the watchdog's own stack says nothing
            t = names.get(ident)
            label = t.name if t is not None else "<unknown>"
            tags = []
            if ident == threading.main_thread().ident:
                tags.append("main")
            if ident == watched and ident != threading.main_thread().ident:
                tags.append("watched")
            if t is not None and t.daemon:
                tags.append("daemon")
            tag = (", " + ", ".join(tags)) if tags else ""
            body.append(f"Thread {label} (ident {ident}{tag}), most recent call last:")
            body.append(format_stack(frames[ident]).rstrip("\n"))
            body.append("")
        if walked is None:
            body.append(_faulthandler_stacks())
        del frames, walked
        from .._io import write_text

        write_text(path, "\n".join(header + body) + "\n")  # atomic: a reader never sees half a dump
        self.dumps.append(path)
        self._dumped_after = beat_mono
        after = f"after step {step}" if step is not None else "before the first step"
        place = f"in {_where_text(where)}" if where else "in an unknown place"
        note = ""
        if starved:
            note = f" (the watchdog ran {late:.1f}s late: C code held the GIL"
            note += f"; see {self.faulthandler_path})" if self._fh_file is not None else ")"
        self._say(f"perfkit: rank {self.rank} stalled {stalled:.1f}s {after} {place} \u2014 stacks in {path}{note}")
        if self.kill and not self._killed:
            self._killed = True
            self._say(f"perfkit: rank {self.rank}: watchdog kill=True, sending SIGTERM to pid {os.getpid()}")
            os.kill(os.getpid(), signal.SIGTERM)

    def _dump_path(self, now: float) -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
        base = os.path.join(self.run_dir, layout.stall_base(self.rank, stamp))
        path, n = base + ".txt", 1
        while os.path.exists(path):  # several dumps within one second
            n += 1
            path = f"{base}-{n}.txt"
        return path

    def _say(self, line: str) -> None:
        stream = self.stream or sys.stderr
        try:
            stream.write(line + "\n")
            stream.flush()
        except Exception:
            pass


def _js(x: Any) -> str:
    """A JSON value, quickly (this runs once per step, on the watchdog thread)."""
    if x is None:
        return "null"
    t = type(x)
    if t is int:
        return str(x)
    if t is float:
        return repr(x) if x - x == 0 else "null"  # NaN and infinities are not JSON
    if t is bool:
        return "true" if x else "false"
    try:  # numpy and torch scalars
        if "int" in str(getattr(x, "dtype", "")):
            return str(int(x))
        return _js(float(x))
    except (TypeError, ValueError):
        return json.dumps(str(x))


def _stack_where(walked: Optional[tuple[Any, ...]]) -> Optional[tuple[str, str, Optional[int]]]:
    """(function, file, line) of a walked stack's innermost frame; the line None where the code's line
    table has none for the instruction."""
    if not walked:
        return None
    code = walked[0]
    line = line_of(code, walked[1])
    return (code.co_name, code.co_filename, line if line > 0 else None)


def _where_text(where: tuple[str, str, Optional[int]]) -> str:
    """``function (file:line)``, or ``function (file)`` where the line is not known."""
    return f"{where[0]} ({where[1]}:{where[2]})" if where[2] is not None else f"{where[0]} ({where[1]})"


def _faulthandler_stacks() -> str:
    """Every thread's stack as :mod:`faulthandler` writes it (C, safe while threads run), where perfkit's
    frame walker is not built: no thread names or source text."""
    import faulthandler
    import tempfile

    try:
        with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as f:
            faulthandler.dump_traceback(f, all_threads=True)
            f.seek(0)
            return "Stacks (faulthandler; perfkit's frame walker is not built here), most recent call first:\n" + f.read()
    except Exception as exc:  # never break the run for a dump
        return f"stacks: not available ({type(exc).__name__}: {exc})"
