"""The run directory (perfkit/run/): one resolver for every path a user gives, and finishing a run
from a Recording (no torch: the recordings here are made by hand, the traces are tiny CPU traces)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from perfkit.errors import PerfkitError, TraceFormatError
from perfkit.peaks import peak_tflops
from perfkit.run import finish, layout
from perfkit.run.finish import finish_run
from perfkit.run.load import load_document
from perfkit.run.recording import MfuInputs, Recording, World
from perfkit.run.resolve import rank_document_files, resolve, run_paths, trace_files

STEP_MS = 10.0  # each generated step: 10 ms, 6 ms of aten::mm and 1 ms of aten::add on the CPU


def cpu_trace(path: Path, steps: int = 4, rank: int | None = None, world: int | None = None) -> Path:
    """A tiny Kineto trace with CPU ops only: ``steps`` ProfilerStep annotations of 10 ms."""
    ev = []
    for k in range(steps):
        t0 = k * 12_000.0
        ev.append({"ph": "X", "cat": "user_annotation", "name": f"ProfilerStep#{k + 1}", "pid": 1, "tid": 1,
                   "ts": t0, "dur": STEP_MS * 1000})
        ev.append({"ph": "X", "cat": "cpu_op", "name": "aten::mm", "pid": 1, "tid": 1, "ts": t0 + 100, "dur": 6000.0})
        ev.append({"ph": "X", "cat": "cpu_op", "name": "aten::add", "pid": 1, "tid": 1, "ts": t0 + 6500, "dur": 1000.0})
    doc: dict = {"schemaVersion": 1, "traceEvents": ev}
    if rank is not None:
        doc["distributedInfo"] = {"backend": "gloo", "rank": rank, "world_size": world}
    data = json.dumps(doc).encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def one_line(exc: BaseException, path: str) -> str:
    text = str(exc)
    assert "\n" not in text and path in text, text
    return text


# ------------------------------------------------------------------------------------- the layout


def test_layout_names():
    assert layout.trace_name(3) == "rank3.pt.trace.json.gz"
    assert layout.stacks_path("/r/rank3.pt.trace.json.gz") == "/r/rank3.pt.trace.stacks.json.gz"
    assert layout.stacks_path("/r/t.json") == "/r/t.stacks.json.gz"
    assert layout.rank_analysis_name(2) == "rank2.analysis.json" and layout.rank_report_name(2) == "rank2.report.md"
    assert layout.HEARTBEAT_RE.match(layout.heartbeat_name(5)).group(1) == "5"
    assert layout.FAULT_RE.match(layout.faulthandler_name(1)).group(1) == "1"
    assert layout.STALL_RE.match(layout.stall_base(7, "20250101-120000") + ".txt").group(1) == "7"
    assert layout.STALL_RE.match(layout.stall_base(7, "20250101-120000") + "-2.txt").group(3) == "2"
    assert layout.is_trace_name("rank0.pt.trace.json.gz") and not layout.is_trace_name("rank0.pt.trace.stacks.json.gz")


# ------------------------------------------------------------------------------------- the resolver


def test_a_trace_file(tmp_path):
    t = cpu_trace(tmp_path / "rank0.pt.trace.json.gz")
    r = resolve(str(t))
    assert (r.kind, r.traces, r.document, r.rank_documents) == ("trace", (str(t),), None, ())


def test_document_files_by_name_or_by_schema(tmp_path):
    for name in ("analysis.json", "rank1.analysis.json", "job.analysis.json"):
        (tmp_path / name).write_text("{}")
        r = resolve(str(tmp_path / name))
        assert (r.kind, r.document, r.traces) == ("document", str(tmp_path / name), ())
    diff_doc = tmp_path / "d.json"
    diff_doc.write_text(json.dumps({"schema": "perfkit.diff/1", "a": {}}))
    assert resolve(str(diff_doc)).kind == "document"  # read (and refused) as a document, never analysed
    plain = cpu_trace(tmp_path / "plain.json")
    assert resolve(str(plain)).kind == "trace"


def test_a_run_directory(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    t = cpu_trace(run / "rank0.pt.trace.json.gz")
    (run / "rank0.pt.trace.stacks.json.gz").write_bytes(gzip.compress(b"{}"))  # a sidecar, not a trace
    (run / "analysis.json").write_text("{}")
    (run / "report.md").write_text("")
    r = resolve(str(run))
    assert r.kind == "run" and r.document == str(run / "analysis.json") and r.traces == (str(t),)
    assert r.rank_documents == ()


def test_a_run_directory_of_ranks(tmp_path):
    for rank in (1, 0, 10):
        (tmp_path / layout.rank_analysis_name(rank)).write_text("{}")
    r = resolve(str(tmp_path))
    assert r.kind == "run" and r.document is None and r.traces == ()
    assert [Path(p).name for p in r.rank_documents] == ["rank0.analysis.json", "rank1.analysis.json",
                                                       "rank10.analysis.json"]
    assert rank_document_files([str(tmp_path)]) == list(r.rank_documents)


def test_a_folder_of_traces(tmp_path):
    cpu_trace(tmp_path / "b.json")
    cpu_trace(tmp_path / "a.json.gz")
    (tmp_path / "notes.txt").write_text("x")
    r = resolve(str(tmp_path))
    assert r.kind == "traces" and [Path(p).name for p in r.traces] == ["a.json.gz", "b.json"]
    # files named like traces win over other JSON beside them (truth.json, expected values)
    cpu_trace(tmp_path / "rank0.pt.trace.json")
    assert [Path(p).name for p in resolve(str(tmp_path)).traces] == ["rank0.pt.trace.json"]
    assert trace_files([str(tmp_path), "x.json"]) == [str(tmp_path / "rank0.pt.trace.json"), "x.json"]


def test_an_empty_folder_is_refused_in_one_line(tmp_path):
    r = resolve(str(tmp_path))
    assert (r.kind, r.traces) == ("traces", ())
    with pytest.raises(TraceFormatError, match="holds no .json or .json.gz trace") as info:
        trace_files([str(tmp_path)])
    one_line(info.value, str(tmp_path))
    with pytest.raises(TraceFormatError, match="holds no rank") as info:
        rank_document_files([str(tmp_path)])
    one_line(info.value, str(tmp_path))
    with pytest.raises(TraceFormatError) as info:
        load_document(str(tmp_path))
    one_line(info.value, str(tmp_path))


def test_a_missing_path_is_refused_in_one_line(tmp_path):
    missing = str(tmp_path / "nope" / "analysis.json")
    with pytest.raises(TraceFormatError, match="no such file or directory") as info:
        resolve(missing)
    one_line(info.value, missing)
    with pytest.raises(PerfkitError, match="no such run directory") as info:
        run_paths([missing])
    one_line(info.value, missing)


def test_an_unreadable_folder_is_refused_in_one_line(tmp_path, monkeypatch):
    real = Path.iterdir

    def denied(self):  # as root, chmod does not deny a listing
        if str(self) == str(tmp_path):
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "iterdir", denied)
    with pytest.raises(TraceFormatError, match="cannot list the directory") as info:
        resolve(str(tmp_path))
    one_line(info.value, str(tmp_path))


def test_a_fifo_is_neither_read_nor_waited_on(tmp_path):
    """A named pipe named like a document: the resolver does not open it (that would block); the
    trace reader then refuses it in one line."""
    fifo = tmp_path / "x.json"
    os.mkfifo(fifo)
    r = resolve(str(fifo))
    assert r.kind == "trace"
    with pytest.raises(PerfkitError) as info:
        load_document(str(fifo))
    one_line(info.value, str(fifo))


def test_a_folder_of_runs(tmp_path):
    for name in ("b", "a"):
        (tmp_path / name).mkdir()
        cpu_trace(tmp_path / name / "rank0.pt.trace.json")
    (tmp_path / "empty").mkdir()
    assert run_paths([str(tmp_path)]) == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert run_paths([str(tmp_path / "a")]) == [str(tmp_path / "a")]  # a run stands for itself


def test_load_document_reads_a_run_or_analyses_its_traces(tmp_path):
    t = cpu_trace(tmp_path / "rank0.pt.trace.json")
    analysed = load_document(str(tmp_path))  # no analysis.json: the traces, analysed now
    assert analysed["steps"]["count"] == 4 and analysed["trace"]["time_basis"] == "cpu"
    assert load_document(str(t))["steps"]["count"] == 4
    (tmp_path / "analysis.json").write_text(json.dumps(analysed))
    assert load_document(str(tmp_path))["steps"]["count"] == 4  # the run's own document, read back
    (tmp_path / "analysis.json").write_text(json.dumps({"schema": "perfkit.diff/1"}))
    with pytest.raises(PerfkitError) as info:
        load_document(str(tmp_path))  # a diff is not an analysis: refused, never analysed as a trace
    one_line(info.value, "analysis.json")


# ------------------------------------------------------------------------------------- finishing a run


def recording(run_dir: Path, **kw) -> Recording:
    base = dict(run_dir=str(run_dir), runtime={"mode": "trace", "steps": {"wall_ms_median": 100.0}},
                report=False, quiet=True, started_at=0.0)
    return Recording(**{**base, **kw})


def test_finish_writes_the_document_and_the_report(tmp_path, capsys):
    t = cpu_trace(tmp_path / layout.trace_name(0))
    path = finish_run(recording(tmp_path, trace_path=str(t), runtime={"mode": "trace", "steps_seen": 9}))
    assert path == str(tmp_path / "analysis.json")
    doc = json.loads(Path(path).read_text())
    assert doc["steps"]["count"] == 4 and doc["runtime"]["steps_seen"] == 9 and doc["runtime"]["mode"] == "trace"
    assert "analysis_error" not in doc["runtime"]
    assert (tmp_path / "report.md").read_text().strip()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["analysis.json", "rank0.pt.trace.json.gz", "report.md"]
    assert capsys.readouterr().err == ""  # quiet, and nothing partial to say


def test_finish_prints_the_report_unless_quiet(tmp_path, capsys):
    t = cpu_trace(tmp_path / layout.trace_name(0))
    finish_run(recording(tmp_path, trace_path=str(t), report=True, quiet=False))
    err = capsys.readouterr().err
    assert f"perfkit: wrote {tmp_path}/ (analysis.json, report.md, trace)" in err
    assert f"perfkit analyze {t}" in err


def test_finish_without_a_trace_says_why_once_even_when_quiet(tmp_path, capsys):
    why = "no kernel trace: the run ended after 2 step(s), before the profiled window (steps 8-12)"
    path = finish_run(recording(tmp_path, trace_path=None, no_trace_reason=why))
    doc = json.loads(Path(path).read_text())
    assert doc["runtime"]["analysis_error"] == why and doc["trace"]["warnings"] == [why]
    assert capsys.readouterr().err.count(why) == 1


def test_a_trace_that_cannot_be_analysed_still_gives_the_runtime_figures(tmp_path, capsys):
    bad = tmp_path / layout.trace_name(0)
    bad.write_text("this is no trace")
    path = finish_run(recording(tmp_path, trace_path=str(bad), runtime={"steps_seen": 3}))
    doc = json.loads(Path(path).read_text())
    assert doc["runtime"]["steps_seen"] == 3 and str(bad) in doc["runtime"]["analysis_error"]
    assert "steps" not in doc  # unknown, not zero


def test_lost_files_are_kept_in_the_document_and_not_said_twice(tmp_path, capsys):
    lost = "the stack samples could not be written: disk full"
    t = cpu_trace(tmp_path / layout.trace_name(0))
    doc = json.loads(Path(finish_run(recording(tmp_path, trace_path=str(t), lost=(lost,)))).read_text())
    assert lost in doc["trace"]["warnings"]
    assert lost not in capsys.readouterr().err  # said when it happened, by the session


def test_a_file_that_cannot_be_written_is_named_once(tmp_path, capsys):
    said: list[str] = []
    run = tmp_path / "gone"  # never created: nothing can be written there
    assert finish_run(recording(run, trace_path=None, say_lost=said.append)) is None
    assert [s.split(" (")[0] for s in said] == ["analysis.json could not be written", "report.md could not be written"]
    assert all(str(run) in s for s in said)


def test_mfu_from_the_recording_and_the_trace_kernels(tmp_path):
    inputs = MfuInputs(flops_per_step=2e12, device_name="NVIDIA H100 80GB HBM3", fallback_dtype="fp32")
    rec = recording(tmp_path, trace_path=None, mfu=inputs)
    doc = json.loads(Path(finish_run(rec)).read_text())
    peak = peak_tflops("NVIDIA H100 80GB HBM3", "fp32")
    assert peak and doc["runtime"]["mfu_dtype"] == "fp32" and doc["runtime"]["peak_tflops"] == peak
    assert doc["runtime"]["mfu"] == pytest.approx(2e12 / 0.1 / (peak * 1e12))
    # a bf16 matmul kernel in the trace decides the dtype when the FLOP count did not see one
    kernels = {"top_kernels": [{"name": "sm90_xmma_gemm_bf16bf16_bf16f32", "category": "matmul"}]}
    assert finish.mfu_section(inputs, {"wall_ms_median": 100.0}, kernels)["mfu_dtype"] == "bf16"
    assert finish.dtype_from_kernels(kernels) == "bf16" and finish.dtype_from_kernels(None) is None


def test_ranks_write_their_own_files_and_rank0_writes_the_job_view(tmp_path, capsys):
    world = 2
    t1 = cpu_trace(tmp_path / layout.trace_name(1), rank=1, world=world)
    p1 = finish_run(recording(tmp_path, trace_path=str(t1), world=World(1, 1, world, "env"), quiet=False))
    assert p1 == str(tmp_path / "rank1.analysis.json") and (tmp_path / "rank1.report.md").exists()
    assert not (tmp_path / "analysis.json").exists()  # rank 1 never writes the job's files
    assert f"perfkit: rank 1 wrote {p1}" in capsys.readouterr().err
    t0 = cpu_trace(tmp_path / layout.trace_name(0), rank=0, world=world)
    p0 = finish_run(recording(tmp_path, trace_path=str(t0), world=World(0, 0, world, "env"), job_wait_s=5.0))
    assert p0 == str(tmp_path / "analysis.json")
    job = json.loads(Path(p0).read_text())
    assert [r["status"] for r in job["ranks"]] == ["analysed", "analysed"]
    assert (tmp_path / "report.md").exists() and (tmp_path / "rank0.analysis.json").exists()


def test_rank0_lists_a_rank_that_never_finished(tmp_path):
    t0 = cpu_trace(tmp_path / layout.trace_name(0), rank=0, world=2)
    p0 = finish_run(recording(tmp_path, trace_path=str(t0), world=World(0, 0, 2, "env"), job_wait_s=0.0))
    job = json.loads(Path(p0).read_text())
    assert [r["status"] for r in job["ranks"]] == ["analysed", "missing"]
    missing = next(f for f in job["findings"] if f["id"] == "rank_missing")
    assert missing["evidence"]["missing_ranks"] == [1]
