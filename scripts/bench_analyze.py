#!/usr/bin/env python3
"""Benchmark perfkit's trace analyzer on large Kineto traces.

What it measures
----------------
For each trace file, in *fresh* Python subprocesses (so that imports and the
page cache are comparable from run to run):

* ``perfkit.analyze(path).to_dict()``: wall seconds timed inside the child
  around that one call (interpreter start-up is excluded; perfkit's lazy import
  of numpy/pandas/msgspec happens inside the call and is included), plus the
  wall seconds of the whole child process as seen by the parent;
* peak memory: the parent samples, every ~20 ms, the sum of ``Pss`` (from
  ``/proc/<pid>/smaps_rollup``: resident memory with pages shared between the
  forked workers counted once) over the child and all of its descendants (the
  decode pool's worker processes), and keeps the peak of that sum. This is the figure
  that counts. The child also reports its own ``ru_maxrss`` and the largest
  ``ru_maxrss`` of its reaped children (the pool workers);
* ``json.load`` of the same file (through ``gzip.open`` for ``.gz``), timed and
  sampled the same way: the baseline any Python tool pays to read the trace.

Each measurement is repeated ``--repeat`` times (default 3); the median is
reported with min and max. Before a file's first measurement the file is read
once, untimed, to warm the page cache, and one untimed ``import
perfkit.analysis`` warms the shared libraries. Derived figures: MB/s =
uncompressed JSON MB / analysis seconds, and the ratio analysis / json.load.
MB means 10**6 bytes throughout. Before each analysis run a fixed CPU workload
(the "machine probe": numpy sorts and searches and a Python loop, in a fresh
process) is timed: on a shared virtual machine the speed varies over the day
(up to ~1.7x, with nothing visible running), and the probe says in which
state each figure was taken.

Fairness on a shared machine: before every run the script waits (up to
``--max-idle-wait`` s) until other processes use < 0.15 CPU, and it records
for every run the CPU seconds that unrelated processes used meanwhile
(``/proc/stat`` busy time minus the measured tree's and its own). A run during
which they used more than ``--max-foreign`` CPUs on average (default 0.1) is
discarded and repeated, up to ``--retries`` times (default 3); the discarded
runs are kept in results.json. The
children import perfkit from a copy of ``perfkit/`` taken at the start
(``bench-data/perfkit-snapshot``), so a run measures one version of the code
even if the working tree changes meanwhile (``--no-snapshot`` to import the
tree itself); the git commit and a hash of the sources are recorded.

Which traces
------------
* the small real anchor ``--source`` (default: HolisticTraceAnalysis's test
  trace ``df_index_resolver.json.gz``, a 54 MB V100 DDP training trace), as
  is (gzip) and decompressed to ``bench-data/df_index_resolver.json``;
* large traces made from it with the inflation tool (``--inflate-tool``,
  default ``../shared/tools/inflate_trace.py``), run as
  ``python inflate_trace.py SRC DST --copies N``. The tool re-serialises events
  compactly, so one copy is smaller than the source: the script first makes a
  1-copy file to learn the bytes per copy, then picks
  ``N = round(target / bytes_per_copy)`` for each of ``--sizes-mb``
  (default ``150,1000``). Files go to ``bench-data/`` (git-ignored) with a
  ``manifest.json``; a file whose size matches the manifest is reused.

Targets (checked per file, PASS/FAIL printed; they are meant for the large,
inflated traces, the anchors are shown for scale)
* analysis time <= 0.5 x json.load time;
* throughput >= 250 MB/s of uncompressed JSON;
* peak RSS (sum over the process tree) <= uncompressed JSON size.

Output: a Markdown table on stdout and in ``bench-data/results.md``, all raw
runs and the machine description in ``bench-data/results.json``.

Usage::

    .venv/bin/python scripts/bench_analyze.py [--sizes-mb 150,1000] [--repeat 3] [--skip-build]
    .venv/bin/python scripts/bench_analyze.py --profile   # also: cProfile of one in-process analysis
    .venv/bin/python scripts/bench_analyze.py --one-trace --repeat 9 [--baseline main]

``--one-trace`` measures only the whole ``perfkit analyze`` process on ``--source`` against the
floor (interpreter + numpy import, gzip inflate, the C scanner's pass), plus ``perfkit --help`` and
``--version``, every command in each round, rounds alternating; ``bench-data/one_trace.md``.

Exit status: 0 if every target is met on the inflated traces, 1 otherwise.
Only the standard library and perfkit are used. Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "bench-data"
DEFAULT_TOOL = REPO.parent / "shared" / "tools" / "inflate_trace.py"
DEFAULT_SOURCE = (
    REPO.parent / "shared" / "anchors" / "traces" / "hta" / "tests" / "data" / "df_index_resolver" / "df_index_resolver.json.gz"
)
MB = 1_000_000
SAMPLE_S = 0.02
#: Where the children import perfkit from (see snapshot_perfkit); the repository by default.
CODE_ROOT = REPO

TARGET_RATIO = 0.5
TARGET_MBPS = 250.0

# Code run in the fresh child. argv: MODE PATH. Prints one line "RESULT {json}".
CHILD = r"""
import os, sys, time, resource
mode, path = sys.argv[1], sys.argv[2]

def vmrss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0

out = {}
if mode == "import":
    t0 = time.perf_counter()
    import perfkit.analysis
    out["seconds"] = time.perf_counter() - t0
elif mode == "analyze":
    import perfkit
    out["rss_before"] = vmrss()
    t0 = time.perf_counter()
    doc = perfkit.analyze(path).to_dict()
    out["seconds"] = time.perf_counter() - t0
    out["events"] = doc["trace"]["events"]
    out["steps"] = doc["steps"]["total"]
    out["bytes_read"] = doc["trace"]["bytes"]
    out["perfkit_file"] = perfkit.__file__
elif mode == "probe":
    # A fixed CPU workload (numpy sorts and searches, a Python loop): its time
    # tells how fast the machine runs at the moment of a measurement.
    import numpy as np
    t0 = time.perf_counter()
    x = np.random.default_rng(0).random(1_000_000)
    for _ in range(2):
        np.searchsorted(np.sort(x), x)
    acc = 0
    for i in range(1_000_000):
        acc += i * i
    out["seconds"] = time.perf_counter() - t0
elif mode == "json":
    import gzip, json
    out["rss_before"] = vmrss()
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    t0 = time.perf_counter()
    with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
        obj = json.load(f)
    out["seconds"] = time.perf_counter() - t0
    ev = obj.get("traceEvents") if isinstance(obj, dict) else obj
    out["events"] = len(ev) if isinstance(ev, list) else None
else:
    raise SystemExit("unknown mode " + mode)
ru, rc = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
out["ru_maxrss"] = ru.ru_maxrss * 1024
out["children_ru_maxrss"] = rc.ru_maxrss * 1024
out["cpu_s"] = ru.ru_utime + ru.ru_stime + rc.ru_utime + rc.ru_stime
sys.stdout.write("RESULT " + __import__("json").dumps(out) + "\n")
sys.stdout.flush()
os._exit(0)  # skip freeing a multi-GB object graph: not part of what is measured
"""


# --------------------------------------------------------------------------- /proc sampling


def _vmrss(pid: int) -> Optional[int]:
    """Resident memory of one process, counting pages shared with others proportionally (PSS).

    Pool workers are forked: they share the parent's pages (the interpreter,
    numpy, the libraries). Summing VmRSS over the tree would count those pages
    once per process; PSS (``/proc/<pid>/smaps_rollup``) splits each shared page
    among its sharers, so the sum over the tree is the real memory used. Falls
    back to VmRSS where smaps_rollup is not available.
    """
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return 0  # a zombie has no VmRSS line


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return kids


def _children_by_scan(pid: int) -> list[int]:
    """Fallback where /proc/<pid>/task/<tid>/children is missing: scan every process's ppid."""
    kids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            kids.append(int(name))
    return kids


_HAVE_CHILDREN_FILE = os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def tree_rss(root: int) -> tuple[int, int, int]:
    """(sum of PSS over root and all descendants, root's PSS, number of processes)."""
    total = 0
    root_rss = 0
    n = 0
    stack = [root]
    seen = set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        rss = _vmrss(pid)
        if rss is None:
            continue
        if pid == root:
            root_rss = rss
        total += rss
        n += 1
        stack.extend(_children(pid) if _HAVE_CHILDREN_FILE else _children_by_scan(pid))
    return total, root_rss, n


def _child_env(root: Optional[Path] = None) -> dict[str, str]:
    """The environment of a timed command: perfkit imported from ``root`` (default the snapshot)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root or CODE_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def snapshot_perfkit() -> str:
    """Copy perfkit/ to bench-data/perfkit-snapshot/ so that one run measures one version of
    the code even while the working tree is being edited; return a hash of its sources."""
    global CODE_ROOT
    import shutil

    dst = DATA / "perfkit-snapshot"
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(REPO / "perfkit", dst / "perfkit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _compile(dst)  # as installed: without .pyc files (PYTHONDONTWRITEBYTECODE) every run would compile
    CODE_ROOT = dst
    return source_hash(dst / "perfkit")


def source_hash(pkg: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for f in sorted(pkg.rglob("*.py")):
        h.update(str(f.relative_to(pkg)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


_HZ = os.sysconf("SC_CLK_TCK")


def cpu_busy_s() -> float:
    """Busy CPU seconds of the whole machine so far (all CPUs; from /proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / _HZ


def wait_idle(max_wait_s: float, busy_limit: float = 0.15) -> float:
    """Wait until the machine is quiet (< busy_limit CPUs busy over 1 s); return seconds waited."""
    t0 = time.perf_counter()
    while True:
        b0, w0 = cpu_busy_s(), time.perf_counter()
        time.sleep(1.0)
        busy = (cpu_busy_s() - b0) / (time.perf_counter() - w0)
        waited = time.perf_counter() - t0
        if busy < busy_limit or waited >= max_wait_s:
            if busy >= busy_limit:
                print(f"  (machine still busy: {busy:.2f} CPUs in use by other processes; measuring anyway)", flush=True)
            return waited
        time.sleep(2.0)


class TreeSampler:
    """Samples a process tree's summed PSS every SAMPLE_S on a thread: ``peak`` holds the maxima."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peak = {"tree": 0, "main": 0, "procs": 0, "samples": 0}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            total, main, n = tree_rss(self.pid)
            if n:
                self.peak["samples"] += 1
                self.peak["tree"] = max(self.peak["tree"], total)
                self.peak["main"] = max(self.peak["main"], main)
                self.peak["procs"] = max(self.peak["procs"], n)
            self._done.wait(SAMPLE_S)

    def stop(self) -> dict[str, int]:
        self._done.set()
        self._thread.join()
        return self.peak


def run_child(mode: str, path: str) -> dict[str, Any]:
    """Run CHILD in a fresh interpreter; sample its process tree's RSS every SAMPLE_S."""
    env = _child_env()
    own0 = sum(os.times()[:2])
    busy0 = cpu_busy_s()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, path], cwd=str(CODE_ROOT), env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    sampler = TreeSampler(proc.pid)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    peak = sampler.stop()
    busy = cpu_busy_s() - busy0
    own = sum(os.times()[:2]) - own0  # this process (the sampler), children excluded
    line = next((ln for ln in stdout.decode().splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"{mode} {path} failed (rc {proc.returncode}):\n{stderr.decode()[-4000:]}")
    res = json.loads(line[len("RESULT "):])
    if "perfkit_file" in res and not Path(res["perfkit_file"]).resolve().is_relative_to(CODE_ROOT.resolve()):
        raise RuntimeError(f"child imported perfkit from {res['perfkit_file']}, not from {CODE_ROOT}")
    res.update(
        process_wall=wall,
        # The true peak of the sum is at least the main process's own exact peak
        # (ru_maxrss), which 20 ms sampling can miss by a few MB.
        peak_tree_rss=max(peak["tree"], res["ru_maxrss"]),
        peak_tree_rss_sampled=peak["tree"],
        peak_main_rss_sampled=peak["main"],
        max_processes=peak["procs"],
        samples=peak["samples"],
        # CPU seconds used during the run by processes other than the measured tree and
        # the sampler: another job on the machine. Large values make timings suspect.
        foreign_cpu_s=max(0.0, busy - own - res.get("cpu_s", 0.0)),
    )
    return res


def warm_page_cache(path: Path) -> None:
    with open(path, "rb", buffering=0) as f:
        while f.read(16 * MB):
            pass


def measure(mode: str, path: str, a: argparse.Namespace) -> dict[str, Any]:
    """One measurement on a quiet machine: wait for quiet, run; if other jobs used more than
    --max-foreign CPUs on average meanwhile, discard it and run again (at most --retries times)."""
    discarded = []
    while True:
        if a.max_idle_wait > 0:
            wait_idle(a.max_idle_wait)
        res = run_child(mode, path)
        load = res["foreign_cpu_s"] / res["process_wall"]
        if load <= a.max_foreign or len(discarded) >= a.retries:
            res["discarded_runs"] = discarded
            return res
        print(f"  ({mode} run disturbed: other jobs used {load:.2f} CPUs on average; "
              f"{res['seconds']:.2f} s discarded, running again)", flush=True)
        discarded.append({k: res[k] for k in ("seconds", "process_wall", "peak_tree_rss", "foreign_cpu_s")})


# --------------------------------------------------------------------------- building traces


def _load_manifest() -> dict[str, Any]:
    try:
        return json.loads((DATA / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}


def _save_manifest(man: dict[str, Any]) -> None:
    (DATA / "manifest.json").write_text(json.dumps(man, indent=2) + "\n")


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def decompressed_anchor(source: Path, skip_build: bool) -> Path:
    """The source trace as plain JSON in bench-data/ (the source itself if not gzipped)."""
    if not _is_gzip(source):
        return source
    name = source.name[:-3] if source.name.endswith(".gz") else source.name + ".json"
    dst = DATA / name
    man = _load_manifest()
    rec = man.get(name)
    if dst.exists() and rec and rec.get("source") == str(source) and rec.get("bytes") == dst.stat().st_size:
        return dst
    if skip_build:
        sys.exit(f"--skip-build: {dst} is missing or stale")
    print(f"decompressing {source} -> {dst}", flush=True)
    tmp = dst.with_suffix(".tmp")
    with gzip.open(source, "rb") as fin, open(tmp, "wb") as fout:
        while block := fin.read(16 * MB):
            fout.write(block)
    os.replace(tmp, dst)
    man[name] = {"source": str(source), "copies": None, "bytes": dst.stat().st_size}
    _save_manifest(man)
    return dst


def inflated(tool: Path, source: Path, copies: int, skip_build: bool) -> Path:
    """bench-data/<stem>.x<copies>.json, built with the inflation tool unless already there."""
    stem = source.name.split(".")[0]
    name = f"{stem}.x{copies}.json"
    dst = DATA / name
    man = _load_manifest()
    rec = man.get(name)
    if dst.exists() and rec and rec.get("source") == str(source) and rec.get("bytes") == dst.stat().st_size:
        return dst
    if skip_build:
        sys.exit(f"--skip-build: {dst} is missing or stale")
    if not tool.exists():
        sys.exit(f"inflation tool not found: {tool} (use --inflate-tool)")
    print(f"inflating {source.name} x{copies} -> {dst} ...", flush=True)
    tmp = dst.with_suffix(".tmp")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(tool), str(source), str(tmp), "--copies", str(copies)], check=True)
    os.replace(tmp, dst)
    size = dst.stat().st_size
    print(f"  {size / MB:,.1f} MB in {time.perf_counter() - t0:.1f} s", flush=True)
    man[name] = {"source": str(source), "copies": copies, "bytes": size}
    _save_manifest(man)
    return dst


# --------------------------------------------------------------------------- machine


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ram = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    ram = int(line.split()[1]) * 1024
    except OSError:
        pass
    versions = {}
    for pkg in ("perfkit", "msgspec", "numpy", "pandas"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    if versions["perfkit"] is None:  # a source checkout that is not pip-installed
        text = (CODE_ROOT / "perfkit" / "__init__.py").read_text()
        ver = next((ln.split("=", 1)[1].strip().strip("\"'") for ln in text.splitlines()
                    if ln.startswith("__version__")), "?")
        versions["perfkit"] = f"{ver} (source)"
    git = {}
    try:
        git["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "perfkit"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        git["perfkit_modified"] = bool(dirty)
    except OSError:
        pass
    return {
        "git": git,
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_bytes": ram,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "packages": versions,
    }


# --------------------------------------------------------------------------- reporting


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(label: str, path: Path, json_bytes: int, runs_a: list[dict], runs_j: list[dict]) -> dict[str, Any]:
    a_s = _stats([r["seconds"] for r in runs_a])
    j_s = _stats([r["seconds"] for r in runs_j])
    row = {
        "trace": label,
        "path": str(path),
        "file_bytes": path.stat().st_size,
        "json_bytes": json_bytes,
        "events": runs_a[0].get("events"),
        "json_events": runs_j[0].get("events"),
        "analyze_s": a_s,
        "analyze_process_s": _stats([r["process_wall"] for r in runs_a]),
        "analyze_peak_tree_rss": _stats([r["peak_tree_rss"] for r in runs_a]),
        "analyze_main_ru_maxrss": _stats([r["ru_maxrss"] for r in runs_a]),
        "analyze_workers_ru_maxrss": _stats([r["children_ru_maxrss"] for r in runs_a]),
        "analyze_max_processes": max(r["max_processes"] for r in runs_a),
        "foreign_cpu_s_max": max(r["foreign_cpu_s"] for r in runs_a + runs_j),
        "analyze_rss_before": _stats([r["rss_before"] for r in runs_a]),
        "json_s": j_s,
        "json_process_s": _stats([r["process_wall"] for r in runs_j]),
        "json_peak_tree_rss": _stats([r["peak_tree_rss"] for r in runs_j]),
        "json_ru_maxrss": _stats([r["ru_maxrss"] for r in runs_j]),
        "mb_per_s": json_bytes / MB / a_s["median"],
        "probe_s": _stats([r["probe_s"] for r in runs_a]),
        "ratio": a_s["median"] / j_s["median"],
        "runs": {"analyze": runs_a, "json_load": runs_j},
    }
    peak = row["analyze_peak_tree_rss"]["median"]
    row["targets"] = {
        "time_ratio": {"value": row["ratio"], "limit": TARGET_RATIO, "pass": row["ratio"] <= TARGET_RATIO},
        "throughput": {"value": row["mb_per_s"], "limit": TARGET_MBPS, "pass": row["mb_per_s"] >= TARGET_MBPS},
        "peak_rss": {"value": peak, "limit": json_bytes, "pass": peak <= json_bytes},
    }
    return row


def _range(s: dict[str, float], scale: float = 1.0, fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(s['median'] / scale)} ({fmt.format(s['min'] / scale)}-{fmt.format(s['max'] / scale)})"


def markdown(rows: list[dict[str, Any]], info: dict[str, Any], repeat: int) -> str:
    m = info
    lines = [
        "## perfkit.analyze benchmark",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_bytes'] / 2**30:.1f} GiB RAM, Python {m['python']}, "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items()),
        f"perfkit at commit {m.get('git', {}).get('commit', '?')[:12]}"
        + (" plus uncommitted changes in perfkit/" if m.get("git", {}).get("perfkit_modified") else "")
        + f" (perfkit sources sha256 {m.get('git', {}).get('perfkit_source_sha256', '?')}).",
        f"Median of {repeat} fresh-process runs (min-max in parentheses). MB = 10^6 bytes. "
        "Peak RSS = peak over 20 ms samples of the summed PSS (shared pages counted once) of the process and its pool workers "
        "(at least the main process's ru_maxrss). \"other jobs' CPU\" = CPU seconds used by unrelated "
        "processes on the machine during a run (0 = the machine was otherwise idle). \"machine probe\" = seconds of a fixed "
        "CPU workload (numpy sorts and searches, a Python loop) run just before each analysis: the machine's speed varies "
        "over the day with no visible cause on it, and this figure says how fast it ran.",
        "",
        "| trace | JSON MB | events | analyze s | analyze process s | MB/s | peak RSS MB (tree sum) "
        "| main ru_maxrss MB | json.load s | json.load peak RSS MB | analyze / json.load | other jobs' CPU s (max) "
        "| machine probe s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['trace']} | {r['json_bytes'] / MB:,.1f} | {r['events']:,} | {_range(r['analyze_s'])} "
            f"| {_range(r['analyze_process_s'])} | {r['mb_per_s']:,.0f} "
            f"| {_range(r['analyze_peak_tree_rss'], MB, '{:,.0f}')} | {r['analyze_main_ru_maxrss']['median'] / MB:,.0f} "
            f"| {_range(r['json_s'])} | {r['json_peak_tree_rss']['median'] / MB:,.0f} | {r['ratio']:.3f} "
            f"| {r['foreign_cpu_s_max']:.1f} | {_range(r['probe_s'])} |"
        )
    lines += [
        "",
        "### Targets",
        "",
        f"| trace | analyze <= {TARGET_RATIO} x json.load | >= {TARGET_MBPS:.0f} MB/s | peak RSS <= JSON size |",
        "|---|---|---|---|",
    ]
    for r in rows:
        t = r["targets"]
        lines.append(
            f"| {r['trace']} "
            f"| {'PASS' if t['time_ratio']['pass'] else 'FAIL'} ({t['time_ratio']['value']:.3f}) "
            f"| {'PASS' if t['throughput']['pass'] else 'FAIL'} ({t['throughput']['value']:,.0f} MB/s) "
            f"| {'PASS' if t['peak_rss']['pass'] else 'FAIL'} ({t['peak_rss']['value'] / MB:,.0f} MB vs {t['peak_rss']['limit'] / MB:,.0f} MB) |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- profile


PROFILE = r"""
import cProfile, pstats, sys, time
from perfkit.job import analyze_paths
import perfkit
print("perfkit imported from", perfkit.__file__)
path = sys.argv[1]
pr = cProfile.Profile()
t0 = time.perf_counter()
pr.enable()
analyze_paths(path, workers=0).to_dict()
pr.disable()
print(f"in-process analysis (workers=0) under cProfile: {time.perf_counter() - t0:.2f} s")
st = pstats.Stats(pr, stream=sys.stdout)
st.sort_stats("cumulative").print_stats(25)
st.sort_stats("tottime").print_stats(25)
"""


def profile(path: Path) -> None:
    env = _child_env()
    out = subprocess.run([sys.executable, "-c", PROFILE, str(path)], cwd=str(CODE_ROOT), env=env,
                         capture_output=True, text=True, check=True).stdout
    (DATA / "profile.txt").write_text(out)
    print(out)
    print(f"written {DATA / 'profile.txt'}")


# --------------------------------------------------------------------------- one trace: whole command vs floor

# Code run in a fresh child for the floor's parts. argv: MODE PATH. Prints one line "RESULT {json}".
FLOOR_CHILD = r"""
import json, sys, time
mode, path = sys.argv[1], sys.argv[2]
out = {}
if mode.startswith("inflate-"):
    if mode == "inflate-zlib":
        import zlib as lib
    else:
        from isal import isal_zlib as lib
    t0 = time.perf_counter()
    d, n = lib.decompressobj(wbits=47), 0
    with open(path, "rb", buffering=0) as f:
        while True:
            comp = f.read(1 << 20)
            if not comp:
                break
            while comp:
                n += len(d.decompress(comp, 8 << 20))
                comp = d.unconsumed_tail
    out["seconds"], out["bytes"] = time.perf_counter() - t0, n
elif mode == "scan":
    # the C scanner over the events of the decompressed file, cut into the reader's chunks, one thread
    from perfkit.trace import decode, reader
    ranges = reader._plan_file(reader._FileSource(path), reader._Raw(meta={}))
    with open(path, "rb") as f:
        view = memoryview(f.read())
    t0 = time.perf_counter()
    for _, lo, hi in ranges:
        decode._scan.scan(view[lo:hi])
    out["seconds"], out["chunks"] = time.perf_counter() - t0, len(ranges)
sys.stdout.write("RESULT " + json.dumps(out) + "\n")
"""


def _timed_process(cmd: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Wall seconds of one fresh process (start to exit, as a user waits for it), its CPU seconds,
    the CPU seconds other jobs used meanwhile, and its RESULT line if it prints one."""
    import resource

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    own0, busy0 = sum(os.times()[:2]), cpu_busy_s()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    busy, own = cpu_busy_s() - busy0, sum(os.times()[:2]) - own0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (rc {proc.returncode}):\n{proc.stderr.decode()[-2000:]}")
    res: dict[str, Any] = {"wall_s": wall, "cpu_s": cpu, "foreign_cpu_s": max(0.0, busy - own - cpu)}
    line = next((ln for ln in proc.stdout.decode().splitlines() if ln.startswith("RESULT ")), None)
    if line is not None:
        res.update(json.loads(line[len("RESULT "):]))
    return res


def _baseline_tree(ref: str) -> Path:
    """perfkit/ as of git REF in bench-data/baseline-<ref>/ (the built scanner copied in), compiled."""
    import shutil
    import tarfile
    import io

    sha = subprocess.run(["git", "rev-parse", "--short", ref], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.strip()
    dst = DATA / f"baseline-{sha}"
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    tar = subprocess.run(["git", "archive", sha, "perfkit"], cwd=REPO, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        tf.extractall(dst)
    for so in (REPO / "perfkit").rglob("_*.so"):  # the built extensions (the scanner, the JSON layout)
        where = dst / so.relative_to(REPO).parent
        if where.is_dir() and any(where.glob(so.name.split(".")[0] + ".c")):
            shutil.copy2(so, where / so.name)
    if subprocess.run(["git", "diff", "--quiet", sha, "--", "perfkit/trace/_scan.c"], cwd=REPO).returncode != 0:
        print(f"note: perfkit/trace/_scan.c differs between {sha} and the working tree; the baseline uses "
              "the working tree's built scanner", flush=True)
    _compile(dst)
    return dst


def _compile(root: Path) -> None:
    """Byte-compile a perfkit tree: an installed package has its .pyc files; without them every run
    (PYTHONDONTWRITEBYTECODE=1) would compile the sources again and measure that."""
    import compileall

    compileall.compile_dir(str(root / "perfkit"), quiet=1)


def one_trace(a: argparse.Namespace, source: Path, anchor_json: Path) -> int:
    """``perfkit analyze`` on one trace as a whole process, against the floor: interpreter + numpy
    import, inflate, and the C scanner's pass, all measured side by side in one run, rounds
    alternating, medians. Also ``perfkit --help`` and ``--version``, and (``--baseline REF``)
    the same commands with perfkit as of REF."""
    import platform as _platform

    py = sys.executable
    _compile(CODE_ROOT)
    roots = {"": CODE_ROOT}
    if a.baseline:
        roots[f" [{a.baseline}]"] = _baseline_tree(a.baseline)

    def env_for(root: Path, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(root)
        env.update(extra)
        return env

    try:
        import isal  # noqa: F401

        have_isal = True
    except ImportError:
        have_isal = False
    out_json = DATA / "one_trace_out.json"
    gz = str(source)
    items: list[tuple[str, list[str], dict[str, str], Path]] = [
        ("python -c pass", [py, "-c", "pass"], env_for(CODE_ROOT), CODE_ROOT),
        ("python -c 'import numpy'", [py, "-c", "import numpy"], env_for(CODE_ROOT), CODE_ROOT),
        ("inflate (zlib)", [py, "-c", FLOOR_CHILD, "inflate-zlib", gz], env_for(CODE_ROOT), CODE_ROOT),
        ("C scanner pass", [py, "-c", FLOOR_CHILD, "scan", str(anchor_json)], env_for(CODE_ROOT), CODE_ROOT),
    ]
    if have_isal:
        items.append(("inflate (isal)", [py, "-c", FLOOR_CHILD, "inflate-isal", gz], env_for(CODE_ROOT), CODE_ROOT))
    for tag, root in roots.items():
        cmd = [py, "-m", "perfkit", "analyze", gz, "--json", str(out_json)]
        items += [
            (f"perfkit analyze --json -q{tag}", cmd + ["-q"], env_for(root), root),
            (f"perfkit analyze --json (terminal report){tag}", cmd, env_for(root), root),
            (f"perfkit --help{tag}", [py, "-m", "perfkit", "--help"], env_for(root), root),
            (f"perfkit --version{tag}", [py, "-m", "perfkit", "--version"], env_for(root), root),
        ]
        if have_isal:
            items.append((f"perfkit analyze --json -q, zlib (PERFKIT_NO_ISAL=1){tag}", cmd + ["-q"],
                          env_for(root, PERFKIT_NO_ISAL="1"), root))
    with open("/proc/loadavg") as f:
        load_start = f.read().split()[:3]
    for _name, cmd, env, root in items:  # untimed: page cache, shared libraries
        _timed_process(cmd, env, root)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in items}
    for r in range(a.repeat):
        order = items[r % len(items):] + items[: r % len(items)]  # rotate: no item always first or last
        for name, cmd, env, root in order:
            runs[name].append(_timed_process(cmd, env, root))
        print(f"  round {r + 1}/{a.repeat} done", flush=True)
    with open("/proc/loadavg") as f:
        load_end = f.read().split()[:3]

    def med(name: str, key: str = "wall_s") -> dict[str, float]:
        return _stats([x[key] for x in runs[name]])

    # the floor's parts: inside the child for inflate and scan (no interpreter), whole process for numpy
    interp_numpy = med("python -c 'import numpy'")["median"]
    inflate_zlib = med("inflate (zlib)", "seconds")["median"]
    inflate = med("inflate (isal)", "seconds")["median"] if have_isal else inflate_zlib
    scan = med("C scanner pass", "seconds")["median"]
    floor = interp_numpy + inflate + scan
    floor_zlib = interp_numpy + inflate_zlib + scan
    lines = [
        "## One trace: the whole `perfkit analyze` process against the floor",
        "",
        f"Trace: {source} ({source.stat().st_size / MB:,.1f} MB gzip, {anchor_json.stat().st_size / MB:,.1f} MB JSON). "
        f"{a.repeat} rounds, the commands alternating (order rotated each round); median (min-max) seconds. "
        f"Machine: {os.cpu_count()} CPUs, Python {_platform.python_version()}; load average "
        f"{' '.join(load_start)} at the start, {' '.join(load_end)} at the end. "
        "\"other jobs' CPU\" = median CPU share that unrelated processes used during the runs.",
        "",
        "| what | seconds | other jobs' CPU |",
        "|---|---:|---:|",
    ]
    for name, *_ in items:
        key = "seconds" if name.startswith(("inflate", "C scanner")) else "wall_s"
        share = statistics.median(x["foreign_cpu_s"] / x["wall_s"] for x in runs[name])
        label = name + (" (in process)" if key == "seconds" else " (whole process)")
        lines.append(f"| {label} | {_range(med(name, key), fmt='{:.3f}')} | {share:.2f} |")
    perf = med("perfkit analyze --json -q")["median"]
    perf_report = med("perfkit analyze --json (terminal report)")["median"]
    lines += [
        "",
        f"Floor = interpreter + numpy import {interp_numpy:.3f} + inflate ({'isal' if have_isal else 'zlib'}) "
        f"{inflate:.3f} + C scanner pass {scan:.3f} = **{floor:.3f} s**.",
        f"* `perfkit analyze --json -q`: {perf:.3f} s = **{perf / floor:.2f}x** the floor (target 1.5x: "
        f"{'met' if perf <= 1.5 * floor else 'not met'}).",
        f"* with the terminal report: {perf_report:.3f} s = {perf_report / floor:.2f}x.",
    ]
    if have_isal:
        pz = med("perfkit analyze --json -q, zlib (PERFKIT_NO_ISAL=1)")["median"]
        lines.append(f"* without isal (zlib inflate): {pz:.3f} s against a zlib floor of {floor_zlib:.3f} s = "
                     f"{pz / floor_zlib:.2f}x.")
    for tag in roots:
        if tag:
            pb = med(f"perfkit analyze --json -q{tag}")["median"]
            lines.append(f"* perfkit{tag}: {pb:.3f} s = {pb / floor:.2f}x the floor; this tree is "
                         f"{pb / perf:.2f}x faster.")
    md = "\n".join(lines) + "\n"
    print("\n" + md)
    (DATA / "one_trace.md").write_text(md)
    (DATA / "one_trace.json").write_text(json.dumps({
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "load_start": load_start, "load_end": load_end,
        "floor_s": floor, "floor_zlib_s": floor_zlib, "ratio": perf / floor, "runs": runs}, indent=2) + "\n")
    print(f"written {DATA / 'one_trace.md'} and {DATA / 'one_trace.json'}")
    return 0 if perf <= 1.5 * floor else 1


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes-mb", default="150,1000", help="target sizes of the inflated traces, MB of JSON (default 150,1000)")
    ap.add_argument("--repeat", type=int, default=3, help="fresh-process runs per measurement (default 3)")
    ap.add_argument("--skip-build", action="store_true", help="use the files already in bench-data/, never build")
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="small real trace to inflate")
    ap.add_argument("--inflate-tool", type=Path, default=DEFAULT_TOOL, help="path of inflate_trace.py")
    ap.add_argument("--max-idle-wait", type=float, default=300.0,
                    help="before each run, wait up to this many seconds for other jobs on the machine to go quiet (default 300; 0: never wait)")
    ap.add_argument("--max-foreign", type=float, default=0.1,
                    help="rerun a measurement if other jobs used more than this many CPUs on average during it (default 0.1)")
    ap.add_argument("--retries", type=int, default=3, help="reruns allowed per disturbed measurement (default 3)")
    ap.add_argument("--no-snapshot", action="store_true",
                    help="import perfkit from the working tree itself instead of a copy taken at the start")
    ap.add_argument("--no-anchors", action="store_true", help="skip the small real anchor traces")
    ap.add_argument("--profile", action="store_true",
                    help="afterwards, cProfile one in-process analysis (workers=0) of the smallest inflated trace")
    ap.add_argument("--one-trace", action="store_true",
                    help="only the one-trace benchmark: the whole `perfkit analyze` process on --source against the "
                         "floor (interpreter + numpy, inflate, C scanner pass), side by side; --repeat rounds (use 7+)")
    ap.add_argument("--baseline", metavar="REF",
                    help="with --one-trace: also run the commands with perfkit as of git REF (e.g. main)")
    a = ap.parse_args()
    if a.repeat < 1:
        ap.error("--repeat must be >= 1")
    sizes = [float(s) for s in a.sizes_mb.split(",") if s.strip()]
    source = a.source.resolve()
    if not source.exists():
        sys.exit(f"source trace not found: {source}")
    DATA.mkdir(exist_ok=True)

    # ---- build
    anchor_json = decompressed_anchor(source, a.skip_build)
    if a.one_trace:
        if not a.no_snapshot:
            snapshot_perfkit()
        return one_trace(a, source, anchor_json)
    files: list[tuple[str, Path]] = []
    if not a.no_anchors:
        files.append((f"{source.name} (anchor, gzip)", source))
        if anchor_json != source:
            files.append((f"{anchor_json.name} (anchor)", anchor_json))
    if sizes:
        calib = inflated(a.inflate_tool.resolve(), source, 1, a.skip_build)
        per_copy = calib.stat().st_size
        print(f"one inflated copy of {source.name} = {per_copy / MB:.1f} MB "
              f"(source {anchor_json.stat().st_size / MB:.1f} MB uncompressed)", flush=True)
        for target in sizes:
            copies = max(1, round(target * MB / per_copy))
            path = inflated(a.inflate_tool.resolve(), source, copies, a.skip_build)
            files.append((f"{path.name} (inflated x{copies}, ~{target:g} MB)", path))

    # ---- measure
    code_hash = source_hash(REPO / "perfkit") if a.no_snapshot else snapshot_perfkit()
    info = machine()
    info["git"]["perfkit_source_sha256"] = code_hash
    info["git"]["measured_from"] = str(CODE_ROOT)
    print(f"machine: {info}", flush=True)
    run_child("import", str(source))  # untimed: warm shared libraries and .pyc files
    import_s = _stats([run_child("import", str(source))["seconds"] for _ in range(3)])
    print(f"fresh-process `import perfkit.analysis`: {import_s['median']:.2f} s (included in analyze s)", flush=True)
    rows = []
    for label, path in files:
        json_bytes = anchor_json.stat().st_size if path == source and anchor_json != source else path.stat().st_size
        print(f"\n== {label}: {path.stat().st_size / MB:,.1f} MB on disk, {json_bytes / MB:,.1f} MB JSON", flush=True)
        warm_page_cache(path)
        runs_a, runs_j = [], []
        for i in range(a.repeat):
            probe_s = run_child("probe", str(path))["seconds"]
            ra = measure("analyze", str(path), a)
            ra["probe_s"] = probe_s
            runs_a.append(ra)
            print(f"  run {i + 1}: analyze {ra['seconds']:.2f} s (process {ra['process_wall']:.2f} s), "
                  f"peak tree RSS {ra['peak_tree_rss'] / MB:,.0f} MB over {ra['max_processes']} processes, "
                  f"main ru_maxrss {ra['ru_maxrss'] / MB:,.0f} MB, workers ru_maxrss {ra['children_ru_maxrss'] / MB:,.0f} MB, "
                  f"other jobs' CPU {ra['foreign_cpu_s']:.2f} s, machine probe {probe_s:.2f} s",
                  flush=True)
            rj = measure("json", str(path), a)
            runs_j.append(rj)
            print(f"         json.load {rj['seconds']:.2f} s (process {rj['process_wall']:.2f} s), "
                  f"peak RSS {rj['peak_tree_rss'] / MB:,.0f} MB, other jobs' CPU {rj['foreign_cpu_s']:.2f} s", flush=True)
        rows.append(summarize(label, path, json_bytes, runs_a, runs_j))

    md = markdown(rows, info, a.repeat)
    md += f"\nFresh-process `import perfkit.analysis` (part of every analyze time): {_range(import_s)} s.\n"
    print("\n" + md)
    (DATA / "results.md").write_text(md)
    doc = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": info,
        "repeat": a.repeat,
        "sample_interval_s": SAMPLE_S,
        "import_perfkit_analysis_s": import_s,
        "targets": {"time_ratio_max": TARGET_RATIO, "mb_per_s_min": TARGET_MBPS, "peak_rss_max": "uncompressed JSON bytes"},
        "results": rows,
    }
    if source_hash(REPO / "perfkit") != code_hash:
        doc["note"] = "perfkit/ in the working tree changed during the run" + (
            "; runs may mix versions" if a.no_snapshot else "; what was measured is the snapshot taken at the start")
        print(f"note: {doc['note']}")
    (DATA / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"written {DATA / 'results.md'} and {DATA / 'results.json'}")

    large = [r for r in rows if "inflated" in r["trace"]] or rows
    print("\nTargets (large traces):")
    ok = True
    for key, what in (("time_ratio", f"analysis <= {TARGET_RATIO} x json.load"),
                      ("throughput", f">= {TARGET_MBPS:.0f} MB/s"),
                      ("peak_rss", "peak RSS (tree sum) <= JSON size")):
        passed = all(r["targets"][key]["pass"] for r in large)
        ok &= passed
        print(f"  {'PASS' if passed else 'FAIL'}  {what}: "
              + ", ".join(f"{r['trace'].split(' ')[0]}={'PASS' if r['targets'][key]['pass'] else 'FAIL'}" for r in large))

    if a.profile:
        inflated_files = [p for lbl, p in files if "inflated" in lbl]
        if inflated_files:
            print("\n== cProfile")
            profile(min(inflated_files, key=lambda p: p.stat().st_size))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
