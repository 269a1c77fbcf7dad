"""torch.compile on a CPU: compiled graphs get their own category, a matrix-multiply row, short names
and the user code that called them (issue #13, item 4).

The fixture (tests/data/compiled_mlp/) is a real `perfkit profile` run of a compiled MLP. Every
expected figure here is read from the raw trace events by slow reference code, not from perfkit.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections import defaultdict

import pytest
from rich.console import Console

import perfkit
from perfkit.report.console import render_console
from perfkit.report.markdown import render_markdown

from .._reference import cpu_op_self_times

HERE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "compiled_mlp")
TRACE = os.path.join(HERE, "rank0.pt.trace.json.gz")
GRAPH = re.compile(r"^## Call CompiledFxGraph (\w+) ##$")
WRAPPERS = re.compile(r"^(## Call CompiledFxGraph \w+ ##|Torch-Compiled Region: \S+|CompiledFunction(Backward)?|"
                      r"TorchDynamo Cache Lookup|Pregraph bytecode|AOTDispatcher Runtime Wrapper (Prologue|Epilogue))$")


def _events():
    with gzip.open(TRACE) as f:
        return [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]


_self_times = cpu_op_self_times


@pytest.fixture(scope="module")
def doc():
    return perfkit.analyze(TRACE).to_dict()


@pytest.fixture(scope="module")
def kept_ranges(doc):
    steps = {int(e["name"].split("#")[1]): (e["ts"], e["ts"] + e["dur"]) for e in _events()
             if e["name"].startswith("ProfilerStep#")}
    return [steps[i] for i in doc["steps"]["ids"]]


def _in_kept(e, ranges):
    return any(lo <= e["ts"] < hi for lo, hi in ranges)


def test_compiled_code_has_its_own_category(doc, kept_ranges):
    n = len(kept_ranges)
    ref = sum(s for e, s in _self_times(_events()) if WRAPPERS.match(e["name"]) and _in_kept(e, kept_ranges))
    assert ref > 0
    assert doc["categories"]["compiled"]["ms_per_step"] == pytest.approx(ref / 1000 / n, rel=1e-6)
    # the reproducer: most time was 'other' before compiled graphs had a category
    assert doc["categories"]["other"]["share"] < 0.2
    assert not any("category 'other'" in w for w in doc["trace"]["warnings"])


def test_matrix_multiply_row_holds_the_extern_kernels(doc, kept_ranges):
    n = len(kept_ranges)
    mm = sum(s for e, s in _self_times(_events()) if e["name"] in ("aten::mm", "aten::addmm") and _in_kept(e, kept_ranges))
    assert mm > 0
    assert doc["categories"]["matmul"]["ms_per_step"] >= mm / 1000 / n * (1 - 1e-6)
    text = _console(doc)
    assert re.search(r"Matrix multiply\s+\d", text)


def test_compiled_graphs_time_phase_and_region(doc, kept_ranges):
    events = _events()
    n = len(kept_ranges)
    graphs = [e for e in events if GRAPH.match(e["name"]) and _in_kept(e, kept_ranges)]
    bwd = [e for e in events if e["name"] == "CompiledFunctionBackward"]

    def inside(e, outer):
        return any(o["tid"] == e["tid"] and o["ts"] <= e["ts"] and e["ts"] + e["dur"] <= o["ts"] + o["dur"] for o in outer)

    ref = defaultdict(lambda: [0.0, 0, set()])
    for g in graphs:
        r = ref[g["name"]]
        r[0] += g["dur"]  # single thread, nothing overlaps: the ops inside it are its whole duration
        r[1] += 1
        r[2].add("backward" if inside(g, bwd) else "forward")
    rows = {g["name"]: g for g in doc["compiled_graphs"]}
    assert set(rows) == set(ref) and len(rows) == 2
    for name, (dur, calls, phases) in ref.items():
        row = rows[name]
        assert row["ms_per_step"] == pytest.approx(dur / 1000 / n, rel=1e-3)
        assert row["calls_per_step"] == calls / n
        assert {row["phase"]} == phases
        assert row["region"] == "Torch-Compiled Region: 0/0"
        assert row["short_name"] == "CompiledFxGraph " + GRAPH.match(name).group(1)[:8] + "…"
    assert {r["phase"] for r in rows.values()} == {"forward", "backward"}


def test_compiled_graphs_map_to_the_users_function(doc):
    # the stack samples inside the compiled region: the innermost frame of the user's script
    with gzip.open(os.path.join(HERE, "rank0.pt.trace.stacks.json.gz")) as f:
        samples = json.load(f)
    script_frames = {fr for st in samples["stacks"] for fr in st if "compile_mlp.py" in fr}
    assert any("forward" in fr for fr in script_frames)
    for g in doc["compiled_graphs"]:
        assert g["source"] is not None and g["source_basis"] == "sampled"
        assert re.fullmatch(r"compile_mlp\.py:\d+ forward", g["source"]), g["source"]
        line = int(g["source"].split(":")[1].split()[0])
        # the line is the one the samples saw in forward (Dynamo runs the graph in forward's frame)
        assert any(f"compile_mlp.py({line}): forward" in fr for fr in script_frames)


def test_inductor_generated_files_are_not_user_code(doc):
    sources = [r.get("source") for key in ("top_ops", "frames", "compiled_graphs") for r in doc[key]]
    assert sources and not any(s and "torchinductor" in s for s in sources)
    assert any(s and s.startswith("compile_mlp.py:") for s in sources)


def _console(doc, width=80):
    import io

    buf = io.StringIO()
    render_console(doc, Console(file=buf, width=width, force_terminal=False, color_system=None))
    return buf.getvalue()


def test_names_short_at_80_columns_full_in_json(doc):
    text = _console(doc)
    assert "## Call CompiledFxGraph" not in text and "CompiledFxGraph " in text
    assert all(len(line) <= 80 for line in text.splitlines())
    for section in ("Top ops by CPU time", "Compiled graphs (torch.compile"):
        body = text.split(section, 1)[1].split("\n\n", 1)[0]
        for line in body.splitlines():
            if "CompiledFxGraph" in line:  # one row, not wrapped over several lines
                assert re.search(r"CompiledFxGraph \w{8}…", line)
    assert any(GRAPH.match(g["name"]) for g in doc["compiled_graphs"])  # the full name stays in the document
    md = render_markdown(doc)
    assert "## Call CompiledFxGraph" not in md and "### Compiled graphs" in md


def test_unknown_user_code_without_stacks(doc, tmp_path):
    # the same trace without its stack samples: nothing says which user code called the graphs
    import shutil

    path = tmp_path / "rank0.pt.trace.json.gz"
    shutil.copy(TRACE, path)
    d = perfkit.analyze(str(path)).to_dict()
    assert d["compiled_graphs"] and all(g["source"] is None for g in d["compiled_graphs"])
    section = _console(d).split("Compiled graphs (torch.compile", 1)[1].split("\n\n", 1)[0]
    assert sum(line.strip() == "unknown" for line in section.splitlines()) == len(d["compiled_graphs"])
