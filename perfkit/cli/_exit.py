"""The command line's exit codes (see :mod:`perfkit.cli`); typer-free."""

EXIT_OK = 0
EXIT_BUDGET = 1
EXIT_INPUT = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130
