"""The Ray engine on a real local Ray cluster (started here once for the module): a 16-rank job made from the
8 real DLRM rank traces gives the same job document, byte for byte, as every route of the local engine; a
corrupt rank becomes rank_failed while the job view is still written."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Iterator

import pytest

from perfkit.job import ranks
from perfkit.job.engines import LocalEngine
from perfkit.job.ray_engine import RayEngine

from ..conftest import REPO

DLRM = REPO / "tests" / "data" / "traces" / "param_dlrm_8xv100"
WORLD = 16


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def job16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ranks 0-15: rank R is DLRM worker R % 8 with distributedInfo saying rank R of 16."""
    out = tmp_path_factory.mktemp("job16")
    sources = sorted(DLRM.glob("worker*_step_12.*.pt.trace.json.gz"))
    assert len(sources) == 8
    for r in range(WORLD):
        doc = json.loads(gzip.decompress(sources[r % 8].read_bytes()))
        assert doc["distributedInfo"]["rank"] == r % 8
        doc["distributedInfo"].update(rank=r, world_size=WORLD)
        (out / f"rank{r}.pt.trace.json.gz").write_bytes(gzip.compress(json.dumps(doc).encode(), compresslevel=1))
    return out


def _paths(d: Path) -> list[str]:
    return sorted((str(p) for p in d.glob("rank*.pt.trace.json.gz")), key=lambda p: int(Path(p).name[4:].split(".")[0]))


def test_ray_and_local_engines_give_the_same_job_document(ray_cluster: None, job16: Path, tmp_path: Path) -> None:
    from perfkit.cli import main

    paths = _paths(job16)
    on_ray = json.dumps(ranks.analyze_many(paths, engine=RayEngine()).to_dict())
    doc = json.loads(on_ray)
    assert [r["rank"] for r in doc["ranks"] if r["status"] == "analysed"] == list(range(WORLD))
    assert doc["job"]["world_size"] == WORLD and doc["job"]["failed_ranks"] == [] == doc["job"]["missing_ranks"]
    assert doc["job"]["arrivals"]["status"] == "matched"
    # every route of the local engine: this process, servers started once, a fresh interpreter per rank
    for engine in (LocalEngine(), LocalEngine(server_work_s=0.0, processes=2), LocalEngine(small_bytes=0, processes=2)):
        assert json.dumps(ranks.analyze_many(paths, engine=engine).to_dict()) == on_ray
    # and through the command: the written files are the same bytes
    outs = {}
    for name in ("local", "ray"):
        outs[name] = tmp_path / f"{name}.json"
        assert main(["analyze", str(job16), "--engine", name, "--json", str(outs[name]), "-q"]) == 0
    assert outs["local"].read_bytes() == outs["ray"].read_bytes()


def test_a_corrupt_rank_is_rank_failed_and_the_job_view_is_written(ray_cluster: None, job16: Path,
                                                                   tmp_path: Path) -> None:
    from perfkit.cli import main

    job = tmp_path / "job"
    job.mkdir()
    for p in _paths(job16):
        (job / Path(p).name).symlink_to(p)
    for r in (5, 11):
        (job / f"rank{r}.pt.trace.json.gz").unlink()  # not through the link: the shared job stays whole
    (job / "rank5.pt.trace.json.gz").write_bytes(gzip.compress(b"this is not a trace" * 100))  # gzip, not JSON
    (job / "rank11.pt.trace.json.gz").write_bytes(b"\x00" * 4096)  # not gzip
    out = tmp_path / "job.json"
    assert main(["analyze", str(job), "--engine", "ray", "--json", str(out), "-q"]) == 0
    doc = json.loads(out.read_text())
    failed = {r["rank"]: r for r in doc["ranks"] if r["status"] == "failed"}
    assert sorted(failed) == [5, 11] and doc["job"]["failed_ranks"] == [5, 11]
    assert all(r["reason"].startswith(r["trace"] + ": ") for r in failed.values())  # one line naming the file
    assert doc["job"]["ranks_analysed"] == WORLD - 2
    finding = next(f for f in doc["findings"] if f["id"] == "rank_failed")
    assert finding["title"].startswith(f"The analysis of 2 of {WORLD} ranks failed (rank ")
    assert finding["evidence"]["failed_ranks"] == [5, 11]
    assert sorted(r for ranks_ in finding["evidence"]["reasons"].values() for r in ranks_) == [5, 11]
    local = tmp_path / "local.json"
    assert main(["analyze", str(job), "--json", str(local), "-q"]) == 0
    assert local.read_bytes() == out.read_bytes()


def _failing_first(marker_dir: str, fail_ranks: tuple[int, ...], always: bool, die: tuple[int, ...] = ()):
    """A stand-in for the engine's task (shipped to the workers by value): it appends one line per
    attempt to ``marker_dir/<rank>`` and, for the ranks in ``fail_ranks``, raises MemoryError as a
    worker out of memory would — on the first attempt only, or on every one (``always``); for the
    ranks in ``die`` its worker process is killed by SIGKILL instead, as the kernel's OOM killer does."""
    import os as _os
    import signal as _signal

    from perfkit.job import ray_engine as _real

    task = _real._rank_task

    def flaky(path: str, workers):  # type: ignore[no-untyped-def]
        rank = int(_os.path.basename(path)[4:].split(".")[0])
        log = _os.path.join(marker_dir, str(rank))
        with open(log, "a") as fh:
            fh.write("attempt\n")
        with open(log) as fh:
            attempts = len(fh.readlines())
        if rank in die and (always or attempts == 1):
            _os.kill(_os.getpid(), _signal.SIGKILL)
        if rank in fail_ranks and (always or attempts == 1):
            raise MemoryError(f"simulated: worker out of memory on rank {rank}, attempt {attempts}")
        return task(path, workers)

    return flaky


def test_a_task_that_fails_once_is_retried_and_its_rank_analysed(ray_cluster: None, job16: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from perfkit.job import ray_engine

    marks = tmp_path / "attempts"
    marks.mkdir()
    monkeypatch.setattr(ray_engine, "_rank_task", _failing_first(str(marks), (3, 9), always=False))
    paths = _paths(job16)
    doc = ranks.analyze_many(paths, engine=RayEngine()).to_dict()
    assert doc["job"]["failed_ranks"] == [] and doc["job"]["ranks_analysed"] == WORLD
    attempts = {int(p.name): len(p.read_text().splitlines()) for p in marks.iterdir()}
    assert attempts == {r: (2 if r in (3, 9) else 1) for r in range(WORLD)}  # one retry, for those two only
    assert json.dumps(doc) == json.dumps(ranks.analyze_many(paths, engine=LocalEngine()).to_dict())


def test_a_task_that_fails_again_after_its_retry_is_rank_failed(ray_cluster: None, job16: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from perfkit.job import ray_engine

    marks = tmp_path / "attempts"
    marks.mkdir()
    monkeypatch.setattr(ray_engine, "_rank_task", _failing_first(str(marks), (6,), always=True))
    doc = ranks.analyze_many(_paths(job16), engine=RayEngine()).to_dict()
    assert (marks / "6").read_text().splitlines() == ["attempt", "attempt"]  # tried, then retried once
    assert doc["job"]["failed_ranks"] == [6] and doc["job"]["ranks_analysed"] == WORLD - 1
    row = next(r for r in doc["ranks"] if r["rank"] == 6)
    assert row["status"] == "failed" and "the Ray task failed after a retry" in row["reason"]
    assert "simulated: worker out of memory on rank 6" in row["reason"]
    assert any(f["id"] == "rank_failed" and f["evidence"]["failed_ranks"] == [6] for f in doc["findings"])


def test_a_worker_killed_by_the_kernel_is_retried_then_rank_failed(ray_cluster: None, job16: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank 4's worker is killed on its first attempt only: retried on a new worker and analysed. Rank 12's
    worker is killed on every attempt: after the one retry, a failed rank naming the crash."""
    from perfkit.job import ray_engine

    marks = tmp_path / "attempts"
    marks.mkdir()
    monkeypatch.setattr(ray_engine, "_rank_task", _failing_first(str(marks), (), always=False, die=(4,)))
    paths = _paths(job16)
    doc = ranks.analyze_many(paths, engine=RayEngine()).to_dict()
    assert (marks / "4").read_text().splitlines() == ["attempt", "attempt"]
    assert doc["job"]["failed_ranks"] == [] and doc["job"]["ranks_analysed"] == WORLD
    for p in marks.iterdir():
        p.unlink()
    monkeypatch.setattr(ray_engine, "_rank_task", _failing_first(str(marks), (), always=True, die=(12,)))
    doc = ranks.analyze_many(paths, engine=RayEngine()).to_dict()
    assert (marks / "12").read_text().splitlines() == ["attempt", "attempt"]  # tried, then retried once
    assert doc["job"]["failed_ranks"] == [12] and doc["job"]["ranks_analysed"] == WORLD - 1
    row = next(r for r in doc["ranks"] if r["rank"] == 12)
    assert row["reason"].startswith(f"{paths[12]}: the Ray task failed after a retry: ")
    assert "WorkerCrashedError: The worker died unexpectedly" in row["reason"] and "\n" not in row["reason"]
