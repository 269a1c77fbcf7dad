"""The public-trace corpus under tests/data/traces: one folder per trace with a MANIFEST.md."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "traces")
TRACE_SUFFIXES = (".json", ".json.gz")


@dataclass(frozen=True)
class Entry:
    slug: str
    path: str  #: the trace file
    repository: str
    source_path: str
    commit: str
    licence: str


def _field(text: str, name: str) -> str:
    m = re.search(r"^\| " + re.escape(name) + r" \| (.*?) \|$", text, re.MULTILINE)
    return m.group(1).strip().strip("`") if m else ""


def entries() -> list[Entry]:
    """Every corpus trace, sorted by slug."""
    out = []
    for slug in sorted(os.listdir(ROOT)):
        folder = os.path.join(ROOT, slug)
        manifest = os.path.join(folder, "MANIFEST.md")
        if not os.path.isfile(manifest):
            continue
        traces = [f for f in os.listdir(folder) if f.endswith(TRACE_SUFFIXES)]
        for f in sorted(traces):
            text = open(manifest, encoding="utf-8").read()
            out.append(Entry(slug=slug, path=os.path.join(folder, f), repository=_field(text, "source repository"),
                             source_path=_field(text, "path"), commit=_field(text, "commit"),
                             licence=_field(text, "licence")))
    return out
