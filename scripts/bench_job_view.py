#!/usr/bin/env python3
"""Benchmark the job view at many ranks: ``job_view`` and the three renders for 64 / 256 / 1,024 ranks.

The jobs are synthetic but consistent, made from one real rank document
(``traces/ddp_gpt_2xh200/straggler/rank0.analysis.json``, 2 x H200 DDP, schema 1, upgraded):
:func:`synthetic_job` copies it once per rank with the rank number, the world size and the
trace path rewritten, and its collectives and step times moved by a seeded jitter (every rank
ends each collective together; one rank, the straggler, starts every collective last and its
steps take longer). Every rank lists the same collectives, so they all match across ranks,
the most work the arrival comparison can be given.

What it times (best of ``--repeat``, seconds, in this process, after one warm-up job of 2 ranks): ``job_view`` of the per-rank
documents; the terminal report (rich, 100 columns, to a string); the Markdown report; the HTML
page with its figures (``render_html``, the figures drawn by matplotlib, the ranks x steps heatmap
included). Plus the size of the job document as compact JSON.

Usage::

    .venv/bin/python scripts/bench_job_view.py                      # 64,256,1024 ranks
    .venv/bin/python scripts/bench_job_view.py --ranks 64 --repeat 1   # a smoke run

Output: a Markdown table on stdout (the rows of docs/performance.md's job view table).
"""

from __future__ import annotations

import argparse
import copy
import gc
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: The real rank document every synthetic rank is made from (schema 1: upgraded on load).
SOURCE = REPO / "traces" / "ddp_gpt_2xh200" / "straggler" / "rank0.analysis.json"
#: The rank that arrives last at every collective.
STRAGGLER = 7
#: Extra step time of the straggler (ms per step) and its lead at each collective (µs).
STRAGGLER_MS = 6.0
STRAGGLER_LEAD_US = 3000.0
#: The other ranks' jitter: collective starts up to this much earlier (µs), steps up to this much longer (ms).
JITTER_US = 400.0
JITTER_MS = 1.5


def base_document() -> dict[str, Any]:
    from perfkit.analysis.document import upgrade

    doc: dict[str, Any] = dict(upgrade(json.loads(SOURCE.read_text(encoding="utf-8"))))
    return doc


def synthetic_job(n_ranks: int, *, seed: int = 0, straggler: int = STRAGGLER,
                  base: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """``n_ranks`` per-rank documents of one consistent job (see the module's docstring).

    Deterministic for a given ``seed``. The straggler is ``straggler % n_ranks``.
    """
    import numpy as np

    base = base if base is not None else base_document()
    rng = np.random.default_rng(seed)
    straggler = straggler % n_ranks
    coll = base["communication"]["collectives"]
    start = np.asarray(coll["start_us"], dtype=float)
    launch = np.array([np.nan if v is None else v for v in coll["launch_us"]], dtype=float)
    steps_table = base["steps"]["table"]
    docs = []
    for r in range(n_ranks):
        d = copy.deepcopy(base)
        dist = d["trace"].setdefault("distributed", {})
        dist["rank"] = r
        dist["world_size"] = n_ranks
        for pg in dist.get("pg_config") or []:
            pg["pg_size"] = n_ranks
            pg["ranks"] = list(range(n_ranks))
        d["trace"]["paths"] = [f"run/rank{r}.pt.trace.json.gz"]
        c = d["communication"]["collectives"]
        if r == straggler:
            early = np.zeros(len(start))
            extra_ms = STRAGGLER_MS
        else:
            early = STRAGGLER_LEAD_US + rng.uniform(0.0, JITTER_US, len(start))
            extra_ms = float(rng.uniform(0.0, JITTER_MS))
        c["start_us"] = np.round(start - early, 3).tolist()
        c["launch_us"] = [None if v != v else v for v in np.round(launch - early, 3).tolist()]
        for row, base_row in zip(d["steps"]["table"], steps_table):
            bump = extra_ms + float(rng.uniform(0.0, JITTER_MS / 4))
            for key in ("window_ms", "wall_ms", "active_ms", "busy_ms"):
                if isinstance(base_row.get(key), (int, float)):
                    row[key] = round(float(base_row[key]) + bump, 4)
            if isinstance(base_row.get("forward_ms"), (int, float)):
                row["forward_ms"] = round(float(base_row["forward_ms"]) + bump, 4)
        kept = [row["window_ms"] for row in d["steps"]["table"] if row.get("kept", True)]
        if kept:
            d["steps"]["window_ms_median"] = float(np.median(kept))
            d["steps"]["window_ms_mean"] = float(np.mean(kept))
        d["device"]["busy_ms_per_step"] = float(d["device"]["busy_ms_per_step"]) + extra_ms
        fwd = (d.get("phases") or {}).get("forward")
        if isinstance(fwd, dict) and isinstance(fwd.get("ms_per_step"), (int, float)):
            fwd["ms_per_step"] = float(fwd["ms_per_step"]) + extra_ms
        docs.append(d)
    return docs


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def measure(n_ranks: int, repeat: int) -> dict[str, Any]:
    from rich.console import Console

    from perfkit.job.ranks import job_view
    from perfkit.report.console import render_console
    from perfkit.report.html import render_html
    from perfkit.report.markdown import render_markdown

    docs = synthetic_job(n_ranks)
    copies = [copy.deepcopy(docs) for _ in range(repeat)]  # job_view may annotate its input: a fresh copy each run
    t_view, job = float("inf"), None
    for c in copies:
        t, out = _best(lambda: job_view(c), 1)
        t_view, job = min(t_view, t), out
    assert job is not None

    def console_text() -> str:
        buf = io.StringIO()
        render_console(job, Console(file=buf, width=100, color_system=None, force_terminal=False))
        return buf.getvalue()

    t_txt, txt = _best(console_text, repeat)
    t_md, md = _best(lambda: render_markdown(job), repeat)
    t_html, page = _best(lambda: render_html(job), repeat)
    return {
        "ranks": n_ranks,
        "step_rows": len(job["steps"]["table"]),
        "doc_bytes": len(json.dumps(job, separators=(",", ":"))),
        "job_view_s": t_view,
        "terminal_s": t_txt,
        "markdown_s": t_md,
        "html_s": t_html,
        "terminal_lines": txt.count("\n"),
        "markdown_lines": md.count("\n"),
        "html_bytes": len(page),
        "straggler": (job["job"]["straggler"] or {}).get("rank"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranks", default="64,256,1024", help="comma-separated rank counts")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs per figure")
    args = parser.parse_args(argv)
    measure(2, 1)  # imports, matplotlib's font cache: not in the first row's figures
    print(f"uptime: {os.popen('uptime').read().strip()}")
    print("| ranks | step rows | job doc (MB) | job_view (s) | terminal (s) | Markdown (s) | HTML + figures (s) "
          "| terminal lines | straggler |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in (int(x) for x in args.ranks.split(",")):
        m = measure(n, max(args.repeat, 1))
        print(f"| {m['ranks']} | {m['step_rows']} | {m['doc_bytes'] / 1e6:.1f} | {m['job_view_s']:.3f} | "
              f"{m['terminal_s']:.3f} | {m['markdown_s']:.3f} | {m['html_s']:.2f} | {m['terminal_lines']} | "
              f"{m['straggler']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
