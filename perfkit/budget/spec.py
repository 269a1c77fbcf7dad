"""Reading and validating a budget file (TOML; the format is in docs/budget.md).

``load_budget(path)`` returns a ``Budget``: settings plus a flat list of
``Limit``s. Any problem (missing file, bad TOML, unknown key, bad value) is a
``PerfkitError`` of one line naming the file, the key and what is accepted.
"""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Optional

from ..errors import MissingDependencyError, PerfkitError
from . import metrics

SEVERITIES = {"fail": "fail", "failure": "fail", "error": "fail", "warn": "warn", "warning": "warn"}
LIMIT_KEYS = ("max", "min", "severity", "optional")
TOP_TABLES = ("budget", "settings")
SETTINGS_KEYS = ("min_samples", "alpha", "severity", "tokens_per_step", "samples_per_step")
BYTE_UNITS = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
              "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


@dataclass(frozen=True)
class Limit:
    key: str  #: metric key, e.g. "step_ms", "phases.backward.share"
    kind: str  #: "absolute" or "relative" (to the baseline)
    bound: str  #: "max" or "min"
    threshold: float  #: absolute: in the metric's unit; relative: a fraction of the baseline (+0.05 = +5%)
    severity: str  #: "fail" or "warn"
    text: str  #: the limit as written in the file
    line: Optional[int] = None  #: line in the file where the key is written (for annotations)
    optional: bool = False  #: a run without this measure skips the limit instead of failing the check

    @property
    def metric(self) -> metrics.Metric:
        m = metrics.metric(self.key)
        assert m is not None
        return m


@dataclass(frozen=True)
class Settings:
    min_samples: int = 5  #: samples per side before a regression must also be significant
    alpha: float = 0.05  #: significance level of the one-sided Mann-Whitney U test
    severity: str = "fail"  #: default severity of a breach
    tokens_per_step: Optional[float] = None  #: for tokens_per_s when a run does not record it
    samples_per_step: Optional[float] = None


@dataclass(frozen=True)
class Budget:
    path: str
    settings: Settings
    limits: tuple[Limit, ...] = field(default_factory=tuple)

    @property
    def has_relative(self) -> bool:
        return any(lim.kind == "relative" for lim in self.limits)


def _toml_loads(text: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise MissingDependencyError("reading a budget file on Python 3.10 needs tomli: pip install tomli") from None
    doc: dict[str, Any] = tomllib.loads(text)
    return doc


def load_budget(path: str) -> Budget:
    """Read and validate ``path``."""
    from ..documents import DocumentError, read_bytes

    try:
        data = read_bytes(path, "budget file (TOML)", limit=16 * 2**20)
    except DocumentError as exc:
        if not os.path.lexists(path):
            raise PerfkitError(f"{path}: no such budget file") from None
        raise PerfkitError(str(exc)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PerfkitError(f"{path}: not UTF-8 text (byte {exc.start}), expected a budget file (TOML)") from None
    return parse_budget(text, path)


def parse_budget(text: str, path: str = "<budget>") -> Budget:
    """Validate the TOML ``text`` of a budget file; ``path`` names it in errors."""
    try:
        data = _toml_loads(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise PerfkitError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise PerfkitError(f"{path}: TOML nested too deeply to read, expected a budget file") from None
    for key in data:
        if key not in TOP_TABLES:
            raise PerfkitError(f"{path}: unknown table [{key}]; accepted: [budget], [budget.relative], [settings]")
    settings = _settings(data.get("settings", {}), path)
    table = data.get("budget", {})
    if not isinstance(table, dict):
        raise PerfkitError(f"{path}: 'budget' must be a table ([budget])")
    lines = _key_lines(text)
    limits: list[Limit] = []
    relative = table.get("relative", {})
    if not isinstance(relative, dict):
        raise PerfkitError(f"{path}: 'budget.relative' must be a table ([budget.relative])")
    for kind, tbl, prefix in (("absolute", {k: v for k, v in table.items() if k != "relative"}, "budget"),
                              ("relative", relative, "budget.relative")):
        for key, spec in _leaves(tbl, "", path, prefix):
            line = _line_of(lines, f"{prefix}.{key}")
            limits.extend(_limits(key, spec, kind, settings, path, prefix, line))
    if not limits:
        raise PerfkitError(f"{path}: no limits: add some under [budget] or [budget.relative] (see docs/budget.md)")
    return Budget(path, settings, tuple(limits))


def _settings(tbl: Any, path: str) -> Settings:
    if not isinstance(tbl, dict):
        raise PerfkitError(f"{path}: 'settings' must be a table ([settings])")
    for key in tbl:
        if key not in SETTINGS_KEYS:
            raise PerfkitError(f"{path}: unknown key 'settings.{key}'; accepted: {', '.join(SETTINGS_KEYS)}")
    out: dict[str, Any] = {}
    if "min_samples" in tbl:
        v = tbl["min_samples"]
        if not isinstance(v, int) or isinstance(v, bool) or v < 2:
            raise PerfkitError(f"{path}: 'settings.min_samples' = {v!r}; accepted: an integer >= 2")
        out["min_samples"] = v
    if "alpha" in tbl:
        v = tbl["alpha"]
        if not _is_number(v) or not 0 < v < 1:
            raise PerfkitError(f"{path}: 'settings.alpha' = {v!r}; accepted: a number between 0 and 1, e.g. 0.05")
        out["alpha"] = float(v)
    if "severity" in tbl:
        out["severity"] = _severity(tbl["severity"], path, "settings.severity")
    for key in ("tokens_per_step", "samples_per_step"):
        if key in tbl:
            v = tbl[key]
            if not _is_number(v) or v <= 0 or v > MAX_LIMIT:
                raise PerfkitError(f"{path}: 'settings.{key}' = {v!r}; accepted: a positive number "
                                   f"up to {MAX_LIMIT:g}")
            out[key] = float(v)
    return Settings(**out)


def _leaves(tbl: dict[str, Any], prefix: str, path: str, table: str) -> list[tuple[str, Any]]:
    """(metric key, limit spec) pairs of a table, walking dotted keys and sub-tables."""
    out = []
    for name, spec in tbl.items():
        key = f"{prefix}{name}"
        if metrics.metric(key) is not None:
            out.append((key, spec))
        elif metrics.is_prefix(key) and isinstance(spec, dict):
            out.extend(_leaves(spec, f"{key}.", path, table))
        else:
            raise PerfkitError(f"{path}: unknown budget key '{table}.{key}'; accepted: {metrics.accepted_keys(key)}")
    return out


def _limits(key: str, spec: Any, kind: str, settings: Settings, path: str, table: str,
            line: Optional[int]) -> list[Limit]:
    """The limits one key states: a value, a {max, min, severity} table, or a list of either."""
    where = f"{table}.{key}"
    if isinstance(spec, list):
        if not spec:
            raise PerfkitError(f"{path}: '{where}' is an empty list; accepted: a limit or a list of limits")
        if any(isinstance(item, list) for item in spec):
            raise PerfkitError(f"{path}: '{where}' holds a list inside a list; accepted: a limit or a list of limits")
        return [lim for item in spec for lim in _limits(key, item, kind, settings, path, table, line)]
    m = metrics.metric(key)
    assert m is not None
    if isinstance(spec, dict):
        for k in spec:
            if k not in LIMIT_KEYS:
                raise PerfkitError(f"{path}: unknown key '{where}.{k}'; accepted: {', '.join(LIMIT_KEYS)}")
        if "max" not in spec and "min" not in spec:
            raise PerfkitError(f"{path}: '{where}' states no limit; accepted: max, min (and severity, optional)")
        severity = _severity(spec["severity"], path, f"{where}.severity") if "severity" in spec else settings.severity
        optional = spec.get("optional", False)
        if not isinstance(optional, bool):
            raise PerfkitError(f"{path}: '{where}.optional' = {optional!r}; accepted: true, false")
        out = [_limit(m, bound, spec[bound], kind, severity, path, f"{where}.{bound}", line, optional)
               for bound in ("max", "min") if bound in spec]
        if len(out) == 2 and kind == "absolute" and out[1].threshold > out[0].threshold:
            raise PerfkitError(f"{path}: '{where}': min {out[1].text} is above max {out[0].text}; "
                               "accepted: min <= max")
        return out
    # A bare value: a relative "+5%" / "-3%" says its direction; otherwise the bad direction of the metric.
    bound = "max" if m.better == "lower" else "min"
    if kind == "relative" and isinstance(spec, str) and spec.strip()[:1] in "+-":
        bound = "max" if spec.strip().startswith("+") else "min"
    return [_limit(m, bound, spec, kind, settings.severity, path, where, line)]


def _limit(m: metrics.Metric, bound: str, raw: Any, kind: str, severity: str, path: str, where: str,
           line: Optional[int], optional: bool = False) -> Limit:
    """One limit; ``where`` names the value in errors (``budget.step_ms.max``)."""
    if kind == "relative":
        threshold = _percent(raw, bound, path, where)
    else:
        threshold = _absolute(raw, m, path, where)
        why = absolute_problem(m, threshold)
        if why:
            raise PerfkitError(f"{path}: '{where}' = {raw!r}: {why}")
    text = raw if isinstance(raw, str) else _fmt_number(raw)
    return Limit(m.key, kind, bound, threshold, severity, text, line, optional)


#: The largest absolute limit accepted (any unit): beyond it a limit is a typo, not a budget.
MAX_LIMIT = 1e18


def absolute_problem(m: metrics.Metric, threshold: float) -> Optional[str]:
    """Why ``threshold`` cannot be a limit on ``m`` (None when it can): not finite, negative, a share above 1."""
    if not math.isfinite(threshold) or abs(threshold) > MAX_LIMIT:
        return f"not a finite number below {MAX_LIMIT:g}"
    if threshold < 0:
        return f"negative; a {m.unit} limit is 0 or more"
    if m.unit == "share" and threshold > 1:
        return "a share above 100%; accepted: 0 to 1 (or \"0%\" to \"100%\")"
    return None


_PERCENT = re.compile(r"^\s*([+-]?)\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*$")


def _percent(raw: Any, bound: str, path: str, where: str) -> float:
    match = _PERCENT.match(raw) if isinstance(raw, str) else None
    if not match:
        raise PerfkitError(f"{path}: '{where}' = {raw!r}; accepted: a change against the baseline such as "
                           f"\"+5%\" or \"-3%\"")
    sign, number = match.groups()
    frac = float(number) / 100.0
    if not math.isfinite(frac) or frac > 1e6:
        raise PerfkitError(f"{path}: '{where}' = {raw!r}: not a finite change; accepted: such as \"+5%\"")
    if (sign == "-" or (not sign and bound == "min")) and frac > 1:
        raise PerfkitError(f"{path}: '{where}' = {raw!r}: a drop of more than 100%; accepted: -100% to -0%")
    if not sign:  # unsigned: in the direction of the bound
        sign = "+" if bound == "max" else "-"
    return frac if sign == "+" else -frac


_WITH_UNIT = re.compile(r"^\s*(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)\s*([A-Za-z%]*)\s*$")


def _absolute(raw: Any, m: metrics.Metric, path: str, where: str) -> float:
    if _is_number(raw):
        return float(raw)
    unit_help = {"bytes": "a number of bytes or a string such as \"24 GiB\" or \"900 MB\"",
                 "share": "a fraction such as 0.05 or a string such as \"5%\""}.get(m.unit, f"a number ({m.unit})")
    match = _WITH_UNIT.match(raw) if isinstance(raw, str) else None
    if match:
        number, unit = float(match.group(1)), match.group(2).lower()
        if m.unit == "bytes" and unit in BYTE_UNITS:
            return number * BYTE_UNITS[unit]
        if m.unit == "share" and unit == "%":
            return number / 100.0
        if unit == "" or (m.unit == "ms" and unit == "ms"):
            return number
    raise PerfkitError(f"{path}: '{where}' = {raw!r}; accepted: {unit_help}")


def _severity(raw: Any, path: str, where: str) -> str:
    if isinstance(raw, str) and raw.lower() in SEVERITIES:
        return SEVERITIES[raw.lower()]
    raise PerfkitError(f"{path}: '{where}' = {raw!r}; accepted: \"fail\", \"warn\"")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fmt_number(v: Any) -> str:
    return str(int(v)) if _is_number(v) and float(v).is_integer() else str(v)


# --------------------------------------------------------------------------- line numbers


_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_ASSIGN = re.compile(r"^\s*([A-Za-z0-9_.\-\"' ]+?)\s*=")


def _key_lines(text: str) -> dict[str, int]:
    """Full dotted key -> line number (1-based) of each ``key = ...`` line."""
    out: dict[str, int] = {}
    table = ""
    for no, raw in enumerate(text.splitlines(), 1):
        header = _HEADER.match(raw)
        if header:
            table = _dotted(header.group(1))
            continue
        assign = _ASSIGN.match(raw)
        if assign:
            key = _dotted(assign.group(1))
            out.setdefault(f"{table}.{key}" if table else key, no)
    return out


def _dotted(key: str) -> str:
    return ".".join(part.strip().strip("\"'") for part in key.split("."))


def _line_of(lines: dict[str, int], key: str) -> Optional[int]:
    """The line of ``key``, or of the inline table that holds it."""
    if key in lines:
        return lines[key]
    holders = [k for k in lines if key.startswith(k + ".")]
    return lines[max(holders, key=len)] if holders else None
