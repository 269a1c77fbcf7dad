"""Stage 1: collection inside the training process. The only part of perfkit that imports torch.

A session records and hands over a :class:`perfkit.run.recording.Recording`; the public
:func:`perfkit.profile` (perfkit/_profile.py) finishes it.
"""

from .markers import phase, step
from .session import Schedule, Session, SessionOptions, current

__all__ = ["step", "phase", "Session", "Schedule", "SessionOptions", "current"]
