"""Render a ``perfkit.budget/1`` result: terminal table (rich), JUnit XML, GitHub summary and annotations."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from typing import Any, Optional

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

STATUS_WORD = {"pass": "PASS", "noise": "NOISE", "warn": "WARN", "fail": "FAIL", "skip": "SKIP"}
STATUS_STYLE = {"pass": "green", "noise": "cyan", "warn": "yellow", "fail": "bold red", "skip": "dim"}
STATUS_ICON = {"pass": "✅", "noise": "〰️", "warn": "⚠️", "fail": "❌", "skip": "⏭️"}
NARROW = 110  #: below this console width, one line per limit instead of a table


# --------------------------------------------------------------------------- words and numbers


def fmt_value(v: Optional[float], unit: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"  # unknown: never shown as 0, nan or inf
    if unit == "ms":
        return f"{v:,.2f} ms"
    if unit == "bytes":
        return f"{v / 2**30:,.2f} GiB" if abs(v) >= 2**30 else f"{v / 2**20:,.1f} MiB"
    if unit == "share":
        return f"{100 * v:.2f}%"
    if unit == "tokens/s":
        return f"{v:,.0f} tokens/s"
    if unit == "samples/s":
        return f"{v:,.1f} samples/s"
    if unit == "count":
        return f"{v:g}"
    return f"{v:,.4g}"


def fmt_change(change: Optional[float]) -> str:
    if change is None or not math.isfinite(change):
        return "n/a"
    return f"{100 * change:+.1f}%"


def limit_text(row: dict[str, Any]) -> str:
    """``<= 120.00 ms`` or ``<= +5% (9.16 ms)``."""
    op = "<=" if row["bound"] == "max" else ">="
    if row["kind"] == "relative":
        return f"{op} {row['limit']} ({fmt_value(row['allowed'], row['unit'])})"
    return f"{op} {fmt_value(row['allowed'], row['unit'])}"


def confidence(row: dict[str, Any], short: bool = False) -> str:
    """How sure the verdict is, in words ("" for a limit on one run's figure)."""
    test = row.get("test")
    if not test:
        n_runs = len(row.get("run_values", []))
        return f"median of {n_runs} runs" if n_runs > 1 else ""
    n = f"{test['n'][0]}/{test['n'][1]} {test['samples']}" if short else \
        f"{test['n'][0]} vs {test['n'][1]} {test['samples']}"
    if test["p_value"] is None:
        if short:
            return f"untested: {n} < {test['min_samples']}"
        return f"not tested: {n} (needs {test['min_samples']} per side)"
    p = test["p_value"]
    if short:
        word = "significant," if test["significant"] else ("noise?" if row["status"] == "noise" else "")
        return f"{word} p={p:.2g}, {n}".strip()
    verdict = "significant" if test["significant"] else "not significant"
    return f"{verdict}: p = {p:.2g} ({n}, {test['method']} Mann-Whitney U)"


def message(row: dict[str, Any]) -> str:
    """One sentence per limit, for annotations and JUnit."""
    value = fmt_value(row["value"], row["unit"])
    head = f"{row['key']} = {value}"
    if row["kind"] == "relative":
        head += f" ({fmt_change(row['change'])} vs baseline {fmt_value(row['baseline'], row['unit'])})"
    limit = limit_text(row)
    if row["status"] == "skip":
        return f"{row['key']} is unknown ({row.get('reason') or 'not measured'}): the optional limit {limit} is skipped"
    verdict = {"pass": f"within the limit {limit}", "warn": f"breaks the limit {limit}",
               "fail": f"breaks the limit {limit}",
               "noise": f"breaks the limit {limit} on the medians, but may be noise"}[row["status"]]
    conf = confidence(row)
    return f"{head}: {verdict}" + (f"; {conf}" if conf else "")


def headline(result: dict[str, Any]) -> str:
    s = result["summary"]
    parts = [f"{s['fail']} failed", f"{s['warn']} warning{'s' if s['warn'] != 1 else ''}",
             f"{s['noise']} within noise", f"{s['pass']} passed"]
    if s.get("skip"):
        parts.append(f"{s['skip']} skipped (optional, unknown)")
    return ("budget exceeded: " if not result["ok"] else "budget holds: ") + ", ".join(parts)


def _rows(result: dict[str, Any], short: bool = False) -> list[tuple[str, ...]]:
    """(status, key, value, limit, baseline, change, confidence) per limit."""
    out: list[tuple[str, ...]] = []
    for r in result["results"]:
        relative = r["kind"] == "relative"
        limit = (f"{'<=' if r['bound'] == 'max' else '>='} {r['limit']}" if relative and short else limit_text(r))
        out.append((r["status"], r["key"], fmt_value(r["value"], r["unit"]), limit,
                    fmt_value(r.get("baseline"), r["unit"]) if relative else "",
                    fmt_change(r.get("change")) if relative else "", confidence(r, short)))
    return out


# --------------------------------------------------------------------------- terminal


def render_budget_console(result: dict[str, Any], console: Console) -> None:
    console.print(f"[bold]perfkit budget[/bold] {result['budget']}", highlight=False)
    console.print(f"runs: {', '.join(result['runs'])}", highlight=False, markup=False)
    if result["baseline"]:
        console.print(f"baseline: {', '.join(result['baseline'])}", highlight=False, markup=False)
    if console.width < NARROW:
        for r in result["results"]:
            status = r["status"]
            console.print(f"[{STATUS_STYLE[status]}]{STATUS_WORD[status]:5}[/] {escape(message(r))}",
                          highlight=False)
    else:
        console.print(_table(result))
    style = "bold red" if not result["ok"] else ("yellow" if result["summary"]["warn"] else "green")
    console.print(f"[{style}]{headline(result)}[/]", highlight=False)


def _table(result: dict[str, Any]) -> Table:
    relative = any(r["kind"] == "relative" for r in result["results"])
    tested = any(confidence(r) for r in result["results"])
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    columns = [("Status", "left"), ("Budget", "left"), ("Value", "right"), ("Limit", "right")]
    if relative:
        columns += [("Baseline", "right"), ("Change", "right")]
    if tested:
        columns += [("Confidence", "left")]
    for col, just in columns:
        table.add_column(col, justify=just, overflow="fold", no_wrap=col == "Status")  # type: ignore[arg-type]
    for status, key, value, limit, base, change, conf in _rows(result, short=True):
        cells = [f"[{STATUS_STYLE[status]}]{STATUS_WORD[status]}[/]", key, value, limit]
        cells += [base, change] if relative else []
        cells += [conf] if tested else []
        table.add_row(*cells)
    return table


# --------------------------------------------------------------------------- JUnit XML


def render_budget_junit(result: dict[str, Any]) -> str:
    """One test suite, one test case per limit: ``failure`` for a failed one, warnings in ``system-out``."""
    s = result["summary"]
    total = len(result["results"])
    suites = ET.Element("testsuites", name="perfkit budget", tests=str(total), failures=str(s["fail"]), errors="0")
    suite = ET.SubElement(suites, "testsuite", name=f"perfkit budget {result['budget']}", tests=str(total),
                          failures=str(s["fail"]), errors="0", skipped=str(s.get("skip", 0)), time="0")
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="budget", value=result["budget"])
    ET.SubElement(props, "property", name="runs", value=" ".join(result["runs"]))
    if result["baseline"]:
        ET.SubElement(props, "property", name="baseline", value=" ".join(result["baseline"]))
    for r in result["results"]:
        name = f"{r['key']} {limit_text(r)}" + (" vs baseline" if r["kind"] == "relative" else "")
        case = ET.SubElement(suite, "testcase", classname=f"perfkit.budget.{r['kind']}", name=name, time="0")
        text = message(r)
        if r["status"] == "fail":
            failure = ET.SubElement(case, "failure", message=text, type="budget_exceeded")
            failure.text = text
        elif r["status"] == "skip":
            ET.SubElement(case, "skipped", message=text)
        elif r["status"] in ("warn", "noise"):
            out = ET.SubElement(case, "system-out")
            out.text = ("WARNING: " if r["status"] == "warn" else "NOISE: ") + text
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


# --------------------------------------------------------------------------- GitHub Actions


def _escape_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(s: str) -> str:
    return _escape_data(s).replace(":", "%3A").replace(",", "%2C")


def render_github_annotations(result: dict[str, Any]) -> str:
    """Workflow commands: ``::error`` per failed limit, ``::warning`` per warning, ``::notice`` per noisy breach."""
    command = {"fail": "error", "warn": "warning", "noise": "notice"}
    lines = []
    for r in result["results"]:
        if r["status"] not in command:
            continue
        props = [f"file={_escape_property(result['budget'])}"]
        if r.get("line"):
            props.append(f"line={r['line']}")
        props.append(f"title={_escape_property('perfkit budget ' + r['key'])}")
        lines.append(f"::{command[r['status']]} {','.join(props)}::{_escape_data(message(r))}")
    return "\n".join(lines) + ("\n" if lines else "")


def render_budget_markdown(result: dict[str, Any]) -> str:
    """The job summary (``$GITHUB_STEP_SUMMARY``): headline, table, runs."""
    icon = STATUS_ICON["fail"] if not result["ok"] else (STATUS_ICON["warn"] if result["summary"]["warn"]
                                                         else STATUS_ICON["pass"])
    out = [f"## {icon} perfkit budget: {headline(result)}", "",
           f"Budget `{result['budget']}`; runs: {', '.join(f'`{p}`' for p in result['runs'])}"
           + (f"; baseline: {', '.join(f'`{p}`' for p in result['baseline'])}" if result["baseline"] else ""),
           "", "| | Budget | Value | Limit | Baseline | Change | Confidence |",
           "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for status, key, *cells in _rows(result):
        row = [f"{STATUS_ICON[status]} {STATUS_WORD[status]}", f"`{key}`", *cells]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    out += ["", f"_Noise: a regression against the baseline fails only if a one-sided Mann-Whitney U test "
                f"at alpha = {result['settings']['alpha']} agrees, once both sides have at least "
                f"{result['settings']['min_samples']} samples._"]
    return "\n".join(out) + "\n"
