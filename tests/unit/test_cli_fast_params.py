"""Plain option values are read without pydantic (issue #15: typer checks every value through a pydantic
TypeAdapter, 0.1-0.15 s of every command). Over every parameter of every command, the fast path gives
what typer's own check gives: the same value of the same type, or the same error."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from typer import core
from typer._click import Context
from typer.main import get_command

from perfkit.cli import app
from perfkit.cli._app import _fast_kind

VALUES: dict[str, list[Any]] = {
    "str": ["x", "", "é", "-", "a b", "3"],
    "bool": [True, False, "true", "0", "yes"],
    "int": ["5", "0", "1", "-1", "65535", "65536", 3, "007", "1_000", " 7", "abc", "3.5", "", "+2",
            "99999999999999999999", "123456789012345678", 2.0, True],
    "float": ["0.5", "1", "-2", "0", "0.001", "0.0005", 2.5, 3, "1e3", "nan", "inf", "abc", "", "1.", ".5",
              "1_0", "0.1", True],
    "list_str": [["a", "b"], ("a",), ["x y", ""], ["a", 1], "a"],
}


def _path_values(tmp_path: Path) -> list[Any]:
    existing = tmp_path / "here.json"
    existing.write_text("{}")
    locked = tmp_path / "locked.json"
    locked.write_text("{}")
    locked.chmod(0)
    return ["out.json", str(existing), str(tmp_path), str(locked), str(tmp_path / "no" / "such"), "-", "",
            "a\0b", existing, 5]


def _params() -> Iterator[tuple[str, Any, Any]]:
    root = get_command(app)
    stack = [("perfkit", root)]
    while stack:
        name, cmd = stack.pop()
        for param in cmd.params:
            if getattr(param, "type_descriptor", None) is not None:
                yield name, cmd, param
        stack.extend((f"{name} {n}", c) for n, c in getattr(cmd, "commands", {}).items())


def _outcome(runtime: Any, value: Any, param: Any, ctx: Any) -> tuple[Any, ...]:
    try:
        out = runtime.coerce(value, param=param, ctx=ctx)
    except Exception as exc:  # the error the user sees: its type and its words
        return ("error", type(exc).__name__, str(exc))
    return ("value", type(out), repr(out))  # repr: a NaN equals itself


def test_fast_path_is_installed() -> None:
    assert getattr(core.build_runtime_param, "_perfkit", False)


def test_same_values_and_errors_as_typer(tmp_path: Path) -> None:
    typer_own = core.build_runtime_param._perfkit_typer  # type: ignore[attr-defined]
    kinds_seen: dict[str, int] = {}
    errors = 0
    for name, cmd, param in _params():
        kind = _fast_kind(param.type_descriptor)
        if kind is None:
            continue
        kinds_seen[kind] = kinds_seen.get(kind, 0) + 1
        ctx = Context(cmd, info_name=name)
        fast = core.build_runtime_param(param.type_descriptor)
        own = typer_own(param.type_descriptor)
        for value in (_path_values(tmp_path) if kind == "path" else VALUES[kind]):
            if isinstance(value, (list, tuple)) != (kind == "list_str") and not isinstance(value, str):
                continue  # click hands a list only to a many-valued parameter
            expected = _outcome(own, value, param, ctx)
            assert _outcome(fast, value, param, ctx) == expected, (name, param.name, value)
            errors += expected[0] == "error"
    # every kind of plain parameter perfkit has was compared
    assert {"str", "bool", "int", "float", "path", "list_str"} <= set(kinds_seen), kinds_seen
    assert errors >= 50  # and the bad values' errors, worded by typer


def test_plain_values_never_build_typers_check(tmp_path: Path) -> None:
    """Valid plain values are answered without typer's pydantic check (what makes the fast path fast)."""
    good = {"str": "x", "bool": True, "int": "7", "float": "0.5", "list_str": ["a"], "path": str(tmp_path / "o.json")}
    count = 0
    for name, cmd, param in _params():
        kind = _fast_kind(param.type_descriptor)
        if kind is None:
            continue
        info = param.type_descriptor.parameter_info
        value = good[kind]
        if kind == "int" and info.min is not None and int(value) < info.min:
            value = str(int(info.min))
        fast = core.build_runtime_param(param.type_descriptor)
        fast.coerce(value, param=param, ctx=Context(cmd, info_name=name))
        assert fast._full is None, (name, param.name)  # type: ignore[attr-defined]
        count += 1
    assert count >= 50

