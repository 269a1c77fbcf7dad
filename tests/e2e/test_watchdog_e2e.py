"""The stall watchdog in scripts run in subprocesses: stack dumps while the main thread spins in pure Python
or holds the GIL in C code, kill after the dump, `perfkit profile --watchdog`, and `perfkit stalls` in a fresh
interpreter importing no torch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from perfkit.job.stalls import summarize_stalls

from ..conftest import REPO
from ..unit.test_watchdog import stall_files

ENV = {**os.environ, "PYTHONPATH": str(REPO)}

# The seed case: a rank stuck for minutes in a pure-Python Hungarian solver. The
# loop never releases the GIL on its own; the interpreter's 5 ms switch interval
# is what lets the watchdog thread run.
SPIN = """
import sys, time
from perfkit.collect.watchdog import Watchdog

def slow_hungarian(seconds):
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n

wd = Watchdog(sys.argv[1], {seconds}, rank=3, kill={kill}, faulthandler=True).start()
for step in range(1, 4):
    time.sleep(0.02)
    wd.beat(step, step_ms=20.0, tokens_per_s=1000.0, memory_bytes=1 << 20)
slow_hungarian({spin})
wd.stop()
print("finished")
"""


def spin_script(tmp_path: Path, seconds: float = 0.5, spin: float = 2.5, kill: bool = False) -> subprocess.CompletedProcess:
    script = tmp_path / "spin.py"
    script.write_text(SPIN.format(seconds=seconds, spin=spin, kill=kill))
    return subprocess.run(
        [sys.executable, str(script), str(tmp_path / "run")],
        capture_output=True, text=True, cwd=tmp_path, timeout=60, env=ENV,
    )


@pytest.mark.slow
def test_pure_python_spin_is_dumped_and_not_killed(tmp_path):
    proc = spin_script(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "finished"  # the loop ran to its end: nothing killed it
    run = tmp_path / "run"

    dumps = stall_files(run)
    assert 1 <= len(dumps) <= 6, [p.name for p in dumps]  # one at 0.5 s, then one every 0.5 s
    first = dumps[0].read_text()
    assert first.startswith("perfkit stall dump\nrank: 3\n")
    assert "last_step: 3\n" in first
    assert "where: slow_hungarian (" in first
    assert "Thread MainThread" in first and ", in slow_hungarian" in first
    assert "perfkit-watchdog" not in first  # its own stack is left out

    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("perfkit: rank 3 stalled")]
    assert len(lines) == len(dumps)
    assert "after step 3 in slow_hungarian (" in lines[0]
    assert "spin.py:" in lines[0] and str(dumps[0].name) in lines[0]
    # The stall lasted until stop(): the last dump says so.
    assert "watchdog_stopped: " in dumps[-1].read_text()

    beats = [json.loads(ln) for ln in (run / "heartbeat_rank3.jsonl").read_text().splitlines()]
    assert [b["step"] for b in beats] == [1, 2, 3]
    assert beats[0]["rank"] == 3 and beats[0]["step_ms"] == 20.0 and beats[0]["memory_bytes"] == 1 << 20
    assert beats[0]["tokens_per_s"] == 1000.0 and beats[0]["time"] > 1e9

    # The C-level fallback (faulthandler, 3 x 0.5 s) fired during the 2.5 s loop too.
    fault = (run / "stall_rank3_faulthandler.txt").read_text()
    assert "Timeout (" in fault and "in slow_hungarian" in fault


def test_kill_true_terminates_after_the_dump(tmp_path):
    proc = spin_script(tmp_path, seconds=0.3, spin=20.0, kill=True)
    assert proc.returncode == -signal.SIGTERM, (proc.returncode, proc.stderr)
    assert "finished" not in proc.stdout
    assert stall_files(tmp_path / "run")
    assert "sending SIGTERM" in proc.stderr


GIL_HELD = """
import math, re, sys, time
from perfkit.collect.watchdog import Watchdog

def catastrophic(n):  # exponential backtracking inside the C regex engine, which keeps the GIL
    return re.match(r"(a+)+$", "a" * n + "b")

t = time.perf_counter(); catastrophic(20); t20 = time.perf_counter() - t
n = 20 + max(0, round(math.log2(2.0 / max(t20, 1e-6))))  # about 2 s here (x2 per character)
wd = Watchdog(sys.argv[1], 0.2, faulthandler=True).start()
for step in range(1, 4):
    time.sleep(0.02)
    wd.beat(step)
catastrophic(n)
wd.stop()
"""


@pytest.mark.slow
def test_c_code_holding_the_gil_is_caught_by_faulthandler(tmp_path):
    script = tmp_path / "gil.py"
    script.write_text(GIL_HELD)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=60, env=ENV)
    assert proc.returncode == 0, proc.stderr
    fault = (tmp_path / "run" / "stall_rank0_faulthandler.txt").read_text()
    assert "Timeout (0:00:00.6" in fault and "in catastrophic" in fault
    doc = summarize_stalls(str(tmp_path / "run"))
    rank = doc["ranks"][0]
    assert rank["status"] == "stuck" and rank["faulthandler_dumps"] >= 1
    if rank["where_source"] == "faulthandler":  # the watchdog thread was starved past its due time
        assert rank["where"]["function"] == "match"


PROFILED = """
import time, torch

def slow_hungarian(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass

model = torch.nn.Linear(8, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
for i in range(6):
    model(torch.randn(4, 8)).sum().backward()
    opt.step()
    opt.zero_grad()
    if i == 2:
        slow_hungarian(1.6)
"""


@pytest.mark.slow
def test_profile_watchdog_end_to_end(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(PROFILED))
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "perfkit", "profile", "--quiet", "--mode", "light", "--watchdog", "0.5",
         "--out", str(run), str(script)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, env=ENV,
    )
    assert proc.returncode == 0, proc.stderr
    # Start-up (imports, the first step) counts too: it may have been dumped as well,
    # "before the first step"; the stall after step 3 must be there.
    texts = [p.read_text() for p in stall_files(run)]
    hungarian = [t for t in texts if "where: slow_hungarian (" in t]
    assert hungarian, proc.stderr
    assert "last_step: 3\n" in hungarian[0]
    assert "perfkit: rank 0 stalled" in proc.stderr and "after step 3 in slow_hungarian" in proc.stderr
    beats = [json.loads(ln) for ln in (run / "heartbeat_rank0.jsonl").read_text().splitlines()]
    assert [b["step"] for b in beats] == [1, 2, 3, 4, 5, 6]
    assert all(b["step_ms"] is not None for b in beats[1:])
    # Steps resumed after the stall: the summary calls rank 0 recovered, not stuck.
    doc = summarize_stalls(str(run))
    assert doc["stuck"] == [] and doc["recovered"] == ["0"]
    # The summary names where the latest dump found rank 0: slow_hungarian, unless a later step was
    # slow too (a loaded machine can make one take over the 0.5 s threshold: then its own dump is
    # the latest, taken in the loop at module level).
    latest = stall_files(run)[-1].read_text()
    assert f"where: {doc['ranks'][0]['where']['function']} (" in latest
    assert doc["ranks"][0]["where"]["function"] == "slow_hungarian" or len(texts) > len(hungarian)


def test_stalls_does_not_import_torch():
    code = (
        "import sys; from perfkit.cli import main; "
        "rc = main(['stalls', sys.argv[1]]); "
        "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code, "/nonexistent-dir"], capture_output=True, text=True,
                          timeout=60, env=ENV)
    assert proc.returncode == 2, proc.stderr
    assert "torch imported" not in proc.stderr
