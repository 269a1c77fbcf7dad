"""The job view at thousands of ranks: linear work, failed ranks, bounded reports, the ranks x steps figure.

The jobs are made by ``scripts/bench_job_view.py``'s :func:`synthetic_job` from one real rank document
(2 x H200 DDP): every rank's collectives match, rank 7 arrives last at every one. Work is measured by
counted Python line events (deterministic), never by the clock. The 1,024-rank job's reports and figure,
and the HTML page of a job, are checked in tests/e2e/test_job_view_scale_e2e.py.
"""

from __future__ import annotations

import copy
import io
import json
import sys
from typing import Any, Callable

import numpy as np
import pytest

from perfkit.job import ranks
from perfkit.report import plots as P
from perfkit.report import ranks as report_ranks
from scripts.bench_job_view import STRAGGLER, base_document, synthetic_job

from ..conftest import REPO

GOLDEN_JOB = REPO / "tests" / "data" / "golden" / "job_2_ranks.json"


class _OverBudget(Exception):
    pass


def lines_run(fn: Callable[[], Any], budget: int = 5_000_000) -> int:
    """Python line events while ``fn`` runs (every function, numpy's Python code included); raises past ``budget``
    (a loop over a corrupt world size of 10**9 fails the test instead of hanging it)."""
    n = 0

    def local(frame: Any, event: str, arg: Any) -> Any:
        nonlocal n
        if event == "line":
            n += 1
            if n > budget:
                raise _OverBudget(f"more than {budget} lines")
        return local

    def start(frame: Any, event: str, arg: Any) -> Any:
        return local

    old = sys.gettrace()
    sys.settrace(start)
    try:
        fn()
    finally:
        sys.settrace(old)
    return n


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return base_document()


# --------------------------------------------------------------------- job_view: linear work


def test_job_view_work_grows_linearly_with_the_ranks(base: dict[str, Any]) -> None:
    ranks.job_view(synthetic_job(4, base=base))  # imports and first-call work out of the count
    small, large = synthetic_job(32, base=base), synthetic_job(128, base=base)
    per_rank_small = lines_run(lambda: ranks.job_view(small)) / 32
    per_rank_large = lines_run(lambda: ranks.job_view(large)) / 128
    # Linear: the lines per rank do not grow with the ranks (a loop over the ranks inside a loop over the
    # ranks would add 96 x its lines per rank here).
    assert per_rank_large <= 1.05 * per_rank_small, (per_rank_small, per_rank_large)


def test_a_corrupt_world_size_costs_nothing(base: dict[str, Any]) -> None:
    docs = synthetic_job(4, base=base)
    ranks.job_view(copy.deepcopy(docs))
    normal = lines_run(lambda: ranks.job_view(copy.deepcopy(docs)))
    for d in docs:
        d["trace"]["distributed"]["world_size"] = 10**9
    view: dict[str, Any] = {}
    n = lines_run(lambda: view.update(ranks.job_view(docs)), budget=2 * normal)
    assert n <= 2 * normal
    assert view["job"]["world_size"] == 10**9 and view["job"]["missing_ranks"] == []
    assert [r["status"] for r in view["ranks"]] == ["analysed"] * 4


def test_skipped_collectives_name_ranks_by_count_at_any_size(base: dict[str, Any]) -> None:
    docs = synthetic_job(64, base=base)
    c = docs[7]["communication"]["collectives"]
    drop = max(i for i, s in enumerate(c["step"]) if s == 8)  # rank 7 lists one all-reduce less in step 8
    for col in ("step", "kind", "n", "launch_us", "start_us", "end_us", "gap_us", "before_busy_us", "before_op",
                "before_op_us"):
        c[col] = c[col][:drop] + c[col][drop + 1:]
    per_step = sum(1 for s in docs[0]["communication"]["collectives"]["step"] if s == 8)
    view = ranks.job_view(docs)
    assert view["job"]["arrivals"]["skipped"] == [
        f"step 8 all_reduce: ranks 0-6, 8-63 have {per_step}, rank 7 has {per_step - 1}"]
    assert view["job"]["arrivals"]["steps"] == [7, 9]


def test_count_groups_stay_short_and_keep_the_two_rank_wording() -> None:
    assert ranks._count_groups([0, 1], np.array([3, 2])) == "rank 0 has 3, rank 1 has 2"
    text = ranks._count_groups(list(range(1000)), np.arange(1000) % 9)
    assert text.count(" ha") == ranks.SKIPPED_GROUPS_SHOWN and text.endswith(" ...") and len(text) < 1200


# --------------------------------------------------------------------- failed ranks


def test_failed_ranks_are_rows_a_finding_and_not_missing(base: dict[str, Any]) -> None:
    docs = [d for d in synthetic_job(8, base=base) if ranks.rank_of(d) not in (3, 5, 6)]
    failed = [ranks.failed_row(3, "Traceback (most recent call last):\n  File \"a.py\", line 2, in f\n"
                                  "ValueError: rank3.json: not JSON"),
              ranks.failed_row(5, "the worker ran out of memory"), ranks.failed_row(6, "the worker ran out of memory"),
              ranks.failed_row(1, "lost on the first try")]  # rank 1 was retried and analysed: not failed
    view = ranks.job_view(docs, failed=failed)
    assert [(r["rank"], r["status"]) for r in view["ranks"]] == [
        (0, "analysed"), (1, "analysed"), (2, "analysed"), (4, "analysed"), (7, "analysed"),
        (3, "failed"), (5, "failed"), (6, "failed")]
    by_rank = {r["rank"]: r for r in view["ranks"]}
    assert by_rank[3]["reason"] == "ValueError: rank3.json: not JSON"  # a traceback's last line
    assert view["job"]["failed_ranks"] == [3, 5, 6] and view["job"]["missing_ranks"] == []
    assert view["job"]["ranks_analysed"] == 5 and view["job"]["world_size"] == 8
    f = next(f for f in view["findings"] if f["id"] == "rank_failed")
    assert f["severity"] == "warning" and f["evidence"]["failed_ranks"] == [3, 5, 6]
    assert f["evidence"]["reasons"] == {"the worker ran out of memory": [5, 6], "ValueError: rank3.json: not JSON": [3]}
    assert f["title"].startswith("The analysis of 3 of 8 ranks failed (ranks 5-6: the worker ran out of memory; "
                                 "1 more with 1 other reason)")
    assert not any(x["id"] == "rank_missing" for x in view["findings"])
    assert view["job"]["straggler"]["rank"] == STRAGGLER  # the job view of the rest still stands


def test_rank_failed_without_failures_and_with_many() -> None:
    assert ranks.rank_failed([], 4) is None
    rows = [ranks.failed_row(r, f"file {r} is corrupt") for r in range(100)]
    f = ranks.rank_failed(rows, 1024)
    assert f is not None and len(f["where"]) == ranks.FINDING_RANKS_SHOWN
    assert f["evidence"]["failed_ranks"] == list(range(100)) and len(f["evidence"]["reasons"]) == 100
    assert "99 more with 99 other reasons" in f["title"]
    assert ranks.failed_row(2, "x" * 1000)["reason"] == "x" * 299 + "…"
    assert ranks.failed_row(2, "")["reason"] == "the analysis failed (no reason given)"


# --------------------------------------------------------------------- reports of a big job


def _console(doc: dict[str, Any]) -> str:
    from rich.console import Console

    from perfkit.report.console import render_console

    buf = io.StringIO()
    render_console(doc, Console(file=buf, width=100, color_system=None, force_terminal=False))
    return buf.getvalue()


def test_small_jobs_have_no_distribution_line() -> None:
    doc = json.loads(GOLDEN_JOB.read_text(encoding="utf-8"))
    assert report_ranks.distribution_line(doc) == ""


def test_status_lines_group_reasons_and_count_the_rest() -> None:
    rows = [{"rank": r, "status": "missing", "reason": f"reason {r % 7}"} for r in range(0, 70)]
    lines = report_ranks.status_lines({"ranks": rows}, "missing")
    assert lines[0] == "missing: ranks " + ", ".join(str(r) for r in range(0, 70, 7)) + ": reason 0"
    assert len(lines) == report_ranks.MAX_REASONS + 1
    assert lines[-1].startswith("missing: 30 more ranks (") and lines[-1].endswith("with 3 other reasons "
                                                                                     "(each in the document's ranks list)")
    spread = report_ranks._ids(list(range(0, 2000, 2)))
    assert len(spread) < report_ranks.MAX_IDS_CHARS + 20 and spread.endswith("more)")
    shown = [int(x) for x in spread.split(" ...")[0].split(", ")]
    assert spread.endswith(f"({1000 - len(shown)} more)")


# --------------------------------------------------------------------- the ranks x steps figure


def _cells(doc: dict[str, Any]) -> dict[tuple[int, int], float]:
    return {(r["rank"], r["id"]): r["window_ms"] for r in doc["steps"]["table"]}


def test_rank_steps_figure_of_the_committed_two_rank_job() -> None:
    doc = json.loads(GOLDEN_JOB.read_text(encoding="utf-8"))
    plot = P.plot_rank_steps(doc)
    assert plot.figure is not None and plot.skipped is None
    cells = _cells(doc)
    assert plot.info["ranks"] == [0, 1] and plot.info["step_ids"] == sorted({i for _, i in cells})
    assert plot.info["ms"] == [[cells[(r, i)] for i in plot.info["step_ids"]] for r in (0, 1)]
    assert plot.info["straggler"] == doc["job"]["straggler"]["rank"] == 1 and plot.info["straggler_row"] == 1
    ax = plot.figure.axes[0]
    assert np.allclose(np.asarray(ax.images[0].get_array()), np.array(plot.info["ms"]))
    assert "ms" in plot.figure.axes[1].get_ylabel()  # the colour bar
    labels = {t.get_text(): t for t in ax.get_yticklabels()}
    assert set(labels) == {"0", "1 straggler"} and labels["1 straggler"].get_color() == P._OUTLIER_COLOR
    assert plot.info["vmin_ms"] == min(cells.values()) and plot.info["vmax_ms"] == max(cells.values())


def test_every_rank_failed_still_gives_a_job_document() -> None:
    from perfkit.documents import validate_analysis
    from perfkit.report.html import render_html
    from perfkit.report.markdown import render_markdown

    failed = [ranks.failed_row(r, "the worker ran out of memory") for r in range(3)]
    view = ranks.job_view([], failed=failed, missing={3: "no rank3.analysis.json after 120 s"}, world_size=4)
    assert [(r["rank"], r["status"]) for r in view["ranks"]] == [(0, "failed"), (1, "failed"), (2, "failed"),
                                                                 (3, "missing")]
    assert view["job"]["ranks_analysed"] == 0 and view["job"]["straggler"] is None
    assert view["job"]["failed_ranks"] == [0, 1, 2] and view["job"]["missing_ranks"] == [3]
    assert [f["id"] for f in view["findings"]] == ["rank_failed", "rank_missing"]
    _, notes = validate_analysis(json.loads(json.dumps(view)), "analysis.json")
    assert notes == []
    md = render_markdown(view)
    assert "- 0 of 4 ranks analysed\n- failed: ranks 0-2: the worker ran out of memory\n" \
           "- missing: rank 3: no rank3.analysis.json after 120 s\n" in md
    assert "plot-rank_steps" not in render_html(view)  # no step times: no figure, and no error
    assert "failed: ranks 0-2: the worker ran out of memory" in _console(view)
    # no rank was analysed: the device is not known (never "CPU only"), the step time not 0
    assert "unknown (no trace analysis)" in _console(view) and "CPU only" not in md + _console(view)
    assert view["job"]["step_ms_median"] is None
