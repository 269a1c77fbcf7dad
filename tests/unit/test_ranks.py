"""Multi-rank runs: exposed communication, the job view (straggler, stuck and missing ranks), perfkit merge,
in-process. tests/e2e/test_ranks_e2e.py runs parallel rank analysis, merge in subprocesses and real
2-process torchrun jobs on CPU (gloo): one with a slow rank, one with a hang."""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

import perfkit
from perfkit.analysis import intervals
from perfkit.job import ranks
from perfkit.job.pool import analyze_docs
from perfkit.collect import job
from perfkit.run import finish, layout
from perfkit.errors import TraceFormatError

from ..conftest import anchor
from .._clock import VirtualClock

FILTER = "hta/tests/data/trace_filter"


# --------------------------------------------------------------------- hand-built traces


def make_trace(path: Path, rank: int, *, world: int = 4, steps: int = 4, compute: tuple[float, float] = (1.0, 6.0),
               comm: tuple[float, float] = (4.0, 9.0), step_ms: float = 10.0) -> Path:
    """A small Kineto trace: per step one GEMM on stream 7 and one NCCL all-reduce on stream 20 (times in ms)."""
    ev = []
    corr = 0
    for k in range(steps):
        t0 = k * (step_ms + 5.0) * 1000.0
        ev.append({"ph": "X", "cat": "user_annotation", "name": f"ProfilerStep#{k + 1}", "pid": 100, "tid": 1,
                   "ts": t0, "dur": step_ms * 1000.0})
        for op, kernel, stream, (a, b), at in (("aten::mm", "sm90_xmma_gemm_bf16", 7, compute, 0.1),
                                               ("nccl:all_reduce", "ncclDevKernel_AllReduce_Sum_f32_RING_LL", 20, comm, 0.5)):
            corr += 1
            ev.append({"ph": "X", "cat": "cpu_op", "name": op, "pid": 100, "tid": 1, "ts": t0 + at * 1000, "dur": 200,
                       "args": {"External id": corr}})
            ev.append({"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 100, "tid": 1,
                       "ts": t0 + at * 1000 + 50, "dur": 20, "args": {"correlation": corr, "External id": corr}})
            ev.append({"ph": "X", "cat": "kernel", "name": kernel, "pid": 0, "tid": stream, "ts": t0 + a * 1000,
                       "dur": (b - a) * 1000, "args": {"correlation": corr, "External id": corr, "stream": stream}})
    doc = {"schemaVersion": 1, "distributedInfo": {"backend": "nccl", "rank": rank, "world_size": world}, "traceEvents": ev}
    path.write_text(json.dumps(doc))
    return path


def straggler_job(tmp_path: Path) -> list[Path]:
    """4 ranks; rank 2 computes 3 ms longer, the others wait for it in their all-reduce."""
    paths = []
    for r in range(4):
        slow = r == 2
        paths.append(make_trace(tmp_path / f"rank{r}.pt.trace.json", r, compute=(1.0, 9.0 if slow else 6.0),
                                comm=(7.0 if slow else 4.0, 12.0)))
    return paths


def test_intersection_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(50):
        a_s = rng.uniform(0, 100, 20)
        a_e = a_s + rng.uniform(0, 10, 20)
        b_s = rng.uniform(0, 100, 15)
        b_e = b_s + rng.uniform(0, 10, 15)
        s, e = intervals.intersection(a_s, a_e, b_s, b_e)
        grid = np.linspace(0, 115, 23001)[:-1] + 0.0025
        in_a = ((grid[:, None] >= a_s) & (grid[:, None] < a_e)).any(1)
        in_b = ((grid[:, None] >= b_s) & (grid[:, None] < b_e)).any(1)
        assert float((e - s).sum()) == pytest.approx((in_a & in_b).sum() * 0.005, abs=0.05)
        assert np.all(s[1:] > e[:-1]) and np.all(e >= s)
    assert len(intervals.intersection(np.zeros(0), np.zeros(0), np.array([1.0]), np.array([2.0]))[0]) == 0


def test_exposed_communication_per_step(tmp_path):
    """NCCL kernel 4-9 ms, GEMM 1-6 ms on another stream: 5 ms of communication, 2 overlapped, 3 exposed."""
    doc = perfkit.analyze(str(make_trace(tmp_path / "rank0.json", 0))).to_dict()
    c = doc["communication"]
    assert c["basis"] == "gpu"
    assert c["ms_per_step"] == pytest.approx(5.0)
    assert c["overlapped_ms_per_step"] == pytest.approx(2.0)
    assert c["exposed_ms_per_step"] == pytest.approx(3.0)
    assert [row["exposed_ms"] for row in c["table"]] == pytest.approx([3.0] * 4)
    assert c["ops"][0]["name"].startswith("ncclDevKernel_AllReduce") and c["ops"][0]["calls_per_step"] == 1
    f = next(f for f in doc["findings"] if f["id"] == "comm_exposed")
    assert f["cost_ms_per_step"] == pytest.approx(3.0) and f["severity"] == "warning"


def test_straggler_named_with_phase_and_op(tmp_path):
    docs = [perfkit.analyze(str(p)).to_dict() for p in straggler_job(tmp_path)]
    view = ranks.job_view(docs)
    rows = {r["rank"]: r for r in view["ranks"]}
    assert sorted(rows) == [0, 1, 2, 3]
    assert rows[0]["comm_exposed_ms_per_step"] == pytest.approx(6.0)  # waits 4-12 ms, GEMM covers 4-6
    assert rows[2]["comm_exposed_ms_per_step"] == pytest.approx(3.0)  # 7-12, GEMM covers 7-9
    f = next(f for f in view["findings"] if f["id"] == "straggler_rank")
    assert f["rank"] == 2 and f["evidence"]["rank"] == 2
    # Rank 2 starts each all-reduce at 7 ms, the others at 4: each waits 3 ms per step for it.
    assert f["evidence"]["method"] == "collective arrival order"
    assert f["evidence"]["lead_ms_per_step"] == pytest.approx(3.0, abs=1e-3)
    assert f["evidence"]["others_wait_ms_per_step"] == pytest.approx(3.0, abs=1e-3)
    assert f["evidence"]["late_collectives"] == 4 and f["evidence"]["collectives_matched"] == 4
    assert "Rank 2" in f["title"] and "forward" in f["title"] and "aten::mm" in f["title"]
    assert view["job"]["straggler"] == {"rank": 2, "others_wait_ms_per_step": pytest.approx(3.0, abs=1e-3),
                                        "lead_ms_per_step": pytest.approx(3.0, abs=1e-3), "late_collectives": 4,
                                        "collectives_matched": 4}
    assert rows[2]["last_arrivals"] == 4 and rows[0]["arrival_wait_ms_per_step"] == pytest.approx(3.0, abs=1e-3)
    # The unavoidable part of communication is the least exposed rank's: 3 ms, not the waiting ranks' 6.
    ce = next(f for f in view["findings"] if f["id"] == "comm_exposed")
    assert ce["cost_ms_per_step"] == pytest.approx(3.0)
    assert sum(1 for f in view["findings"] if f["id"] == "comm_exposed") == 1
    # Balanced ranks: no straggler.
    same = [copy.deepcopy(docs[0]) for _ in range(4)]
    for r, d in enumerate(same):
        d["trace"]["distributed"]["rank"] = r
    assert not any(f["id"] == "straggler_rank" for f in ranks.job_view(same)["findings"])


def test_merge_rejects_bad_input(tmp_path):
    from perfkit.cli import main

    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    assert main(["merge", str(bad)]) == 2
    job_doc = tmp_path / "job.json"
    job_doc.write_text(json.dumps({"schema": "perfkit.analysis/1", "ranks": [], "steps": {"count": 1}}))
    assert main(["merge", str(job_doc)]) == 2
    assert main(["merge", str(tmp_path / "missing.json")]) == 2
    with pytest.raises(TraceFormatError, match="no such file"):
        analyze_docs([str(tmp_path / "nope.json"), str(tmp_path / "nope2.json")], processes=2)


def test_anchor_multi_rank_traces_give_the_rank_table():
    """HolisticTraceAnalysis' trace_filter pair: ranks 0 and 1 of a 128-rank recsys job (NCCL SendRecv)."""
    paths = [str(anchor(f"{FILTER}/sampled_rank-{r}.json.gz")) for r in (0, 1)]
    doc = perfkit.analyze(paths).to_dict()
    analysed = [r for r in doc["ranks"] if r["status"] == "analysed"]
    assert [r["rank"] for r in analysed] == [0, 1]
    for r in analysed:
        assert r["steps"] >= 1 and r["step_ms_median"] > 0 and r["busy_ms_per_step"] > 0
        assert 0 < r["comm_exposed_ms_per_step"] <= r["comm_ms_per_step"] < r["step_ms_median"]
        assert set(r["phase_ms_per_step"]) == {"forward", "backward", "optimizer", "other", "unknown"}
    assert doc["job"]["world_size"] == 128 and len(doc["job"]["missing_ranks"]) == 126
    assert doc["trace"]["distributed"]["world_size"] == 128 and "rank" not in doc["trace"]["distributed"]
    assert not any(f["id"] == "rank_missing" for f in doc["findings"])  # not given is not missing
    idle = [f for f in doc["findings"] if f["id"] == "host_bound_idle"]
    assert len(idle) == 1 and idle[0]["ranks"] == [0, 1] and "2 of 2 ranks" in idle[0]["title"]  # one per id
    assert {row["rank"] for row in doc["steps"]["table"]} == {0, 1}
    from rich.console import Console

    from perfkit.report import render_console, render_markdown

    console = Console(width=100, record=True, file=open(os.devnull, "w"))
    render_console(doc, console)
    text = console.export_text()
    assert "Ranks" in text and "2 of 128 ranks analysed" in text
    md = render_markdown(doc)
    assert "### Ranks" in md and "| Rank | Steps |" in md


# --------------------------------------------------------------------- collection helpers


def test_world_info_and_run_dir_agree_across_ranks(tmp_path, monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID",
                "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID",
                "SLURM_LOCALID"):
        monkeypatch.delenv(var, raising=False)
    assert job.world_info() == job.World()
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    w = job.world_info()
    assert (w.rank, w.local_rank, w.world_size, w.multi, w.source) == (3, 1, 4, True, "env")
    # Two ranks started by the same launcher, a second apart, name the same directory (in this process,
    # on a clock moved by hand; tests/e2e/test_ranks_e2e.py starts two rank processes).
    now = [time.time()]
    monkeypatch.setattr(job, "_clock", lambda: now[0])
    names = set()
    for r, delay_s in ((0, 0.0), (1, 1.2)):
        now[0] += delay_s
        names.add(job.default_run_dir("train.py", job.World(rank=r, local_rank=r, world_size=2, source="env")))
    assert len(names) == 1 and names.pop().startswith(os.path.join("traces", "train-"))


def test_rank0_waits_then_lists_missing_ranks(tmp_path, monkeypatch):
    src = make_trace(tmp_path / "t.json", 0, world=3)
    doc = perfkit.analyze(str(src)).to_dict()
    old = tmp_path / "rank2.analysis.json"
    old.write_text(json.dumps(doc))
    os.utime(old, (time.time() - 3600, time.time() - 3600))  # an earlier run's file
    for r in (0, 1):
        d = copy.deepcopy(doc)
        d["trace"]["distributed"]["rank"] = r
        finish.write_json_atomic(layout.rank_analysis_path(str(tmp_path), r), d, str)
    said = []
    world = job.World(rank=0, local_rank=0, world_size=3, source="env")
    clock = VirtualClock()
    monkeypatch.setattr(finish, "time", clock)  # the wait's clock: moved only by its own sleeps
    docs, missing, interrupted = finish.wait_for_ranks(str(tmp_path), world, wait_s=1.0, started_at=time.time(),
                                                       say=said.append, poll_s=0.125)
    assert clock.sleeps == 8 and clock.now == 1.0  # waited out wait_s, polling every poll_s
    assert len(docs) == 2 and list(missing) == [2] and interrupted is None and "rank(s) 2" in said[0]
    view = finish.job_document(docs, missing, str(tmp_path), world)
    assert [r["status"] for r in view["ranks"]] == ["analysed", "analysed", "missing"]
    f = next(f for f in view["findings"] if f["id"] == "rank_missing")
    assert f["evidence"]["missing_ranks"] == [2]


def _write_stall_dump(folder: Path, rank: int, frames: list[tuple[str, int, str]], now: float,
                      code: str = "pass") -> None:
    """A watchdog stall dump of ``rank``'s main thread, stuck 30 s after step 7 in ``frames`` (outermost first)."""
    body = "\n".join(f'  File "{f}", line {n}, in {fn}\n    {code}' for f, n, fn in frames)
    f, n, fn = frames[-1]
    (folder / f"stall_rank{rank}_20260101-000000.txt").write_text(
        f"perfkit stall dump\nrank: {rank}\npid: 1\nlast_step: 7\nseconds_since_last_step: 30.0\n"
        f"last_step_time: {now - 30:.6f}\ntime: x\nunix_time: {now:.6f}\nwatchdog_s: 10\ndump: 1\n"
        f"where: {fn} ({f}:{n})\n\nThread MainThread (ident 1, main), most recent call last:\n{body}\n\n")


def test_stall_user_line_follows_the_analysis_library_rule(tmp_path):
    """A stall's user line is found by the rule the report's source column uses: an installed
    framework's code (transformers under a conda site-packages) is the nearest code the user acts on,
    torch, scipy and the standard library are not. Before, every site-packages frame was library, so a
    Trainer rank's stall named only its trainer.train() call."""
    now = time.time()
    site = "/opt/conda/lib/python3.11/site-packages"
    stacks = {
        0: [("/src/train.py", 40, "main"), (f"{site}/transformers/trainer.py", 2240, "train"),
            (f"{site}/transformers/trainer.py", 3790, "training_step"), (f"{site}/torch/_tensor.py", 626, "backward")],
        1: [("/src/train.py", 41, "main"), ("/src/match.py", 12, "assign"),
            (f"{site}/scipy/optimize/_lsap.py", 101, "linear_sum_assignment")],
        2: [("/src/train.py", 42, "main"), ("/opt/conda/lib/python3.11/queue.py", 180, "get"),
            ("/opt/conda/lib/python3.11/threading.py", 355, "wait")],
        3: [("<frozen runpy>", 88, "_run_code"), (f"{site}/perfkit/cli/profile.py", 60, "run")],
    }
    for rank, frames in stacks.items():
        _write_stall_dump(tmp_path, rank, frames, now)
    from perfkit.job.stalls import summarize_stalls

    by = {r["rank"]: r for r in summarize_stalls(str(tmp_path))["ranks"]}
    assert by[0]["user_where_text"] == f"training_step ({site}/transformers/trainer.py:3790)"
    assert by[1]["user_where_text"] == "assign (/src/match.py:12)"
    assert by[2]["user_where_text"] == "main (/src/train.py:42)"
    assert by[3]["user_where"] is None


def test_stall_verdict_names_the_rank_the_others_wait_for(tmp_path):
    now = time.time()

    def dump(rank: int, frames: list[tuple[str, int, str]], code: str = "pass") -> None:
        _write_stall_dump(tmp_path, rank, frames, now, code)
        (tmp_path / f"heartbeat_rank{rank}.jsonl").write_text(json.dumps({"step": 7, "time": now - 30, "rank": rank}) + "\n")

    lib = "/venv/lib/python3.11/site-packages/torch"
    dump(0, [("/src/train.py", 120, "main"), (f"{lib}/_tensor.py", 626, "backward"),
             (f"{lib}/autograd/graph.py", 829, "_engine_run_backward")])
    dump(1, [("/src/train.py", 118, "main"), ("/src/align.py", 88, "_hungarian")])
    dump(2, [("/src/train.py", 131, "main"), (f"{lib}/distributed/c10d_logger.py", 81, "wrapper"),
             (f"{lib}/distributed/distributed_c10d.py", 2806, "all_reduce")])
    dump(3, [("/src/train.py", 140, "main")], code='print(f"step {step} loss {loss.item():.3f}")')  # GPU: NCCL
    from perfkit.job.stalls import summarize_stalls

    doc = summarize_stalls(str(tmp_path))
    by = {r["rank"]: r for r in doc["ranks"]}
    assert [by[r]["waiting_in"] for r in (0, 1, 2, 3)] == ["collective", None, "collective", "gpu_sync"]
    assert by[0]["user_where_text"] == "main (/src/train.py:120)"
    assert doc["verdict"].startswith("stuck: rank 1 in _hungarian (/src/align.py:88); waiting for it: ranks 0 (in ")
    f = ranks.rank_stuck(doc)
    assert f["evidence"]["stuck_ranks"] == [1] and f["evidence"]["waiting_ranks"] == [0, 2, 3]
    assert f["title"].startswith("Rank 1 stuck in _hungarian (/src/align.py:88); ranks 0, 2, 3 wait")
