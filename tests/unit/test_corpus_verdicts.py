"""Verdicts on the public-trace corpus, against expectations read from the raw events.

``tests/data/traces/expected.json`` holds, per corpus folder, only the claims the raw events
support, each with a ``why`` naming the evidence (counts and times computed by hand or by
``tests/_evidence.py``). Keys:

* ``time_basis``, ``profiler_steps``: the document's ``trace.time_basis`` and the number of
  ``ProfilerStep#N`` steps (0: no markers, one synthetic window);
* ``no_warning``: findings that must not be raised above ``info``;
* ``no_warning_severity``: {finding: level}: the finding must stay below that level;
* ``has_finding``: findings that must be raised (any severity);
* ``culprit_not``: Python frames or ops that must not be named anywhere in a finding's ``where``;
* ``device_label_not_bare``: the device is named (not a bare "device N");
* ``kernel_categories``: {kernel name: category} in the top-kernels table;
* ``top_category``: the category with the most GPU time;
* ``phase_backward_share_min``: backward's share of GPU time is at least this;
* ``phase_unknown_or_evidenced``: every phase share is backed by evidence or reported unknown.
"""

from __future__ import annotations

import json
import os
import re

from .. import _cached, _split
from ..corpus import ROOT, entries
from . import test_corpus as corpus_checks

EXPECTED = json.loads(open(os.path.join(ROOT, "expected.json"), encoding="utf-8").read())
SEVERITY = {"info": 0, "warning": 1, "critical": 2}
KNOWN_KEYS = {"time_basis", "profiler_steps", "no_warning", "no_warning_severity", "has_finding", "culprit_not",
              "device_label_not_bare", "kernel_categories", "top_category", "phase_backward_share_min",
              "phase_unknown_or_evidenced", "why"}


def _doc(slug: str) -> dict:
    paths = [e.path for e in entries() if e.slug == slug]
    assert len(paths) == 1, f"{slug}: expected one trace file, found {paths}"
    return _cached.document(paths[0])


def test_every_expectation_names_a_corpus_trace_and_a_reason() -> None:
    slugs = {e.slug for e in entries()}
    assert len(EXPECTED) >= 30
    for slug, exp in EXPECTED.items():
        assert slug in slugs, slug
        assert set(exp) <= KNOWN_KEYS, (slug, set(exp) - KNOWN_KEYS)
        claims = set(exp) - {"why"}
        assert claims, slug
        assert exp.get("why"), f"{slug}: every claim needs its evidence"


#: the traces test_corpus.py checks here (one of each kind, their documents analysed once per session);
#: tests/e2e/test_corpus_verdicts_full.py checks the others
UNIT_SLUGS = [slug for slug in sorted(EXPECTED) if slug in {e.slug for e in corpus_checks.ENTRIES}]


@_split.cases("slug", sorted(EXPECTED), UNIT_SLUGS, ids=str)
def test_corpus_verdicts(slug: str) -> None:
    exp = EXPECTED[slug]
    doc = _doc(slug)
    found = {f["id"]: f for f in doc["findings"]}
    if "time_basis" in exp:
        assert doc["trace"]["time_basis"] == exp["time_basis"]
    if "profiler_steps" in exp:
        steps = doc["steps"]
        assert (0 if steps["synthetic"] else steps["total"]) == exp["profiler_steps"]
    for fid in exp.get("no_warning", []):
        assert fid not in found or found[fid]["severity"] == "info", (fid, found.get(fid, {}).get("title"))
    for fid, level in exp.get("no_warning_severity", {}).items():
        if fid in found:
            assert SEVERITY[found[fid]["severity"]] < SEVERITY[level], (fid, found[fid]["title"])
    for fid in exp.get("has_finding", []):
        assert fid in found, (fid, sorted(found))
    for culprit in exp.get("culprit_not", []):
        for f in doc["findings"]:
            assert culprit not in json.dumps(f.get("where")), (f["id"], f["title"])
            assert culprit not in f["title"], (f["id"], f["title"])
    if exp.get("device_label_not_bare"):
        for d in doc["trace"]["devices"]:
            assert not re.fullmatch(r"device \d+", str(d["name"])), d
    for name, category in exp.get("kernel_categories", {}).items():
        rows = [k for k in doc["top_kernels"] if k["name"] == name]
        assert rows, f"{name} not among the top kernels"
        assert rows[0]["category"] == category, (name, rows[0]["category"])
    if "top_category" in exp:
        cats = {c: v["ms_per_step"] for c, v in doc["categories"].items()}
        assert max(cats, key=lambda c: cats[c]) == exp["top_category"], cats
    if "phase_backward_share_min" in exp:
        assert (doc["phases"]["backward"]["share"] or 0.0) >= exp["phase_backward_share_min"], doc["phases"]
    if exp.get("phase_unknown_or_evidenced"):
        evidence = doc.get("phases_evidence") or {}
        for phase, entry in doc["phases"].items():
            share = entry.get("share")
            if share and phase != "unknown":
                assert evidence.get(phase), (phase, share, evidence)
