"""Reports: the analysis document (schema ``perfkit.analysis/2``) as terminal text, Markdown or JSON.

Every renderer takes only the JSON document (``Analysis.to_dict()``), never a
Trace or torch, so a saved ``analysis.json`` renders exactly like a fresh one::

    from rich.console import Console
    from perfkit.report import render_console, render_markdown, write_json

    doc = perfkit.analyze("rank0.pt.trace.json.gz").to_dict()
    render_console(doc, Console())
    pr_comment = render_markdown(doc)
    write_json(doc, "analysis.json")
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Union

from .console import render_console
from .._json import json_default
from .markdown import render_markdown


def write_json(doc: dict[str, Any], path: Union[str, "os.PathLike[str]"]) -> None:
    """Write the document as indented JSON (2 spaces), atomically (a reader never sees half a file).

    A NaN or infinite number is written as null (unknown) with one warning naming the fields: it is
    a bug upstream, but never a crash here and never invalid JSON (``allow_nan=False`` stays as the
    guarantee).
    """
    from .._io import atomic_open
    from ..documents import finite_or_none

    found: list[str] = []
    clean = finite_or_none(doc, "", found)
    if found:
        shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        print(f"perfkit: warning: {os.fspath(path)}: {len(found)} number(s) not finite (NaN or infinity), "
              f"written as null (unknown): {shown}", file=sys.stderr)
    text = json.dumps(clean, indent=2, allow_nan=False, default=json_default) + "\n"
    with atomic_open(path, "w") as fh:
        fh.write(text)


__all__ = ["render_console", "render_markdown", "write_json"]
