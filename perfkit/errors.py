"""perfkit's exception hierarchy. The CLI turns any PerfkitError into one line on stderr and exit code 2."""

from __future__ import annotations


class PerfkitError(Exception):
    """Base class: a problem with the user's input or environment, reported without a traceback."""


class UsageError(PerfkitError):
    """The command line or API call is wrong (bad option value, missing argument)."""


class TraceFormatError(PerfkitError):
    """A file is not a readable Kineto/Chrome trace; the message names the file and the problem."""


class MissingDependencyError(PerfkitError):
    """An optional dependency is needed; the message carries the exact install command."""
