"""The issue's reproducer, a training loop with no torch.optim optimizer, under ``perfkit profile`` in a
subprocess: steps found at each backward, a trace, weights known (tests/unit/test_steps_without_optimizer.py
has the in-process part)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from ..conftest import REPO
from ..unit.test_steps_without_optimizer import _doc


@pytest.mark.slow
def test_issue_reproducer_manual_sgd_twenty_steps(tmp_path):
    """The issue's case: 20 steps of a manual update, default options: steps found, a trace, weights known."""
    script = tmp_path / "sgd.py"
    script.write_text(textwrap.dedent("""
        import torch
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
        for step in range(20):
            loss = model(torch.randn(16, 32)).pow(2).mean()
            loss.backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= 0.01 * p.grad
                    p.grad = None
        print("trained")
    """))
    proc = subprocess.run([sys.executable, "-m", "perfkit", "profile", "-q", "--out", str(tmp_path / "run"), str(script)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=240,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "trained\n"
    doc = _doc(tmp_path)
    rt = doc["runtime"]
    assert rt["steps_seen"] == 20 and rt["step_source"] == "autograd backward"
    assert "analysis_error" not in rt
    assert doc["steps"]["count"] >= 3  # the default window records 5 steps
    assert rt["memory"]["weights_bytes"] == (32 * 64 + 64 + 64 * 8 + 8) * 4
    assert rt["steps"]["profiled_steps"] == [8, 9, 10, 11, 12]  # skip 5, warm-up 2, active 5
    assert rt["steps"]["unprofiled_steps"] == list(range(13, 21))
