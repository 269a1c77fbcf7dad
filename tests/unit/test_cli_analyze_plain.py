"""``perfkit analyze`` reads a plain command line without typer (issue #15: ~25 ms of the command).
Its reading must be typer's: over generated command lines (every option, both ``--opt value`` and
``--opt=value``, options between the traces) the keyword arguments are the ones typer passes, and
every line it does not read (help, unknown, repeated or misspelt options, bad or missing values)
is left to typer. The typer command is built from the same PARAMS: names, flags, defaults, help
and limits agree."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command

from perfkit import cli
from perfkit.cli import analyze as analyze_mod
from perfkit.cli.analyze_run import PARAMS, plain_args

VALUES: dict[str, list[str]] = {
    "path": ["out.json", "a b/c.md", "./x", "é.html"],
    "int": ["1", "3", "10", "0", "250"],
    "str": ["local", "ray", "auto", "ray://h:10001", "x"],
}


def _typer_kwargs(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> Any:
    """What typer passes to the command's work for ``args`` (or the exit code it stops with)."""
    got: list[dict[str, Any]] = []
    monkeypatch.setattr(analyze_mod, "run", lambda traces, **kw: got.append({"traces": traces, **kw}))
    try:
        cli.app(args=args, standalone_mode=False)
    except SystemExit as exc:
        return ("exit", exc.code)
    except Exception as exc:  # a usage error of typer's click
        return ("error", type(exc).__name__)
    return got[0] if got else ("no call",)


def _line(rng: random.Random) -> list[str]:
    traces = [rng.choice(["t.json", "r0.json.gz", "dir", "a b.json"]) for _ in range(rng.randint(1, 3))]
    items: list[list[str]] = [[t] for t in traces]
    for key in rng.sample([k for k in PARAMS if k != "traces"], rng.randint(0, 6)):
        p = PARAMS[key]
        flag = rng.choice(p.flags)
        if p.kind == "flag":
            items.append([flag])
            continue
        value = rng.choice(VALUES[p.kind])
        if p.kind == "int" and p.min is not None and int(value) < p.min:
            value = str(p.min)
        items.append([f"{flag}={value}"] if flag.startswith("--") and rng.random() < 0.4 else [flag, value])
    rng.shuffle(items)
    return ["analyze"] + [a for item in items for a in item]


def test_plain_lines_read_as_typer_reads_them(monkeypatch: pytest.MonkeyPatch) -> None:
    cli.load_commands(["analyze"])
    rng = random.Random(15)
    for _ in range(300):
        args = _line(rng)
        plain = plain_args(args)
        assert plain is not None, args
        assert plain == _typer_kwargs(monkeypatch, args), args


@pytest.mark.parametrize("args", [
    ["analyze"], ["analyze", "--help"], ["analyze", "-h", "t.json"], ["analyze", "t.json", "--top", "0"],
    ["analyze", "t.json", "--top", "x"], ["analyze", "t.json", "--top", "05"], ["analyze", "t.json", "--json"],
    ["analyze", "t.json", "--json="], ["analyze", "t.json", "--quiet=1"], ["analyze", "t.json", "-q", "-q"],
    ["analyze", "t.json", "--jsn", "o"], ["analyze", "--", "-t.json"], ["analyze", "t.json", "--workers", "-1"],
    ["analyze", "t.json", "-qx"], ["analyze", "-", "--json", "o"], ["-q", "analyze", "t.json"],
    ["analyze", "t.json", "--top", " 7"], ["analyze", "t.json", "--json", "-o.json"],
])
def test_other_lines_are_left_to_typer(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    cli.load_commands(["analyze"])
    assert plain_args(args) is None
    _typer_kwargs(monkeypatch, args)  # typer answers them (an error, the help, or a value it reads itself)


def test_the_typer_command_is_built_from_params() -> None:
    cli.load_commands(["analyze"])
    command = get_command(cli.app).commands["analyze"]  # type: ignore[attr-defined]
    params = {p.name: p for p in command.params}
    assert list(params) == list(PARAMS)
    for key, p in PARAMS.items():
        c = params[key]
        assert c.help == p.help
        if p.kind == "traces":
            assert c.required and c.nargs == -1
            continue
        assert sorted(c.opts + c.secondary_opts) == sorted(p.flags)
        assert c.default == p.default
        assert c.is_flag == (p.kind == "flag")
        assert c.type_descriptor.parameter_info.min == p.min
        want = {"path": Path, "int": int, "str": str, "flag": bool}[p.kind]
        annotation = analyze_mod.analyze_cmd.__annotations__[key]
        assert want.__name__ in str(annotation), (key, annotation)
