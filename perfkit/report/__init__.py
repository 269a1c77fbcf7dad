"""Reports: the analysis document (schema ``perfkit.analysis/1``) as terminal text, Markdown or JSON.

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
from typing import Any, Union

from .console import render_console
from .._json import json_default
from .markdown import render_markdown


def write_json(doc: dict[str, Any], path: Union[str, "os.PathLike[str]"]) -> None:
    """Write the document as indented JSON (2 spaces); NaN or infinity raise ValueError instead of
    producing invalid JSON."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2, allow_nan=False, default=json_default)
        fh.write("\n")


__all__ = ["render_console", "render_markdown", "write_json"]
