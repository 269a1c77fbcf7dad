"""Analyse several traces at once, each in a fresh worker process, with memory bounded.

``analyze_docs(paths)`` analyses every path (:func:`perfkit.analysis.pipeline.analyze_file`)
with at most ``min(len(paths), CPUs)`` worker processes at a time and returns
the per-trace documents in the order of ``paths``. Memory does not grow with
the number of traces:

* a worker sends back only the small JSON document (tens of kB), never the
  columns or frames it built;
* each worker analyses one trace and exits, so a process that read a 1 GB
  trace gives all of its memory back; the peak is at most ``processes``
  analyses at once.

Workers are fresh interpreters (``python -m perfkit.job.pool PATH``), run
by a ``concurrent.futures`` thread pool that waits on them. Not a
``multiprocessing`` pool: ``fork`` is unsafe in a parent with threads (a
progress bar) and keeps a worker's memory across traces unless it is recycled;
``spawn``/``forkserver`` workers re-run the caller's ``__main__`` module (a
user's script calling ``perfkit.analyze``) and fail when it is ``<stdin>``. A
fresh interpreter costs about 0.3 s to import the analysis, once per trace.

The trace reader decodes one large file on several threads; with several
traces in flight each gets ``CPUs // processes`` threads (1 when there are more
traces than CPUs), so the machine is not oversubscribed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Callable, Optional

from ..errors import PerfkitError, TraceFormatError
from .._json import json_default

#: Exit status of a worker whose trace was bad input (its stderr holds the one-line message).
_BAD_INPUT = 2


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask, else the machine's count)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def analyze_docs(paths: list[str], *, workers: Optional[int] = None, processes: Optional[int] = None,
                 progress: Optional[Callable[[str, int, int], None]] = None) -> list[dict[str, Any]]:
    """The analysis document of each path, in order.

    Args:
        paths: trace files.
        workers: decode threads per trace (``perfkit analyze --workers``). Defaults
            to ``CPUs // processes``.
        processes: worker processes at a time. Defaults to ``min(len(paths), CPUs)``;
            1 analyses in this process, one trace after the other.
        progress: ``progress(description, done, total)``, called as traces finish
            (two units per trace, like :func:`perfkit.job.analyze_paths`).

    Raises:
        TraceFormatError: a trace is not readable (the worker's message).
    """
    from ..analysis.pipeline import analyze_file

    report = progress or (lambda description, done, total: None)
    n = len(paths)
    cpus = cpu_count()
    procs = max(1, min(n, processes if processes is not None else cpus))
    per_trace = workers if workers is not None else (max(1, cpus // procs) if procs > 1 else None)
    docs: list[Optional[dict[str, Any]]] = [None] * n
    if procs == 1:
        for i, p in enumerate(paths):
            report(f"analyzing {os.path.basename(p)}", 2 * i, 2 * n)
            docs[i] = analyze_file(p, workers=per_trace).to_dict()
        report("analysed", 2 * n, 2 * n)
        return docs  # type: ignore[return-value]
    report(f"analyzing {n} traces, {procs} at a time", 0, 2 * n)
    with ThreadPoolExecutor(max_workers=procs) as pool:
        futures = {pool.submit(_run_worker, p, per_trace): i for i, p in enumerate(paths)}
        try:
            for done, fut in enumerate(as_completed(futures), 1):
                i = futures[fut]
                docs[i] = fut.result()
                report(f"analysed {os.path.basename(paths[i])}", 2 * done, 2 * n)
        except BaseException:
            for f in futures:
                f.cancel()  # do not start more workers; running ones finish their trace
            raise
    return docs  # type: ignore[return-value]


def _run_worker(path: str, workers: Optional[int]) -> dict[str, Any]:
    """Analyse one trace in a fresh interpreter; its document comes back as JSON on stdout."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "perfkit.job.pool", path]
    if workers is not None:
        cmd.append(str(workers))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    if proc.returncode == _BAD_INPUT:
        raise TraceFormatError(proc.stderr.decode(errors="replace").strip().splitlines()[-1])
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip()[-2000:]
        raise PerfkitError(f"{path}: the analysis worker failed (exit status {proc.returncode}): {tail}")
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def _worker_main(argv: list[str]) -> int:
    from ..analysis.pipeline import analyze_file

    path = argv[0]
    workers = int(argv[1]) if len(argv) > 1 else None
    try:
        doc = analyze_file(path, workers=workers).to_dict()
    except PerfkitError as exc:
        sys.stderr.write(f"{exc}\n")
        return _BAD_INPUT
    out = json.dumps(doc, allow_nan=False, default=json_default, separators=(",", ":"))
    sys.stdout.write(out)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
