"""The typer application and the exit codes (see :mod:`perfkit.cli`). The command modules register
their commands on :data:`app`; :mod:`perfkit.cli` imports them all and runs it."""

from __future__ import annotations

import re
from typing import Any, Optional

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


# Plain values (a str, a path, a number in range), read without pydantic. Typer (0.2x) checks every
# parameter's value through a pydantic TypeAdapter, and importing pydantic and building the first
# adapter costs 0.1-0.15 s on every command: a third of `perfkit analyze` on a 50 MB trace. The
# values the fast path below accepts come out as typer's own would (tests/unit/test_cli_fast_params.py
# compares them over every parameter of every command); anything else (a bad value, an option
# typer checks further, another type) goes to typer's own check, so its errors are unchanged.
_NOT_FAST = object()
_INT = re.compile(r"-?(0|[1-9][0-9]{0,17})")
_FLOAT = re.compile(r"-?(0|[1-9][0-9]{0,14})(\.[0-9]{1,15})?")


def _fast_value(kind: str, info: Any, value: Any, param: Any, ctx: Any) -> Any:
    """``value`` as typer's check would return it, or ``_NOT_FAST`` when only that check can tell."""
    if kind in ("str", "bool"):  # a flag's value (None or a bool) needs no check either
        return value if type(value) is (str if kind == "str" else bool) else _NOT_FAST
    if kind == "list_str":
        return list(value) if type(value) in (list, tuple) and all(type(v) is str for v in value) else _NOT_FAST
    if kind in ("int", "float"):
        if type(value) is str and (_INT if kind == "int" else _FLOAT).fullmatch(value):
            number: Any = int(value) if kind == "int" else float(value)
        elif type(value) is (int if kind == "int" else float):
            number = value
        else:
            return _NOT_FAST
        if (info.min is not None and number < info.min) or (info.max is not None and number > info.max):
            return _NOT_FAST  # typer's own check words the error
        return number
    if kind == "path":
        if type(value) is not str or not value or "\0" in value:
            return _NOT_FAST
        from pathlib import Path

        from typer._param_types import coerce_cli_path

        # typer turns the text into a Path through pydantic, then checks it: given a Path, only the check runs
        return coerce_cli_path(Path(value), info, path_type=Path, param=param, ctx=ctx)
    return _NOT_FAST


def _fast_kind(descriptor: Any) -> Optional[str]:
    """Which plain type the parameter takes (``_fast_value``), or None for typer's own check only."""
    from pathlib import Path
    from typing import List

    info, ann = descriptor.parameter_info, descriptor.annotation
    if info.parser is not None or getattr(info, "click_type", None) is not None or descriptor.file_annotation is not None:
        return None
    if ann in (str, bool):
        return ann.__name__
    if ann in (List[str], list[str]):
        return "list_str"
    if ann in (int, float) and not info.clamp:
        return ann.__name__
    if ann is Path and info.path_type in (None, Path) and not info.allow_dash:
        return "path"
    return None


def _install_fast_params() -> None:
    """Route the plain parameters of :func:`_fast_kind` past pydantic (see above). Skipped when this
    typer has no such machinery (older versions check values without pydantic)."""
    from typer import _coercion, core

    base, build = getattr(_coercion, "RuntimeParam", None), getattr(core, "build_runtime_param", None)
    if base is None or build is None or getattr(build, "_perfkit", False):
        return
    typer_build: Any = build  # typer's own builder, kept for the values not read here

    class FastParam(base):  # type: ignore[misc, valid-type]
        """Plain values here; everything else through typer's own runtime parameter, built when first needed."""

        def __init__(self, descriptor: Any, kind: str) -> None:
            super().__init__(parameter_info=descriptor.parameter_info, annotation=descriptor.annotation)
            object.__setattr__(self, "_descriptor", descriptor)
            object.__setattr__(self, "_kind", kind)
            object.__setattr__(self, "_full", None)

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            try:
                out = _fast_value(self._kind, self.parameter_info, value, param, ctx)
            except Exception:
                out = _NOT_FAST  # typer's own check raises its own error
            if out is not _NOT_FAST:
                return out
            if self._full is None:
                object.__setattr__(self, "_full", typer_build(self._descriptor))
            return self._full._coerce_value(value, param=param, ctx=ctx)

    def build_runtime_param(descriptor: Any) -> Any:
        kind = _fast_kind(descriptor)
        return build(descriptor) if kind is None else FastParam(descriptor, kind)

    build_runtime_param._perfkit = True  # type: ignore[attr-defined]
    build_runtime_param._perfkit_typer = build  # type: ignore[attr-defined]  # typer's own (tests compare)
    core.build_runtime_param = build_runtime_param


try:
    _install_fast_params()
except Exception:  # speed only: typer's own checks stay in place
    pass

from ._exit import EXIT_BUDGET, EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK  # noqa: E402,F401


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
