"""The profiling session: drives torch.profiler, times steps and phases, hands over a recording.

A :class:`Session` is what ``perfkit profile`` and ``perfkit.profile()`` run (both through
:class:`perfkit._profile.Session`, which finishes the run: perfkit/run/finish.py). It finds training steps with no help from the script (every
``torch.optim.Optimizer.step`` ends one, through torch's global optimizer
hooks; in a script with no torch.optim optimizer, every autograd backward
ends one: see :meth:`Session._after_backward`) unless the script marks
them with ``@perfkit.step`` or ``--step-fn``. In ``trace`` mode
it records a Kineto trace over a few steady steps chosen by a schedule, then
stops the profiler so the rest of the run keeps its speed. In ``light`` mode
there is no kernel trace: only step and phase timers (CUDA events, read
lazily, never a host sync in the step) and memory counters.

When the session ends (normally, on an exception, ``sys.exit`` or a signal)
it has written the trace and hands a :class:`perfkit.run.recording.Recording` (the trace and what
only the live process knows) to :meth:`Session.finish_recording`; the caller's
:func:`perfkit.run.finish.finish_run` writes ``analysis.json`` and ``report.md`` from it.
This module never analyses or renders.

Profiling never costs the script its run or its results:

* the run directory is resolved to an absolute path once, at construction (a
  script that calls ``os.chdir()`` keeps it), and created at :meth:`start`; a
  default name is created exclusively (``-2``, ``-3`` ... when taken). When it
  cannot be created the script runs anyway, with one warning that nothing will
  be recorded;
* an error inside one of perfkit's instruments (the kernel trace, FLOP
  counting, module timers, activation memory, memory accounting, step and
  phase timers, the stack sampler, the watchdog) switches that instrument off
  with one warning on stderr (:meth:`Session.instrument_failed`); the
  script goes on with its results unchanged, and the run's
  ``runtime.instrument_errors`` says what was switched off;
* every file is written atomically (temporary name, fsync, rename); a file that
  cannot be written is named in one warning, and never left half-written.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
import warnings
from typing import Any, Callable, Iterator, Optional

from . import _current
from . import runtime as rt
from ..run import layout
from ..run.recording import MfuInputs, Recording
from ._compile import compiling as _compiling
from .options import Mode as Mode, Schedule as Schedule, SessionOptions as SessionOptions, check_options

_ACTIVE: Optional["Session"] = None


def require_torch(what: str) -> None:
    """Raise :class:`~perfkit.errors.MissingDependencyError` (one line, with the install command) where
    torch cannot be imported: profiling runs the code under ``torch.profiler``. Without it the first
    torch import failed deep in the session, reported as an internal error of perfkit."""
    if sys.modules.get("torch") is not None:
        return
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        from ..errors import MissingDependencyError

        raise MissingDependencyError(
            f"{what} needs PyTorch, which is not installed for {sys.executable}: pip install torch "
            "(perfkit analyze reads traces without it)")


def current() -> Optional["Session"]:
    """The session in progress in this process, if any."""
    return _ACTIVE


_current.register(current)  # for the modules this one imports (perfkit/collect/_current.py)


class Session:
    """One profiled run (see module docstring). Use :func:`perfkit.profile` to create one."""

    def __init__(self, options: SessionOptions, model: Any = None, clock: Optional[Callable[[], float]] = None):
        self.options = check_options(options)  #: checked once (perfkit/collect/options.py)
        from .job import default_run_dir, world_info

        self.world = world_info()  #: rank, local rank, world size (collect/job.py)
        # Absolute now: a script that calls os.chdir() (Hydra does) must not move the run directory.
        self.run_dir = os.path.abspath(options.out or default_run_dir(options.name, self.world))
        #: False when the run directory could not be created: the script runs, nothing is recorded.
        self.recording = True
        #: instrument name -> "Type: message" of the error that switched it off (see instrument_failed).
        self.instrument_errors: dict[str, str] = {}
        self._switch_offs: list[str] = []  #: instruments whose hooks are still to be removed
        self.lost: list[str] = []  #: "the trace could not be written: ..." and the like
        self.trace_error: Optional[str] = None  #: why the trace that was recorded is not in the run directory
        self.rank = self.world.rank
        self.steps = 0
        self.explicit_steps = False  #: set when the script marks steps itself
        #: what ends steps: "optimizer.step", "autograd backward" (no torch.optim optimizer), or None
        #: until the first step (explicit steps: "perfkit.step", see runtime_section)
        self.step_source: Optional[str] = None
        self.clock = clock or time.perf_counter  #: the step timer's clock (tests inject one)
        self.backward_calls = 0
        self._pending_backward: list[float] = []  #: ends of backward calls before the step source is known
        self._optimizer_exists: Optional[bool] = None  #: a torch.optim.Optimizer was found in the process
        self._backward_patch: Any = None  #: (module, original function) while torch.autograd.backward is wrapped
        self._trained_leaves: Optional[list[Any]] = None
        self.discarded = False  #: the script ended in its argument parsing: nothing is written
        self._created_dirs: list[str] = []  #: folders perfkit created for the run (removed when discarded)
        self.timer = rt.StepTimer(self.clock)
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
        self._dtype_hook: Any = None  #: the global forward pre-hook of _watch_dtype, until the next module call
        self._started = False  #: start() ran (a session runs once: see start)
        self._rerun_warned = False
        self._enters: list[bool] = []  #: per ``with`` (or decorated call) entered: whether it started the session
        self._first_optimizer: Optional[int] = None
        self._finished = False
        self._started_at = 0.0
        self.recorded: Optional[Recording] = None  #: the recording, once finished (see finish_recording)
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

    def start(self) -> "Session":
        """Start profiling. A session runs once: starting it again while it runs does nothing, and
        after :meth:`finish` the code runs unprofiled, with one warning line (docs/collect.md, "The library")."""
        global _ACTIVE
        require_torch("perfkit.profile")
        from torch.optim.optimizer import register_optimizer_step_post_hook

        if self._finished:
            if not self._rerun_warned:
                self._rerun_warned = True
                where = f" (its run directory: {self.run_dir})" if self.recording else ""
                _warn(f"this perfkit.profile session ran already{where}; later runs of it are not profiled")
            return self
        if self._started:
            return self  # already running (a recursive call of a decorated function): part of this run
        if _ACTIVE is not None and _ACTIVE is not self:
            from ..errors import UsageError

            raise UsageError("a perfkit profiling session is already running in this process")
        self._started = True
        self._started_at = time.time()
        if not self._claim_run_dir():
            return self  # nothing can be recorded: the script runs unprofiled
        _ACTIVE = self
        self._hook_handle = register_optimizer_step_post_hook(self._on_optimizer_step)
        self._guard("backward steps", self._wrap_backward)
        self._guard("step timer", self.timer.start)
        self._guard("memory accounting", self.memory.start)
        if self.model is not None:
            self._watch_model(self.model)
        elif self.options.modules:
            self._root_finder = self._guard("module timers", _RootFinder, self)
        if self.options.watchdog_s:
            from .watchdog import Watchdog

            watchdog_s = float(self.options.watchdog_s)
            self.watchdog = self._guard("watchdog", lambda: Watchdog(
                self.run_dir, watchdog_s, rank=self.rank,
                on_error=lambda exc: self.instrument_failed("watchdog", exc)).start())
        if self.options.mode == "trace":
            try:
                with self._quiet_stderr():
                    self._start_profiler()
            except Exception as exc:  # e.g. another profiler already running: go on without a trace
                self._prof, self._prof_done = None, True
                self.error = f"kernel trace not started: {exc}"
                print(f"perfkit: {self.error}; timers and memory counters only", file=sys.stderr)
        return self

    def _claim_run_dir(self) -> bool:
        """Create the run directory (a default name exclusively); on failure warn once and record nothing."""
        from .job import claim_run_dir

        exclusive = self.options.out is None and not self.world.multi
        missing, folder = [], self.run_dir
        while folder and not os.path.isdir(folder) and os.path.dirname(folder) != folder:
            missing.append(folder)
            folder = os.path.dirname(folder)
        try:
            self.run_dir = claim_run_dir(self.run_dir, exclusive)
            # What perfkit created, innermost first: a run discarded at its start leaves none of it.
            self._created_dirs = [self.run_dir, *missing[1:]] if exclusive else missing
            return True
        except OSError as exc:
            self.recording = False
            _warn(f"cannot create the run directory {self.run_dir} ({_why(exc)}); "
                  "the script runs, but nothing will be recorded")
            return False

    # ------------------------------------------------------------------ instrument faults

    def instrument_failed(self, name: str, exc: BaseException) -> None:
        """``name`` (an instrument) raised ``exc``: switch it off, say so once, let the run go on.

        Safe to call from inside a hook: the instrument's own hooks stop working
        at once (each instrument checks its failure flag), and they are removed
        at the next step boundary or at the end of the run.
        """
        if name in self.instrument_errors:
            return
        why = _why(exc)
        self.instrument_errors[name] = why
        if self.error is None:
            self.error = f"{name} failed: {why}"
        self._switch_offs.append(name)
        _warn(f"{name} failed and is switched off for the rest of the run ({why}); the script goes on")

    def guard(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, unless instrument ``name`` failed already; an Exception switches it off (returns None)."""
        if name in self.instrument_errors:
            return None
        try:
            return fn(*args)
        except Exception as exc:
            self.instrument_failed(name, exc)
            return None

    _guard = guard

    def _apply_switch_offs(self) -> None:
        """Remove the hooks of instruments that failed (never from inside one of their hooks)."""
        while self._switch_offs:
            name = self._switch_offs.pop()
            with contextlib.suppress(Exception):
                if name == "FLOP counting":
                    self.options.flops = False
                    self.flops_per_step = None
                    mode, self._flop_mode = self._flop_mode, None
                    if mode is not None:
                        mode.__exit__(None, None, None)
                elif name == "module timers":
                    if self._root_finder is not None:
                        finder, self._root_finder = self._root_finder, None
                        finder.finish(None)
                    if self.module_timer is not None:
                        self.module_timer.detach()
                elif name == "activation memory":
                    if self.activations is not None:
                        self.activations.detach()
                elif name == "memory accounting":
                    self.memory.unwatch()
                elif name == "stack sampler":
                    if self.sampler is not None:
                        self.sampler.stop()
                elif name == "watchdog":
                    if self.watchdog is not None:
                        self.watchdog.stop()
                elif name == "kernel trace":
                    self._stop_profiler()

    @contextlib.contextmanager
    def _quiet_stderr(self) -> Iterator[None]:
        """With ``quiet``: keep torch's ``USDT ... profiler_start/stop`` lines (written by C++ to fd 2) off stderr."""
        if not self.options.quiet:
            yield
            return
        with filter_fd2(_PROFILER_NOISE):
            yield

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
        if self.discarded:
            return
        self._refresh_world()
        path = os.path.join(self.run_dir, layout.trace_name(self.rank))
        try:
            export_trace(prof, path)
            self.trace_path = path
        except Exception as exc:  # a full disk: say exactly what was lost, never leave half a file
            self.trace_error = f"the trace could not be written: {_why(exc)}"
            self.say_lost(self.trace_error)
        if self.sampler is not None:
            self.sampler.stop()  # normally stopped already, inside the recorded window
            if self.trace_path is not None:
                self.stacks_path = self.sampler.write(path)
                if self.stacks_path is None and self.sampler.write_error:
                    self.say_lost(f"the stack samples could not be written: {self.sampler.write_error}")

    def say_lost(self, message: str) -> None:
        """A file of the run could not be written: one warning (never quiet), kept for the run's document."""
        self.lost.append(message)
        _warn(message)

    def _stop_profiler(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()  # its closing clock marker must fall in the recorded window
        if self._prof is not None and not self._prof_done:
            self._prof_done = True
            try:
                with self._quiet_stderr():
                    self._prof.stop()  # a partial active window is still exported
            except Exception as exc:  # never let profiling break the run
                self.instrument_failed("kernel trace", exc)

    # ------------------------------------------------------------------ steps

    def _on_optimizer_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self.explicit_steps:
            return
        if self.step_source == "autograd backward":  # decided already: backward calls end the steps
            if not any(o is optimizer for o in self.optimizers):
                self.optimizers.append(optimizer)
                self._guard("memory accounting", self.memory.account_optimizer, optimizer)
            return
        self.step_source = "optimizer.step"
        self._pending_backward.clear()
        key = id(optimizer)
        if not any(o is optimizer for o in self.optimizers):
            self.optimizers.append(optimizer)
            # Gradients and the optimizer's state exist now (after step, before zero_grad).
            self._guard("memory accounting", self.memory.account_optimizer, optimizer)
            if self._root_finder is not None and self.module_timer is None:
                self._guard("module timers", self._attach_module_timer, optimizer)
        if self._first_optimizer is None:
            self._first_optimizer = key
        if key == self._first_optimizer:  # several optimizers (GANs) step once per iteration together
            self.step()

    # --------------------------------------------------------- steps without an optimizer

    #: Backward calls, with no torch.optim optimizer stepped and none in the process, after which every
    #: backward ends a step (the earlier ones are counted as steps too, at the times they ended).
    BACKWARD_STEPS_AFTER = 2

    def _wrap_backward(self) -> None:
        """Wrap ``torch.autograd.backward`` (``Tensor.backward`` calls it): one Python call per backward."""
        import functools

        import torch.autograd

        original = torch.autograd.backward
        session = self

        @functools.wraps(original)
        def backward(tensors: Any, *args: Any, **kwargs: Any) -> Any:
            session._before_backward(tensors)
            result = original(tensors, *args, **kwargs)
            session._after_backward()
            return result

        torch.autograd.backward = backward
        self._backward_patch = (torch.autograd, original, backward)

    def _unwrap_backward(self) -> None:
        patch, self._backward_patch = self._backward_patch, None
        if patch is not None:
            module, original, ours = patch
            if getattr(module, "backward", None) is ours:  # never undo someone else's wrapper
                module.backward = original

    def _before_backward(self, tensors: Any) -> None:
        """At the first backward, with no optimizer counted: the tensors it will compute gradients for."""
        if self._trained_leaves is not None or self.memory.weights_bytes is not None or self.discarded:
            return
        if "memory accounting" in self.instrument_errors:
            return
        try:
            self._trained_leaves = trained_leaves(tensors)
        except Exception as exc:
            self._trained_leaves = []
            self.instrument_failed("memory accounting", exc)

    def _after_backward(self) -> None:
        """A backward ended: count the trained weights once; without an optimizer, end a step."""
        self.backward_calls += 1
        leaves = self._trained_leaves
        if leaves and self.memory.weights_bytes is None:
            self._trained_leaves = []  # once
            self._guard("memory accounting", self.memory.account_trained, leaves)
        if self.explicit_steps or self.step_source == "optimizer.step" or self.discarded:
            return
        if self.step_source == "autograd backward":
            self.step()
            return
        self._guard("backward steps", self._consider_backward_steps)

    def _consider_backward_steps(self) -> None:
        """Adopt backward calls as step boundaries once :attr:`BACKWARD_STEPS_AFTER` of them ran with no
        optimizer step and no torch.optim.Optimizer exists (with one, gradient accumulation runs several
        backward calls per step: wait for its step)."""
        self._pending_backward.append(self.clock())
        if len(self._pending_backward) < self.BACKWARD_STEPS_AFTER or self._optimizer_exists:
            del self._pending_backward[:-self.BACKWARD_STEPS_AFTER]
            return
        self._optimizer_exists = _optimizer_in_process()
        if self._optimizer_exists:
            return
        self.step_source = "autograd backward"
        ends, self._pending_backward = self._pending_backward, []
        for at in ends:  # the earlier backward calls ended steps too, when they ended
            self.step(at=at)

    def _count_flops(self) -> None:
        """Count the FLOPs of step 2 (step 1 compiles and warms up) with FlopCounterMode.

        torch's FLOP formulas run inside the script's own ops: each is wrapped
        (:func:`perfkit.collect.flops.safe_flop_counter`) so that one that raises
        (torch's sdpa formula did on grouped-query attention) switches counting
        off instead of raising into the script's forward.
        """
        if self.steps == 1 and self._flop_mode is None:
            from .flops import safe_flop_counter

            self._watch_dtype()
            mode = safe_flop_counter(lambda exc: self.instrument_failed("FLOP counting", exc))
            mode.__enter__()
            self._flop_mode = mode
        elif self._flop_mode is not None:
            mode, self._flop_mode = self._flop_mode, None
            self.options.flops = False
            mode.__exit__(None, None, None)
            if "FLOP counting" not in self.instrument_errors:  # a count with a failed formula is unknown, not low
                self.flops_per_step = float(mode.get_total_flops())

    def _watch_dtype(self) -> None:
        """Note the dtype matmuls run in (autocast, else the weights') at the next module call."""
        import torch
        from torch.nn.modules.module import register_module_forward_pre_hook

        def hook(module: Any, args: Any) -> None:
            if _compiling():
                return
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
        self._dtype_hook = handle

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

        def timers() -> None:
            if self.module_timer is None:
                self.module_timer = ModuleTimer(model)
            self.module_timer.on_error = lambda exc: self.instrument_failed("module timers", exc)
            self.module_timer.attach()

        def activations() -> None:
            tracker = ActivationTracker(model)
            tracker.on_error = lambda exc: self.instrument_failed("activation memory", exc)
            self.activations = tracker.attach()

        # Hooks must never take the run down: each part that fails is switched off alone.
        self._guard("module timers", timers)
        self._guard("activation memory", activations)
        self.memory.on_error = lambda exc: self.instrument_failed("memory accounting", exc)
        self._guard("memory accounting", self.memory.watch_forward, model)

    def mark_step(self, tokens: Optional[float] = None, samples: Optional[float] = None) -> None:
        """An explicit step boundary from ``@perfkit.step`` (disables optimizer-hook steps)."""
        self.explicit_steps = True
        self.step_source = "perfkit.step"
        if tokens is not None:
            self.tokens_per_step = tokens
        if samples is not None:
            self.samples_per_step = samples
        self.step()

    def step(self, at: Optional[float] = None) -> None:
        """End of one training step (now, or at ``at``, a time of :attr:`clock` already past).

        Never raises into the script: each instrument is guarded."""
        self.steps += 1
        if self._switch_offs:
            self._apply_switch_offs()
        self._guard("step timer", self.timer.mark, at)
        self._guard("memory accounting", self.memory.mark_step)
        if self.options.flops:
            self._guard("FLOP counting", self._count_flops)
            if self._switch_offs:
                self._apply_switch_offs()
        if self.watchdog is not None:
            self._guard("watchdog", self._beat)
        if self._prof is not None and not self._prof_done:
            sampler = self.sampler
            if sampler is not None and sampler.running:
                self._guard("stack sampler", self._sampler_boundary, sampler)
            try:
                with self._quiet_stderr():
                    self._prof.step()
                self._sampler_follow()
            except Exception as exc:
                self.instrument_failed("kernel trace", exc)
                self._stop_profiler()  # a profiler left running crashes the interpreter at exit
                return
            if self.steps >= self.options.schedule.last_step:
                self._stop_profiler()  # the window is recorded: run at full speed from here
            self._guard("step timer", self.timer.restart, at)  # the profiler's own work is not the next step's time

    def _beat(self) -> None:
        wall = self.timer.wall_ms[-1] if self.timer.wall_ms else None
        tps = (self.tokens_per_step / (wall / 1000.0)) if (self.tokens_per_step and wall) else None
        peak = self.memory.step_peak_bytes[-1] if self.memory.step_peak_bytes else None
        self.watchdog.beat(step=self.steps, step_ms=wall, tokens_per_s=tps, memory_bytes=peak)

    def _sampler_boundary(self, sampler: Any) -> None:
        sampler.add_current_thread()  # the threads that end steps run the loop
        if _recording(self._prof, last=True):  # this boundary ends the recorded window
            sampler.stop()

    def _sampler_follow(self) -> None:
        """Start the stack sampler once the profiler records (warm-up steps are not in the trace)."""
        sampler = self.sampler
        if sampler is not None and not sampler.running and not sampler.syncs and _recording(self._prof):
            self._guard("stack sampler", sampler.start)

    # ------------------------------------------------------------------ end

    def discard(self, exit_status: Optional[int] = None) -> None:
        """End the session and write nothing: the script ended before training (``--help``, a bad
        argument); the run directory perfkit created is removed when still empty."""
        self.discarded = True
        self.finish(exit_status)
        for folder in self._created_dirs:  # innermost first; a folder with anything in it stays
            try:
                os.rmdir(folder)
            except OSError:
                break

    def finish(self, exit_status: Optional[int] = None) -> Optional[str]:
        """Stop everything and hand the recording to :meth:`finish_recording` (which writes the run
        directory and returns its analysis.json path, in the sessions that finish runs).

        Whatever happens, no hook of this session stays registered in torch and the
        session is no longer :func:`current` when this returns (or raises)."""
        if self._finished:
            return None
        self._finished = True
        self.exit_status = exit_status
        try:
            if not self.recording:  # the run directory could not be created (said at start)
                return None
            self._apply_switch_offs()
            self._stop_profiler()
            # Each teardown alone: one that fails must not leave the others' hooks in the model.
            if self._flop_mode is not None:
                mode, self._flop_mode = self._flop_mode, None
                self._guard("FLOP counting", mode.__exit__, None, None, None)
            if self.watchdog is not None:
                self._guard("watchdog", self.watchdog.stop)
            if self.sampler is not None and self.sampler.failed:
                self.instrument_failed("stack sampler", RuntimeError(self.sampler.warning or "stopped"))
            if self.module_timer is not None:
                self._guard("module timers", self.module_timer.detach)
            if self.activations is not None:
                self._guard("activation memory", self.activations.detach)
            self._guard("memory accounting", self.memory.unwatch)
            self.timer.stop()
            self.memory.stop()
        finally:
            self._release_globals()
        if self.discarded:
            return None
        self._refresh_world()
        return self.finish_recording(self.make_recording())

    def finish_recording(self, recording: Recording) -> Optional[str]:
        """What becomes of the recording. Here: it is kept in :attr:`recorded`, and nothing is written;
        :class:`perfkit._profile.ProfileSession` and the framework callbacks' session pass it to
        :func:`perfkit.run.finish.finish_run` (collection never analyses or renders)."""
        self.recorded = recording
        return None

    def make_recording(self) -> Recording:
        """The recording of this finished session (see :class:`perfkit.run.recording.Recording`)."""
        return Recording(
            run_dir=self.run_dir,
            world=self.world,
            trace_path=self.trace_path,
            runtime=self.runtime_section(),
            mode=self.options.mode,
            no_trace_reason=None if self.trace_path and os.path.exists(self.trace_path) else self._no_trace_reason(),
            lost=tuple(self.lost),
            mfu=self._mfu_inputs(),
            report=self.options.report,
            quiet=self.options.quiet,
            job_wait_s=self.options.job_wait_s,
            started_at=self._started_at,
            say_lost=self.say_lost,
        )

    def _no_trace_reason(self) -> Optional[str]:
        """Why there is no trace to analyse (None when nothing needs saying)."""
        if self.trace_error:
            return self.trace_error
        if self.options.mode == "trace":
            s = self.options.schedule
            if self.steps == 0:
                return "no kernel trace: " + no_steps_message(self)
            window = f"steps {s.skip_first + s.wait + s.warmup + 1}-{s.last_step}"
            failed = list(self.instrument_errors)
            if failed:  # profiling was switched off early: the run itself may well have gone on
                return (f"no kernel trace: profiling was switched off after step {self.steps}, when the "
                        f"{failed[0]} failed, before the profiled window ({window})")
            return (f"no kernel trace: the run ended after {self.steps} step(s), before the profiled "
                    f"window ({window}); lower --skip-first/--warmup or run more steps")
        if self.steps == 0:
            return no_steps_message(self)
        return None

    def _mfu_inputs(self) -> Optional[MfuInputs]:
        """What MFU needs from this process (a CUDA device and a FLOP count), else None."""
        if not self.flops_per_step:
            return None
        import torch

        if not torch.cuda.is_available():
            return None
        return MfuInputs(flops_per_step=self.flops_per_step, device_name=torch.cuda.get_device_name(),
                         fallback_dtype=_matmul_dtype(), dtype=self.matmul_dtype,
                         world_size=int(os.environ.get("WORLD_SIZE", "1") or 1))

    def _release_globals(self) -> None:
        """Remove every process-wide hook this session registered and stop being :func:`current`."""
        global _ACTIVE
        try:
            self._unwrap_backward()
            for attr in ("_hook_handle", "_dtype_hook"):
                handle = getattr(self, attr)
                setattr(self, attr, None)
                if handle is not None:
                    with contextlib.suppress(Exception):
                        handle.remove()
            finder, self._root_finder = self._root_finder, None
            if finder is not None:
                self._guard("module timers", finder.finish, None)
        finally:
            if _ACTIVE is self:
                _ACTIVE = None

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

    def runtime_section(self) -> dict[str, Any]:
        """What only the live process knows: step timings, phases, memory, throughput (MFU, which needs
        the trace's matmul kernels, is added when the run is finished: :attr:`Recording.mfu`)."""
        steps = self._summary("step timer", lambda: self.timer.summary(skip=self._steady_skip()))
        if "error" not in steps:
            traced = self.options.mode == "trace" and self.trace_path is not None
            steps.update(self._summary("step timer", lambda: rt.profiled_vs_unprofiled(
                self.timer.periods(), vars(self.options.schedule), traced_run=traced, count=len(self.timer.wall_ms))))
        out: dict[str, Any] = {
            "mode": self.options.mode,
            "rank": self.rank,
            "local_rank": self.world.local_rank,
            "world_size": self.world.world_size,
            "steps_seen": self.steps,
            "step_source": "perfkit.step" if self.explicit_steps else self.step_source,
            "backward_calls": self.backward_calls,
            "exit_status": self.exit_status,
            "error": self.error,
            "instrument_errors": dict(self.instrument_errors),
            "steps": steps,
            "phases": {} if "phase markers" in self.instrument_errors else self._summary("phase markers", self.phases.summary),
            "memory": self._summary("memory accounting", self.memory.summary),
            "throughput": _throughput(steps, self.tokens_per_step, self.samples_per_step),
            "schedule": vars(self.options.schedule),
        }
        if "phase markers" in self.instrument_errors:  # phase names are keys: the error has its own
            out["phases_error"] = self.instrument_errors["phase markers"]
        if self.lost:
            out["lost"] = list(self.lost)
        if self.sampler is not None:
            out["stack_samples"] = {**self.sampler.summary(), "path": self.stacks_path}
        if self.flops_per_step:
            out["flops_per_step"] = self.flops_per_step
        elif "FLOP counting" in self.instrument_errors:
            out["flops_error"] = self.instrument_errors["FLOP counting"]
        if self.activations is not None:
            if "activation memory" in self.instrument_errors:
                out["memory"]["activations_error"] = self.instrument_errors["activation memory"]
            else:
                try:
                    out["memory"]["activations"] = self.activations.to_dict()
                except Exception as exc:
                    out["memory"]["activations_error"] = _why(exc)
        if "module timers" in self.instrument_errors:
            out["modules_error"] = self.instrument_errors["module timers"]  # partial timings are not shown
        elif self.module_timer is not None:
            try:
                out["modules"] = self.module_timer.summary()
            except Exception as exc:
                out["modules_error"] = _why(exc)
        return out

    def _summary(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """An instrument's summary, or only its error once it failed (a partial count is not a count)."""
        if name in self.instrument_errors:
            return {"error": self.instrument_errors[name]}
        try:
            return fn()
        except Exception as exc:
            return {"error": _why(exc)}

    def _steady_skip(self) -> int:
        return min(self.options.schedule.skip_first, max(self.steps - 1, 0))

    # ------------------------------------------------- for the callers that drive a session

    # What a caller that drives a session from outside needs (the framework callbacks,
    # perfkit/integrations/_core.py): these and the public methods above (start, step, mark_step,
    # instrument_failed, guard, finish, discard, say_lost), never the underscored ones.
    # ``explicit_steps = True`` says that the caller marks every step (mark_step): torch's
    # optimizer hook and backward calls then end none.

    @property
    def finished(self) -> bool:
        """:meth:`finish` (or :meth:`discard`) ran: the session records nothing more."""
        return self._finished

    @property
    def started(self) -> bool:
        """:meth:`start` ran (it may have found that nothing can be recorded: see :attr:`recording`)."""
        return self._started

    def watch_model(self, model: Any, *, modules: bool = True) -> None:
        """Watch ``model``: its forward memory peak (CUDA) and, with ``modules``, module timers and
        activation memory per top-level module. Each part that fails is switched off alone."""
        if modules:
            self._watch_model(model)
            return
        self.model = model
        self.memory.on_error = lambda exc: self.instrument_failed("memory accounting", exc)
        self.guard("memory accounting", self.memory.watch_forward, model)

    def add_optimizer(self, optimizer: Any) -> bool:
        """Account ``optimizer``'s weights, gradients and state once (call after its step, before
        ``zero_grad``). Returns whether it was new."""
        if optimizer is None or any(o is optimizer for o in self.optimizers):
            return False
        self.optimizers.append(optimizer)
        self.guard("memory accounting", self.memory.account_optimizer, optimizer)
        return True

    # ------------------------------------------------------------------ context manager

    def __enter__(self) -> "Session":
        starts = not self._started and not self._finished
        self.start()
        self._enters.append(starts)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not (self._enters.pop() if self._enters else True):
            return  # an inner or later block: the block that started the session finishes it
        status = None
        if exc_type is not None:
            status = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 1
        self.finish(status)

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Use the session as a decorator: the first call of ``fn`` is profiled (recursive calls inside
        it are part of that run); later calls run unprofiled, with one warning line."""
        import functools

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return wrapper


def trained_leaves(tensors: Any, limit: int = 1_000_000) -> list[Any]:
    """The tensors a backward from ``tensors`` computes gradients for (its graph's AccumulateGrad nodes).

    Walks the autograd graph once (at most ``limit`` nodes); called before the backward, while the
    graph is whole.
    """
    import torch

    roots = [tensors] if isinstance(tensors, torch.Tensor) else list(tensors or ())
    stack = [t.grad_fn for t in roots if isinstance(t, torch.Tensor) and t.grad_fn is not None]
    leaves = [t for t in roots if isinstance(t, torch.Tensor) and t.grad_fn is None and t.requires_grad]
    seen: set[int] = set()
    keep: list[Any] = []  # hold the nodes walked so that ids are not reused meanwhile
    while stack and len(seen) < limit:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        keep.append(node)
        variable = getattr(node, "variable", None)
        if isinstance(variable, torch.Tensor):
            leaves.append(variable)
        stack.extend(fn for fn, _ in getattr(node, "next_functions", ()) if fn is not None)
    return leaves


def _optimizer_in_process() -> bool:
    """Whether any torch.optim.Optimizer exists now (one scan of the garbage collector's objects)."""
    import gc

    from torch.optim import Optimizer

    return any(issubclass(type(o), Optimizer) for o in gc.get_objects())  # type() never runs user code


class _RootFinder:
    """Finds the model with no code change: the outermost modules called during a step.

    A global forward pre-hook/hook pair (torch.nn.modules.module) tracks the
    nesting depth; modules entered at depth 0 are candidates. At the first
    optimizer step the candidate holding most of the optimizer's parameters is
    the model, and the global hooks are removed (they cost a Python call per
    module call only during that first step).
    """

    def __init__(self, session: Optional["Session"] = None) -> None:
        from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

        self.depth = 0
        self.roots: dict[int, Any] = {}
        self.session = session
        self.failed = False
        # torch.compile(module) warns about global hooks, which are perfkit's, not the user's: hide that one
        warnings.filterwarnings("ignore", message=r"Using `torch.compile\(module\)` when there are global hooks")
        self._handles = [
            register_module_forward_pre_hook(self._pre),
            register_module_forward_hook(self._post),
        ]

    def _pre(self, module: Any, args: Any) -> None:
        if self.failed or _compiling():
            return
        try:
            if self.depth == 0:
                self.roots.setdefault(id(module), module)
            self.depth += 1
        except Exception as exc:
            self._fail(exc)

    def _post(self, module: Any, args: Any, output: Any) -> None:
        if self.failed or _compiling():
            return
        try:
            self.depth = max(self.depth - 1, 0)
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        self.failed = True
        if self.session is not None:
            self.session.instrument_failed("module timers", exc)

    def finish(self, optimizer: Any) -> Any:
        for h in self._handles:
            h.remove()
        self._handles = []
        if optimizer is None or not self.roots or self.failed:
            return None
        owned = {id(p) for g in optimizer.param_groups for p in g["params"]}
        best, best_n = None, 0
        for module in self.roots.values():
            n = sum(1 for p in module.parameters() if id(p) in owned)
            if n > best_n:
                best, best_n = module, n
        return best


# ---------------------------------------------------------------------- small pieces


def describe_error(exc: BaseException) -> str:
    """``Type: message`` on one line (at most 300 characters)."""
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def warn(message: str) -> None:
    """One warning line on stderr. Never quiet: each says that a result is partial or lost."""
    try:
        print(f"perfkit: warning: {message}", file=sys.stderr, flush=True)
    except Exception:
        pass


_why, _warn = describe_error, warn  # the names this module uses


def export_trace(prof: Any, path: str) -> None:
    """Export ``prof``'s trace to ``path`` (gzip) atomically: never a truncated file under that name.

    torch writes the JSON to a temporary file beside ``path``; it is compressed
    into another temporary file, fsynced and renamed (:func:`perfkit._io.atomic_open`).
    Raises OutputError (naming ``path``) or the export's own error.
    """
    import gzip
    import shutil
    import tempfile

    from .._io import atomic_open

    folder, name = os.path.split(path)
    fd, raw = tempfile.mkstemp(prefix=f".{name}.", suffix=".json", dir=folder)
    os.close(fd)
    try:
        prof.export_chrome_trace(raw)
        with atomic_open(path, "wb") as fh, open(raw, "rb") as src:
            with gzip.GzipFile(filename=name[:-3], mode="wb", fileobj=fh, compresslevel=6) as gz:
                shutil.copyfileobj(src, gz, 1 << 20)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(raw)


#: torch's Kineto prints these to fd 2 at every profiler start and stop (torch 2.13, CPU and CUDA builds).
_PROFILER_NOISE = re.compile(rb"^USDT:.*\] profiler_(start|stop)\s*$")


@contextlib.contextmanager
def filter_fd2(drop: "re.Pattern[bytes]") -> Iterator[None]:
    """Send fd 2 to a temporary file for the block, then write back every line but those ``drop`` matches.

    For the C++ lines torch prints around profiler start and stop. Whatever else
    reached stderr meanwhile (another thread's output, perfkit's own warnings)
    is written back when the block ends, in order: delayed, never lost. If fd 2
    cannot be redirected, the block runs unfiltered.
    """
    import tempfile

    try:
        sys.stderr.flush()
    except Exception:
        pass
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        tmp = tempfile.TemporaryFile()
        os.dup2(tmp.fileno(), 2)
    except OSError:
        os.close(saved)
        yield
        return
    try:
        yield
    finally:
        try:
            sys.stderr.flush()
        except Exception:
            pass
        os.dup2(saved, 2)
        os.close(saved)
        try:
            tmp.seek(0)
            data = tmp.read()
        finally:
            tmp.close()
        kept = b"".join(line for line in data.splitlines(keepends=True) if not drop.match(line))
        while kept:
            try:
                n = os.write(2, kept)
            except OSError:
                break
            kept = kept[n:]


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


def no_steps_message(session: "Session") -> str:
    """Why no step boundary was seen, and exactly what to do about it."""
    calls = getattr(session, "backward_calls", 0)
    if calls and getattr(session, "_optimizer_exists", False):
        seen = (f"the script ran {calls} autograd backward call(s) and has a torch.optim optimizer, "
                "but the optimizer never stepped")
    elif calls:
        seen = f"the script ran only {calls} autograd backward call(s), too few to tell steps apart"
    else:
        seen = "the script stepped no torch.optim optimizer and ran no autograd backward"
    return (
        f"no training step was seen: {seen}. perfkit ends a step at each optimizer.step(), or, with no "
        "torch.optim optimizer, at each backward. Name the function that runs one step: "
        "perfkit profile --step-fn __main__:train_step SCRIPT (a function of the script; "
        "package.module:function for one elsewhere), or decorate it with @perfkit.step"
    )


def _matmul_dtype() -> str:
    """Without a bf16/fp16 kernel in the trace: fp32 matmuls, tf32 if enabled."""
    import torch

    return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "fp32"


def _throughput(steps: dict[str, Any], tokens: Optional[float], samples: Optional[float]) -> dict[str, Any]:
    """Tokens and samples per second over the step time (``step_ms_median``: the GPU's where measured)."""
    from ..variation import run_step_time

    step_s = (run_step_time(steps)[0] or 0) / 1000.0
    out: dict[str, Any] = {"tokens_per_step": tokens, "samples_per_step": samples}
    if step_s > 0:
        if tokens:
            out["tokens_per_s"] = tokens / step_s
        if samples:
            out["samples_per_s"] = samples / step_s
    return out
