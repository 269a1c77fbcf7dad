"""Run a user's script under a profiling session, as ``python SCRIPT ARGS`` would.

The script runs in this process as ``__main__`` with its own ``sys.argv`` and
``sys.path[0]``; its exit code and exceptions are unchanged. Whatever happens
(an exception, ``sys.exit``, SIGINT, SIGTERM) the session is finished first, so
the trace and analysis collected so far are written, and then the original
outcome is restored: the exception propagates, the exit code is returned, a
SIGTERM is re-delivered with its default action. Ctrl-C's ``KeyboardInterrupt``
propagates with the script's own frames as its traceback, and the command line
lets it end the interpreter as it ends ``python train.py``: the traceback, then
death by SIGINT.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
from typing import Any, Callable, Optional

from .session import Session


class _Terminated(BaseException):
    """SIGTERM turned into an exception so that cleanup runs."""


def run_script(
    session: Session,
    target: str,
    args: list[str],
    *,
    module: bool = False,
    step_fn: Optional[str] = None,
) -> int:
    """Run ``target`` (a path, or a module name with ``module=True``) and return its exit code."""
    argv0 = target if not module else _module_file(target) or target
    old_argv, old_path0 = sys.argv[:], (sys.path[0] if sys.path else None)
    sys.argv = [argv0, *args]
    if not module:
        script_dir = os.path.dirname(os.path.abspath(target))
        if sys.path:
            sys.path[0] = script_dir
        else:
            sys.path.insert(0, script_dir)
    previous_term = _install_sigterm()
    unhook = _install_step_fn(session, step_fn) if step_fn else None
    status: Optional[int] = 0
    outcome: Optional[BaseException] = None
    discard = False
    session.start()
    try:
        if module:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            # An absolute path, as python gives __main__.__file__ (and traceback lines) for a script.
            runpy.run_path(os.path.abspath(target), run_name="__main__")
    except SystemExit as exc:
        status = _exit_code(exc.code)
        outcome = exc
        if session.steps == 0 and _ended_in_argument_parsing(exc, args):
            discard = True
    except _Terminated as exc:
        status = 128 + signal.SIGTERM
        outcome = exc
    except KeyboardInterrupt as exc:
        status = 130
        outcome = exc
    except BaseException as exc:  # the script's own error: re-raised below, unchanged
        status = 1
        outcome = exc
    finally:
        if unhook:
            unhook()
        try:
            if discard:  # --help or a bad argument: as bare, no run directory, no report
                session.discard(status)
            else:
                session.finish(status)
        except (_Terminated, KeyboardInterrupt) as exc:  # a signal while rank 0 waited for the other ranks
            if outcome is None or isinstance(outcome, SystemExit):
                status, outcome = (128 + signal.SIGTERM if isinstance(exc, _Terminated) else 130), exc
        except Exception as exc:  # profiling must never change the script's outcome
            print(f"perfkit: could not finish the profile: {exc}", file=sys.stderr)
        sys.argv = old_argv
        if old_path0 is not None and sys.path:
            sys.path[0] = old_path0
        _restore_sigterm(previous_term)
    if isinstance(outcome, _Terminated):
        os.kill(os.getpid(), signal.SIGTERM)  # default action now: same status as unprofiled
        return status or 0  # pragma: no cover (not reached)
    if isinstance(outcome, SystemExit):
        return status or 0
    if isinstance(outcome, Exception):
        raise ScriptError(_script_frames(outcome))
    if outcome is not None:  # KeyboardInterrupt: the command line ends the process by SIGINT, as python does
        raise _script_frames(outcome)
    return 0


class ScriptError(Exception):
    """The script raised ``error`` (its traceback already starts at the script's first frame): the
    command line prints it as python would, with none of perfkit's frames, and exits 1."""

    def __init__(self, error: BaseException):
        super().__init__(repr(error))
        self.error = error
        self.traceback = error.__traceback__  # before re-raising adds perfkit's frames to it


def _script_frames(exc: BaseException) -> BaseException:
    """``exc`` with its traceback starting at the script's frame (not the launcher's and runpy's)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_globals.get("__name__") != "__main__":
        tb = tb.tb_next
    return exc.with_traceback(tb) if tb is not None else exc


#: Modules whose SystemExit means the script stopped in its command-line parsing (--help, a bad argument).
_PARSER_MODULES = ("argparse", "optparse", "click", "typer", "absl", "fire", "jsonargparse", "tyro",
                   "simple_parsing", "hydra", "omegaconf")


def _ended_in_argument_parsing(exc: SystemExit, args: list[str]) -> bool:
    """The script exited before any step from its argument parser, or with ``-h``/``--help`` given.

    Read from the SystemExit's traceback (a frame of argparse, click, absl ... raised it)."""
    if any(a in ("-h", "--help") for a in args):
        return True
    tb = exc.__traceback__
    while tb is not None:
        name = str(tb.tb_frame.f_globals.get("__name__") or "")
        if name.split(".", 1)[0] in _PARSER_MODULES:
            return True
        tb = tb.tb_next
    return False


def _exit_code(code: Any) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # sys.exit("message") prints it and exits 1
    return 1


def _module_file(name: str) -> Optional[str]:
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None else None


def _install_sigterm() -> Any:
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None  # the script's launcher already handles it: leave it alone

    def handler(signum: int, frame: Any) -> None:
        raise _Terminated()

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return None


def _restore_sigterm(previous: Any) -> None:
    if previous is not None:
        try:
            signal.signal(signal.SIGTERM, previous)
        except ValueError:
            pass


def _install_step_fn(session: Session, spec: str) -> Callable[[], None]:
    """Make each call of ``module:function`` end a step.

    An importable module's function is wrapped in place (now, or when the module
    is imported). A function of the script itself (``__main__:fn``) is found at
    its first call through a temporary profile hook, which then replaces it in
    the script's globals with a wrapper and removes itself.
    """
    from ..errors import UsageError

    mod_name, _, fn_name = spec.partition(":")
    if not mod_name or not fn_name:
        raise UsageError(f"--step-fn must look like module:function (got {spec!r})")
    done = {"wrapped": False}

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        import functools

        @functools.wraps(fn)
        def stepped(*a: Any, **k: Any) -> Any:
            session.explicit_steps = True
            try:
                return fn(*a, **k)
            finally:
                session.mark_step()

        stepped.__perfkit_step__ = True  # type: ignore[attr-defined]
        return stepped

    if mod_name != "__main__" and not mod_name.endswith(".py"):
        import importlib

        try:
            module = importlib.import_module(mod_name)
        except ImportError as exc:
            raise UsageError(f"--step-fn: cannot import {mod_name!r}: {exc}") from None
        target = getattr(module, fn_name, None)
        if not callable(target):
            raise UsageError(f"--step-fn: {mod_name!r} has no function {fn_name!r}")
        setattr(module, fn_name, wrap(target))
        return lambda: setattr(module, fn_name, target)

    def hook(frame: Any, event: str, arg: Any) -> None:
        if done["wrapped"] or frame.f_code.co_name != fn_name:
            return
        if event == "call" and frame.f_globals.get("__name__") == "__main__":
            session.explicit_steps = True  # the first call is a step too
        if event != "return":
            return
        if frame.f_globals.get("__name__") != "__main__":
            return
        fn = frame.f_globals.get(fn_name)
        if callable(fn) and getattr(fn, "__code__", None) is frame.f_code:
            frame.f_globals[fn_name] = wrap(fn)
            done["wrapped"] = True
            session.mark_step()  # this first call just ended
            sys.setprofile(None)

    sys.setprofile(hook)
    return lambda: sys.setprofile(None) if not done["wrapped"] else None
