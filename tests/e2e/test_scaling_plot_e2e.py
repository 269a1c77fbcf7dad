"""tests/unit/test_scaling.py's scaling figure written as PNG files (matplotlib renders it: here, not in the
fast suite)."""

from __future__ import annotations

import json

import pytest

from perfkit.collect.scaling import scale

from ..unit.test_scaling import clock  # noqa: F401  (the fixture)


def test_plot_writes_png(tmp_path, clock):
    from perfkit.report.scaling_plot import plot_scaling

    doc = scale(lambda n: clock.sleep(1e-6 * n * n), [40, 80, 160], repeat=1, warmup=0, target=1024).to_dict()
    out = tmp_path / "scale.png"
    plot_scaling(doc, str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A saved document plots the same way.
    plot_scaling(json.loads(json.dumps(doc)), str(tmp_path / "again.png"))
    assert (tmp_path / "again.png").stat().st_size > 1000
