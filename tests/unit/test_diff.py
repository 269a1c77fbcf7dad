"""perfkit diff: before/after of two runs (the gallery's component loop and its fix, recorded on an H100)."""

from __future__ import annotations

import json

import pytest

from perfkit.analysis.diff import diff
from perfkit.cli import main
from perfkit.run.load import load_document as load_doc

from ..conftest import TRACES

RUNS = TRACES / "pathologies_h100"


def test_diff_of_a_run_and_its_fix():
    a = load_doc(str(RUNS / "component_loop"))
    b = load_doc(str(RUNS / "component_loop-fixed"))
    d = diff(a, b)
    step = d["step"]["window_ms_median"]
    assert step["a"] == a["steps"]["window_ms_median"] and step["b"] == b["steps"]["window_ms_median"]
    assert step["delta"] == pytest.approx(step["b"] - step["a"])
    assert step["ratio"] == pytest.approx(step["b"] / step["a"])
    assert [f["id"] for f in d["findings"]["disappeared"]] == ["launch_bound"]
    mm = next(r for r in d["top_ops"] if r["name"] == "aten::mm")
    assert mm["delta"] < 0
    assert d["memory"]["weights_bytes"]["delta"] == 0


def test_diff_cli_on_traces_and_bad_input(tmp_path, capsys):
    out = tmp_path / "d.json"
    md = tmp_path / "d.md"
    code = main(["diff", str(RUNS / "slow_loader" / "rank0.pt.trace.json.gz"), str(RUNS / "slow_loader-fixed"),
                 "--json", str(out), "--markdown", str(md)])
    assert code == 0, capsys.readouterr().err
    d = json.loads(out.read_text())
    assert d["schema"] == "perfkit.diff/2"
    assert "dataloader_bound" in [f["id"] for f in d["findings"]["disappeared"]]
    assert md.read_text().startswith("## perfkit diff")
    bad = tmp_path / "analysis.json"
    bad.write_text("{}")
    capsys.readouterr()
    code = main(["diff", str(bad), str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and "not a perfkit analysis" in err and "Traceback" not in err
