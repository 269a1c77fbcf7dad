"""Profiling from a training framework's own callbacks: one line in the trainer's config.

* :class:`perfkit.integrations.lightning.PerfkitCallback`: a PyTorch Lightning
  ``Callback`` (``lightning.pytorch``, or ``pytorch_lightning`` alone).
* :class:`perfkit.integrations.transformers.PerfkitCallback`: a Hugging Face
  ``transformers.TrainerCallback``.

Both run the same profiling session as ``perfkit profile`` (same run
directory, trace, stack samples, ``analysis.json`` and ``report.md``), with
step boundaries taken from the framework's own hooks. Importing this package
imports neither framework; see docs/collect.md, "Frameworks".
"""

from __future__ import annotations

__all__ = ["lightning", "transformers"]
