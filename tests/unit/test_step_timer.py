"""The run timer's step time (perfkit.collect.runtime.StepTimer), with an injected clock and fake CUDA
events: the GPU's time between step boundaries is the step time wherever it was measured; a host that
queues steps faster than the GPU runs them (CUDA graphs) is marked, and its wall time is not used."""

from __future__ import annotations

import statistics

import pytest

from perfkit.collect import runtime as rt


class _Clocks:
    def __init__(self) -> None:
        self.host_s = 0.0
        self.gpu_ms = 0.0


class _FakeCuda:
    """``torch.cuda`` as the timer uses it: an event records the GPU clock when recorded."""

    def __init__(self, clocks: _Clocks) -> None:
        self.clocks = clocks

    def Event(self, enable_timing: bool = False) -> "_FakeEvent":  # noqa: N802 (torch's name)
        return _FakeEvent(self.clocks)


class _FakeEvent:
    def __init__(self, clocks: _Clocks) -> None:
        self.clocks, self.t = clocks, None

    def record(self) -> None:
        self.t = self.clocks.gpu_ms

    def elapsed_time(self, end: "_FakeEvent") -> float:
        return end.t - self.t

    def synchronize(self) -> None:
        pass


def _timer(monkeypatch: pytest.MonkeyPatch, cuda: bool = True) -> tuple[rt.StepTimer, _Clocks]:
    clocks = _Clocks()
    monkeypatch.setattr(rt, "_cuda", lambda: _FakeCuda(clocks) if cuda else None)
    timer = rt.StepTimer(clock=lambda: clocks.host_s)
    timer.start()
    return timer, clocks


def _step(timer: rt.StepTimer, clocks: _Clocks, host_ms: float, gpu_ms: float) -> None:
    clocks.host_s += host_ms / 1000.0
    clocks.gpu_ms += gpu_ms
    timer.mark()


def test_a_host_running_ahead_gets_the_gpu_step_time(monkeypatch):
    timer, clocks = _timer(monkeypatch)
    for _ in range(12):
        _step(timer, clocks, host_ms=10.0, gpu_ms=21.6)  # CUDA graphs: the host never waits
    out = timer.summary(skip=2)
    assert out["wall_ms_median"] == pytest.approx(10.0) and out["gpu_ms_median"] == pytest.approx(21.6)
    assert (out["step_ms_median"], out["step_basis"], out["host_ahead"]) == (pytest.approx(21.6), "gpu", True)
    assert timer.periods() == pytest.approx([21.6] * 12)


def test_a_host_waiting_for_the_gpu_is_not_ahead(monkeypatch):
    timer, clocks = _timer(monkeypatch)
    for _ in range(6):
        _step(timer, clocks, host_ms=21.0, gpu_ms=21.6)
    out = timer.summary()
    assert out["step_basis"] == "gpu" and out["host_ahead"] is False


def test_without_cuda_the_wall_time_is_the_step_time(monkeypatch):
    timer, clocks = _timer(monkeypatch, cuda=False)
    for _ in range(5):
        _step(timer, clocks, host_ms=7.0, gpu_ms=0.0)
        timer.restart()
    out = timer.summary()
    assert (out["step_ms_median"], out["step_basis"], out["host_ahead"]) == (pytest.approx(7.0), "wall", None)
    assert "gpu_ms" not in out and timer.periods() == pytest.approx([7.0] * 5)


def test_the_profilers_work_between_steps_is_in_no_steps_time(monkeypatch):
    """restart() after the profiler's bookkeeping: neither the wall nor the GPU time of a step holds it."""
    timer, clocks = _timer(monkeypatch)
    for i in range(6):
        _step(timer, clocks, host_ms=20.0, gpu_ms=21.5)
        clocks.host_s += 0.1  # 100 ms exporting the trace; the GPU has nothing queued and idles
        clocks.gpu_ms += 100.0
        timer.restart()
    assert timer.wall_ms == pytest.approx([20.0] * 6) and timer.periods() == pytest.approx([21.5] * 6)


def test_kept_events_are_the_last_steps_and_line_up_with_the_run_steps(monkeypatch):
    monkeypatch.setattr(rt, "MAX_EVENTS", 8)
    timer, clocks = _timer(monkeypatch)
    for i in range(20):
        _step(timer, clocks, host_ms=5.0, gpu_ms=10.0 + i)  # the GPU time names the step
    gpu = timer.periods()
    assert gpu == pytest.approx([10.0 + i for i in range(12, 20)])
    out = timer.summary(skip=14)  # steps 15-20 past the start-up; the events hold steps 13-20
    assert out["gpu_ms_median"] == pytest.approx(statistics.median(10.0 + i for i in range(14, 20)))
    view = rt.profiled_vs_unprofiled(gpu, {"skip_first": 10, "wait": 0, "warmup": 2, "active": 3},
                                     count=len(timer.wall_ms))
    assert view["profiled_steps"] == [13, 14, 15] and view["profiled_ms_median"] == pytest.approx(23.0)
    assert view["unprofiled_steps"] == [16, 17, 18, 19, 20] and view["unprofiled_ms_median"] == pytest.approx(27.0)


def test_throughput_is_over_the_step_time(monkeypatch):
    from perfkit.collect.session import _throughput

    timer, clocks = _timer(monkeypatch)
    for _ in range(6):
        _step(timer, clocks, host_ms=10.0, gpu_ms=20.0)
    out = _throughput(timer.summary(), tokens=4096.0, samples=None)
    assert out["tokens_per_s"] == pytest.approx(4096.0 / 0.020)  # not the host's 10 ms
    assert _throughput({"wall_ms_median": 10.0}, 4096.0, 8.0) == pytest.approx(
        {"tokens_per_step": 4096.0, "samples_per_step": 8.0, "tokens_per_s": 409600.0, "samples_per_s": 800.0})


def test_measured_recording_compares_gpu_step_times_where_the_run_has_them():
    """The analysis side (a document's runtime section): traced against unprofiled steps on the GPU."""
    from perfkit.analysis.runtime_findings import measured_recording

    wall = [900.0, 40.0] + [8.0] * 10 + [20.0] * 3 + [8.0] * 5  # the host runs ahead, waits in the traced steps
    gpu = [900.0, 40.0] + [21.5] * 10 + [21.7] * 3 + [21.5] * 5
    runtime = {"steps": {"count": 20, "wall_ms": wall, "gpu_ms": gpu},
               "schedule": {"skip_first": 10, "wait": 0, "warmup": 2, "active": 3}}
    out = measured_recording(runtime, gpu_busy_ms=21.2)
    assert out["step_basis"] == "gpu" and out["slowdown"] == pytest.approx(21.7 / 21.5, abs=1e-3)
    assert out["gpu_bound_without_recording"] is True
    del runtime["steps"]["gpu_ms"]  # a CPU run, or a document from before: wall times
    out = measured_recording(runtime, gpu_busy_ms=21.2)
    assert out["step_basis"] == "wall" and out["slowdown"] == pytest.approx(20.0 / 8.0)
