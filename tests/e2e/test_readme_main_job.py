"""The README's main job, verbatim, in a copy of the repository with a fresh virtual environment: the
first command a new user runs. It installs perfkit with its declared dependencies only, not the test
extras, which bring many more packages: an import that only they provide fails here as on a user's
machine. (typer 0.29 stopped installing click, and ``perfkit profile`` failed with
``ModuleNotFoundError: No module named 'click'`` before running the script; CI's test environment
had click through the extras and did not see it.)"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from ..conftest import REPO

#: What the main job needs of the repository: the package, its build files and the example.
NOT_COPIED = ("tests/", "traces/", "scripts/", "docs/", ".ci/")


def _main_job_command() -> str:
    quick_start = (REPO / "README.md").read_text(encoding="utf-8").split("## Quick start", 1)[1]
    return re.findall(r"```bash\n(.*?)\n```", quick_start, re.S)[0].strip()


def _copy_of_the_repository(dst: Path) -> None:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in filter(None, listed.decode().split("\0")):
        if rel.startswith(NOT_COPIED) or not (REPO / rel).is_file():
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dst / rel)


def test_the_readmes_main_job_runs_in_a_fresh_environment(tmp_path: Path) -> None:
    command = _main_job_command()
    assert "pip install" in command and "perfkit profile" in command, command
    copy = tmp_path / "perfkit"
    _copy_of_the_repository(copy)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    proc = subprocess.run(["bash", "-c", command], cwd=copy, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr and "perfkit: wrote" in proc.stderr, proc.stderr[-4000:]
    runs = sorted((copy / "traces").glob("train_gpt-*/analysis.json"))
    assert len(runs) == 1, runs
    listed = subprocess.run([str(copy / ".venv" / "bin" / "python"), "-m", "pip", "list", "--format=json"],
                            capture_output=True, text=True, check=True).stdout
    names = {p["name"].lower() for p in json.loads(listed)}
    assert "perfkit" in names and "pytest" not in names, names  # the declared dependencies only, no test extra
