"""What the framework callbacks share: a profiling session driven by a framework's hooks.

A :class:`CallbackProfiler` owns one :class:`perfkit.collect.session.Session`
(the one ``perfkit profile`` runs: same schedule, trace, stack samples and run
directory). The framework callback tells it when training starts, when a step
ends and when training ends; everything else (the trace schedule, timers,
memory counters, writing the run) is the session's.

Fail soft, as the rest of collection: an error inside a callback switches
profiling off with one warning (what was recorded so far is written) and the
training goes on. Only rank 0 prints its report; the other ranks write their
files quietly.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from typing import Any, Iterable, Optional

from ..collect.session import Schedule, Session, SessionOptions, _warn, _why
from ..run.finish import finish_run
from ..run.recording import Recording


class CallbackSession(Session):
    """A session whose steps come from a framework's hooks (named in ``runtime.step_source``)."""

    #: The framework hook that ends each step; kept apart from ``step_source``, which the
    #: session sets itself when a step is marked.
    framework_step_source = "callback"

    def runtime_section(self) -> dict[str, Any]:
        out = super().runtime_section()
        out["step_source"] = self.framework_step_source
        return out

    def finish_recording(self, recording: Recording) -> Optional[str]:
        """Write the run directory (analysis.json, report.md): perfkit/run/finish.py."""
        self.recorded = recording
        return finish_run(recording)


class CallbackProfiler:
    """One profiled training run, driven by a framework callback.

    Args:
        framework: the framework's name, for messages ("Lightning", "Trainer").
        step_source: how steps are found, for the report ("Lightning on_train_batch_end").
        out: run directory (default ``traces/<script>-<time>``, as ``perfkit profile``).
        options: the rest of :class:`SessionOptions` (``mode``, ``skip_first``,
            ``warmup``, ``active``, ``stack_samples``, ...); a schedule field left
            None takes ``perfkit profile``'s default.
    """

    def __init__(self, framework: str, step_source: str, out: Optional[str], **options: Any) -> None:
        self.framework = framework
        self.step_source = step_source
        schedule = {k: options.pop(k) for k in ("skip_first", "wait", "warmup", "active") if k in options}
        sched = Schedule(**{k: v for k, v in schedule.items() if v is not None})
        sched.validate()  # a wrong option is the user's config error: raise now, at construction
        mode = options.get("mode", "trace")
        if mode not in ("trace", "light"):
            from ..errors import UsageError

            raise UsageError(f"mode must be 'trace' or 'light' (not {mode!r})")
        self.schedule = sched
        self.out = out
        self.options = options
        self.session: Optional[CallbackSession] = None
        self.off = False  #: profiling switched off (an error, or another session already runs)
        self._optimizers: list[Any] = []
        self._atexit = False
        self._started = False  #: the session's start() returned (its run directory exists)

    # ---------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        s = self.session
        return s is not None and not self.off and not s._finished

    def start(self, model: Any = None) -> None:
        """Training starts: create and start the session (no-op when already running or switched off)."""
        if self.off or self.running:
            return
        try:
            self._start(model)
        except Exception as exc:
            self.fail("start", exc)

    def _start(self, model: Any) -> None:
        from ..collect import session as session_mod
        from ..collect.job import world_info

        other = session_mod.current()
        if other is not None:  # perfkit profile (or perfkit.profile()) already profiles this process
            self.off = True
            if world_info().rank == 0:
                _warn(f"a perfkit session already profiles this process ({other.run_dir}); "
                      f"the {self.framework} callback leaves it to that session")
            return
        opts = SessionOptions(
            out=self.out,
            name=self.options.get("name") or _script_name(),
            mode=self.options.get("mode", "trace"),
            schedule=self.schedule,
            with_stack=self.options.get("with_stack", False),
            stack_samples=self.options.get("stack_samples", True),
            record_shapes=self.options.get("record_shapes", False),
            profile_memory=self.options.get("profile_memory", False),
            tokens_per_step=self.options.get("tokens_per_step"),
            samples_per_step=self.options.get("samples_per_step"),
            report=self.options.get("report", True),
            quiet=self.options.get("quiet", False),
            modules=self.options.get("modules", False),
            flops=self.options.get("flops", False),
            watchdog_s=self.options.get("watchdog"),
        )
        session = CallbackSession(opts)
        session.framework_step_source = self.step_source
        if session.world.rank != 0:
            opts.quiet = True  # only rank 0 prints; every rank writes its files
        # Steps come from the framework's hooks: torch's optimizer hook must not count them again.
        session.explicit_steps = True
        self.session = session
        self._optimizers = []
        self._started = False
        session.start()
        self._started = True
        if not session.recording:  # no run directory (said once by the session): run unprofiled
            self.off = True
            return
        if not self._atexit:
            atexit.register(self._at_exit)
            self._atexit = True
        if model is not None:
            self._watch(session, model)

    def _watch(self, session: CallbackSession, model: Any) -> None:
        """The framework's model: module timers with ``modules=True``; the forward memory peak (CUDA)."""
        if session.options.modules:
            session._watch_model(model)  # module timers, activation memory, forward peak
            return
        session.model = model
        session.memory.on_error = lambda exc: session.instrument_failed("memory accounting", exc)
        session._guard("memory accounting", session.memory.watch_forward, model)

    def optimizers(self, optimizers: Iterable[Any]) -> None:
        """Account weights, gradients and optimizer state once per optimizer (call after a step, before zero_grad)."""
        if not self.running:
            return
        try:
            session = self.session
            assert session is not None
            for opt in optimizers:
                if opt is None or any(o is opt for o in self._optimizers):
                    continue
                self._optimizers.append(opt)
                session.optimizers.append(opt)
                session._guard("memory accounting", session.memory.account_optimizer, opt)
        except Exception as exc:
            self.fail("memory accounting", exc)

    def step(self) -> None:
        """One training step ended (the session guards each of its instruments itself)."""
        if not self.running:
            return
        try:
            assert self.session is not None
            self.session.mark_step()
        except Exception as exc:
            self.fail("a step boundary", exc)

    def finish(self, status: Optional[int] = 0) -> None:
        """Training ended: write the run directory (analysis.json, report.md, trace)."""
        session = self.session
        if session is None or session._finished:
            return
        self.off = True
        try:
            session.finish(status)
        except Exception as exc:  # profiling must never change the training's outcome
            _warn(f"the {self.framework} callback could not finish the profile ({_why(exc)}); training goes on")

    def fail(self, where: str, exc: BaseException) -> None:
        """An error of the callback's own: switch profiling off (one warning), write what was recorded."""
        if self.off:
            return
        self.off = True
        session = self.session
        if session is None or session._finished:
            _warn(f"the {self.framework} callback failed in {where} and profiling is switched off "
                  f"({_why(exc)}); training goes on")
            return
        with contextlib.suppress(Exception):
            session.instrument_failed(f"{self.framework} callback", exc)
        if self._started:  # write what was recorded so far
            with contextlib.suppress(Exception):
                session.finish(None)
            return
        _abandon(session)  # start() itself failed: undo what it did, write nothing

    def _at_exit(self) -> None:
        """The process ends while training still runs (an exception the framework did not report)."""
        if self.session is not None and not self.session._finished:
            self.finish(None)

    def __getstate__(self) -> dict[str, Any]:
        # Callbacks are pickled by spawn-based launchers: a session (threads, the profiler) does not travel.
        state = dict(self.__dict__)
        state.update(session=None, _optimizers=[], _atexit=False, off=False, _started=False)
        return state


def _abandon(session: Session) -> None:
    """Undo a session whose start() raised: its profiler, its optimizer hook, the process's current session."""
    from ..collect import session as session_mod

    session._finished = True
    with contextlib.suppress(Exception):
        session._stop_profiler()
    with contextlib.suppress(Exception):
        if session._hook_handle is not None:
            session._hook_handle.remove()
    if session_mod._ACTIVE is session:
        session_mod._ACTIVE = None


def _script_name() -> str:
    """The training script's name, for ``traces/<script>-<time>`` (as ``perfkit profile`` names it)."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if not argv0 or argv0 == "-c":
        return "run"
    return os.path.basename(argv0)


class CallbackOptions:
    """The options both framework callbacks take, written once; a callback class sets
    :attr:`FRAMEWORK` and :attr:`STEP_SOURCE` and inherits this ``__init__``.

    Args:
        out: run directory (default ``traces/<script>-<time>``).
        mode: ``"trace"`` (kernel trace of ``active`` steps + timers) or ``"light"`` (timers only).
        skip_first, warmup, active: the trace schedule in optimizer steps (None: ``perfkit profile``'s defaults).
        stack_samples: sample the training thread's Python stack in the recorded steps (source lines).
        with_stack, record_shapes, profile_memory: torch.profiler options (costly; off).
        tokens_per_step, samples_per_step: for throughput.
        modules: time the model's top-level modules.
        flops: count the FLOPs of step 2 for MFU (that step runs slower).
        watchdog: dump every thread's stack when no step ends for this many seconds.
        quiet: no report on screen (files are still written; warnings still printed).
        name: the run directory's default name (default: the script's).
    """

    FRAMEWORK = "callback"  #: named in warnings ("Lightning callback failed ...")
    STEP_SOURCE = "callback"  #: ``runtime.step_source``: the hook that ends each step

    def __init__(
        self,
        out: Optional[str] = None,
        *,
        mode: str = "trace",
        skip_first: Optional[int] = None,
        warmup: Optional[int] = None,
        active: Optional[int] = None,
        stack_samples: bool = True,
        with_stack: bool = False,
        record_shapes: bool = False,
        profile_memory: bool = False,
        tokens_per_step: Optional[float] = None,
        samples_per_step: Optional[float] = None,
        modules: bool = False,
        flops: bool = False,
        watchdog: Optional[float] = None,
        quiet: bool = False,
        name: Optional[str] = None,
    ) -> None:
        super().__init__()
        self.profiler = CallbackProfiler(
            self.FRAMEWORK, self.STEP_SOURCE, out,
            mode=mode, skip_first=skip_first, warmup=warmup, active=active, stack_samples=stack_samples,
            with_stack=with_stack, record_shapes=record_shapes, profile_memory=profile_memory,
            tokens_per_step=tokens_per_step, samples_per_step=samples_per_step, modules=modules,
            flops=flops, watchdog=watchdog, quiet=quiet, name=name)

    @property
    def run_dir(self) -> Optional[str]:
        """The run directory of the profile in progress or last written (None before training)."""
        s = self.profiler.session
        return s.run_dir if s is not None else None
