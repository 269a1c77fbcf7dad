"""Fuzz perfkit's trace loader, analysis and document commands with mutated real inputs.

Each case is a real trace from tests/data/traces (or a perfkit analysis document / budget file
made from one) with one to a few mutations (tests/_mutate.py: truncation, flipped or
inserted bytes, retyped values, absurd numbers, huge or invalid-UTF-8 strings, deep
nesting, duplicate or escaped keys, removed required keys, kernels before their launch,
gzip containers that lie or break, ...). Cases run one at a time in a worker process with an
address-space limit (RLIMIT_AS) and a wall-clock limit, so a hang or a memory bomb is
recorded as one outcome instead of stalling the fuzzer; a worker that dies or times out is
replaced.

Targets:
  analyze  perfkit.cli.main(["analyze", FILE, "--json", OUT]) in the worker
  api      perfkit.analyze(FILE).to_dict(), then the document dumped with allow_nan=False
  docs     a corrupted analysis document or budget file through merge, diff, report,
           report --html, budget init and budget check
  all      the three in turn

Outcomes:
  ok, ok-with-warning, exit-1 (budget exceeded), exit-2 (one line naming the file)
  and the failures: traceback (exception type + innermost perfkit frame), timeout,
  memory (MemoryError, or peak RSS growth over --rss-mb), crash (worker killed by a signal),
  nonfinite-json (NaN/inf in a JSON document written, or in the api document),
  exit-2-multi-line / exit-2-no-file-named / exit-2-no-error-line, partial-output (a JSON
  file left behind that does not parse), budget-pass-nonfinite (budget check exit 0 while a
  value shows nan/inf), plus two notes that are not counted as failures:
  ok-silent-on-invalid-json (the input was not valid JSON, perfkit analysed it with no
  warning) and nan-in-report (a nan/inf token on a report line).

For each distinct failure signature the smallest input is kept, shrunk (lines, then bytes,
while the signature stays the same; --minimize-tries runs at most) and written to --out with
index.md describing it.

Usage:
  python scripts/fuzz_perfkit.py --target all --cases 3000 --seed 1 --out /tmp/fuzz-out
  python scripts/fuzz_perfkit.py --target analyze --cases 500 --heavy   # with gzip bombs, FIFOs, 64 MB strings
  python scripts/fuzz_perfkit.py --target docs --cases 400 --timeout-s 20 --mem-mb 3072
  python scripts/fuzz_perfkit.py --replay /tmp/fuzz-out/03-traceback.json --target analyze

Options: --traces FILE... (seed traces; default: the small ones in tests/data/traces),
--timeout-s (per case, default 20), --mem-mb (worker address-space limit, default 3072),
--rss-mb (peak-RSS growth counted as a memory blow-up, default 1024), --minimize-tries
(default 300; 0 turns shrinking off), --special-rate (with --heavy, default 0.06), --max-string-bytes (huge strings and nesting, default
262144).
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing as mp
import os
import random
import re
import resource
import shutil
import signal
import stat
import sys
import tempfile
import time
from collections import Counter, defaultdict
from typing import Any, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from tests import _mutate as mu  # noqa: E402

DEFAULT_TRACES = [
    "tests/data/traces/nv-a100-simple-add-bench/benchmark_simple_add_trace.json.gz",
    "tests/data/traces/amd-mi300x-compile-triton/trace.json.gz",
    "tests/data/traces/amd-mi300x-vllm-decode-graph-replay/graph_execution.json.gz",
    "tests/data/traces/amd-mi210-gpu-only/gpu_only_trace.json.gz",
    "tests/data/traces/nv-h100-bert-small-infer/gaunernst_bert-small-uncased__1016001.json.gz",
]
DOC_TRACE = "tests/data/traces/amd-mi300x-compile-triton/trace.json.gz"

FAILURES = {"traceback", "timeout", "memory", "crash", "nonfinite-json", "exit-2-multi-line", "exit-2-no-file-named",
            "exit-2-no-error-line", "partial-output", "budget-pass-nonfinite", "exit-other"}
NOTES = {"ok-silent-on-invalid-json", "nan-in-report"}
_NAN_TOKEN = re.compile(r"(?<![\w.@])[-+]?(nan|inf|infinity)(?![\w])", re.IGNORECASE)

# --------------------------------------------------------------------- running one case (in the worker)


def _strict_file(path: str) -> tuple[Optional[str], Optional[str]]:
    """(problem, signature detail) for a JSON file perfkit wrote."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        return "partial-output", f"unreadable: {type(e).__name__}"
    try:
        mu.load_strict_json(text)
    except mu.NonFinite:
        where = mu.nonfinite_paths(json.loads(text))
        return "nonfinite-json", ", ".join(where[:3]) or "a NaN/Infinity token"
    except (ValueError, RecursionError) as e:
        return "partial-output", f"does not parse: {str(e)[:60]}"
    return None, None


def _new_warnings(doc: Any, spec: dict[str, Any]) -> bool:
    """Whether the document carries a warning the unmutated source did not."""
    try:
        warns = (doc.get("trace") or {}).get("warnings") or []
        return bool({str(w) for w in warns} - set(spec.get("baseline_warnings", [])))
    except Exception:  # noqa: BLE001
        return False


def _doc_warnings(path: str, spec: dict[str, Any]) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            return _new_warnings(json.load(f), spec)
    except Exception:  # noqa: BLE001
        return False


def _normalise(msg: str, names: list[str]) -> str:
    for n in names:
        msg = msg.replace(n, "FILE")
    msg = re.sub(r"/\S*FILE", "FILE", msg)
    msg = re.sub(r"\d+", "N", msg)
    return msg[:110]


def execute(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one case; returns {outcome, signature, detail}."""
    names = spec["names"]
    for p in spec.get("outputs", []):
        if os.path.lexists(p):
            os.unlink(p)
    if spec["target"] == "api":
        return _execute_api(spec)
    rc, exc, stdout, stderr = mu.run_cli(spec["argv"])
    if exc is not None:
        sig = mu.exception_signature(exc)
        kind = "memory" if isinstance(exc, MemoryError) else "traceback"
        return {"outcome": kind, "signature": sig, "detail": f"{type(exc).__name__}: {str(exc)[:200]}"}
    if rc == 2:
        problem = mu.error_line_problem(stderr, names)
        if problem is None:
            return {"outcome": "exit-2", "signature": "", "detail": stderr.strip()[:200]}
        outcome = "exit-2-" + problem.replace("'perfkit: error:' line", "error-line").replace(" ", "-")
        outcome = {"exit-2-no-file-named": "exit-2-no-file-named", "exit-2-multi-line": "exit-2-multi-line"}.get(outcome, "exit-2-no-error-line")
        return {"outcome": outcome, "signature": _normalise(stderr.strip().splitlines()[-1] if stderr.strip() else "", names),
                "detail": stderr.strip()[:300]}
    for p in spec.get("json_outputs", []):
        if os.path.exists(p):
            problem, where = _strict_file(p)
            if problem:
                return {"outcome": problem, "signature": f"{spec['command']}: {where}", "detail": f"rc={rc}; {where}"}
    if rc not in (0, 1):
        return {"outcome": "exit-other", "signature": f"rc={rc}", "detail": stderr.strip()[:200]}
    if spec.get("budget_check") and rc == 0 and _NAN_TOKEN.search(stdout):
        line = next(ln for ln in stdout.splitlines() if _NAN_TOKEN.search(ln))
        return {"outcome": "budget-pass-nonfinite", "signature": _normalise(" ".join(line.split()[:3]), names), "detail": line.strip()}
    warned = any(_doc_warnings(p, spec) for p in spec.get("json_outputs", []) if os.path.exists(p)) or "warning" in stderr.lower()
    report_nan = next((ln for ln in stdout.splitlines() if _NAN_TOKEN.search(ln)), None)
    if report_nan is not None and spec["target"] == "analyze":
        return {"outcome": "nan-in-report", "signature": "", "detail": report_nan.strip()[:200]}
    if rc == 1:
        return {"outcome": "exit-1", "signature": "", "detail": ""}
    if spec.get("invalid_json") and not warned:
        return {"outcome": "ok-silent-on-invalid-json", "signature": "input: " + spec.get("invalid_reason", ""), "detail": ""}
    return {"outcome": "ok-with-warning" if warned else "ok", "signature": "", "detail": ""}


def _execute_api(spec: dict[str, Any]) -> dict[str, Any]:
    import perfkit
    from perfkit.errors import PerfkitError

    path = spec["path"]
    try:
        doc = perfkit.analyze(path).to_dict()
    except PerfkitError as e:
        msg = str(e)
        if "\n" in msg.strip():
            return {"outcome": "exit-2-multi-line", "signature": _normalise(msg.splitlines()[0], spec["names"]), "detail": msg[:300]}
        if not any(n in msg for n in spec["names"]):
            return {"outcome": "exit-2-no-file-named", "signature": _normalise(msg, spec["names"]), "detail": msg[:300]}
        return {"outcome": "exit-2", "signature": "", "detail": msg[:200]}
    except Exception as e:  # noqa: BLE001
        kind = "memory" if isinstance(e, MemoryError) else "traceback"
        return {"outcome": kind, "signature": mu.exception_signature(e), "detail": f"{type(e).__name__}: {str(e)[:200]}"}
    where = mu.nonfinite_paths(doc)
    if where:
        return {"outcome": "nonfinite-json", "signature": "api: " + ", ".join(where[:3]), "detail": ", ".join(where[:10])}
    try:
        json.dumps(doc, allow_nan=False, default=str)
    except (TypeError, ValueError) as e:
        return {"outcome": "traceback", "signature": f"{type(e).__name__} @ json.dumps(to_dict())", "detail": str(e)[:200]}
    warned = _new_warnings(doc, spec)
    if spec.get("invalid_json") and not warned:
        return {"outcome": "ok-silent-on-invalid-json", "signature": "input: " + spec.get("invalid_reason", ""), "detail": ""}
    return {"outcome": "ok-with-warning" if warned else "ok", "signature": "", "detail": ""}


def _worker_main(conn: Any, mem_mb: int) -> None:
    os.setpgid(0, 0)  # its own process group: a timeout kills any decode processes it started too
    limit = mem_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    import perfkit.cli  # noqa: F401  (warm imports before the first case)

    while True:
        try:
            spec = conn.recv()
        except EOFError:
            return
        if spec is None:
            return
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        try:
            res = execute(spec)
        except BaseException as e:  # noqa: BLE001  (a failure of the harness itself)
            res = {"outcome": "traceback", "signature": "harness " + mu.exception_signature(e), "detail": repr(e)[:200]}
        res["seconds"] = time.perf_counter() - t0
        res["rss_growth_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024.0
        conn.send(res)


class Worker:
    """One worker process; ``run`` returns the case's result, or timeout / crash."""

    def __init__(self, mem_mb: int, rss_mb: int):
        self.mem_mb, self.rss_mb = mem_mb, rss_mb
        self.ctx = mp.get_context("fork")
        self.proc: Any = None
        self.conn: Any = None

    def _start(self) -> None:
        parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker_main, args=(child, self.mem_mb), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent

    def _kill(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
        if self.proc is not None:
            self.proc.join(5)
        self.proc = None

    def run(self, spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        if self.proc is None:
            self._start()
        t0 = time.perf_counter()
        self.conn.send(spec)
        if not self.conn.poll(timeout_s):
            self._kill()
            what = spec.get("description", "")[:48] if spec.get("container") in ("special", "bomb") else "a mutated input"
            return {"outcome": "timeout", "signature": f"{spec['command']}: over {timeout_s:g} s ({what})",
                    "detail": f"killed after {timeout_s:g} s", "seconds": time.perf_counter() - t0}
        try:
            res = self.conn.recv()
        except (EOFError, ConnectionResetError):
            self.proc.join(5)
            code = self.proc.exitcode
            self.proc = None
            sig = f"signal {-code}" if code is not None and code < 0 else f"exit {code}"
            return {"outcome": "crash", "signature": f"{spec['command']}: worker died ({sig})", "detail": sig,
                    "seconds": time.perf_counter() - t0}
        if res["rss_growth_mb"] > self.rss_mb and res["outcome"] not in FAILURES:
            res["detail"] = f"peak RSS grew {res['rss_growth_mb']:.0f} MB ({res['outcome']})"
            res["outcome"], res["signature"] = "memory", f"{spec['command']}: peak RSS growth over {self.rss_mb} MB"
        if res["rss_growth_mb"] > self.rss_mb / 2:
            self._kill()  # ru_maxrss never falls: a fresh worker measures the next case
        return res

    def close(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            try:
                self.conn.send(None)
                self.proc.join(5)
            except (BrokenPipeError, OSError):
                pass
        self._kill()


# --------------------------------------------------------------------- making cases (in the parent)


class Cases:
    def __init__(self, args: argparse.Namespace, workdir: str):
        self.args = args
        self.work = workdir
        self.rng = random.Random(args.seed)
        self.sources = []
        for p in args.traces:
            path = p if os.path.isabs(p) else os.path.join(REPO, p)
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rb") as f:
                self.sources.append((os.path.basename(path), mu.TraceDoc.parse(f.read().decode("utf-8"))))
        self.baseline_warnings = {name: _source_warnings(path) for (name, _), path in
                                  zip(self.sources, [p if os.path.isabs(p) else os.path.join(REPO, p) for p in args.traces])}
        self.docs_base: Optional[dict[str, Any]] = None

    # the documents the docs target corrupts: two ranks of one trace, a budget from it
    def _docs_base(self) -> dict[str, Any]:
        if self.docs_base is not None:
            return self.docs_base
        base = os.path.join(self.work, "docs-base")
        os.makedirs(base, exist_ok=True)
        docs = mu.make_document_sources(os.path.join(REPO, DOC_TRACE), base)
        self.docs_base = docs
        return docs

    def make(self, n: int, target: str) -> dict[str, Any]:
        rng = self.rng
        case_dir = os.path.join(self.work, "cases")
        os.makedirs(case_dir, exist_ok=True)
        if target == "docs":
            return self._make_docs(n, rng, case_dir)
        src_name, src = rng.choice(self.sources)
        special = None
        if self.args.heavy and rng.random() < self.args.special_rate:
            special = rng.choice(["bomb", "fifo", "directory", "dev-zero", "empty", "unreadable"])
        path = os.path.join(case_dir, f"case-{n:06d}")
        if special is None:
            case = mu.mutate_trace(src, rng, max_string_bytes=self.args.max_string_bytes, heavy=self.args.heavy)
            path += case.suffix
            with open(path, "wb") as f:
                f.write(case.data)
            desc, payload, container, invalid = case.description, case.payload, case.container, case.invalid_json
            reason = case.invalid_reason
        else:
            path, desc = self._special(special, path, src, rng)
            payload, container, invalid, reason = b"", "special", False, ""
        spec = self._trace_spec(target, path, n)
        spec.update(source=src_name, description=desc, payload=payload, container=container, invalid_json=invalid,
                    invalid_reason=reason, baseline_warnings=self.baseline_warnings[src_name])
        return spec

    def _trace_spec(self, target: str, path: str, n: int) -> dict[str, Any]:
        out = os.path.join(self.work, "out", f"analysis-{n % 4}.json")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        if target == "api":
            return {"target": "api", "command": "api", "path": path, "names": [os.path.basename(path)], "outputs": []}
        return {"target": "analyze", "command": "analyze", "argv": ["analyze", path, "--json", out],
                "names": [os.path.basename(path)], "outputs": [out], "json_outputs": [out]}

    def _special(self, kind: str, path: str, src: mu.TraceDoc, rng: random.Random) -> tuple[str, str]:
        if kind == "bomb":
            size = rng.choice([256 << 20, 1 << 30, 3 << 30])
            case = mu.bomb_case(src, rng, size)
            path += ".json.gz"
            with open(path, "wb") as f:
                f.write(case.data)
            return path, case.description
        path += ".json"
        if kind == "fifo":
            os.mkfifo(path)
            return path, "a FIFO named .json (no writer)"
        if kind == "directory":
            os.makedirs(path)
            return path, "a directory named .json"
        if kind == "dev-zero":
            os.symlink("/dev/zero", path)
            return path, "a symlink to /dev/zero named .json"
        if kind == "unreadable":
            with open(path, "w") as f:
                f.write(src.text())
            os.chmod(path, 0)
            return path, "mode 000 (unreadable unless run as root)"
        open(path, "wb").close()
        return path, "an empty file"

    def _make_docs(self, n: int, rng: random.Random, case_dir: str) -> dict[str, Any]:
        base = self._docs_base()
        out_dir = os.path.join(self.work, "out")
        os.makedirs(out_dir, exist_ok=True)
        command = rng.choice(mu.DOC_COMMANDS)
        if command == "budget-bad-toml":
            data, desc = mu.mutate_budget(base["budget_text"], rng)
            bad = os.path.join(case_dir, f"case-{n:06d}.toml")
        else:
            data, desc = mu.mutate_document(base["doc1"], rng)
            bad = os.path.join(case_dir, f"case-{n:06d}.analysis.json")
        with open(bad, "wb") as f:
            f.write(data)
        spec = mu.doc_command(command, bad, base, out_dir)
        spec.update(source="docs", description=desc, payload=data, container="plain", invalid_json=False)
        return spec


def _source_warnings(path: str) -> list[str]:
    """The warnings of the unmutated trace (a mutated one warning only these is not 'with warning')."""
    import perfkit

    return [str(w) for w in (perfkit.analyze(path).to_dict().get("trace") or {}).get("warnings") or []]


# --------------------------------------------------------------------- shrinking


def _with_payload(spec: dict[str, Any], payload: bytes, work: str, k: int) -> Optional[dict[str, Any]]:
    """A copy of ``spec`` whose input file holds ``payload`` (in the same container)."""
    try:
        data, suffix = mu.rewrap(payload, spec["container"])
    except ValueError:
        return None
    old = spec["names"][0]
    ext = old[old.index("."):]
    path = os.path.join(work, "shrink", f"s{k:05d}{ext}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    problem = mu.strict_json_problem(payload)
    new = dict(spec, names=[os.path.basename(path)], payload=payload, invalid_json=problem is not None,
               invalid_reason=problem or "")
    if "path" in new:
        new["path"] = path
    if "argv" in new:
        new["argv"] = [path if a.endswith(old) and os.path.basename(a) == old else a for a in new["argv"]]
    return new


def shrink(spec: dict[str, Any], want: tuple[str, str], worker: Worker, timeout_s: float, tries: int, work: str) -> dict[str, Any]:
    """Delta debugging over lines, then bytes, keeping (outcome, signature) == want."""
    if not spec.get("payload") or spec["container"] not in ("plain", "gzip", "two gzip members, each the whole document",
                                                            "gzip content named .json", "plain content named .json.gz"):
        return spec
    best = spec
    count = 0

    def same(cand: list[bytes]) -> Optional[dict[str, Any]]:
        nonlocal count
        count += 1
        s = _with_payload(spec, b"".join(cand), work, count)
        if s is None:
            return None
        r = worker.run(s, timeout_s)
        return s if (r["outcome"], r["signature"]) == want else None

    for unit in ("events", "lines", "bytes"):
        payload = best["payload"]
        if unit == "events":  # compact traces are one line: cut after each "}," first
            parts = [p for p in re.split(rb"(?<=\},)", payload) if p]
        elif unit == "lines":
            parts = payload.splitlines(keepends=True)
        else:
            parts = [bytes([b]) for b in payload]
        if unit == "bytes" and len(parts) > 4096:
            break  # too long for byte-level steps within the budget
        n = 2
        while len(parts) >= 2 and count < tries:
            size = max(1, len(parts) // n)
            removed = False
            for i in range(0, len(parts), size):
                if count >= tries:
                    break
                cand = parts[:i] + parts[i + size:]
                got = same(cand)
                if got is not None:
                    parts, best = cand, got
                    n = max(n - 1, 2)
                    removed = True
                    break
            if not removed:
                if size == 1:
                    break
                n = min(len(parts), n * 2)
    return best


# --------------------------------------------------------------------- main


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-")[:60]


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", choices=["analyze", "api", "docs", "all"], default="all")
    ap.add_argument("--out", default=None, help="Save a reproducer for each distinct failure here.")
    ap.add_argument("--traces", nargs="+", default=DEFAULT_TRACES)
    ap.add_argument("--timeout-s", type=float, default=20.0)
    ap.add_argument("--mem-mb", type=int, default=3072)
    ap.add_argument("--rss-mb", type=int, default=1024)
    ap.add_argument("--heavy", action="store_true", help="Add gzip bombs, FIFOs, /dev/zero and multi-MB strings.")
    ap.add_argument("--special-rate", type=float, default=0.06,
                    help="With --heavy: the share of cases that are a gzip bomb, FIFO, directory, /dev/zero, empty or unreadable file.")
    ap.add_argument("--max-string-bytes", type=int, default=262144)
    ap.add_argument("--minimize-tries", type=int, default=300)
    ap.add_argument("--replay", default=None, help="Run one saved input file (with --target) and print its outcome.")
    args = ap.parse_args(argv)

    work = tempfile.mkdtemp(prefix="perfkit-fuzz-")
    worker = Worker(args.mem_mb, args.rss_mb)
    try:
        if args.replay:
            gen = Cases(args, work)
            if args.target == "docs":
                raise SystemExit("--replay takes an analyze or api input; for docs run the command in index.md")
            spec = gen._trace_spec(args.target if args.target != "all" else "analyze", os.path.abspath(args.replay), 0)
            print(json.dumps(worker.run(spec, args.timeout_s), indent=2))
            return 0
        return _fuzz(args, work, worker)
    finally:
        worker.close()
        for root, dirs, _ in os.walk(work):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
        shutil.rmtree(work, ignore_errors=True)


def _fuzz(args: argparse.Namespace, work: str, worker: Worker) -> int:
    gen = Cases(args, work)
    targets = ["analyze", "api", "docs"] if args.target == "all" else [args.target]
    counts: dict[str, Counter] = defaultdict(Counter)
    found: dict[tuple[str, str, str], dict[str, Any]] = {}  # (target, outcome, signature) -> smallest case
    hits: Counter = Counter()
    t_start = time.perf_counter()
    for n in range(args.cases):
        target = targets[n % len(targets)]
        spec = gen.make(n, target)
        res = worker.run(spec, args.timeout_s)
        counts[target][res["outcome"]] += 1
        if res["outcome"] in FAILURES or res["outcome"] in NOTES:
            key = (target, res["outcome"], res["signature"])
            hits[key] += 1
            size = len(spec.get("payload") or b"") or 1 << 40
            if key not in found or size < found[key]["size"]:
                keep = _keep(spec, work, len(found))
                found[key] = {"spec": keep, "res": res, "size": size}
        for p in spec.get("names", []):
            _remove_case(os.path.join(work, "cases", p))
        if (n + 1) % 200 == 0:
            print(f"{n + 1} cases, {time.perf_counter() - t_start:.0f} s, {len(found)} signatures", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - t_start

    print(f"\n{args.cases} cases, seed {args.seed}, {elapsed:.0f} s\n")
    outcomes = sorted({o for c in counts.values() for o in c})
    print(f"{'outcome':28s}" + "".join(f"{t:>10s}" for t in targets))
    for o in outcomes:
        mark = " *" if o in FAILURES else ""
        print(f"{o + mark:28s}" + "".join(f"{counts[t][o]:>10d}" for t in targets))
    print("(* a failure)\n")

    if args.out:
        os.makedirs(args.out, exist_ok=True)
        if gen.docs_base is not None:
            base = os.path.join(args.out, "docs-base")
            shutil.copytree(os.path.join(work, "docs-base"), base, dirs_exist_ok=True)
    index = ["| # | target | outcome | signature | hits | reproducer | command | what the input is | detail |",
             "|---|---|---|---|---|---|---|---|---|"]
    for k, (key, item) in enumerate(sorted(found.items(), key=lambda kv: (kv[0][1] in NOTES, kv[0][1], -hits[kv[0]]))):
        target, outcome, signature = key
        spec = item["spec"]
        if args.minimize_tries and outcome not in ("timeout", "memory", "crash"):
            spec = shrink(spec, (outcome, signature), worker, args.timeout_s, args.minimize_tries, work)
        shrunk = f" (shrunk from {item['size']} to {len(spec['payload'])} bytes)" if spec.get("payload") and item["size"] != len(spec["payload"]) else ""
        line = f"{k:02d} {target:8s} {outcome:26s} {hits[key]:5d}  {signature}"
        print(line)
        if args.out:
            src = spec["path"] if "path" in spec else next(a for a in spec["argv"] if os.path.basename(a) == spec["names"][0])
            name = f"{k:02d}-{target}-{_slug(outcome)}{spec['names'][0][spec['names'][0].index('.'):]}"
            dest = os.path.join(args.out, name)
            _copy_input(src, dest, spec)
            cmd = "perfkit.analyze(FILE)" if target == "api" else "perfkit " + " ".join(
                "FILE" if os.path.basename(a) == spec["names"][0] else
                ("docs-base/" + os.path.basename(a) if "docs-base" in a else
                 ("OUT" + os.path.splitext(a)[1] if os.path.dirname(a).endswith("/out") else a)) for a in spec["argv"])
            index.append(f"| {k:02d} | {target} | {outcome} | `{signature}` | {hits[key]} | {name} | `{cmd}` | "
                         f"{spec['description'][:300].replace('|', '/')}{shrunk} | {item['res'].get('detail', '')[:200].replace('|', '/').replace(chr(10), ' ')} |")
    if args.out:
        with open(os.path.join(args.out, "index.md"), "w") as f:
            f.write(f"# perfkit fuzz: {args.cases} cases, seed {args.seed}, target {args.target}\n\n")
            f.write("\n".join(index) + "\n")
        print(f"\nreproducers and index.md in {args.out}")
    return 1 if any(k[1] in FAILURES for k in found) else 0


def _keep(spec: dict[str, Any], work: str, k: int) -> dict[str, Any]:
    """Copy a case's input aside (case files are reused) and point the spec at the copy."""
    keep_dir = os.path.join(work, "keep")
    os.makedirs(keep_dir, exist_ok=True)
    old = spec["names"][0]
    src = spec["path"] if "path" in spec else next(a for a in spec["argv"] if os.path.basename(a) == old)
    dest = os.path.join(keep_dir, f"k{k:04d}-" + old)
    _copy_input(src, dest, spec)
    new = dict(spec, names=[os.path.basename(dest)])
    if "path" in new:
        new["path"] = dest
    if "argv" in new:
        new["argv"] = [dest if a == src else a for a in spec["argv"]]
    return new


def _copy_input(src: str, dest: str, spec: dict[str, Any]) -> None:
    if os.path.lexists(dest):
        _remove_case(dest)
    if os.path.islink(src):
        os.symlink(os.readlink(src), dest)
    elif os.path.isdir(src):
        os.makedirs(dest)
    elif os.path.exists(src) and stat.S_ISFIFO(os.stat(src).st_mode):
        os.mkfifo(dest)
    else:
        mode = os.stat(src).st_mode
        os.chmod(src, 0o644)
        shutil.copyfile(src, dest)
        os.chmod(src, mode)
        os.chmod(dest, stat.S_IMODE(mode))


def _remove_case(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


if __name__ == "__main__":
    sys.exit(main())
