"""The command line: exit codes, outputs, no traceback for bad input, no torch needed."""

from __future__ import annotations

import json
import subprocess

import pytest

from perfkit.cli import main

from .._no_torch import cli_without_torch
from ..conftest import BF16


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """perfkit's command line in this process, torch unimportable (tests/e2e/test_cli_e2e.py runs it in a
    fresh interpreter)."""
    return cli_without_torch(*args)


def test_analyze_writes_json_and_markdown_without_torch(tmp_path):
    out_json = tmp_path / "a.json"
    out_md = tmp_path / "a.md"
    proc = run_cli("analyze", str(BF16), "--json", str(out_json), "--markdown", str(out_md))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out_json.read_text())
    assert doc["schema"] == "perfkit.analysis/2"
    assert set(doc) >= {"trace", "steps", "device", "phases", "categories", "copies", "top_ops", "top_kernels",
                        "overview", "findings"}
    assert set(doc["phases"]) == {"forward", "backward", "optimizer", "other", "unknown"}
    for key in ("count", "ids", "excluded", "window_ms_median", "wall_ms_median"):
        assert key in doc["steps"]
    for key in ("busy_ms_per_step", "idle_ms_per_step", "utilization"):
        assert key in doc["device"]
    assert "H200" in proc.stdout  # device name in the terminal report
    assert "aten::mm" in out_md.read_text()
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("content", [b"not json at all", b'{"foo": 1}', b""])
def test_bad_input_is_one_line_and_exit_2(tmp_path, content):
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    proc = run_cli("analyze", str(bad))
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(bad) in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_file_exit_2(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "missing.json")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_truncated_trace_warns_and_reports(tmp_path):
    import gzip

    data = gzip.decompress(BF16.read_bytes())
    cut = tmp_path / "cut.pt.trace.json"
    cut.write_bytes(data[: int(len(data) * 0.8)])
    out = tmp_path / "a.json"
    proc = run_cli("analyze", str(cut), "--json", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert any("truncated" in w for w in doc["trace"]["warnings"])
    assert doc["steps"]["total"] >= 1


def test_directory_argument(tmp_path):
    out = tmp_path / "a.json"
    proc = run_cli("analyze", str(BF16.parent), "--json", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["trace"]["paths"] == [str(BF16)]


def test_several_traces_merge_step_weighted(tmp_path):
    import perfkit

    from ..conftest import FP32

    from .. import _cached

    one = _cached.document(BF16)
    two = _cached.document(FP32)
    both = perfkit.analyze([str(BF16), str(FP32)]).to_dict()
    n1, n2 = one["steps"]["count"], two["steps"]["count"]
    assert both["steps"]["count"] == n1 + n2
    expect = (one["device"]["busy_ms_per_step"] * n1 + two["device"]["busy_ms_per_step"] * n2) / (n1 + n2)
    assert both["device"]["busy_ms_per_step"] == pytest.approx(expect)
    mm = lambda d: next(r for r in d["top_ops"] if r["name"] == "aten::mm")["ms_per_step"]  # noqa: E731
    assert next(r for r in both["top_ops"] if r["name"] == "aten::mm")["ms_per_step"] == pytest.approx(
        (mm(one) * n1 + mm(two) * n2) / (n1 + n2))
    assert sum(v["share"] for v in both["phases"].values()) == pytest.approx(1.0, abs=1e-3)
    assert all("trace" in f for f in both["findings"])
