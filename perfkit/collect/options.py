"""The profiling options, defined once.

Every option a profiling session takes is one field of :class:`SessionOptions` (the trace
schedule's four: of :class:`Schedule`), and the field carries all there is to say about the
option in its metadata (:class:`Option`): its help text, unit, the values it accepts (a
:class:`Check`), its flags on the command line and which entry points take it. The entry points
are derived from, or tested against, these fields:

* ``perfkit profile``'s options (perfkit/cli/profile.py builds each with :func:`Option.cli_help`
  and :func:`parse_cli`: default, flags, help and check from here);
* :func:`perfkit.profile`'s keyword arguments (written out for IDEs and type checkers; its
  docstring's ``Args`` is :func:`docstring_args`);
* the framework callbacks' keyword arguments (:class:`perfkit.integrations._core.CallbackOptions`);
* the options table of docs/collect.md (:func:`markdown_table`; ``python scripts/options_table.py``
  rewrites it).

tests/unit/test_options.py checks that the names, defaults and help of all of them agree.

Names: the field is the name in :class:`SessionOptions`; the keyword of ``perfkit.profile()``
and of the callbacks is the field's name without a trailing ``_s`` (the unit, seconds, is in the
help: ``watchdog_s`` is ``watchdog=``); the flag is ``--`` and the keyword with dashes for
underscores unless the field names its own (``with_stack`` is ``--stack/--no-stack``).

Validation is :func:`check_options`, called by every entry point (the session, the callbacks at
construction, the command line as it parses): a wrong value is one
:class:`perfkit.errors.UsageError` line, the same words from each.

This module imports nothing but the standard library and :mod:`perfkit.errors` (``perfkit
profile --help`` reads it without torch).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from ..errors import UsageError

#: What a session records: "trace" (a kernel trace of a few steps, plus the timers) or "light" (timers only).
Mode = Literal["trace", "light"]
MODES: tuple[Mode, ...] = ("trace", "light")

#: The entry points that take options: ``perfkit profile``, ``perfkit.profile()``, the framework callbacks.
EntryPoint = Literal["cli", "profile", "callbacks"]
ENTRY_POINTS: tuple[EntryPoint, ...] = ("cli", "profile", "callbacks")


# ---------------------------------------------------------------------- checks


class Check:
    """The values an option accepts: :meth:`__call__` raises one UsageError line naming the option."""

    #: the accepted values in words ("a whole number >= 0"), for help texts and the docs
    words = "anything"

    def __call__(self, keyword: str, value: Any) -> None:
        """Raise :class:`UsageError` when ``value`` is not accepted."""

    def parse(self, text: Any) -> Any:
        """The value of a command-line word (the check runs after)."""
        return text


class Flag(Check):
    words = "True or False"

    def __call__(self, keyword: str, value: Any) -> None:
        if not (isinstance(value, bool) or (isinstance(value, int) and value in (0, 1))):
            raise UsageError(f"{keyword} must be True or False (got {value!r})")


class Choice(Check):
    def __init__(self, *choices: str) -> None:
        self.choices = choices
        self.words = " or ".join(f"'{c}'" for c in choices)

    def __call__(self, keyword: str, value: Any) -> None:
        if value not in self.choices:
            raise UsageError(f"{keyword} must be {self.words} (not {value!r})")


class Count(Check):
    """A whole number of steps, at least ``low``."""

    def __init__(self, low: int) -> None:
        self.low = low
        self.words = f"a whole number >= {low}"

    def __call__(self, keyword: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{keyword} must be {self.words} (got {value!r})")
        if value < self.low:
            raise UsageError(f"{keyword} must be >= {self.low} (got {value})")

    def parse(self, text: Any) -> Any:
        if isinstance(text, str):
            try:
                return int(text.strip())
            except ValueError:
                return text  # the check names it
        return text


class Number(Check):
    """A finite number, above ``low`` (``strict``) or at least ``low``; None allowed when ``optional``."""

    def __init__(self, low: float, *, strict: bool = False, optional: bool = False) -> None:
        self.low, self.strict, self.optional = low, strict, optional
        bound = f"> {low:g}" if strict else f">= {low:g}"
        self.bound = bound
        self.words = f"a number {bound}" + (", or None" if optional else "")

    def __call__(self, keyword: str, value: Any) -> None:
        if value is None and self.optional:
            return
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not math.isfinite(value):
            raise UsageError(f"{keyword} must be a number {self.bound} (got {value!r})")
        if value < self.low or (self.strict and value == self.low):
            raise UsageError(f"{keyword} must be {self.bound} (got {value:g})")

    def parse(self, text: Any) -> Any:
        if isinstance(text, str):
            try:
                return float(text.strip())
            except ValueError:
                return text
        return text


class Text(Check):
    """A string (a path, when ``path``: str or os.PathLike); None allowed when ``optional``."""

    def __init__(self, *, path: bool = False, optional: bool = False) -> None:
        self.path, self.optional = path, optional
        self.words = ("a path" if path else "a string") + (", or None" if optional else "")

    def __call__(self, keyword: str, value: Any) -> None:
        if value is None and self.optional:
            return
        kinds: tuple[type, ...] = (str, os.PathLike) if self.path else (str,)
        if not isinstance(value, kinds):
            raise UsageError(f"{keyword} must be {'a path' if self.path else 'a string'} (got {value!r})")


# ---------------------------------------------------------------------- the options


class _Same:
    """The default of :attr:`Option.keyword_default`: the keyword's default is the field's."""

    def __repr__(self) -> str:
        return "SAME"


SAME: Any = _Same()


@dataclass(frozen=True)
class Option:
    """What there is to say about one option (the metadata of its field); see the module docstring."""

    help: str  #: one sentence (the command's --help, the docstrings, docs/collect.md)
    check: Check
    unit: Optional[str] = None  #: "steps", "seconds", ... (None: a flag, a name, a path)
    #: ``perfkit profile``'s flags: ``("--out", "-o")``, ``("--stack/--no-stack",)``; ``None``: the
    #: default, ``--`` + keyword; ignored when "cli" is not among :attr:`entry_points`
    flags: Optional[tuple[str, ...]] = None
    metavar: Optional[str] = None  #: the command line's name of the value ("N", "SECONDS", "DIR")
    entry_points: tuple[EntryPoint, ...] = ENTRY_POINTS
    #: the keyword's default where it differs from the field's, and what that default means
    keyword_default: Any = SAME
    keyword_default_means: str = ""
    #: set by :func:`options`: the field's name, the keyword, the default
    field: str = ""
    keyword: str = ""
    default: Any = None

    @property
    def cli_flags(self) -> tuple[str, ...]:
        return self.flags if self.flags is not None else ("--" + self.keyword.replace("_", "-"),)

    @property
    def cli_help(self) -> str:
        """The help of ``perfkit profile --help``: the sentence, and the values accepted unless a flag."""
        if isinstance(self.check, (Flag, Choice, Text)):
            return self.help
        bound = self.check.words.replace("a whole number ", "").replace("a number ", "").replace(", or None", "")
        return f"{self.help.rstrip('.')}; {bound}."

    @property
    def takes_default(self) -> Any:
        """The default of the keyword in ``perfkit.profile()`` and the callbacks."""
        return self.default if self.keyword_default is SAME else self.keyword_default


def _opt(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING, **meta: Any) -> Any:
    """A dataclass field whose metadata is its :class:`Option`."""
    spec = Option(**meta)
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata={"option": spec})
    return field(default=default, metadata={"option": spec})


@dataclass
class Schedule:
    """Which steps the kernel trace covers (torch.profiler.schedule, one cycle).

    Defaults skip start-up (compilation, allocator growth, autotuning) and
    record a few steady steps.
    """

    skip_first: int = _opt(5, help="Steps run before anything is recorded (start-up: compilation, allocator "
                           "growth, autotuning).", check=Count(0), unit="steps", metavar="N")
    wait: int = _opt(0, help="Further steps run before the profiler starts (the same as a larger skip_first).",
                     check=Count(0), unit="steps", metavar="N", entry_points=("profile",))
    warmup: int = _opt(2, help="Steps run with the profiler on, then discarded (its own warm-up).",
                       check=Count(0), unit="steps", metavar="N")
    #: five, so that a median and a spread mean something and one slow step neither decides the
    #: figures nor leaves too few (docs/collect.md, "The profiled window")
    active: int = _opt(5, help="Steps recorded in the trace (their median and spread are reported).",
                       check=Count(1), unit="steps", metavar="N")

    def validate(self) -> None:
        """Raise one UsageError line for the first field out of range (:func:`check_options`)."""
        for f in dataclasses.fields(self):
            spec: Option = f.metadata["option"]
            spec.check(_keyword(f.name), getattr(self, f.name))

    @property
    def last_step(self) -> int:
        """Number of step() calls after which the trace is complete."""
        return self.skip_first + self.wait + self.warmup + self.active


@dataclass
class SessionOptions:
    """Everything a profiling session is told (see the module docstring: each field is one option)."""

    out: Optional[str] = _opt(
        None, help="Run directory (default traces/<script>-<time>).", check=Text(path=True, optional=True),
        flags=("--out", "-o"), metavar="DIR")
    name: str = _opt("run", help="The name in the default run directory, traces/<name>-<time>.",
                     check=Text(), entry_points=("profile", "callbacks"), keyword_default=None,
                     keyword_default_means="the script's file name, as perfkit profile names it")
    mode: Mode = _opt("trace", help="trace: kernel trace of a few steps + timers; light: timers only.",
                      check=Choice(*MODES), metavar="<trace|light>")
    schedule: Schedule = field(default_factory=Schedule)  #: skip_first, wait, warmup, active: see Schedule
    with_stack: bool = _opt(False, help="torch's Python tracer: every Python call in the trace (costly; see "
                            "docs/collect.md).", check=Flag(), flags=("--stack/--no-stack",))
    stack_samples: bool = _opt(True, help="Sample the loop's Python stack in the recorded steps: the lines "
                               "that launched ops (cheap).", check=Flag(),
                               flags=("--stack-samples/--no-stack-samples",))
    record_shapes: bool = _opt(False, help="Record input shapes (more overhead).", check=Flag(),
                               flags=("--shapes",))
    profile_memory: bool = _opt(False, help="Record allocator events in the trace.", check=Flag(),
                                flags=("--memory-events",))
    tokens_per_step: Optional[float] = _opt(None, help="Tokens in one step, for tokens/s.",
                                            check=Number(0, strict=True, optional=True), unit="tokens",
                                            metavar="N")
    samples_per_step: Optional[float] = _opt(None, help="Samples in one step, for samples/s.",
                                             check=Number(0, strict=True, optional=True), unit="samples",
                                             metavar="N")
    report: bool = _opt(True, help="Print the terminal report at the end (files are written either way).",
                        check=Flag(), entry_points=("profile",))
    quiet: bool = _opt(False, help="Do not print the report (warnings that a result is partial still are).",
                       check=Flag(), flags=("--quiet", "-q"), entry_points=("cli", "callbacks"))
    modules: bool = _opt(False, help="Time the model's top-level modules; activation memory per module.",
                         check=Flag(), entry_points=("cli", "callbacks"))
    flops: bool = _opt(False, help="Count FLOPs of step 2 for MFU (that step runs slower).", check=Flag())
    watchdog_s: Optional[float] = _opt(None, help="Dump every thread's stack when no step ends for this "
                                       "many seconds.", check=Number(0.1, optional=True), unit="seconds",
                                       metavar="SECONDS")
    job_wait_s: float = _opt(120.0, help="Several ranks: seconds rank 0 waits for the others' analyses.",
                             check=Number(0), unit="seconds", metavar="SECONDS", entry_points=("cli",))


def _keyword(field_name: str) -> str:
    return field_name[:-2] if field_name.endswith("_s") else field_name


def _spec(f: "dataclasses.Field[Any]") -> Option:
    meta: Option = f.metadata["option"]
    default = f.default if f.default is not dataclasses.MISSING else None
    return dataclasses.replace(meta, field=f.name, keyword=_keyword(f.name), default=default)


def options() -> tuple[Option, ...]:
    """Every option, in :class:`SessionOptions`' order (the schedule's four where ``schedule`` is)."""
    out: list[Option] = []
    for f in dataclasses.fields(SessionOptions):
        if f.name == "schedule":
            out.extend(_spec(g) for g in dataclasses.fields(Schedule))
        else:
            out.append(_spec(f))
    return tuple(out)


OPTIONS: tuple[Option, ...] = options()
BY_KEYWORD: dict[str, Option] = {o.keyword: o for o in OPTIONS}
SCHEDULE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Schedule))


def for_entry_point(entry: EntryPoint) -> tuple[Option, ...]:
    """The options ``entry`` takes."""
    return tuple(o for o in OPTIONS if entry in o.entry_points)


def check_options(options: SessionOptions) -> SessionOptions:
    """Validate every option (the first wrong one raises one :class:`UsageError` line); returns ``options``.

    Called by :class:`perfkit.collect.session.Session` (so by ``perfkit.profile()``), by the callbacks at
    construction and, through :func:`parse_cli`, by ``perfkit profile`` as it parses its options.
    """
    if not isinstance(options.schedule, Schedule):
        raise UsageError(f"schedule must be a perfkit Schedule (got {options.schedule!r})")
    for spec in OPTIONS:
        holder: Any = options.schedule if spec.field in SCHEDULE_FIELDS else options
        spec.check(spec.keyword, getattr(holder, spec.field))
    return options


def from_keywords(**keywords: Any) -> SessionOptions:
    """:class:`SessionOptions` from keyword arguments as ``perfkit.profile()`` and the callbacks name them
    (``watchdog`` for ``watchdog_s``; ``skip_first`` ... into the schedule), checked. A keyword left out,
    or None where None is not a value of the option (a schedule field), takes the field's default."""
    unknown = sorted(set(keywords) - set(BY_KEYWORD))
    if unknown:
        raise UsageError(f"unknown profiling option {unknown[0]!r}")
    schedule: dict[str, Any] = {}
    fields: dict[str, Any] = {}
    for keyword, value in keywords.items():
        spec = BY_KEYWORD[keyword]
        if spec.field in SCHEDULE_FIELDS:
            if value is not None:
                schedule[spec.field] = value
        else:
            fields[spec.field] = value
    return check_options(SessionOptions(schedule=Schedule(**schedule), **fields))


def parse_cli(keyword: str) -> Any:
    """The command line's converter for ``keyword``: the word to a value, then the option's check (the same
    one-line UsageError as ``perfkit.profile()``'s)."""
    spec = BY_KEYWORD[keyword]

    def convert(text: Any) -> Any:
        value = spec.check.parse(text)
        spec.check(spec.keyword, value)
        return value

    convert.__name__ = keyword
    return convert


# ---------------------------------------------------------------------- texts made from the options


def _default_text(spec: Option, entry: EntryPoint) -> str:
    if entry != "cli" and spec.keyword_default is not SAME:
        return f"{spec.keyword_default!r}: {spec.keyword_default_means}"
    return repr(spec.default)


def docstring_args(entry: EntryPoint, extra: tuple[tuple[str, str], ...] = ()) -> str:
    """The ``Args:`` section of a docstring for the options ``entry`` takes (plus ``extra`` (name, help))."""
    import textwrap

    lines = ["Args:"]
    items: list[tuple[str, str]] = []
    for spec in for_entry_point(entry):
        words = spec.check.words
        accepts = "" if isinstance(spec.check, (Flag, Choice, Text)) else f" {words[0].upper()}{words[1:]}."
        unit = f" In {spec.unit}." if spec.unit else ""
        items.append((spec.keyword, f"{spec.help}{unit}{accepts} Default {_default_text(spec, entry)}."))
    for name, text in (*items, *extra):
        lines.extend(textwrap.wrap(f"{name}: {text}", width=96, initial_indent="    ", subsequent_indent="        "))
    return "\n".join(lines)


def with_args(doc: Optional[str], entry: EntryPoint, extra: tuple[tuple[str, str], ...] = ()) -> str:
    """``doc`` with the ``Args:`` section of ``entry`` (:func:`docstring_args`) before its ``Returns:``
    section, or at its end when it has none, indented as the docstring's own lines are: by four
    spaces up to Python 3.12, not at all from 3.13, whose compiler strips docstrings' common indentation
    (looking for an indented ``Returns:`` left ``help(perfkit.profile)`` without its options there)."""
    doc = doc or ""
    lines = doc.split("\n")
    indent = next((ln[: len(ln) - len(ln.lstrip())] for ln in lines[1:] if ln.strip()), "")
    section = "\n".join(indent + ln if ln else ln for ln in docstring_args(entry, extra).split("\n"))
    returns = "\n\n" + indent + "Returns:"
    if returns in doc:
        return doc.replace(returns, "\n\n" + section + returns, 1)
    return doc.rstrip() + "\n\n" + section + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table() -> str:
    """The options table of docs/collect.md (``python scripts/options_table.py`` writes it there)."""
    rows = ["| option | `perfkit profile` | `perfkit.profile()` | callbacks | default | unit | values | what |",
            "|---|---|---|---|---|---|---|---|"]
    for spec in OPTIONS:
        value = f" {spec.metavar}" if spec.metavar else ""
        cli = ", ".join(f"`{f}{value}`" for f in spec.cli_flags) if "cli" in spec.entry_points else "—"
        kw = f"`{spec.keyword}=`"
        default = f"`{spec.default!r}`"
        if spec.keyword_default is not SAME:
            default += f" (keyword: `{spec.keyword_default!r}`, {spec.keyword_default_means})"
        rows.append("| " + " | ".join([
            f"`{spec.field}`",
            _cell(cli),
            kw if "profile" in spec.entry_points else "—",
            kw if "callbacks" in spec.entry_points else "—",
            _cell(default),
            spec.unit or "",
            _cell(spec.check.words),
            _cell(spec.help),
        ]) + " |")
    return "\n".join(rows) + "\n"
