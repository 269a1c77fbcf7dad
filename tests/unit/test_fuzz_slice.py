"""The deterministic slice of the fuzzer (scripts/fuzz_perfkit.py) that runs in CI.

Mutated real traces (tests/data/traces) through ``perfkit analyze --json`` and
``perfkit.analyze()``, corrupted analysis documents and budget files through merge, diff,
report, budget init and budget check, and hypothesis-generated synthetic traces. Fixed
seeds; every case runs in this process. What each case must satisfy (issue #12):

* no exception but PerfkitError escapes ``perfkit.analyze``;
* ``perfkit.cli.main`` returns 0, 1 or 2 and raises nothing;
* on exit 2, stderr is one line, ``perfkit: error: ...``, naming the bad file;
* any JSON document written parses with no NaN/Infinity token and no number that
  overflows to infinity; a budget check that passes shows no nan/inf value.

Each test runs all its cases and then fails once, listing the distinct failures (exception
type and innermost perfkit frame, or the kind of bad message) with one case each.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import perfkit
from perfkit.errors import PerfkitError

from .. import _mutate as mu

DATA = Path(__file__).resolve().parent.parent / "data" / "traces"
#: (slug, file, analyze cases, api cases): two small traces without steps, one with a ProfilerStep
SOURCES = [
    ("simple-add", DATA / "nv-a100-simple-add-bench" / "benchmark_simple_add_trace.json.gz", 60, 40),
    ("compile-triton", DATA / "amd-mi300x-compile-triton" / "trace.json.gz", 60, 40),
    ("bert-small-step", DATA / "nv-h100-bert-small-infer" / "gaunernst_bert-small-uncased__1016001.json.gz", 30, 20),
]
DOC_CASES_PER_COMMAND = 12
#: The fast loop runs the first cases of each source and command (the same seeds, so the same cases);
#: test_fuzz_slice_full.py (marked slow) runs all of them.
FAST_CASES = 3
FAST_DOC_CASES = 2
FAST_HTML_DOC_CASES = 1  #: report-html renders a page with figures per case: the costliest command
SYNTHETIC_EXAMPLES = 60  #: hypothesis examples of test_synthetic_traces_api in tests/e2e
FAST_SYNTHETIC_EXAMPLES = 20  #: and here
SEED = 12
_NAN_VALUE = re.compile(r"(?<![\w.@])[-+]?(nan|inf|infinity)(?![\w])", re.IGNORECASE)


class Failures:
    """Failures grouped by signature, one example case each."""

    def __init__(self) -> None:
        self.groups: dict[str, list[str]] = defaultdict(list)
        self.cases = 0

    def add(self, signature: str, case: str) -> None:
        self.groups[signature].append(case)

    def check(self) -> None:
        if not self.groups:
            return
        lines = [f"{sum(len(v) for v in self.groups.values())} of {self.cases} cases failed, "
                 f"{len(self.groups)} distinct failures:"]
        for sig, cases in sorted(self.groups.items(), key=lambda kv: -len(kv[1])):
            lines.append(f"  [{len(cases)}x] {sig}\n      e.g. {cases[0]}")
        pytest.fail("\n".join(lines), pytrace=False)


def _source(path: Path) -> mu.TraceDoc:
    with gzip.open(path, "rb") as f:
        return mu.TraceDoc.parse(f.read().decode("utf-8"))


def _write_case(tmp: Path, n: int, case: mu.Case) -> Path:
    path = tmp / f"case-{n:04d}{case.suffix}"
    path.write_bytes(case.data)
    return path


def check_cli(argv: list[str], bad_file: Path, json_outputs: list[Path], failures: Failures, what: str,
              budget_check: bool = False) -> None:
    """Run the command line in-process and record whatever breaks the promises above."""
    for p in json_outputs:
        if p.exists():
            p.unlink()
    rc, exc, stdout, stderr = mu.run_cli(argv)
    if exc is not None:
        failures.add(f"{mu.exception_signature(exc)}", f"{what}: {type(exc).__name__}: {str(exc)[:150]}")
        return
    if rc not in (0, 1, 2):
        failures.add(f"exit code {rc}", what)
        return
    if rc == 2:
        problem = mu.error_line_problem(stderr, [bad_file.name])
        if problem:
            first = re.sub(r"\d+", "N", (stderr.strip().splitlines() or [""])[-1].replace(str(bad_file), "FILE"))[:100]
            failures.add(f"exit 2, {problem}: {first}", f"{what}: {stderr.strip()[:300]!r}")
    for p in json_outputs:
        if not p.exists():
            continue
        try:
            mu.load_strict_json(p.read_text(encoding="utf-8"))
        except mu.NonFinite:
            where = mu.nonfinite_paths(json.loads(p.read_text(encoding="utf-8")))
            failures.add(f"NaN/inf in the JSON document at {', '.join(where[:3])}", what)
        except (ValueError, UnicodeDecodeError) as e:
            failures.add(f"JSON document written does not parse (exit {rc})", f"{what}: {str(e)[:100]}")
    if budget_check and rc == 0:
        shown = [ln for ln in stdout.splitlines() if _NAN_VALUE.search(ln)]
        if shown:
            failures.add("budget check passes with a nan/inf value", f"{what}: {shown[0].strip()}")


def check_api(path: Path, failures: Failures, what: str) -> None:
    try:
        doc = perfkit.analyze(str(path)).to_dict()
    except PerfkitError as e:
        msg = str(e)
        if "\n" in msg.strip():
            failures.add("PerfkitError message of several lines", f"{what}: {msg[:200]!r}")
        elif path.name not in msg:
            failures.add(f"PerfkitError names no file: {re.sub(r'[0-9]+', 'N', msg)[:100]}", what)
        return
    except Exception as e:  # noqa: BLE001  (the finding)
        failures.add(mu.exception_signature(e), f"{what}: {type(e).__name__}: {str(e)[:150]}")
        return
    where = mu.nonfinite_paths(doc)
    if where:
        failures.add(f"NaN/inf in to_dict() at {', '.join(where[:3])}", what)
        return
    try:
        json.dumps(doc, allow_nan=False)
    except (TypeError, ValueError) as e:
        failures.add(f"to_dict() is not JSON: {type(e).__name__}", f"{what}: {str(e)[:100]}")


# --------------------------------------------------------------------- mutated real traces


@pytest.mark.parametrize("slug,path,n_cli,n_api", SOURCES, ids=[s[0] for s in SOURCES])
def test_mutated_traces_cli(slug: str, path: Path, n_cli: int, n_api: int, tmp_path: Path) -> None:
    mutated_traces_cli(slug, path, min(n_cli, FAST_CASES), tmp_path)


def mutated_traces_cli(slug: str, path: Path, n_cli: int, tmp_path: Path) -> None:
    source = _source(path)
    rng = random.Random(f"{SEED}-cli-{slug}")
    failures = Failures()
    out = tmp_path / "analysis.json"
    for n in range(n_cli):
        case = mu.mutate_trace(source, rng, max_string_bytes=65536)
        bad = _write_case(tmp_path, n, case)
        check_cli(["analyze", str(bad), "--json", str(out)], bad, [out], failures,
                  f"case {n} ({case.description})")
        bad.unlink()
        failures.cases += 1
    failures.check()


@pytest.mark.parametrize("slug,path,n_cli,n_api", SOURCES, ids=[s[0] for s in SOURCES])
def test_mutated_traces_api(slug: str, path: Path, n_cli: int, n_api: int, tmp_path: Path) -> None:
    mutated_traces_api(slug, path, min(n_api, FAST_CASES), tmp_path)


def mutated_traces_api(slug: str, path: Path, n_api: int, tmp_path: Path) -> None:
    source = _source(path)
    rng = random.Random(f"{SEED}-api-{slug}")
    failures = Failures()
    for n in range(n_api):
        case = mu.mutate_trace(source, rng, max_string_bytes=65536)
        bad = _write_case(tmp_path, n, case)
        check_api(bad, failures, f"case {n} ({case.description})")
        bad.unlink()
        failures.cases += 1
    failures.check()


# --------------------------------------------------------------------- corrupted documents and budgets


@pytest.fixture(scope="module")
def doc_sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("docs-base")
    return mu.make_document_sources(str(DATA / "amd-mi300x-compile-triton" / "trace.json.gz"), str(base))


def test_document_sources_are_accepted(doc_sources: dict[str, Any], tmp_path: Path) -> None:
    """The uncorrupted documents pass every command (so a failure below is the corruption's)."""
    for command in mu.DOC_COMMANDS:
        good = doc_sources["budget"] if command == "budget-bad-toml" else doc_sources["rank1"]
        spec = mu.doc_command(command, good, doc_sources, str(tmp_path))
        rc, exc, _, stderr = mu.run_cli(spec["argv"])
        assert exc is None and rc == 0, (command, rc, exc, stderr)


@pytest.mark.parametrize("command", mu.DOC_COMMANDS)
def test_corrupted_documents(command: str, doc_sources: dict[str, Any], tmp_path: Path) -> None:
    corrupted_documents(command, doc_sources, FAST_HTML_DOC_CASES if command == "report-html" else FAST_DOC_CASES,
                        tmp_path)


def corrupted_documents(command: str, doc_sources: dict[str, Any], n_cases: int, tmp_path: Path) -> None:
    rng = random.Random(f"{SEED}-docs-{command}")
    failures = Failures()
    for n in range(n_cases):
        if command == "budget-bad-toml":
            data, desc = mu.mutate_budget(doc_sources["budget_text"], rng)
            bad = tmp_path / f"case-{n:04d}.toml"
        else:
            data, desc = mu.mutate_document(doc_sources["doc1"], rng)
            bad = tmp_path / f"case-{n:04d}.analysis.json"
        bad.write_bytes(data)
        spec = mu.doc_command(command, str(bad), doc_sources, str(tmp_path / "out"))
        os.makedirs(tmp_path / "out", exist_ok=True)
        check_cli(spec["argv"], bad, [Path(p) for p in spec["json_outputs"]], failures,
                  f"case {n} ({desc[:200]})", budget_check=spec["budget_check"])
        failures.cases += 1
    failures.check()


# --------------------------------------------------------------------- synthetic traces (hypothesis)

_numbers = st.one_of(
    st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, -1, 1.5, 1e18, 1e308, 2 ** 63, -(2 ** 63) - 1]),
)
_scalars = st.one_of(_numbers, st.text(max_size=8), st.none(), st.booleans())
_values = st.one_of(_scalars, st.lists(_scalars, max_size=2), st.dictionaries(st.text(max_size=3), _scalars, max_size=2))
_event = st.fixed_dictionaries(
    {
        "ph": st.sampled_from(["X", "X", "X", "i", "s", "f", "M", "C", "B", "E", ""]),
        "name": st.one_of(st.sampled_from(["ProfilerStep#1", "aten::mm", "cudaLaunchKernel", "void gemm<>",
                                           "nccl:all_reduce", "Optimizer.step#SGD.step", "ncclKernel_AllReduce"]),
                          _values),
        "cat": st.one_of(st.sampled_from(["kernel", "cpu_op", "cuda_runtime", "user_annotation",
                                          "gpu_user_annotation", "gpu_memcpy", "ac2g", "python_function"]), _values),
        "ts": _numbers,
    },
    optional={
        "dur": _numbers,
        "pid": st.one_of(st.integers(-2, 3), _values),
        "tid": st.one_of(st.integers(-2, 3), _values),
        "id": _values,
        "args": st.one_of(
            st.fixed_dictionaries({}, optional={"correlation": st.one_of(st.integers(0, 5), _values),
                                                "External id": st.one_of(st.integers(0, 5), _values),
                                                "device": st.one_of(st.integers(0, 2), _values),
                                                "stream": st.one_of(st.integers(0, 9), _values)}),
            _values),
    },
)


def synthetic_settings(max_examples: int) -> settings:
    return settings(derandomize=True, max_examples=max_examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


SYNTHETIC = given(events=st.lists(_event, max_size=25),
                  extra=st.sampled_from([None, "distributedInfo", "deviceProperties"]))


@synthetic_settings(FAST_SYNTHETIC_EXAMPLES)
@SYNTHETIC
def test_synthetic_traces_api(events: list[dict[str, Any]], extra: Optional[str], tmp_path: Path) -> None:
    synthetic_trace_api(events, extra, tmp_path)


test_synthetic_traces_api.split_examples = (FAST_SYNTHETIC_EXAMPLES, SYNTHETIC_EXAMPLES)  # type: ignore[attr-defined]


def synthetic_trace_api(events: list[dict[str, Any]], extra: Optional[str], tmp_path: Path) -> None:
    doc: dict[str, Any] = {"schemaVersion": 1, "traceEvents": events}
    if extra == "distributedInfo":
        doc[extra] = {"rank": events[0].get("pid") if events else "x", "world_size": 2}
    elif extra == "deviceProperties":
        doc[extra] = [{"id": events[0].get("tid") if events else None, "name": 3}]
    path = tmp_path / "synthetic.pt.trace.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    failures = Failures()
    check_api(path, failures, f"{len(events)} events: {json.dumps(events)[:400]}")
    failures.cases = 1
    failures.check()
