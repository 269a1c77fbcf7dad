"""The public profiling entry point: :func:`profile` and :class:`ProfileSession`.

A :class:`perfkit.collect.session.Session` records and hands over a
:class:`perfkit.run.recording.Recording`; :class:`ProfileSession` finishes it
(:func:`perfkit.run.finish.finish_run`: analyse, write ``analysis.json`` and
``report.md``, print the report, rank 0's job view). ``perfkit profile`` runs one
too (perfkit/cli/profile.py). This module sits at the top stage: collection
below it never imports the analysis or the report.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Optional

from .collect.options import Mode, from_keywords, with_args
from .collect.session import Session
from .run.finish import finish_run
from .run.recording import Recording


class ProfileSession(Session):
    """One profiled run that writes its run directory when it ends (see :mod:`perfkit.collect.session`)."""

    def finish_recording(self, recording: Recording) -> Optional[str]:
        self.recorded = recording
        return finish_run(recording)


def profile(
    out: Optional[str] = None,
    *,
    mode: Mode = "trace",
    skip_first: int = 5,
    wait: int = 0,
    warmup: int = 2,
    active: int = 5,
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
    watchdog: Optional[float] = None,
) -> ProfileSession:
    """Profile the code in a ``with`` block (or a decorated function).

    ``mode="trace"`` records a kernel trace of ``active`` steady steps; ``"light"`` only times
    steps and phases (for whole runs). Every option is defined once, in
    :mod:`perfkit.collect.options` (its help, default and accepted values: ``help(perfkit.profile)``
    lists them; a wrong value raises one :class:`perfkit.errors.UsageError` line).

    Returns:
        The session; ``session.run_dir`` is where the outputs go.
    """
    opts = from_keywords(
        out=out,
        name=name or (os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "run"),
        mode=mode,
        skip_first=skip_first,
        wait=wait,
        warmup=warmup,
        active=active,
        with_stack=with_stack,
        stack_samples=stack_samples,
        record_shapes=record_shapes,
        profile_memory=profile_memory,
        tokens_per_step=tokens_per_step,
        samples_per_step=samples_per_step,
        report=report,
        flops=flops,
        watchdog=watchdog,
    )
    return ProfileSession(opts, model=model)


#: the help of each option, from their one definition (perfkit/collect/options.py)
profile.__doc__ = with_args(profile.__doc__, "profile", (
    ("model", "the model being trained; enables module timers, activation memory per top-level module "
              "and the forward/backward memory peaks."),))
