"""Where a training step's memory goes: persistent tensors and activations.

Every size here is in **bytes** (keys end in ``_bytes``).

* :func:`memory_breakdown` counts what lives across steps: weights,
  gradients, optimizer state and buffers, each storage once (tied weights,
  parameters that are views of one flat buffer, gradients that are views of a
  communication bucket), plus the CUDA caching allocator's counters.
* :class:`ActivationTracker` measures, on CUDA, how much memory each top-level
  module's forward leaves allocated (mostly the activations it keeps for
  backward, plus its output), the size of the model's output (the logits:
  batch x sequence x vocabulary can be over a gigabyte) and the peak during
  named phases. On CPU there is no allocator to read, so it reports only the
  output's size and says why the rest is unavailable.
"""

from __future__ import annotations

import statistics
from typing import Any, Iterable, Optional

import torch
from torch import nn

from ._compile import compiling as _compiling
from ._failsoft import report_failure
from .modules import select_modules

_graph_task_id = getattr(torch._C, "_current_graph_task_id", lambda: -1)


def _storage_key(t: torch.Tensor) -> tuple[Any, ...]:
    """A key identifying the memory behind ``t`` and the bytes it holds.

    Tensors that share a storage (tied or view parameters) get the same key.
    Tensors with no real storage (meta, fake, empty) are keyed by identity.
    """
    try:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr:
            return (str(t.device), ptr)
    except Exception:
        pass
    return ("id", id(t))


def _storage_bytes(t: torch.Tensor) -> int:
    try:
        if t.untyped_storage().data_ptr():
            return int(t.untyped_storage().nbytes())
    except Exception:
        pass
    return int(t.numel() * t.element_size())


def _count(tensors: Iterable[Any], seen: set[tuple[Any, ...]]) -> int:
    total = 0
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            continue
        key = _storage_key(t)
        if key in seen:
            continue
        seen.add(key)
        total += _storage_bytes(t)
    return total


def _optimizer_tensors(optimizer: Any) -> Iterable[torch.Tensor]:
    for state in optimizer.state.values():
        values = state.values() if isinstance(state, dict) else (state,)
        for v in values:
            if isinstance(v, torch.Tensor):
                yield v
            elif isinstance(v, (list, tuple)):
                yield from (x for x in v if isinstance(x, torch.Tensor))


def _cuda_device(model: nn.Module) -> Optional[torch.device]:
    if not torch.cuda.is_available():
        return None
    for p in model.parameters():
        if p.is_cuda:
            return p.device
    for t in model.buffers():
        if t.is_cuda:
            return t.device
    return None


def memory_breakdown(model: nn.Module, optimizer: Any = None) -> dict[str, Any]:
    """Bytes of the model's persistent tensors (and the CUDA allocator's counters).

    Returns a dict, all sizes in bytes:
        weights_bytes: parameters, each storage once (a tied embedding counts once).
        gradients_bytes: ``p.grad`` of the parameters that have one now (call
            after ``backward()`` and before ``zero_grad()`` to see them).
        optimizer_state_bytes: tensors in ``optimizer.state`` (Adam's moments and step counters).
        buffers_bytes: the model's buffers (BatchNorm statistics, rotary tables).
        persistent_bytes: the sum of the four.
        parameters: number of parameter elements (tied ones once).
        On CUDA (the model's device): ``allocated_bytes``, ``reserved_bytes``
        (held by the caching allocator), ``peak_allocated_bytes`` (since the last
        peak reset) and ``device_total_bytes`` (the GPU's memory), and ``device``.

    Storages are counted once across all four groups: a tensor already counted
    as a weight is not counted again as optimizer state.
    """
    seen: set[tuple[Any, ...]] = set()
    params = list(model.parameters())  # deduplicates tied Parameter objects
    unique_params = {id(p): p for p in params}
    weights = _count(params, seen)
    grads = _count((p.grad for p in params if p.grad is not None), seen)
    opt_state = _count(_optimizer_tensors(optimizer), seen) if optimizer is not None else 0
    buffers = _count(model.buffers(), seen)
    out: dict[str, Any] = {
        "unit": "bytes",
        "weights_bytes": weights,
        "gradients_bytes": grads,
        "optimizer_state_bytes": opt_state,
        "buffers_bytes": buffers,
        "persistent_bytes": weights + grads + opt_state + buffers,
        "parameters": sum(p.numel() for p in unique_params.values()),
    }
    dev = _cuda_device(model)
    if dev is not None:
        out.update(cuda_counters(dev))
    return out


def cuda_counters(device: Any = None) -> dict[str, Any]:
    """The CUDA caching allocator's counters for ``device`` (default: the current one), in bytes."""
    cuda = torch.cuda
    idx = cuda.current_device() if device is None else torch.device(device).index
    if idx is None:
        idx = cuda.current_device()
    return {
        "device": f"cuda:{idx}",
        "allocated_bytes": int(cuda.memory_allocated(idx)),
        "reserved_bytes": int(cuda.memory_reserved(idx)),
        "peak_allocated_bytes": int(cuda.max_memory_allocated(idx)),
        "device_total_bytes": int(cuda.get_device_properties(idx).total_memory),
    }


def tensor_bytes(obj: Any, _depth: int = 0) -> int:
    """Bytes of the tensors in ``obj`` (a tensor, or a tuple/list/dict of them, two levels deep)."""
    if isinstance(obj, torch.Tensor):
        return int(obj.numel() * obj.element_size())
    if _depth >= 2:
        return 0
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(x, _depth + 1) for x in obj)
    return 0


class ActivationTracker:
    """Memory kept by each top-level module's forward, the output's size, and phase peaks.

    Args:
        model: the model.
        depth: which modules to watch, as in :class:`perfkit.ModuleTimer`.

    On CUDA, a forward pre-hook and a forward hook on each watched module read
    ``torch.cuda.memory_allocated()`` (a counter read, no synchronisation);
    the difference is what the module's forward left allocated: the
    activations autograd saved for backward plus its output, minus what it
    freed. Under autocast the first module to use a weight also holds its
    cached low-precision copy. A hook on the root records the bytes of the
    model's output (``output_bytes``: the logits of a language model).

    :meth:`begin_phase` / :meth:`end_phase` give the allocator's peak during a
    phase (``peak_forward_bytes``, ``peak_backward_bytes`` for the phases named
    ``forward`` and ``backward``). They reset the allocator's peak counter, so a
    per-step peak read elsewhere (a profiling session's) covers only the part of
    the step after the last reset.

    On CPU the per-module and peak figures are unavailable (``available`` is
    False, with the reason); ``output_bytes`` is still recorded. All sizes are
    in bytes.
    """

    def __init__(self, model: nn.Module, *, depth: int = 1):
        self.model = model
        self.depth = depth
        self.targets = select_modules(model, depth)
        self.device = _cuda_device(model)
        self.available = self.device is not None
        self.reason: Optional[str] = None
        if not self.available:
            self.reason = (
                "CUDA is not available"
                if not torch.cuda.is_available()
                else "the model is not on a CUDA device"
            ) + ": per-module activation memory and phase peaks are read from the CUDA caching allocator"
        self._deltas: dict[str, list[int]] = {name: [] for name, _ in self.targets}
        self._types = {name: type(m).__name__ for name, m in self.targets}
        self._stacks: dict[str, list[int]] = {name: [] for name, _ in self.targets}
        self.output_bytes: Optional[int] = None
        self.phases: dict[str, dict[str, int]] = {}
        self._phase_start: dict[str, int] = {}
        self._handles: list[Any] = []
        #: "Type: message" of the error that switched the tracker off (its figures are then partial).
        self.error: Optional[str] = None
        #: Called once with the exception when a hook fails (a profiling session sets it); else a RuntimeWarning.
        self.on_error: Optional[Any] = None
        self._dead = [False]

    def _fail(self, exc: BaseException) -> None:
        """A hook raised: every hook returns at once from now on; say so once."""
        if self._dead[0]:
            return
        self._dead[0] = True

        def warn() -> None:
            import warnings

            warnings.warn(f"perfkit.ActivationTracker: switched off after an error in its hooks ({self.error})",
                          RuntimeWarning, stacklevel=3)

        report_failure(self, exc, warn)

    # ------------------------------------------------------------------ hooks

    def attach(self) -> "ActivationTracker":
        if self._handles:
            return self
        try:
            self._handles.append(self.model.register_forward_hook(self._on_output))
            if self.available:
                allocated = torch.cuda.memory_allocated
                idx = self.device.index if self.device is not None else None
                dead, fail = self._dead, self._fail
                for name, module in self.targets:
                    stack = self._stacks[name]
                    deltas = self._deltas[name]

                    def pre(_m: Any, _args: Any, stack: list[int] = stack) -> None:
                        if _compiling() or dead[0]:
                            return
                        try:
                            if _graph_task_id() == -1:  # not a recomputation inside backward
                                stack.append(allocated(idx))
                        except Exception as exc:
                            fail(exc)

                    def post(_m: Any, _args: Any, _out: Any, stack: list[int] = stack, deltas: list[int] = deltas) -> None:
                        if _compiling() or dead[0]:
                            return
                        try:
                            if stack and _graph_task_id() == -1:
                                deltas.append(allocated(idx) - stack.pop())
                                if len(deltas) > 1000:
                                    del deltas[:-1000]
                        except Exception as exc:
                            fail(exc)

                    self._handles.append(module.register_forward_pre_hook(pre))
                    self._handles.append(module.register_forward_hook(post))
        except BaseException:
            self.detach()
            raise
        return self

    def detach(self) -> None:
        """Remove every hook. Safe to call more than once."""
        handles, self._handles = self._handles, []
        for h in handles:
            h.remove()
        for stack in self._stacks.values():
            stack.clear()

    def __enter__(self) -> "ActivationTracker":
        return self.attach()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.detach()

    def _on_output(self, _m: Any, _args: Any, output: Any) -> None:
        if _compiling():
            return
        if self._dead[0]:
            return
        try:
            self.output_bytes = tensor_bytes(output)
        except Exception as exc:
            self._fail(exc)

    # ------------------------------------------------------------------ phases

    def begin_phase(self, name: str) -> None:
        """Start a phase: reset the allocator's peak so :meth:`end_phase` reads this phase's peak (CUDA only)."""
        if not self.available:
            return
        idx = self.device.index if self.device is not None else None
        torch.cuda.reset_peak_memory_stats(idx)
        self._phase_start[name] = int(torch.cuda.memory_allocated(idx))

    def end_phase(self, name: str) -> None:
        """End a phase: record its peak allocated bytes, and the peak above what was allocated at its start."""
        if not self.available or name not in self._phase_start:
            return
        idx = self.device.index if self.device is not None else None
        peak = int(torch.cuda.max_memory_allocated(idx))
        start = self._phase_start.pop(name)
        entry = self.phases.setdefault(name, {"peak_bytes": 0, "peak_above_start_bytes": 0, "count": 0})
        entry["peak_bytes"] = max(entry["peak_bytes"], peak)
        entry["peak_above_start_bytes"] = max(entry["peak_above_start_bytes"], peak - start)
        entry["count"] += 1

    # ------------------------------------------------------------------ results

    @property
    def peak_forward_bytes(self) -> Optional[int]:
        p = self.phases.get("forward")
        return p["peak_bytes"] if p else None

    @property
    def peak_backward_bytes(self) -> Optional[int]:
        p = self.phases.get("backward")
        return p["peak_bytes"] if p else None

    def summary(self) -> list[dict[str, Any]]:
        """Per watched module (CUDA only; empty on CPU), largest first:
        name, type, calls, activation_bytes (median per call), activation_bytes_last."""
        rows: list[dict[str, Any]] = []
        for name, deltas in self._deltas.items():
            if not deltas:
                continue
            rows.append(
                {
                    "name": name,
                    "type": self._types[name],
                    "calls": len(deltas),
                    "activation_bytes": int(statistics.median(deltas)),
                    "activation_bytes_last": deltas[-1],
                }
            )
        rows.sort(key=lambda r: -r["activation_bytes"])
        return rows

    def to_dict(self) -> dict[str, Any]:
        """Everything measured, as JSON-ready data (sizes in bytes)."""
        out: dict[str, Any] = {"available": self.available, "unit": "bytes", "output_bytes": self.output_bytes}
        if self.error is not None:
            out["error"] = self.error
        if not self.available:
            out["reason"] = self.reason
            return out
        out["device"] = str(self.device)
        out["modules"] = self.summary()
        out["peak_forward_bytes"] = self.peak_forward_bytes
        out["peak_backward_bytes"] = self.peak_backward_bytes
        out["phases"] = {k: dict(v) for k, v in self.phases.items()}
        return out
