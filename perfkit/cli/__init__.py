"""The ``perfkit`` command line: a thin shell over the stages, with one error boundary.

Exit codes:

* 0: success;
* 1: ``perfkit budget check``: a limit was exceeded;
* 2: bad input or usage: one line per problem on stderr (``perfkit: error: FILE: ...``), no traceback;
* 3: an internal error (a bug in perfkit): one line on stderr naming a file that holds the traceback;
* 130: interrupted (Ctrl-C).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any, Optional

from ..errors import PerfkitError
from . import _process
from ._exit import EXIT_BUDGET, EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK  # noqa: F401

if TYPE_CHECKING:
    from .profile import ScriptError

#: The command modules (each registers its commands on ``app``), in the order ``perfkit --help`` lists them.
COMMANDS = ("analyze", "profile", "stalls", "scale", "diff", "merge", "report", "view", "budget")


def load_commands(args: Optional[list[str]] = None) -> None:
    """Register the command that ``args`` names, or every command (help, a usage error, no args).

    One command imports only its own module: ``perfkit analyze`` does not import what ``perfkit
    profile`` or ``perfkit merge`` need (~20-30 ms). Registration keeps the order of :data:`COMMANDS`
    whatever was loaded first, so the help lists the commands in the same order every time.
    """
    from . import _app

    word = _command(args) if args is not None else None
    for name in ((word,) if word in COMMANDS else COMMANDS):
        importlib.import_module(f"{__name__}.{name}")
    order = {name: i for i, name in enumerate(COMMANDS)}
    _app.app.registered_commands.sort(key=lambda c: order.get(str(c.name), len(order)))


def __getattr__(name: str) -> Any:
    """``perfkit.cli.app``: the typer application with every command registered."""
    if name == "app":
        from . import _app

        load_commands()
        return _app.app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_EXIT_HOOK: list[bool] = []


def _no_collection_at_exit() -> None:
    """At exit, skip the interpreter's last garbage collection over every object still alive (typer,
    rich, numpy, the document: ~20 ms after ``perfkit analyze``, 5% of the command); the OS frees
    them. Only for commands that run no user code (``perfkit profile``'s script may rely on it)."""
    if not _EXIT_HOOK:
        import atexit
        import gc

        atexit.register(gc.freeze)
        _EXIT_HOOK.append(True)


#: Commands that run no user code: their process only reads and analyses.
ANALYSIS_ONLY = ("analyze", "merge", "diff", "report", "budget", "stalls")


def _one_blas_thread() -> None:
    """Before numpy is imported: one OpenBLAS thread. numpy's OpenBLAS starts a worker thread per
    CPU at import, and they spin for a while: on 2 CPUs that took ~70 ms of CPU from the import and
    the trace's decode threads (``perfkit analyze`` of the 54 MB anchor: -15 to -20 ms wall). perfkit
    does no large matrix products. Only for commands that run no user code (``perfkit profile``'s
    script keeps its BLAS threads), and a value the user set is kept."""
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


class _NotRaised(Exception):
    """Stands for an exception class of a command module that is not loaded (so not raised)."""


def _profile_error(name: str) -> Any:
    """``perfkit.cli.profile.<name>`` if that module is loaded (only ``perfkit profile`` raises these)."""
    module = sys.modules.get(f"{__name__}.profile")
    return getattr(module, name) if module is not None else _NotRaised


#: Set when the command's process may end without the interpreter's teardown (:func:`console`).
_TEARDOWN_SKIPPABLE: list[bool] = []


def console() -> None:
    """The console script's and ``python -m perfkit``'s entry: :func:`main`, then exit with its code.

    For ``perfkit analyze`` on this machine (the local engine, not a cluster), once every file is
    written and synced and the engine's workers are done (servers and fresh interpreters have ended;
    a forked helper, which writes nothing, may still be ending, and the kernel ends it with this
    process), the interpreter's teardown is skipped: the streams are flushed and the process ends with ``os._exit`` (the teardown only
    frees memory the OS takes back anyway, ~8-10 ms; docs/performance.md). The cyclic garbage
    collector is also off during the analysis, in this process and the helpers it forks: the
    analysis makes few reference cycles and the process ends after it, while the collector's
    passes over every live object grow with the documents a job holds (~4.5 ms of collections on
    the 54 MB anchor trace; 8 DLRM ranks 4-24 ms less in two runs, and 1,024 of them peak at 119 MB
    without it against 118 MB with it: docs/performance.md). Every other command, and any failure,
    runs and exits as usual."""
    _process.OWNS_PROCESS.append(True)
    rc = main()
    if _TEARDOWN_SKIPPABLE:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:  # a closed or broken stream: the usual exit reports it as python does
            sys.exit(rc)
        os._exit(rc)
    sys.exit(rc)


def main(argv: Optional[list[str]] = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    args = sys.argv[1:] if argv is None else argv
    command = _command(args)
    if command in ANALYSIS_ONLY:
        _one_blas_thread()
    if command == "analyze":
        _no_collection_at_exit()
    try:
        if command == "analyze":  # a plain command line is read without typer (~22 ms)
            from .analyze_run import plain_args, run

            plain = plain_args(list(args))
            if plain is not None:
                # this machine only (no cluster), in a process that is the command's alone: when run
                # returns, every worker of the local engine that writes anything has ended
                local = _process.owns_process() and plain["engine"] == "local"
                if local:
                    import gc

                    gc.disable()  # this process ends after the analysis, which makes no cycles (see console)
                run(**plain)
                if local:
                    _TEARDOWN_SKIPPABLE.append(True)
                return EXIT_OK
        load_commands(args)
        from . import _app

        rv = _app.app(args=argv, standalone_mode=False)
        if isinstance(rv, int):  # typer.Exit(code) comes back as the return value
            return rv
    except _profile_error("ScriptInterrupted") as exc:  # perfkit profile: the script's Ctrl-C ends us as it ends python
        script_interrupted(exc.interrupt)
        raise exc.interrupt from None  # only where SIGINT could not be re-delivered
    except _profile_error("ScriptError") as exc:  # perfkit profile: the script's own exception, printed as python would
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


def script_traceback(exc: "ScriptError") -> int:
    """Print the profiled script's exception as ``python script.py`` does (its frames only, through
    ``sys.excepthook``, which the script may have replaced) and give python's exit status, 1."""
    error = exc.error
    try:
        sys.excepthook(type(error), error, exc.traceback)
    except Exception:
        import traceback

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
    import tempfile
    import traceback

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
