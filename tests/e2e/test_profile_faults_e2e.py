"""perfkit profile never loses the run: ``python SCRIPT`` against ``perfkit profile SCRIPT``, where only a
whole interpreter shows the difference (an interpreter's death by SIGINT, torch's C++ lines on fd 2).
The in-process fault injections are tests/unit/test_profile_faults.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from ..conftest import REPO
from ..unit.test_profile_faults import warnings_of

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


# --------------------------------------------------------------------- end to end: python SCRIPT against perfkit profile SCRIPT

GQA_SCRIPT = """
import torch
from torch.utils.flop_counter import flop_registry, shape_wrapper

def old_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    # torch's formula before 2.13: asserts on fewer key/value heads (grouped-query attention)
    b, h, s_q, d_q = query_shape
    _b2, _h2, s_k, _d2 = key_shape
    _b3, _h3, _s3, d_v = value_shape
    if not (b == _b2 == _b3 and h == _h2 == _h3 and d_q == _d2 and s_k == _s3):
        raise AssertionError("sdpa_flop_count: query/key/value shapes are incompatible")
    return 4 * b * h * s_q * s_k * d_q

flop_registry[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = shape_wrapper(old_sdpa_flop)

class GQA(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.kv, self.out = torch.nn.Linear(32, 32), torch.nn.Linear(32, 16), torch.nn.Linear(32, 1)
    def forward(self, x):
        b, s, _ = x.shape
        q = self.q(x).view(b, s, 4, 8).transpose(1, 2)
        k, v = self.kv(x).view(b, s, 2, 8).transpose(1, 2).chunk(2, dim=1)
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        return self.out(y.transpose(1, 2).reshape(b, s, 32))

torch.manual_seed(0)
model = GQA()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for step in range(8):
    loss = model(torch.randn(2, 8, 32)).pow(2).mean()
    loss.backward(); opt.step(); opt.zero_grad()
    print(step, repr(loss.item()))
"""


@pytest.mark.slow
def test_gqa_under_modules_and_flops_ends_as_the_bare_script(tmp_path):
    script = tmp_path / "gqa.py"
    script.write_text(GQA_SCRIPT)
    bare = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, env=ENV,
                          timeout=300)
    assert bare.returncode == 0, bare.stderr
    run = subprocess.run([sys.executable, "-m", "perfkit", "profile", "-q", "--modules", "--flops",
                          "--skip-first", "2", "--warmup", "1", "--active", "2", "--out", str(tmp_path / "run"),
                          str(script)], capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=300)
    assert (run.returncode, run.stdout) == (bare.returncode, bare.stdout)
    warned = warnings_of(run.stderr)
    assert len(warned) == 1 and warned[0].startswith("perfkit: warning: FLOP counting failed"), run.stderr
    assert "USDT" not in run.stderr  # torch's profiler_start/stop lines stay off stderr with -q
    assert run.stderr.strip() == warned[0]
    rt = json.loads((tmp_path / "run" / "analysis.json").read_text())["runtime"]
    assert rt["instrument_errors"].keys() == {"FLOP counting"} and rt["modules"]


CTRL_C = """
import os, signal, torch
torch.manual_seed(0)
model = torch.nn.Linear(8, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(1, 9):
    model(torch.randn(4, 8)).sum().backward()
    opt.step(); opt.zero_grad()
    print("step", step, flush=True)
    if step == 5:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the recorded window
print("not reached")
"""


@pytest.mark.slow
def test_ctrl_c_ends_as_the_bare_script_and_keeps_the_partial_profile(tmp_path):
    script = tmp_path / "loop.py"
    script.write_text(textwrap.dedent(CTRL_C))
    bare = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, env=ENV,
                          timeout=300)
    run = subprocess.run([sys.executable, "-m", "perfkit", "profile", "-q", "--skip-first", "1", "--warmup", "1",
                          "--active", "6", "--out", str(tmp_path / "run"), str(script)],
                         capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=300)
    assert bare.returncode == -signal.SIGINT
    assert run.returncode == bare.returncode
    assert run.stdout == bare.stdout
    assert run.stderr.splitlines()[-1] == bare.stderr.splitlines()[-1] == "KeyboardInterrupt"
    assert "Traceback (most recent call last):" in run.stderr
    assert "os.kill(os.getpid(), signal.SIGINT)" in run.stderr  # the script's own frame is in it
    # The steps done so far were written: three of six recorded steps, then the interrupt.
    doc = json.loads((tmp_path / "run" / "analysis.json").read_text())
    assert doc["runtime"]["steps_seen"] == 5 and doc["runtime"]["exit_status"] == 130
    assert doc["steps"]["count"] >= 1 and (tmp_path / "run" / "rank0.pt.trace.json.gz").is_file()
