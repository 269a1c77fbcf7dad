"""Shared fixtures: where the real traces live."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
ANCHORS = SHARED / "anchors" / "traces"
TRACES = REPO / "traces"
BF16 = TRACES / "gpt100m_bf16_adamw" / "rank0.pt.trace.json.gz"
FP32 = TRACES / "gpt100m_fp32_sgd" / "rank0.pt.trace.json.gz"


def anchor(rel: str) -> Path:
    path = ANCHORS / rel
    if not path.exists():
        pytest.fail(f"anchor trace missing: {path} (the shared folder must sit beside the repo)")
    return path


def all_anchor_traces() -> list[Path]:
    """Every Kineto trace file under shared/anchors/traces (not the raw memory timeline)."""
    files = sorted(p for p in ANCHORS.rglob("*") if p.is_file() and p.name.endswith((".json", ".json.gz")))
    return files
