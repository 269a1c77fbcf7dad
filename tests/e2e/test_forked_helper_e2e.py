"""Helpers forked from ``perfkit analyze`` (perfkit/job/forked.py), for real: in a fresh single-threaded
interpreter, as the command runs them. The 8 real DLRM ranks analysed with one helper, or three, give the
same documents as this process analysing them; several helpers each end when their own pipe closes; a helper
killed by the kernel, or with a bug, is a failed rank named with its signal or exit status while the others
are analysed; a helper dies with its command, busy or idle; and the command itself writes the same job
document and the same report as ``perfkit.cli.main`` in this process, which forks nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from perfkit.job.engines import analyse_outcome, cpu_count

from ..conftest import REPO

DLRM = REPO / "tests" / "data" / "traces" / "param_dlrm_8xv100"
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
PATHS = sorted(str(p) for p in DLRM.glob("worker*_step_12.*.pt.trace.json.gz"))

#: Run in a fresh interpreter: analyses PATHS with a forked helper; prints what happened as JSON.
SCRIPT = """
import json, os, signal, sys
from perfkit.job import forked
from perfkit.job.engines import LocalEngine, RankFailure

mode, paths = sys.argv[1], sys.argv[2:]
if mode in ("bug", "busy"):  # the copy's analysis raises (a bug), or takes 10 minutes; this process's does not
    import time
    from perfkit.job import engines
    command, real = os.getpid(), engines.analyse_text
    def analyse_text(path, workers=None):
        if os.getpid() != command:
            if mode == "busy":
                time.sleep(600)
            raise ZeroDivisionError("a bug in the helper")
        return real(path, workers)
    engines.analyse_text = analyse_text
served = []
plain = forked.ForkedServer.receive
def receive(self, path):
    out = plain(self, path)
    served.append({"pid": self.pid, "path": path, "ok": not isinstance(out, RankFailure)})
    return out
forked.ForkedServer.receive = receive

from perfkit.job.engines import json_bytes
sizes = sorted(json_bytes(p) for p in paths)
small_bytes = sizes[len(sizes) // 2 - 1] if mode == "mixed" else 32 * 1000 * 1000  # mixed: half are "large"
eng = LocalEngine(forker=forked.fork_server, processes=4 if mode in ("many", "plain4") else 2,
                  small_bytes=small_bytes)
plan = eng.prepare(paths)
helpers = [s.pid for s in eng._prepared[2]]
if mode == "many":  # the first helper ends when its pipe closes, though later copies were forked after it
    import time
    def running(pid):  # not ended (an ended helper is a zombie until reaped)
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False
    eng._prepared[2][0].close()
    deadline = time.monotonic() + 30
    while running(helpers[0]) and time.monotonic() < deadline:
        time.sleep(0.02)
    first_ended = not running(helpers[0])
    others_alive = all(running(p) for p in helpers[1:])
    eng.close()
    print(json.dumps({"helpers": helpers, "first_ended": first_ended, "others_alive": others_alive}))
    sys.exit(0)
if mode == "orphan":  # the command dies with its helper idle: the helper must end by itself
    print(json.dumps({"helpers": helpers}), flush=True)
    os._exit(0)
if mode == "busy":  # the command is killed while its helper is busy with a trace
    helper = eng._prepared[2][0]
    helper._requests.write((json.dumps(paths[0]) + "\\n").encode())
    helper._requests.flush()
    print(json.dumps({"helpers": helpers}), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
if mode == "kill":
    os.kill(helpers[0], signal.SIGKILL)
got = {}
for i, out in eng.map(paths):
    got[i] = out if not isinstance(out, RankFailure) else {"failed": out.reason, "bad_input": out.bad_input}
print(json.dumps({"me": os.getpid(), "helpers": helpers, "plan_helpers": plan.helpers, "served": served,
                  "plan_large": len(plan.large), "large_paths": [paths[i] for i in plan.large],
                  "docs": [got[i] for i in range(len(paths))]}))
"""


def _run(mode: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, mode, *PATHS], capture_output=True, text=True, env=ENV,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    out["stderr"] = proc.stderr
    return out


def _gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (ended, or a zombie waiting for a parent that reaps late)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("mode, helpers", [("plain", 1), ("plain4", 3), ("mixed", 1)])
def test_forked_helpers_analyse_ranks_and_they_equal_this_process_documents(mode: str, helpers: int):
    assert len(PATHS) == 8
    got = _run(mode)
    assert got["plan_helpers"] == helpers == len(set(got["helpers"])) and got["me"] not in got["helpers"]
    by_helper = [s for s in got["served"] if s["ok"]]
    assert by_helper and {s["pid"] for s in by_helper} <= set(got["helpers"])  # copies did analyse ranks
    assert len(by_helper) == len(got["served"]) < 8  # and the command's own thread did the others
    if mode == "mixed":  # the larger half went to fresh interpreters (no helper took one)
        assert got["plan_large"] == 4 and not {s["path"] for s in by_helper} & set(got["large_paths"])
    here = [analyse_outcome(p) for p in PATHS]
    assert json.dumps(got["docs"]) == json.dumps(here)
    for pid in got["helpers"]:
        _ends(pid)  # closed at the end of the map: each ends by itself


def test_several_helpers_each_end_when_their_own_pipe_closes():
    """Each copy closes the command's ends of the pipes of the helpers forked before it: else the first
    helper would not see its request pipe end while a later one lives (it holds the pipe's other end)."""
    got = _run("many")
    assert len(got["helpers"]) == 3 and len(set(got["helpers"])) == 3  # 4 lanes: 3 helpers beside this thread
    assert got["first_ended"] and got["others_alive"]
    for pid in got["helpers"]:
        _ends(pid)


def test_a_helper_killed_by_the_kernel_is_a_failed_rank_and_the_others_are_analysed():
    got = _run("kill")
    failed = [(i, d) for i, d in enumerate(got["docs"]) if "failed" in d]
    assert len(failed) == 1  # the rank sent to the dead helper; later ones go to a new server or this process
    i, d = failed[0]
    assert d["failed"] == f"{PATHS[i]}: the analysis worker failed (killed by SIGKILL (out of memory?))"
    assert d["bad_input"] is False
    here = [analyse_outcome(p) for p in PATHS]
    assert all(json.dumps(got["docs"][k]) == json.dumps(here[k]) for k in range(8) if k != i)


def test_a_bug_in_a_helper_is_a_failed_rank_with_its_traceback_on_stderr():
    got = _run("bug")
    failed = [(i, d) for i, d in enumerate(got["docs"]) if "failed" in d]
    assert len(failed) == 1  # the helper's first rank; the next small one goes to a new (unpatched) server
    i, d = failed[0]
    assert d["failed"] == f"{PATHS[i]}: the analysis worker failed (exit status 1)" and d["bad_input"] is False
    assert "ZeroDivisionError: a bug in the helper" in got["stderr"]
    here = [analyse_outcome(p) for p in PATHS]
    assert all(json.dumps(got["docs"][k]) == json.dumps(here[k]) for k in range(8) if k != i)


def _ends(pid: int) -> None:
    deadline = time.monotonic() + 30
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(pid)


def test_a_busy_helper_is_killed_with_its_command():
    """The kernel ends the helper with the command (PR_SET_PDEATHSIG), even mid-trace: here an analysis
    that would take 10 minutes."""
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, "busy", *PATHS], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout is not None
    pid = json.loads(proc.stdout.readline())["helpers"][0]
    assert proc.wait(timeout=120) == -9
    _ends(pid)
    proc.communicate(timeout=30)  # the helper's end closed its copy of the pipes too


def test_a_helper_ends_by_itself_when_its_command_dies():
    got = _run("orphan")
    _ends(got["helpers"][0])


#: ``perfkit analyze ARGS`` as the console script runs it, noting each helper forked in the file $FORKED.
COMMAND = """
import os, sys
from perfkit.job import forked
plain = forked.fork_server
def fork_server(workers):
    helper = plain(workers)
    if helper is not None:
        with open(os.environ["FORKED"], "a") as f:
            f.write(f"{helper.pid}\\n")
    return helper
forked.fork_server = fork_server
sys.argv = ["perfkit", "analyze", *sys.argv[1:]]
from perfkit.cli import console
console()
"""


def test_the_command_with_a_helper_writes_what_main_writes_without_one(tmp_path: Path, capsys, monkeypatch):
    from perfkit.cli import main

    job = tmp_path / "job"
    job.mkdir()
    for r, p in enumerate(PATHS):
        (job / f"rank{r}.pt.trace.json.gz").symlink_to(p)
    monkeypatch.setenv("COLUMNS", "120")
    forked_json, here_json, noted = tmp_path / "forked.json", tmp_path / "here.json", tmp_path / "forked.txt"
    proc = subprocess.run([sys.executable, "-c", COMMAND, str(job), "--json", str(forked_json)], capture_output=True,
                          text=True, env={**ENV, "COLUMNS": "120", "FORKED": str(noted)}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(noted.read_text().split() if noted.exists() else []) == min(8, cpu_count()) - 1  # a helper per lane beside its own thread
    capsys.readouterr()
    assert main(["analyze", str(job), "--json", str(here_json)]) == 0  # in this process: nothing forked
    here = capsys.readouterr()
    assert forked_json.read_bytes() == here_json.read_bytes()
    assert proc.stdout == here.out  # one report, printed once, the same
    assert proc.stderr.strip().splitlines()[-1] == f"wrote {forked_json}"
