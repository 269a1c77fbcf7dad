"""A cheap Python stack sampler for the profiler's recorded window.

torch.profiler's ``with_stack=True`` records every Python call as a trace event
(about 1.8 µs of host time per call measured on an H200, +4.6 ms on a 23.7 ms
step of a 147M GPT), and the line it writes for a frame is the function's
*definition* line (or, for frames older than the trace, wherever the frame
happened to be). This sampler costs a fraction of that and gives the line being
*executed*: ``frame.f_lineno`` of each frame, i.e. the real call site.

A daemon thread wakes every ``interval_us`` (nominal; a thread holding the GIL
in pure Python hands it over only every ``sys.getswitchinterval()``), reads
``sys._current_frames()`` for the threads that run the training loop (the
thread(s) that end steps), walks each stack to the root and interns it. The read
and the walk are done in C without giving the GIL up (:mod:`perfkit.collect.frames`:
walked in Python, a training thread could pop a frame mid-walk, which crashed a
Lightning run with SIGSEGV on CPython 3.11); where that walker is not compiled,
the sampler does not run.
Sample times are ``time.perf_counter_ns()``; ``record_function`` markers
``perfkit.clock_sync#N`` at start and stop pair a reading of that clock with a
range on the trace's own clock, so the analysis can put the samples on the
trace's time axis whatever clock Kineto uses (Unix epoch µs relative to
``baseTimeNanoseconds`` in torch 2.x). A Unix-time reading is kept as a
fallback pairing.

The sidecar file (``<trace>.stacks.json.gz`` beside the trace) is read by
:mod:`perfkit.trace.samples`. Nothing here may break the training run: any
exception stops the sampler and is recorded in :attr:`StackSampler.warning`.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import threading
import time
from typing import Any, Optional

from ..trace.files import STACKS_SCHEMA as SCHEMA
from ..trace.files import STACKS_SYNC_PREFIX, sidecar_path
from . import frames
from .frames import line_of

CLOCK = "perf_counter_ns"  #: the clock of ``ts_us`` in the sidecar (CLOCK_MONOTONIC on Linux)
DEFAULT_INTERVAL_US = 1000.0
MAX_SAMPLES = 200_000
MAX_DEPTH = 256  #: frames kept per stack (innermost first); deeper stacks are cut at the root side


def _now_us() -> float:
    return time.perf_counter_ns() / 1000.0


class StackSampler:
    """Samples the Python stacks of registered threads on a daemon thread (see module docstring)."""

    def __init__(self, interval_us: float = DEFAULT_INTERVAL_US, max_samples: int = MAX_SAMPLES):
        self.interval_us = float(interval_us)
        self.max_samples = int(max_samples)
        self.warning: Optional[str] = None  #: why sampling stopped early (an error, the sample cap), if it did
        self.failed = False  #: an error (not the sample cap) stopped the sampler
        self.write_error: Optional[str] = None  #: why write() could not write the sidecar
        self.ts_us: list[float] = []
        self.thread: list[int] = []  #: index into self._threads
        self.stack: list[int] = []  #: index into self._stacks
        self.syncs: list[dict[str, Any]] = []  #: clock pairings (see sync())
        self._threads: list[dict[str, Any]] = []  #: {"pid", "tid", "name", "ident"}
        self._ident_index: dict[int, int] = {}
        self._idents: tuple[int, ...] = ()
        self._stack_index: dict[tuple[Any, ...], int] = {}
        self._stacks: list[tuple[int, ...]] = []  #: (id(code), lineno, id(code), lineno, ...) innermost first
        self._codes: dict[int, Any] = {}  #: id -> code object of every frame seen
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.running = False
        self._closed = False  #: stop() has run (the closing clock pairing is recorded)

    # ------------------------------------------------------------------ control

    def add_current_thread(self) -> None:
        """Sample the calling thread too (the training loop calls this at every step boundary)."""
        ident = threading.get_ident()
        if ident in self._ident_index:
            return
        with self._lock:
            self._ident_index[ident] = len(self._threads)
            self._threads.append({"pid": os.getpid(), "tid": threading.get_native_id(),
                                  "name": threading.current_thread().name, "ident": ident})
            self._idents = tuple(self._ident_index)

    def start(self) -> None:
        """Start sampling (from the thread that runs the loop) and record a clock pairing."""
        if self.running or self.warning:
            return
        if frames.walker is None:
            self.warning = frames.NO_WALKER
            return
        try:
            self.add_current_thread()
            self.sync()
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="perfkit-stack-sampler", daemon=True)
            self.running = True
            self._thread.start()
        except Exception as exc:  # never break the run
            self.running = False
            self.failed = True
            self.warning = f"stack sampler not started: {type(exc).__name__}: {exc}"

    def stop(self) -> None:
        """Stop sampling and record a closing clock pairing (call while the profiler still records).

        Also after the thread stopped itself (the sample cap, an error): the pairing still closes.
        """
        if self._thread is None or self._closed:
            return
        self._closed = True
        self.running = False
        self._stop.set()
        try:
            if self._thread is not None and self._thread is not threading.current_thread():
                self._thread.join(timeout=1.0)
            self.sync()
        except Exception as exc:
            self.warning = self.warning or f"stack sampler stop: {type(exc).__name__}: {exc}"

    def sync(self) -> None:
        """A ``record_function`` range on the trace's clock, bracketed by readings of the sampler's clock."""
        record_function: Any
        try:
            from torch.autograd.profiler import record_function
        except Exception:
            record_function = None
        name = f"{STACKS_SYNC_PREFIX}{len(self.syncs)}"
        unix_ns = time.time_ns()
        before = _now_us()
        if record_function is not None:
            with record_function(name):
                pass
        after = _now_us()
        self.syncs.append({"name": name, "clock_before_us": before, "clock_after_us": after,
                           "unix_us": unix_ns / 1000.0, "unix_clock_us": before})

    # ------------------------------------------------------------------ sampling

    def _run(self) -> None:
        interval_s = self.interval_us / 1e6
        try:
            while not self._stop.wait(interval_s):
                if not self._sample():
                    return
        except Exception as exc:  # record, stop sampling, leave the run alone
            self.warning = f"stack sampler stopped: {type(exc).__name__}: {exc}"
            self.failed = True
            self.running = False

    def _sample(self) -> bool:
        """One sample of every registered thread; False when the sample cap is reached."""
        t = _now_us()
        # (ident, (code, lasti, code, lasti, ...)): read in C without giving the GIL up (see _frames.c:
        # walked here in Python, a training thread could pop a frame mid-walk and crash the process)
        taken = frames.walker.sample(self._idents, MAX_DEPTH)
        codes = self._codes
        for ident, walked in taken:
            if len(self.ts_us) >= self.max_samples:
                self.warning = f"stack sampler stopped at its cap of {self.max_samples} samples"
                self.running = False
                return False
            # Code objects by id (hashing a code object hashes its bytecode); ``codes`` keeps
            # them alive so an id is never reused for another one. The last instruction, not the
            # line: f_lineno decodes the line table on every read; lines are resolved in to_dict.
            key: list[Any] = []
            for j in range(0, len(walked), 2):
                code = walked[j]
                cid = id(code)
                if cid not in codes:
                    codes[cid] = code
                key.append(cid)
                key.append(walked[j + 1])
            k = tuple(key)
            idx = self._stack_index.get(k)
            if idx is None:
                idx = self._stack_index[k] = len(self._stacks)
                self._stacks.append(k)
            self.ts_us.append(t)
            self.thread.append(self._ident_index[ident])
            self.stack.append(idx)
        return True

    # ------------------------------------------------------------------ output

    def to_dict(self) -> dict[str, Any]:
        """The sidecar document (schema ``perfkit.stacks/1``)."""
        n = min(len(self.ts_us), len(self.thread), len(self.stack))  # a sample may be half-written at a stop
        strings: dict[tuple[str, int, str], str] = {}
        lines: dict[tuple[int, int], int] = {}
        stacks = []
        for st in list(self._stacks):
            out = []
            for j in range(0, len(st), 2):
                code = self._codes[st[j]]
                line = lines.get((st[j], st[j + 1]))
                if line is None:
                    line = lines[(st[j], st[j + 1])] = line_of(code, st[j + 1])
                key = (code.co_filename, line, code.co_name)
                s = strings.get(key)
                if s is None:
                    s = strings[key] = f"{key[0]}({key[1]}): {key[2]}"
                out.append(s)
            stacks.append(out)
        return {
            "schema": SCHEMA,
            "clock": CLOCK,
            "interval_us": self.interval_us,
            "switch_interval_us": sys.getswitchinterval() * 1e6,
            "max_samples": self.max_samples,
            "warning": self.warning,
            "syncs": self.syncs,
            "threads": [{k: t[k] for k in ("pid", "tid", "name")} for t in self._threads],
            "samples": {"ts_us": self.ts_us[:n], "thread": self.thread[:n], "stack": self.stack[:n]},
            "stacks": stacks,
        }

    def summary(self) -> dict[str, Any]:
        """What the sampler recorded, for the run's ``runtime.stack_samples``; counts are None if it never ran."""
        started = bool(self.syncs)
        return {
            "samples": len(self.ts_us) if started else None,
            "stacks": len(self._stacks) if started else None,
            "threads": len(self._threads) if started else None,
            "interval_us": self.interval_us,
            "warning": self.warning or (None if started else "the stack sampler never started (the profiler did "
                                        "not record a step)"),
        }

    def write(self, trace_path: str) -> Optional[str]:
        """Write the sidecar beside ``trace_path`` atomically; returns its path.

        On failure: None, with the reason in :attr:`write_error` (and :attr:`warning`); no half-written file.
        """
        from .._io import atomic_open

        path = sidecar_path(trace_path)
        try:
            data = json.dumps(self.to_dict(), separators=(",", ":")).encode()
            with atomic_open(path, "wb") as fh:
                with gzip.GzipFile(filename=os.path.basename(path)[:-3], mode="wb", fileobj=fh, compresslevel=6) as f:
                    f.write(data)
            return path
        except Exception as exc:
            self.write_error = f"{type(exc).__name__}: {exc}"
            self.warning = self.warning or f"stack samples not written: {self.write_error}"
            return None
