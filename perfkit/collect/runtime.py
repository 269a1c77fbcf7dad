"""Light, always-on measurements: step and phase timers, memory counters.

Nothing here synchronises the GPU during the run. GPU times come from CUDA
events recorded on the current stream at step and phase boundaries and read
only when the summary is built (after the run). Wall times use
``time.perf_counter``. All times are milliseconds in the summaries.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from typing import Any, Iterable, Optional

from ._compile import compiling as _compiling

#: Keep CUDA events for at most this many recent steps (bounded memory on long runs).
MAX_EVENTS = 2048


def _cuda() -> Any:
    try:
        import torch

        return torch.cuda if torch.cuda.is_available() else None
    except Exception:
        return None


def _median(values: list[float]) -> Optional[float]:
    return statistics.median(values) if values else None


class StepTimer:
    """Wall time between step boundaries, and GPU time between CUDA events at them.

    ``clock``: seconds, monotonic (default ``time.perf_counter``; tests inject their own). A step's
    GPU time runs from the event recorded at its start (the previous boundary, or :meth:`restart`
    after the profiler's own work there) to the event at its end, as its wall time does.
    """

    def __init__(self, clock: Any = None) -> None:
        self.wall_ms: list[float] = []
        self.clock = clock or time.perf_counter
        self._last = 0.0
        self._cuda = None
        self._steps: deque[tuple[Any, Any]] = deque(maxlen=MAX_EVENTS)  #: (start event, end event) per step
        self._start_event: Any = None
        self._first_event_step = 0

    def start(self) -> None:
        self._cuda = _cuda()
        self._last = self.clock()
        self._start_event = self._record()

    def _record(self) -> Any:
        if self._cuda is None:
            return None
        ev = self._cuda.Event(enable_timing=True)
        ev.record()
        return ev

    def mark(self, at: Optional[float] = None) -> None:
        """A step ended now (or at ``at``, a time of :attr:`clock` already past)."""
        now = self.clock() if at is None else at
        self.wall_ms.append((now - self._last) * 1000.0)
        self._last = now
        end = self._record()
        if end is not None and self._start_event is not None:
            if len(self._steps) == self._steps.maxlen:
                self._first_event_step += 1
            self._steps.append((self._start_event, end))
        self._start_event = end

    def restart(self, at: Optional[float] = None) -> None:
        """Start the next step's wall clock now (after profiler bookkeeping), or at ``at``; its GPU time
        starts at an event recorded now (the GPU idles through that bookkeeping when the host has
        nothing queued: the step after the profiled window took 134 ms against 21.5 on an H100)."""
        self._last = self.clock() if at is None else at
        if self._start_event is not None:
            self._start_event = self._record()

    def stop(self) -> None:
        pass

    def gpu_ms(self) -> list[float]:
        """GPU time per step (the recent ones), reading the events now."""
        if self._cuda is None or not self._steps:
            return []
        try:
            self._steps[-1][1].synchronize()
            return [a.elapsed_time(b) for a, b in self._steps]
        except Exception:
            return []

    def periods(self) -> list[float]:
        """The time of each step: GPU time between the step boundaries' CUDA events where they were
        recorded (the last :data:`MAX_EVENTS` steps; ``step_basis`` "gpu"), else host wall time."""
        return self.gpu_ms() or self.wall_ms

    def summary(self, skip: int = 0) -> dict[str, Any]:
        """Per-step figures; medians skip the first ``skip`` steps (start-up).

        ``step_ms_median`` is the step time (``step_basis``: "gpu" where CUDA events were recorded,
        else "wall"), the one throughput and MFU use; ``host_ahead`` says the host's wall time per step
        is well under the GPU's (see :func:`step_time`)."""
        wall = self.wall_ms
        steady = wall[skip:] if len(wall) > skip else wall
        gpu = self.gpu_ms()
        gpu_skip = max(skip - self._first_event_step, 0)
        gpu_steady = gpu[gpu_skip:] if len(gpu) > gpu_skip else gpu
        out: dict[str, Any] = {
            "count": len(wall),
            "wall_ms": [round(x, 4) for x in wall[-1000:]],
            "wall_ms_median": _median(steady),
            "first_step_ms": wall[0] if wall else None,
            "steady_from_step": min(skip, max(len(wall) - 1, 0)),
        }
        if gpu:
            out["gpu_ms"] = [round(x, 4) for x in gpu[-1000:]]
            out["gpu_ms_median"] = _median(gpu_steady)
        out.update(step_time(out.get("wall_ms_median"), out.get("gpu_ms_median")))
        return out


#: The host's wall time per step under this fraction of the GPU's: the host runs ahead of the GPU.
HOST_AHEAD = 0.8


def step_time(wall_ms_median: Optional[float], gpu_ms_median: Optional[float]) -> dict[str, Any]:
    """The run's step time and its basis: ``{"step_ms_median", "step_basis", "host_ahead"}``.

    With CUDA events at the step boundaries the step time is the GPU's: the time between two
    boundaries on the GPU is the step's whole period whether the GPU or the host sets the pace (a
    GPU waiting for launches idles inside it). The host's wall time per step is the period only
    when the host waits for the GPU somewhere in each step (a sync, a full launch queue). A loop
    that never waits (CUDA graphs: two launches a step) queues steps faster than the GPU runs them
    and waits only at the end or at a sync: its host times are short, then one long, and their median is
    not the step time (an H100 run of ``torch.compile(mode="reduce-overhead")``: host 10.4 ms
    against 21.6 ms on the GPU; traces/compiled_graphs_h100). ``host_ahead`` marks such a run.
    """
    if gpu_ms_median is not None:
        ahead = wall_ms_median is not None and wall_ms_median < HOST_AHEAD * gpu_ms_median
        return {"step_ms_median": gpu_ms_median, "step_basis": "gpu", "host_ahead": bool(ahead)}
    return {"step_ms_median": wall_ms_median, "step_basis": "wall", "host_ahead": None}


def profiled_vs_unprofiled(step_ms: list[float], schedule: dict[str, Any], *, traced_run: bool = True,
                           count: Optional[int] = None) -> dict[str, Any]:
    """The run timer's view of the steps: their spread, and traced against unprofiled step time.

    ``step_ms``: the time of each of the last ``len(step_ms)`` of ``count`` steps (default: all of
    them), on the basis of :meth:`StepTimer.periods` (the time between step boundaries on the GPU
    where measured, else wall time: the summary's ``step_basis``).
    Returns ``spread`` (:func:`perfkit.variation.spread` of the steady steps the profiler did not
    record; ``traced_run=False``, light mode: every step past the start-up) and, when
    the run has both traced and unprofiled steps, ``unprofiled_ms_median``, ``profiled_ms_median``
    (their medians) and ``slowdown`` (their ratio: what recording the trace cost each step).
    """
    from ..variation import START_UP_STEPS, spread, step_windows

    out: dict[str, Any] = {}
    n = len(step_ms) if count is None else int(count)
    if not traced_run:
        steady = [(i + 1, w) for i, w in enumerate(step_ms, n - len(step_ms)) if i >= START_UP_STEPS]
        out["spread"] = spread([w for _, w in steady], [s for s, _ in steady])
        return out
    parts = step_windows(step_ms, n, schedule)
    unprofiled, traced = parts["unprofiled"], parts["traced"]
    out["spread"] = spread([w for _, w in unprofiled], [s for s, _ in unprofiled])
    if unprofiled and traced:
        u = statistics.median(w for _, w in unprofiled)
        t = statistics.median(w for _, w in traced)
        out.update({
            "unprofiled_ms_median": round(u, 4),
            "unprofiled_steps": [s for s, _ in unprofiled][-1000:],
            "unprofiled_where": parts["unprofiled_where"],
            "profiled_ms_median": round(t, 4),
            "profiled_steps": [s for s, _ in traced],
            "slowdown": round(t / u, 4) if u > 0 else None,
        })
    return out


class PhaseTimer:
    """Named phases (``perfkit.phase("data")``): wall and GPU time per call."""

    def __init__(self) -> None:
        self.wall_ms: dict[str, list[float]] = {}
        self.events: dict[str, deque[tuple[Any, Any]]] = {}
        self._cuda = _cuda()

    def begin(self, name: str) -> tuple[float, Any]:
        ev = None
        if self._cuda is not None:
            ev = self._cuda.Event(enable_timing=True)
            ev.record()
        return time.perf_counter(), ev

    def end(self, name: str, token: tuple[float, Any]) -> None:
        t0, ev0 = token
        self.wall_ms.setdefault(name, []).append((time.perf_counter() - t0) * 1000.0)
        if ev0 is not None:
            ev1 = self._cuda.Event(enable_timing=True)
            ev1.record()
            self.events.setdefault(name, deque(maxlen=MAX_EVENTS)).append((ev0, ev1))

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, walls in self.wall_ms.items():
            entry: dict[str, Any] = {
                "calls": len(walls),
                "wall_ms_total": sum(walls),
                "wall_ms_median": _median(walls),
            }
            pairs = self.events.get(name)
            if pairs:
                try:
                    pairs[-1][1].synchronize()
                    gpu = [a.elapsed_time(b) for a, b in pairs]
                    entry["gpu_ms_median"] = _median(gpu)
                    entry["gpu_ms_total_recent"] = sum(gpu)
                except Exception:
                    pass
            out[name] = entry
        return out


class MemoryCounters:
    """Allocator peaks per step (CUDA) and the bytes of weights, gradients and optimizer state."""

    def __init__(self) -> None:
        self._cuda = None
        self.step_peak_bytes: list[int] = []
        # Unknown (None) until counted: from the first optimizer step, or else the first backward.
        self.weights_bytes: Optional[int] = None
        self.gradients_bytes: Optional[int] = None
        self.optimizer_state_bytes: Optional[int] = None
        #: What the weights were counted from: "optimizer" or "backward" (None: not counted).
        self.counted_from: Optional[str] = None
        self._seen: set[int] = set()
        self.forward_peak_bytes: list[int] = []  #: allocator peak from step start to the model's forward end
        self.after_forward_peak_bytes: list[int] = []  #: peak from forward end to step end (loss, backward, optimizer)
        self._fwd_hook: Any = None
        self._fwd_handle: Any = None
        self._fwd_done = False
        #: Called with the exception when the forward hook fails (a profiling session sets it).
        self.on_error: Any = None

    def start(self) -> None:
        self._cuda = _cuda()
        if self._cuda is not None:
            try:
                self._cuda.reset_peak_memory_stats()
            except Exception:
                self._cuda = None

    def watch_forward(self, model: Any) -> None:
        """Split each step's peak at the end of ``model``'s forward (a forward hook on the root)."""
        if self._cuda is None or self._fwd_hook is not None:
            return

        def hook(module: Any, args: Any, output: Any) -> None:
            if _compiling() or self._fwd_hook is None:
                return  # inside torch.compile's tracing, or switched off
            try:
                if not self._fwd_done:
                    self.forward_peak_bytes.append(int(self._cuda.max_memory_allocated()))
                    self._cuda.reset_peak_memory_stats()
                    self._fwd_done = True
            except Exception as exc:  # never into the script's forward
                self._fwd_hook = None  # the handle stays until unwatch(); the hook does nothing more
                if self.on_error is not None:
                    self.on_error(exc)

        self._fwd_hook = hook
        self._fwd_handle = model.register_forward_hook(hook)

    def unwatch(self) -> None:
        handle, self._fwd_handle = self._fwd_handle, None
        self._fwd_hook = None
        if handle is not None:
            handle.remove()

    def mark_step(self) -> None:
        if self._cuda is not None:
            peak = int(self._cuda.max_memory_allocated())
            if self._fwd_done:
                self.after_forward_peak_bytes.append(peak)
                peak = max(peak, self.forward_peak_bytes[-1])
            self.step_peak_bytes.append(peak)
            self._cuda.reset_peak_memory_stats()
            self._fwd_done = False

    def stop(self) -> None:
        pass

    def account_optimizer(self, optimizer: Any) -> None:
        """Add the optimizer's parameters, their gradients and its state tensors (each storage once)."""
        import torch

        self._add_params(p for group in optimizer.param_groups for p in group["params"])
        self.counted_from = self.counted_from or "optimizer"
        state_bytes = self.optimizer_state_bytes or 0
        for state in optimizer.state.values():
            for value in state.values() if isinstance(state, dict) else ():
                if isinstance(value, torch.Tensor) and id(value) not in self._seen:
                    self._seen.add(id(value))
                    state_bytes += value.numel() * value.element_size()
        self.optimizer_state_bytes = state_bytes

    def account_trained(self, params: Iterable[Any]) -> None:
        """Add tensors a backward computed gradients for (call after it): with no torch.optim optimizer,
        the trained weights are known from the autograd graph, the optimizer's state is not."""
        self._add_params(params)
        self.counted_from = self.counted_from or "backward"

    def _add_params(self, params: Iterable[Any]) -> None:
        import torch

        weights, grads = self.weights_bytes or 0, self.gradients_bytes or 0
        for p in params:
            if not isinstance(p, torch.Tensor) or id(p) in self._seen:
                continue
            self._seen.add(id(p))
            weights += p.numel() * p.element_size()
            if p.grad is not None:
                grads += p.grad.numel() * p.grad.element_size()
        self.weights_bytes, self.gradients_bytes = weights, grads

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "weights_bytes": self.weights_bytes,
            "gradients_bytes": self.gradients_bytes,
            "optimizer_state_bytes": self.optimizer_state_bytes,
            "counted_from": self.counted_from,
        }
        unknown = {}
        if self.weights_bytes is None:
            unknown["weights_bytes"] = unknown["gradients_bytes"] = (
                "no torch.optim optimizer stepped and no autograd backward ran: the trained weights were not found")
        if self.optimizer_state_bytes is None:
            unknown["optimizer_state_bytes"] = "no torch.optim optimizer stepped (an update of the script's own has state perfkit cannot see)"
        if unknown:
            out["unknown"] = unknown
        if self._cuda is not None:
            peaks = self.step_peak_bytes
            out["step_peak_bytes"] = peaks[-1000:]
            out["peak_bytes"] = max(peaks) if peaks else int(self._cuda.max_memory_allocated())
            out["reserved_bytes"] = int(self._cuda.memory_reserved())
            out["allocated_bytes_end"] = int(self._cuda.memory_allocated())
            if self.forward_peak_bytes:
                out["peak_forward_bytes"] = int(statistics.median(self.forward_peak_bytes[1:] or self.forward_peak_bytes))
            if self.after_forward_peak_bytes:
                after = self.after_forward_peak_bytes
                out["peak_backward_bytes"] = int(statistics.median(after[1:] or after))
            steady = peaks[1:] if len(peaks) > 1 else peaks
            if steady and self.weights_bytes is not None:  # peak minus an unknown is unknown
                known = (self.weights_bytes or 0) + (self.gradients_bytes or 0) + (self.optimizer_state_bytes or 0)
                # What the steady-state peak holds beyond the persistent tensors:
                # activations, the loss/logits, and temporaries.
                out["activations_and_temporaries_bytes_estimate"] = max(int(statistics.median(steady)) - known, 0)
        return out
