"""The self-contained HTML report (perfkit/report/html.py), `perfkit report` and `perfkit analyze --html`.

tests/e2e/test_html_e2e.py renders the page in headless Chromium; tests/e2e/test_html_page_e2e.py checks the
page with every figure drawn (the ``page`` fixture here) and runs the commands that write the page and the
figure files.
"""

from __future__ import annotations

import copy
import html as htmllib
import io
import json
import sys
from pathlib import Path

import pytest

from perfkit.cli import main
from perfkit.report.html import render_html

from .. import _cached
from ..conftest import REPO, anchor

RESNET = "kineto/tb_plugin/samples/resnet50_num_workers_4/worker0.1623213129365.pt.trace.json.gz"
WARMUP_RUN = REPO / "traces" / "pathologies_h100" / "warmup"
MODULES_RUN = REPO / "traces" / "example_gpt_h100" / "analysis_modules_flops.json"
CPU_ONLY = "hta/tests/data/cpu_only/rank-34.Jul_15_10_52_41.1074.pt.trace.json.gz"

SECTIONS = ["summary", "findings", "phases", "categories", "plots", "top-ops", "top-kernels", "copies",
            "overview", "steps"]
HEADINGS = ["Step summary", "Findings", "Phases (GPU time)", "GPU time by kernel category", "Plots",
            "Top ops by GPU time (per step)", "Top GPU kernels (per step)", "Memory copies (per step)", "Steps"]


@pytest.fixture(scope="module")
def resnet() -> dict:
    return _cached.document(anchor(RESNET))


@pytest.fixture(scope="module")
def page(resnet: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("html") / "report.html"
    path.write_text(render_html(resnet), encoding="utf-8")
    return path


# --- the page itself ----------------------------------------------------------------------


def test_every_text_from_the_document_is_escaped(resnet: dict) -> None:
    doc = copy.deepcopy(resnet)
    evil = '<script>alert("x")</script>&<b>'
    doc["top_ops"][0]["name"] = evil
    doc["top_kernels"][0]["name"] = evil
    doc["trace"]["warnings"].append(evil)
    doc["steps"]["table"][0]["reason"] = evil
    doc["steps"]["table"][0]["kept"] = False
    doc["findings"] = [{"id": evil, "severity": "warning", "title": evil, "where": evil,
                        "evidence": {evil: evil}, "remedy": evil, "cost_ms_per_step": 1.0}]
    text = render_html(doc, with_plots=False)
    assert "<script" not in text and "<b>" not in text
    assert htmllib.escape(evil) in text


def test_cpu_only_trace_says_cpu(tmp_path: Path) -> None:
    doc = _cached.document(anchor(CPU_ONLY))
    text = render_html(doc, with_plots=False)
    assert "Top ops by CPU time (per step)" in text and 'id="top-kernels"' not in text


def test_html_without_matplotlib_is_still_written(monkeypatch: pytest.MonkeyPatch, resnet: dict) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    text = render_html(resnet)
    assert '<section id="plots">' in text and "pip install &#x27;perfkit[plots]&#x27;" in text
    assert "<img" not in text


# --- commands ------------------------------------------------------------------------------


def test_report_command_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["report", str(tmp_path / "missing.json"), "--html", str(tmp_path / "x.html")]) == 2
    assert "perfkit: error:" in capsys.readouterr().err


def test_progress_bar_draws_on_a_terminal() -> None:
    from rich.console import Console

    from perfkit.job import analyze_paths
    from perfkit.report.progress import progress_bar

    calls = []
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=100)
    with progress_bar(True, console=console) as progress:
        assert progress is not None

        def spy(description: str, done: int, total: int) -> None:
            calls.append((description, done, total))
            progress(description, done, total)

        analyze_paths([str(anchor(CPU_ONLY))], progress=spy)
    assert [c[1:] for c in calls] == [(0, 2), (1, 2), (2, 2)]
    assert calls[0][0].startswith("reading ") and calls[1][0].startswith("analyzing ")
    drawn = buf.getvalue()
    assert "reading rank-34" in drawn and "analyzing rank-34" in drawn and "2/2" in drawn
    with progress_bar(False) as progress:
        assert progress is None


def test_job_report_has_the_ranks_section(tmp_path: Path) -> None:
    """A multi-rank job document (2x H200 DDP with a straggler) shows the per-rank table and the straggler."""
    job = json.loads((REPO / "traces" / "ddp_gpt_2xh200" / "straggler" / "analysis.json").read_text())
    page = render_html(job, with_plots=False)
    assert '<section id="ranks">' in page and 'href="#ranks"' in page
    section = page.split('<section id="ranks">', 1)[1].split("</section>", 1)[0]
    assert "straggler: rank 1" in section
    assert section.count("<tr>") == 1 + 2  # header + two ranks
    single = json.loads((REPO / "traces" / "example_gpt_h100" / "analysis.json").read_text())
    assert '<section id="ranks">' not in render_html(single, with_plots=False)
