"""The ``perfkit`` command line: a thin shell over the stages, with one error boundary.

Exit codes:

* 0: success;
* 1: ``perfkit budget check``: a limit was exceeded;
* 2: bad input or usage: one line per problem on stderr (``perfkit: error: FILE: ...``), no traceback;
* 3: an internal error (a bug in perfkit): one line on stderr naming a file that holds the traceback;
* 130: interrupted (Ctrl-C).
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from typing import Any, Optional

import typer

from ..errors import PerfkitError

app = typer.Typer(
    name="perfkit",
    help="PyTorch training-performance profiler: analyze Kineto traces and tell what to change.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help texts are plain text: a literal [OPTIONS] or [memory] is shown, never taken as rich markup.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _tidy_help() -> None:
    """Help output as click prints it: no type (``<bool>``) after a flag, and usage names such as
    ``SCRIPT [SCRIPT_ARGS]...`` instead of ``{script} [script_args]...``. Each change is skipped
    when this typer has no such method (the help is then typer's own, nothing breaks)."""
    from typer import core

    option, argument = getattr(core, "TyperOption", None), getattr(core, "TyperArgument", None)
    rich_type = getattr(option, "display_type_rich", None)
    if rich_type is not None and not getattr(rich_type, "_perfkit", False):
        def display_type_rich(self: Any, ctx: Any) -> Any:
            if getattr(self, "is_flag", False) and getattr(self, "metavar", None) is None:
                return None  # a flag takes no value: no type to show
            return rich_type(self, ctx)

        display_type_rich._perfkit = True  # type: ignore[attr-defined]
        option.display_type_rich = display_type_rich
    arg_type = getattr(argument, "display_type_rich", None)
    if arg_type is not None and not getattr(arg_type, "_perfkit", False):
        def arg_display_type_rich(self: Any, ctx: Any) -> Any:
            return None if getattr(self, "metavar", None) is not None else arg_type(self, ctx)

        arg_display_type_rich._perfkit = True  # type: ignore[attr-defined]
        argument.display_type_rich = arg_display_type_rich
    usage = getattr(argument, "_usage_display_name", None)
    if usage is not None and not getattr(usage, "_perfkit", False):
        def _usage_display_name(self: Any) -> str:
            name = self.metavar if self.metavar is not None else str(self.name).upper()
            name = name if self.required else f"[{name}]"
            return name + ("..." if self.nargs != 1 else "")

        _usage_display_name._perfkit = True  # type: ignore[attr-defined]
        argument._usage_display_name = _usage_display_name


try:
    _tidy_help()
except Exception:  # cosmetic only
    pass

EXIT_OK = 0
EXIT_BUDGET = 1
EXIT_INPUT = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


def _version(value: bool) -> None:
    if value:
        from .._version import __version__

        print(f"perfkit {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print perfkit's version and exit."),
) -> None:
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
        script_interrupted(exc.interrupt)
        raise exc.interrupt from None  # only where SIGINT could not be re-delivered
    except _profile.ScriptError as exc:  # perfkit profile: the script's own exception, printed as python would
        return script_traceback(exc)
    except PerfkitError as exc:
        # One line per problem (budget check names every missing metric); each starts with the file.
        for line in getattr(exc, "lines", None) or [str(exc)]:
            print(f"perfkit: error: {line}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("perfkit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # typer/click usage errors come through here
        return exc.code if isinstance(exc.code, int) else EXIT_INPUT
    except RecursionError:
        # Input nested deeper than any perfkit document or budget: the readers turn this into one line
        # naming the file; one that still gets here is reported the same way, without the file.
        print("perfkit: error: the input is nested too deeply to read", file=sys.stderr)
        return EXIT_INPUT
    except Exception as exc:
        # Usage errors of the parser (typer ships its own copy of click): they
        # carry show() and exit_code; Abort is Ctrl-C at a prompt.
        if type(exc).__name__ == "Abort":
            return EXIT_INTERRUPTED
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            return int(exc.exit_code) or EXIT_INPUT
        args = sys.argv[1:] if argv is None else argv
        if _command(args) == "profile":
            # Under perfkit profile an exception here is the user's script's own: it goes on unchanged
            # (its traceback and exit status 1, as without perfkit; docs/collect.md).
            raise
        return internal_error(exc, args)
    return EXIT_OK


def script_traceback(exc: "_profile.ScriptError") -> int:
    """Print the profiled script's exception as ``python script.py`` does (its frames only, through
    ``sys.excepthook``, which the script may have replaced) and give python's exit status, 1."""
    error = exc.error
    try:
        sys.excepthook(type(error), error, exc.traceback)
    except Exception:
        traceback.print_exception(type(error), error, exc.traceback)
    return 1


def script_interrupted(interrupt: KeyboardInterrupt) -> None:
    """The profiled script's Ctrl-C: its traceback (the script's frames only), then death by SIGINT, as
    python ends on an uncaught KeyboardInterrupt. Returns only when SIGINT cannot be re-delivered."""
    import signal

    from ..collect.launcher import _script_frames

    error = _script_frames(interrupt)
    try:
        sys.excepthook(type(error), error, error.__traceback__)
        sys.stderr.flush()
        sys.stdout.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except Exception:
        return


def _command(args: list[str]) -> Optional[str]:
    """The sub-command named in ``args`` (the first word that is not an option)."""
    return next((str(a) for a in args if not str(a).startswith("-")), None)


def internal_error(exc: BaseException, argv: Optional[list[str]] = None) -> int:
    """The last resort: one line on stderr, the traceback in a file, exit code 3.

    ``PERFKIT_TRACEBACK=1`` prints the traceback itself instead (for debugging perfkit).
    """
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if os.environ.get("PERFKIT_TRACEBACK") == "1":
        sys.stderr.write(text)
        return EXIT_INTERNAL
    msg = " ".join(str(exc).split())
    if len(msg) > 200:
        msg = msg[:197] + "..."
    where = "not saved"
    try:
        fd, where = tempfile.mkstemp(prefix="perfkit-traceback-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(f"perfkit {' '.join(map(str, argv or []))}\n{text}")
    except OSError:
        where = "not saved (no writable temporary folder)"
    print(f"perfkit: internal error: {type(exc).__name__}: {msg} (a bug in perfkit; the full traceback is in "
          f"{where}; please report it)", file=sys.stderr)
    return EXIT_INTERNAL
