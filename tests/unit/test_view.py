"""`perfkit view RUN`: TensorBoard when torch-tb-profiler is importable, else Perfetto UI instructions.

Also checks that the traces perfkit writes are Chrome Trace Event Format JSON, the
format Perfetto UI and chrome://tracing open.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from perfkit.cli import main
from perfkit.cli import view as V

from ..conftest import REPO

RUN = REPO / "traces" / "pathologies_h100" / "slow_loader"  # a perfkit profile run directory
TRACE = RUN / "rank0.pt.trace.json.gz"


def test_without_tensorboard_prints_perfetto_instructions(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(V, "tensorboard_available", lambda: False)
    assert main(["view", str(RUN)]) == 0
    out = capsys.readouterr().out
    assert "https://ui.perfetto.dev" in out and '"Open trace file"' in out
    assert str(TRACE.resolve()) in out
    assert "pip install 'perfkit[tensorboard]'" in out
    assert out.count("deprecated") == 1  # said once


def test_with_tensorboard_dry_run_prints_the_command(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(V, "tensorboard_available", lambda: True)
    monkeypatch.setattr(V.os, "execv", lambda *a, **k: pytest.fail("--dry-run must not start TensorBoard"))
    assert main(["view", str(RUN), "--dry-run", "--port", "6123"]) == 0
    cap = capsys.readouterr()
    assert f"--logdir {RUN}" in cap.out and "--port 6123" in cap.out and "tensorboard" in cap.out
    assert "http://localhost:6123/#pytorch_profiler" in cap.out
    assert (cap.out + cap.err).count("deprecated") == 1
    assert "misreads traces written since 2024" in cap.err


def test_with_tensorboard_starts_it(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    started = []
    monkeypatch.setattr(V, "tensorboard_available", lambda: True)
    monkeypatch.setattr(V.os, "execv", lambda path, argv: started.append((path, argv)))
    assert main(["view", str(TRACE)]) == 0  # a trace file: its directory is the log dir
    path, argv = started[0]
    assert argv[0] == path and argv[-4:] == ["--logdir", str(RUN), "--port", "6006"]
    assert "http://localhost:6006/#pytorch_profiler" in capsys.readouterr().err


def test_perfetto_flag_and_analysis_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(V, "tensorboard_available", lambda: True)
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(TRACE, run / TRACE.name)
    # An analysis.json names the traces it was made from (here with the recording machine's path).
    (run / "analysis.json").write_text(json.dumps({"schema": "perfkit.analysis/1",
                                                   "trace": {"paths": ["/root/out/p/rank0.pt.trace.json.gz"]}}))
    assert main(["view", str(run / "analysis.json"), "--perfetto"]) == 0
    out = capsys.readouterr().out
    assert str(run / TRACE.name) in out and "deprecated" not in out


def test_run_without_traces_is_an_input_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["view", str(tmp_path)]) == 2
    assert "no .json or .json.gz trace" in capsys.readouterr().err


def test_tensorboard_detection_matches_importability() -> None:
    import importlib.util

    expected = all(importlib.util.find_spec(m) is not None for m in ("tensorboard", "torch_tb_profiler"))
    assert V.tensorboard_available() is expected


def test_written_traces_are_chrome_trace_event_format() -> None:
    """What Perfetto UI's and chrome://tracing's JSON importers need: an object with a
    traceEvents list whose events carry ph, and for complete events numeric ts/dur and pid/tid."""
    with gzip.open(TRACE, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    events = data["traceEvents"]
    assert isinstance(events, list) and len(events) > 1000
    complete = [e for e in events if e.get("ph") == "X"]
    assert len(complete) > 1000
    for e in complete:
        assert isinstance(e["ts"], (int, float)) and isinstance(e["dur"], (int, float)) and e["dur"] >= 0
        assert "pid" in e and "tid" in e and isinstance(e.get("name"), str)
    assert all("ph" in e for e in events)
