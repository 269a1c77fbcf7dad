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

from typing import Any

from ._core import CallbackOptions

try:
    from transformers import TrainerCallback as _Base
except ImportError:  # pragma: no cover (only without transformers)
    from ..errors import MissingDependencyError

    raise MissingDependencyError(
        "perfkit.integrations.transformers needs Hugging Face transformers: pip install transformers") from None


class PerfkitCallback(CallbackOptions, _Base):
    """Profile a Hugging Face ``Trainer.train`` with perfkit (see the module docstring; options:
    :class:`perfkit.integrations._core.CallbackOptions`)."""

    FRAMEWORK = "Trainer"
    STEP_SOURCE = "Trainer on_step_end"

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.profiler.start(kwargs.get("model"))

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # After optimizer.step() and before zero_grad(): gradients and the optimizer's state exist.
        if self.profiler.running and not self.profiler.has_optimizers:
            self.profiler.optimizers([kwargs.get("optimizer")])

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.profiler.step()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.profiler.finish(0)


__all__ = ["PerfkitCallback"]
