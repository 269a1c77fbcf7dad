"""The stall watchdog: stack dumps while the main thread spins in pure Python, heartbeats, perfkit stalls."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from perfkit.job.stalls import summarize_stalls
from perfkit.cli import main
from perfkit.collect.watchdog import Watchdog

from ..conftest import REPO

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


def stall_files(run: Path) -> list[Path]:
    """The Python watchdog's dumps, oldest first (several in one second get -2, -3 ... suffixes)."""
    files = [p for p in run.glob("stall_rank*_*.txt") if not p.name.endswith("_faulthandler.txt")]

    def number(p: Path) -> int:
        for line in p.read_text().splitlines():
            if line.startswith("dump: "):
                return int(line.split()[1])
        return 0

    return sorted(files, key=number)


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


# ---------------------------------------------------------------------- perfkit stalls


def fake_rank(folder: Path, rank: int, last_step: int, last_time: float, stall_at: float | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"heartbeat_rank{rank}.jsonl", "w") as f:
        for step in range(1, last_step + 1):
            t = last_time - (last_step - step) * 1.0
            f.write(json.dumps({"step": step, "time": t, "step_ms": 1000.0, "tokens_per_s": None,
                                "memory_bytes": None, "rank": rank}) + "\n")
        f.write('{"step": 99, "ti')  # a line cut short by a kill is skipped
    if stall_at is not None:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(stall_at))
        (folder / f"stall_rank{rank}_{stamp}.txt").write_text(textwrap.dedent(f"""\
            perfkit stall dump
            rank: {rank}
            pid: 4242
            last_step: {last_step}
            seconds_since_last_step: {stall_at - last_time:.3f}
            last_step_time: {last_time:.6f}
            time: {time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(stall_at))}
            unix_time: {stall_at:.6f}
            watchdog_s: 180
            dump: 1
            where: _hungarian_linear_sum_assignment (/src/align.py:88)

            Thread MainThread (ident 1, main), most recent call last:
              File "/src/align.py", line 88, in _hungarian_linear_sum_assignment
                while not done:
            """))


def test_stalls_cli_verdict_and_json(tmp_path, capsys):
    now = time.time()
    run = tmp_path / "run"
    fake_rank(run / "rank0", 0, last_step=40, last_time=now - 5)  # recent, no dump
    fake_rank(run / "rank1", 1, last_step=12, last_time=now - 400, stall_at=now - 200)  # dumped, no beat since
    out = tmp_path / "out.json"
    assert main(["stalls", str(run), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["schema"] == "perfkit.stalls/1"
    by_rank = {r["rank"]: r for r in doc["ranks"]}
    assert by_rank[0]["status"] == "healthy" and by_rank[0]["dumps"] == 0 and by_rank[0]["last_step"] == 40
    stuck = by_rank[1]
    assert stuck["status"] == "stuck" and stuck["dumps"] == 1 and stuck["last_step"] == 12
    assert stuck["where"] == {"function": "_hungarian_linear_sum_assignment", "file": "/src/align.py", "line": 88}
    assert stuck["seconds_stalled"] == pytest.approx(200, abs=0.01)
    assert stuck["first_dump_time"] == pytest.approx(now - 200, abs=1e-3)
    assert doc["stuck"] == ["rank1/1"] and doc["healthy"] == ["rank0/0"]
    assert doc["verdict"].startswith("stuck: rank rank1/1 in _hungarian_linear_sum_assignment (/src/align.py:88)")
    assert "healthy: rank rank0/0" in doc["verdict"]
    printed = capsys.readouterr().out
    assert "_hungarian_linear_sum_assignment" in printed and "stuck" in printed and "healthy" in printed


def test_stalls_flat_dir_and_stale_rank(tmp_path):
    now = time.time()
    fake_rank(tmp_path, 0, last_step=10, last_time=now)
    fake_rank(tmp_path, 1, last_step=3, last_time=now - 3600)  # no dump, far behind: silent, not healthy
    doc = summarize_stalls(str(tmp_path))
    assert doc["healthy"] == ["0"] and doc["silent"] == ["1"] and doc["stuck"] == []
    assert doc["verdict"].startswith("no rank is stuck")


def test_stalls_bad_input_exit_2_one_line(tmp_path, capsys):
    assert main(["stalls", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("perfkit: error:") and "missing" in err[0]
    (tmp_path / "empty").mkdir()
    assert main(["stalls", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no heartbeat_rank" in err[0]


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


# ---------------------------------------------------------------------- in process


def watchdog_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "perfkit-watchdog"]


def test_stop_leaves_no_thread_and_is_idempotent(tmp_path):
    stream = io.StringIO()
    wd = Watchdog(str(tmp_path / "run"), 30.0, rank=2, stream=stream, faulthandler=True).start()
    assert wd.running and len(watchdog_threads()) == 1
    for step in range(1, 6):
        wd.beat(step, step_ms=1.5)
    wd.stop()
    wd.stop()
    assert not wd.running and watchdog_threads() == []
    lines = (tmp_path / "run" / "heartbeat_rank2.jsonl").read_text().splitlines()
    assert [json.loads(ln)["step"] for ln in lines] == [1, 2, 3, 4, 5]  # flushed at stop, within the 1 s interval
    assert not (tmp_path / "run" / "stall_rank2_faulthandler.txt").exists()  # never fired: removed
    assert stream.getvalue() == ""

    with Watchdog(str(tmp_path / "run2"), 30.0, stream=stream) as wd2:
        assert len(watchdog_threads()) == 1
        wd2.beat(1)
    assert watchdog_threads() == []
    Watchdog(str(tmp_path / "run3"), 1.0).stop()  # never started: nothing to do


def test_in_process_stall_before_first_step(tmp_path):
    stream = io.StringIO()
    with Watchdog(str(tmp_path), 0.2, stream=stream, faulthandler=False):
        deadline = time.monotonic() + 10
        while not stall_files(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.02)
    assert watchdog_threads() == []
    text = stall_files(tmp_path)[0].read_text()
    assert "last_step: none\n" in text and "where: test_in_process_stall_before_first_step (" in text
    assert "stalled" in stream.getvalue() and "before the first step" in stream.getvalue()


def test_bad_seconds():
    from perfkit.errors import UsageError

    for bad in (0, -1, float("nan"), "x"):
        with pytest.raises(UsageError):
            Watchdog("unused", bad)
