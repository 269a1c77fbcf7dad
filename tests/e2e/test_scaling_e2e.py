"""perfkit.collect.scaling in a fresh interpreter: it imports, and probes, without torch."""

from __future__ import annotations

import subprocess
import sys

from ..conftest import REPO


def test_module_imports_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None; import perfkit.collect.scaling as s; "
        "print(s.scale(lambda n: None, [1], repeat=1).to_dict()['sizes'])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[1]"
