"""The HTML report with every figure drawn (tests/unit/test_html.py's ``page``): its sections, tables and
inline figures, self-contained; and `perfkit report --html/--plots` and `perfkit analyze --html --plots` end
to end (every figure drawn and written: seconds each, so here and not in tests/unit/test_html.py)."""

from __future__ import annotations

import html as htmllib
import json
import re
from pathlib import Path

import pytest

from perfkit.cli import main

from ..conftest import anchor
from ..unit.test_html import HEADINGS, MODULES_RUN, RESNET, SECTIONS, WARMUP_RUN, page, resnet  # noqa: F401  (fixtures)


def test_report_command_on_a_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "warmup.html"
    assert main(["report", str(WARMUP_RUN), "--html", str(out), "--plots", str(tmp_path / "plots")]) == 0
    text = out.read_text(encoding="utf-8")
    saved = json.loads((WARMUP_RUN / "analysis.json").read_text())
    assert 'id="runtime"' in text and saved["findings"][0]["id"] in text
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "memory.png", "phases_per_step.png", "step_times.png", "top_modules.png"]
    err = capsys.readouterr().err
    assert "not drawn: categories_per_step" in err and f"wrote {out}" in err


def test_report_command_modules_and_terminal(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "modules.html"
    assert main(["report", str(MODULES_RUN), "--html", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert '<section id="modules">' in text and "<code>blocks.0</code>" in text
    capsys.readouterr()
    assert main(["report", str(MODULES_RUN)]) == 0  # no output named: the terminal report
    assert "Phases (GPU time)" in capsys.readouterr().out


def test_analyze_writes_html_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "r.html"
    rc = main(["analyze", "-q", str(anchor(RESNET)), "--html", str(out), "--plots", str(tmp_path / "plots"),
               "--json", str(tmp_path / "a.json")])
    assert rc == 0
    assert len(list((tmp_path / "plots").glob("*.png"))) == 5
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["memory_timeline"]["devices"] and "categories_ms" in doc["steps"]["table"][0]
    assert out.read_text(encoding="utf-8").count("data:image/png;base64,") == 5
    err = capsys.readouterr().err
    # Not a terminal: no progress bar, only the lines naming the files written.
    assert "reading" not in err and "analyzing" not in err
    assert f"wrote {out}" in err


def test_page_holds_sections_tables_and_figures(page: Path, resnet: dict) -> None:
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in text, sid
    for heading in HEADINGS:
        assert f"<h2>{htmllib.escape(heading)}</h2>" in text, heading
    # Every figure is inline, as a PNG data URI.
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', text)
    assert len(images) == 5
    # The numbers are the document's, formatted like the other reports.
    busy = resnet["device"]["busy_ms_per_step"]
    assert f"<td class=\"num\">{busy:.2f}</td>" in text
    top_op = resnet["top_ops"][0]["name"]
    assert f"<code>{htmllib.escape(top_op)}</code>" in text
    for e in resnet["steps"]["excluded"]:
        assert htmllib.escape(e["reason"]) in text
    assert len(re.findall(r"<tr class=\"excluded\">", text)) == len(resnet["steps"]["excluded"])


def test_page_is_self_contained(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text and "<link" not in text and "@import" not in text
    for attr in re.findall(r'(?:src|href)="([^"]*)"', text):
        assert attr.startswith(("data:image/png;base64,", "#")), attr
    assert "http://" not in text and "https://" not in text
