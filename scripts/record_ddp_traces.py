#!/usr/bin/env python3
"""Device proof for multi-rank runs: DDP on the example GPT over NCCL on 2 GPUs, profiled by ``perfkit profile``.

Runs four 2-process ``torchrun`` jobs of ``examples/ddp_train.py`` (the example
GPT of ``examples/train_gpt.py``, ~135M parameters, bf16 autocast, fused AdamW,
DistributedDataParallel, NCCL) under ``perfkit profile``, each into its own
folder of ``--out``:

* ``balanced/``: no straggler (the control: no ``straggler_rank`` at warning or worse);
* ``straggler/``: rank 1 runs ~``--slow-ms`` ms of extra matmuls per step
  (``straggler_work``): ``straggler_rank`` must come first and name rank 1;
* ``straggler_sleep/``: rank 1 sleeps ``--slow-ms`` ms on the host per step
  (its GPU idles; the other rank's NCCL kernels wait): same check;
* ``hang/``: rank 1 stops in ``stuck_in_python`` at step 12 (``--watchdog``
  dumps stacks, rank 0 logs the loss every step, so its host blocks in
  ``loss.item()`` behind the NCCL all-reduce); the job is ended by the process
  group timeout (or killed after ``--hang-timeout``); ``perfkit stalls`` must name
  rank 1 in ``stuck_in_python`` with rank 0 waiting.

Afterwards, in each folder: ``perfkit analyze FOLDER`` (the job view from the
traces, ``reanalysis.json``) and ``perfkit merge FOLDER`` (the job view from the
per-rank ``rank<R>.analysis.json`` alone, ``merged.json``; checked equal to the
``analysis.json`` rank 0 wrote), and for the hang ``perfkit stalls``
(``stalls.json``). Logs of every command are kept (``*.log``).

Prints a JSON summary (also ``--out``/summary.json): environment, per job the
command, exit status, wall seconds, the per-rank table, the findings' titles and
the checks with PASS/FAIL. Exit status 0 when every check passes.

Usage (on the 2-GPU machine, from the repository root)::

    python scripts/record_ddp_traces.py --out traces/ddp_gpt_2xh200

Needs torch with CUDA and 2 GPUs; perfkit is imported from this checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "ddp_train.py"
ENV = {**os.environ, "PYTHONPATH": str(REPO) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")}


def run(cmd: list[str], log: Path, timeout: float) -> dict[str, Any]:
    """Run a command in its own process group, output to ``log``; killed (SIGTERM, then SIGKILL) after ``timeout``."""
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        killed = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            killed = True
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return {"command": " ".join(cmd), "exit_status": proc.returncode, "killed_after_timeout": killed,
            "wall_s": round(time.perf_counter() - t0, 1), "log": str(log)}


def profile_job(out: Path, name: str, profile_args: list[str], script_args: list[str], timeout: float) -> dict[str, Any]:
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "perfkit", "profile", "--out", str(folder), *profile_args, str(EXAMPLE), *script_args]
    return run(cmd, out / f"{name}.log", timeout)


def perfkit(out: Path, log_name: str, *args: str) -> dict[str, Any]:
    return run([sys.executable, "-m", "perfkit", *args], out / log_name, 900)


def load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def job_summary(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        return {"analysis": None}
    rows = [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()
             if k in ("rank", "status", "steps", "step_ms_median", "busy_ms_per_step", "idle_ms_per_step",
                      "comm_ms_per_step", "comm_exposed_ms_per_step", "work_ms_per_step", "reason")}
            for r in doc.get("ranks", [])]
    return {"device": (doc.get("trace") or {}).get("device"), "job": doc.get("job"), "ranks": rows,
            "findings": [{"id": f["id"], "rank": f.get("rank"), "severity": f["severity"], "title": f["title"]}
                         for f in doc.get("findings", [])]}


def check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"check": name, "pass": bool(ok), "detail": detail}


def straggler_checks(doc: Any, label: str) -> list[dict[str, Any]]:
    f = (doc or {}).get("findings", [{}])[0] if doc else {}
    return [check(f"{label}: straggler_rank first, naming rank 1", f.get("id") == "straggler_rank" and f.get("rank") == 1,
                  f.get("title", "no findings")),
            check(f"{label}: where names the extra work", "straggler_work" in json.dumps(f.get("where")) or
                  any(x in json.dumps(f.get("where")) for x in ("aten::mm", "aten::matmul", "idle")), json.dumps(f.get("where")))]


def same_job_view(a: Any, b: Any) -> bool:
    if not isinstance(a, dict) or not isinstance(b, dict):
        return False
    a, b = dict(a), dict(b)
    for d in (a, b):
        d.pop("stalls", None)
    return json.loads(json.dumps(a, sort_keys=True)) == json.loads(json.dumps(b, sort_keys=True))


def environment() -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "cuda": torch.version.cuda, "gpus": [], "host": platform.node()}
    if torch.cuda.is_available():
        env["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        try:
            env["nccl"] = ".".join(str(x) for x in torch.cuda.nccl.version())
        except Exception:
            pass
    try:
        env["perfkit_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                               text=True).stdout.strip() or None
    except OSError:
        pass
    return env


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("traces/ddp_gpt_2gpu"), help="output folder (default traces/ddp_gpt_2gpu)")
    ap.add_argument("--steps", type=int, default=20, help="training steps per job (default 20)")
    ap.add_argument("--batch", type=int, default=16, help="sequences of 1024 tokens per rank (default 16)")
    ap.add_argument("--slow-ms", type=float, default=40.0, help="the straggler's extra work per step (default 40)")
    ap.add_argument("--watchdog", type=float, default=10.0, help="watchdog period of the hang job, s (default 10)")
    ap.add_argument("--hang-timeout", type=float, default=300.0, help="kill the hang job after this many s (default 300)")
    ap.add_argument("--pg-timeout-s", type=float, default=120.0, help="process-group timeout of the hang job (default 120)")
    ap.add_argument("--only", default="balanced,straggler,straggler_sleep,hang", help="jobs to run (comma-separated)")
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="check this script on a CPU machine: gloo, the tiny model, a 2 s watchdog and a 10 s timeout")
    a = ap.parse_args()
    env = environment()
    if a.cpu_smoke:
        a.watchdog, a.pg_timeout_s, a.batch = 2.0, 10.0, 4
    elif len(env["gpus"]) < 2:
        print(json.dumps({"error": "needs 2 CUDA GPUs", "environment": env}, indent=2))
        return 2
    out = a.out if a.out.is_absolute() else REPO / a.out
    out.mkdir(parents=True, exist_ok=True)
    only = {x.strip() for x in a.only.split(",") if x.strip()}
    common = ["--steps", str(a.steps), "--batch", str(a.batch)] + (["--size", "tiny"] if a.cpu_smoke else [])
    summary: dict[str, Any] = {"environment": env, "jobs": {}, "checks": []}
    checks: list[dict[str, Any]] = summary["checks"]

    jobs = {
        "balanced": ([], []),
        "straggler": ([], ["--slow-rank", "1", "--slow-ms", str(a.slow_ms)]),
        "straggler_sleep": ([], ["--slow-rank", "1", "--slow-ms", str(a.slow_ms), "--slow-mode", "sleep"]),
    }
    for name, (pargs, sargs) in jobs.items():
        if name not in only:
            continue
        folder = out / name
        res = profile_job(out, name, ["--quiet", *pargs], common + sargs, timeout=900)
        res["reanalysis"] = perfkit(out, f"{name}.reanalysis.log", "analyze", str(folder), "--json",
                                    str(folder / "reanalysis.json"), "-q")
        res["merge"] = perfkit(out, f"{name}.merge.log", "merge", str(folder), "--json", str(folder / "merged.json"), "-q")
        doc = load(folder / "analysis.json")
        res.update(job_summary(doc))
        summary["jobs"][name] = res
        checks.append(check(f"{name}: job ended cleanly", res["exit_status"] == 0, f"exit status {res['exit_status']}"))
        checks.append(check(f"{name}: rank 0 wrote the job analysis with both ranks",
                            bool(doc) and [r.get("rank") for r in doc.get("ranks", []) if r.get("status") == "analysed"] == [0, 1],
                            json.dumps((doc or {}).get("job"))))
        checks.append(check(f"{name}: perfkit merge of the rank files == the job analysis",
                            same_job_view(load(folder / "merged.json"), doc), "merged.json vs analysis.json"))
        re_doc = load(folder / "reanalysis.json")
        if name == "balanced":
            bad = [f for f in (doc or {}).get("findings", []) if f["id"] == "straggler_rank" and f["severity"] != "info"]
            checks.append(check("balanced: no straggler_rank at warning or worse", bool(doc) and not bad,
                                "; ".join(f["title"] for f in bad) or "none"))
        else:
            checks += straggler_checks(doc, name)
            checks += straggler_checks(re_doc, f"{name} (perfkit analyze of the traces)")

    if "hang" in only:
        folder = out / "hang"
        res = profile_job(out, "hang", ["--quiet", "--watchdog", str(a.watchdog)],
                          common + ["--hang-rank", "1", "--hang-after", "12", "--log-every", "1", "--pg-timeout-s", str(a.pg_timeout_s)],
                          timeout=a.hang_timeout)
        res["stalls"] = perfkit(out, "hang.stalls.log", "stalls", str(folder), "--json", str(folder / "stalls.json"))
        res["reanalysis"] = perfkit(out, "hang.reanalysis.log", "analyze", str(folder), "--json",
                                    str(folder / "reanalysis.json"), "-q")
        stalls = load(folder / "stalls.json") or {}
        by = {r["rank"]: r for r in stalls.get("ranks", [])}
        res["stalls_verdict"] = stalls.get("verdict")
        res["stalls_ranks"] = [{k: r.get(k) for k in ("rank", "status", "where_text", "user_where_text", "waiting_in",
                                                      "seconds_stalled", "last_step")} for r in stalls.get("ranks", [])]
        re_doc = load(folder / "reanalysis.json")
        res.update(job_summary(re_doc))
        summary["jobs"]["hang"] = res
        checks.append(check("hang: the job ended (process-group timeout or kill)", res["exit_status"] is not None,
                            f"exit status {res['exit_status']}, killed after timeout: {res['killed_after_timeout']}"))
        checks.append(check("hang: perfkit stalls names rank 1 in stuck_in_python",
                            str(stalls.get("verdict", "")).startswith("stuck: rank 1 in stuck_in_python"),
                            str(stalls.get("verdict"))))
        checks.append(check("hang: rank 0 is seen waiting", bool(by.get(0, {}).get("waiting_in")),
                            json.dumps(by.get(0, {}).get("where_text"))))
        first = ((re_doc or {}).get("findings") or [{}])[0]
        checks.append(check("hang: perfkit analyze of the run: rank_stuck first, rank 1",
                            first.get("id") == "rank_stuck" and first.get("evidence", {}).get("stuck_ranks") == [1],
                            first.get("title", "no analysis")))

    summary["passed"] = all(c["pass"] for c in checks)
    text = json.dumps(summary, indent=2, default=str)
    (out / "summary.json").write_text(text + "\n")
    print(text)
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
