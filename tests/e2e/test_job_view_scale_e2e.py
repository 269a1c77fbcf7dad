"""The job view of tests/unit/test_job_view_scale.py at 1,024 ranks (its reports stay short, its lines and
its ranks x steps figure), and the ranks section of a job's HTML page: seconds of building and drawing."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pytest

from perfkit.job import ranks
from perfkit.report import plots as P
from perfkit.report import ranks as report_ranks
from scripts.bench_job_view import STRAGGLER, synthetic_job

from ..unit.test_job_view_scale import GOLDEN_JOB, _cells, _console, base  # noqa: F401  (base is a fixture)


@pytest.fixture(scope="module")
def big_job(base: dict[str, Any]) -> dict[str, Any]:
    """A job of 1,024 ranks: ranks 3 and 17-19 failed (two reasons), rank 500 missing."""
    docs = [d for d in synthetic_job(1024, base=base) if ranks.rank_of(d) not in (3, 17, 18, 19, 500)]
    failed = [ranks.failed_row(r, "Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                                  f"perfkit.errors.TraceFormatError: rank{r}.pt.trace.json.gz: not JSON at byte 12")
              for r in (3, 17)]
    failed += [ranks.failed_row(r, "the worker ran out of memory") for r in (18, 19)]
    return ranks.job_view(docs, failed=failed, missing={500: "no rank500.analysis.json after 120 s"})


def test_big_job_reports_stay_short(big_job: dict[str, Any], base: dict[str, Any]) -> None:
    from perfkit.report.markdown import render_markdown

    small = ranks.job_view(synthetic_job(32, base=base))
    for render in (_console, render_markdown):
        big_text, small_text = render(big_job), render(small)
        # The same sections; the big job adds its failed and missing lines and a finding, not a line per rank.
        assert big_text.count("\n") <= small_text.count("\n") + 30, render
        assert max(len(line) for line in big_text.splitlines()) < 1000, render
    md = render_markdown(big_job)
    assert "1003 more ranks in the document's ranks list" in md
    assert "exposed_ms_per_step_by_rank" in md and "(1003 more in the document)" in md  # 1,019 ranks, 16 shown


def test_big_job_lines_list_the_distribution_and_the_failed_ranks(big_job: dict[str, Any]) -> None:
    lines = report_ranks.job_lines(big_job)
    assert lines[0] == "1019 of 1024 ranks analysed"
    assert "failed: ranks 17-18: " not in "\n".join(lines)
    assert "failed: ranks 18-19: the worker ran out of memory" in lines
    assert "failed: rank 3: perfkit.errors.TraceFormatError: rank3.pt.trace.json.gz: not JSON at byte 12" in lines
    assert "missing: rank 500: no rank500.analysis.json after 120 s" in lines
    # The distribution, recomputed here with numpy from the rank rows.
    rows = [r for r in big_job["ranks"] if r["status"] == "analysed"]
    ms = np.array([r["step_ms_median"] for r in rows])
    rk = np.array([r["rank"] for r in rows])
    lo, hi = int(rk[ms == ms.min()].min()), int(rk[ms == ms.max()].min())
    assert hi == STRAGGLER
    want = (f"step time across {len(rows)} ranks: min {ms.min():.2f} ms (rank {lo}), median {np.median(ms):.2f}, "
            f"p90 {np.percentile(ms, 90):.2f}, max {ms.max():.2f} ms (rank {hi})")
    assert lines[-1] == want


def test_rank_steps_figure_of_a_1024_rank_job(big_job: dict[str, Any]) -> None:
    plot = P.plot_rank_steps(big_job)
    assert plot.figure is not None
    assert plot.info["ranks"] == list(range(1024)) and plot.info["step_ids"] == [7, 8, 9]
    cells = _cells(big_job)
    ms = plot.info["ms"]
    for r in (0, STRAGGLER, 511, 1023):
        assert ms[r] == [cells[(r, i)] for i in (7, 8, 9)]
    for r in (3, 17, 18, 19, 500):  # failed or missing: unknown, drawn grey
        assert ms[r] == [None, None, None]
    assert plot.info["unknown_cells"] == 15 and plot.info["straggler_row"] == STRAGGLER
    ax = plot.figure.axes[0]
    image = np.asarray(ax.images[0].get_array())
    assert image.shape == (1024, 3) and np.ma.getmaskarray(ax.images[0].get_array())[500].all()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert f"{STRAGGLER} straggler" in labels and len(labels) <= P.RANK_TICKS + 1
    assert all(re.fullmatch(r"\d+( straggler)?", x) for x in labels)
    # The colour scale spans the kept steps (all kept here): min and max of the known cells.
    known = [v for row in ms for v in row if v is not None]
    assert (plot.info["vmin_ms"], plot.info["vmax_ms"]) == (min(known), max(known))


def test_rank_steps_only_for_jobs_and_in_the_ranks_section() -> None:
    from perfkit.report.html import render_html

    assert P.plot_rank_steps({"steps": {"table": [{"id": 1, "window_ms": 2.0}]}}).skipped == "not a job of several ranks"
    doc = json.loads(GOLDEN_JOB.read_text(encoding="utf-8"))
    assert [p.name for p in P.build_plots(doc)] == list(P.JOB_PLOT_NAMES + P.PLOT_NAMES)
    page = render_html(doc)
    section = page[page.index('<section id="ranks"'):]
    section = section[:section.index("</section>")]
    assert section.count('<figure id="plot-rank_steps">') == 1 and page.count("plot-rank_steps") == 1
