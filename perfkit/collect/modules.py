"""Per-module forward and backward time: :class:`ModuleTimer`.

Times a small set of modules (by default the root's children, with the
elements of ``nn.ModuleList`` / ``nn.Sequential`` as separate rows, so a GPT's
``blocks.0 ... blocks.7`` each get a row) from hooks, with little enough work
per call to leave a training step's speed alone:

* forward: a forward pre-hook and a forward hook on each timed module. On CUDA
  each records one CUDA event on the current stream (events come from a
  per-module pool and are reused); on CPU they read ``time.perf_counter``.
* backward: no module backward hooks. When the forward runs with gradients
  enabled, the forward hook puts a tensor hook on the module's output (it fires
  when the gradient with respect to the output is ready: the module's backward
  starts) and the pre-hook puts one on the module's input (it fires when the
  gradient with respect to the input is complete: the module's backward is
  done). Where no input carries a gradient (an embedding fed token ids), the
  end is when the module's first parameter has its gradient accumulated.

  ``register_full_backward_hook`` is not used on purpose: it wraps every input
  and output in an autograd Function on every call (the cost that made hooks
  on all modules take 50% of a step) and it makes the outputs views that must
  not be modified in place, so a model that does ``relu_(module(x))`` (an
  ``nn.ReLU(inplace=True)`` after a timed module, as in ResNets) fails with
  "Output 0 of BackwardHookFunction is a view and is being modified inplace".
  Tensor hooks change nothing in the graph, the outputs or the gradients.

* CUDA events are never read in a hook while the GPU may still be busy with
  them: a hook converts only events that have already completed
  (``Event.query()``, no synchronisation), and :meth:`ModuleTimer.summary`
  synchronises once and reads the rest.

Times are milliseconds. On CUDA they are GPU time between the events (the
stream's time from the module's first launch to its last, idle gaps included
if the CPU cannot keep the GPU busy); on CPU they are wall time.

The first call of a module is kept apart from the steady calls: start-up work
(cuDNN/cuBLAS autotuning, lazy initialisation, compilation) makes it slow, and
a first call over ``OUTLIER_FACTOR`` times the steady median is flagged.

Limits: forward calls made during backward (activation checkpointing's
recomputation) are not counted as calls; their time is part of the module's
backward time when the checkpointed module is the timed one. Modules whose
forward runs under reentrant checkpointing (which runs it with gradients off)
have no backward time. Timed modules that nest (``modules=["blocks.0",
"blocks.0.attn"]``) each get their full time, so shares then overlap.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections import deque
from typing import Any, Callable, Optional

import torch

from torch import nn

from ._compile import compiling as _compiling
from ._failsoft import report_failure

#: Per-call times kept per module (the most recent ones); totals cover every call.
MAX_CALLS = 1000
#: A first call this many times the steady median is flagged ``first_call_outlier``.
OUTLIER_FACTOR = 10.0
#: CUDA: once this many event pairs wait, a hook converts the completed ones to times.
_HARVEST_AT = 128
#: Pending "no input gradient" backward calls kept per module before the oldest are dropped.
_MAX_PARAM_SLOTS = 64

_perf_counter = time.perf_counter
_grad_enabled = torch.is_grad_enabled
_graph_task_id = getattr(torch._C, "_current_graph_task_id", lambda: -1)
_Tensor = torch.Tensor


def select_modules(model: nn.Module, depth: int = 1) -> list[tuple[str, nn.Module]]:
    """The modules ``depth`` levels below ``model``, with their dotted names.

    ``nn.ModuleList``, ``nn.ModuleDict`` and plain ``nn.Sequential`` containers
    do not count as a level: their elements take their place. A module with no
    children above ``depth`` is kept as it is, so the modules returned cover the
    whole model (depth 2 of a GPT: ``tok_emb``, ``blocks.0.ln1``,
    ``blocks.0.attn``, ..., ``lm_head``). Wrappers (``DistributedDataParallel``,
    ``DataParallel``, FSDP, ``torch.compile``'s ``OptimizedModule``) are not a
    level either: ``DDP(gpt)`` gives ``module.blocks.0`` and so on. A model with
    no children gives itself, named ``""``.
    """
    if not isinstance(depth, int) or depth < 1:
        from ..errors import UsageError

        raise UsageError(f"depth must be a whole number >= 1 (got {depth!r})")
    out: list[tuple[str, nn.Module]] = []

    def visit(prefix: str, module: nn.Module, level: int) -> None:
        for name, child in module.named_children():
            full = f"{prefix}.{name}" if prefix else name
            parent = next(child.children(), None) is not None
            if _is_container(child) or (parent and _is_wrapper(module)):
                visit(full, child, level)
            elif parent and level < depth:
                visit(full, child, level + 1)
            else:
                out.append((full, child))

    visit("", model, 1)
    if not out:
        out.append(("", model))
    return out


#: Wrappers that hold the real model as their only child: not a level of their own.
_WRAPPERS = {"DistributedDataParallel", "DataParallel", "OptimizedModule", "FullyShardedDataParallel"}


def _is_wrapper(module: nn.Module) -> bool:
    return type(module).__name__ in _WRAPPERS


def _is_container(module: nn.Module) -> bool:
    # Subclasses of Sequential may have their own forward: they are real modules.
    return isinstance(module, (nn.ModuleList, nn.ModuleDict)) or type(module) is nn.Sequential


def _named_targets(model: nn.Module, names: list[str]) -> list[tuple[str, nn.Module]]:
    table = dict(model.named_modules())
    missing = [n for n in names if n not in table]
    if missing:
        from ..errors import UsageError

        sample = ", ".join(repr(n) for n in list(table)[1:8])
        raise UsageError(f"no submodule named {', '.join(map(repr, missing))} (names look like: {sample}, ...)")
    seen: set[str] = set()
    out = []
    for n in names:
        if n not in seen:
            seen.add(n)
            out.append((n, table[n]))
    return out


def _grad_tensor(args: Any, kwargs: Any) -> Optional[torch.Tensor]:
    """The first non-leaf input tensor that takes part in autograd (hooks on leaves would pile up)."""
    for a in args:
        if isinstance(a, _Tensor) and a.grad_fn is not None:
            return a
    if kwargs:
        for a in kwargs.values():
            if isinstance(a, _Tensor) and a.grad_fn is not None:
                return a
    return None


def _output_tensor(out: Any) -> Optional[torch.Tensor]:
    if isinstance(out, _Tensor):
        return out if out.grad_fn is not None else None
    if isinstance(out, dict):
        out = out.values()
    elif not isinstance(out, (tuple, list)):
        return None
    for a in out:
        if isinstance(a, _Tensor) and a.grad_fn is not None:
            return a
    return None


def _median(values: Any) -> Optional[float]:
    return statistics.median(values) if values else None


class _Stats:
    """Per-module record: pending events, kept per-call times and running totals."""

    __slots__ = (
        "name", "type", "calls", "first_fwd", "fwd", "fwd_total", "bwd_calls", "first_bwd", "bwd", "bwd_total",
        "stack", "fwd_pending", "bwd_pending", "fwd_pool", "bwd_pool", "param_slots", "param_hooked",
    )

    def __init__(self, name: str, module: nn.Module):
        self.name = name
        self.type = type(module).__name__
        self.calls = 0  # forward calls seen (events still pending included)
        self.first_fwd: Optional[float] = None
        self.fwd: deque[float] = deque(maxlen=MAX_CALLS)  # calls after the first, most recent kept
        self.fwd_total = 0.0
        self.bwd_calls = 0
        self.first_bwd: Optional[float] = None
        self.bwd: deque[float] = deque(maxlen=MAX_CALLS)
        self.bwd_total = 0.0
        self.stack: list[Any] = []  # open forward calls: (start, backward slot)
        self.fwd_pending: list[Any] = []  # CUDA: (start event, end event), oldest first
        self.bwd_pending: list[Any] = []
        self.fwd_pool: list[Any] = []  # CUDA: events free for reuse
        self.bwd_pool: list[Any] = []
        self.param_slots: list[list[Any]] = []  # backward calls that end at a parameter's gradient
        self.param_hooked = False

    def add_fwd(self, ms: float) -> None:
        if self.first_fwd is None:
            self.first_fwd = ms
        else:
            self.fwd.append(ms)
        self.fwd_total += ms

    def add_bwd(self, ms: float) -> None:
        self.bwd_calls += 1
        if self.first_bwd is None:
            self.first_bwd = ms
        else:
            self.bwd.append(ms)
        self.bwd_total += ms


def _harvest(pending: list[Any], pool: list[Any], add: Callable[[float], None], wait: bool) -> None:
    """Turn completed (start, end) event pairs into times, oldest first, and recycle the events."""
    n = 0
    for start, end in pending:
        if not wait and not end.query():
            break  # the GPU is still behind: leave the rest for later
        add(start.elapsed_time(end))
        pool.append(start)
        pool.append(end)
        n += 1
    if n:
        del pending[:n]


class ModuleTimer:
    """Forward and backward time of a few modules, per call, from hooks.

    Args:
        model: the model (any ``nn.Module``).
        depth: time the modules this many levels below the root (see
            :func:`select_modules`); 1 or 2 keeps the overhead small.
        backward: also time each module's backward.
        modules: time exactly these submodules instead (dotted names from
            ``model.named_modules()``, e.g. ``["blocks.0.attn", "lm_head"]``).

    Use as a context manager (``with perfkit.ModuleTimer(model) as mt: ...``)
    or with :meth:`attach` / :meth:`detach`; read :meth:`summary` afterwards.
    Measurements accumulate over several attach/detach periods. Times are in
    milliseconds. If a profiling session is running when the timer attaches,
    the session includes the timer's summary in its run.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        depth: int = 1,
        backward: bool = True,
        modules: Optional[list[str]] = None,
    ):
        self.model = model
        self.depth: Optional[int] = depth if modules is None else None
        self.backward = backward
        if modules is not None:
            if isinstance(modules, str):
                modules = [modules]
            self.targets = _named_targets(model, list(modules))
        else:
            self.targets = select_modules(model, depth)
        self._stats = [_Stats(name, module) for name, module in self.targets]
        self._handles: list[Any] = []
        self._cuda = False
        self._ever_cuda = False
        #: "Type: message" of the error that switched the timer off (its times are then partial).
        self.error: Optional[str] = None
        #: Called once with the exception when a hook fails (a profiling session sets it); else a RuntimeWarning.
        self.on_error: Optional[Callable[[BaseException], None]] = None
        self._dead = [False]  # set on the first error: every hook returns at once from then on

    # ------------------------------------------------------------------ attach / detach

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self) -> "ModuleTimer":
        """Put the hooks on the timed modules (does nothing if already attached)."""
        if self._handles:
            return self
        self._cuda = _uses_cuda(self.model)
        self._ever_cuda = self._ever_cuda or self._cuda
        if self._cuda:
            _warn_device_mismatch(self.model)
        try:
            for (_, module), st in zip(self.targets, self._stats):
                pre, post = self._make_hooks(module, st)
                self._handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
                self._handles.append(module.register_forward_hook(post))
        except BaseException:
            self.detach()
            raise
        try:
            from ._current import current_session

            s = current_session()
            if s is not None:
                s.module_timer = self
                failed = getattr(s, "instrument_failed", None)
                if self.on_error is None and failed is not None:
                    self.on_error = lambda exc: failed("module timers", exc)
        except Exception:
            pass
        return self

    def detach(self) -> None:
        """Remove every hook this timer added. Safe to call more than once."""
        handles, self._handles = self._handles, []
        for h in handles:
            try:
                h.remove()
            except Exception:
                pass
        for st in self._stats:
            st.stack.clear()
            st.param_slots.clear()
            st.param_hooked = False

    def __enter__(self) -> "ModuleTimer":
        return self.attach()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.detach()

    # ------------------------------------------------------------------ hooks

    def _fail(self, exc: BaseException) -> None:
        """A hook raised: stop timing (the hooks return at once from now on), say so once."""
        if self._dead[0]:
            return
        self._dead[0] = True
        report_failure(self, exc, lambda: warnings.warn(
            f"perfkit.ModuleTimer: switched off after an error in its hooks ({self.error}); its times are partial",
            RuntimeWarning, stacklevel=4))

    def _make_hooks(self, module: nn.Module, st: _Stats) -> tuple[Callable[..., None], Callable[..., None]]:
        timed_backward = self.backward
        stack = st.stack
        param_slots = st.param_slots
        dead = self._dead
        fail = self._fail

        if self._cuda:
            Event = torch.cuda.Event
            fwd_pool, bwd_pool = st.fwd_pool, st.bwd_pool
            fwd_pending, bwd_pending = st.fwd_pending, st.bwd_pending

            def stamp_fwd() -> Any:
                ev = fwd_pool.pop() if fwd_pool else Event(enable_timing=True)
                ev.record()
                return ev

            def stamp_bwd() -> Any:
                ev = bwd_pool.pop() if bwd_pool else Event(enable_timing=True)
                ev.record()
                return ev

            def end_fwd(start: Any) -> None:
                fwd_pending.append((start, stamp_fwd()))
                if len(fwd_pending) >= _HARVEST_AT:
                    _harvest(fwd_pending, fwd_pool, st.add_fwd, wait=False)

            def end_bwd(start: Any) -> None:
                bwd_pending.append((start, stamp_bwd()))
                if len(bwd_pending) >= _HARVEST_AT:
                    _harvest(bwd_pending, bwd_pool, st.add_bwd, wait=False)

        else:
            stamp_fwd = stamp_bwd = _perf_counter

            def end_fwd(start: Any) -> None:
                st.add_fwd((_perf_counter() - start) * 1000.0)

            def end_bwd(start: Any) -> None:
                st.add_bwd((_perf_counter() - start) * 1000.0)

        def on_param_grad(_param: Any) -> None:
            # The module's first parameter has its gradient: backward calls with no input gradient end here.
            if dead[0]:
                return
            try:
                slots = param_slots[:]
                param_slots.clear()
                for slot in slots:
                    if slot[0] is not None:
                        start, slot[0] = slot[0], None
                        end_bwd(start)
            except Exception as exc:
                fail(exc)

        def hook_first_param() -> None:
            st.param_hooked = True
            for p in module.parameters():
                if p.requires_grad and hasattr(p, "register_post_accumulate_grad_hook"):
                    self._handles.append(p.register_post_accumulate_grad_hook(on_param_grad))
                    return

        def pre(mod: nn.Module, args: Any, kwargs: Any) -> None:
            if _compiling() or dead[0]:
                return
            try:
                if _graph_task_id() != -1:
                    return  # recomputation inside backward (activation checkpointing)
                slot = None
                if timed_backward and _grad_enabled():
                    slot = [None]
                    x = _grad_tensor(args, kwargs)
                    if x is not None:

                        def input_grad_ready(_grad: Any) -> None:
                            if dead[0]:
                                return
                            try:
                                if slot[0] is not None:
                                    start, slot[0] = slot[0], None
                                    end_bwd(start)
                            except Exception as exc:
                                fail(exc)

                        x.register_hook(input_grad_ready)
                    else:
                        if not st.param_hooked:
                            hook_first_param()
                        param_slots.append(slot)
                        if len(param_slots) > _MAX_PARAM_SLOTS:
                            del param_slots[: len(param_slots) - _MAX_PARAM_SLOTS]
                if len(stack) > 32:  # calls that raised never closed: forget them
                    del stack[:-8]
                stack.append((stamp_fwd(), slot))
            except Exception as exc:
                fail(exc)

        def post(mod: nn.Module, args: Any, output: Any) -> None:
            if _compiling() or dead[0]:
                return
            try:
                if _graph_task_id() != -1 or not stack:
                    return
                start, slot = stack.pop()
                end_fwd(start)
                st.calls += 1
                if slot is not None:
                    y = _output_tensor(output)
                    if y is not None:

                        def output_grad_ready(_grad: Any) -> None:
                            if dead[0]:
                                return
                            try:
                                slot[0] = stamp_bwd()
                            except Exception as exc:
                                fail(exc)

                        y.register_hook(output_grad_ready)
            except Exception as exc:
                fail(exc)

        return pre, post

    # ------------------------------------------------------------------ results

    def _collect(self) -> None:
        if not self._ever_cuda:
            return
        if any(st.fwd_pending or st.bwd_pending for st in self._stats):
            torch.cuda.synchronize()
        for st in self._stats:
            _harvest(st.fwd_pending, st.fwd_pool, st.add_fwd, wait=True)
            _harvest(st.bwd_pending, st.bwd_pool, st.add_bwd, wait=True)

    def summary(self) -> list[dict[str, Any]]:
        """One row per timed module, largest steady time first.

        Row keys (times in milliseconds):
            name, type: the module's dotted name and class.
            calls: forward calls timed.
            first_call_ms: the first forward call, kept out of the median.
            forward_ms_median: median forward call after the first (the last
                ``MAX_CALLS``); None with a single call.
            forward_ms_total: all forward calls, the first included.
            backward_calls, backward_first_call_ms, backward_ms_median (after
                the first backward; the first one when there is only one),
                backward_ms_total: the same for backward.
            share: the module's forward + backward time over the sum of all
                timed modules' (0..1), first calls left out (start-up work
                would otherwise dominate short runs); with only first calls,
                over the totals.
            first_call_outlier: the first forward (or backward) call took over
                ``OUTLIER_FACTOR`` times the steady median: start-up work
                (autotuning, lazy initialisation, compilation), not steady cost.

        Rows are sorted by the time ``share`` is computed from.
        """
        self._collect()
        steady_totals = [
            (st.fwd_total - (st.first_fwd or 0.0)) + (st.bwd_total - (st.first_bwd or 0.0)) for st in self._stats
        ]
        totals = [st.fwd_total + st.bwd_total for st in self._stats]
        weights = steady_totals if sum(steady_totals) > 0 else totals
        grand = sum(weights)
        rows = []
        for st, weight in zip(self._stats, weights):
            steady = _median(st.fwd)
            bwd_steady = _median(st.bwd)
            rows.append(
                {
                    "name": st.name,
                    "type": st.type,
                    "calls": st.calls,
                    "first_call_ms": _round(st.first_fwd),
                    "forward_ms_median": _round(steady),
                    "forward_ms_total": _round(st.fwd_total),
                    "backward_calls": st.bwd_calls,
                    "backward_first_call_ms": _round(st.first_bwd),
                    "backward_ms_median": _round(bwd_steady if bwd_steady is not None else st.first_bwd),
                    "backward_ms_total": _round(st.bwd_total),
                    "share": round(weight / grand, 4) if grand > 0 else None,
                    "first_call_outlier": _outlier(st.first_fwd, steady) or _outlier(st.first_bwd, bwd_steady),
                }
            )
        order = sorted(range(len(rows)), key=lambda i: -weights[i])
        return [rows[i] for i in order]

    def to_dict(self) -> dict[str, Any]:
        """The summary with how it was measured (for JSON)."""
        return {
            "error": self.error,
            "timing": "cuda_events" if self._ever_cuda else "wall_clock",
            "unit": "ms",
            "depth": self.depth,
            "backward": self.backward,
            "max_calls_kept": MAX_CALLS,
            "outlier_factor": OUTLIER_FACTOR,
            "modules": self.summary(),
        }

    def reset(self) -> None:
        """Forget everything measured so far (the hooks stay)."""
        self._collect()
        for st in self._stats:
            st.calls, st.first_fwd, st.fwd_total = 0, None, 0.0
            st.bwd_calls, st.first_bwd, st.bwd_total = 0, None, 0.0
            st.fwd.clear()
            st.bwd.clear()

    def __repr__(self) -> str:
        state = "attached" if self._handles else "detached"
        return f"<ModuleTimer {len(self.targets)} modules, {state}>"


def _outlier(first: Optional[float], steady: Optional[float]) -> bool:
    return bool(first is not None and steady and first > OUTLIER_FACTOR * steady)


def _round(x: Optional[float]) -> Optional[float]:
    return None if x is None else round(x, 4)


def _uses_cuda(model: nn.Module) -> bool:
    if not torch.cuda.is_available():
        return False
    for p in model.parameters():
        return p.is_cuda
    for t in model.buffers():
        return t.is_cuda
    return False


def _warn_device_mismatch(model: nn.Module) -> None:
    try:
        dev = next(model.parameters()).device
        if dev.index is not None and dev.index != torch.cuda.current_device():
            warnings.warn(
                f"perfkit.ModuleTimer: the model is on {dev} but the current CUDA device is "
                f"{torch.cuda.current_device()}; forward events are recorded on the current device's stream. "
                f"Call torch.cuda.set_device({dev.index}) first.",
                stacklevel=3,
            )
    except StopIteration:
        pass
