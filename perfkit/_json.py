"""JSON helpers shared by the stages (no numpy import: the report layer stays light)."""

from __future__ import annotations

from typing import Any


def json_default(obj: Any) -> Any:
    """``json.dump(default=...)``: numpy scalars and arrays that slipped into a document become plain values."""
    if hasattr(obj, "item") and getattr(obj, "ndim", 0) == 0:
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
