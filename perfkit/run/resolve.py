"""What a path a user gives stands for: one resolver for every command that reads a run.

A path is one of:

* a trace file (``.json`` / ``.json.gz``, not a perfkit document): kind ``"trace"``;
* a perfkit document file (``analysis.json``, ``rank<R>.analysis.json``, a job document, or any
  ``.json`` whose head names a ``perfkit.`` schema): kind ``"document"``;
* a run directory (it holds ``analysis.json`` or ``rank<R>.analysis.json``): kind ``"run"``, with
  its documents and the traces beside them;
* a folder of traces (no document): kind ``"traces"``.

:func:`resolve` only looks (a directory listing, the first 4 KiB of a ``.json``); reading and checking
the documents is :mod:`perfkit.documents`' job, and analysing traces the analysis'
(:mod:`perfkit.run.load` does both for one path). Every error is one line naming the path
(:class:`perfkit.errors.TraceFormatError`). Names come from :mod:`perfkit.run.layout`.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from ..errors import TraceFormatError
from . import layout

Kind = Literal["trace", "document", "run", "traces"]


@dataclass(frozen=True)
class Resolved:
    """A path as given (``path``), what it is (``kind``) and the files it stands for."""

    path: str
    kind: Kind
    #: the trace files (a trace: itself; a run or a folder: the traces directly inside it)
    traces: tuple[str, ...] = ()
    #: the analysis document to read (a document: itself; a run: its ``analysis.json``, when there)
    document: Optional[str] = None
    #: a run's ``rank<R>.analysis.json`` files, sorted by name
    rank_documents: tuple[str, ...] = ()

    def need_traces(self) -> tuple[str, ...]:
        """The traces, or one line saying that the directory holds none."""
        if not self.traces:
            raise TraceFormatError(f"{self.path}: directory holds no .json or .json.gz trace")
        return self.traces


def resolve(path: str | os.PathLike[str]) -> Resolved:
    """What ``path`` is (see the module docstring). A path that does not exist is refused."""
    p = os.fspath(path)
    if os.path.isdir(p):
        names = _listdir(p)
        document = os.path.join(p, layout.ANALYSIS) if layout.ANALYSIS in names else None
        ranks = tuple(str(f) for f in sorted(Path(p).glob(layout.RANK_ANALYSIS_GLOB)) if f.is_file())
        traces = tuple(_traces_in(p))
        return Resolved(p, "run" if document or ranks else "traces", traces, document, ranks)
    if not os.path.lexists(p):
        raise TraceFormatError(f"{p}: no such file or directory")
    if is_document_file(p):
        return Resolved(p, "document", (), p)
    return Resolved(p, "trace", (p,))


def is_document_file(path: str) -> bool:
    """An ``analysis.json`` by name, or a ``.json`` whose first 4 KiB name a perfkit schema."""
    return path.endswith(layout.ANALYSIS) or (path.endswith(".json") and _names_schema(path))


def trace_files(paths: list[str]) -> list[str]:
    """Files as given; a directory stands for the trace files directly inside it (an empty one is refused)."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            out.extend(resolve(p).need_traces())
        else:
            out.append(p)
    return out


def rank_document_files(paths: list[str]) -> list[str]:
    """Per-rank document files: files as given; a directory stands for its ``rank<R>.analysis.json``
    files, else its ``analysis.json``."""
    out: list[str] = []
    for p in paths:
        if not os.path.isdir(p):
            out.append(p)
            continue
        r = resolve(p)
        found = list(r.rank_documents) or ([str(Path(p) / layout.ANALYSIS)] if r.document and os.path.isfile(r.document) else [])
        if not found:
            raise TraceFormatError(f"{p}: directory holds no {layout.RANK_ANALYSIS_GLOB} or {layout.ANALYSIS}")
        out += found
    return out


def run_paths(paths: list[str]) -> list[str]:
    """Paths as given; a folder that is not itself a run but holds run folders stands for each of them.

    A run here: a directory with an ``analysis.json`` or a file named like a trace."""
    out: list[str] = []
    for p in paths:
        if not os.path.exists(p):
            raise TraceFormatError(f"{p}: no such run directory, analysis.json or trace")
        if os.path.isdir(p) and not _holds_run(p):
            subs = sorted(os.path.join(p, d) for d in _listdir(p) if os.path.isdir(os.path.join(p, d))
                          and _holds_run(os.path.join(p, d)))
            if subs:
                out.extend(subs)
                continue
        out.append(p)
    return out


def _holds_run(path: str) -> bool:
    if os.path.isfile(os.path.join(path, layout.ANALYSIS)):
        return True
    return any("trace" in n and n.endswith(layout.TRACE_SUFFIXES) and os.path.isfile(os.path.join(path, n))
               for n in _listdir(path))


def _listdir(path: str) -> list[str]:
    """The names in a directory, sorted; an unreadable one is refused with one line naming it."""
    try:
        return sorted(f.name for f in Path(path).iterdir())
    except OSError as exc:
        raise TraceFormatError(f"{path}: cannot list the directory ({exc.strerror or exc})") from None


def _traces_in(folder: str) -> list[str]:
    """The trace files directly inside ``folder``: those named like traces (``*.pt.trace.json.gz``)
    when there are any, else every ``.json``/``.json.gz`` but the analysis documents (other JSON, such
    as analysis.json or truth.json, sits beside traces in run folders)."""
    files = [n for n in _listdir(folder) if layout.is_trace_name(n) and os.path.isfile(os.path.join(folder, n))]
    named = [n for n in files if "trace" in n] or [n for n in files if not n.endswith(layout.ANALYSIS)]
    return [str(Path(folder) / n) for n in named]


def _names_schema(path: str) -> bool:
    """True when the first 4 KiB of a regular file name a perfkit schema."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return re.search(rb'"schema"\s*:\s*"perfkit\.', head) is not None
