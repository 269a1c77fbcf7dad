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
from typing import TYPE_CHECKING, Any, Union

from .._json import json_default

if TYPE_CHECKING:
    from .console import render_console
    from .markdown import render_markdown


def __getattr__(name: str) -> Any:
    """``render_console`` and ``render_markdown``, imported when first asked for: a command that
    only writes the JSON document (``perfkit analyze --json -q``) does not import the renderers and
    rich's tables (~12 ms)."""
    if name == "render_console":
        from .console import render_console

        return render_console
    if name == "render_markdown":
        from .markdown import render_markdown

        return render_markdown
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def write_json(doc: dict[str, Any], path: Union[str, "os.PathLike[str]"]) -> None:
    """Write the document as indented JSON (2 spaces), atomically (a reader never sees half a file).

    A NaN or infinite number is written as null (unknown) with one warning naming the fields: it is
    a bug upstream, but never a crash here and never invalid JSON (``allow_nan=False`` stays as the
    guarantee).
    """
    from .._io import atomic_open

    text = _indented(doc)
    if text is None:  # a NaN or infinity somewhere: written as null, with the warning
        from ..documents import finite_or_none

        found: list[str] = []
        clean = finite_or_none(doc, "", found)
        if found:
            shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
            print(f"perfkit: warning: {os.fspath(path)}: {len(found)} number(s) not finite (NaN or infinity), "
                  f"written as null (unknown): {shown}", file=sys.stderr)
        text = json.dumps(clean, indent=2, allow_nan=False, default=json_default)
    with atomic_open(path, "w") as fh:
        fh.write(text + "\n")


def _indented(doc: Any) -> Union[str, None]:
    """``json.dumps(doc, indent=2, allow_nan=False, default=json_default)``, 3x faster: the standard
    library's C encoder writes the compact text (the indented form is its pure-Python encoder), which
    perfkit's C layout (``perfkit._indent``, built by setup.py) or else ``msgspec.json.format``
    indents, keeping every token as written (numbers as ``float.__repr__``, escapes as
    ``ensure_ascii``); tests/unit/test_write_json_text.py compares each with json.dumps. None where
    the document holds a NaN or an infinity (or a reference cycle): the caller's slower path."""
    try:
        compact = json.dumps(doc, allow_nan=False, default=json_default, separators=(",", ":"))
    except ValueError:
        return None
    try:
        from .._indent import indent2  # importing msgspec alone costs ~7 ms of a command
    except ImportError:
        import msgspec

        return msgspec.json.format(compact, indent=2)
    return indent2(compact)


__all__ = ["render_console", "render_markdown", "write_json"]
