"""Who waits for whom, from the collectives themselves: arrival order across ranks.

The real job is facebookresearch/param's 8-rank DLRM step (8x V100, NCCL all-to-all and
all-reduce, tests/data/traces/param_dlrm_8xv100). Its expected figures come from a slow
pure-Python reading of the raw events below, not from perfkit.
"""

from __future__ import annotations

import copy
import gzip
import json
import re
from pathlib import Path

import pytest

import perfkit
from perfkit.analysis import comm
from perfkit.job import ranks

from .test_ranks import make_trace

DLRM = Path(__file__).resolve().parent.parent / "data" / "traces" / "param_dlrm_8xv100"


# --------------------------------------------------------------------- a slow reference from the raw events


def _kind(name: str) -> str:
    for kind, words in (("all_to_all", ("all_to_all", "alltoall")), ("all_reduce", ("all_reduce", "allreduce"))):
        if any(w in name.lower() for w in words):
            return kind
    return name


def reference_arrivals(files: list[Path]) -> dict:
    """Per rank, the NCCL kernels of each ProfilerStep in launch order; the n-th of each kind matched across ranks.

    A kernel's kind is the ``nccl:*`` annotation around its cudaLaunchKernel on the launching
    thread (NCCL runs all-to-all as SendRecv kernels). The ranks share one host clock (the
    kernels end together), so arrivals are compared as recorded.
    """
    per_rank = {}
    for f in files:
        trace = json.load(gzip.open(f))
        ev = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
        rank = trace["distributedInfo"]["rank"]
        launches = {e["args"]["correlation"]: e for e in ev if e.get("cat") == "cuda_runtime" and "correlation" in e.get("args", {})}
        annotations = [e for e in ev if e.get("cat") == "user_annotation" and e["name"].startswith("nccl:")]
        steps = [e for e in ev if re.match(r"ProfilerStep#\d+$", e["name"]) and e.get("cat") in ("user_annotation", "cpu_op")]
        rows = []
        for k in ev:
            if k.get("cat") != "kernel" or not k["name"].startswith("nccl"):
                continue
            launch = launches[k["args"]["correlation"]]
            around = [a for a in annotations if a["tid"] == launch["tid"] and a["ts"] <= launch["ts"] <= a["ts"] + a["dur"]]
            kind = _kind(around[-1]["name"] if around else k["name"])
            step = next(int(s["name"].split("#")[1]) for s in steps if s["ts"] <= launch["ts"] <= s["ts"] + s["dur"])
            rows.append((step, launch["ts"], kind, k["ts"], k["ts"] + k["dur"]))
        rows.sort()
        seen: dict = {}
        out = {}
        for step, _, kind, start, end in rows:
            n = seen.get((step, kind), 0)
            seen[(step, kind)] = n + 1
            out[(step, kind, n)] = (start, end)
        per_rank[rank] = out
    keys = sorted(per_rank[0])
    assert all(sorted(v) == keys for v in per_rank.values())
    last_count = {r: 0 for r in per_rank}
    caused = {r: 0.0 for r in per_rank}
    worst = {r: 0.0 for r in per_rank}
    waits = {r: 0.0 for r in per_rank}
    end_spread = []
    for key in keys:
        starts = {r: per_rank[r][key][0] for r in per_rank}
        ends = [per_rank[r][key][1] for r in per_rank]
        end_spread.append(max(ends) - min(ends))
        last = max(starts, key=lambda r: starts[r])
        last_count[last] += 1
        caused[last] += sum(starts[last] - s for r, s in starts.items() if r != last) / (len(starts) - 1)
        worst[last] += max(starts[last] - s for s in starts.values())
        for r, s in starts.items():
            waits[r] += starts[last] - s
    return {"keys": keys, "last": last_count, "caused_us": caused, "worst_us": worst, "wait_us": waits,
            "end_spread_us": end_spread}


@pytest.fixture(scope="module")
def dlrm_docs() -> list[dict]:
    return [perfkit.analyze(str(p)).to_dict() for p in sorted(DLRM.glob("*.json.gz"))]


def test_dlrm_job_names_the_rank_that_arrives_last(dlrm_docs):
    files = sorted(DLRM.glob("*.json.gz"))
    assert len(files) == 8
    ref = reference_arrivals(files)
    assert max(ref["end_spread_us"]) < 10.0  # one host clock: every collective ends within microseconds
    view = ranks.job_view(dlrm_docs)
    f = next(f for f in view["findings"] if f["id"] == "straggler_rank")
    ev = f["evidence"]
    straggler = max(ref["caused_us"], key=lambda r: ref["caused_us"][r])
    assert straggler == 7 and f["rank"] == 7 and view["job"]["straggler"]["rank"] == 7
    assert ev["method"] == "collective arrival order"
    assert ev["collectives_matched"] == len(ref["keys"]) == 8
    assert ev["late_collectives"] == ref["last"][7] == 5
    assert ev["others_wait_ms_per_step"] == pytest.approx(ref["caused_us"][7] / 1000.0, abs=2e-3)  # one step
    assert ev["max_wait_ms_per_step"] == pytest.approx(ref["worst_us"][7] / 1000.0, abs=2e-3)
    assert view["job"]["arrivals"]["clocks_shifted"] == [] and ev["steps_matched"] == [10]
    assert f["severity"] == "critical"  # about 5 ms of a 16 ms step
    assert "Rank 7 arrives last at 5 of 8 collectives" in f["title"]
    rows = {r["rank"]: r for r in view["ranks"]}
    for r in range(8):
        assert rows[r]["last_arrivals"] == ref["last"][r]
        assert rows[r]["arrival_wait_ms_per_step"] == pytest.approx(ref["wait_us"][r] / 1000.0, abs=2e-3)
    # Rank 7's step starts late: read the ProfilerStep starts from the raw events.
    starts = {}
    for p in files:
        t = json.load(gzip.open(p))
        starts[t["distributedInfo"]["rank"]] = next(e["ts"] for e in t["traceEvents"] if e.get("name") == "ProfilerStep#10")
    earliest = min(starts, key=lambda r: starts[r])
    assert ev["earliest_rank"] == earliest
    assert ev["step_start_after_earliest_ms"] == pytest.approx((starts[7] - starts[earliest]) / 1000.0, abs=1e-3)


def test_dlrm_job_bookkeeping(dlrm_docs):
    view = ranks.job_view(dlrm_docs)
    files = sorted(DLRM.glob("*.json.gz"))
    raw_bytes = sum(len(gzip.open(p).read()) for p in files)
    assert view["trace"]["bytes"] == raw_bytes
    assert view["trace"]["events"] == sum(d["trace"]["events"] for d in dlrm_docs)
    assert sorted(r["bytes"] for r in view["ranks"]) == sorted(len(gzip.open(p).read()) for p in files)
    assert view["steps"]["ids"] == [10]
    from perfkit.report.rows import steps_line, trace_line

    assert steps_line(view) == "1 step per rank (id 10) on 8 ranks"
    disk_bytes = sum(p.stat().st_size for p in files)  # the header shows the files' size, not the JSON's
    assert view["trace"]["file_bytes"] == disk_bytes
    assert f"{disk_bytes / 1e3:,.1f} kB" in trace_line(view)


def test_collective_list_is_columnar_on_the_absolute_clock(dlrm_docs):
    c = dlrm_docs[7]["communication"]["collectives"]
    assert c["listed"] == c["count"] == 8 and not c["truncated"] and c["cap"] == comm.COLLECTIVES_CAP
    assert sorted(c["kinds"]) == ["all_reduce", "all_to_all"]
    kinds = [c["kinds"][k] for k in c["kind"]]
    assert kinds.count("all_to_all") == 5 and kinds.count("all_reduce") == 3
    trace = json.load(gzip.open(sorted(DLRM.glob("worker7_*.json.gz"))[0]))
    first = min(e["ts"] for e in trace["traceEvents"] if e.get("cat") == "kernel" and e["name"].startswith("nccl"))
    assert c["origin_ns"] / 1000.0 + c["start_us"][0] == pytest.approx(first, abs=1e-3)
    assert all(a is None or a <= s for a, s in zip(c["launch_us"], c["start_us"]))


# --------------------------------------------------------------------- constructed jobs


def _docs(paths) -> list[dict]:
    return [perfkit.analyze(str(p)).to_dict() for p in paths]


def _shift_trace(path: Path, us: float, base_ns: int | None = None) -> None:
    doc = json.loads(path.read_text())
    for e in doc["traceEvents"]:
        e["ts"] += us
    if base_ns is not None:
        doc["baseTimeNanoseconds"] = base_ns
    path.write_text(json.dumps(doc))


def _job(tmp_path: Path, slow: int = 2, world: int = 4) -> list[Path]:
    """Rank ``slow`` computes 3 ms longer and starts its all-reduce at 7 ms; the others at 4 ms (4 steps)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    return [make_trace(tmp_path / f"rank{r}.pt.trace.json", r, world=world, compute=(1.0, 9.0 if r == slow else 6.0),
                       comm=(7.0 if r == slow else 4.0, 12.0)) for r in range(world)]


def test_clock_shifted_by_seconds_is_aligned_on_collective_ends(tmp_path):
    base = _docs(_job(tmp_path / "a"))
    paths = _job(tmp_path / "b")
    _shift_trace(paths[3], 5_000_000.0)  # rank 3's clock 5 s ahead
    _shift_trace(paths[1], -2_500_000.25)  # rank 1's 2.5 s behind
    view = ranks.job_view(_docs(paths))
    f = next(f for f in view["findings"] if f["id"] == "straggler_rank")
    assert f["rank"] == 2
    arr = view["job"]["arrivals"]
    assert arr["clocks_shifted"] == [1, 3]
    assert arr["clock_offsets_us"]["3"] == pytest.approx(5_000_000.0, abs=1e-3)
    assert arr["clock_offsets_us"]["1"] == pytest.approx(-2_500_000.25, abs=1e-3)
    # The same answer as with one clock: others wait 3 ms per step (4 steps, one all-reduce each).
    ref = next(f for f in ranks.job_view(base)["findings"] if f["id"] == "straggler_rank")
    assert ranks.job_view(base)["job"]["arrivals"]["clocks_shifted"] == []
    for key in ("others_wait_ms_per_step", "lead_ms_per_step", "late_collectives"):
        assert f["evidence"][key] == pytest.approx(ref["evidence"][key], abs=1e-6), key
    assert f["evidence"]["others_wait_ms_per_step"] == pytest.approx(3.0, abs=1e-6)
    assert f["evidence"]["late_collectives"] == 4 and f["evidence"]["collectives_matched"] == 4


def test_base_time_puts_relative_clocks_on_one_clock(tmp_path):
    """Traces with relative ``ts`` and different ``baseTimeNanoseconds``: no shift needed, none applied."""
    paths = _job(tmp_path)
    for r, p in enumerate(paths):
        base_ns = 1_790_000_000_000_000_000 + r * 7_000_000_000  # bases 7 s apart ...
        _shift_trace(p, -r * 7_000_000.0, base_ns=base_ns)  # ... and ts 7 s earlier: one absolute clock
    view = ranks.job_view(_docs(paths))
    arr = view["job"]["arrivals"]
    assert arr["status"] == "matched" and arr["clocks_shifted"] == []
    assert max(abs(v) for v in arr["clock_offsets_us"].values()) < 1e-3
    assert view["job"]["straggler"]["rank"] == 2


def test_balanced_ranks_name_no_straggler(tmp_path):
    paths = [make_trace(tmp_path / f"rank{r}.json", r) for r in range(4)]
    view = ranks.job_view(_docs(paths))
    assert view["job"]["straggler"] is None and view["job"]["arrivals"]["status"] == "matched"
    assert not [f for f in view["findings"] if f["id"] == "straggler_rank"]


def test_unknown_when_collectives_cannot_be_matched(tmp_path):
    docs = _docs(_job(tmp_path))
    # Documents without the list (an older perfkit wrote them): unknown, work estimate labelled.
    old = copy.deepcopy(docs)
    for d in old:
        del d["communication"]["collectives"]
    view = ranks.job_view(old)
    f = next(f for f in view["findings"] if f["id"] == "straggler_rank")
    assert f["severity"] == "info" and f["rank"] is None and f["evidence"]["method"] == "unknown"
    assert "older perfkit" in f["evidence"]["reason"] and f["title"].startswith("Straggler unknown")
    assert f["evidence"]["work_estimate"]["rank"] == 2 and "weaker estimate" in f["title"]
    assert view["job"]["straggler"] is None and view["job"]["arrivals"]["status"] == "unknown"
    # Different numbers of all-reduces in every step: nothing matched.
    odd = copy.deepcopy(docs)
    c = odd[1]["communication"]["collectives"]
    for col in ("step", "kind", "n", "launch_us", "start_us", "end_us", "gap_us", "before_busy_us", "before_op",
                "before_op_us"):
        c[col] = c[col] + c[col]
    c["n"] = [0, 0, 0, 0, 1, 1, 1, 1]
    f = next(f for f in ranks.job_view(odd)["findings"] if f["id"] == "straggler_rank")
    assert f["evidence"]["method"] == "unknown" and "rank 1 has 2" in f["evidence"]["reason"]
    # No step in common.
    apart = copy.deepcopy(docs)
    c = apart[0]["communication"]["collectives"]
    c["step"] = [s + 100 for s in c["step"]]
    f = next(f for f in ranks.job_view(apart)["findings"] if f["id"] == "straggler_rank")
    assert "share no step id" in f["evidence"]["reason"]
    # One rank: nobody to wait for.
    assert ranks.arrivals(docs[:1]) == {"status": "unknown", "reason": "one rank: there is nobody to wait for"}
    # No collectives at all.
    none = copy.deepcopy(docs)
    for d in none:
        c = d["communication"]["collectives"]
        for col in ("step", "kind", "n", "launch_us", "start_us", "end_us", "gap_us", "before_busy_us", "before_op",
                    "before_op_us"):
            c[col] = []
        c["listed"] = 0
    f = next(f for f in ranks.job_view(none)["findings"] if f["id"] == "straggler_rank")
    assert "no collectives" in f["evidence"]["reason"]
    from perfkit.report.ranks import job_lines

    assert any(line.startswith("straggler: unknown (no collectives") for line in job_lines(ranks.job_view(none)))


def test_collective_list_keeps_the_latest_whole_steps_under_the_cap(tmp_path, monkeypatch):
    p = make_trace(tmp_path / "rank0.json", 0, steps=4)
    monkeypatch.setattr(comm, "COLLECTIVES_CAP", 3)
    c = perfkit.analyze(str(p)).to_dict()["communication"]["collectives"]
    assert c["count"] == 4 and c["listed"] == 3 and c["cap"] == 3 and not c["truncated"]
    assert c["step"] == [2, 3, 4] and c["steps"]["id"] == [2, 3, 4] and c["n"] == [0, 0, 0]
    monkeypatch.setattr(comm, "COLLECTIVES_CAP", 0)
    c = perfkit.analyze(str(p)).to_dict()["communication"]["collectives"]
    assert c["listed"] == 0 and c["truncated"]
