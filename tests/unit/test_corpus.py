"""perfkit on every public corpus trace, against the slow reference in tests/_evidence.py.

For each trace: it loads without exception; the analysis document holds no NaN
or infinity anywhere; the device busy time per device equals the union of the
device intervals read from the raw events (exact up to float rounding); the step
count matches the ProfilerStep#N events; each step's busy time is at least the
share of the device work launched inside that step (and equal to it when every
device op has a recorded launch); the time basis is "cpu" exactly when the trace
has no device work.

Checks that need device work, or steps, are parametrised at collection time over only the
traces that have them, found by a text scan of each file (cached per file); the scan's
verdict is itself checked against the full evidence for every trace, so nothing is skipped
and no trace drops out unnoticed. Every folder is listed in tests/data/MANIFEST.md.

The unit suite checks one trace of each kind (the smallest; :func:`representative`): each vendor
and each workload (training, inference, benchmark) of the index in tests/data/MANIFEST.md, with and
without device work and steps. tests/e2e/test_corpus_full.py runs the same checks on every other corpus trace.
"""

from __future__ import annotations

import functools
import gzip
import json
import math
import os
import re

import numpy as np
import pytest

from perfkit.analysis.attribute import attribute
from perfkit.analysis.timeline import Timeline
from perfkit.analysis.attribute import find_steps
from perfkit.trace import read_trace

from .. import _cached, _evidence, _split
from ..corpus import ROOT, Entry, entries, folders, index_rows, trace_files

ALL_ENTRIES = entries()

_DEVICE_CAT = re.compile(rb'"cat"\s*:\s*"(?:' + b"|".join(re.escape(c.encode()) for c in _evidence.DEVICE_CATS) + rb')"',
                         re.IGNORECASE)
_STEP_NAME = re.compile(rb'"name"\s*:\s*"ProfilerStep#\d+"')


@functools.lru_cache(maxsize=None)
def _marks(path: str) -> tuple[bool, bool]:
    """(any device-op category, any ``ProfilerStep#N`` name) in the file's text: a cheap scan.

    Used only to choose which traces a check applies to; test_selection_agrees_with_the_evidence
    compares it with the full reading of the events.
    """
    with (gzip.open(path) if path.endswith(".gz") else open(path, "rb")) as fh:
        text = fh.read()
    return bool(_DEVICE_CAT.search(text)), bool(_STEP_NAME.search(text))


def kind(entry: Entry, rows: dict[str, list[str]]) -> tuple[str, str, bool, bool]:
    """(vendor, workload, any device work, any steps): the vendor and the first word of the kind column of
    the index in tests/data/MANIFEST.md (a V100 is "Tesla ..."; training, inference or benchmark), and the
    file's :func:`_marks`."""
    _repository, _licence, gpu, workload, _size = rows[entry.folder]
    vendor = gpu.split(",")[0].split()[0]
    return ({"Tesla": "NVIDIA"}.get(vendor, vendor), workload.split(",")[0].strip(), *_marks(entry.path))


def representative(all_entries: list[Entry]) -> list[Entry]:
    """The smallest trace file of each :func:`kind`, in slug order."""
    rows = index_rows()
    smallest: dict[tuple[str, str, bool, bool], Entry] = {}
    for e in all_entries:
        k = kind(e, rows)
        if k not in smallest or os.path.getsize(e.path) < os.path.getsize(smallest[k].path):
            smallest[k] = e
    return sorted(smallest.values(), key=lambda e: e.slug)


ENTRIES = representative(ALL_ENTRIES)  #: checked here; the others in tests/e2e/test_corpus_full.py
IDS = [e.slug for e in ENTRIES]
ALL_WITH_DEVICE_WORK = [e for e in ALL_ENTRIES if _marks(e.path)[0]]
ALL_WITH_STEPS_AND_DEVICE_WORK = [e for e in ALL_WITH_DEVICE_WORK if _marks(e.path)[1]]
WITH_DEVICE_WORK = [e for e in ALL_WITH_DEVICE_WORK if e in ENTRIES]
WITH_STEPS_AND_DEVICE_WORK = [e for e in ALL_WITH_STEPS_AND_DEVICE_WORK if e in ENTRIES]


def _slug(entry: Entry) -> str:
    return entry.slug


def _facts(path: str) -> dict:
    return _cached.facts(path)


def _doc(path: str) -> dict:
    return _cached.document(path)


def _walk_numbers(obj, where="doc"):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk_numbers(v, f"{where}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _walk_numbers(v, f"{where}[{i}]")
    elif isinstance(obj, float):
        yield where, obj


def test_corpus_is_listed():
    assert len(ALL_ENTRIES) >= 30
    assert len({e.slug for e in ALL_ENTRIES}) == len(ALL_ENTRIES)  # rank files of one folder get their own slugs
    for e in ALL_ENTRIES:
        assert re.fullmatch(r"[0-9a-f]{40}", e.commit), e.slug
        assert "/" in e.repository and e.source_path and e.licence, e.slug


def test_every_folder_has_a_manifest_and_an_index_row():
    rows = index_rows()
    assert set(rows) == set(folders())
    for folder in folders():
        files = trace_files(folder)
        assert files and os.path.isfile(os.path.join(ROOT, folder, "MANIFEST.md")), folder
        assert sorted(e.path for e in ALL_ENTRIES if e.folder == folder) == [os.path.join(ROOT, folder, f) for f in files]
        repository, licence, _gpu, _kind, size = rows[folder]
        (e, *_) = [e for e in ALL_ENTRIES if e.folder == folder]
        assert repository == e.repository and e.licence.startswith(licence), folder
        assert int(size.replace(",", "")) == sum(os.path.getsize(os.path.join(ROOT, folder, f)) for f in files), folder


@_split.cases("entry", ALL_ENTRIES, ENTRIES, ids=_slug)
def test_selection_agrees_with_the_evidence(entry):
    f = _facts(entry.path)
    has_device_cat, has_step_name = _marks(entry.path)
    assert has_device_cat == (sum(f["device_events"].values()) > 0)
    assert has_step_name == bool(f["steps"])


@_split.cases("entry", ALL_ENTRIES, ENTRIES, ids=_slug)
def test_analyze_document_is_finite(entry):
    doc = _doc(entry.path)
    bad = [(w, v) for w, v in _walk_numbers(doc) if not math.isfinite(v)]
    assert not bad, bad[:5]
    json.dumps(doc, allow_nan=False)  # the JSON document itself is valid JSON


@_split.cases("entry", ALL_ENTRIES, ENTRIES, ids=_slug)
def test_time_basis_and_steps(entry):
    f = _facts(entry.path)
    doc = _doc(entry.path)
    has_device_work = sum(f["device_events"].values()) > 0
    assert doc["trace"]["time_basis"] == ("gpu" if has_device_work else "cpu")
    assert doc["steps"]["total"] == max(len(f["steps"]), 1)
    assert doc["steps"]["synthetic"] == (not f["steps"])
    if f["steps"]:
        assert sorted(r["id"] for r in doc["steps"]["table"]) == f["steps"]


@_split.cases("entry", ALL_WITH_DEVICE_WORK, WITH_DEVICE_WORK, ids=_slug)
def test_device_busy_per_device_matches_union(entry):
    f = _facts(entry.path)
    assert sum(f["device_events"].values()) > 0
    tl = Timeline.build(read_trace(entry.path))
    dw = attribute(tl, find_steps(tl), basis="gpu")
    mine = {int(d): float(dw.share_us[dw.device == d].sum()) for d in np.unique(dw.device)}
    ref = {int(k): v for k, v in f["busy_us"].items()}
    assert set(mine) == set(ref)
    for d, v in ref.items():
        assert mine[d] == pytest.approx(v, rel=1e-9, abs=1e-3), d


@_split.cases("entry", ALL_WITH_STEPS_AND_DEVICE_WORK, WITH_STEPS_AND_DEVICE_WORK, ids=_slug)
def test_step_busy_against_launch_linked_share(entry):
    f = _facts(entry.path)
    assert f["steps"] and sum(f["device_events"].values()) > 0
    doc = _doc(entry.path)
    busy_ms = {r["id"]: r["busy_ms"] for r in doc["steps"]["table"]}
    linked = {int(k): v / 1000.0 for k, v in f["linked_share_us_by_step"].items()}
    for step, ref_ms in linked.items():
        if f["unlinked_device_events"] == 0:
            assert busy_ms[step] == pytest.approx(ref_ms, rel=1e-9, abs=1e-6), step
        else:  # ops with no recorded launch may be given to a step by stream order
            assert busy_ms[step] >= ref_ms - 1e-6, step
    assert sum(busy_ms.values()) <= f["busy_us_total"] / 1000.0 + 1e-6
