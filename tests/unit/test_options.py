"""The profiling options are defined once (perfkit/collect/options.py) and every entry point agrees with
that definition: ``perfkit profile``'s options, ``perfkit.profile()``'s keywords, the framework callbacks'
keywords, ``SessionOptions``' fields and the table in docs/collect.md (names, defaults, help); a wrong value
is the same one line from each; and the callbacks drive a session through its public API only.

Names (docs/collect.md, "The options, defined once"): the keyword is the field's name without a trailing
``_s``; the command's parameter is the keyword; its flags are the definition's.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
from pathlib import Path
from typing import Any, Optional

import pytest
import typer

import perfkit
from perfkit import _profile
from perfkit.cli import main
from perfkit.cli import app  # every command registered (perfkit.cli loads them lazily)
from perfkit.collect import options as opts
from perfkit.collect.options import (BY_KEYWORD, OPTIONS, Choice, Count, Flag, Number, Schedule, SessionOptions,
                                     Text, check_options, for_entry_point, from_keywords, markdown_table)
from perfkit.collect.session import Session
from perfkit.errors import PerfkitError, UsageError
from perfkit.integrations._core import CallbackOptions, CallbackProfiler

from ..conftest import REPO

#: parameters of an entry point that are not session options, each with why
CLI_ONLY = {"script", "script_args", "module", "step_fn"}  # what to run and how its steps are found
PROFILE_ONLY = {"model"}  # a live object, not an option


class _Callback(CallbackOptions):
    """The options part of both framework callbacks, without a framework."""


def _profile_command() -> Any:
    """The click command of ``perfkit profile`` (typer carries its own copy of click: duck-typed here)."""
    return typer.main.get_command(app).commands["profile"]  # type: ignore[attr-defined]


def _cli_params() -> dict[str, Any]:
    """The command's parameters that are not :data:`CLI_ONLY` (nor --help), by name."""
    return {str(p.name): p for p in _profile_command().params if p.name not in CLI_ONLY | {"help"}}


def _words(text: Optional[str]) -> str:
    return " ".join((text or "").split())


# ---------------------------------------------------------------------- one definition


def test_every_field_is_one_option_and_the_names_follow_the_convention() -> None:
    fields = [f.name for f in dataclasses.fields(SessionOptions) if f.name != "schedule"]
    fields += [f.name for f in dataclasses.fields(Schedule)]
    assert sorted(o.field for o in OPTIONS) == sorted(fields)
    for o in OPTIONS:
        assert o.keyword == (o.field[:-2] if o.field.endswith("_s") else o.field)
        assert o.help.endswith(".") and "\n" not in o.help and o.help == o.help.strip()
        assert set(o.entry_points) <= {"cli", "profile", "callbacks"} and o.entry_points
        o.check(o.keyword, o.default)  # every default is a value the option accepts
    defaults = SessionOptions()
    for o in OPTIONS:
        holder = defaults.schedule if o.field in opts.SCHEDULE_FIELDS else defaults
        assert getattr(holder, o.field) == o.default


def test_profile_keywords_defaults_and_help_agree_with_the_definition() -> None:
    params = inspect.signature(perfkit.profile).parameters
    options = for_entry_point("profile")
    assert set(params) - PROFILE_ONLY == {o.keyword for o in options}
    doc = _words(inspect.getdoc(perfkit.profile))
    for o in options:
        assert params[o.keyword].default == o.takes_default, o.keyword
        assert _words(f"{o.keyword}: {o.help}") in doc, o.keyword


def test_callback_keywords_defaults_and_help_agree_with_the_definition() -> None:
    params = dict(inspect.signature(CallbackOptions.__init__).parameters)
    params.pop("self")
    options = for_entry_point("callbacks")
    assert set(params) == {o.keyword for o in options}
    doc = _words(inspect.getdoc(CallbackOptions))
    for o in options:
        assert params[o.keyword].default == o.takes_default, o.keyword
        assert _words(f"{o.keyword}: {o.help}") in doc, o.keyword


def test_command_options_defaults_and_help_agree_with_the_definition() -> None:
    params = _cli_params()
    options = for_entry_point("cli")
    assert set(params) == {o.keyword for o in options}
    for o in options:
        p = params[o.keyword]
        assert p.param_type_name == "option"
        flags = [f for spec in o.cli_flags for f in spec.split("/")]
        assert sorted([*p.opts, *p.secondary_opts]) == sorted(flags), o.keyword
        assert p.default == o.default, o.keyword
        assert p.help == o.cli_help and _words(o.help.rstrip(".")) in _words(p.help), o.keyword
        if o.metavar:
            assert p.metavar == o.metavar


def test_the_help_lists_every_option_with_its_range(capsys: Any) -> None:
    assert main(["profile", "--help"]) == 0
    out = capsys.readouterr().out
    blocks: list[str] = []  # one per option: its lines, wrapped or not, as words
    for line in out.split("Options:", 1)[1].split("\n\n", 1)[0].splitlines():
        if line.startswith("  -"):
            blocks.append("")
        if blocks:
            blocks[-1] += " " + line
    for o in for_entry_point("cli"):
        first = o.cli_flags[0].split("/")[0]
        block = _words(next(b for b in blocks if first in [t.rstrip(",") for t in b.split()[:3]]))
        assert _words(o.help.rstrip(".")) in block, block
        if isinstance(o.check, (Count, Number)):
            bound = o.check.bound if isinstance(o.check, Number) else f">= {o.check.low}"
            assert f"; {bound}." in block, block
        if o.default not in (None, False) and not isinstance(o.check, Flag):
            assert f"[default: {o.default}]" in block, block


def test_the_docs_table_is_the_one_made_from_the_definition() -> None:
    text = (REPO / "docs" / "collect.md").read_text(encoding="utf-8")
    begin = "<!-- options table: written by scripts/options_table.py from perfkit/collect/options.py; do not edit -->\n"
    assert text.count(begin) == 1, "docs/collect.md: the options table's markers are missing"
    table = text.split(begin, 1)[1].split("<!-- end of the options table -->", 1)[0]
    assert table == markdown_table(), "docs/collect.md is out of date: python scripts/options_table.py"
    for o in OPTIONS:  # every option has its row, with its help
        assert f"| `{o.field}` |" in table and o.help.replace("|", "\\|") in table


# ---------------------------------------------------------------------- each entry point passes every option on


def _other_value(o: opts.Option, tmp_path: Path) -> Any:
    """A value of option ``o`` that is not its default and that it accepts."""
    check = o.check
    if isinstance(check, Flag):
        return not o.default
    if isinstance(check, Choice):
        return next(c for c in check.choices if c != o.default)
    if isinstance(check, Count):
        return o.default + 3
    if isinstance(check, Number):
        return 7.5 if o.default is None else o.default / 4
    if isinstance(check, Text):
        return str(tmp_path / "elsewhere") if check.path else "named"
    raise AssertionError(f"no other value for {o.keyword}")


def _others(entry: str, tmp_path: Path) -> dict[str, Any]:
    return {o.keyword: _other_value(o, tmp_path) for o in for_entry_point(entry)}  # type: ignore[arg-type]


def test_profile_passes_every_option_to_the_session(tmp_path: Path) -> None:
    values = _others("profile", tmp_path)
    session = perfkit.profile(**values)  # never started: nothing is created
    assert session.options == from_keywords(**values)
    assert session.options != SessionOptions(name=values["name"], out=values["out"])


def test_callbacks_pass_every_option_to_the_session(tmp_path: Path) -> None:
    values = _others("callbacks", tmp_path)
    callback = _Callback(**values)
    assert callback.profiler.options == from_keywords(**values)


def _cli_words(values: dict[str, Any]) -> list[str]:
    words: list[str] = []
    for keyword, value in values.items():
        o = BY_KEYWORD[keyword]
        flag = o.cli_flags[0]
        if isinstance(o.check, Flag):
            on, _, off = flag.partition("/")
            words.append(on if value else off)
            assert words[-1], keyword
        else:
            words += [flag, str(value)]
    return words


class _Captured(PerfkitError):
    pass


def test_the_command_passes_every_option_to_the_session(tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    values = _others("cli", tmp_path)
    script = tmp_path / "train.py"
    script.write_text("pass\n")
    seen: list[SessionOptions] = []

    def capture(options: SessionOptions, **kw: Any) -> None:
        seen.append(options)
        raise _Captured("captured")

    monkeypatch.setattr(_profile, "ProfileSession", capture)
    assert main(["profile", *_cli_words(values), str(script)]) == 2
    assert capsys.readouterr().err == "perfkit: error: captured\n"
    assert seen == [from_keywords(name=str(script), **values)]


# ---------------------------------------------------------------------- one check, one message


#: (keyword, a wrong value) for every check with a range or choice; str(value) is what the command gets
WRONG = [
    ("mode", "heavy"), ("skip_first", -1), ("warmup", -2), ("active", 0), ("active", "abc"),
    ("tokens_per_step", 0), ("tokens_per_step", -3), ("samples_per_step", math.nan),
    ("samples_per_step", math.inf), ("watchdog", 0.05), ("job_wait", -1), ("wait", -1),
]


def _from_profile(keyword: str, value: Any, tmp_path: Path) -> str:
    with pytest.raises(UsageError) as info:
        perfkit.profile(out=str(tmp_path / "r"), **{keyword: value})
    return str(info.value)


def _from_callback(keyword: str, value: Any) -> str:
    with pytest.raises(UsageError) as info:
        _Callback(**{keyword: value})
    return str(info.value)


def _from_cli(keyword: str, value: Any, tmp_path: Path, capsys: Any) -> str:
    script = tmp_path / "train.py"
    script.write_text("raise SystemExit('the script must not run')\n")
    assert main(["profile", BY_KEYWORD[keyword].cli_flags[0], str(value), str(script)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("perfkit: error: ") and captured.err.count("\n") == 1
    return str(captured.err)[len("perfkit: error: "):-1]


def _from_session(keyword: str, value: Any) -> str:
    """SessionOptions set directly (a field of its own name), then a session."""
    o = BY_KEYWORD[keyword]
    options = SessionOptions()
    setattr(options.schedule if o.field in opts.SCHEDULE_FIELDS else options, o.field, value)
    with pytest.raises(UsageError) as info:
        Session(options)
    return str(info.value)


@pytest.mark.parametrize("keyword, value", WRONG, ids=[f"{k}={v!r}" for k, v in WRONG])
def test_a_wrong_value_is_the_same_one_line_from_every_entry_point(keyword: str, value: Any, tmp_path: Path,
                                                                   capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)  # a default run directory would be made here: none must be
    o = BY_KEYWORD[keyword]
    messages = {"session": _from_session(keyword, value)}
    if "profile" in o.entry_points:
        messages["profile"] = _from_profile(keyword, value, tmp_path)
    if "callbacks" in o.entry_points:
        messages["callbacks"] = _from_callback(keyword, value)
    if "cli" in o.entry_points:
        messages["cli"] = _from_cli(keyword, value, tmp_path, capsys)
    assert len(messages) >= 2 or o.entry_points == ("profile",)
    first = messages["session"]
    assert all(m == first for m in messages.values()), messages
    assert first.startswith(f"{keyword} must be ") and "\n" not in first
    assert sorted(p.name for p in tmp_path.iterdir()) == (["train.py"] if "cli" in o.entry_points else [])


def test_the_messages_name_the_value_and_what_is_accepted() -> None:
    assert _from_callback("active", 0) == "active must be >= 1 (got 0)"
    assert _from_callback("active", "abc") == "active must be a whole number >= 1 (got 'abc')"
    assert _from_callback("mode", "fast") == "mode must be 'trace' or 'light' (not 'fast')"
    assert _from_callback("watchdog", 0) == "watchdog must be >= 0.1 (got 0)"
    assert _from_callback("tokens_per_step", math.nan) == "tokens_per_step must be a number > 0 (got nan)"
    assert _from_callback("skip_first", True) == "skip_first must be a whole number >= 0 (got True)"
    assert _from_callback("flops", "yes") == "flops must be True or False (got 'yes')"
    with pytest.raises(UsageError, match="unknown profiling option 'actve'"):
        CallbackProfiler("Test", "test hook", None, actve=3)


def test_right_values_pass_and_none_schedule_values_take_the_defaults() -> None:
    check_options(SessionOptions(tokens_per_step=1e-3, watchdog_s=0.1, job_wait_s=0, schedule=Schedule(0, 0, 0, 1)))
    assert from_keywords(skip_first=None, warmup=None, active=None).schedule == Schedule()
    assert _Callback(active=None, skip_first=None).profiler.options.schedule == Schedule()


# ---------------------------------------------------------------------- the session API of the callbacks


def test_the_integrations_use_no_underscored_name_of_a_session() -> None:
    """perfkit/integrations drive a session only through its public API (perfkit/collect/session.py)."""
    offences = []
    for path in sorted((REPO / "perfkit" / "integrations").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and "collect" in node.module:
                offences += [f"{path.name}:{node.lineno}: imports {a.name}" for a in node.names
                             if a.name.startswith("_") and not a.name.startswith("__")]
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                owner = node.value
                if not (isinstance(owner, ast.Name) and owner.id == "self"):  # a class's own state is its own
                    offences.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    assert offences == []


def test_the_public_session_api(tmp_path: Path) -> None:
    import torch

    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    session = Session(SessionOptions(out=str(tmp_path / "run"), mode="light", report=False))
    assert not session.started and not session.finished
    session.start()
    session.explicit_steps = True  # the caller marks the steps
    session.watch_model(model, modules=False)
    assert session.model is model and session.module_timer is None
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    assert session.add_optimizer(optimizer) and not session.add_optimizer(optimizer) and not session.add_optimizer(None)
    session.mark_step()
    assert session.guard("memory accounting", lambda: 1 / 0) is None
    assert "memory accounting" in session.instrument_errors
    session.finish(0)
    assert session.started and session.finished and session.steps == 1
    assert session.recorded is not None and session.recorded.runtime["step_source"] == "perfkit.step"
    assert perfkit.collect.current() is None


def test_a_failed_start_leaves_nothing_behind(tmp_path: Path, monkeypatch: Any, capfd: Any) -> None:
    """The callback's start fails after the session claimed its run directory: discard() removes it."""
    from perfkit.integrations._core import CallbackSession

    real = CallbackSession.start

    def start_then_fail(self: CallbackSession) -> CallbackSession:
        real(self)
        raise RuntimeError("injected")

    monkeypatch.setattr(CallbackSession, "start", start_then_fail)
    profiler = CallbackProfiler("Test", "test hook", str(tmp_path / "run"), mode="light")
    profiler.start(None)
    assert profiler.off and profiler.session is not None and profiler.session.finished
    assert perfkit.collect.current() is None
    assert not (tmp_path / "run").exists()
    err = [ln for ln in capfd.readouterr().err.splitlines() if ln.startswith("perfkit:")]
    assert err == ["perfkit: warning: Test callback failed and is switched off for the rest of the run "
                   "(RuntimeError: injected); the script goes on"]


@pytest.mark.parametrize("indent", ["    ", ""], ids=["python<=3.12", "python>=3.13"])
def test_the_args_section_lands_before_returns_whatever_the_docstring_indentation(indent: str) -> None:
    """Python 3.13's compiler strips docstrings' common indentation: the options must still be documented."""
    import inspect

    doc = f"Summary line.\n\n{indent}Body text.\n\n{indent}Returns:\n{indent}    The session.\n{indent}"
    out = inspect.cleandoc(opts.with_args(doc, "profile"))
    args_at, returns_at = out.find("\nArgs:\n"), out.find("\nReturns:\n")
    assert 0 < args_at < returns_at, out
    first = opts.for_entry_point("profile")[0]
    assert f"\n    {first.keyword}: " in out[args_at:returns_at]
    no_returns = inspect.cleandoc(opts.with_args(f"Summary line.\n\n{indent}Body text.\n{indent}", "callbacks"))
    assert "\nArgs:\n" in no_returns and no_returns.index("Body text.") < no_returns.index("Args:")
