"""``perfkit analyze --json/--markdown``: each file written is announced by one plain line on stderr
(issue #15: the ``--json -q`` path no longer imports rich for it). The path is printed as given: not
wrapped at 80 columns, no ``:emoji:`` code replaced (rich's print did both)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import REPO

TRACE = REPO / "tests" / "data" / "traces" / "nv-rtx2080ti-param-linear-train" / "linear_kineto.json.gz"

PROBE = r"""
import json, sys
from perfkit.cli import main
rc = main(sys.argv[1:])
sys.stdout.write("MODULES " + json.dumps({"rc": rc, "rich": sorted(m for m in sys.modules if m.split(".")[0] == "rich")}) + "\n")
"""


def _run(*args: str) -> tuple[dict[str, object], str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80"}
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, timeout=120)
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("MODULES "))
    return json.loads(line[len("MODULES "):]), proc.stderr


def test_json_quiet_imports_no_rich_and_prints_the_path_whole(tmp_path: Path) -> None:
    # longer than 80 columns, with an emoji code and rich markup in it
    folder = tmp_path / ("d" * 90) / ":smile: [bold]x[/bold]"
    folder.mkdir(parents=True)
    out = folder / "a.json"
    got, err = _run("analyze", str(TRACE), "--json", str(out), "-q")
    assert got["rc"] == 0 and out.exists()
    assert got["rich"] == [], got["rich"]
    assert err == f"wrote {out}\n"


@pytest.mark.parametrize("quiet", [True, False])
def test_markdown_and_json_lines_in_order(tmp_path: Path, quiet: bool) -> None:
    js, md = tmp_path / "a.json", tmp_path / "a.md"
    got, err = _run("analyze", str(TRACE), "--json", str(js), "--markdown", str(md), *(["-q"] if quiet else []))
    assert got["rc"] == 0 and js.exists() and md.exists()
    assert err == f"wrote {js}\nwrote {md}\n"
