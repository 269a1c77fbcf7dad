"""scripts/trim_trace.py: the script that cut the large public traces of the corpus (tests/e2e/test_trim_trace_e2e.py
runs it on a trace)."""

from __future__ import annotations

from perfkit.trace import model as m
from scripts import trim_trace

DEVICE_KINDS = {m.Kind.KERNEL, m.Kind.MEMCPY, m.Kind.MEMSET, m.Kind.GPU_ANNOTATION, m.Kind.SYNC}


def test_the_scripts_categories_are_the_models():
    kinds = m.CATEGORY_KINDS
    assert trim_trace.DEVICE_CATS == {c for c, k in kinds.items() if k in DEVICE_KINDS}
    assert trim_trace.LAUNCH_CATS == {c for c, k in kinds.items() if k in (m.Kind.RUNTIME, m.Kind.DRIVER)}
