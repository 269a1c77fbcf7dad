"""The profiling session: drives torch.profiler, times steps and phases, writes the run.

A :class:`ProfileSession` is what ``perfkit profile`` and ``perfkit.profile()``
run. It finds training steps with no help from the script (every
``torch.optim.Optimizer.step`` ends one, through torch's global optimizer
hooks) unless the script marks them with ``@perfkit.step``. In ``trace`` mode
it records a Kineto trace over a few steady steps chosen by a schedule, then
stops the profiler so the rest of the run keeps its speed. In ``light`` mode
there is no kernel trace: only step and phase timers (CUDA events, read
lazily, never a host sync in the step) and memory counters.

When the session ends (normally, on an exception, ``sys.exit`` or a signal)
it writes the run directory: the trace, ``analysis.json`` (the analyzer's
document plus a ``runtime`` section with what only the live process knows)
and ``report.md``.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from . import runtime as rt

_ACTIVE: Optional["ProfileSession"] = None


def current() -> Optional["ProfileSession"]:
    """The session in progress in this process, if any."""
    return _ACTIVE


@dataclass
class Schedule:
    """Which steps the kernel trace covers (torch.profiler.schedule, one cycle).

    Defaults skip start-up (compilation, allocator growth, autotuning) and
    record a few steady steps.
    """

    skip_first: int = 5  #: steps run before anything is recorded
    wait: int = 0  #: further idle steps
    warmup: int = 2  #: steps with the profiler on, results discarded (its own warm-up)
    active: int = 3  #: steps recorded into the trace

    def validate(self) -> None:
        from ..errors import UsageError

        for name in ("skip_first", "wait", "warmup", "active"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise UsageError(f"schedule {name} must be a whole number >= 0 (got {value!r})")
        if self.active < 1:
            raise UsageError(f"schedule active must be >= 1 (got {self.active})")

    @property
    def last_step(self) -> int:
        """Number of step() calls after which the trace is complete."""
        return self.skip_first + self.wait + self.warmup + self.active


@dataclass
class SessionOptions:
    out: Optional[str] = None  #: run directory; default traces/<name>-<timestamp>
    name: str = "run"  #: used in the default run directory name
    mode: str = "trace"  #: "trace" (kernel trace + timers) or "light" (timers only)
    schedule: Schedule = field(default_factory=Schedule)
    with_stack: bool = False  #: torch's Python tracer (every Python call a trace event; costly)
    stack_samples: bool = True  #: sample the loop thread's Python stack in the recorded window (collect/stacks.py)
    record_shapes: bool = False
    profile_memory: bool = False
    tokens_per_step: Optional[float] = None
    samples_per_step: Optional[float] = None
    report: bool = True  #: print the terminal report at the end
    quiet: bool = False
    modules: bool = False  #: time the model's top-level modules (found automatically)
    flops: bool = False  #: count FLOPs of one early step (torch.utils.flop_counter) for MFU
    watchdog_s: Optional[float] = None  #: stall watchdog: dump stacks when no step ends for this long
    job_wait_s: float = 120.0  #: several ranks: how long rank 0 waits for the others' analyses (collect/job.py)


class ProfileSession:
    """One profiled run (see module docstring). Use :func:`perfkit.profile` to create one."""

    def __init__(self, options: SessionOptions, model: Any = None):
        options.schedule.validate()
        if options.mode not in ("trace", "light"):
            from ..errors import UsageError

            raise UsageError(f"mode must be 'trace' or 'light' (not {options.mode!r})")
        self.options = options
        from .job import default_run_dir, world_info

        self.world = world_info()  #: rank, local rank, world size (collect/job.py)
        self.run_dir = options.out or default_run_dir(options.name, self.world)
        self.rank = self.world.rank
        self.steps = 0
        self.explicit_steps = False  #: set when the script marks steps itself
        self.timer = rt.StepTimer()
        self.phases = rt.PhaseTimer()
        self.memory = rt.MemoryCounters()
        self.optimizers: list[Any] = []
        self.exit_status: Optional[int] = None
        self.error: Optional[str] = None
        self.trace_path: Optional[str] = None
        self._prof: Any = None
        self._prof_done = False
        self.sampler: Any = None  #: perfkit.collect.stacks.StackSampler in trace mode (stack_samples)
        self.stacks_path: Optional[str] = None
        self._hook_handle: Any = None
        self._first_optimizer: Optional[int] = None
        self._finished = False
        self._started_at = 0.0
        self.flops_per_step: Optional[float] = None
        self.module_timer: Any = None  #: a ModuleTimer registers itself here
        self.activations: Any = None  #: ActivationTracker on the model, when module hooks are on
        self.model = model
        self._root_finder: Optional[_RootFinder] = None
        self._flop_mode: Any = None
        self.watchdog: Any = None  #: perfkit.collect.watchdog.Watchdog when --watchdog is on
        self.matmul_dtype: Optional[str] = None  #: "bf16"/"fp16" when seen in the FLOP-counting step
        self.tokens_per_step = options.tokens_per_step
        self.samples_per_step = options.samples_per_step

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "ProfileSession":
        global _ACTIVE
        from torch.optim.optimizer import register_optimizer_step_post_hook

        if _ACTIVE is not None and _ACTIVE is not self:
            from ..errors import UsageError

            raise UsageError("a perfkit profiling session is already running in this process")
        _ACTIVE = self
        self._started_at = time.time()
        os.makedirs(self.run_dir, exist_ok=True)
        self._hook_handle = register_optimizer_step_post_hook(self._on_optimizer_step)
        self.timer.start()
        self.memory.start()
        if self.model is not None:
            self._watch_model(self.model)
        elif self.options.modules:
            self._root_finder = _RootFinder()
        if self.options.watchdog_s:
            from .watchdog import Watchdog

            self.watchdog = Watchdog(self.run_dir, self.options.watchdog_s, rank=self.rank).start()
        if self.options.mode == "trace":
            try:
                self._start_profiler()
            except Exception as exc:  # e.g. another profiler already running: go on without a trace
                self._prof, self._prof_done = None, True
                self.error = f"kernel trace not started: {exc}"
                print(f"perfkit: {self.error}; timers and memory counters only", file=sys.stderr)
        return self

    def _start_profiler(self) -> None:
        import torch
        from torch.profiler import ProfilerActivity, profile, schedule

        activities = [ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(ProfilerActivity.CUDA)
        s = self.options.schedule
        import warnings

        with warnings.catch_warnings():
            # One cycle only (repeat=1), so torch's notice that events are cleared
            # between cycles does not apply; keep the user's output clean.
            warnings.filterwarnings("ignore", message=".*clears events at the end of each cycle.*")
            self._prof = self._make_profiler(profile, schedule, activities, s)
        self._prof.start()
        # With with_stack the trace has every Python frame already: the samples would only cost time.
        if self.options.stack_samples and not self.options.with_stack:
            from .stacks import StackSampler

            self.sampler = StackSampler()
            self._sampler_follow()

    def _make_profiler(self, profile: Any, schedule: Any, activities: Any, s: "Schedule") -> Any:
        return profile(
            activities=activities,
            schedule=schedule(skip_first=s.skip_first, wait=s.wait, warmup=s.warmup, active=s.active, repeat=1),
            on_trace_ready=self._on_trace_ready,
            with_stack=self.options.with_stack,
            record_shapes=self.options.record_shapes,
            profile_memory=self.options.profile_memory,
        )

    def _on_trace_ready(self, prof: Any) -> None:
        self._refresh_world()
        path = os.path.join(self.run_dir, f"rank{self.rank}.pt.trace.json.gz")
        prof.export_chrome_trace(path)
        self.trace_path = path
        if self.sampler is not None:
            self.sampler.stop()  # normally stopped already, inside the recorded window
            self.stacks_path = self.sampler.write(path)

    def _stop_profiler(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()  # its closing clock marker must fall in the recorded window
        if self._prof is not None and not self._prof_done:
            self._prof_done = True
            try:
                self._prof.stop()  # a partial active window is still exported
            except Exception as exc:  # never let profiling break the run
                self.error = f"torch.profiler stop failed: {exc}"

    # ------------------------------------------------------------------ steps

    def _on_optimizer_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self.explicit_steps:
            return
        key = id(optimizer)
        if not any(o is optimizer for o in self.optimizers):
            self.optimizers.append(optimizer)
            # Gradients and the optimizer's state exist now (after step, before zero_grad).
            try:
                self.memory.account_optimizer(optimizer)
            except Exception:
                pass
            if self._root_finder is not None and self.module_timer is None:
                self._attach_module_timer(optimizer)
        if self._first_optimizer is None:
            self._first_optimizer = key
        if key == self._first_optimizer:  # several optimizers (GANs) step once per iteration together
            self.step()

    def _count_flops(self) -> None:
        """Count the FLOPs of step 2 (step 1 compiles and warms up) with FlopCounterMode."""
        try:
            if self.steps == 1 and self._flop_mode is None:
                from torch.utils.flop_counter import FlopCounterMode

                self._watch_dtype()
                self._flop_mode = FlopCounterMode(display=False)
                self._flop_mode.__enter__()
            elif self._flop_mode is not None:
                mode, self._flop_mode = self._flop_mode, None
                mode.__exit__(None, None, None)
                self.flops_per_step = float(mode.get_total_flops())
                self.options.flops = False
        except Exception as exc:
            self._flop_mode = None
            self.options.flops = False
            self.error = f"FLOP counting failed: {exc}"

    def _watch_dtype(self) -> None:
        """Note the dtype matmuls run in (autocast, else the weights') at the next module call."""
        import torch
        from torch.nn.modules.module import register_module_forward_pre_hook

        def hook(module: Any, args: Any) -> None:
            handle.remove()
            try:
                if torch.is_autocast_enabled("cuda"):
                    dt = torch.get_autocast_dtype("cuda")
                else:
                    dt = next(module.parameters()).dtype
                self.matmul_dtype = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dt)
            except Exception:
                pass

        handle = register_module_forward_pre_hook(hook)

    def _attach_module_timer(self, optimizer: Any) -> None:
        """Time the model the optimizer trains: the outermost module that ran in the first step."""
        finder, self._root_finder = self._root_finder, None
        if finder is None:
            return
        model = finder.finish(optimizer)
        if model is not None:
            self._watch_model(model)

    def _watch_model(self, model: Any) -> None:
        """Module timers, activation memory per module and the forward peak, on ``model``."""
        from .memory import ActivationTracker
        from .modules import ModuleTimer

        self.model = model
        try:
            if self.module_timer is None:
                self.module_timer = ModuleTimer(model).attach()
            self.activations = ActivationTracker(model).attach()
            self.memory.watch_forward(model)
        except Exception as exc:  # hooks must never take the run down
            self.error = f"module hooks not attached: {exc}"

    def mark_step(self, tokens: Optional[float] = None, samples: Optional[float] = None) -> None:
        """An explicit step boundary from ``@perfkit.step`` (disables optimizer-hook steps)."""
        self.explicit_steps = True
        if tokens is not None:
            self.tokens_per_step = tokens
        if samples is not None:
            self.samples_per_step = samples
        self.step()

    def step(self) -> None:
        """End of one training step."""
        self.steps += 1
        self.timer.mark()
        self.memory.mark_step()
        if self.options.flops:
            self._count_flops()
        if self.watchdog is not None:
            wall = self.timer.wall_ms[-1] if self.timer.wall_ms else None
            tps = (self.tokens_per_step / (wall / 1000.0)) if (self.tokens_per_step and wall) else None
            peak = self.memory.step_peak_bytes[-1] if self.memory.step_peak_bytes else None
            self.watchdog.beat(step=self.steps, step_ms=wall, tokens_per_s=tps, memory_bytes=peak)
        if self._prof is not None and not self._prof_done:
            sampler = self.sampler
            if sampler is not None and sampler.running:
                sampler.add_current_thread()  # the threads that end steps run the loop
                if _recording(self._prof, last=True):  # this boundary ends the recorded window
                    sampler.stop()
            try:
                self._prof.step()
                self._sampler_follow()
            except Exception as exc:
                self.error = f"torch.profiler step failed: {exc}"
                self._stop_profiler()  # a profiler left running crashes the interpreter at exit
                return
            if self.steps >= self.options.schedule.last_step:
                self._stop_profiler()  # the window is recorded: run at full speed from here
            self.timer.restart()  # the profiler's own work (trace export) is not the next step's time

    def _sampler_follow(self) -> None:
        """Start the stack sampler once the profiler records (warm-up steps are not in the trace)."""
        sampler = self.sampler
        if sampler is not None and not sampler.running and not sampler.syncs and _recording(self._prof):
            sampler.start()

    # ------------------------------------------------------------------ end

    def finish(self, exit_status: Optional[int] = None) -> Optional[str]:
        """Stop everything and write the run directory; returns its analysis.json path."""
        global _ACTIVE
        if self._finished:
            return None
        self._finished = True
        self.exit_status = exit_status
        try:
            self._stop_profiler()
            if self._hook_handle is not None:
                self._hook_handle.remove()
            if self._root_finder is not None:
                self._root_finder.finish(None)
            if self._flop_mode is not None:
                self._flop_mode.__exit__(None, None, None)
                self._flop_mode = None
            if self.watchdog is not None:
                self.watchdog.stop()
            if self.module_timer is not None:
                self.module_timer.detach()
            if self.activations is not None:
                self.activations.detach()
            self.memory.unwatch()
            self.timer.stop()
            self.memory.stop()
        finally:
            if _ACTIVE is self:
                _ACTIVE = None
        from .output import write_run

        self._refresh_world()
        return write_run(self)

    def _refresh_world(self) -> None:
        """torch.distributed, once the script has initialised it, knows the rank best (the environment may not)."""
        from .job import world_info

        try:
            w = world_info()
        except Exception:
            return
        if w.source == "torch.distributed" or (w.multi and not self.world.multi):
            self.world = w
            self.rank = w.rank

    def runtime_section(self, doc: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        """What only the live process knows: step timings, phases, memory, throughput."""
        steps = self.timer.summary(skip=self._steady_skip())
        out: dict[str, Any] = {
            "mode": self.options.mode,
            "rank": self.rank,
            "local_rank": self.world.local_rank,
            "world_size": self.world.world_size,
            "steps_seen": self.steps,
            "step_source": "perfkit.step" if self.explicit_steps else "optimizer.step",
            "exit_status": self.exit_status,
            "error": self.error,
            "steps": steps,
            "phases": self.phases.summary(),
            "memory": self.memory.summary(),
            "throughput": _throughput(steps, self.tokens_per_step, self.samples_per_step),
            "schedule": vars(self.options.schedule),
        }
        if self.sampler is not None:
            out["stack_samples"] = {**self.sampler.summary(), "path": self.stacks_path}
        if self.flops_per_step:
            out["flops_per_step"] = self.flops_per_step
            out.update(_mfu(self.flops_per_step, steps, self.matmul_dtype or _dtype_from_kernels(doc)))
        if self.activations is not None:
            try:
                out["memory"]["activations"] = self.activations.to_dict()
            except Exception as exc:
                out["memory"]["activations_error"] = str(exc)
        if self.module_timer is not None:
            try:
                out["modules"] = self.module_timer.summary()
            except Exception as exc:
                out["modules_error"] = str(exc)
        return out

    def _steady_skip(self) -> int:
        return min(self.options.schedule.skip_first, max(self.steps - 1, 0))

    # ------------------------------------------------------------------ context manager

    def __enter__(self) -> "ProfileSession":
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        status = None
        if exc_type is not None:
            status = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 1
        self.finish(status)

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Use the session as a decorator: profile every call of ``fn``."""
        import functools

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return wrapper


class _RootFinder:
    """Finds the model with no code change: the outermost modules called during a step.

    A global forward pre-hook/hook pair (torch.nn.modules.module) tracks the
    nesting depth; modules entered at depth 0 are candidates. At the first
    optimizer step the candidate holding most of the optimizer's parameters is
    the model, and the global hooks are removed (they cost a Python call per
    module call only during that first step).
    """

    def __init__(self) -> None:
        from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

        self.depth = 0
        self.roots: dict[int, Any] = {}
        self._handles = [
            register_module_forward_pre_hook(self._pre),
            register_module_forward_hook(self._post),
        ]

    def _pre(self, module: Any, args: Any) -> None:
        if self.depth == 0:
            self.roots.setdefault(id(module), module)
        self.depth += 1

    def _post(self, module: Any, args: Any, output: Any) -> None:
        self.depth = max(self.depth - 1, 0)

    def finish(self, optimizer: Any) -> Any:
        for h in self._handles:
            h.remove()
        self._handles = []
        if optimizer is None or not self.roots:
            return None
        owned = {id(p) for g in optimizer.param_groups for p in g["params"]}
        best, best_n = None, 0
        for module in self.roots.values():
            n = sum(1 for p in module.parameters() if id(p) in owned)
            if n > best_n:
                best, best_n = module, n
        return best


def _recording(prof: Any, last: bool = False) -> bool:
    """Whether torch.profiler records now (``last``: in the step whose end saves the trace)."""
    try:
        from torch.profiler import ProfilerAction

        action = getattr(prof, "current_action", None)
        if last:
            return action == ProfilerAction.RECORD_AND_SAVE
        return action in (ProfilerAction.RECORD, ProfilerAction.RECORD_AND_SAVE)
    except Exception:
        return False


def _dtype_from_kernels(doc: Optional[dict[str, Any]]) -> Optional[str]:
    """The matmul dtype seen in the trace's top kernels (bf16/fp16), if any."""
    import re

    names = " ".join(str(k.get("name", "")) for k in (doc or {}).get("top_kernels", []) if k.get("category") == "matmul")
    if re.search(r"bf16|bfloat16", names, re.I):
        return "bf16"
    if re.search(r"f16|half|h884|h1688|hmma", names, re.I):
        return "fp16"
    return None


def _mfu(flops: float, steps: dict[str, Any], dtype_hint: Optional[str]) -> dict[str, Any]:
    """Model FLOPs utilisation against the device's dense peak, when the device is known."""
    import torch

    from .flops import mfu, peak_tflops

    if not torch.cuda.is_available():
        return {}
    name = torch.cuda.get_device_name()
    dtype = dtype_hint or _matmul_dtype()
    step_ms = steps.get("gpu_ms_median") or steps.get("wall_ms_median")
    out: dict[str, Any] = {"mfu_dtype": dtype, "peak_tflops": peak_tflops(name, dtype)}
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if step_ms:
        value = mfu(flops * world, step_ms / 1000.0, name, dtype, n_devices=world)
        if value is not None:
            out["mfu"] = value
    return out


def _matmul_dtype() -> str:
    """Without a bf16/fp16 kernel in the trace: fp32 matmuls, tf32 if enabled."""
    import torch

    return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "fp32"


def _throughput(steps: dict[str, Any], tokens: Optional[float], samples: Optional[float]) -> dict[str, Any]:
    step_s = (steps.get("wall_ms_median") or 0) / 1000.0
    out: dict[str, Any] = {"tokens_per_step": tokens, "samples_per_step": samples}
    if step_s > 0:
        if tokens:
            out["tokens_per_s"] = tokens / step_s
        if samples:
            out["samples_per_s"] = samples / step_s
    return out


def profile(
    out: Optional[str] = None,
    *,
    mode: str = "trace",
    skip_first: int = 5,
    wait: int = 0,
    warmup: int = 2,
    active: int = 3,
    with_stack: bool = False,
    stack_samples: bool = True,
    record_shapes: bool = False,
    profile_memory: bool = False,
    tokens_per_step: Optional[float] = None,
    samples_per_step: Optional[float] = None,
    report: bool = True,
    name: Optional[str] = None,
    model: Any = None,
    flops: bool = False,
) -> ProfileSession:
    """Profile the code in a ``with`` block (or a decorated function).

    Args:
        out: run directory. Defaults to ``traces/<name>-<timestamp>``.
        mode: ``"trace"`` records a kernel trace of ``active`` steady steps;
            ``"light"`` only times steps and phases (for whole runs).
        skip_first, wait, warmup, active: the trace schedule, in steps.
        tokens_per_step, samples_per_step: for throughput, unless ``@perfkit.step`` gives them.
        report: print the terminal report when done.
        model: the model being trained; enables module timers, activation memory
            per top-level module and the forward/backward memory peaks.
        flops: count the FLOPs of one early step (for MFU); that step runs slower.
        with_stack: torch's Python tracer (every Python call recorded; costly, see docs/collect.md).
        stack_samples: sample the training loop's Python stack during the recorded steps
            (cheap; gives the executing line of user code for ops, kernels and findings).

    Returns:
        The session; ``session.run_dir`` is where the outputs go.
    """
    opts = SessionOptions(
        out=out,
        name=name or (os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "run"),
        mode=mode,
        schedule=Schedule(skip_first=skip_first, wait=wait, warmup=warmup, active=active),
        with_stack=with_stack,
        stack_samples=stack_samples,
        record_shapes=record_shapes,
        profile_memory=profile_memory,
        tokens_per_step=tokens_per_step,
        samples_per_step=samples_per_step,
        report=report,
        flops=flops,
    )
    return ProfileSession(opts, model=model)
