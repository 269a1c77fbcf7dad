"""The typer application and the exit codes (see :mod:`perfkit.cli`). The command modules register
their commands on :data:`app`; :mod:`perfkit.cli` imports them all and runs it."""

from __future__ import annotations

from typing import Any

import typer

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
    if option is not None and rich_type is not None and not getattr(rich_type, "_perfkit", False):
        def display_type_rich(self: Any, ctx: Any) -> Any:
            if getattr(self, "is_flag", False) and getattr(self, "metavar", None) is None:
                return None  # a flag takes no value: no type to show
            return rich_type(self, ctx)

        display_type_rich._perfkit = True  # type: ignore[attr-defined]
        option.display_type_rich = display_type_rich
    arg_type = getattr(argument, "display_type_rich", None)
    if argument is not None and arg_type is not None and not getattr(arg_type, "_perfkit", False):
        def arg_display_type_rich(self: Any, ctx: Any) -> Any:
            return None if getattr(self, "metavar", None) is not None else arg_type(self, ctx)

        arg_display_type_rich._perfkit = True  # type: ignore[attr-defined]
        argument.display_type_rich = arg_display_type_rich
    usage = getattr(argument, "_usage_display_name", None)
    if argument is not None and usage is not None and not getattr(usage, "_perfkit", False):
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
