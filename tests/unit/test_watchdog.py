"""The stall watchdog in-process (heartbeats, a stall before the first step) and perfkit stalls; the stack
dumps of a script spinning in pure Python or in C code are tests/e2e/test_watchdog_e2e.py."""

from __future__ import annotations

import dis
import io
import json
import textwrap
import threading
import time
from pathlib import Path

import pytest

from perfkit.job.stalls import summarize_stalls
from perfkit.cli import main
from perfkit.collect.watchdog import Watchdog

from .._no_torch import cli_without_torch


def stall_files(run: Path) -> list[Path]:
    """The Python watchdog's dumps, oldest first (several in one second get -2, -3 ... suffixes)."""
    files = [p for p in run.glob("stall_rank*_*.txt") if not p.name.endswith("_faulthandler.txt")]

    def number(p: Path) -> int:
        for line in p.read_text().splitlines():
            if line.startswith("dump: "):
                return int(line.split()[1])
        return 0

    return sorted(files, key=number)


# ---------------------------------------------------------------------- perfkit stalls


def fake_rank(folder: Path, rank: int, last_step: int, last_time: float, stall_at: float | None = None,
              where: str = "/src/align.py:88", line: str = "88") -> None:
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
            where: _hungarian_linear_sum_assignment ({where})

            Thread MainThread (ident 1, main), most recent call last:
              File "/src/align.py", line {line}, in _hungarian_linear_sum_assignment
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


def test_a_line_the_dumping_rank_did_not_know_is_read_as_unknown_not_a_number(tmp_path):
    """A dump written where the frame's line was not in its code's line table leaves the line out of
    ``where`` and writes ``line ?`` in the stack: read back as None, and the verdict names no line."""
    now = time.time()
    fake_rank(tmp_path, 0, last_step=12, last_time=now - 400, stall_at=now - 200, where="/src/align.py", line="?")
    doc = summarize_stalls(str(tmp_path))
    stuck = doc["ranks"][0]
    assert stuck["status"] == "stuck"
    assert stuck["where"] == {"function": "_hungarian_linear_sum_assignment", "file": "/src/align.py", "line": None}
    assert "in _hungarian_linear_sum_assignment (/src/align.py)" in doc["verdict"] and ":0" not in doc["verdict"]


def test_the_watchdog_writes_an_unknown_line_as_unknown():
    from perfkit.collect import frames
    from perfkit.collect.watchdog import _stack_where, _where_text

    code = test_the_watchdog_writes_an_unknown_line_as_unknown.__code__
    walked = (code, 10_000_000)  # an offset past the code's line table: its line is not known
    assert frames.line_of(code, 10_000_000) == -1
    where = _stack_where(walked)
    assert where is not None and where[2] is None and _where_text(where).endswith(f"({code.co_filename})")
    assert ", line ?, in test_the_watchdog_writes_an_unknown_line_as_unknown" in frames.format_stack(walked)
    known = _stack_where((code, 0))
    first_line = dict(dis.findlinestarts(code))[0]  # the def line from Python 3.11 (RESUME), the next one before
    assert known is not None and known[2] == first_line and _where_text(known).endswith(f":{known[2]})")


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
    proc = cli_without_torch("stalls", "/nonexistent-dir")  # any import of torch fails
    assert proc.returncode == 2, proc.stderr
    assert "torch" not in proc.stderr and "Traceback" not in proc.stderr


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
    with Watchdog(str(tmp_path), 0.2, stream=stream, faulthandler=False) as wd:
        deadline = time.monotonic() + 10
        while not wd.dumps and time.monotonic() < deadline:  # only this frame: the dump's "where" is here
            time.sleep(0.02)
    assert watchdog_threads() == []
    text = stall_files(tmp_path)[0].read_text()
    assert "last_step: none\n" in text and "where: test_in_process_stall_before_first_step (" in text
    assert "stalled" in stream.getvalue() and "before the first step" in stream.getvalue()


def test_without_the_frame_walker_the_dump_has_faulthandler_stacks(tmp_path, monkeypatch):
    """Where perfkit's C frame walker is not built, the stacks come from faulthandler (C, safe while the
    thread runs), never from a walk in Python; the place is then unknown."""
    from perfkit.collect import watchdog

    monkeypatch.setattr(watchdog, "stacks", lambda idents, depth: None)
    with Watchdog(str(tmp_path), 0.2, stream=io.StringIO(), faulthandler=False) as wd:
        deadline = time.monotonic() + 10
        while not wd.dumps and time.monotonic() < deadline:
            time.sleep(0.02)
    text = stall_files(tmp_path)[0].read_text()
    assert "where: unknown\n" in text
    assert "Stacks (faulthandler; perfkit's frame walker is not built here)" in text
    assert "in test_without_the_frame_walker_the_dump_has_faulthandler_stacks" in text  # this thread's frame


def test_bad_seconds():
    from perfkit.errors import UsageError

    for bad in (0, -1, float("nan"), "x"):
        with pytest.raises(UsageError):
            Watchdog("unused", bad)
