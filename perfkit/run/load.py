"""One analysis document from any path a user gives (:func:`perfkit.run.resolve.resolve`): a run
directory's ``analysis.json``, a document file, or traces analysed now.

Used by ``perfkit report``, ``perfkit diff`` and ``perfkit budget``. It sits above the analysis
(it analyses traces) and below the budget, which loads runs with it.
"""

from __future__ import annotations

from typing import Any

from .resolve import resolve


def load_document(path: str) -> dict[str, Any]:
    """An analysis document from a run directory, an analysis.json, or a trace (analysed now).

    A JSON file that says it is a perfkit document (any ``"schema": "perfkit...``) is read as one and
    checked (:func:`perfkit.documents.load_analysis`): a diff, budget result or another schema version is
    refused with one line, never analysed as a trace or compared as if it were an analysis.
    """
    r = resolve(path)
    if r.document is not None:
        from ..analysis.result import read_document

        return read_document(r.document)
    from ..job import analyze_paths

    if r.kind == "trace":
        return analyze_paths(path).to_dict()
    return analyze_paths(list(r.need_traces())).to_dict()
