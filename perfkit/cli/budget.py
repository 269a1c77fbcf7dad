"""``perfkit budget check|init``: performance budgets for CI (docs/budget.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import UsageError
from ._app import EXIT_BUDGET, EXIT_OK, app

budget_app = typer.Typer(
    name="budget",
    help="Performance budgets for CI: check runs against limits, or start a budget file from a run.",
    no_args_is_help=True,
)
app.add_typer(budget_app, name="budget")


def split_baseline(args: List[str]) -> tuple[List[str], List[str]]:
    """RUN... and the runs after ``--baseline`` (which takes every path up to the next option)."""
    runs: List[str] = []
    baseline: List[str] = []
    target = runs
    for arg in args:
        if arg == "--baseline":
            target = baseline
        elif arg.startswith("--baseline="):
            target = baseline
            baseline.append(arg.split("=", 1)[1])
        elif arg.startswith("-") and len(arg) > 1:
            raise UsageError(f"unknown option {arg}; accepted: --baseline RUN..., --junit FILE, --github")
        else:
            target.append(arg)
    if "--baseline" in args and not baseline:
        raise UsageError("--baseline needs at least one RUN")
    if not runs:
        raise UsageError("no RUN to check: perfkit budget check BUDGET.toml RUN... [--baseline RUN...]")
    return runs, baseline


@budget_app.command(
    "check",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": True},
)
def check_cmd(
    budget_file: str = typer.Argument(..., help="The budget file (TOML)."),
    runs: List[str] = typer.Argument(
        ..., help="Runs to check: run directories, analysis.json files, traces, or a folder of run folders. "
                  "--baseline RUN... (after the runs) gives the baseline runs for the relative limits."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write a JUnit XML report here."),
    github: bool = typer.Option(False, "--github", help="GitHub Actions annotations and job summary "
                                                        "(also when GITHUB_ACTIONS=true)."),
) -> None:
    """Check runs against a budget: exit 0 when every limit holds, 1 when one is exceeded, 2 for bad input.

    perfkit budget check BUDGET.toml RUN... [--baseline RUN...] [--junit FILE] [--github]
    """
    from rich.console import Console

    from ..budget.check import evaluate, load_runs
    from ..budget.spec import load_budget
    from ..report.budget import (render_budget_console, render_budget_junit, render_budget_markdown,
                                 render_github_annotations)

    from .._io import OutputError, check_output_path, write_text

    run_paths, baseline_paths = split_baseline(runs)
    if junit is not None:  # a bad output path fails before the work, not after it
        check_output_path(junit)
    budget = load_budget(budget_file)
    result = evaluate(budget, load_runs(run_paths), load_runs(baseline_paths) if baseline_paths else None)
    console = Console()
    if not console.is_terminal:  # CI logs: no terminal width to fit, so do not wrap at 80 columns
        console = Console(width=max(console.width, 160))
    render_budget_console(result, console)
    if junit is not None:
        write_text(junit, render_budget_junit(result))
    if github or os.environ.get("GITHUB_ACTIONS") == "true":
        print(render_github_annotations(result), end="", flush=True)
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary:
            try:
                with open(summary, "a", encoding="utf-8") as f:
                    f.write(render_budget_markdown(result))
            except OSError as exc:
                raise OutputError(f"{summary}: cannot append the job summary (GITHUB_STEP_SUMMARY): "
                                  f"{exc.strerror or exc}") from None
        else:
            print(render_budget_markdown(result), end="")
    raise typer.Exit(EXIT_OK if result["ok"] else EXIT_BUDGET)


@budget_app.command("init")
def init_cmd(
    run: str = typer.Argument(..., help="A run directory, an analysis.json or a trace."),
    headroom: str = typer.Option("10%", "--headroom", help="Room above the measured values, e.g. 10%."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the budget here (default: stdout)."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
) -> None:
    """Write a starting budget file from one run."""
    from ..budget.init import parse_headroom, starting_budget
    from ..run.load import load_document
    from ..run.resolve import run_paths

    from .._io import check_output_path, write_text

    room = parse_headroom(headroom)
    if out is not None:
        check_output_path(out)
        if out.exists() and not force:
            raise UsageError(f"{out}: exists; use --force to overwrite")
    paths = run_paths([run])
    if len(paths) != 1:
        raise UsageError(f"{run}: holds {len(paths)} runs; budget init takes one")
    text = starting_budget(load_document(paths[0]), paths[0], room)
    if out is None:
        print(text, end="")
    else:
        write_text(out, text)
