"""``perfkit profile [OPTIONS] SCRIPT [SCRIPT_ARGS]...``: run a training script under the profiler."""

from __future__ import annotations

import sys
from typing import Any, List, Optional

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


def _option(keyword: str) -> Any:
    """The typer option of profiling option ``keyword``: default, flags, help and check from its one
    definition (perfkit/collect/options.py). A value is checked as it is parsed: a wrong one is the
    one-line UsageError ``perfkit.profile()`` raises for it (printed as ``perfkit: error: ...``, exit 2)."""
    from ..collect.options import BY_KEYWORD, Flag, Text, parse_cli

    spec = BY_KEYWORD[keyword]
    checked = {} if isinstance(spec.check, (Flag, Text)) else {"parser": parse_cli(keyword)}
    return typer.Option(spec.default, *spec.cli_flags, metavar=spec.metavar, help=spec.cli_help, **checked)


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
    out: Optional[str] = _option("out"),
    mode: str = _option("mode"),
    skip_first: int = _option("skip_first"),
    warmup: int = _option("warmup"),
    active: int = _option("active"),
    with_stack: bool = _option("with_stack"),
    stack_samples: bool = _option("stack_samples"),
    record_shapes: bool = _option("record_shapes"),
    profile_memory: bool = _option("profile_memory"),
    tokens_per_step: Optional[float] = _option("tokens_per_step"),
    samples_per_step: Optional[float] = _option("samples_per_step"),
    step_fn: Optional[str] = typer.Option(None, "--step-fn", metavar="MODULE:FUNCTION",
                                          help="Each call of this function is one step (__main__:fn for the script's own)."),
    modules: bool = _option("modules"),
    flops: bool = _option("flops"),
    watchdog: Optional[float] = _option("watchdog"),
    job_wait: float = _option("job_wait"),
    quiet: bool = _option("quiet"),
) -> None:
    """Profile a training script with no code change; writes a run directory and prints the report."""
    import os

    from .._profile import ProfileSession
    from ..collect.launcher import run_script
    from ..collect.options import from_keywords
    from ..errors import UsageError

    options = from_keywords(  # checked here too: each value was checked as it was parsed (_option)
        out=out,
        name=script.rsplit(".", 1)[-1] if module else script,
        mode=mode,
        skip_first=skip_first,
        warmup=warmup,
        active=active,
        with_stack=with_stack,
        stack_samples=stack_samples,
        record_shapes=record_shapes,
        profile_memory=profile_memory,
        tokens_per_step=tokens_per_step,
        samples_per_step=samples_per_step,
        quiet=quiet,
        modules=modules,
        flops=flops,
        watchdog=watchdog,
        job_wait=job_wait,
    )
    if not module and not os.path.isfile(script):
        raise UsageError(f"{script}: no such script")
    from ..collect.session import require_torch

    require_torch("perfkit profile")
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
    """The option names ``perfkit profile`` takes (``-q``, ``--quiet``, ``--out`` ...).

    Read from the command typer builds, by its attributes: typer 0.2x builds it with its own copy of
    click (``typer._click``) and does not install click itself, so ``import click`` would fail there."""
    names: set[str] = set()
    try:
        cmd = typer.main.get_command(app)
        profile = cmd.commands["profile"] if hasattr(cmd, "commands") else cmd
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
