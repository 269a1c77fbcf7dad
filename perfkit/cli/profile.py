"""``perfkit profile [OPTIONS] SCRIPT [SCRIPT_ARGS]...``: run a training script under the profiler."""

from __future__ import annotations

import enum
import sys
from typing import List, Optional

import typer

from ..collect.launcher import ScriptError  # noqa: F401  (the command line catches it: perfkit/cli/__init__.py)
from ._app import app


class ScriptInterrupted(Exception):
    """The profiled script ended by Ctrl-C: carries its KeyboardInterrupt past the command-line parser
    (which would turn it into "Aborted"), so that ``main`` re-raises it and the interpreter ends as it
    ends the bare script: the traceback, then death by SIGINT."""

    def __init__(self, interrupt: KeyboardInterrupt):
        super().__init__("KeyboardInterrupt")
        self.interrupt = interrupt


class Mode(str, enum.Enum):
    trace = "trace"
    light = "light"


#: The help's closing paragraph: where options go, and examples (``\b``: printed as written).
EPILOG = """Options of perfkit go before SCRIPT: everything after it is the script's own
(perfkit profile train.py -q hands -q to train.py).

\b
Examples:
  perfkit profile train.py --lr 3e-4 --epochs 1
  perfkit profile -q --out runs/base train.py
  perfkit profile --active 10 --modules --flops train.py
  perfkit profile --mode light -m mypkg.train --config cfg.yaml
  perfkit profile --step-fn __main__:train_step train.py

Steps are found with no code change: each torch.optim optimizer.step() ends one; in a script
with no torch.optim optimizer, each autograd backward. Otherwise name the function that runs
one step with --step-fn, or decorate it with @perfkit.step. See docs/collect.md."""


@app.command(
    "profile",
    context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
    epilog=EPILOG,
)
def profile_cmd(
    script: str = typer.Argument(..., metavar="SCRIPT", help="The training script (or, with -m, a module name)."),
    script_args: Optional[List[str]] = typer.Argument(
        None, metavar="SCRIPT_ARGS", help="Arguments passed to the script unchanged (all words after SCRIPT)."),
    module: bool = typer.Option(False, "-m", "--module", help="SCRIPT is a module name, run like python -m."),
    out: Optional[str] = typer.Option(None, "--out", "-o", metavar="DIR", help="Run directory (default traces/<script>-<time>)."),
    mode: Mode = typer.Option(Mode.trace, "--mode", help="trace: kernel trace of a few steps + timers; light: timers only."),
    skip_first: int = typer.Option(5, "--skip-first", min=0, metavar="N", help="Steps to run before profiling (start-up)."),
    warmup: int = typer.Option(2, "--warmup", min=0, metavar="N", help="Profiler warm-up steps (recorded, then discarded)."),
    active: int = typer.Option(5, "--active", min=1, metavar="N", help="Steps recorded in the trace (their median and spread are reported)."),
    with_stack: bool = typer.Option(False, "--stack/--no-stack", help="torch's Python tracer: every Python call in the trace (costly; see docs/collect.md)."),
    stack_samples: bool = typer.Option(True, "--stack-samples/--no-stack-samples", help="Sample the loop's Python stack in the recorded steps: the lines that launched ops (cheap)."),
    record_shapes: bool = typer.Option(False, "--shapes", help="Record input shapes (more overhead)."),
    profile_memory: bool = typer.Option(False, "--memory-events", help="Record allocator events in the trace."),
    tokens_per_step: Optional[float] = typer.Option(None, "--tokens-per-step", metavar="N", help="Tokens in one step, for tokens/s."),
    samples_per_step: Optional[float] = typer.Option(None, "--samples-per-step", metavar="N", help="Samples in one step, for samples/s."),
    step_fn: Optional[str] = typer.Option(None, "--step-fn", metavar="MODULE:FUNCTION",
                                          help="Each call of this function is one step (__main__:fn for the script's own)."),
    modules: bool = typer.Option(False, "--modules", help="Time the model's top-level modules; activation memory per module."),
    flops: bool = typer.Option(False, "--flops", help="Count FLOPs of step 2 for MFU (that step runs slower)."),
    watchdog: Optional[float] = typer.Option(None, "--watchdog", min=0.1, metavar="SECONDS", help="Dump every thread's stack when no step ends for SECONDS."),
    job_wait: float = typer.Option(120.0, "--job-wait", min=0.0, metavar="SECONDS", help="Several ranks: seconds rank 0 waits for the others' analyses."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the report."),
) -> None:
    """Profile a training script with no code change; writes a run directory and prints the report."""
    import os

    from .._profile import ProfileSession
    from ..collect.launcher import run_script
    from ..collect.session import Schedule, SessionOptions
    from ..errors import UsageError

    if not module and not os.path.isfile(script):
        raise UsageError(f"{script}: no such script")
    options = SessionOptions(
        out=out,
        name=script.rsplit(".", 1)[-1] if module else script,
        mode=mode.value if isinstance(mode, Mode) else str(mode),
        schedule=Schedule(skip_first=skip_first, warmup=warmup, active=active),
        with_stack=with_stack,
        stack_samples=stack_samples,
        record_shapes=record_shapes,
        profile_memory=profile_memory,
        tokens_per_step=tokens_per_step,
        samples_per_step=samples_per_step,
        quiet=quiet,
        modules=modules,
        flops=flops,
        watchdog_s=watchdog,
        job_wait_s=job_wait,
    )
    session = ProfileSession(options)
    args = list(script_args or [])
    misplaced = misplaced_options(args)
    try:
        code = run_script(session, script, args, module=module, step_fn=step_fn)
    except KeyboardInterrupt as exc:  # the script's Ctrl-C, after the profile was written
        raise ScriptInterrupted(exc) from None
    finally:
        # A perfkit option after SCRIPT went to the script (its argv is never changed): say so when the
        # script rejected an argument (exit status 2, argparse's) or a report was printed all the same.
        if misplaced and (not session.discarded and not quiet or session.exit_status == 2):
            print(misplaced_hint(misplaced, script), file=sys.stderr)
    raise typer.Exit(code)


def _profile_options() -> set[str]:
    """The option names ``perfkit profile`` takes (``-q``, ``--quiet``, ``--out`` ...)."""
    import click

    names: set[str] = set()
    try:
        cmd = typer.main.get_command(app)
        profile = cmd.commands["profile"] if isinstance(cmd, click.Group) or hasattr(cmd, "commands") else cmd
        for param in profile.params:
            names.update(o for o in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])] if o.startswith("-"))
    except Exception:
        pass
    return names


def misplaced_options(args: list[str]) -> list[str]:
    """perfkit profile's own options among the script's arguments (``--out=x`` counts as ``--out``)."""
    known = _profile_options()
    found = []
    for a in args:
        name = a.split("=", 1)[0] if a.startswith("--") else a
        if name in known and name not in found:
            found.append(name)
    return found


def misplaced_hint(names: list[str], script: str) -> str:
    words = " ".join(names)
    return (f"perfkit: note: {words} came after {script}, so {script} got {'it' if len(names) == 1 else 'them'}, "
            f"not perfkit; perfkit's options go before the script: perfkit profile {words} ... {script} ...")
