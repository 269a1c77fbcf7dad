"""The analysis result: the JSON document (schema ``perfkit.analysis/1``) plus tables.

:class:`Analysis` is the one data type the report and budget stages take. Its
``doc`` is plain JSON-ready data; the DataFrame properties are views built
from it for notebook users.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._json import json_default

if TYPE_CHECKING:  # pandas is imported only when a table is asked for
    import pandas as pd

SCHEMA = "perfkit.analysis/1"


def read_document(path: str, *, trace_analysis: bool = False) -> dict[str, Any]:
    """An analysis document from a JSON file, its schema and field types checked (:mod:`perfkit.documents`).

    DocumentError (one line naming the file) if it is not one; fields that are wrong but not needed are
    dropped with one warning on stderr.
    """
    from ..documents import load_analysis

    return load_analysis(path, trace_analysis=trace_analysis)


@dataclass
class Analysis:
    """What ``perfkit.analyze`` returns.

    Attributes:
        doc: the JSON document (see docs/analysis.md for every key and unit).
    """

    doc: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        return self.doc

    def to_json(self, indent: int = 2) -> str:
        """The document as JSON; a NaN or infinite number (never expected) is written as null (unknown)."""
        from ..documents import finite_or_none

        return json.dumps(finite_or_none(self.doc), indent=indent, allow_nan=False, default=json_default)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "Analysis":
        return cls(doc=doc)

    @property
    def steps_table(self) -> "pd.DataFrame":
        """One row per step: id, wall/window/busy/idle ms, per-phase ms, kept, reason."""
        return _frame(self.doc.get("steps", {}).get("table", []))

    def _group(self, key: str) -> "pd.DataFrame":
        rows = [{"name": k, **v} for k, v in self.doc.get(key, {}).items() if isinstance(v, dict)]
        return _frame(rows)

    @property
    def phases(self) -> "pd.DataFrame":
        """forward/backward/optimizer/other: gpu_ms_per_step, share."""
        return self._group("phases")

    @property
    def categories(self) -> "pd.DataFrame":
        """matmul/attention/...: gpu_ms_per_step, share."""
        return self._group("categories")

    @property
    def copies(self) -> "pd.DataFrame":
        rows = [{"direction": k, **v} for k, v in self.doc.get("copies", {}).items() if k in ("h2d", "d2h", "d2d")]
        return _frame(rows)

    @property
    def overview(self) -> "pd.DataFrame":
        return self._group("overview")

    @property
    def top_ops(self) -> "pd.DataFrame":
        return _frame(self.doc.get("top_ops", []))

    @property
    def top_kernels(self) -> "pd.DataFrame":
        return _frame(self.doc.get("top_kernels", []))

    @property
    def findings(self) -> list[dict[str, Any]]:
        return list(self.doc.get("findings", []))


def _frame(rows: Any) -> "pd.DataFrame":
    import pandas as pd

    return pd.DataFrame(rows)
