"""``perfkit budget init``: a starting budget file (TOML text) from one run.

Every measure the run has gets a limit at the measured value plus the headroom
(times, memory: ``x (1 + headroom)``; throughput and MFU: ``x (1 - headroom)``;
shares: ``x (1 + headroom)`` but at least one percentage point above), rounded
outwards to 4 significant digits so the run itself always passes. Findings:
no more critical or warning findings than now, and no more of each id the run
raised. A ``[budget.relative]`` section is written commented out (it needs a
baseline at check time).
"""

from __future__ import annotations

import math
import re
from typing import Any, Optional

from ..analysis.document import PHASES
from ..analysis.result import Analysis, document_of
from ..errors import UsageError
from ..report.budget import fmt_value
from . import metrics
from .spec import MAX_LIMIT, absolute_problem

SHARE_FLOOR = 0.01  #: a share's limit is at least one percentage point above the measured value


def parse_headroom(text: str) -> float:
    """``"10%"`` or ``"10"`` -> 0.10."""
    match = re.match(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*%?\s*$", str(text))
    if not match or float(match.group(1)) >= 100:
        raise UsageError(f"--headroom {text!r}: accepted: a percentage below 100, such as 10%")
    return float(match.group(1)) / 100.0


def _round_out(x: float, up: bool, digits: int = 4) -> float:
    """``x`` rounded away from the limit's side to ``digits`` significant digits (never past ``x``)."""
    if x == 0 or not math.isfinite(x):
        return x
    q = 10.0 ** (math.floor(math.log10(abs(x))) - digits + 1)
    steps = math.ceil(x / q - 1e-9) if up else math.floor(x / q + 1e-9)
    out = round(steps * q, max(0, -int(math.floor(math.log10(q)))))
    if up and out < x:
        out += q
    if not up and out > x:
        out -= q
    return out


def _toml_number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def starting_budget(doc: "Analysis | dict[str, Any]", source: str, headroom: float = 0.10) -> str:
    """TOML text of a budget that ``doc`` passes with ``headroom`` to spare."""
    doc = document_of(doc)
    lines = [
        f"# perfkit budget, started from {source} with {100 * headroom:g}% headroom.",
        "# Format: docs/budget.md. Check a run with: perfkit budget check THIS_FILE RUN...",
        "",
        "[settings]",
        "min_samples = 5   # samples per side before a regression must also be significant",
        "alpha = 0.05      # level of the one-sided Mann-Whitney U test",
        "",
        "[budget]",
    ]

    left_out: list[str] = []

    def add(key: str, x: Optional[float]) -> None:
        m = metrics.metric(key)
        if m is None:
            return
        if x is None or not math.isfinite(x):
            left_out.append(key)
            return
        if abs(x) > MAX_LIMIT / 2:
            lines.append(f"# {key}: measured {fmt_value(x, m.unit)}, no limit written (not a plausible value)")
            return
        if m.better == "higher":
            limit, bound = _round_out(x * (1.0 - headroom), up=False), "min"
        elif m.unit == "share":
            limit, bound = min(1.0, _round_out(max(x * (1.0 + headroom), x + SHARE_FLOOR), up=True)), "max"
        elif m.unit == "bytes":
            limit, bound = float(math.ceil(x * (1.0 + headroom))), "max"
        else:
            limit, bound = _round_out(x * (1.0 + headroom), up=True), "max"
        why = absolute_problem(m, limit)
        if why:  # never write a limit that budget check would refuse
            lines.append(f"# {key}: measured {fmt_value(x, m.unit)}, no limit written ({why})")
            return
        lines.append(f"{key} = {{ {bound} = {_toml_number(limit)} }}   # measured {fmt_value(x, m.unit)}")

    for key in ("step_ms", "gpu_step_ms", "tokens_per_s", "samples_per_s", "peak_memory_bytes", "mfu",
                "gpu_idle_share"):
        add(key, metrics.value(doc, key))
    for phase in PHASES:
        x = metrics.value(doc, f"phases.{phase}.ms")
        if x:
            add(f"phases.{phase}.ms", x)
    if left_out:
        lines.append(f"# not measured in this run, so no limit: {', '.join(left_out)}")
    findings = [f for f in doc.get("findings") or [] if isinstance(f, dict)]
    for severity in ("critical", "warning"):
        n = sum(1 for f in findings if f.get("severity") == severity)
        lines.append(f"findings.{severity} = {{ max = {n} }}   # {severity} findings now: {n}")
    known = set(metrics.finding_ids())
    for fid in dict.fromkeys(str(f.get("id")) for f in findings):
        if fid in known:
            n = sum(1 for f in findings if f.get("id") == fid)
            lines.append(f"findings.{fid} = {{ max = {n}, severity = \"warn\" }}   # raised now: {n}")
    lines += [
        "",
        "# Regressions against a baseline run (perfkit budget check ... --baseline RUN...):",
        "# [budget.relative]",
        "# step_ms = \"+5%\"",
        "# gpu_idle_share = { max = \"+20%\", severity = \"warn\" }",
    ]
    if metrics.value(doc, "tokens_per_s") is not None:
        lines.append("# tokens_per_s = \"-5%\"")
    return "\n".join(lines) + "\n"
