"""The analysis result: the JSON document (schema ``perfkit.analysis/1``) plus tables.

:class:`Analysis` is the one data type the report and budget stages take. Its
``doc`` is plain JSON-ready data; the DataFrame properties are views built
from it for notebook users.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

SCHEMA = "perfkit.analysis/1"


@dataclass
class Analysis:
    """What ``perfkit.analyze`` returns.

    Attributes:
        doc: the JSON document (see docs/analysis.md for every key and unit).
        steps_table: one row per step (ids, wall/window/busy/idle ms, kept, reason).
    """

    doc: dict[str, Any]
    steps_table: pd.DataFrame = field(default_factory=pd.DataFrame)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        return self.doc

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.doc, indent=indent, allow_nan=False, default=_default)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "Analysis":
        steps = doc.get("steps", {}).get("table", [])
        return cls(doc=doc, steps_table=pd.DataFrame(steps))

    def _group(self, key: str, value: str = "gpu_ms_per_step") -> pd.DataFrame:
        rows = [{"name": k, **v} for k, v in self.doc.get(key, {}).items() if isinstance(v, dict)]
        return pd.DataFrame(rows)

    @property
    def phases(self) -> pd.DataFrame:
        """forward/backward/optimizer/other: gpu_ms_per_step, share."""
        return self._group("phases")

    @property
    def categories(self) -> pd.DataFrame:
        """matmul/attention/...: gpu_ms_per_step, share."""
        return self._group("categories")

    @property
    def copies(self) -> pd.DataFrame:
        rows = [{"direction": k, **v} for k, v in self.doc.get("copies", {}).items() if k in ("h2d", "d2h", "d2d")]
        return pd.DataFrame(rows)

    @property
    def overview(self) -> pd.DataFrame:
        return self._group("overview")

    @property
    def top_ops(self) -> pd.DataFrame:
        return pd.DataFrame(self.doc.get("top_ops", []))

    @property
    def top_kernels(self) -> pd.DataFrame:
        return pd.DataFrame(self.doc.get("top_kernels", []))

    @property
    def findings(self) -> list[dict[str, Any]]:
        return list(self.doc.get("findings", []))


def _default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
