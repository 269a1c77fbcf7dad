"""``perfkit profile [OPTIONS] SCRIPT [ARGS]...``: run a training script under the profiler."""

from __future__ import annotations

from typing import List, Optional

import typer

from ..collect.launcher import ScriptError  # noqa: F401  (the command line catches it: perfkit/cli/__init__.py)
from . import app


class ScriptInterrupted(Exception):
    """The profiled script ended by Ctrl-C: carries its KeyboardInterrupt past the command-line parser
    (which would turn it into "Aborted"), so that ``main`` re-raises it and the interpreter ends as it
    ends the bare script: the traceback, then death by SIGINT."""

    def __init__(self, interrupt: KeyboardInterrupt):
        super().__init__("KeyboardInterrupt")
        self.interrupt = interrupt


@app.command(
    "profile",
    context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
)
def profile_cmd(
    script: str = typer.Argument(..., help="The training script (or, with -m, a module name)."),
    script_args: Optional[List[str]] = typer.Argument(None, help="Arguments passed to the script unchanged."),
    module: bool = typer.Option(False, "-m", "--module", help="SCRIPT is a module name, run like python -m."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Run directory (default traces/<script>-<time>)."),
    mode: str = typer.Option("trace", "--mode", help="trace: kernel trace of a few steps + timers; light: timers only."),
    skip_first: int = typer.Option(5, "--skip-first", min=0, help="Steps to run before profiling (start-up)."),
    warmup: int = typer.Option(2, "--warmup", min=0, help="Profiler warm-up steps (discarded)."),
    active: int = typer.Option(3, "--active", min=1, help="Steps recorded in the trace."),
    with_stack: bool = typer.Option(False, "--stack/--no-stack", help="torch's Python tracer: every Python call in the trace (costly; see docs/collect.md)."),
    stack_samples: bool = typer.Option(True, "--stack-samples/--no-stack-samples", help="Sample the loop's Python stack in the recorded steps: the lines that launched ops (cheap)."),
    record_shapes: bool = typer.Option(False, "--shapes", help="Record input shapes (more overhead)."),
    profile_memory: bool = typer.Option(False, "--memory-events", help="Record allocator events in the trace."),
    tokens_per_step: Optional[float] = typer.Option(None, "--tokens-per-step", help="For tokens/s."),
    samples_per_step: Optional[float] = typer.Option(None, "--samples-per-step", help="For samples/s."),
    step_fn: Optional[str] = typer.Option(None, "--step-fn", help="module:function whose calls are the steps."),
    modules: bool = typer.Option(False, "--modules", help="Time the model's top-level modules; activation memory per module."),
    flops: bool = typer.Option(False, "--flops", help="Count FLOPs of step 2 for MFU (that step runs slower)."),
    watchdog: Optional[float] = typer.Option(None, "--watchdog", min=0.1, help="Dump every thread's stack when no step ends for SECONDS."),
    job_wait: float = typer.Option(120.0, "--job-wait", min=0.0, help="Several ranks: seconds rank 0 waits for the others' analyses."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the report."),
) -> None:
    """Profile a training script with no code change; writes a run directory and prints the report."""
    import os

    from ..collect.launcher import run_script
    from ..collect.session import ProfileSession, Schedule, SessionOptions
    from ..errors import UsageError

    if not module and not os.path.isfile(script):
        raise UsageError(f"{script}: no such script")
    options = SessionOptions(
        out=out,
        name=script.rsplit(".", 1)[-1] if module else script,
        mode=mode,
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
    try:
        code = run_script(session, script, list(script_args or []), module=module, step_fn=step_fn)
    except KeyboardInterrupt as exc:  # the script's Ctrl-C, after the profile was written
        raise ScriptInterrupted(exc) from None
    raise typer.Exit(code)
