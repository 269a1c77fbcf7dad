"""The public-trace corpus under tests/data/traces: one folder per source with a MANIFEST.md.

A folder holds one trace file, or several (one per rank of a job); every trace file is one
corpus entry. An entry's slug is its folder's name when the folder holds one file, and
``folder/file`` (file name without ``.json``/``.json.gz``) when it holds several, so slugs are
unique. The source fields come from the MANIFEST's two-column table
(``| source repository | ... |``, ``| path | ... |``, ``| commit | ... |``, ``| licence | ... |``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "traces")
INDEX = os.path.join(os.path.dirname(ROOT), "MANIFEST.md")
TRACE_SUFFIXES = (".json", ".json.gz")


@dataclass(frozen=True)
class Entry:
    slug: str
    path: str  #: the trace file
    repository: str
    source_path: str
    commit: str
    licence: str
    folder: str = ""  #: the folder under ROOT that holds it


def _field(text: str, name: str) -> str:
    m = re.search(r"^\| " + re.escape(name) + r" \| (.*?) \|$", text, re.MULTILINE)
    return m.group(1).strip().strip("`") if m else ""


def _stem(name: str) -> str:
    for suffix in sorted(TRACE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def folders() -> list[str]:
    """Every folder under ROOT, sorted (whether or not it has a MANIFEST)."""
    return sorted(f for f in os.listdir(ROOT) if os.path.isdir(os.path.join(ROOT, f)))


def trace_files(folder: str) -> list[str]:
    """The trace files of one folder, sorted by name."""
    return sorted(f for f in os.listdir(os.path.join(ROOT, folder)) if f.endswith(TRACE_SUFFIXES))


def entries() -> list[Entry]:
    """Every corpus trace file, sorted by slug."""
    out = []
    for folder in folders():
        manifest = os.path.join(ROOT, folder, "MANIFEST.md")
        if not os.path.isfile(manifest):
            continue
        with open(manifest, encoding="utf-8") as fh:
            text = fh.read()
        files = trace_files(folder)
        for f in files:
            slug = folder if len(files) == 1 else f"{folder}/{_stem(f)}"
            out.append(Entry(slug=slug, path=os.path.join(ROOT, folder, f), repository=_field(text, "source repository"),
                             source_path=_field(text, "path"), commit=_field(text, "commit"),
                             licence=_field(text, "licence"), folder=folder))
    return sorted(out, key=lambda e: e.slug)


def index_rows() -> dict[str, list[str]]:
    """The rows of the index table in tests/data/MANIFEST.md: slug -> the other cells."""
    rows = {}
    with open(INDEX, encoding="utf-8") as fh:
        for line in fh:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.startswith("| ") and len(cells) == 6 and cells[0] not in ("slug",) and not set(cells[0]) <= {"-"}:
                rows[cells[0]] = cells[1:]
    return rows
