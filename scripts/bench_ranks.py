#!/usr/bin/env python3
"""Benchmark the multi-rank analysis: ``perfkit analyze RUN_DIR`` on N rank traces, time and memory.

What it measures
----------------
For each N in ``--ranks`` (default ``1,2,4,8``), a directory with N rank traces
of about ``--size-mb`` MB of JSON each (default 1000) is analysed by the command
a user runs, ``python -m perfkit analyze DIR --json OUT -q``, in a fresh
process:

* wall seconds of the whole command (interpreter start-up included);
* peak memory: every ~20 ms the summed PSS of the command's process tree (the
  CLI and its analysis worker processes; pages shared between processes counted
  once), the same sampler as ``scripts/bench_analyze.py``;
* the most processes seen at once, and the job view's sanity (N ranks analysed).

Targets (printed PASS/FAIL): the largest N finishes within ``--max-seconds``
(default 60, for 8 ranks of 1 GB on the 2-core machine), and its peak memory is
at most ``--max-growth`` (default 1.25) times the peak of the smallest N that
already uses every worker process (memory does not grow with the number of
ranks).

The traces
----------
The anchor (HolisticTraceAnalysis' ``df_index_resolver.json.gz``, a 54 MB V100
DDP trace) is inflated to the target size with ``../shared/tools/inflate_trace.py``
(through ``bench_analyze.inflated``: files in ``bench-data/``, reused when
already there). Its ``distributedInfo`` names rank 1; the copy used here has
that key renamed (same length, only the file's first block rewritten), so each
file's rank comes from its name: ``bench-data/ranks/n<N>/rank<R>.json`` are
links to that one file (``--distinct`` makes real copies instead: N times the
disk space, and N different files in the page cache, as on a real run).

Engines and the scaling table
-----------------------------
``--engine local|ray`` passes ``--engine`` to the command. For ``ray`` without
``--address``, the script starts one Ray cluster on this machine for the whole
run (a driver process that holds it, ``num_cpus`` = the CPUs), and every
command joins it with ``--address``: the numbers are the analysis, not Ray's
start. ``--sizes-mb 1,20`` measures every rank count at every size (the rows of
the scaling table); runs are interleaved (each repeat goes through every
(size, ranks) pair) so the machine's load drifts over all of them alike, and
each row gives its time as a multiple of one rank of the same size, measured in
the same run. The 1-minute load average is recorded with every run.
``--baseline REF`` runs perfkit as of git REF too (``git archive`` into
``bench-data/baseline-<sha>/``, byte-compiled, the built extensions copied in),
interleaved with this tree run by run: a ``code`` column, each code's rows
against its own one-rank row; the targets are this tree's.

Usage::

    .venv/bin/python scripts/bench_ranks.py                       # 1,2,4,8 ranks of 1 GB
    .venv/bin/python scripts/bench_ranks.py --size-mb 60 --ranks 1,2,4 --repeat 1   # a smoke run
    .venv/bin/python scripts/bench_ranks.py --sizes-mb 1,20 --ranks 1,8,32 --max-idle-wait 0 \
        --source tests/data/traces/param_dlrm_8xv100/worker0_step_12.1694128201545.pt.trace.json.gz   # the scaling table
    .venv/bin/python scripts/bench_ranks.py --traces tests/data/traces/param_dlrm_8xv100 --ranks 1,8 \
        --repeat 9 --max-seconds 600 [--baseline HEAD~1]   # the issue's case: the 8 real DLRM ranks against the first one

With 8 ranks of at most 2 MB among the rows, the target line for their ratio to one rank (the ratio
of the medians) is followed by the ratio run by run (each 8-rank run over the one-rank run of the
same repeat, seconds apart): its median, range and how many runs are above the target, since the
host's share of the second CPU moves the ratio from run to run (docs/performance.md); then the same
over the repeats whose probes all read both CPUs present (``TWO_CPUS_PROBE``).

Output: a Markdown table on stdout and in ``bench-data/ranks/results.md``, raw
runs and the machine in ``bench-data/ranks/results.json``. Exit status 0 when
the targets are met. Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts import bench_analyze as ba  # noqa: E402  (the sampler, machine info, trace building)

OUT = ba.DATA / "ranks"
MB = ba.MB


def rank_base(src: Path) -> Path:
    """``src`` with ``distributedInfo``'s ``"rank"`` key renamed (same length), so ranks come from file names."""
    dst = OUT / f"base.{src.name}"
    if dst.exists() and dst.stat().st_size == src.stat().st_size:
        return dst
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".tmp")
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        head = fin.read(1 << 20)
        cut = head.find(b'"traceEvents"')
        meta = head[: cut if cut > 0 else len(head)]
        fout.write(meta.replace(b'"rank":', b'"_rnk":').replace(b'"rank" :', b'"_rnk" :') + head[len(meta):])
        shutil.copyfileobj(fin, fout, 16 * MB)
    os.replace(tmp, dst)
    return dst


def real_ranks(folder: Path) -> list[Path]:
    """The trace files of ``folder`` (``--traces``), in name order."""
    return sorted(p for p in folder.iterdir() if p.name.endswith((".json", ".json.gz")))


def json_mb(base: Path) -> float:
    """MB of JSON per rank: the trace's, or the mean over ``--traces``' files (a .gz by its inflated size)."""
    from perfkit.job.engines import json_bytes

    files = real_ranks(base) if base.is_dir() else [base]
    return sum(json_bytes(str(f)) for f in files) / len(files) / MB


def rank_dir(base: Path, n: int, distinct: bool) -> Path:
    d = OUT / f"{base.stem}-n{n}{'-copies' if distinct else ''}"
    if base.is_dir():  # --traces: links to its first n files, as rank0..rank{n-1}
        files = real_ranks(base)
        if n > len(files):
            sys.exit(f"{base}: {len(files)} traces, fewer than {n} ranks")
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        for r, f in enumerate(files[:n]):
            (d / f"rank{r}.pt.trace{''.join(f.suffixes[-2:]) if f.name.endswith('.gz') else '.json'}").symlink_to(f.resolve())
        return d
    d.mkdir(parents=True, exist_ok=True)
    for r in range(n):
        f = d / f"rank{r}.json"
        if f.exists() or f.is_symlink():
            if distinct and f.stat().st_size == base.stat().st_size and not f.is_symlink():
                continue
            if not distinct and f.is_symlink() and f.resolve() == base.resolve():
                continue  # a link to another size (an earlier run with --size-mb) is replaced
            f.unlink()
        if distinct:
            shutil.copyfile(base, f)
        else:
            f.symlink_to(base.resolve())
    return d


def run_analyze(directory: Path, out: Path, extra: tuple[str, ...] = (), root: Optional[Path] = None) -> dict[str, Any]:
    """``perfkit analyze DIR --json OUT -q`` in a fresh process, perfkit imported from ``root`` (default
    the snapshot); the process tree's PSS sampled meanwhile."""
    root = root or ba.CODE_ROOT
    env = ba._child_env(root)
    env.setdefault("RAY_AUTH_MODE", "disabled")  # the cluster started by this script has no token
    load = os.getloadavg()[0]
    busy0, own0 = ba.cpu_busy_s(), sum(os.times()[:2])
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "perfkit", "analyze", str(directory), "--json", str(out), "-q", *extra],
                            cwd=str(root), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sampler = ba.TreeSampler(proc.pid)
    _, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    peak = sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"perfkit analyze {directory} failed (rc {proc.returncode}):\n{stderr.decode()[-4000:]}")
    busy = ba.cpu_busy_s() - busy0 - (sum(os.times()[:2]) - own0)
    doc = json.loads(out.read_text())
    analysed = [r for r in doc.get("ranks", []) if r.get("status") == "analysed"]
    return {"seconds": wall, "peak_tree_pss": peak["tree"], "peak_main_pss": peak["main"],
            "max_processes": peak["procs"], "samples": peak["samples"], "ranks_analysed": len(analysed) or 1,
            "events_per_rank": doc["trace"]["events"] if len(analysed) <= 1 else None,
            "busy_cpu_s": busy, "load_1min": load, "failed_ranks": len(doc.get("job", {}).get("failed_ranks") or [])}


#: Work of one probe process (pure-Python additions: about 25 ms on the 2-core test machine).
PROBE_LOOPS = 400_000


def _spin(loops: int) -> None:
    x = 0
    for i in range(loops):
        x += i


def one_rank_row(row: dict[str, Any], rows: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The one-rank row of ``row``'s code and rank size, if measured."""
    return next((x for x in rows if x["ranks"] == 1 and x["rank_mb"] == row["rank_mb"] and x["code"] == row["code"]),
                None)


#: A run pair counts as "two CPUs present" when every probe around both of its runs read at most this.
TWO_CPUS_PROBE = 1.15


def repeat_ratios(row: dict[str, Any], rows: list[dict[str, Any]], two_cpus_only: bool = False) -> list[float]:
    """Each run of ``row`` over the one-rank run of the same code, size and repeat (runs are interleaved,
    so the two ran seconds apart): how the ratio varies from run to run, beside the ratio of the medians.
    ``two_cpus_only``: only the repeats whose two runs both had the machine's two CPUs by the probe
    (``TWO_CPUS_PROBE``): the engine's design apart from a host that withholds the second CPU, reported
    beside all runs, never instead of them."""
    one = one_rank_row(row, rows)
    if one is None:
        return []
    return [r["seconds"] / o["seconds"] for r, o in zip(row["runs"], one["runs"])
            if o["seconds"] > 0 and (not two_cpus_only
                                     or all((x.get("cpu_pair_probe") or 9.0) <= TWO_CPUS_PROBE for x in (r, o)))]


def cpu_pair_probe() -> float:
    """How much slower two CPU-bound processes run at once than one alone: about 1.0 when the machine
    gives two CPUs, about 2.0 when it gives one (a host busy with other machines' work, which no
    load average inside this one shows). Forked copies of this process, each ``PROBE_LOOPS`` of work;
    the best of 3 each way."""
    def wall(n: int) -> float:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            pids = []
            for _ in range(n):
                pid = os.fork()
                if pid == 0:  # pragma: no cover (the copy)
                    _spin(PROBE_LOOPS)
                    os._exit(0)
                pids.append(pid)
            for pid in pids:
                os.waitpid(pid, 0)
            best = min(best, time.perf_counter() - t0)
        return best

    return wall(2) / wall(1)


class RayCluster:
    """A Ray cluster on this machine, held by a driver process for the whole benchmark."""

    def __init__(self, cpus: int) -> None:
        code = ("import ray, sys\n"
                f"ray.init(address=\"local\", num_cpus={cpus}, include_dashboard=False)\n"
                "print(ray.get_runtime_context().gcs_address, flush=True)\n"
                "sys.stdin.read()\n"
                "ray.shutdown()\n")
        env = {**ba._child_env(), "RAY_AUTH_MODE": "disabled"}
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env)
        assert self.proc.stdout is not None
        self.address = self.proc.stdout.readline().strip()
        if not self.address:
            raise RuntimeError("the Ray cluster did not start")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=120)


def rank_trace(a: argparse.Namespace, source: Path, size_mb: float) -> tuple[Path, int]:
    """The rank trace of about ``size_mb`` MB of JSON (the source inflated), rank key renamed; and the copies."""
    one = ba.inflated(a.inflate_tool.resolve(), source, 1, False)
    copies = max(1, round(size_mb * MB / one.stat().st_size))
    return rank_base(ba.inflated(a.inflate_tool.resolve(), source, copies, False)), copies


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", default="1,2,4,8", help="rank counts to measure (default 1,2,4,8)")
    ap.add_argument("--size-mb", type=float, default=1000.0, help="JSON MB per rank trace (default 1000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per rank count; the median is reported (default 3)")
    ap.add_argument("--distinct", action="store_true", help="real copies per rank instead of links to one file")
    ap.add_argument("--source", type=Path, default=ba.DEFAULT_SOURCE, help="small real trace to inflate")
    ap.add_argument("--inflate-tool", type=Path, default=ba.DEFAULT_TOOL, help="path of inflate_trace.py")
    ap.add_argument("--max-seconds", type=float, default=60.0, help="target: the largest rank count within this (default 60)")
    ap.add_argument("--max-growth", type=float, default=1.25, help="target: peak memory growth allowed (default 1.25x)")
    ap.add_argument("--max-idle-wait", type=float, default=120.0, help="wait up to this long for a quiet machine before each run")
    ap.add_argument("--no-snapshot", action="store_true", help="import perfkit from the working tree, not a copy")
    ap.add_argument("--traces", type=Path, default=None,
                    help="a folder of real rank traces used as they are (the first N for N ranks), instead of "
                         "--source inflated: e.g. tests/data/traces/param_dlrm_8xv100, the issue's 8 DLRM ranks")
    ap.add_argument("--sizes-mb", default=None, help="JSON MB per rank trace, several (e.g. 1,20): the scaling table")
    ap.add_argument("--engine", choices=("local", "ray"), default="local", help="perfkit analyze --engine (default local)")
    ap.add_argument("--address", default=None, help="with --engine ray: a running cluster (default: one started here)")
    ap.add_argument("--baseline", metavar="REF", default=None,
                    help="also run perfkit as of git REF (e.g. HEAD~1), interleaved with this tree: a code column")
    ap.add_argument("--max-ratio", type=float, default=1.5,
                    help="target: 8 ranks of at most 2 MB within this multiple of one rank's time (default 1.5)")
    a = ap.parse_args()
    counts = sorted({int(x) for x in a.ranks.split(",") if x.strip()})
    if not counts or counts[0] < 1 or a.repeat < 1:
        ap.error("--ranks must list numbers >= 1 and --repeat must be >= 1")
    source = a.source.resolve()
    if not source.exists():
        sys.exit(f"source trace not found: {source}")
    ba.DATA.mkdir(exist_ok=True)

    if a.traces is not None:  # real rank traces, as they are
        bases = [(a.traces.resolve(), 0)]
        print(f"rank traces: {len(real_ranks(bases[0][0]))} files of {bases[0][0]} ({json_mb(bases[0][0]):,.1f} MB "
              "JSON each on average)", flush=True)
    else:
        sizes = [float(x) for x in (a.sizes_mb or str(a.size_mb)).split(",") if x.strip()]
        bases = [rank_trace(a, source, mb) for mb in sizes]
        for base, copies in bases:
            print(f"rank trace: {base} ({base.stat().st_size / MB:,.1f} MB JSON, x{copies} of {source.name})", flush=True)
    code_hash = ba.source_hash(REPO / "perfkit") if a.no_snapshot else ba.snapshot_perfkit()
    info = ba.machine()
    info["git"]["perfkit_source_sha256"] = code_hash
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cluster = RayCluster(cpus) if a.engine == "ray" and a.address is None else None
    extra: tuple[str, ...] = ("--engine", a.engine)
    if a.engine == "ray":
        extra += ("--address", a.address or (cluster.address if cluster else ""))

    codes: dict[str, Optional[Path]] = {"this tree": None}
    if a.baseline:
        codes[a.baseline] = ba._baseline_tree(a.baseline)
    cells = [(code, base, n) for code in codes for base, _ in bases for n in counts]
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {(c, str(b), n): [] for c, b, n in cells}
    try:
        for root in codes.values():  # not counted: the page cache, and the first start of each tree
            run_analyze(rank_dir(cells[0][1], 1, a.distinct), OUT / "warm-up.json", extra, root)
        for i in range(a.repeat):
            for code, base, n in cells:
                d = rank_dir(base, n, a.distinct)
                for f in (real_ranks(base) if base.is_dir() else [base]):
                    ba.warm_page_cache(f)
                if a.max_idle_wait > 0:
                    ba.wait_idle(a.max_idle_wait)
                probe = cpu_pair_probe() if hasattr(os, "fork") else None
                res = run_analyze(d, OUT / f"job-{base.stem}-n{n}.json", extra, codes[code])
                probe = max(probe, cpu_pair_probe()) if probe is not None else None  # before and after the run
                res["cpu_pair_probe"] = probe
                runs[(code, str(base), n)].append(res)
                print(f"  {code}: {n} rank(s) of {json_mb(base):,.1f} MB, run {i + 1}: {res['seconds']:.2f} s, "
                      f"peak PSS (tree) {res['peak_tree_pss'] / MB:,.0f} MB over up to {res['max_processes']} processes; "
                      f"{res['ranks_analysed']} ranks in the job view; load {res['load_1min']:.2f}"
                      + (f"; two CPUs {probe:.2f}x one" if probe is not None else ""), flush=True)
    finally:
        if cluster is not None:
            cluster.close()
    rows = []
    for code, base, n in cells:
        rr = runs[(code, str(base), n)]
        med = lambda k: statistics.median(r[k] for r in rr)  # noqa: E731
        rows.append({"code": code, "ranks": n, "rank_mb": json_mb(base), "json_mb_total": n * json_mb(base),
                     "seconds": med("seconds"), "seconds_min": min(r["seconds"] for r in rr),
                     "seconds_max": max(r["seconds"] for r in rr), "peak_tree_pss": med("peak_tree_pss"),
                     "peak_main_pss": med("peak_main_pss"), "max_processes": max(r["max_processes"] for r in rr),
                     "load_1min": med("load_1min"), "runs": rr,
                     "cpu_pair_probe": statistics.median(r["cpu_pair_probe"] for r in rr)
                     if all(r.get("cpu_pair_probe") for r in rr) else None})
    for r in rows:
        one = one_rank_row(r, rows)
        r["vs_one_rank"] = r["seconds"] / one["seconds"] if one else None
    base = bases[-1][0]
    mine = [r for r in rows if r["code"] == "this tree"]  # the targets are this tree's
    last_size = [r for r in mine if r["rank_mb"] == mine[-1]["rank_mb"]]
    full = [r for r in last_size if r["ranks"] >= min(cpus, counts[-1])]
    ref = full[0] if full else last_size[0]
    last = last_size[-1]
    growth = last["peak_tree_pss"] / ref["peak_tree_pss"] if ref["peak_tree_pss"] else 0.0
    targets: dict[str, dict[str, Any]] = {
        "time": {"value": last["seconds"], "limit": a.max_seconds, "pass": last["seconds"] <= a.max_seconds},
        "memory_growth": {"value": growth, "limit": a.max_growth, "reference_ranks": ref["ranks"],
                          "pass": growth <= a.max_growth},
    }
    eight = next((r for r in mine if r["ranks"] == 8 and r["rank_mb"] <= 2 and r["vs_one_rank"] is not None), None)
    if eight is not None:
        pairs = repeat_ratios(eight, rows)
        targets["eight_small_ranks"] = {"value": eight["vs_one_rank"], "limit": a.max_ratio,
                                        "pass": eight["vs_one_rank"] <= a.max_ratio, "repeat_ratios": pairs,
                                        "two_cpu_ratios": repeat_ratios(eight, rows, two_cpus_only=True)}
    lines = [
        f"## perfkit analyze RUN_DIR --engine {a.engine}: time and memory by number of ranks and rank size",
        "",
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), {info['ram_bytes'] / 2**30:.1f} GiB RAM, Python {info['python']}; "
        f"perfkit at {info.get('git', {}).get('commit', '?')[:12]}"
        + (" plus uncommitted changes" if info.get("git", {}).get("perfkit_modified") else "") + ".",
        (f"Rank traces: the files of {a.traces} as they are (the first N for N ranks). " if a.traces is not None else
         f"Rank traces: {source.name} inflated to each size; {'distinct copies' if a.distinct else 'links to one file'}. ")
        + f"Median of {a.repeat} run(s) of `python -m perfkit analyze DIR --json OUT -q --engine {a.engine}`"
        + (" (joining a Ray cluster on this machine started once for the benchmark)" if a.engine == "ray" else "")
        + ", interpreter start-up included; runs interleaved over the rows. Peak memory: summed PSS of the "
        "command's process tree, sampled every 20 ms. MB = 10^6 bytes. Load: 1-minute load average at each run's start (median). Two CPUs: the "
        "time of two CPU-bound processes at once over one alone, probed before and after each run (the larger; median): about 1.0 when "
        "the machine gives this benchmark two CPUs, up to 2.0 when its host gives it one (no load average shows that).",
        "",
        "| code | ranks | MB per rank | JSON MB (all ranks) | wall s | x one rank | s per rank | peak memory MB (tree) | peak main process MB | processes at once | load | two CPUs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = f"{r['vs_one_rank']:.2f}" if r["vs_one_rank"] is not None else "-"
        pair = f"{r['cpu_pair_probe']:.2f}x" if r["cpu_pair_probe"] is not None else "-"
        lines.append(f"| {r['code']} | {r['ranks']} | {r['rank_mb']:,.1f} | {r['json_mb_total']:,.0f} | {r['seconds']:.2f} ({r['seconds_min']:.2f}-{r['seconds_max']:.2f}) "
                     f"| {ratio} | {r['seconds'] / r['ranks']:.3f} | {r['peak_tree_pss'] / MB:,.0f} | {r['peak_main_pss'] / MB:,.0f} "
                     f"| {r['max_processes']} | {r['load_1min']:.2f} | {pair} |")
    lines += [
        "",
        f"- {'PASS' if targets['time']['pass'] else 'FAIL'}: {last['ranks']} ranks in {last['seconds']:.1f} s "
        f"(target <= {a.max_seconds:g} s)",
        f"- {'PASS' if targets['memory_growth']['pass'] else 'FAIL'}: peak memory at {last['ranks']} ranks is "
        f"{growth:.2f}x that at {ref['ranks']} (target <= {a.max_growth:g}x)",
    ]
    if eight is not None:
        lines.append(f"- {'PASS' if targets['eight_small_ranks']['pass'] else 'FAIL'}: 8 ranks of {eight['rank_mb']:.1f} MB "
                     f"take {eight['vs_one_rank']:.2f}x the time of one (target <= {a.max_ratio:g}x)")
        pairs = targets["eight_small_ranks"]["repeat_ratios"]
        quiet = targets["eight_small_ranks"]["two_cpu_ratios"]

        def ratios(label: str, values: list[float]) -> str:
            above = sum(1 for x in values if x > a.max_ratio)
            return (f"  - {label}: {len(values)} of {len(pairs)}, median {statistics.median(values):.2f}x, "
                    f"{min(values):.2f}-{max(values):.2f}x, {above} above {a.max_ratio:g}x")

        if pairs:
            lines.append(ratios("run by run (each 8-rank run over the one-rank run of the same repeat)", pairs))
        if quiet:
            lines.append(ratios(f"the runs with both CPUs present (probe <= {TWO_CPUS_PROBE:g}x around both runs)", quiet))
        elif pairs:
            lines.append(f"  - no run pair had both CPUs present by the probe (<= {TWO_CPUS_PROBE:g}x)")
    md = "\n".join(lines) + "\n"
    print("\n" + md)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.md").write_text(md)
    (OUT / "results.json").write_text(json.dumps({"command": " ".join([Path(sys.executable).name, *sys.argv]),
                                                  "machine": info, "rank_trace_bytes": json_mb(base) * MB, "engine": a.engine,
                                                  "targets": targets, "results": rows}, indent=2) + "\n")
    print(f"written {OUT / 'results.md'} and {OUT / 'results.json'}")
    return 0 if all(t["pass"] for t in targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
