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
from typing import Any, Optional

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
    """Wall time between step boundaries, and GPU time between CUDA events at them."""

    def __init__(self) -> None:
        self.wall_ms: list[float] = []
        self._last = 0.0
        self._cuda = None
        self._events: deque[Any] = deque(maxlen=MAX_EVENTS)
        self._first_event_step = 0

    def start(self) -> None:
        self._cuda = _cuda()
        self._last = time.perf_counter()
        self._record()

    def _record(self) -> None:
        if self._cuda is not None:
            ev = self._cuda.Event(enable_timing=True)
            ev.record()
            if len(self._events) == self._events.maxlen:
                self._first_event_step += 1
            self._events.append(ev)

    def mark(self) -> None:
        now = time.perf_counter()
        self.wall_ms.append((now - self._last) * 1000.0)
        self._last = now
        self._record()

    def restart(self) -> None:
        """Start the next step's wall clock now (after profiler bookkeeping)."""
        self._last = time.perf_counter()

    def stop(self) -> None:
        pass

    def gpu_ms(self) -> list[float]:
        """GPU time per step (the recent ones), reading the events now."""
        if self._cuda is None or len(self._events) < 2:
            return []
        try:
            self._events[-1].synchronize()
            evs = list(self._events)
            return [a.elapsed_time(b) for a, b in zip(evs, evs[1:])]
        except Exception:
            return []

    def summary(self, skip: int = 0) -> dict[str, Any]:
        """Per-step figures; medians skip the first ``skip`` steps (start-up)."""
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
            ev1 = self._cuda.Event(enable_timing=True)  # type: ignore[union-attr]
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
        self.weights_bytes = 0
        self.gradients_bytes = 0
        self.optimizer_state_bytes = 0
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
            if self._fwd_hook is None:
                return  # switched off
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

        for group in optimizer.param_groups:
            for p in group["params"]:
                if not isinstance(p, torch.Tensor) or id(p) in self._seen:
                    continue
                self._seen.add(id(p))
                self.weights_bytes += p.numel() * p.element_size()
                if p.grad is not None:
                    self.gradients_bytes += p.grad.numel() * p.grad.element_size()
        for state in optimizer.state.values():
            for value in state.values() if isinstance(state, dict) else ():
                if isinstance(value, torch.Tensor) and id(value) not in self._seen:
                    self._seen.add(id(value))
                    self.optimizer_state_bytes += value.numel() * value.element_size()

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "weights_bytes": self.weights_bytes,
            "gradients_bytes": self.gradients_bytes,
            "optimizer_state_bytes": self.optimizer_state_bytes,
        }
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
            if steady:
                known = self.weights_bytes + self.gradients_bytes + self.optimizer_state_bytes
                # What the steady-state peak holds beyond the persistent tensors:
                # activations, the loss/logits, and temporaries.
                out["activations_and_temporaries_bytes_estimate"] = max(int(statistics.median(steady)) - known, 0)
        return out
