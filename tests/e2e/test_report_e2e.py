"""``import perfkit.report`` in a fresh interpreter loads none of torch, pandas, numpy, matplotlib."""

from __future__ import annotations

import subprocess
import sys

from ..conftest import REPO


def test_report_import_is_light():
    code = ("import sys, perfkit.report; "
            "heavy = sorted(m for m in ('torch', 'pandas', 'numpy', 'matplotlib') if m in sys.modules); "
            "print(','.join(heavy))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert proc.stdout.strip() == ""
