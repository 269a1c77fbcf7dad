"""Time and peak memory of ``perfkit analyze`` on hostile traces, against input size.

    python scripts/bench_hostile.py [--scale 1] [--out bench_hostile.json]

Each case is generated here from a small real trace (tests/data/traces, the
``bert-small`` CPU trace with its ProfilerStep ranges), at growing sizes, and
analysed by ``perfkit analyze FILE --json OUT`` in a fresh interpreter (wall time,
and the child's own peak RSS, ``VmHWM`` of ``/proc/self/status``: ``ru_maxrss``
would carry the parent's size across ``fork``). Cases:

* ``gap``: a gzip-compressed trace with N MB of whitespace between two events
  (a "gzip bomb": the compressed file stays small);
* ``name``: one event whose name is N MB long;
* ``bad_events``: N KB of events of which every tenth is malformed JSON;
* ``baseline``: the trace itself, repeated to N MB (what a healthy file of that
  size costs, for the ratios).

Prints one row per case and size: seconds, peak RSS MB, the exit code and the
trace warnings of the analysis; the ratios that matter are how time and memory grow
with size (linear, and memory flat for ``gap``). Results and the command go in
docs/reliability.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "tests" / "data" / "traces"


def _seed_events() -> tuple[dict, list[dict]]:
    path = next(SEED.glob("**/*bert*small*.json*"), None) or next(SEED.glob("**/*.json.gz"))
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        doc = json.load(f)
    events = doc.pop("traceEvents")
    return doc, events


def _write(path: Path, head: dict, parts: list[bytes], compress: bool) -> None:
    body = json.dumps(head)[:-1].encode() + b', "traceEvents": [' + b",".join(parts) + b"]}"
    if compress:
        with gzip.open(path, "wb", compresslevel=6) as f:
            f.write(body)
    else:
        path.write_bytes(body)


def make_case(kind: str, mb: float, folder: Path) -> Path:
    head, events = _seed_events()
    enc = [json.dumps(e).encode() for e in events]
    size = int(mb * 1024 * 1024)
    if kind == "gap":
        path = folder / f"gap-{mb:g}MB.json.gz"
        half = len(enc) // 2
        with gzip.open(path, "wb", compresslevel=6) as f:
            f.write(json.dumps(head)[:-1].encode() + b', "traceEvents": [' + b",".join(enc[:half]) + b",")
            block = b" " * (1 << 20)
            for _ in range(size >> 20):
                f.write(block)
            f.write(b",".join(enc[half:]) + b"]}")
        return path
    if kind == "name":
        path = folder / f"name-{mb:g}MB.json"
        big = dict(events[0], name="x" * size, ph="X", ts=events[0].get("ts", 0), dur=1)
        _write(path, head, enc + [json.dumps(big).encode()], compress=False)
        return path
    if kind == "bad_events":
        path = folder / f"bad-{mb:g}MB.json"
        parts: list[bytes] = []
        total = 0
        i = 0
        while total < size:
            e = enc[i % len(enc)]
            parts.append(e[:-2] if i % 10 == 9 else e)  # every tenth event cut short: malformed
            total += len(parts[-1]) + 1
            i += 1
        _write(path, head, parts, compress=False)
        return path
    if kind == "baseline":
        path = folder / f"baseline-{mb:g}MB.json"
        reps = max(1, size // max(1, sum(len(e) + 1 for e in enc)))
        _write(path, head, enc * reps, compress=False)
        return path
    raise ValueError(kind)


_CHILD = (
    "import resource, sys\n"
    "from perfkit.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')]\n"
    "print('PEAK_RSS_KB', hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


def _warnings(doc_path: Path) -> list[str]:
    """The trace warnings the analysis document carries (the report shows them in its header)."""
    try:
        return json.loads(doc_path.read_text())["trace"]["warnings"]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def run_case(path: Path, folder: Path) -> dict:
    """``perfkit analyze`` on one file in a fresh interpreter: wall time, its own peak RSS, exit code."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, "analyze", str(path), "--json", str(folder / "out.json")],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    wall = time.perf_counter() - t0
    peak = [ln.split()[1] for ln in proc.stderr.splitlines() if ln.startswith("PEAK_RSS_KB ")]
    return {
        "file": path.name,
        "file_mb": round(path.stat().st_size / 2**20, 2),
        "seconds": round(wall, 2),
        "peak_rss_mb": round(int(peak[0]) / 1024, 1) if peak else None,
        "exit": proc.returncode,
        "warnings": _warnings(folder / "out.json") if proc.returncode == 0 else None,
        "traceback": "Traceback" in proc.stderr,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every size by this")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    plan = {
        "baseline": [8, 32, 128],
        "bad_events": [8, 32, 128],
        "name": [1, 4, 16, 64],
        "gap": [50, 200, 800],
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for kind, sizes in plan.items():
            for mb in sizes:
                path = make_case(kind, mb * args.scale, folder)
                r = {"case": kind, "size_mb": mb * args.scale, **run_case(path, folder)}
                rows.append(r)
                print(f"{kind:11s} {r['size_mb']:>7g} MB  file {r['file_mb']:>8.2f} MB  {r['seconds']:>7.2f} s  "
                      f"peak RSS {r['peak_rss_mb']} MB  "
                      f"exit {r['exit']}  traceback {r['traceback']}  warnings {[w.split(': ', 1)[-1][:70] for w in r['warnings'] or []]}", flush=True)
                path.unlink()
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
