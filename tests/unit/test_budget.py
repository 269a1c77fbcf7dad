"""perfkit budget: the file format, the check (absolute, relative, noise), its outputs, and budget init."""

from __future__ import annotations

import copy
import itertools
import json
import math
import statistics
import xml.etree.ElementTree as ET
from math import comb

import numpy as np
import pytest

from perfkit.documents import load_analysis
from perfkit.budget.check import evaluate, load_runs
from perfkit.budget.init import starting_budget
from perfkit.budget.metrics import step_samples, value
from perfkit.budget.spec import load_budget, parse_budget
from perfkit.budget.stats import mann_whitney_u, rank_data, u_distribution
from perfkit.cli import EXIT_BUDGET, EXIT_INPUT, EXIT_OK, main

from ..conftest import REPO, TRACES

EXAMPLE = TRACES / "example_gpt_h100"  # a perfkit profile run directory (analysis.json with a runtime section)
SYNC = TRACES / "pathologies_h100" / "sync_selection"  # .tolist()/.item() per block: ~180 ms per step
SYNC_FIXED = TRACES / "pathologies_h100" / "sync_selection-fixed"  # the fix: ~9 ms per step


@pytest.fixture(autouse=True)
def _not_in_github(monkeypatch):
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


def write(tmp_path, text: str, name: str = "budget.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def example_doc() -> dict:
    return load_analysis(str(EXAMPLE / "analysis.json"))  # schema 1 on disk: read as schema 2


def make_run(tmp_path, name: str, wall_ms: list[float], **runtime: object) -> str:
    """A run directory: the example run with the given per-step wall times (all steady)."""
    doc = copy.deepcopy(example_doc())
    steps = doc["runtime"]["steps"]
    steps.update(wall_ms=list(wall_ms), count=len(wall_ms), steady_from_step=0,
                 wall_ms_median=statistics.median(wall_ms))
    doc["runtime"].update(runtime)
    run = tmp_path / name
    run.mkdir(parents=True)
    (run / "analysis.json").write_text(json.dumps(doc))
    return str(run)


# --------------------------------------------------------------------------- Mann-Whitney U


def test_mann_whitney_textbook_values():
    # scipy.stats.mannwhitneyu documentation example (ages of male and female students):
    # U = 17, exact two-sided p = 14/126 = 0.1111; asymptotic (continuity-corrected) p = 0.11134688653314041.
    males, females = [19, 22, 16, 29, 24], [20, 11, 17, 12]
    exact = mann_whitney_u(males, females, "two-sided")
    assert exact.u == 17 and exact.method == "exact"
    assert exact.p_value == pytest.approx(0.1111111111111111, abs=1e-12)
    normal = mann_whitney_u(males, females, "two-sided", method="normal")
    assert normal.p_value == pytest.approx(0.11134688653314041, rel=1e-9)
    assert mann_whitney_u(males, females, "greater").p_value == pytest.approx(7 / 126)
    # Complete separation of 5 vs 5: one arrangement of 252.
    assert mann_whitney_u([6, 7, 8, 9, 10], [1, 2, 3, 4, 5], "greater").p_value == pytest.approx(1 / 252)
    assert mann_whitney_u([6, 7, 8, 9, 10], [1, 2, 3, 4, 5], "less").p_value == pytest.approx(1.0)


@pytest.mark.parametrize("n, critical", [(5, 2), (8, 13), (10, 23), (20, 127)])
def test_exact_distribution_matches_critical_value_tables(n, critical):
    # Two-sided alpha = 0.05 critical values of U for n1 = n2 = n (standard Mann-Whitney tables):
    # P(U <= critical) <= 0.025 < P(U <= critical + 1).
    cdf = np.cumsum(u_distribution(n, n))
    assert cdf[critical] <= 0.025 < cdf[critical + 1]
    assert cdf[-1] == pytest.approx(1.0)


def test_exact_distribution_matches_enumeration():
    m, n = 4, 6
    counts = np.zeros(m * n + 1)
    for xs in itertools.combinations(range(m + n), m):  # positions of the x's among the sorted values
        counts[sum(x - i for i, x in enumerate(xs))] += 1  # U = y's below each x
    np.testing.assert_allclose(u_distribution(m, n), counts / comb(m + n, m), rtol=1e-12)


def test_tie_corrected_normal_approximation_uses_the_permutation_variance():
    # With ties the variance of U over all splits of the pooled values is exactly the tie-corrected
    # one; enumerate the splits to get it without the formula, and check the p-value built on it.
    rng = np.random.default_rng(7)
    x = np.round(rng.normal(10.5, 1.0, 8))  # rounded: many ties
    y = np.round(rng.normal(9.5, 1.0, 8))
    assert len(np.unique(np.r_[x, y])) < 10
    ranks = rank_data(np.r_[x, y])
    us = np.array([ranks[list(c)].sum() - 8 * 9 / 2 for c in itertools.combinations(range(16), 8)])
    res = mann_whitney_u(x, y, "greater")
    assert res.method == "normal" and res.u == pytest.approx(ranks[:8].sum() - 36)
    z = (res.u - us.mean() - 0.5) / us.std()
    assert res.p_value == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)), rel=1e-9)
    assert res.p_value == pytest.approx(np.mean(us >= res.u - 1e-9), abs=0.03)  # and near the permutation test
    assert list(rank_data([3, 1, 3, 2, 3])) == [4, 1, 4, 2, 4]


# --------------------------------------------------------------------------- the file format


def test_file_format_forms(tmp_path):
    b = parse_budget("""
[settings]
min_samples = 6
alpha = 0.01

[budget]
step_ms = { max = 120, severity = "warn" }
tokens_per_s = 25000
peak_memory_bytes = "24 GiB"
gpu_idle_share = "5%"
phases.backward.share = { max = 0.7 }
categories.copy.ms = [{ max = 10, severity = "warn" }, { max = 15 }]
findings.host_device_sync = 0

[budget.phases.forward]
ms = 40

[budget.relative]
step_ms = "+5%"
tokens_per_s = "3%"
phases.backward.ms = { max = "+10%", min = "-50%" }
""", "b.toml")
    lims = {(lim.kind, lim.key, lim.bound, lim.severity): lim.threshold for lim in b.limits}
    assert b.settings.min_samples == 6 and b.settings.alpha == 0.01
    assert lims[("absolute", "step_ms", "max", "warn")] == 120
    assert lims[("absolute", "tokens_per_s", "min", "fail")] == 25000  # higher is better: a bare value is a floor
    assert lims[("absolute", "peak_memory_bytes", "max", "fail")] == 24 * 2**30
    assert lims[("absolute", "gpu_idle_share", "max", "fail")] == pytest.approx(0.05)
    assert lims[("absolute", "phases.forward.ms", "max", "fail")] == 40
    assert lims[("absolute", "categories.copy.ms", "max", "warn")] == 10
    assert lims[("absolute", "categories.copy.ms", "max", "fail")] == 15
    assert lims[("absolute", "findings.host_device_sync", "max", "fail")] == 0
    assert lims[("relative", "step_ms", "max", "fail")] == pytest.approx(0.05)
    assert lims[("relative", "tokens_per_s", "min", "fail")] == pytest.approx(-0.03)
    assert lims[("relative", "phases.backward.ms", "min", "fail")] == pytest.approx(-0.5)
    line = next(lim.line for lim in b.limits if lim.kind == "relative" and lim.key == "step_ms")
    assert line == 19  # for the GitHub annotation


@pytest.mark.parametrize("text, names", [
    ("[budget]\nstepms = 3\n", ["budget.stepms", "step_ms", "tokens_per_s"]),
    ("[budget]\nphases.backwrd.ms = 3\n", ["budget.phases.backwrd", "forward|backward|optimizer|other"]),
    ("[budget]\nfindings.host_sync = 0\n", ["budget.findings.host_sync", "host_device_sync"]),
    ("[budget]\nstep_ms = { maximum = 3 }\n", ["budget.step_ms.maximum", "max, min, severity"]),
    ("[budget]\nstep_ms = { max = 3, severity = \"bad\" }\n", ["budget.step_ms.severity", "fail", "warn"]),
    ("[budget.relative]\nstep_ms = 5\n", ["budget.relative.step_ms", "+5%"]),
    ("[budget]\npeak_memory_bytes = \"lots\"\n", ["budget.peak_memory_bytes", "GiB"]),
    ("[settings]\nalpha = 3\n[budget]\nstep_ms = 1\n", ["settings.alpha"]),
    ("[budgets]\nstep_ms = 1\n", ["[budgets]", "[budget]"]),
    ("[budget]\nstep_ms = \n", ["not valid TOML", "line 2"]),
])
def test_bad_budget_file_is_one_line_naming_the_key(tmp_path, capsys, text, names):
    path = write(tmp_path, text)
    assert main(["budget", "check", path, str(EXAMPLE)]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert path in err and "Traceback" not in err
    for name in names:
        assert name in err


def test_bad_input_exits_2(tmp_path, capsys):
    ok = write(tmp_path, "[budget]\nstep_ms = 1000\n[budget.relative]\nstep_ms = \"+5%\"\n")
    cases = [
        ["budget", "check", str(tmp_path / "missing.toml"), str(EXAMPLE)],  # no budget file
        ["budget", "check", ok, str(tmp_path / "no-such-run")],  # no run
        ["budget", "check", ok, str(EXAMPLE)],  # relative limits without a baseline
        ["budget", "check", ok, str(EXAMPLE), "--baseline"],  # --baseline without a run
        ["budget", "check", ok, str(EXAMPLE), "--bogus"],
        ["budget", "check", write(tmp_path, "[budget]\ntokens_per_s = 1\n", "t.toml"), str(EXAMPLE)],
    ]
    for argv in cases:
        assert main(argv) == EXIT_INPUT, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    # The throughput one says how to get the figure.
    main(cases[-1])
    assert "tokens per step" in capsys.readouterr().err


# --------------------------------------------------------------------------- the check


def test_absolute_limits_pass_warn_fail_through_the_cli(tmp_path, capsys):
    doc = example_doc()
    step = doc["runtime"]["steps"]["wall_ms_median"]
    passing = write(tmp_path, f"""
[budget]
step_ms = {{ max = {step * 1.1} }}
peak_memory_bytes = "30 GiB"
gpu_idle_share = "5%"
phases.backward.share = 0.7
categories.matmul.share = {{ min = 0.3 }}
findings.host_device_sync = 0
findings.critical = 0
""", "pass.toml")
    assert main(["budget", "check", passing, str(EXAMPLE)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "budget holds" in out and "FAIL" not in out
    warning = write(tmp_path, f"[budget]\nstep_ms = {{ max = {step * 0.9}, severity = \"warn\" }}\n", "warn.toml")
    assert main(["budget", "check", warning, str(EXAMPLE)]) == EXIT_OK
    assert "WARN" in capsys.readouterr().out
    failing = write(tmp_path, "[budget]\nphases.backward.share = { max = 0.5 }\nstep_ms = 1000\n", "fail.toml")
    assert main(["budget", "check", failing, str(EXAMPLE)]) == EXIT_BUDGET
    out = capsys.readouterr().out
    assert "FAIL" in out and "phases.backward.share" in out and "budget exceeded" in out
    # The same run's figures as the report shows them.
    result = evaluate(load_budget(failing), load_runs([str(EXAMPLE)]))
    row = result["results"][0]
    assert row["value"] == pytest.approx(doc["phases"]["backward"]["share"]) and row["status"] == "fail"
    assert result["results"][1]["value"] == pytest.approx(step) and result["results"][1]["status"] == "pass"


def test_finding_counts(tmp_path):
    b = parse_budget("[budget]\nfindings.host_device_sync = 0\nfindings.warning = 2\nfindings.slow_op = 1\n")
    rows = {r["key"]: r for r in evaluate(b, load_runs([str(SYNC)]))["results"]}
    assert rows["findings.host_device_sync"]["value"] == 1 and rows["findings.host_device_sync"]["status"] == "fail"
    assert rows["findings.warning"]["value"] == 2 and rows["findings.warning"]["status"] == "pass"
    assert rows["findings.slow_op"]["status"] == "pass"
    assert evaluate(b, load_runs([str(SYNC_FIXED)]))["ok"]


def test_relative_limit_against_a_baseline(tmp_path, capsys):
    path = write(tmp_path, '[budget.relative]\nstep_ms = "+5%"\nphases.backward.ms = { max = "+10%", severity = "warn" }\n')
    # The pathology against its fix: a 20x slower step, on 7 steady steps per side (runtime.steps.wall_ms).
    assert main(["budget", "check", path, str(SYNC), "--baseline", str(SYNC_FIXED)]) == EXIT_BUDGET
    out = capsys.readouterr().out
    assert "FAIL" in out and "step_ms" in out
    result = evaluate(load_budget(path), load_runs([str(SYNC)]), load_runs([str(SYNC_FIXED)]))
    step = result["results"][0]
    base = json.loads((SYNC_FIXED / "analysis.json").read_text())["runtime"]["steps"]["wall_ms_median"]
    assert step["baseline"] == pytest.approx(base)
    assert step["allowed"] == pytest.approx(base * 1.05)
    assert step["change"] == pytest.approx(step["value"] / base - 1)
    assert step["test"]["samples"] == "steps" and step["test"]["n"] == [7, 7]
    assert step["test"]["significant"] and step["status"] == "fail"
    # The fix against the pathology is an improvement: passes.
    assert main(["budget", "check", path, str(SYNC_FIXED), "--baseline", str(SYNC)]) == EXIT_OK


def test_noisy_regression_is_not_a_failure_but_a_clear_one_is(tmp_path):
    budget = parse_budget('[budget.relative]\nstep_ms = "+5%"\n', "b.toml")
    base = [80.0, 100.0, 90.0, 112.0, 85.0, 104.0, 95.0, 118.0, 88.0, 102.0]
    base_run = load_runs([make_run(tmp_path, "base", base)])
    # Medians +6% (over the +5% limit), but the steps spread +-20%: not significant.
    noisy = [v * 1.06 for v in reversed(base)]
    r = evaluate(budget, load_runs([make_run(tmp_path, "noisy", noisy)]), base_run)["results"][0]
    assert r["change"] == pytest.approx(0.06)
    assert r["test"]["p_value"] > 0.05 and r["status"] == "noise"
    # +30% on every step: significant.
    clear = [v * 1.30 for v in base]
    r = evaluate(budget, load_runs([make_run(tmp_path, "clear", clear)]), base_run)["results"][0]
    assert r["test"]["p_value"] < 0.05 and r["status"] == "fail"
    # Through the CLI: exit codes 0 and 1.
    path = write(tmp_path, '[budget.relative]\nstep_ms = "+5%"\n')
    assert main(["budget", "check", path, str(tmp_path / "noisy"), "--baseline", str(tmp_path / "base")]) == EXIT_OK
    assert main(["budget", "check", path, str(tmp_path / "clear"), "--baseline", str(tmp_path / "base")]) == EXIT_BUDGET
    # Too few samples to test (3 per side): the +6% on the medians fails as it is.
    few = evaluate(budget, load_runs([make_run(tmp_path, "few", noisy[:3])]),
                   load_runs([make_run(tmp_path, "fewbase", [v / 1.06 for v in noisy[:3]])]))["results"][0]
    assert few["test"]["p_value"] is None and few["status"] == "fail"


def test_several_runs_per_side_are_compared_by_medians_of_runs(tmp_path, capsys):
    base_steps = [100.0, 97.0, 103.0, 99.0, 101.0]
    for i, scale in enumerate([1.00, 0.98, 1.02, 0.99, 1.01]):
        make_run(tmp_path / "main", f"run{i}", [v * scale for v in base_steps])
    for i, scale in enumerate([1.20, 1.18, 1.22, 1.19, 1.21]):
        make_run(tmp_path / "pr", f"run{i}", [v * scale for v in base_steps])
    path = write(tmp_path, '[budget.relative]\nstep_ms = "+5%"\n')
    # A folder of run folders stands for each run; several runs after --baseline.
    baseline = [str(tmp_path / "main" / f"run{i}") for i in range(5)]
    assert main(["budget", "check", path, str(tmp_path / "pr"), "--baseline", *baseline]) == EXIT_BUDGET
    out = capsys.readouterr().out
    assert "5/5 runs" in out or "5 vs 5 runs" in out
    result = evaluate(load_budget(path), load_runs([str(tmp_path / "pr")]), load_runs(baseline))
    r = result["results"][0]
    assert r["test"]["samples"] == "runs" and r["test"]["n"] == [5, 5]
    assert r["value"] == pytest.approx(100.0 * 1.20) and r["baseline"] == pytest.approx(100.0)
    assert r["test"]["method"] == "exact" and r["test"]["p_value"] == pytest.approx(1 / 252)


def test_step_samples_follow_the_document():
    doc = example_doc()
    walls = step_samples(doc, "step_ms")
    rt = doc["runtime"]["steps"]
    assert walls == rt["wall_ms"][rt["steady_from_step"]:]
    assert statistics.median(walls) == pytest.approx(value(doc, "step_ms"), rel=1e-6)
    shares = step_samples(doc, "phases.backward.share")
    kept = [r for r in doc["steps"]["table"] if r["kept"]]
    assert shares == pytest.approx([r["backward_ms"] / r["busy_ms"] for r in kept])
    assert step_samples(doc, "categories.matmul.ms") == []  # run-level only
    assert value(doc, "gpu_idle_share") == pytest.approx(1 - doc["device"]["utilization"])
    assert value(doc, "tokens_per_s") is None
    assert value(doc, "tokens_per_s", tokens_per_step=32768) == pytest.approx(32768 * 1000 / rt["wall_ms_median"])


def test_throughput_follows_the_runs_step_time_on_the_gpu():
    """A run whose step time is the GPU's (step_basis "gpu"): tokens/s and its samples over the GPU's
    step times, while step_ms stays the host's wall time as documented (gpu_step_ms is the GPU's)."""
    doc = example_doc()
    rt = doc["runtime"]["steps"]
    n = len(rt["wall_ms"])
    rt.update({"wall_ms": [10.0] * n, "wall_ms_median": 10.0, "gpu_ms": [20.0 + (i % 3) for i in range(n)],
               "gpu_ms_median": 21.0, "step_ms_median": 21.0, "step_basis": "gpu", "host_ahead": True})
    doc["runtime"]["throughput"] = {}
    assert value(doc, "step_ms") == 10.0 and value(doc, "gpu_step_ms") == 21.0
    assert value(doc, "tokens_per_s", tokens_per_step=4200) == pytest.approx(4200 * 1000 / 21.0)
    steady = [20.0 + (i % 3) for i in range(n)][rt["steady_from_step"]:]
    assert step_samples(doc, "tokens_per_s", tokens_per_step=4200) == pytest.approx([4200 * 1000 / g for g in steady])
    rt["step_basis"] = "wall"  # a CPU run's document, or one before step_basis: the wall times
    assert step_samples(doc, "tokens_per_s", tokens_per_step=4200) == pytest.approx([420000.0] * len(steady))


# --------------------------------------------------------------------------- outputs


def test_junit_and_github_outputs(tmp_path, capsys, monkeypatch):
    path = write(tmp_path, '[budget]\nstep_ms = { max = 100, severity = "warn" }\nfindings.host_device_sync = 0\n'
                           '[budget.relative]\nstep_ms = "+5%"\n')
    junit = tmp_path / "budget.xml"
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    rc = main(["budget", "check", path, str(SYNC), "--baseline", str(SYNC_FIXED), "--junit", str(junit), "--github"])
    assert rc == EXIT_BUDGET
    root = ET.fromstring(junit.read_text())
    cases = root.findall(".//testcase")
    assert len(cases) == 3
    failures = root.findall(".//testcase/failure")
    assert len(failures) == 2 and root.find("testsuite").get("failures") == "2"
    assert any("host_device_sync" in f.get("message") for f in failures)
    assert any("WARNING" in (c.findtext("system-out") or "") for c in cases)
    out = capsys.readouterr().out
    errors = [line for line in out.splitlines() if line.startswith("::error ")]
    warnings = [line for line in out.splitlines() if line.startswith("::warning ")]
    assert len(errors) == 2 and len(warnings) == 1
    assert all(f"file={path}," in line for line in errors + warnings)
    assert "line=5" in " ".join(errors)  # the relative step_ms limit sits on line 5
    assert "%25" in " ".join(errors)  # "%" escaped in workflow commands
    md = summary.read_text()
    assert md.startswith("## ") and "| `step_ms` |" in md and "FAIL" in md


def test_github_annotations_when_running_in_actions(tmp_path, capsys, monkeypatch):
    path = write(tmp_path, "[budget]\nphases.backward.share = 0.5\n")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert main(["budget", "check", path, str(EXAMPLE)]) == EXIT_BUDGET
    out = capsys.readouterr().out
    assert any(line.startswith("::error ") and "phases.backward.share" in line for line in out.splitlines())
    assert "## " in out  # no GITHUB_STEP_SUMMARY file: the summary goes to stdout


# --------------------------------------------------------------------------- budget init


def test_budget_init_reloads_and_passes_on_the_same_run(tmp_path, capsys):
    out = tmp_path / "budget.toml"
    assert main(["budget", "init", str(EXAMPLE), "--headroom", "10%", "--out", str(out)]) == EXIT_OK
    budget = load_budget(str(out))
    keys = {lim.key for lim in budget.limits}
    assert {"step_ms", "peak_memory_bytes", "gpu_idle_share", "phases.backward.ms", "findings.critical"} <= keys
    step = next(lim for lim in budget.limits if lim.key == "step_ms")
    measured = example_doc()["runtime"]["steps"]["wall_ms_median"]
    assert measured * 1.1 <= step.threshold <= measured * 1.1 + 0.01
    assert main(["budget", "check", str(out), str(EXAMPLE)]) == EXIT_OK
    # A run 20% slower breaks it.
    slow = make_run(tmp_path, "slow", [v * 1.2 for v in example_doc()["runtime"]["steps"]["wall_ms"][5:]])
    assert main(["budget", "check", str(out), slow]) == EXIT_BUDGET
    # An existing file is not overwritten without --force.
    capsys.readouterr()
    assert main(["budget", "init", str(EXAMPLE), "--out", str(out)]) == EXIT_INPUT
    assert "--force" in capsys.readouterr().err


def test_budget_init_keeps_the_findings_and_throughput_of_the_run(tmp_path):
    text = starting_budget(json.loads((SYNC / "analysis.json").read_text()), "sync", 0.05)
    budget = parse_budget(text)
    by_key = {lim.key: lim for lim in budget.limits}
    assert by_key["findings.host_device_sync"].threshold == 1 and by_key["findings.warning"].threshold == 2
    assert evaluate(budget, load_runs([str(SYNC)]))["ok"]
    doc = example_doc()
    doc["runtime"]["throughput"].update(tokens_per_step=32768, tokens_per_s=32768 / 0.085)
    tokens = next(lim for lim in parse_budget(starting_budget(doc, "x", 0.10)).limits if lim.key == "tokens_per_s")
    assert tokens.bound == "min" and tokens.threshold <= 32768 / 0.085 * 0.9
    assert math.isclose(tokens.threshold, 32768 / 0.085 * 0.9, rel_tol=1e-3)


def test_the_budget_files_in_the_docs_parse():
    text = (REPO / "docs" / "budget.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```toml\n")[1:]]
    assert len(blocks) >= 2
    for block in blocks:
        assert parse_budget(block, "docs/budget.md").limits
