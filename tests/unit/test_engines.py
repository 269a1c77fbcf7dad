"""The rank engines' seam (perfkit/job/engines.py): the local engine's choice between this process, reused
server processes and fresh interpreters; results taken as they arrive; failed ranks in the job view.
Fake analyse functions where the route is what is tested; real small traces where the document is."""

from __future__ import annotations

import gzip
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import pytest

from perfkit.errors import MissingDependencyError, TraceFormatError, UsageError
from perfkit.job import make_engine, ranks
from perfkit.job import engines as E

from .test_ranks import straggler_job

MB = 1000 * 1000


# --------------------------------------------------------------------- the plan


def test_small_traces_stay_in_this_process_until_the_work_pays_for_a_server():
    one_mb = [1 * MB] * 8  # 8 DLRM-like ranks: 8 * (0.02 + 0.01) = 0.24 s of work, less than a server's start
    plan = E.plan_local(one_mb, cpus=2)
    assert plan.small == list(range(8)) and plan.large == []
    assert plan.small_lanes == 1 and plan.lanes == 2  # lane 0 alone takes them; no server starts
    many = E.plan_local([1 * MB] * 1024, cpus=4)  # about 25 s of work: every CPU gets a lane
    assert many.small_lanes == 4 == many.lanes
    some = E.plan_local([1 * MB] * 60, cpus=8)  # 60 * 0.03 = 1.8 s: one server beside this process
    assert some.small_lanes == 2
    assert E.plan_local([1 * MB] * 60, cpus=8, processes=1).small_lanes == 1  # processes caps the lanes


def test_large_traces_each_get_a_fresh_interpreter_longest_first():
    sizes = [40 * MB, 1 * MB, E.SMALL_TRACE_BYTES, E.SMALL_TRACE_BYTES + 1, 900 * MB]
    plan = E.plan_local(sizes, cpus=2)
    assert plan.small == [1, 2]  # the threshold itself is small
    assert plan.large == [4, 0, 3]  # longest first: the job ends sooner
    assert plan.lanes == 2 and plan.decode_threads == 1  # 2 CPUs over 2 traces in flight
    assert E.plan_local([900 * MB], cpus=8).decode_threads is None  # one trace: the reader decides
    assert E.plan_local([900 * MB] * 2, cpus=8, workers=3).decode_threads == 3  # --workers wins


def test_json_bytes_reads_the_gzip_trailer_not_the_data(tmp_path):
    body = b'{"traceEvents": []}' + b" " * 123_456
    gz = tmp_path / "rank0.json.gz"
    gz.write_bytes(gzip.compress(body))
    assert E.json_bytes(str(gz)) == len(body)
    plain = tmp_path / "rank1.json"
    plain.write_bytes(body)
    assert E.json_bytes(str(plain)) == len(body)
    fake = tmp_path / "rank2.json.gz"  # named .gz, not gzip: its own size
    fake.write_bytes(b"x" * 1000)
    assert E.json_bytes(str(fake)) == 1000
    assert E.json_bytes(str(tmp_path / "nope.json.gz")) == 0  # unreadable: small, fails at once with the reader's message


# --------------------------------------------------------------------- the local engine's routes


class FakeServer:
    started: list["FakeServer"] = []

    route = "server"

    def __init__(self, workers: Optional[int]) -> None:
        self.done: list[str] = []
        self.sent: list[str] = []
        self.most_sent = 0  # the most paths sent and not yet received at once
        self.closed = False
        FakeServer.started.append(self)

    def send(self, path: str) -> None:
        assert not self.closed
        self.sent.append(path)
        self.most_sent = max(self.most_sent, len(self.sent))

    def receive(self, path: str) -> E.Outcome:
        assert self.sent and self.sent.pop(0) == path, "answers come in the order sent"
        self.done.append(path)
        return {"route": self.route, "path": path}

    def close(self) -> None:
        self.closed = True


def _engine(routes: dict[str, str], **kw: Any) -> E.LocalEngine:
    FakeServer.started = []

    def analyse(path: str, workers: Optional[int]) -> E.Outcome:
        routes[path] = f"this process {os.getpid()} {threading.current_thread().name}"
        return {"route": "here", "path": path}

    def fresh(path: str, workers: Optional[int]) -> E.Outcome:
        routes[path] = "fresh"
        return {"route": "fresh", "path": path}

    sizes = {f"r{i}": s for i, s in enumerate(kw.pop("sizes"))}
    return E.LocalEngine(analyse=analyse, fresh=fresh, server=FakeServer, sizes=sizes.__getitem__, **kw)


def test_local_engine_routes_each_trace_once():
    routes: dict[str, str] = {}
    eng = _engine(routes, sizes=[1 * MB] * 6 + [200 * MB] * 2, processes=2)
    got = dict(eng.map([f"r{i}" for i in range(8)]))
    assert sorted(got) == list(range(8))
    assert {got[i]["route"] for i in (6, 7)} == {"fresh"}
    assert all(got[i]["route"] == "here" for i in range(6))  # 0.15 s of small work: no server
    assert FakeServer.started == [] and eng.servers_started == 0
    here = {routes[f"r{i}"] for i in range(6)}
    assert here == {f"this process {os.getpid()} perfkit-rank-lane-0"}


def test_local_engine_starts_servers_once_for_enough_small_work():
    routes: dict[str, str] = {}
    eng = _engine(routes, sizes=[1 * MB] * 40, processes=3, server_work_s=0.1)  # 1 s of work: 2 servers
    got = dict(eng.map([f"r{i}" for i in range(40)]))
    assert sorted(got) == list(range(40))
    assert eng.last_plan is not None and eng.last_plan.small_lanes == 3
    # each server is started once and reused (not once per trace), and closed at the end
    assert len(FakeServer.started) <= 2 and all(h.closed for h in FakeServer.started)
    by_servers = sum(len(h.done) for h in FakeServer.started)
    assert by_servers == sum(1 for d in got.values() if d["route"] == "server")
    assert by_servers + sum(1 for d in got.values() if d["route"] == "here") == 40


def test_results_are_yielded_as_they_arrive():
    """Rank 0 cannot finish before rank 1 has been taken by the caller: arrival order, not path order."""
    taken = threading.Event()

    def fresh(path: str, workers: Optional[int]) -> E.Outcome:
        if path == "slow":
            assert taken.wait(30), "rank 1 was not yielded while rank 0 was still running"
        return {"path": path}

    eng = E.LocalEngine(fresh=fresh, sizes=lambda p: 500 * MB, processes=2)
    order = []
    for i, _ in eng.map(["slow", "fast"]):
        order.append(i)
        taken.set()
    assert order == [1, 0]


def test_a_bug_in_a_lane_is_raised_not_swallowed():
    def analyse(path: str, workers: Optional[int]) -> E.Outcome:
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        list(E.LocalEngine(analyse=analyse, sizes=lambda p: 10).map(["a", "b"]))


def test_a_worker_killed_by_the_kernel_is_named():
    f = E.worker_died("/x/rank3.json", -signal.SIGKILL, "line one\nline two\n")
    assert f.reason == "/x/rank3.json: the analysis worker failed (killed by SIGKILL (out of memory?)): line one line two"
    assert not f.bad_input
    assert "exit status 1" in E.worker_died("/x/rank3.json", 1, "").reason
    assert E.worker_died("/x/rank3.json", None, "").reason == \
        "/x/rank3.json: the analysis worker failed (its exit status is unknown)"  # reaped by someone else


# --------------------------------------------------------------------- helpers forked from this process


def test_forkable_plans_give_every_lane_small_traces_from_the_second_one():
    plan = E.plan_local([1 * MB] * 8, cpus=2, forkable=True)  # 0.23 s of work: no server, but a helper
    assert plan.small_lanes == 2 == plan.lanes and plan.helpers == 1
    assert E.plan_local([1 * MB] * 8, cpus=2).helpers == 0  # not forkable: as before
    assert E.plan_local([1 * MB], cpus=8, forkable=True).helpers == 0  # one small trace: nothing to share
    wide = E.plan_local([1 * MB] * 3 + [200 * MB], cpus=8, forkable=True)
    assert wide.lanes == 4 and wide.small_lanes == 3 and wide.helpers == 2  # one helper per further small trace
    assert E.plan_local([1 * MB] * 60, cpus=8, processes=1, forkable=True).helpers == 0  # processes caps them


class FakeHelper(FakeServer):
    route = "helper"


def _forking_engine(routes: dict[str, str], made: list[FakeHelper], can: int, **kw: Any) -> E.LocalEngine:
    def forker(workers: Optional[int]) -> Optional[E.Server]:
        if len(made) >= can:
            return None
        made.append(FakeHelper(workers))
        return made[-1]

    return _engine(routes, forker=forker, **kw)


def test_small_traces_go_to_the_forked_helpers_beside_this_process():
    routes: dict[str, str] = {}
    made: list[FakeHelper] = []
    eng = _forking_engine(routes, made, can=5, sizes=[1 * MB] * 30, processes=3)
    plan = eng.prepare([f"r{i}" for i in range(30)])
    assert plan.helpers == 2 and len(made) == 2 and eng.servers_started == 2  # forked before any lane starts
    got = dict(eng.map([f"r{i}" for i in range(30)]))
    assert sorted(got) == list(range(30))
    by_helpers = sum(len(h.done) for h in made)
    assert by_helpers == sum(1 for d in got.values() if d["route"] == "helper")
    assert by_helpers + sum(1 for d in got.values() if d["route"] == "here") == 30
    assert all(h.closed for h in made) and FakeServer.started == made  # no server started as a process
    assert eng.last_plan == plan


def test_helpers_that_cannot_be_forked_leave_the_plan():
    routes: dict[str, str] = {}
    made: list[FakeHelper] = []
    eng = _forking_engine(routes, made, can=1, sizes=[1 * MB] * 30, processes=4)
    plan = eng.prepare([f"r{i}" for i in range(30)])
    assert len(made) == 1 and plan.helpers == 1 and plan.small_lanes == 2 and plan.lanes == 4
    got = dict(eng.map([f"r{i}" for i in range(30)]))
    assert sorted(got) == list(range(30)) and {d["route"] for d in got.values()} <= {"helper", "here"}
    none: list[FakeHelper] = []
    alone = _forking_engine(routes, none, can=0, sizes=[1 * MB] * 8, processes=2)
    assert alone.prepare([f"r{i}" for i in range(8)]) == E.plan_local([1 * MB] * 8, cpus=E.cpu_count(), processes=2)
    assert {d["route"] for _, d in alone.map([f"r{i}" for i in range(8)])} == {"here"}


def _helper_first_engine(helper: type[FakeHelper]) -> tuple[E.LocalEngine, list[FakeHelper]]:
    """2 lanes, one helper: this process's lane waits in its first trace until the helper has answered once."""
    FakeServer.started = []
    made: list[FakeHelper] = []
    answered = threading.Event()

    class Helper(helper):  # type: ignore[valid-type,misc]
        def receive(self, path: str) -> E.Outcome:
            try:
                return super().receive(path)
            finally:
                answered.set()

    def forker(workers: Optional[int]) -> Optional[E.Server]:
        made.append(Helper(workers))
        return made[-1]

    def analyse(path: str, workers: Optional[int]) -> E.Outcome:
        assert answered.wait(30), "the helper's lane never answered"
        return {"route": "here", "path": path}

    eng = E.LocalEngine(analyse=analyse, server=FakeServer, forker=forker, sizes=lambda p: 1 * MB, processes=2)
    return eng, made


def test_a_server_lane_keeps_a_second_trace_waiting_in_the_pipe_while_enough_are_left():
    eng, made = _helper_first_engine(FakeHelper)
    got = dict(eng.map([f"r{i}" for i in range(30)]))
    assert sorted(got) == list(range(30)) and len(made) == 1 and made[0].closed
    assert made[0].most_sent == E.SERVER_QUEUE == 2 and len(made[0].done) >= 2
    # two traces: after the lane's first, one is left for the other lane: none waits behind it
    eng, made = _helper_first_engine(FakeHelper)
    assert sorted(dict(eng.map(["r0", "r1"]))) == [0, 1]
    assert made[0].most_sent == 1 and len(made[0].done) == 1


class DyingHelper(FakeHelper):
    """Dies in its first trace (the worker ended without answering)."""

    def receive(self, path: str) -> E.Outcome:
        out = super().receive(path)
        if len(self.done) == 1:
            self.behind = list(self.sent)
            self.closed_at_death = self.closed
            return E.RankFailure(path, f"{path}: the analysis worker failed (killed by SIGKILL (out of memory?))")
        return out


def test_the_trace_waiting_behind_a_dead_servers_trace_is_analysed_not_failed():
    eng, made = _helper_first_engine(DyingHelper)
    paths = [f"r{i}" for i in range(12)]
    got = dict(eng.map(paths))
    assert sorted(got) == list(range(12)) and len(made) == 1
    dead = made[0]
    assert isinstance(dead, DyingHelper) and len(dead.done) == 1 and dead.closed
    assert [i for i, d in got.items() if isinstance(d, E.RankFailure)] == [paths.index(dead.done[0])]
    assert len(dead.behind) == 1  # sent behind the trace it died on: analysed elsewhere, not failed
    again = got[paths.index(dead.behind[0])]
    assert not isinstance(again, E.RankFailure) and again["route"] in ("here", "server")


def test_prepared_helpers_are_closed_when_no_map_uses_them_and_map_prepares_other_paths():
    routes: dict[str, str] = {}
    made: list[FakeHelper] = []
    eng = _forking_engine(routes, made, can=9, sizes=[1 * MB] * 4, processes=2)
    eng.prepare(["r0", "r1", "r2", "r3"])
    eng.close()
    assert len(made) == 1 and made[0].closed and made[0].done == []
    got = dict(eng.map(["r0", "r1"]))  # other paths than prepared: prepared again (a new helper)
    assert sorted(got) == [0, 1] and len(made) == 2 and made[1].closed


def test_a_helper_is_forked_only_while_this_process_has_one_thread():
    from perfkit.job import forked

    release = threading.Event()
    other = threading.Thread(target=release.wait, daemon=True)
    other.start()
    try:
        assert not forked.can_fork() and forked.fork_server(None) is None
        assert forked._os_threads() >= 2  # the kernel sees it too
    finally:
        release.set()
        other.join()


def test_threads_that_python_does_not_list_also_prevent_a_fork(monkeypatch):
    """A C library's own threads (OpenBLAS, a CUDA runtime) are not in threading's list: the kernel's count is."""
    from perfkit.job import forked

    monkeypatch.setattr(forked.threading, "active_count", lambda: 1)
    monkeypatch.setattr(forked, "_os_threads", lambda: 3)
    assert not forked.can_fork() and forked.fork_server(None) is None


# --------------------------------------------------------------------- every route, the same document


def test_this_process_a_server_and_a_fresh_interpreter_give_the_same_document(tmp_path):
    paths = [str(p) for p in straggler_job(tmp_path)[:2]]
    bad = tmp_path / "rank9.pt.trace.json"
    bad.write_text("{not json")
    here = [E.analyse_outcome(p) for p in (*paths, str(bad))]
    server = E.ProcessServer(None)
    try:
        for p in (*paths, str(bad)):  # all sent at once: answered in the order sent
            server.send(p)
        served = [server.receive(p) for p in (*paths, str(bad))]
    finally:
        server.close()
    fresh = [E.fresh_interpreter(p, None) for p in (paths[0], str(bad))]
    assert json.dumps(here[:2]) == json.dumps(served[:2]) and json.dumps(here[0]) == json.dumps(fresh[0])
    for failure in (here[2], served[2], fresh[1]):
        assert isinstance(failure, E.RankFailure) and failure.bad_input
        assert failure.reason == here[2].reason and failure.reason.startswith(str(bad))  # type: ignore[union-attr]


# --------------------------------------------------------------------- failed ranks in the job view


class ListEngine:
    """Yields prepared outcomes in a given (arrival) order."""
    name = "list"

    def __init__(self, outcomes: dict[int, E.Outcome], order: Sequence[int]) -> None:
        self.outcomes, self.order = outcomes, order

    def map(self, paths: Sequence[str]) -> Iterator[tuple[int, E.Outcome]]:
        for i in self.order:
            yield i, self.outcomes[i]


def test_arrival_order_does_not_change_the_job_document(tmp_path):
    paths = [str(p) for p in straggler_job(tmp_path)]
    docs = {i: E.analyse_outcome(p) for i, p in enumerate(paths)}
    in_order = ranks.analyze_many(paths, engine=ListEngine(docs, [0, 1, 2, 3])).to_dict()
    reversed_ = ranks.analyze_many(paths, engine=ListEngine(docs, [3, 1, 0, 2])).to_dict()
    assert json.dumps(in_order) == json.dumps(reversed_)
    assert [r["rank"] for r in in_order["ranks"]] == [0, 1, 2, 3]


def test_a_failed_rank_is_a_row_and_a_finding_and_the_job_view_is_still_made(tmp_path):
    paths = [str(p) for p in straggler_job(tmp_path)]
    outcomes: dict[int, E.Outcome] = {i: E.analyse_outcome(p) for i, p in enumerate(paths)}
    outcomes[1] = E.RankFailure(paths[1], f"{paths[1]}: the analysis worker failed (killed by SIGKILL (out of memory?))")
    seen = []
    doc = ranks.analyze_many(paths, engine=ListEngine(outcomes, [2, 1, 3, 0]),
                             progress=lambda what, done, total: seen.append((done, total))).to_dict()
    assert seen[0] == (0, 4) and seen[-1] == (4, 4) and len(seen) == 5  # the bar counts ranks
    rows = {r["rank"]: r for r in doc["ranks"]}
    assert rows[1] == {"rank": 1, "status": "failed", "trace": paths[1], "reason": outcomes[1].reason}  # type: ignore[union-attr]
    assert [r for r in rows if rows[r]["status"] == "analysed"] == [0, 2, 3]
    assert doc["job"]["failed_ranks"] == [1] and doc["job"]["missing_ranks"] == []
    assert doc["job"]["ranks_analysed"] == 3 and doc["job"]["world_size"] == 4
    failed = [f for f in doc["findings"] if f["id"] == "rank_failed"]
    assert len(failed) == 1 and failed[0]["evidence"]["failed_ranks"] == [1]
    assert failed[0]["title"] == f"The analysis of 1 of 4 ranks failed (rank 1: {outcomes[1].reason})"  # type: ignore[union-attr]
    assert failed[0]["where"][0]["reason"] == outcomes[1].reason  # type: ignore[union-attr]
    # the straggler (rank 2) is still found among the ranks analysed
    assert doc["job"]["straggler"] is not None and doc["job"]["straggler"]["rank"] == 2


def test_a_failure_that_cannot_be_placed_in_a_job_is_raised(tmp_path):
    paths = [str(p) for p in straggler_job(tmp_path)][:2]
    nameless = str(tmp_path / "trace.json")
    outcomes: dict[int, E.Outcome] = {0: E.analyse_outcome(paths[0]),
                                      1: E.RankFailure(nameless, f"{nameless}: not a JSON trace", bad_input=True)}
    with pytest.raises(TraceFormatError, match="trace.json: not a JSON trace"):
        ranks.analyze_many([paths[0], nameless], engine=ListEngine(outcomes, [1, 0]))
    both_failed: dict[int, E.Outcome] = {i: E.RankFailure(p, f"{p}: no such file", bad_input=True) for i, p in enumerate(paths)}
    with pytest.raises(TraceFormatError, match="rank0.pt.trace.json: no such file"):  # nothing analysed: the first, by path
        ranks.analyze_many(paths, engine=ListEngine(both_failed, [1, 0]))


# --------------------------------------------------------------------- choosing an engine


def test_engine_names_and_a_missing_ray(monkeypatch):
    assert make_engine(None) is None and make_engine("local") is None
    with pytest.raises(UsageError, match="--engine spark: not an engine"):
        make_engine("spark")
    with pytest.raises(UsageError, match="--address"):
        make_engine("local", address="auto")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r"--engine ray needs Ray.*pip install 'perfkit\[ray\]'"):
        make_engine("ray")


def test_cli_refuses_an_unknown_engine_in_one_line(tmp_path, capsys):
    from perfkit.cli import main

    paths = straggler_job(tmp_path)[:2]
    assert main(["analyze", *map(str, paths), "--engine", "spark", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--engine spark: not an engine (choose one of local, ray)" in err[0]


def test_an_address_where_no_cluster_listens_fails_at_once_in_one_line():
    import socket

    from perfkit.errors import PerfkitError
    from perfkit.job.ray_engine import _check_reachable

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PerfkitError, match=rf"^--address 127.0.0.1:{port}: no Ray cluster answers there"):
        _check_reachable(f"127.0.0.1:{port}", timeout_s=2.0)
    _check_reachable("auto")  # Ray's own forms are left to Ray


class _EndedServer(E.PipeServer):
    """A pipe worker that answered one path and ended: its request pipe has no reader, its answer pipe holds
    the one answer, then its end."""

    def __init__(self) -> None:
        req_r, req_w = os.pipe()
        ans_r, ans_w = os.pipe()
        os.write(ans_w, b'{"doc":{"path":"r0"}}\n')
        os.close(ans_w)
        os.close(req_r)
        super().__init__(os.fdopen(req_w, "wb"), os.fdopen(ans_r, "rb"))

    def died(self, path: str) -> E.Outcome:
        return E.worker_died(path, -signal.SIGKILL, "")

    def close(self) -> None:
        self._close_pipes()


def test_an_answer_written_before_the_worker_ended_is_still_received():
    """Sending to a worker that has ended fails (no reader): the answers it wrote before it ended still count,
    and the path after them is a failure that names how it ended."""
    server = _EndedServer()
    try:
        server.send("r1")  # broken pipe: swallowed, receive says what happened
        assert server.receive("r0") == {"path": "r0"}
        failed = server.receive("r1")
        assert isinstance(failed, E.RankFailure) and not failed.bad_input and "SIGKILL" in failed.reason
    finally:
        server.close()
