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
import dataclasses
import os
import sys
from typing import Any, Iterable, Optional

from ..collect.options import Mode, from_keywords, with_args
from ..collect.session import Session, current
from ..collect.session import describe_error as _why
from ..collect.session import warn as _warn
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
        options: the other options, by their keywords (``mode``, ``skip_first``, ``warmup``,
            ``active``, ``stack_samples``, ...: perfkit/collect/options.py); a schedule field left
            None takes ``perfkit profile``'s default.
    """

    def __init__(self, framework: str, step_source: str, out: Optional[str], **options: Any) -> None:
        self.framework = framework
        self.step_source = step_source
        if options.get("name") is None:
            options["name"] = _script_name()
        # A wrong option is the user's config error: raise now, at construction (collect/options.py).
        self.options = from_keywords(out=out, **options)
        self.session: Optional[CallbackSession] = None
        self.off = False  #: profiling switched off (an error, or another session already runs)
        self._optimizers: list[Any] = []
        self._atexit = False
        self._started = False  #: the session's start() returned (its run directory exists)

    # ---------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        s = self.session
        return s is not None and not self.off and not s.finished

    @property
    def has_optimizers(self) -> bool:
        """The optimizers were accounted already (:meth:`optimizers`)."""
        return bool(self._optimizers)

    def start(self, model: Any = None) -> None:
        """Training starts: create and start the session (no-op when already running or switched off)."""
        if self.off or self.running:
            return
        try:
            self._start(model)
        except Exception as exc:
            self.fail("start", exc)

    def _start(self, model: Any) -> None:
        from ..collect.job import world_info

        other = current()
        if other is not None:  # perfkit profile (or perfkit.profile()) already profiles this process
            self.off = True
            if world_info().rank == 0:
                _warn(f"a perfkit session already profiles this process ({other.run_dir}); "
                      f"the {self.framework} callback leaves it to that session")
            return
        opts = dataclasses.replace(self.options)  # a session's own copy (rank 1 makes it quiet, below)
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
        session.watch_model(model, modules=session.options.modules)

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
                session.add_optimizer(opt)
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
        if session is None or session.finished:
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
        if session is None or session.finished:
            _warn(f"the {self.framework} callback failed in {where} and profiling is switched off "
                  f"({_why(exc)}); training goes on")
            return
        with contextlib.suppress(Exception):
            session.instrument_failed(f"{self.framework} callback", exc)
        if self._started:  # write what was recorded so far
            with contextlib.suppress(Exception):
                session.finish(None)
            return
        with contextlib.suppress(Exception):  # start() itself failed: undo what it did, write nothing
            session.discard(None)

    def _at_exit(self) -> None:
        """The process ends while training still runs (an exception the framework did not report)."""
        if self.session is not None and not self.session.finished:
            self.finish(None)

    def __getstate__(self) -> dict[str, Any]:
        # Callbacks are pickled by spawn-based launchers: a session (threads, the profiler) does not travel.
        state = dict(self.__dict__)
        state.update(session=None, _optimizers=[], _atexit=False, off=False, _started=False)
        return state


def _script_name() -> str:
    """The training script's name, for ``traces/<script>-<time>`` (as ``perfkit profile`` names it)."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if not argv0 or argv0 == "-c":
        return "run"
    return os.path.basename(argv0)


class CallbackOptions:
    """The options both framework callbacks take; a callback class sets :attr:`FRAMEWORK` and
    :attr:`STEP_SOURCE` and inherits this ``__init__``. Each option is defined once, in
    :mod:`perfkit.collect.options` (the ``Args`` below are made from it); a wrong value raises one
    :class:`perfkit.errors.UsageError` line at construction. A schedule option given as None
    takes ``perfkit profile``'s default.
    """

    FRAMEWORK = "callback"  #: named in warnings ("Lightning callback failed ...")
    STEP_SOURCE = "callback"  #: ``runtime.step_source``: the hook that ends each step

    def __init__(
        self,
        out: Optional[str] = None,
        *,
        mode: Mode = "trace",
        skip_first: Optional[int] = 5,
        warmup: Optional[int] = 2,
        active: Optional[int] = 5,
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


CallbackOptions.__doc__ = with_args(CallbackOptions.__doc__, "callbacks")
