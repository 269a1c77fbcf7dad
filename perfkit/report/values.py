"""Reading a document's values safely and the plainest number formats (no rich): shared by every
renderer (console, Markdown, HTML, plots, ranks)."""

from __future__ import annotations

import math
from typing import Any, Iterable

from .. import units

DASH = "-"


def get(obj: Any, *path: Any, default: Any = None) -> Any:
    """``obj[path[0]][path[1]]...``, or ``default`` where a key is missing, a value is None or a type is wrong."""
    cur = obj
    for key in path:
        if isinstance(cur, dict):
            cur = cur.get(key)
        elif isinstance(cur, (list, tuple)) and isinstance(key, int) and -len(cur) <= key < len(cur):
            cur = cur[key]
        else:
            return default
        if cur is None:
            return default
    return cur


def num(value: Any) -> float | None:
    """A finite float, or None for anything else (missing, None, str, NaN, bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def text(value: Any, default: str = DASH) -> str:
    """A string for a free-text field; None and empty become ``default``."""
    if value is None:
        return default
    s = str(value).strip()
    return s if s else default


def fmt_ms(value: Any) -> str:
    """Milliseconds: 2 decimals, 3 below 0.1 ms so small copies do not read as zero."""
    v = num(value)
    if v is None:
        return DASH
    if v == 0:
        return "0.00"
    if abs(v) >= 1000:
        return f"{v:,.1f}"
    if abs(v) < 0.1:
        return f"{v:.3f}"
    return f"{v:.2f}"


def compress_ids(ids: Iterable[Any], max_chars: int | None = None) -> str:
    """[5, 6, 7, 9] -> "5-7, 9" (with ``max_chars``: cut there, ``... (N more)``)."""
    return units.compress_ids([int(i) for i in ids if num(i) is not None], max_chars)
