"""perfkit as a PyTorch Lightning callback: one line in the Trainer's config.

.. code-block:: python

    from perfkit.integrations.lightning import PerfkitCallback

    trainer = L.Trainer(..., callbacks=[PerfkitCallback()])   # or PerfkitCallback(out="runs/exp1", active=5)

The run directory, trace and reports are those of ``perfkit profile``
(``traces/<script>-<time>/``: ``rank<R>.pt.trace.json.gz``, its stack samples,
``analysis.json``, ``report.md``). Profiling starts at ``on_train_start``; a
step ends at ``on_train_batch_end`` of each batch that stepped the optimizers
(``trainer.global_step`` moved: with ``accumulate_grad_batches=4`` one step is
four batches), or of every batch when there is no accumulation (manual
optimisation); the run is written at ``on_train_end`` (or at
``on_exception``). The model is ``trainer.lightning_module`` and the
optimizers ``trainer.optimizers``, for memory accounting (weights, gradients,
optimizer state) and, with ``modules=True``, module timers.

``PerfkitCallback`` derives from ``lightning.pytorch.Callback`` when the
``lightning`` package is installed, else from ``pytorch_lightning.Callback``.
With both installed, a ``pytorch_lightning.Trainer`` takes
:class:`PyTorchLightningPerfkitCallback` (same callback, the other base).
"""

from __future__ import annotations

import importlib
from typing import Any

from ._core import CallbackOptions


def _base(*modules: str) -> Any:
    for name in modules:
        try:
            return importlib.import_module(name).Callback
        except ImportError:
            continue
    from ..errors import MissingDependencyError

    raise MissingDependencyError(
        "perfkit.integrations.lightning needs PyTorch Lightning: pip install lightning (or pytorch_lightning)")


def _make(base: Any, name: str) -> type:
    class _PerfkitCallback(CallbackOptions, base):
        """Profile a Lightning ``Trainer.fit`` with perfkit (see the module docstring; options:
        :class:`perfkit.integrations._core.CallbackOptions`; ``modules=True`` times the children of
        ``trainer.lightning_module``)."""

        FRAMEWORK = "Lightning"
        STEP_SOURCE = "Lightning on_train_batch_end"
        _last_global_step = 0

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            try:
                self._last_global_step = int(trainer.global_step)
            except Exception:
                self._last_global_step = 0
            self.profiler.start(pl_module)

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            p = self.profiler
            if not p.running:
                return
            try:
                global_step = int(trainer.global_step)
                stepped = global_step != self._last_global_step
                self._last_global_step = global_step
                if not stepped and int(getattr(trainer, "accumulate_grad_batches", 1) or 1) > 1:
                    return  # a micro-batch of an accumulation: the step goes on
                if stepped:  # gradients and optimizer state exist now (zero_grad runs in the next closure)
                    p.optimizers(trainer.optimizers)
            except Exception as exc:
                p.fail("on_train_batch_end", exc)
                return
            p.step()

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            self.profiler.finish(0)

        def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
            self.profiler.finish(130 if isinstance(exception, KeyboardInterrupt) else 1)

        def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
            if stage == "fit":
                self.profiler.finish(0)

    _PerfkitCallback.__name__ = _PerfkitCallback.__qualname__ = name
    return _PerfkitCallback


PerfkitCallback = _make(_base("lightning.pytorch", "pytorch_lightning"), "PerfkitCallback")


def __getattr__(name: str) -> Any:
    if name == "PyTorchLightningPerfkitCallback":
        cls = _make(_base("pytorch_lightning"), name)
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["PerfkitCallback", "PyTorchLightningPerfkitCallback"]
