"""Worker processes of the local engine (:mod:`perfkit.job.engines`), and ``analyze_docs``.

``python -m perfkit.job.pool PATH [WORKERS]`` analyses one trace and exits: the
fresh interpreter of a *large* trace, so a process that read a 1 GB trace gives
all of its memory back. ``python -m perfkit.job.pool --serve [WORKERS]`` is a
server started once that analyses one *small* trace after another (a JSON line
with the path in, a JSON line with the document out), so many small ranks pay
one interpreter start, not one each. Either sends back only the small JSON
document (tens of kB), never the columns or frames it built.

Workers are fresh interpreters, run by threads that wait on them. Not a
``multiprocessing`` pool: ``fork`` is unsafe in a parent with threads (a
progress bar) and keeps a worker's memory across traces unless it is recycled;
``spawn``/``forkserver`` workers re-run the caller's ``__main__`` module (a
user's script calling ``perfkit.analyze``) and fail when it is ``<stdin>``. A
fresh interpreter costs about 0.3 s to import the analysis. The one place perfkit
forks is the ``perfkit analyze`` command's own small-trace helpers, before its
progress bar or any other thread starts (:mod:`perfkit.job.forked`).

The trace reader decodes one large file on several threads; with several
traces in flight each gets ``CPUs // lanes`` threads (1 when there are more
traces than CPUs), so the machine is not oversubscribed.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Optional

from ..errors import PerfkitError

from .engines import BAD_INPUT as BAD_INPUT, cpu_count as cpu_count  # the worker's exit status; CPUs of this process


def analyze_docs(paths: list[str], *, workers: Optional[int] = None, processes: Optional[int] = None,
                 progress: Optional[Callable[[str, int, int], None]] = None) -> list[dict[str, Any]]:
    """The analysis document of each path, in order, by the local engine.

    Args:
        paths: trace files.
        workers: decode threads per trace (``perfkit analyze --workers``).
        processes: traces in flight at once. Defaults to ``min(len(paths), CPUs)``.
        progress: ``progress(description, done, total)``, called as traces finish (one unit per trace).

    Raises:
        TraceFormatError: a trace is not readable (the first to fail; use the engine itself to
            get every rank's outcome).
    """
    from .engines import LocalEngine, RankFailure

    report = progress or (lambda description, done, total: None)
    n = len(paths)
    docs: list[Optional[dict[str, Any]]] = [None] * n
    report(f"analysing {n} traces", 0, n)
    for done, (i, out) in enumerate(LocalEngine(workers=workers, processes=processes).map(paths), 1):
        if isinstance(out, RankFailure):
            raise out.error()
        docs[i] = out
        report(f"analysed {os.path.basename(paths[i])}", done, n)
    return [d for d in docs if d is not None]


def _worker_main(argv: list[str]) -> int:
    from .engines import document_json, serve

    if argv and argv[0] == "--serve":
        return serve(sys.stdin, sys.stdout, int(argv[1]) if len(argv) > 1 else None)
    from ..analysis.pipeline import analyze_file

    path = argv[0]
    workers = int(argv[1]) if len(argv) > 1 else None
    try:
        doc = analyze_file(path, workers=workers).to_dict()
    except PerfkitError as exc:
        sys.stderr.write(f"{exc}\n")
        return BAD_INPUT
    sys.stdout.write(document_json(doc))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
