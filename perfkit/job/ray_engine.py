"""The Ray engine: each rank of a job analysed by a Ray task on a cluster (``perfkit analyze --engine ray``).

* Each task reads its trace from the path the worker sees (a shared file system: every node
  must see the traces at the path the driver was given) and returns only the rank's small
  document (:func:`perfkit.job.engines.analyse_document`, tens of kB), never the trace.
* A trace of at most :data:`~perfkit.job.engines.SMALL_TRACE_BYTES` of JSON runs in a reused
  Ray worker; a larger one in a worker that exits after its task (``max_calls=1``), so the
  memory of a 1 GB trace is given back, as the local engine's fresh interpreter does, and
  reserves :data:`LARGE_MEMORY_PER_JSON_BYTE` bytes of memory per byte of JSON.
* A task whose worker dies (out of memory, killed node) or that raises anything but bad
  input is retried once (``max_retries=1``, ``retry_exceptions=True``); bad input (a corrupt
  or unreadable trace) is the same on any node, so the task answers it as a failure at once.
  What still fails becomes a :class:`~perfkit.job.engines.RankFailure` with the reason: a
  ``failed`` rank of the job view (``rank_failed``), and the job view is still written.
* The driver waits on the tasks with ``ray.wait`` and takes each document as it arrives.

``ray`` is imported only here, only when this engine runs; without it the one-line error
names the option and the install command (``pip install 'perfkit[ray]'``).
"""

from __future__ import annotations

import importlib.util
from typing import Any, Iterator, Optional, Sequence

from ..errors import MissingDependencyError, PerfkitError
from .engines import SMALL_TRACE_BYTES, Outcome, RankFailure, analyse_outcome, json_bytes

__all__ = ["RayEngine", "RAY_MISSING"]

#: Memory a large rank's task reserves from Ray's scheduler, per byte of the trace's JSON: the analysis of
#: a 1 GB trace peaks at about 0.8 GB (docs/performance.md), so a node is not given more large ranks than
#: its memory holds.
LARGE_MEMORY_PER_JSON_BYTE = 1.0

RAY_MISSING = "--engine ray needs Ray, which is not installed: pip install 'perfkit[ray]'"


def _rank_task(path: str, workers: Optional[int]) -> tuple[str, Any, bool]:
    """One rank, in a Ray worker: ("doc", document, False) or ("failed", reason, bad_input)."""
    out = analyse_outcome(path, workers)
    if isinstance(out, RankFailure):
        if not out.bad_input:
            raise MemoryError(out.reason)  # the retry may land on a worker with more memory
        return ("failed", out.reason, True)
    return ("doc", out, False)


class RayEngine:
    """Ranks as Ray tasks.

    Args:
        address: the cluster (``ray.init(address=...)``: ``auto``, ``ray://host:10001``, ``host:6379``);
            None starts a cluster on this machine, unless this process is connected to one already
            (it is then used, and left running).
        workers: decode threads per trace (default: one per task, ``num_cpus=1``).
        small_bytes: traces above this many bytes of JSON get a worker of their own (``max_calls=1``).
        init_kwargs: more arguments of ``ray.init`` when this engine starts or joins the cluster.
    """
    name = "ray"

    def __init__(self, *, address: Optional[str] = None, workers: Optional[int] = None,
                 small_bytes: int = SMALL_TRACE_BYTES, init_kwargs: Optional[dict[str, Any]] = None) -> None:
        if importlib.util.find_spec("ray") is None:
            raise MissingDependencyError(RAY_MISSING)
        self.address = address
        self.workers = workers
        self.small_bytes = small_bytes
        self.init_kwargs = dict(init_kwargs or {})

    def map(self, paths: Sequence[str]) -> Iterator[tuple[int, Outcome]]:
        try:
            import ray
        except ImportError as exc:  # found but broken
            raise MissingDependencyError(f"{RAY_MISSING} ({exc})") from exc

        paths = list(paths)
        started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, **self.init_kwargs}
            if self.address:
                _check_reachable(self.address)
            try:
                ray.init(address=self.address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
                where = f"--address {self.address}" if self.address else "--engine ray"
                raise PerfkitError(f"{where}: could not start or join the Ray cluster: {_one_line(exc)}") from exc
            started = True
        try:
            cpus = max(1, int(self.workers or 1))
            options = {"max_retries": 1, "retry_exceptions": True, "num_cpus": cpus}
            small = ray.remote(**options)(_rank_task)
            large = ray.remote(max_calls=1, **options)(_rank_task)
            pending: dict[Any, int] = {}
            for i, p in enumerate(paths):
                size = json_bytes(p)
                if size > self.small_bytes:  # its own worker, and memory reserved for its analysis
                    ref = large.options(memory=int(size * LARGE_MEMORY_PER_JSON_BYTE)).remote(p, self.workers)
                else:
                    ref = small.remote(p, self.workers)
                pending[ref] = i
            waiting = list(pending)
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1)
                for ref in done:
                    i = pending.pop(ref)
                    yield i, self._outcome(ray, ref, paths[i])
        finally:
            if started:
                ray.shutdown()

    @staticmethod
    def _outcome(ray: Any, ref: Any, path: str) -> Outcome:
        try:
            kind, value, bad = ray.get(ref)
        except ray.exceptions.RayError as exc:
            return RankFailure(path, f"{path}: the Ray task failed after a retry: {_one_line(exc)}")
        if kind == "failed":
            return RankFailure(path, str(value), bad_input=bool(bad))
        doc: dict[str, Any] = value
        return doc


def _one_line(exc: BaseException) -> str:
    """The reason of a Ray error in one line: its type and the last line of what it says."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}"
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return f"{type(exc).__name__}" + (f": {lines[0][:300]}" if lines else "")


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail at once, in one line, when nothing listens at ``host:port`` (Ray itself retries for minutes)."""
    import socket

    rest = address.split("://", 1)[-1]
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return  # "auto", "local" or a form Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise PerfkitError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc})") from exc
