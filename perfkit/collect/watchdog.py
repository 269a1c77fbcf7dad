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
* :func:`summarize_stalls` reads a run directory back (``perfkit stalls``); it
  and this module import nothing heavy (no torch).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import signal
import sys
import threading
import time
import traceback
from collections import deque
from typing import Any, Optional, TextIO

__all__ = ["Watchdog", "summarize_stalls", "SCHEMA"]

SCHEMA = "perfkit.stalls/1"

_HEARTBEAT_RE = re.compile(r"^heartbeat_rank(\d+)\.jsonl$")
_STALL_RE = re.compile(r"^stall_rank(\d+)_(\d{8}-\d{6})(?:-(\d+))?\.txt$")
_FAULT_RE = re.compile(r"^stall_rank(\d+)_faulthandler\.txt$")
_WHERE_RE = re.compile(r"^(.*) \((.*):(\d+)\)$")
_FAULT_HEADER = "perfkit faulthandler fallback: rank {rank}, pid {pid}, main thread 0x{ident:x}\n"
_MAX_DUMPS = 1000  #: stall files one watchdog writes at most (a stall of days at a short period)
#: A main-thread frame in one of these files means the rank waits for the others: torch.distributed
#: calls (all_reduce, barrier, work.wait, FSDP), DDP, or the autograd engine (DDP's gradient
#: all-reduce blocks the backward until every rank has contributed).
COLLECTIVE_FRAME_PATTERN = r"torch/distributed/|torch/nn/parallel/distributed\.py|torch/autograd/(graph|__init__)\.py"
#: A main thread blocked on a host-device sync (on GPUs the host then waits for the queued NCCL
#: kernels, which wait for the other ranks): the code line of its innermost user frame.
HOST_SYNC_CODE_PATTERN = r"\.(item|tolist|cpu|numpy)\(|synchronize\(|\.wait\("
#: Files of library code (the innermost frame outside them is the user's line).
LIBRARY_FILE_PATTERN = r"site-packages|dist-packages|lib/python3|(^|/)torch/|^<frozen|^<string>|(^|/)perfkit/"
_FRAME_LINE_RE = re.compile(r'^  File "(.*)", line (\d+), in (.*)$')


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
        self.heartbeat_path = os.path.join(self.run_dir, f"heartbeat_rank{self.rank}.jsonl")
        self.faulthandler_path = os.path.join(self.run_dir, f"stall_rank{self.rank}_faulthandler.txt")
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
                self.error = f"{type(exc).__name__}: {exc}"
                if self.on_error is not None:
                    try:
                        self.on_error(exc)
                    except Exception:
                        pass
                else:
                    self._say(f"perfkit: warning: rank {self.rank} watchdog failed and is switched off "
                              f"({self.error}); the job goes on")
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
        frames = sys._current_frames()
        stalled = time.monotonic() - beat_mono
        names = {t.ident: t for t in threading.enumerate()}
        watched = self._watched_ident
        main_frame = frames.get(watched) if watched is not None else None
        if main_frame is None:
            watched = threading.main_thread().ident
            main_frame = frames.get(watched)
        where = _frame_where(main_frame)
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
            f"where: {where[0]} ({where[1]}:{where[2]})" if where else "where: unknown",
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
            body.append("".join(traceback.format_stack(frames[ident])).rstrip("\n"))
            body.append("")
        del frames
        from .._io import write_text

        write_text(path, "\n".join(header + body) + "\n")  # atomic: a reader never sees half a dump
        self.dumps.append(path)
        self._dumped_after = beat_mono
        after = f"after step {step}" if step is not None else "before the first step"
        place = f"in {where[0]} ({where[1]}:{where[2]})" if where else "in an unknown place"
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
        base = os.path.join(self.run_dir, f"stall_rank{self.rank}_{stamp}")
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


def _frame_where(frame: Any) -> Optional[tuple[str, str, int]]:
    if frame is None:
        return None
    code = frame.f_code
    return (code.co_name, code.co_filename, int(frame.f_lineno or 0))


# ---------------------------------------------------------------------- reading back


def summarize_stalls(run_dir: str, *, stale_s: Optional[float] = None, now: Optional[float] = None) -> dict[str, Any]:
    """Summarise the heartbeat and stall files under ``run_dir`` (and its sub-folders, two deep).

    Each rank (by folder and rank number) gets a ``status``:

    * ``stuck``: a stack dump (Python watchdog or faulthandler) newer than its last heartbeat;
    * ``recovered``: dumps, but heartbeats came after the last one;
    * ``healthy``: no dump, and its last heartbeat is within ``stale_s`` of the newest
      activity of any rank;
    * ``silent``: no dump, but no recent heartbeat either (it ended, crashed, or
      its watchdog could not run).

    ``stale_s`` defaults to the watchdog period found in the dumps, else 60 s.
    ``ended_stalled`` marks a stuck rank whose watchdog was stopped (the run
    finished or was terminated) before another step ended.

    Raises:
        UsageError: ``run_dir`` is not a directory.
        TraceFormatError: it holds no heartbeat or stall files.
    """
    from ..errors import TraceFormatError, UsageError

    if not os.path.isdir(run_dir):
        raise UsageError(f"{run_dir}: no such directory")
    found: dict[tuple[str, int], dict[str, Any]] = {}
    root_depth = os.path.abspath(run_dir).rstrip(os.sep).count(os.sep)
    for dirpath, dirnames, filenames in os.walk(run_dir):
        if os.path.abspath(dirpath).rstrip(os.sep).count(os.sep) - root_depth >= 2:
            dirnames[:] = []
        dirnames.sort()
        rel = os.path.relpath(dirpath, run_dir)
        rel = "" if rel == "." else rel
        for name in sorted(filenames):
            for kind, rx in (("heartbeat", _HEARTBEAT_RE), ("stall", _STALL_RE), ("faulthandler", _FAULT_RE)):
                m = rx.match(name)
                if m:
                    entry = found.setdefault((rel, int(m.group(1))), {"heartbeat": None, "stall": [], "faulthandler": None})
                    path = os.path.join(dirpath, name)
                    if kind == "stall":
                        entry["stall"].append(path)
                    else:
                        entry[kind] = path
                    break
    if not found:
        raise TraceFormatError(
            f"{run_dir}: no heartbeat_rank*.jsonl or stall_rank*.txt files (was the run started with --watchdog?)"
        )

    ranks = []
    periods = []
    for (rel, rank), files in sorted(found.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        hb = _read_heartbeats(files["heartbeat"]) if files["heartbeat"] else {"count": 0, "last": None}
        dumps = [d for d in (_read_stall(p) for p in files["stall"]) if d is not None]
        dumps.sort(key=lambda d: (d["time"] or 0.0, d["file"]))
        fault = _read_faulthandler(files["faulthandler"]) if files["faulthandler"] else None
        periods += [d["watchdog_s"] for d in dumps if d.get("watchdog_s")]
        last = hb["last"] or {}
        ranks.append(
            {
                "rank": rank,
                "dir": rel,
                "heartbeat_file": files["heartbeat"],
                "heartbeats": hb["count"],
                "last_step": last.get("step"),
                "last_heartbeat_time": last.get("time"),
                "dumps": len(dumps),
                "dump_files": [d["file"] for d in dumps],
                "first_dump_time": dumps[0]["time"] if dumps else None,
                "last_dump_time": dumps[-1]["time"] if dumps else None,
                "_dumps": dumps,
                "_fault": fault,
            }
        )
    if stale_s is None:
        stale_s = max(periods) if periods else 60.0
    newest = 0.0
    for r in ranks:
        for t in (r["last_heartbeat_time"], r["last_dump_time"], (r["_fault"] or {}).get("time")):
            if isinstance(t, (int, float)):
                newest = max(newest, float(t))

    for r in ranks:
        dumps, fault = r.pop("_dumps"), r.pop("_fault")
        hb_t = r["last_heartbeat_time"]
        last_dump = dumps[-1] if dumps else None
        where = last_dump["where"] if last_dump else None
        seconds = last_dump["seconds_since_last_step"] if last_dump else None
        source = "watchdog" if last_dump else None
        r["faulthandler_dumps"] = fault["dumps"] if fault else 0
        r["faulthandler_file"] = fault["file"] if fault else None
        fault_after = bool(fault and fault["dumps"] and (hb_t is None or fault["time"] > hb_t))
        late = bool(last_dump and last_dump.get("late_s"))
        if fault_after and (last_dump is None or late or fault["time"] > (last_dump["time"] or 0) + 1.0):
            # faulthandler's C timer fired and the watchdog thread could not run in
            # time (no dump of its own since, or a late one): C code held the GIL.
            # faulthandler saw the main thread in the act.
            if fault["where"]:
                where, source = fault["where"], "faulthandler"
            if hb_t is not None:
                seconds = max(seconds or 0.0, fault["time"] - hb_t)
        stuck = (last_dump is not None and (hb_t is None or (last_dump["time"] or 0) > hb_t)) or fault_after
        if stuck:
            status = "stuck"
        elif dumps or (fault and fault["dumps"]):
            status = "recovered"
        elif hb_t is not None and newest - hb_t <= stale_s:
            status = "healthy"
        else:
            status = "silent"
        r["status"] = status
        # The watchdog was stopped (the run ended or was terminated) while this stall lasted.
        r["ended_stalled"] = bool(status == "stuck" and last_dump is not None and last_dump.get("stopped"))
        r["stopped_time"] = last_dump.get("stopped") if r["ended_stalled"] else None
        r["seconds_stalled"] = round(seconds, 3) if isinstance(seconds, (int, float)) else None
        r["where"] = where
        r["where_text"] = _where_text(where)
        r["where_source"] = source if where else None
        frames = last_dump.get("frames") if last_dump else []
        user = next((fr for fr in reversed(frames or []) if not re.search(LIBRARY_FILE_PATTERN, fr["file"])), None)
        r["user_where"] = user
        r["user_where_text"] = _where_text(user)
        r["waiting_in"] = _waiting_in(frames or [], user) if status == "stuck" else None

    def label(r: dict[str, Any]) -> str:
        return f"{r['dir']}/{r['rank']}" if r["dir"] else str(r["rank"])

    groups = {s: [label(r) for r in ranks if r["status"] == s] for s in ("stuck", "recovered", "healthy", "silent")}
    now = time.time() if now is None else now
    return {
        "schema": SCHEMA,
        "run_dir": run_dir,
        "stale_s": stale_s,
        "newest_activity_time": newest or None,
        "seconds_since_newest_activity": round(now - newest, 3) if newest else None,
        "ranks": ranks,
        **groups,
        "verdict": _verdict(ranks, groups, label),
    }


def _verdict(ranks: list[dict[str, Any]], groups: dict[str, list[str]], label: Any) -> str:
    parts = []
    if groups["stuck"]:
        stuck = [r for r in ranks if r["status"] == "stuck"]
        # Ranks blocked in a collective are waiting for the others; when some stuck
        # rank is elsewhere, it is the one they wait for.
        culprits = [r for r in stuck if not r.get("waiting_in")]
        waiting = [r for r in stuck if r.get("waiting_in")] if culprits else []
        places = []
        for r in culprits or stuck:
            tail = " (until its run ended)" if r.get("ended_stalled") else ""
            places.append(f"rank {label(r)} in {r['where_text'] or 'an unknown place'}{tail}")
        text = f"stuck: {'; '.join(places)}"
        if waiting:
            how = []
            for r in waiting:
                at = r["where_text"] or "an unknown place"
                if r.get("user_where_text") and r.get("user_where_text") != r.get("where_text"):
                    at += f", from {r['user_where_text']}"
                how.append(f"{label(r)} (in {at}{', a GPU sync' if r['waiting_in'] == 'gpu_sync' else ''})")
            noun = "rank" if len(waiting) == 1 else "ranks"
            text += f"; waiting for it: {noun} {', '.join(how)}"
        parts.append(text)
    else:
        parts.append("no rank is stuck")
    for key, word in (("recovered", "recovered after a stall"), ("healthy", "healthy"), ("silent", "silent (no recent heartbeat, no dump)")):
        if groups[key]:
            parts.append(f"{word}: {_rank_list(groups[key])}")
    return "; ".join(parts[:1]) + (". " + "; ".join(parts[1:]) if parts[1:] else "")


def _waiting_in(frames: list[dict[str, Any]], user: Optional[dict[str, Any]]) -> Optional[str]:
    """Whether a stuck main thread waits for the other ranks: "collective", "gpu_sync", or None.

    "collective": a frame in torch.distributed, DDP or the autograd engine (where
    DDP's gradient all-reduce blocks). "gpu_sync": the innermost user line syncs
    with the GPU (``.item()``, ``.cpu()``, ``synchronize()``), where a GPU rank's
    host waits for NCCL kernels that wait for the others. Heuristics on the stack
    only: a rank stuck in its own loop of ``.tolist()`` calls reads as waiting too.
    """
    if any(re.search(COLLECTIVE_FRAME_PATTERN, fr["file"]) for fr in frames):
        return "collective"
    if user is not None and re.search(HOST_SYNC_CODE_PATTERN, user.get("code") or ""):
        return "gpu_sync"
    return None


def _rank_list(labels: list[str]) -> str:
    noun = "rank" if len(labels) == 1 else "ranks"
    return f"{noun} {', '.join(labels)}"


def _where_text(where: Optional[dict[str, Any]]) -> Optional[str]:
    if not where:
        return None
    return f"{where['function']} ({where['file']}:{where['line']})"


def _read_heartbeats(path: str) -> dict[str, Any]:
    count, last = 0, None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a kill
                if not isinstance(rec, dict) or not isinstance(rec.get("time"), (int, float)):
                    continue
                count += 1
                if last is None or rec["time"] >= last["time"]:
                    last = rec
    except OSError as exc:
        from ..errors import TraceFormatError

        raise TraceFormatError(f"{path}: cannot read: {exc}") from None
    return {"count": count, "last": last}


def _read_stall(path: str) -> Optional[dict[str, Any]]:
    head: dict[str, str] = {}
    stopped = None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            first = f.readline()
            if not first.startswith("perfkit stall dump"):
                return None
            for line in f:
                line = line.rstrip("\n")
                if not line:
                    break
                key, sep, value = line.partition(": ")
                if sep:
                    head[key.strip()] = value.strip()
            frames: list[dict[str, Any]] = []
            in_main = None  # the first thread block is the watched (main) thread
            for line in f:
                if line.startswith("watchdog_stopped: "):
                    stopped = _float(line.split()[1])
                elif line.startswith("Thread "):
                    in_main = in_main is None
                elif in_main and not line.strip():
                    in_main = False
                elif in_main:
                    fm = _FRAME_LINE_RE.match(line.rstrip("\n"))
                    if fm:
                        frames.append({"function": fm.group(3), "file": fm.group(1), "line": int(fm.group(2))})
                    elif frames and line.startswith("    ") and "code" not in frames[-1]:
                        frames[-1]["code"] = line.strip()
    except OSError:
        return None
    m = _WHERE_RE.match(head.get("where", ""))
    where = {"function": m.group(1), "file": m.group(2), "line": int(m.group(3))} if m else None
    return {
        "file": path,
        "time": _float(head.get("unix_time")) or os.path.getmtime(path),
        "last_step": _int(head.get("last_step")),
        "seconds_since_last_step": _float(head.get("seconds_since_last_step", "").split(" ")[0]),
        "watchdog_s": _float(head.get("watchdog_s")),
        "where": where,
        "stopped": stopped,
        "late_s": _float(head.get("late_s")),
        "frames": frames,
    }


_FH_THREAD_RE = re.compile(r"^(?:Current thread|Thread) (0x[0-9a-fA-F]+)")
_FH_FRAME_RE = re.compile(r'^\s+File "(.*)", line (\d+) in (.*)$')


def _read_faulthandler(path: str) -> Optional[dict[str, Any]]:
    """faulthandler's text: 'Timeout (h:mm:ss)!', then per thread 'Thread 0x...' and frames, newest first."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        mtime = os.path.getmtime(path)
    except OSError:
        return None
    main_ident = None
    m = re.search(r"main thread 0x([0-9a-fA-F]+)", text.split("\n", 1)[0])
    if m:
        main_ident = int(m.group(1), 16)
    dumps = text.count("Timeout (")
    where = None
    current = None
    first_frame = False
    for line in text.splitlines():
        tm = _FH_THREAD_RE.match(line)
        if tm:
            current = int(tm.group(1), 16)
            first_frame = True
            continue
        fm = _FH_FRAME_RE.match(line)
        if fm and first_frame:
            first_frame = False
            if main_ident is None or current == main_ident:
                where = {"function": fm.group(3), "file": fm.group(1), "line": int(fm.group(2))}
    return {"file": path, "dumps": dumps, "time": mtime, "where": where}


def _float(s: Optional[str]) -> Optional[float]:
    try:
        return float(s) if s not in (None, "", "none") else None
    except ValueError:
        return None


def _int(s: Optional[str]) -> Optional[int]:
    try:
        return int(s) if s not in (None, "", "none") else None
    except ValueError:
        return None
