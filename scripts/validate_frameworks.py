"""perfkit profile on real training stacks, against CUDA-event truth (run on a GPU).

    python scripts/validate_frameworks.py --out DIR [--stacks hf_trainer,lightning,compiled,compiled_graphs,accumulation,example]
                                          [--steps 30] [--no-light]

For each stack (the scripts in scripts/stacks/ and examples/train_gpt.py, run unmodified):

1. **Truth.** The bare script with the hooks of ``scripts/stacks/_truth/sitecustomize.py``
   (``PK_TRUTH_MODE=busy``): CUDA events at the phase boundaries that torch's own hooks
   reveal (module forward pre-hooks, ``Tensor.backward``, optimizer step pre/post hooks and
   the ``step(closure)`` closure), each part queued behind a ``torch.cuda._sleep`` so the
   events bracket back-to-back kernels: GPU busy ms per phase and step.
2. **Bare step time.** The bare script with ``PK_TRUTH_MODE=elapsed`` (one CUDA event per
   optimizer step, no sleeps).
3. **perfkit profile** (default options) and ``perfkit profile --mode light``, with the same
   elapsed-mode hooks: the step time under perfkit against the bare run, the phases perfkit
   reports against the truth, the steps it found, and the source lines it shows for the top
   ops with the text of those lines (read from the files), for the CLI document and for
   ``perfkit analyze`` on the trace alone.

Writes ``frameworks.json`` and the run directories into --out; prints a summary table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
TRUTH_HOOKS = REPO / "scripts" / "stacks" / "_truth"
PHASES = ("forward", "backward", "optimizer", "other")

STACKS: dict[str, list[str]] = {
    "hf_trainer": [str(REPO / "scripts" / "stacks" / "hf_trainer_gpt2.py")],
    "lightning": [str(REPO / "scripts" / "stacks" / "lightning_gpt.py")],
    "compiled": [str(REPO / "scripts" / "stacks" / "compiled_gpt.py")],
    "compiled_graphs": [str(REPO / "scripts" / "stacks" / "compiled_gpt.py"), "--mode", "reduce-overhead"],
    "accumulation": [str(REPO / "scripts" / "stacks" / "accumulation_gpt.py")],
    "example": [str(REPO / "examples" / "train_gpt.py")],
}
#: Optimizer steps skipped before any statistic (compilation, autotuning, allocator growth).
SKIP_STEPS = 5


def _env(mode: str, out: Path) -> dict[str, str]:
    path = [str(TRUTH_HOOKS), str(REPO), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p),
            "PK_TRUTH_MODE": mode, "PK_TRUTH_OUT": str(out)}


def _run(cmd: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    log.write_text(f"$ {' '.join(cmd)}\n--- stdout\n{proc.stdout[-20000:]}\n--- stderr\n{proc.stderr[-20000:]}")
    return {"exit": proc.returncode, "wall_s": round(time.time() - t0, 1)}


def _median(xs: list[float]) -> Optional[float]:
    return float(statistics.median(xs)) if xs else None


def _read(path: Path) -> Optional[dict[str, Any]]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def truth_shares(doc: dict[str, Any]) -> dict[str, Any]:
    """Median GPU busy ms per phase over the steps after SKIP_STEPS, and each phase's share of their sum."""
    rows = doc["phase_ms_by_step"][SKIP_STEPS:-1] or doc["phase_ms_by_step"]
    ms = {p: _median([r.get(p, 0.0) for r in rows]) or 0.0 for p in PHASES}
    total = sum(ms.values())
    return {"busy_ms": ms, "shares": {p: (ms[p] / total if total else None) for p in PHASES},
            "steps_measured": len(rows)}


def step_stats(doc: Optional[dict[str, Any]]) -> dict[str, Any]:
    if not doc:
        return {}
    xs = doc["step_ms"][SKIP_STEPS:]
    return {"optimizer_steps": doc["optimizer_steps"], "median_step_ms": _median(xs),
            "max_step_ms": max(xs) if xs else None, "steps_timed": len(xs)}


def source_lines(doc: dict[str, Any], top: int = 6) -> list[dict[str, Any]]:
    """The top ops' source lines as perfkit shows them, with the text of that line in the file."""
    out = []
    for row in (doc.get("top_ops") or [])[:top]:
        src = row.get("source")
        text = None
        if src and ":" in src:
            file, _, rest = src.rpartition(":")
            line = rest.split()[0] if rest.split() else ""
            if line.isdigit() and os.path.exists(file):
                lines = Path(file).read_text(errors="replace").splitlines()
                n = int(line)
                text = lines[n - 1].strip() if 0 < n <= len(lines) else None
        out.append({"op": row.get("name"), "source": src, "basis": row.get("source_basis"), "line_text": text})
    return out


def run_timer(doc: dict[str, Any]) -> dict[str, Any]:
    """What perfkit's run timer reported: the step time and its basis, the host's wall time, traced vs
    unprofiled, the spread (to set against the bare run's CUDA-event step time)."""
    steps = (doc.get("runtime") or {}).get("steps") or {}
    keys = ("step_ms_median", "step_basis", "host_ahead", "wall_ms_median", "gpu_ms_median",
            "unprofiled_ms_median", "profiled_ms_median", "slowdown")
    return {**{k: steps.get(k) for k in keys}, "spread_cv": (steps.get("spread") or {}).get("cv"),
            "measured_recording": (doc.get("recording") or {}).get("measured")}


def summarise(doc: dict[str, Any], truth: dict[str, Any]) -> dict[str, Any]:
    phases = {p: ((doc.get("phases") or {}).get(p) or {}).get("share") for p in (*PHASES, "unknown")}
    diff = {p: round(100 * (phases[p] - truth["shares"][p]), 2) for p in PHASES
            if phases.get(p) is not None and truth["shares"].get(p) is not None}
    steps = doc.get("steps") or {}
    return {
        "phases": phases,
        "phase_diff_points": diff,
        "max_abs_diff_points": max((abs(v) for v in diff.values()), default=None),
        "steps_in_trace": steps.get("total"),
        "steps_analysed": steps.get("count"),
        "runtime_steps": ((doc.get("runtime") or {}).get("steps") or {}).get("count"),
        "top_ops_sources": source_lines(doc),
        "run_timer": run_timer(doc),
        "findings": [(f.get("id"), f.get("severity"), f.get("title")) for f in doc.get("findings", [])],
        "warnings": (doc.get("trace") or {}).get("warnings"),
    }


def run_stack(name: str, script: list[str], out: Path, steps: int, light: bool) -> dict[str, Any]:
    py = sys.executable
    args = [*script, "--steps", str(steps)]
    res: dict[str, Any] = {"script": args}
    truth_path = out / f"{name}_truth.json"
    res["truth_run"] = _run([py, *args], _env("busy", truth_path), out / f"{name}_truth.log")
    truth_doc = _read(truth_path)
    if not truth_doc:
        res["error"] = "no truth measured (see the log)"
        return res
    truth = truth_shares(truth_doc)
    res["truth"] = truth
    bare_path = out / f"{name}_bare.json"
    res["bare_run"] = _run([py, *args], _env("elapsed", bare_path), out / f"{name}_bare.log")
    res["bare"] = step_stats(_read(bare_path))
    for label, options in (("default", []), *((("light", ["--mode", "light"]),) if light else ())):
        run_dir = out / f"{name}_{label}"
        el_path = out / f"{name}_{label}_elapsed.json"
        cmd = [py, "-m", "perfkit", "profile", "--quiet", "--out", str(run_dir), *options, *args]
        r = _run(cmd, _env("elapsed", el_path), out / f"{name}_{label}.log")
        r["steps"] = step_stats(_read(el_path))
        bare_ms, ms = res["bare"].get("median_step_ms"), r["steps"].get("median_step_ms")
        r["median_step_vs_bare"] = round(ms / bare_ms, 3) if bare_ms and ms else None
        doc = _read(run_dir / "analysis.json")
        if doc:
            r["cli"] = summarise(doc, truth)
            traces = sorted(run_dir.glob("*.pt.trace.json*"))
            traces = [t for t in traces if ".stacks." not in t.name]
            if traces:
                only = out / f"{name}_{label}_trace_only.json"
                subprocess.run([py, "-m", "perfkit", "analyze", str(traces[0]), "--json", str(only), "-q"],
                               capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
                d2 = _read(only)
                if d2:
                    r["trace_only"] = summarise(d2, truth)
        res[label] = r
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--stacks", default=",".join(STACKS))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--no-light", action="store_true", help="skip the --mode light run")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__, "steps": args.steps, "skip_steps": SKIP_STEPS, "stacks": {},
    }
    path = args.out / "frameworks.json"
    for name in args.stacks.split(","):
        print(f"== {name}", flush=True)
        results["stacks"][name] = run_stack(name, STACKS[name], args.out, args.steps, not args.no_light)
        path.write_text(json.dumps(results, indent=2))  # after each stack: a cut-off run keeps what it measured
        s = results["stacks"][name]
        for label in ("default", "light"):
            r = s.get(label) or {}
            cli = r.get("cli") or {}
            rt = cli.get("run_timer") or {}
            print(f"  {label:8s} run timer: step {rt.get('step_ms_median')} ms ({rt.get('step_basis')}), host "
                  f"{rt.get('wall_ms_median')} ms, host ahead {rt.get('host_ahead')}, traced/unprofiled "
                  f"{rt.get('slowdown')}, spread cv {rt.get('spread_cv')}; bare {(s.get('bare') or {}).get('median_step_ms')} ms",
                  flush=True)
            print(f"  {label:8s} exit {r.get('exit')} step x{r.get('median_step_vs_bare')} vs bare; "
                  f"phases {cli.get('phases')}; truth {(s.get('truth') or {}).get('shares')}; "
                  f"max diff {cli.get('max_abs_diff_points')} pp; steps {cli.get('steps_analysed')}", flush=True)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
