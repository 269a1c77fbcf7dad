"""perfkit.integrations' framework-free core, in-process, on a plain torch loop: only rank 0
prints, a session already running keeps the process, a failure at start leaves training alone.
tests/e2e/test_integrations_e2e.py runs the Lightning Callback and the Hugging Face
TrainerCallback with the real frameworks."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn


# ---------------------------------------------------------------------- the shared core, on a plain loop


def _plain_loop(profiler, steps=4):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 16), torch.randn(8, 1)
    profiler.start(model)
    for _ in range(steps):
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        profiler.optimizers([opt])
        opt.zero_grad()
        profiler.step()
    profiler.finish(0)
    return model


def test_only_rank_zero_prints(tmp_path, monkeypatch, capfd):
    from perfkit.integrations._core import CallbackProfiler

    for k, v in {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(k, v)
    profiler = CallbackProfiler("Test", "test hook", str(tmp_path / "run"), skip_first=0, warmup=1, active=2)
    _plain_loop(profiler)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["rank1.analysis.json", "rank1.pt.trace.json.gz", "rank1.pt.trace.stacks.json.gz",
                     "rank1.report.md"]
    doc = json.loads((tmp_path / "run" / "rank1.analysis.json").read_text())
    assert doc["runtime"]["rank"] == 1 and doc["runtime"]["steps_seen"] == 4
    assert doc["runtime"]["step_source"] == "test hook"


def test_a_session_already_running_keeps_the_process(tmp_path, capfd):
    """Under ``perfkit profile`` (or perfkit.profile()) the callback leaves profiling to that session."""
    import perfkit
    from perfkit.integrations._core import CallbackProfiler

    profiler = CallbackProfiler("Test", "test hook", str(tmp_path / "cb"), active=1)
    with perfkit.profile(out=str(tmp_path / "outer"), mode="light", report=False) as outer:
        _plain_loop(profiler)
    assert profiler.off and profiler.session is None
    assert not (tmp_path / "cb").exists()
    assert outer.steps == 4  # the outer session counted the optimizer steps itself
    err = capfd.readouterr().err.splitlines()
    assert [ln for ln in err if "callback" in ln] == [
        f"perfkit: warning: a perfkit session already profiles this process ({tmp_path / 'outer'}); "
        "the Test callback leaves it to that session"]


def test_a_failure_at_start_leaves_training_alone(tmp_path, monkeypatch, capfd):
    from perfkit.integrations._core import CallbackProfiler, CallbackSession

    def boom(self):
        raise OSError("injected")

    monkeypatch.setattr(CallbackSession, "start", boom)
    profiler = CallbackProfiler("Test", "test hook", str(tmp_path / "run"), active=1)
    model = _plain_loop(profiler)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    err = [ln for ln in capfd.readouterr().err.splitlines() if ln.startswith("perfkit:")]
    assert err == ["perfkit: warning: Test callback failed and is switched off for the rest of the run "
                   "(OSError: injected); the script goes on"]
    assert profiler.off


def test_bad_options_fail_at_construction():
    from perfkit.errors import UsageError
    from perfkit.integrations._core import CallbackProfiler

    with pytest.raises(UsageError, match="active must be >= 1"):
        CallbackProfiler("Test", "test hook", None, active=0)
    with pytest.raises(UsageError, match="mode must be"):
        CallbackProfiler("Test", "test hook", None, mode="fast")


def test_a_callback_failing_before_the_window_does_not_say_the_run_ended(tmp_path, monkeypatch, capfd):
    """Training goes on after the callback fails; the note must say profiling stopped, not that the run ended."""
    from perfkit.integrations._core import CallbackProfiler, CallbackSession

    real = CallbackSession.mark_step

    def flaky(self, *a, **k):
        if self.steps == 1:
            raise RuntimeError("injected")
        return real(self, *a, **k)

    monkeypatch.setattr(CallbackSession, "mark_step", flaky)
    profiler = CallbackProfiler("Test", "test hook", str(tmp_path / "run"), skip_first=2, warmup=1, active=2,
                                quiet=True)
    _plain_loop(profiler, steps=6)
    err = capfd.readouterr().err
    assert "the run ended" not in err, err
    doc = json.loads((tmp_path / "run" / "analysis.json").read_text())
    note = doc["runtime"]["analysis_error"]
    assert note.startswith("no kernel trace: profiling was switched off after step 1, when the Test callback "
                           "failed, before the profiled window (steps 4-5)"), note
