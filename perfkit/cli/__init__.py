"""The ``perfkit`` command line: a thin shell over the stages, with one error boundary.

Exit codes: 0 success, 1 a budget was exceeded (later), 2 bad input or usage
(one line on stderr, no traceback).
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from ..errors import PerfkitError

app = typer.Typer(
    name="perfkit",
    help="PyTorch training-performance profiler: analyze Kineto traces and tell what to change.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_OK = 0
EXIT_BUDGET = 1
EXIT_INPUT = 2


@app.callback()
def _root() -> None:
    """perfkit: profile PyTorch training and analyze its traces."""


from . import analyze as _analyze  # noqa: E402,F401  (registers the commands)
from . import profile as _profile  # noqa: E402,F401
from . import stalls as _stalls  # noqa: E402,F401
from . import scale as _scale  # noqa: E402,F401
from . import diff as _diff  # noqa: E402,F401
from . import merge as _merge  # noqa: E402,F401
from . import budget as _budget  # noqa: E402,F401
from . import report as _report  # noqa: E402,F401
from . import view as _view  # noqa: E402,F401


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of the console script and ``python -m perfkit``."""
    try:
        rv = app(args=argv, standalone_mode=False)
        if isinstance(rv, int):  # typer.Exit(code) comes back as the return value
            return rv
    except _profile.ScriptInterrupted as exc:  # perfkit profile: the script's Ctrl-C ends us as it ends python
        raise exc.interrupt from None
    except PerfkitError as exc:
        print(f"perfkit: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("perfkit: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # typer/click usage errors come through here
        return exc.code if isinstance(exc.code, int) else EXIT_INPUT
    except Exception as exc:
        # Usage errors of the parser (typer ships its own copy of click): they
        # carry show() and exit_code; Abort is Ctrl-C at a prompt.
        if type(exc).__name__ == "Abort":
            return 130
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            return int(exc.exit_code) or EXIT_INPUT
        raise
    return EXIT_OK
