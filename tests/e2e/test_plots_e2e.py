"""The figure files of perfkit/report/plots.py: ``write_plots`` writes real PNG and SVG files, drawn
and not blank (every figure rendered: seconds, so here and not in tests/unit/test_plots.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from perfkit.report import plots as P

from ..unit.test_plots import PNG_MAGIC, _png_pixels, bf16, resnet  # noqa: F401  (bf16 and resnet are fixtures)


def test_write_plots_png_files(resnet: dict, tmp_path: Path) -> None:
    plots = P.write_plots(resnet, tmp_path / "plots")
    assert [p.name for p in plots] == list(P.PLOT_NAMES)
    for p in plots:
        assert p.skipped is None, (p.name, p.skipped)
        data = Path(p.path).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, p.name
        image = _png_pixels(data)
        assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 50, p.name  # drawn, not blank
    by = {p.name: p for p in plots}
    assert by["phases_per_step"].info["step_ids"] == [r["id"] for r in resnet["steps"]["table"]]
    assert "convolution" in by["categories_per_step"].info["categories"]
    assert by["memory"].info["source"] == "memory_timeline" and by["memory"].info["devices"] == ["cuda:0"]
    assert by["top_modules"].info["source"] == "top_ops"  # no module timings in a plain trace


def test_write_plots_svg(bf16: dict, tmp_path: Path) -> None:
    plots = P.write_plots(bf16, tmp_path, fmt="svg")
    drawn = [p for p in plots if p.path]
    assert {p.name for p in drawn} == {"phases_per_step", "categories_per_step", "step_times", "top_modules"}
    memory = next(p for p in plots if p.name == "memory")
    assert memory.path is None and "profile_memory=True" in memory.skipped
    for p in drawn:
        root = ET.parse(p.path).getroot()
        assert root.tag.endswith("svg") and len(list(root.iter())) > 50
