"""Whether the command's process is its own (typer-free, imported by the command modules)."""

#: Holds True when :func:`perfkit.cli.console` runs the command: the process is the command's alone,
#: not a test's or a notebook's calling :func:`perfkit.cli.main`.
OWNS_PROCESS: list[bool] = []


def owns_process() -> bool:
    """True when the command runs as its process's whole life (:func:`perfkit.cli.console`)."""
    return bool(OWNS_PROCESS)
