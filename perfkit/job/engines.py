"""Where the ranks of a job are analysed: the engine seam, and the local engine (the default).

An engine turns trace paths into per-rank documents. :meth:`Engine.map` yields
``(index, outcome)`` pairs *as they arrive* (not in the order of the paths), where
``outcome`` is the rank's analysis document (a small JSON-able dict, tens of kB) or a
:class:`RankFailure` with the reason. The caller (:func:`perfkit.job.ranks.analyze_many`)
keeps only those small documents, counts ranks for the progress bar, and builds the job
view once every rank has answered: a failed rank becomes a ``failed`` row and the
``rank_failed`` finding, and the job view is still written.

Engines:

* :class:`LocalEngine` (here): this machine. Small traces (at most :data:`SMALL_TRACE_BYTES`
  of JSON) are analysed without a process start per trace: on a thread of this process,
  beside helpers forked from the ``perfkit analyze`` command itself (:mod:`perfkit.job.forked`;
  a millisecond each, so from the second small trace on), or elsewhere, when there is enough
  work, server processes started once and reused (:data:`SERVER_WORK_S`). Large traces keep the
  fresh interpreter per trace (:mod:`perfkit.job.pool`), so a process that read a 1 GB trace
  gives its memory back.
* :class:`perfkit.job.ray_engine.RayEngine`: one Ray task per rank on a cluster
  (``perfkit analyze --engine ray``), imported only when asked for.

Every engine produces each document the same way (:func:`analyse_json`: the analysis
as compact JSON, parsed once by the process that merges), so the job document is the
same byte for byte whichever engine ran.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import threading
from collections import deque
from typing import IO, Any, Callable, Iterator, NamedTuple, Optional, Protocol, Sequence, Union

from .._json import json_default
from ..errors import PerfkitError

from ..threads import Empty, SimpleQueue

__all__ = ["Engine", "LocalEngine", "RankFailure", "Outcome", "analyse_document", "analyse_json", "analyse_outcome",
           "analyse_text", "json_bytes", "plan_local", "LocalPlan", "SMALL_TRACE_BYTES", "SERVER_WORK_S"]

#: A trace of at most this many bytes of JSON (a ``.gz`` file's inflated size) is *small*: analysed
#: without a process of its own. On the 2-core test machine a fresh interpreter costs about 0.45 s
#: before its first document (interpreter, numpy, perfkit, and the first trace's name classification),
#: while a process that has analysed a rank of the job already analyses the next in about 0.02 s plus
#: 5-10 ms per MB of JSON: below 32 MB (0.2-0.3 s) the start would cost more than the work, and the
#: memory of one such analysis (a few hundred MB at most) is given back before the next
#: (docs/performance.md, "Rank engines").
SMALL_TRACE_BYTES = 32 * 1000 * 1000
#: The local engine's estimate of a small trace's analysis in a warm process: seconds per trace ...
SMALL_TRACE_S = 0.02
#: ... plus seconds per MB of JSON (DLRM ranks inflated to 20 MB: 0.01 s per MB on a quiet 2-core machine).
SMALL_MB_S = 0.01
#: A server process (started once, reused for many small traces) is started for every this many
#: seconds of estimated small-trace work, up to one per CPU beside this process: its start (about
#: 0.45 s of CPU) is then at most half of the work it takes over. Less work stays on this process.
SERVER_WORK_S = 1.0
#: Small traces a server lane keeps sent to its server: the one analysed and one waiting in its pipe, so
#: the server starts the next as it answers (the lane's thread needs this process's interpreter lock to
#: send it: 1-2 ms per trace behind this process's own analysis). Only while at least one trace per
#: small lane is left, so none is held back from a lane that has nothing to do at the end.
SERVER_QUEUE = 2


class RankFailure(NamedTuple):
    """A trace whose analysis gave no document: the reason, one line naming the file.

    (This module's records are named tuples, not dataclasses: the command imports it before it forks
    its helpers, and a frozen dataclass costs ~1 ms to define.)"""
    path: str
    reason: str
    #: True when the trace itself is bad (not readable, not a trace): the same on any machine, not retried.
    bad_input: bool = False

    def error(self) -> PerfkitError:
        """The exception a caller that cannot list failed ranks raises."""
        from ..errors import TraceFormatError

        return TraceFormatError(self.reason) if self.bad_input else PerfkitError(self.reason)


Outcome = Union[dict[str, Any], RankFailure]


class Engine(Protocol):
    """Analyses traces; yields ``(index into paths, document or RankFailure)`` as each arrives."""
    name: str

    def map(self, paths: Sequence[str]) -> Iterator[tuple[int, Outcome]]: ...


#: Exit status of a worker whose trace was bad input (its stderr holds the one-line message).
BAD_INPUT = 2


def cpu_count() -> int:
    """CPUs this process may keep busy: its affinity mask, capped by a container's CPU quota
    (:func:`perfkit.cpus.available`)."""
    from ..cpus import available

    return available()


# --------------------------------------------------------------------- one trace, the same everywhere


def analyse_json(path: str, workers: Optional[int] = None) -> str:
    """The analysis document of one trace as compact JSON (:func:`document_json`).

    Every engine's document is this text parsed once, in whatever process it was made (a server
    sends the text itself), so a document that came from a worker process, a Ray task or this
    process is the same object.
    """
    from ..analysis.pipeline import analyze_file
    from ..analysis.timeline import remember_across_traces

    remember_across_traces()  # this process analyses ranks of one job: their names are classified once
    return document_json(analyze_file(path, workers=workers).to_dict())


def analyse_document(path: str, workers: Optional[int] = None) -> dict[str, Any]:
    """The analysis document of one trace as plain JSON values: :func:`analyse_json`, parsed."""
    out: dict[str, Any] = json.loads(analyse_json(path, workers))
    return out


def document_json(doc: Any) -> str:
    """A document as compact JSON (one line; NaN refused)."""
    return json.dumps(doc, allow_nan=False, default=json_default, separators=(",", ":"))


def analyse_text(path: str, workers: Optional[int] = None) -> Union[str, "RankFailure"]:
    """:func:`analyse_json`, with a bad trace (or no memory left) as a :class:`RankFailure`."""
    try:
        return analyse_json(path, workers)
    except PerfkitError as exc:
        return RankFailure(path, str(exc), bad_input=True)
    except MemoryError:
        return RankFailure(path, f"{path}: out of memory while analysing the trace")


def analyse_outcome(path: str, workers: Optional[int] = None) -> Outcome:
    """:func:`analyse_document`, with a bad trace (or no memory left) as a :class:`RankFailure`."""
    out = analyse_text(path, workers)
    if isinstance(out, RankFailure):
        return out
    doc: dict[str, Any] = json.loads(out)
    return doc


def json_bytes(path: str) -> int:
    """Bytes of JSON in a trace file: a ``.gz`` file's inflated size (its trailer), else the file's size.

    Cheap (no decompression). The gzip trailer holds the size modulo 4 GiB, so a compressed file that
    is itself larger than :data:`SMALL_TRACE_BYTES` counts by its own size. A file that cannot be
    read counts as small: its analysis fails at once with the reader's message.
    """
    try:
        size = os.path.getsize(path)
        if not path.endswith(".gz") or size < 18:
            return size
        with open(path, "rb") as f:
            magic = f.read(2)
            if magic != b"\x1f\x8b":
                return size
            f.seek(-4, os.SEEK_END)
            inflated = int(struct.unpack("<I", f.read(4))[0])
        return max(size, inflated)
    except OSError:
        return 0


# --------------------------------------------------------------------- the local engine


class LocalPlan(NamedTuple):
    """How the local engine splits the traces: which are small, and how many lanes work at once."""
    small: list[int]
    large: list[int]
    lanes: int          #: traces in flight at once (this process's thread + servers, or fresh interpreters)
    small_lanes: int    #: lanes that take small traces: lane 0 is this process, the others servers
    decode_threads: Optional[int]  #: decode threads per trace
    helpers: int = 0    #: of the servers, how many are helpers forked from this process (lanes 1..helpers)


def plan_local(sizes: Sequence[int], *, cpus: int, processes: Optional[int] = None,
               workers: Optional[int] = None, small_bytes: int = SMALL_TRACE_BYTES,
               server_work_s: float = SERVER_WORK_S, forkable: bool = False) -> LocalPlan:
    """The local engine's plan for traces of these JSON sizes (pure: the unit tests check it).

    Large traces first (longest first: the job ends sooner), each in a fresh interpreter. Small ones
    on lane 0 (this process) and on server processes: one per ``server_work_s`` of estimated work
    (:data:`SMALL_TRACE_S` per trace + :data:`SMALL_MB_S` per MB), so a server is started only when it
    has several times its start to do. ``forkable``: servers can be helpers forked from this process
    (:mod:`perfkit.job.forked`), whose start is a millisecond or two: then every lane takes small
    traces from the second small trace on, each beside lane 0 with a helper of its own.
    """
    n = len(sizes)
    lanes = max(1, min(n, processes if processes is not None else cpus))
    small = [i for i, s in enumerate(sizes) if s <= small_bytes]
    large = sorted((i for i, s in enumerate(sizes) if s > small_bytes), key=lambda i: -sizes[i])
    decode = workers if workers is not None else (max(1, cpus // lanes) if lanes > 1 else None)
    if forkable and len(small) >= 2:
        small_lanes = min(lanes, len(small))
        return LocalPlan(small=small, large=large, lanes=lanes, small_lanes=small_lanes, decode_threads=decode,
                         helpers=small_lanes - 1)
    work_s = len(small) * SMALL_TRACE_S + sum(sizes[i] for i in small) / 1e6 * SMALL_MB_S
    servers = int(work_s // server_work_s) if server_work_s > 0 else n
    small_lanes = min(lanes, 1 + servers) if small else 0
    return LocalPlan(small=small, large=large, lanes=lanes, small_lanes=small_lanes, decode_threads=decode)


class LocalEngine:
    """This machine: small traces without a process start each, large ones each in a fresh interpreter.

    Args:
        workers: decode threads per trace (``perfkit analyze --workers``); default ``CPUs // lanes``.
        processes: traces in flight at once; default ``min(len(paths), CPUs)``.
        small_bytes: the small-trace threshold (:data:`SMALL_TRACE_BYTES`).
        server_work_s: estimated seconds of small-trace work per server process (:data:`SERVER_WORK_S`).
        analyse: how lane 0 analyses a small trace in this process (tests give a fake).
        server: starts a server process (tests give a fake); ``fresh``: analyses one large trace in a
            fresh interpreter (tests give a fake).
        forker: small traces may also go to helpers made by ``forker(decode_threads)`` (a server, or
            None where it cannot make one): :func:`perfkit.job.forked.fork_server`, which copies this
            process, given only by a process that is the command's alone (the CLI), and used only when
            :meth:`prepare` runs while the process has one thread. None (the default): no helpers.
    """
    name = "local"

    def __init__(self, *, workers: Optional[int] = None, processes: Optional[int] = None,
                 small_bytes: int = SMALL_TRACE_BYTES, server_work_s: float = SERVER_WORK_S,
                 analyse: Callable[[str, Optional[int]], Outcome] = analyse_outcome,
                 server: Optional[Callable[[Optional[int]], "Server"]] = None,
                 fresh: Optional[Callable[[str, Optional[int]], Outcome]] = None,
                 sizes: Optional[Callable[[str], int]] = None,
                 forker: Optional[Callable[[Optional[int]], Optional["Server"]]] = None) -> None:
        self.workers = workers
        self.processes = processes
        self.small_bytes = small_bytes
        self.server_work_s = server_work_s
        self.analyse = analyse
        self.server = server or ProcessServer
        self.fresh = fresh or fresh_interpreter
        self.sizes = sizes or json_bytes
        self.forker = forker
        self.last_plan: Optional[LocalPlan] = None
        self.servers_started = 0
        self._prepared: Optional[tuple[list[str], LocalPlan, list[Server]]] = None

    def prepare(self, paths: Sequence[str]) -> LocalPlan:
        """Plan ``paths`` and fork the plan's helpers now, while this process may have one thread.

        The command calls it before its progress bar starts; :meth:`map` of the same paths uses
        them (and calls it itself otherwise). Helpers that cannot be forked are left out of the plan.
        """
        paths = list(paths)
        self.close()
        sizes = [self.sizes(p) for p in paths]
        plan = self._plan(sizes, forkable=self.forker is not None)
        helpers: list[Server] = []
        if plan.helpers and self.forker is not None:
            for _ in range(plan.helpers):
                helper = self.forker(plan.decode_threads)
                if helper is None:
                    break
                helpers.append(helper)
            if len(helpers) < plan.helpers:  # fewer copies than planned: the lanes of the others take none
                plan = plan._replace(small_lanes=1 + len(helpers), helpers=len(helpers)) if helpers \
                    else self._plan(sizes, forkable=False)
        self.servers_started += len(helpers)
        self._prepared = (paths, plan, helpers)
        return plan

    def _plan(self, sizes: list[int], *, forkable: bool) -> LocalPlan:
        return plan_local(sizes, cpus=cpu_count(), processes=self.processes, workers=self.workers,
                          small_bytes=self.small_bytes, server_work_s=self.server_work_s, forkable=forkable)

    def close(self) -> None:
        """Stop the helpers of a :meth:`prepare` that no :meth:`map` used."""
        if self._prepared is not None:
            for helper in self._prepared[2]:
                helper.close()
            self._prepared = None

    def map(self, paths: Sequence[str]) -> Iterator[tuple[int, Outcome]]:
        paths = list(paths)
        if not paths:
            return
        if self._prepared is None or self._prepared[0] != paths:
            self.prepare(paths)
        assert self._prepared is not None
        _, plan, helpers = self._prepared
        self._prepared = None  # the lanes own the helpers from here: each closes its own
        self.last_plan = plan
        large: "SimpleQueue[int]" = SimpleQueue()
        small: "SimpleQueue[int]" = SimpleQueue()
        for i in plan.large:
            large.put(i)
        for i in plan.small:
            small.put(i)
        results: "SimpleQueue[tuple[int, Optional[Outcome], Optional[BaseException]]]" = SimpleQueue()
        stop = threading.Event()
        lock = threading.Lock()

        def lane(k: int) -> None:
            server: Optional[Server] = helpers[k - 1] if 1 <= k <= len(helpers) else None
            sent: deque[int] = deque()  # small traces sent to this lane's server, not yet answered
            try:
                while not stop.is_set():
                    try:
                        i = large.get_nowait()
                        results.put((i, self.fresh(paths[i], plan.decode_threads), None))
                        continue
                    except Empty:
                        pass
                    if k >= plan.small_lanes:
                        return
                    if k == 0:  # this process: no start at all
                        try:
                            i = small.get_nowait()
                        except Empty:
                            return
                        results.put((i, self.analyse(paths[i], plan.decode_threads), None))
                        continue
                    if server is None:
                        server = self.server(plan.decode_threads)
                        with lock:
                            self.servers_started += 1
                    # One trace waits in the server's pipe behind the one it analyses, while enough are
                    # left for every lane: it starts the next as it answers, without waiting for this
                    # thread (which needs this process's lock on the interpreter to send it).
                    while len(sent) < (SERVER_QUEUE if small.qsize() >= plan.small_lanes else 1):
                        try:
                            j = small.get_nowait()
                        except Empty:
                            break
                        server.send(paths[j])
                        sent.append(j)
                    if not sent:
                        return
                    i = sent.popleft()
                    out = server.receive(paths[i])
                    if isinstance(out, RankFailure) and not out.bad_input:
                        server.close()  # it died: the next small trace gets a new one
                        server = None
                        while sent:  # sent behind the trace it died on, never started: for any lane
                            small.put(sent.popleft())
                    results.put((i, out, None))
            except BaseException as exc:  # a bug, not a bad trace: the caller raises it
                results.put((-1, None, exc))
            finally:
                if server is not None:
                    server.close()

        threads = [threading.Thread(target=lane, args=(k,), name=f"perfkit-rank-lane-{k}", daemon=True)
                   for k in range(plan.lanes)]
        for t in threads:
            t.start()
        try:
            for _ in range(len(paths)):
                i, out, exc = results.get()
                if exc is not None:
                    raise exc
                assert out is not None
                yield i, out
        finally:
            stop.set()  # lanes finish the trace in hand and stop; servers are closed by their lane
            for t in threads:
                t.join()


# --------------------------------------------------------------------- worker processes


class Server(Protocol):
    """A worker process that analyses the paths sent to it one after another, in the order sent."""

    def send(self, path: str) -> None:
        """Queue ``path`` (its answer comes after those of the paths sent before it)."""

    def receive(self, path: str) -> Outcome:
        """The answer for ``path``, the oldest path sent and not yet received (a :class:`RankFailure`
        if the worker ended without answering)."""

    def close(self) -> None: ...


def _child_env() -> dict[str, str]:
    """The environment of a worker process: perfkit importable from where this process imported it."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def worker_died(path: str, returncode: Optional[int], stderr: str) -> RankFailure:
    """The failure of ``path``, whose worker ended with ``returncode`` (negative: a signal; None: not
    known) before answering; the last lines of its ``stderr`` are the reason's tail."""
    if returncode is not None and returncode < 0:
        import signal

        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        why = f"killed by {name}" + (" (out of memory?)" if returncode == -signal.SIGKILL else "")
    elif returncode is None:
        why = "its exit status is unknown"
    else:
        why = f"exit status {returncode}"
    tail = " ".join(stderr.strip().splitlines()[-3:])[-500:]
    return RankFailure(path, f"{path}: the analysis worker failed ({why})" + (f": {tail}" if tail else ""))


def fresh_interpreter(path: str, workers: Optional[int]) -> Outcome:
    """Analyse one trace in a fresh interpreter (``python -m perfkit.job.pool PATH``): all its memory
    is given back when it exits; the document comes back as JSON on stdout."""
    cmd = [sys.executable, "-m", "perfkit.job.pool", path]
    if workers is not None:
        cmd.append(str(workers))
    import subprocess  # only where a process is started (~3 ms of import: locale, signal, selectors)

    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_child_env())
    err = proc.stderr.decode(errors="replace")
    if proc.returncode == BAD_INPUT:
        lines = err.strip().splitlines()
        return RankFailure(path, lines[-1] if lines else f"{path}: not a readable trace", bad_input=True)
    if proc.returncode != 0:
        return worker_died(path, proc.returncode, err)
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


class PipeServer:
    """A worker that analyses one path at a time over two pipes, in the protocol of :func:`serve`.

    Subclasses say how the worker ended when its answer pipe closes (:meth:`died`) and how it is
    stopped (:meth:`close`)."""

    def __init__(self, requests: IO[bytes], answers: IO[bytes]) -> None:
        self._requests = requests
        self._answers = answers

    def send(self, path: str) -> None:
        """Queue ``path``: one short line in the request pipe (a few queued lines never fill it)."""
        try:
            self._requests.write((json.dumps(path) + "\n").encode())
            self._requests.flush()
        except (OSError, ValueError):  # the worker is gone (a broken or closed pipe): receive says how,
            pass  # after the answers it wrote before it ended

    def receive(self, path: str) -> Outcome:
        """The answer for ``path``, the oldest path sent and not yet received."""
        try:
            line = self._answers.readline()
        except (OSError, ValueError):  # the worker is gone (a broken or closed pipe)
            line = b""
        if not line:
            return self.died(path)
        answer = json.loads(line)
        if "doc" in answer:
            doc: dict[str, Any] = answer["doc"]
            return doc
        return RankFailure(path, str(answer["error"]), bad_input=bool(answer.get("bad_input")))

    def died(self, path: str) -> Outcome:
        """The failure of ``path``, whose worker ended without answering."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _close_pipes(self) -> None:
        """Close the request pipe (the worker's cue to end) and the answer pipe."""
        for stream in (self._requests, self._answers):
            try:
                stream.close()
            except OSError:
                pass


class ProcessServer(PipeServer):
    """A worker process started once (``python -m perfkit.job.pool --serve``) that analyses one small
    trace after another: a JSON line with the path in, a JSON line with the document or error out."""

    def __init__(self, workers: Optional[int]) -> None:
        import subprocess

        cmd = [sys.executable, "-m", "perfkit.job.pool", "--serve"] + ([str(workers)] if workers is not None else [])
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=_child_env())
        assert self.proc.stdin is not None and self.proc.stdout is not None and self.proc.stderr is not None
        super().__init__(self.proc.stdin, self.proc.stdout)
        self._stderr: list[bytes] = []
        self._drain = threading.Thread(target=self._read_stderr, args=(self.proc.stderr,), daemon=True)
        self._drain.start()

    def _read_stderr(self, stream: IO[bytes]) -> None:
        for line in stream:
            self._stderr = (self._stderr + [line])[-20:]

    def died(self, path: str) -> Outcome:
        rc = self.proc.wait()
        self._drain.join(timeout=5)
        return worker_died(path, rc, b"".join(self._stderr).decode(errors="replace"))

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._requests.close()
            except OSError:
                pass
            import subprocess

            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_pipes()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def serve(stdin: IO[str], stdout: IO[str], workers: Optional[int]) -> int:
    """The server's loop: analyse each path read from ``stdin`` (a JSON string per line) and answer on ``stdout``."""
    for line in stdin:
        if not line.strip():
            continue
        path = str(json.loads(line))
        saved, sys.stdout = sys.stdout, sys.stderr  # nothing but answers on the answer stream
        try:
            out = analyse_text(path, workers)
        finally:
            sys.stdout = saved
        if isinstance(out, RankFailure):
            answer = json.dumps({"error": out.reason, "bad_input": out.bad_input})
        else:
            answer = '{"doc":' + out + "}"  # the text itself: parsed once, by the command
        stdout.write(answer + "\n")
        stdout.flush()
    return 0

