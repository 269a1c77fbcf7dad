"""The analysis result: the JSON document (schema ``perfkit.analysis/2``, :mod:`.document`) plus tables.

:class:`Analysis` is the one data type the report and budget stages take. Its
``doc`` is plain JSON-ready data; the DataFrame properties are views built
from it for notebook users.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from .._json import json_default

if TYPE_CHECKING:  # pandas is imported only when a table is asked for
    import pandas as pd

from .document import SCHEMA, TIME_BASES, AnalysisDoc, Finding, TimeBasis, is_job, upgrade

__all__ = ["Analysis", "JobAnalysis", "SCHEMA", "read_document", "document_of"]


def read_document(path: str, *, trace_analysis: bool = False) -> dict[str, Any]:
    """An analysis document from a JSON file, its schema and field types checked (:mod:`perfkit.documents`).

    DocumentError (one line naming the file) if it is not one; fields that are wrong but not needed are
    dropped with one warning on stderr.
    """
    from ..documents import load_analysis

    return load_analysis(path, trace_analysis=trace_analysis)


@dataclass
class Analysis:
    """What ``perfkit.analyze`` returns: one trace's (or one run's) analysis.

    Attributes:
        doc: the JSON document (:class:`perfkit.analysis.document.AnalysisDoc`; docs/analysis.md
            lists every key and unit).
    """

    doc: AnalysisDoc

    @property
    def is_job(self) -> bool:
        """True for the job of several ranks (:class:`JobAnalysis`)."""
        return False

    @property
    def time_basis(self) -> Optional[TimeBasis]:
        """"gpu" or "cpu": whose time the figures are (document key ``trace.time_basis``); None when the
        document has no trace analysis (never a guess)."""
        basis = (self.doc.get("trace") or {}).get("time_basis")
        return basis if basis in TIME_BASES else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        return self.doc  # type: ignore[return-value]

    def to_json(self, indent: int = 2) -> str:
        """The document as JSON; a NaN or infinite number (never expected) is written as null (unknown)."""
        from ..documents import finite_or_none

        return json.dumps(finite_or_none(self.doc), indent=indent, allow_nan=False, default=json_default)

    @classmethod
    def from_dict(cls, doc: Any) -> "Analysis":
        """The result for a document (a schema-1 one is upgraded): a :class:`JobAnalysis` for a job's."""
        doc = upgrade(doc)
        return JobAnalysis(doc=doc) if is_job(doc) else Analysis(doc=doc)

    @property
    def steps_table(self) -> "pd.DataFrame":
        """One row per step: id, wall/window/busy/idle ms, per-phase ms, kept, reason."""
        return _frame((self.doc.get("steps") or {}).get("table", []))

    def _group(self, key: str) -> "pd.DataFrame":
        group: Any = self.doc.get(key) or {}
        rows = [{"name": k, **v} for k, v in group.items() if isinstance(v, dict)]
        return _frame(rows)

    @property
    def phases(self) -> "pd.DataFrame":
        """forward/backward/optimizer/other: ms_per_step, share."""
        return self._group("phases")

    @property
    def categories(self) -> "pd.DataFrame":
        """matmul/attention/...: ms_per_step, share."""
        return self._group("categories")

    @property
    def copies(self) -> "pd.DataFrame":
        copies: Any = self.doc.get("copies") or {}
        rows = [{"direction": k, **v} for k, v in copies.items() if k in ("h2d", "d2h", "d2d")]
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
    def findings(self) -> list[Finding]:
        return list(self.doc.get("findings", []))


@dataclass
class JobAnalysis(Analysis):
    """The analysis of a job of several ranks: the merged figures plus ``ranks`` (one row per rank) and
    ``job`` (world size, straggler, missing ranks)."""

    @property
    def is_job(self) -> bool:
        return True

    @property
    def ranks_table(self) -> "pd.DataFrame":
        """One row per rank: status, steps, step time, busy/idle ms per step, communication."""
        return _frame(self.doc.get("ranks", []))


def document_of(obj: Any) -> dict[str, Any]:
    """The schema-2 document of an :class:`Analysis` or of a document dict (a schema-1 one upgraded);
    anything else is an empty document (renderers show "no data" rather than fail)."""
    if isinstance(obj, Analysis):
        return obj.to_dict()
    return upgrade(obj) if isinstance(obj, dict) else {}


def _frame(rows: Any) -> "pd.DataFrame":
    import pandas as pd

    frame: pd.DataFrame = pd.DataFrame(rows)  # pandas is untyped for the checker (no stubs are required)
    return frame
