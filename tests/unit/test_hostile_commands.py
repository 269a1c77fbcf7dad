"""Hostile input to the document commands (report, diff, merge, budget check/init, view): never a traceback.

Every bad input ends in exit 0/1 with a result (and a warning when part of a document was dropped) or in
exit 2 with one line per problem naming the file; the last-resort handler (exit 3) is never what answers.
The generated part corrupts real analysis documents from ``traces/`` (fixed seed, bounded examples).
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perfkit.budget.spec import parse_budget
from perfkit.cli import main

REPO = Path(__file__).resolve().parents[2]
SINGLE = REPO / "traces" / "example_gpt_h100" / "analysis.json"
RANK0 = REPO / "traces" / "ddp_gpt_2xh200" / "balanced" / "rank0.analysis.json"
RANK1 = REPO / "traces" / "ddp_gpt_2xh200" / "balanced" / "rank1.analysis.json"
JOB = REPO / "traces" / "ddp_gpt_2xh200" / "balanced" / "analysis.json"
SOURCES = [SINGLE, RANK0, RANK1, JOB]
DOCS = [json.loads(p.read_text()) for p in SOURCES]


def run(capsys, *argv):
    """(exit code, stdout, stderr) of ``perfkit argv`` in-process."""
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("perfkit: error:")]


def assert_clean(rc: int, err: str, *files) -> None:
    """No traceback, no internal error; exit 2 means error lines only, each naming one of ``files``."""
    assert "Traceback" not in err and "internal error" not in err, err
    assert rc in (0, 1, 2), (rc, err)
    if rc == 2:
        lines = error_lines(err)
        assert lines, err
        other = [l for l in err.splitlines() if l.strip() and not l.startswith(("perfkit: error:", "perfkit: warning:"))]
        assert not other, err  # nothing but one-line errors and warnings
        for line in lines:
            assert any(str(f) in line for f in files), (line, files)


def assert_one_error(rc: int, err: str, *needles) -> str:
    assert rc == 2, (rc, err)
    assert "Traceback" not in err
    lines = error_lines(err)
    assert len(lines) == 1, err
    assert all(l.startswith(("perfkit: error:", "perfkit: warning:")) for l in err.splitlines() if l.strip()), err
    for n in needles:
        assert str(n) in lines[0], (n, lines[0])
    return lines[0]


def write(path: Path, doc) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


BUDGET = "[budget]\nstep_ms = { max = 1e9 }\ngpu_idle_share = { max = 1.0, optional = true }\nfindings.critical = 100\n"


# --------------------------------------------------------------------------- generated corruptions


def _paths(obj, prefix=()):
    """Every path into ``obj`` (lists: their first 3 items), shallow ones first."""
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:3]):
            out += _paths(v, prefix + (i,))
    return out


PATHS = [[p for p in _paths(d) if p] for d in DOCS]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(st.text(max_size=3), inner, max_size=3)),
                      max_leaves=6)


def _mutate(doc, data):
    """Replace, delete or re-type a few fields of a copy of ``doc``."""
    doc = copy.deepcopy(doc)
    paths = PATHS[data["source"]]
    for idx, op, value in data["edits"]:
        path = paths[idx % len(paths)]
        parent = doc
        try:
            for k in path[:-1]:
                parent = parent[k]
            if op == "delete" and isinstance(parent, dict):
                parent.pop(path[-1], None)
            elif op == "wrap":
                parent[path[-1]] = [parent[path[-1]]]
            else:
                parent[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            pass  # an earlier edit removed or re-typed the way there
    return doc


def _bytes_of(doc, data) -> bytes:
    raw = json.dumps(doc).encode()  # NaN and Infinity literals included, as Python writes them
    cut, flips = data["bytes"]
    if cut is not None:
        raw = raw[: cut % (len(raw) + 1)]
    raw = bytearray(raw)
    for pos, byte in flips:
        if raw:
            raw[pos % len(raw)] = byte
    return bytes(raw)


corruption = st.fixed_dictionaries({
    "source": st.sampled_from(range(len(DOCS))),
    "edits": st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["set", "set", "delete", "wrap"]), values),
                      min_size=1, max_size=4),
    "bytes": st.one_of(st.just((None, [])), st.tuples(st.one_of(st.none(), st.integers(0, 10**6)),
                                                       st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                                                max_size=2))),
    "command": st.sampled_from(["report", "diff_a", "diff_b", "merge", "budget_check", "budget_init",
                                "markdown", "diff_json"]),
})


@settings(max_examples=20, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=corruption)
def test_corrupted_documents_never_crash(tmp_path, capsys, data):
    """A corrupted analysis.json through every command: a result (maybe with a warning) or one line, exit 2.
    20 generated cases here; test_hostile_commands_full.py (marked slow) runs 80."""
    check_corrupted_document(tmp_path, capsys, data)


def check_corrupted_document(tmp_path, capsys, data):
    doc = _mutate(DOCS[data["source"]], data)
    f = tmp_path / "rank1.analysis.json"
    f.write_bytes(_bytes_of(doc, data))
    budget = tmp_path / "b.toml"
    budget.write_text(BUDGET)
    out = tmp_path / "out"
    cmd = data["command"]
    partner = RANK0 if data["source"] != 1 else RANK1
    argv = {
        "report": ["report", f],
        "diff_a": ["diff", f, SINGLE],
        "diff_b": ["diff", SINGLE, f],
        "diff_json": ["diff", f, RANK0, "--json", out],
        "merge": ["merge", "-q", f, partner, "--json", out],
        "markdown": ["merge", f, partner, "--markdown", out] if data["source"] in (1, 2)
        else ["report", f, "--html", out],
        "budget_check": ["budget", "check", budget, f],
        "budget_init": ["budget", "init", f, "--out", out, "--force"],
    }[cmd]
    rc, _, err = run(capsys, *argv)
    assert_clean(rc, err, f, partner if cmd in ("merge", "markdown") else f)
    if rc == 0 and cmd in ("diff_json", "merge"):
        text = out.read_text()
        json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the JSON output"))
    if rc == 0 and cmd == "budget_init":
        parse_budget(out.read_text(), str(out))  # budget check accepts what budget init writes
        rc2, _, err2 = run(capsys, "budget", "check", out, f)
        assert rc2 in (0, 1, 2) and "Traceback" not in err2 and "internal error" not in err2


# --------------------------------------------------------------------------- files that are not documents


BAD_FILES = {
    "missing": None,
    "empty": b"",
    "whitespace": b"  \n",
    "not_json": b"{not json",
    "not_utf8": b'{"schema": "perfkit.analysis/1", "x": "\xff\xfe"}',
    "list": b"[1, 2, 3]",
    "string": b'"perfkit.analysis/1"',
    "no_schema": b'{"steps": {"count": 3}}',
    "schema_v3": b'{"schema": "perfkit.analysis/3", "steps": {"count": 3}}',
    "schema_number": b'{"schema": 1}',
    "diff_doc": b'{"schema": "perfkit.diff/2", "a": {}, "b": {}}',
    "deep_json": b"[" * 200000 + b"]" * 200000,
    "deep_object": b'{"schema": "perfkit.analysis/1", "trace": ' + b'{"a":' * 100000 + b"1" + b"}" * 100001,
    "steps_string": b'{"schema": "perfkit.analysis/1", "steps": "many"}',
}


def _bad_file(tmp_path: Path, kind: str) -> Path:
    f = tmp_path / "bad" / "analysis.json"
    f.parent.mkdir(exist_ok=True)
    if BAD_FILES[kind] is not None:
        f.write_bytes(BAD_FILES[kind])
    return f


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_files_are_one_line_naming_the_file(tmp_path, capsys, kind):
    f = _bad_file(tmp_path, kind)
    budget = tmp_path / "b.toml"
    budget.write_text(BUDGET)
    for argv in (["report", f], ["diff", f, SINGLE], ["diff", SINGLE, f], ["merge", f, RANK0],
                 ["budget", "check", budget, f], ["budget", "check", budget, SINGLE, "--baseline", f],
                 ["budget", "init", f], ["view", f, "--perfetto"]):
        rc, _, err = run(capsys, *argv)
        if kind == "steps_string" and argv[0] in ("report", "diff", "view", "budget") and argv[1] != "init":
            # only the steps section is wrong: dropped with a warning, the rest is used (budget check then
            # finds no step_ms: fails closed, naming the file)
            assert "perfkit: warning:" in err and str(f) in err
            assert_clean(rc, err, f)
            continue
        if kind == "steps_string" and argv[:2] == ["budget", "init"]:
            assert rc == 0 and "perfkit: warning:" in err
            continue
        line = assert_one_error(rc, err, f)
        if kind == "schema_v3":
            assert "perfkit.analysis/3" in line and "perfkit.analysis/2" in line
        if kind == "diff_doc":
            assert "perfkit.diff/2" in line


def test_other_schema_never_diffed_as_zeros(tmp_path, capsys):
    """Reproducer: a perfkit.analysis/3 document was diffed as "every op dropped to 0.00 ms"."""
    doc = copy.deepcopy(DOCS[0])
    doc["schema"] = "perfkit.analysis/3"
    f = write(tmp_path / "analysis.json", doc)
    rc, out, err = run(capsys, "diff", SINGLE, f)
    assert_one_error(rc, err, f, "perfkit.analysis/3", "perfkit.analysis/2")
    assert "0.00" not in out
    # ... and is never a budget baseline
    budget = tmp_path / "rel.toml"
    budget.write_text('[budget.relative]\nstep_ms = "+5%"\n')
    rc, _, err = run(capsys, "budget", "check", budget, SINGLE, "--baseline", f)
    assert_one_error(rc, err, f, "perfkit.analysis/3")


# --------------------------------------------------------------------------- budget check fails closed


def _with(doc, **changes):
    doc = copy.deepcopy(doc)
    for dotted, v in changes.items():
        cur = doc
        *head, last = dotted.split("__")
        for k in head:
            cur = cur.setdefault(k, {})
        cur[last] = v
    return doc


def _nan_doc_file(tmp_path, name, **changes) -> Path:
    doc = _with(DOCS[0], **changes)
    doc.pop("runtime", None)  # the step time then comes from the trace analysis alone
    f = tmp_path / name
    f.write_text(json.dumps(doc))  # Python writes NaN / Infinity literals, as a buggy writer would
    return f


def test_budget_nan_step_time_is_an_error_not_a_pass(tmp_path, capsys):
    """Reproducer: ``PASS step_ms nan ms <= 1.00 ms``, exit 0."""
    f = _nan_doc_file(tmp_path, "analysis.json", steps__wall_ms_median=math.nan, steps__gpu_ms_median=math.nan)
    budget = tmp_path / "b.toml"
    budget.write_text("[budget]\nstep_ms = 1\n")
    rc, out, err = run(capsys, "budget", "check", budget, f)
    line = assert_one_error(rc, err, f, "step_ms", "optional")
    assert "PASS" not in out


def test_budget_infinite_idle_share_is_an_error(tmp_path, capsys):
    """Reproducer: ``gpu_idle_share = inf`` passed a 90% limit."""
    f = _nan_doc_file(tmp_path, "analysis.json", gpu__utilization=-math.inf)
    budget = tmp_path / "b.toml"
    budget.write_text('[budget]\ngpu_idle_share = "90%"\n')
    rc, out, err = run(capsys, "budget", "check", budget, f)
    assert_one_error(rc, err, f, "gpu_idle_share")


def test_budget_one_line_per_missing_metric(tmp_path, capsys):
    f = _nan_doc_file(tmp_path, "analysis.json", gpu__utilization=math.nan, steps__wall_ms_median=None,
                      steps__gpu_ms_median=None)
    budget = tmp_path / "b.toml"
    budget.write_text("[budget]\nstep_ms = 100\ngpu_idle_share = 0.5\nmfu = 0.1\n")
    rc, _, err = run(capsys, "budget", "check", budget, f)
    assert rc == 2 and "Traceback" not in err
    lines = error_lines(err)
    assert [k for k in ("step_ms", "gpu_idle_share", "mfu") if any(f" {k} " in l for l in lines)] == \
        ["step_ms", "gpu_idle_share", "mfu"]
    assert len(lines) == 3 and all(str(f) in l for l in lines)


def test_budget_optional_limit_is_skipped_when_unknown(tmp_path, capsys):
    f = _nan_doc_file(tmp_path, "analysis.json", gpu__utilization=math.nan)
    budget = tmp_path / "b.toml"
    budget.write_text("[budget]\nmfu = { min = 0.3, optional = true }\ngpu_idle_share = { max = 0.5, optional = true }\n"
                      "findings.critical = 100\n")
    junit = tmp_path / "j.xml"
    rc, out, err = run(capsys, "budget", "check", budget, f, "--junit", junit)
    assert rc == 0 and "SKIP" in out and "Traceback" not in err
    assert 'skipped="2"' in junit.read_text()


@pytest.mark.parametrize("limit, key", [
    ("step_ms = -5", "budget.step_ms"),
    ("step_ms = { max = -1 }", "budget.step_ms.max"),
    ("step_ms = { min = 20, max = 10 }", "budget.step_ms"),
    ('peak_memory_bytes = "1e400 GiB"', "budget.peak_memory_bytes"),
    ("step_ms = 1e400", "budget.step_ms"),
    ("step_ms = inf", "budget.step_ms"),
    ("step_ms = nan", "budget.step_ms"),
    ('step_ms = "fast"', "budget.step_ms"),
    ("step_ms = [1, [2]]", "budget.step_ms"),
    ("step_ms = { max = true }", "budget.step_ms.max"),
    ("gpu_idle_share = 1.5", "budget.gpu_idle_share"),
    ('gpu_idle_share = "-5%"', "budget.gpu_idle_share"),
    ("step_ms = { max = 10, optional = \"yes\" }", "budget.step_ms.optional"),
    ("step_ms = { max = 10, severity = 3 }", "budget.step_ms.severity"),
    ("findings.critical = -1", "budget.findings.critical"),
])
def test_nonsense_limits_are_refused_naming_the_key(tmp_path, capsys, limit, key):
    budget = tmp_path / "b.toml"
    budget.write_text(f"[budget]\n{limit}\n")
    rc, _, err = run(capsys, "budget", "check", budget, SINGLE)
    assert_one_error(rc, err, budget, f"'{key}'")


@pytest.mark.parametrize("text", [
    'step_ms = "+1' + "0" * 400 + '%"',
    "a = " + "[" * 50000 + "]" * 50000,
    "a = " + "{b = " * 5000 + "1" + "}" * 5000,
])
def test_budget_file_nonsense_relative_and_deep_toml(tmp_path, capsys, text):
    budget = tmp_path / "b.toml"
    budget.write_text(("[budget.relative]\n" if text.startswith("step_ms") else "") + text + "\n")
    rc, _, err = run(capsys, "budget", "check", budget, SINGLE, "--baseline", SINGLE)
    assert_one_error(rc, err, budget)


@pytest.mark.parametrize("kind", ["missing", "folder", "fifo", "empty", "not_utf8"])
def test_budget_file_not_readable(tmp_path, capsys, kind):
    budget = tmp_path / "b.toml"
    if kind == "folder":
        budget.mkdir()
    elif kind == "fifo":
        os.mkfifo(budget)
    elif kind == "empty":
        budget.write_text("")
    elif kind == "not_utf8":
        budget.write_bytes(b"[budget]\nstep_ms = \xff\n")
    rc, _, err = run(capsys, "budget", "check", budget, SINGLE)
    assert_one_error(rc, err, budget)


def test_budget_init_never_writes_a_limit_check_refuses(tmp_path, capsys):
    """Reproducer: ``budget init`` wrote ``-inf`` for a metric the baseline did not have."""
    doc = _with(DOCS[0], gpu__utilization=1.7, steps__wall_ms_median=-3.0, steps__gpu_ms_median=None)
    doc["runtime"] = {"mfu": math.inf, "memory": {"peak_bytes": -5}}
    f = tmp_path / "analysis.json"
    f.write_text(json.dumps(doc))
    out = tmp_path / "budget.toml"
    rc, _, err = run(capsys, "budget", "init", f, "--out", out)
    assert rc == 0, err
    text = out.read_text()
    assert "inf" not in text.replace("info", "") and "nan" not in text
    parse_budget(text, str(out))  # accepted as it is
    assert "no limit written" in text and "not measured in this run" in text


def test_budget_relative_against_zero_baseline_is_unknown_not_inf(tmp_path, capsys):
    a = write(tmp_path / "a.analysis.json", _with(DOCS[0], phases__optimizer__gpu_ms_per_step=0.0))
    b = write(tmp_path / "b.analysis.json", _with(DOCS[0], phases__optimizer__gpu_ms_per_step=2.0))
    budget = tmp_path / "b.toml"
    budget.write_text('[budget.relative]\nphases.optimizer.ms = "+5%"\n')
    junit = tmp_path / "j.xml"
    rc, out, err = run(capsys, "budget", "check", budget, b, "--baseline", a, "--junit", junit)
    assert rc == 1 and "inf" not in out and "nan" not in out.lower()


# --------------------------------------------------------------------------- NaN/inf never reach a document


def test_diff_of_extreme_values_writes_no_nan_or_inf(tmp_path, capsys):
    a = write(tmp_path / "a.analysis.json", _with(DOCS[0], steps__gpu_ms_median=-1e308, gpu__busy_ms_per_step=0.0))
    b = write(tmp_path / "b.analysis.json", _with(DOCS[0], steps__gpu_ms_median=1e308, gpu__busy_ms_per_step=3.0))
    out = tmp_path / "d.json"
    rc, text, err = run(capsys, "diff", a, b, "--json", out)
    assert rc == 0, err
    d = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(c))
    assert d["step"]["window_ms_median"]["delta"] is None  # 1e308 - (-1e308) overflows: unknown
    assert d["step"]["busy_ms_per_step"]["ratio"] is None  # a zero denominator: unknown
    assert "inf" not in text and "nan" not in text.lower()


def test_nan_in_a_document_is_read_as_unknown_with_a_warning(tmp_path, capsys):
    f = tmp_path / "analysis.json"
    f.write_text(json.dumps(_with(DOCS[0], gpu__busy_ms_per_step=math.nan)))
    out = tmp_path / "d.json"
    rc, _, err = run(capsys, "diff", f, SINGLE, "--json", out)
    assert rc == 0 and "perfkit: warning:" in err and "device.busy_ms_per_step" in err and str(f) in err
    assert json.loads(out.read_text())["step"]["busy_ms_per_step"]["a"] is None


def test_write_json_never_crashes_on_nan(tmp_path, capsys):
    from perfkit.report import write_json

    out = tmp_path / "x.json"
    write_json({"a": [1.0, math.nan], "b": {"c": math.inf}}, out)
    assert json.loads(out.read_text()) == {"a": [1.0, None], "b": {"c": None}}
    assert "2 number(s) not finite" in capsys.readouterr().err


# --------------------------------------------------------------------------- output paths


def _outputs(tmp_path):
    budget = tmp_path / "b.toml"
    budget.write_text(BUDGET)
    return [
        lambda o: ["diff", SINGLE, SINGLE, "--json", o],
        lambda o: ["diff", SINGLE, SINGLE, "--markdown", o],
        lambda o: ["report", SINGLE, "--html", o],
        lambda o: ["merge", "-q", RANK0, RANK1, "--json", o],
        lambda o: ["merge", "-q", RANK0, RANK1, "--markdown", o],
        lambda o: ["budget", "check", budget, SINGLE, "--junit", o],
        lambda o: ["budget", "init", SINGLE, "--out", o],
    ]


@pytest.mark.parametrize("where", ["folder", "missing_folder", "under_a_file"])
def test_output_paths_fail_first_with_one_line(tmp_path, capsys, where):
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    target = {"folder": tmp_path, "missing_folder": tmp_path / "nope" / "out.x",
              "under_a_file": a_file / "out.x"}[where]
    for make in _outputs(tmp_path):
        rc, out, err = run(capsys, *make(target))
        assert_one_error(rc, err, target)
        assert out == ""  # refused before any work was shown


def test_plots_dir_that_is_a_file(tmp_path, capsys):
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    for target in (a_file, a_file / "sub"):
        rc, _, err = run(capsys, "report", SINGLE, "--plots", target)
        assert_one_error(rc, err, target)


# --------------------------------------------------------------------------- merge specifics and the safety net


def test_merge_rank_document_with_misaligned_collectives(tmp_path, capsys):
    """Reproducer class: IndexError in the arrivals matching on a corrupted collectives column."""
    doc = copy.deepcopy(DOCS[2])
    coll = doc["communication"]["collectives"]
    coll["kind"] = [len(coll["kinds"]) + 5] * len(coll["kind"])
    f = write(tmp_path / "rank1.analysis.json", doc)
    rc, _, err = run(capsys, "merge", "-q", RANK0, f)
    assert rc == 0 and "communication.collectives" in err and str(f) in err  # dropped with a warning


def test_merge_same_rank_twice_names_the_file(tmp_path, capsys):
    f = write(tmp_path / "copy.analysis.json", DOCS[1])
    rc, _, err = run(capsys, "merge", "-q", RANK0, f)
    assert_one_error(rc, err, f, "rank 0")


def test_internal_error_is_one_line_and_exit_3(tmp_path, capsys, monkeypatch):
    import perfkit.analysis.diff as diff_mod

    def boom(*a, **k):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(diff_mod, "diff", boom)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    rc, _, err = run(capsys, "diff", SINGLE, SINGLE)
    assert rc == 3 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perfkit: internal error: ZeroDivisionError: simulated bug")
    saved = [p for p in tmp_path.iterdir() if p.name.startswith("perfkit-traceback-")]
    assert len(saved) == 1 and "Traceback" in saved[0].read_text() and str(saved[0]) in lines[0]
