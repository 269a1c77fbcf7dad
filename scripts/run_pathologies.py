"""Profile every example in examples/pathologies/ (as is and with --fixed) and check the findings.

    python scripts/run_pathologies.py --out DIR [--only NAME[,NAME]] [--small] [--timeout S]

For each pathology it runs

    python -m perfkit profile --quiet --out DIR/<name> [schedule] examples/pathologies/<name>.py
    python -m perfkit profile --quiet --out DIR/<name>-fixed [schedule] examples/pathologies/<name>.py --fixed

(``--small`` is passed on to the scripts: CPU-sized problems), reads each
``analysis.json`` and checks that

* the expected finding is ranked first (the ``findings`` list is ranked),
* its ``where`` names the expected place (a substring of ``json.dumps(where)``),
* the fixed run has no finding with that id at severity warning or critical.

It prints a table with the median step time of both runs (the run timer's step time,
``runtime.steps.step_ms_median``: the GPU's time between step boundaries where CUDA events
measured it, else the host's wall time; ``step_basis`` says which), writes
``DIR/pathologies.json`` and exits 1 if any check fails. ``pathologies.json`` accumulates: with
``--only``, the results already there for the other pathologies are kept, so the set can be run
in parts into one folder.

    python scripts/run_pathologies.py --out DIR --reread

recomputes the step times and speed-ups in ``DIR/pathologies.json`` from the run folders'
``analysis.json`` without running anything (documents written before ``step_ms_median``: the
CUDA-event median where there is one).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "pathologies"
SEVERE = ("warning", "critical")


@dataclass
class Case:
    name: str
    expected: tuple[str, ...]  #: finding ids accepted in first place
    where: tuple[str, ...]  #: substrings, one of which must occur in json.dumps(where)
    schedule: tuple[str, ...] = ()  #: perfkit profile schedule options
    note: str = ""


CASES = [
    Case("hungarian", ("host_bound_idle",), ("hungarian_assignment",)),
    Case("sync_selection", ("host_device_sync", "launch_bound"), ("select_blocks",),
         note="the per-block loop both syncs (.tolist/.item) and launches thousands of tiny kernels; "
              "whichever costs the GPU more idle time ranks first, both are reported"),
    Case("component_loop", ("launch_bound",), ("aten::mm", "aten::matmul")),
    Case("kl_attention", ("launch_bound", "slow_op"), ("linalg_inv", "kl_attention"),
         note="launch_bound or slow_op: the GPU run decides"),
    Case("slow_loader", ("dataloader_bound",), ("DataLoader",)),
    Case("warmup", ("warmup_outlier",), ("warm-up",), schedule=("--skip-first", "0", "--warmup", "0", "--active", "6")),
]


@dataclass
class Run:
    out: Path
    cmd: list[str]
    rc: Optional[int] = None
    seconds: float = 0.0
    error: Optional[str] = None
    findings: list[dict[str, Any]] = field(default_factory=list)
    step_ms: Optional[float] = None
    step_basis: Optional[str] = None  #: "gpu" (CUDA events) or "wall"
    host_wall_ms: Optional[float] = None  #: the host's wall time per step, median
    first_traced_ms: Optional[float] = None  #: wall time of the first step in the trace
    log_tail: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "out": str(self.out), "cmd": self.cmd, "rc": self.rc, "seconds": round(self.seconds, 2),
            "error": self.error, "step_ms": self.step_ms, "step_basis": self.step_basis,
            "host_wall_ms": self.host_wall_ms, "first_traced_step_ms": self.first_traced_ms,
            "findings": [{k: f.get(k) for k in ("id", "severity", "title", "where", "evidence", "cost_ms_per_step")}
                         for f in self.findings],
        }


def profile(case: Case, out: Path, fixed: bool, small: bool, timeout: float) -> Run:
    script = EXAMPLES / f"{case.name}.py"
    cmd = [sys.executable, "-m", "perfkit", "profile", "--quiet", "--out", str(out), *case.schedule, str(script)]
    cmd += (["--fixed"] if fixed else []) + (["--small"] if small else [])
    run = Run(out=out, cmd=cmd)
    if out.exists():
        shutil.rmtree(out)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        run.rc = proc.returncode
        run.log_tail = (proc.stdout + proc.stderr)[-3000:]
    except subprocess.TimeoutExpired as exc:
        run.error = f"timed out after {timeout:.0f} s"
        run.log_tail = str(exc.stderr or "")[-3000:]
    run.seconds = time.perf_counter() - t0
    path = out / "analysis.json"
    if run.error is None and not path.exists():
        run.error = f"no analysis.json (exit {run.rc})"
    if path.exists():
        try:
            doc = json.loads(path.read_text())
        except ValueError as exc:
            run.error = f"unreadable analysis.json: {exc}"
            return run
        run.findings = list(doc.get("findings") or [])
        runtime = doc.get("runtime") or {}
        run.step_ms, run.step_basis, run.host_wall_ms = step_time_of(runtime.get("steps") or {})
        table = (doc.get("steps") or {}).get("table") or []
        run.first_traced_ms = table[0].get("wall_ms") if table else None
        if runtime.get("analysis_error") and run.error is None:
            run.error = f"analysis_error: {runtime['analysis_error']}"
    return run


def step_time_of(steps: dict[str, Any]) -> tuple[Optional[float], Optional[str], Optional[float]]:
    """(step time, its basis, the host's wall time per step) from ``runtime.steps``: the run timer's
    step time as the report shows it (:func:`perfkit.variation.run_step_time`). The host's wall
    time is not the step time where the host runs ahead of the GPU (the fixed ``sync_selection``
    run: 8.7 ms of wall time a step against 102 ms on the GPU)."""
    if str(ROOT) not in sys.path:  # the repository's perfkit, as the profiled runs use (PYTHONPATH)
        sys.path.insert(0, str(ROOT))
    from perfkit.variation import run_step_time

    ms, basis = run_step_time(steps)
    return ms, (basis if ms is not None else None), steps.get("wall_ms_median")


def reread(out: Path) -> int:
    """Recompute the step times and speed-ups of ``out/pathologies.json`` from its run folders."""
    path = out / "pathologies.json"
    doc = json.loads(path.read_text())
    for row in doc.get("results", []):
        times = []
        for key, folder in (("as_is", row["name"]), ("fixed", row["name"] + "-fixed")):
            steps = ((json.loads((out / folder / "analysis.json").read_text()).get("runtime") or {}).get("steps") or {})
            ms, basis, wall = step_time_of(steps)
            row["runs"][key].update({"step_ms": ms, "step_basis": basis, "host_wall_ms": wall})
            times.append(ms)
        row["step_ms"], row["step_ms_fixed"] = times
        row["step_basis"] = row["runs"]["as_is"]["step_basis"]
        row["speedup"] = round(times[0] / times[1], 3) if times[0] and times[1] else None
        print(f"{row['name']}: step {fmt_ms(times[0])} -> {fmt_ms(times[1])} ms ({row['step_basis']}), "
              f"{row['speedup']}x; host wall {fmt_ms(row['runs']['as_is']['host_wall_ms'])} -> "
              f"{fmt_ms(row['runs']['fixed']['host_wall_ms'])} ms")
    path.write_text(json.dumps(doc, indent=1, default=str))
    return 0


def check(case: Case, before: Run, after: Run) -> dict[str, Any]:
    ids = [f.get("id") for f in before.findings]
    first = ids[0] if ids else None
    hit = next((f for f in before.findings if f.get("id") in case.expected), None)
    where_ok = hit is not None and any(s in json.dumps(hit.get("where")) for s in case.where)
    lingering = [f for f in after.findings if f.get("id") in case.expected and f.get("severity") in SEVERE]
    fixed_clean = after.error is None and not lingering
    reasons = []
    if before.error:
        reasons.append(f"run: {before.error}")
    if not ids:
        reasons.append("no findings")
    elif first not in case.expected:
        rank = ids.index(hit["id"]) + 1 if hit else None
        reasons.append(f"first is {first}" + (f"; expected ranked {rank}" if rank else "; expected absent"))
    if hit is not None and not where_ok:
        reasons.append(f"where lacks {' / '.join(case.where)}")
    if after.error:
        reasons.append(f"fixed run: {after.error}")
    elif lingering:
        reasons.append(f"fixed run still has {lingering[0]['id']} ({lingering[0]['severity']})")
    ok = not reasons
    speedup = (before.step_ms / after.step_ms) if before.step_ms and after.step_ms else None
    return {
        "name": case.name, "expected": list(case.expected), "expected_where": list(case.where), "note": case.note,
        "first": first, "first_severity": before.findings[0].get("severity") if ids else None,
        "ranked": [f"{f.get('id')}:{f.get('severity')}" for f in before.findings],
        "ranked_fixed": [f"{f.get('id')}:{f.get('severity')}" for f in after.findings],
        "where_ok": where_ok, "fixed_clean": fixed_clean,
        "step_ms": before.step_ms, "step_ms_fixed": after.step_ms, "step_basis": before.step_basis,
        "speedup": round(speedup, 3) if speedup else None,
        "pass": ok, "reasons": reasons, "runs": {"as_is": before.summary(), "fixed": after.summary()},
    }


def fmt_ms(x: Optional[float]) -> str:
    return f"{x:.1f}" if isinstance(x, (int, float)) else "-"


def print_table(rows: list[dict[str, Any]]) -> None:
    head = ["pathology", "expected", "got first", "where ok", "fixed clean", "step ms", "fixed ms", "speed-up",
            "result"]
    body = [[r["name"], "|".join(r["expected"]),
             f"{r['first']} ({r['first_severity']})" if r["first"] else "-",
             "yes" if r["where_ok"] else "no", "yes" if r["fixed_clean"] else "no",
             fmt_ms(r["step_ms"]), fmt_ms(r["step_ms_fixed"]), f"{r['speedup']:.2f}x" if r["speedup"] else "-",
             "PASS" if r["pass"] else "FAIL"] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    for line in [head, ["-" * w for w in widths], *body]:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip())
    for r in rows:
        print(f"\n{r['name']}: {'PASS' if r['pass'] else 'FAIL: ' + '; '.join(r['reasons'])}")
        for label, key in (("as is", "as_is"), ("fixed", "fixed")):
            run = r["runs"][key]
            ranked = ", ".join(f"{f['id']}:{f['severity']}" for f in run["findings"]) or "(no findings)"
            print(f"  {label}: {ranked}; first traced step {fmt_ms(run['first_traced_step_ms'])} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path, help="folder for the runs and pathologies.json")
    ap.add_argument("--only", default=None, help="comma-separated pathology names")
    ap.add_argument("--small", action="store_true", help="pass --small to the scripts (CPU-sized)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per profiled run")
    ap.add_argument("--reread", action="store_true",
                    help="recompute DIR/pathologies.json's step times from its run folders; run nothing")
    args = ap.parse_args()
    if args.reread:
        return reread(args.out.resolve())

    cases = CASES
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - {c.name for c in CASES})
        if unknown:
            ap.error(f"unknown pathology {', '.join(unknown)}; known: {', '.join(c.name for c in CASES)}")
        cases = [c for c in CASES if c.name in wanted]
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    rows = []
    for case in cases:
        runs = []
        for fixed in (False, True):
            name = case.name + ("-fixed" if fixed else "")
            print(f"[{name}] profiling ...", file=sys.stderr, flush=True)
            run = profile(case, out / name, fixed, args.small, args.timeout)
            print(f"[{name}] {run.seconds:.1f} s, exit {run.rc}, {len(run.findings)} finding(s)"
                  + (f", {run.error}" if run.error else ""), file=sys.stderr, flush=True)
            if run.error:
                print(run.log_tail, file=sys.stderr)
            runs.append(run)
        rows.append(check(case, *runs) | {"small": args.small})

    print_table(rows)
    # pathologies.json accumulates: results of pathologies not run this time (--only) are kept.
    path = out / "pathologies.json"
    kept: list[dict[str, Any]] = []
    if path.exists():
        try:
            ran = {r["name"] for r in rows}
            kept = [r for r in json.loads(path.read_text()).get("results", []) if r.get("name") not in ran]
        except (ValueError, AttributeError, TypeError):
            kept = []
    order = {c.name: i for i, c in enumerate(CASES)}
    merged = sorted(kept + rows, key=lambda r: order.get(r.get("name"), len(order)))
    doc = {"small": args.small, "python": sys.version.split()[0], "results": merged,
           "passed": sum(bool(r.get("pass")) for r in merged), "failed": sum(not r.get("pass") for r in merged)}
    try:
        import torch

        doc["torch"] = torch.__version__
        doc["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except Exception:  # the report does not depend on torch being importable here
        pass
    path.write_text(json.dumps(doc, indent=1, default=str))
    failed = sum(not r["pass"] for r in rows)
    print(f"\n{len(rows) - failed} passed, {failed} failed; details in {path}")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
