"""Stage 1: collection inside the training process. The only part of perfkit that imports torch."""

from .markers import phase, step
from .session import ProfileSession, Schedule, SessionOptions, current, profile

__all__ = ["profile", "step", "phase", "ProfileSession", "Schedule", "SessionOptions", "current"]
