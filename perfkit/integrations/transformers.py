"""perfkit as a Hugging Face ``TrainerCallback``: one line in the Trainer's config.

.. code-block:: python

    from perfkit.integrations.transformers import PerfkitCallback

    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[PerfkitCallback()])

The run directory, trace and reports are those of ``perfkit profile``
(``traces/<script>-<time>/``: ``rank<R>.pt.trace.json.gz``, its stack samples,
``analysis.json``, ``report.md``). Profiling starts at ``on_train_begin``; a
step ends at ``on_step_end`` (once per optimizer step: with
``gradient_accumulation_steps=4`` one step is four micro-batches); the run is
written at ``on_train_end``, or when the process exits if training raised (the
Trainer has no exception hook). The model is the Trainer's ``model`` and the
optimizer its ``optimizer`` (read at ``on_optimizer_step``, after the update and
before ``zero_grad``), for memory accounting (weights, gradients, optimizer
state) and, with ``modules=True``, module timers.
"""

from __future__ import annotations

from typing import Any, Optional

from ._core import CallbackProfiler

try:
    from transformers import TrainerCallback as _Base
except ImportError:  # pragma: no cover (only without transformers)
    from ..errors import MissingDependencyError

    raise MissingDependencyError(
        "perfkit.integrations.transformers needs Hugging Face transformers: pip install transformers") from None


class PerfkitCallback(_Base):  # type: ignore[misc, valid-type]
    """Profile a Hugging Face ``Trainer.train`` with perfkit (see the module docstring).

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
            "Trainer", "Trainer on_step_end", out,
            mode=mode, skip_first=skip_first, warmup=warmup, active=active, stack_samples=stack_samples,
            with_stack=with_stack, record_shapes=record_shapes, profile_memory=profile_memory,
            tokens_per_step=tokens_per_step, samples_per_step=samples_per_step, modules=modules,
            flops=flops, watchdog=watchdog, quiet=quiet, name=name)

    @property
    def run_dir(self) -> Optional[str]:
        """The run directory of the profile in progress or last written (None before training)."""
        s = self.profiler.session
        return s.run_dir if s is not None else None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.profiler.start(kwargs.get("model"))

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # After optimizer.step() and before zero_grad(): gradients and the optimizer's state exist.
        if self.profiler.running and not self.profiler._optimizers:
            self.profiler.optimizers([kwargs.get("optimizer")])

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.profiler.step()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.profiler.finish(0)


__all__ = ["PerfkitCallback"]
