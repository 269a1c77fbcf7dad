"""Console and Markdown reports rendered from real analyses of recorded traces.

Numbers are read from the analysis document and formatted here independently
(``f"{share * 100:.1f}"``, ``f"{ms:.2f}"``), so a formatter that drops or
rounds a value wrongly fails these tests.
"""

from __future__ import annotations

import copy
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

import perfkit
from perfkit.report import render_console, render_markdown, write_json
from perfkit.report.rows import short_kernel_name

from .. import _cached

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(__file__).resolve().parents[3] / "shared"
ANCHORS = SHARED / "anchors" / "traces"
BF16 = REPO / "traces" / "gpt100m_bf16_adamw" / "rank0.pt.trace.json.gz"
CPU_ONLY = ANCHORS / "hta" / "tests" / "data" / "cpu_only" / "rank-34.Jul_15_10_52_41.1074.pt.trace.json.gz"
NO_STEPS = ANCHORS / "hta" / "tests" / "data" / "with_gpu_user_annotation" / "step_based_trace_2543932.json.gz"
# ResNet-50 sample whose last step is a slow outlier that the analysis excludes.
# Its first step (550) is a warm-up outlier: 368 ms against a 216 ms median. (The tb_plugin ResNet
# sample used before has its slow step last, which is not warm-up and now stays counted.)
WITH_EXCLUDED = ANCHORS / "hta" / "tests" / "data" / "negative_queue_length_values_check" / "rank0.json.gz"

SECTIONS = [
    "Step summary", "Phases (GPU time)", "GPU time by kernel category", "Top ops by GPU time (per step)",
    "Top GPU kernels (per step)", "Memory copies (per step)",
    "Step time breakdown (torch-tb-profiler Overview roles)", "Findings",
]


def _analyze(path: Path) -> dict:
    if not path.exists():
        pytest.fail(f"trace missing: {path} (the shared folder must sit beside the repo)")
    return _cached.document(path)  # analysed once per session, a fresh copy each


@pytest.fixture(scope="module")
def bf16() -> dict:
    return _analyze(BF16)


@pytest.fixture(scope="module")
def cpu_only() -> dict:
    return _analyze(CPU_ONLY)


@pytest.fixture(scope="module")
def no_steps() -> dict:
    return _analyze(NO_STEPS)


@pytest.fixture(scope="module")
def with_excluded() -> dict:
    return _analyze(WITH_EXCLUDED)


def console_text(doc: dict, width: int = 100, top: int = 10) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=False, color_system=None)
    render_console(doc, console, top=top)
    return console.file.getvalue()


def flat(s: str) -> str:
    """Text with panel borders removed and all whitespace runs (line wraps included) made one space."""
    return " ".join(s.replace("│", " ").split())


def console_section(out: str, title: str) -> str:
    """The console text under one section heading, up to the next heading."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title + " ─"))
    end = next((i for i in range(start + 1, len(lines))
                if any(lines[i].startswith(t + " ─") for t in SECTIONS)), len(lines))
    return "\n".join(lines[start + 1:end])


def md_sections(md: str) -> dict[str, str]:
    parts = re.split(r"^### (.+)$", md, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def md_tables(section: str) -> list[list[str]]:
    """The tables of a Markdown section, each as its body rows (header and alignment rows dropped)."""
    tables, current = [], None
    for line in section.splitlines():
        if line.startswith("|"):
            if current is None:
                current = []
                tables.append(current)
            current.append(line)
        else:
            current = None
    return [t[2:] for t in tables]


def md_cells(row: str) -> list[str]:
    """Split a GFM row on unescaped pipes."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip())[1:-1]]


def pct(share: float) -> str:
    return f"{share * 100:.1f}"


# --- console --------------------------------------------------------------


def test_console_bf16_shows_the_documents_numbers(bf16):
    out = console_text(bf16)
    text = flat(out)
    phases = bf16["phases"]
    fwd, bwd, opt = phases["forward"], phases["backward"], phases["optimizer"]
    assert (f"Forward {pct(fwd['share'])}% ({fwd['ms_per_step']:.2f} ms) / "
            f"Backward {pct(bwd['share'])}% ({bwd['ms_per_step']:.2f} ms) / "
            f"Optimizer {pct(opt['share'])}% ({opt['ms_per_step']:.2f} ms)") in text
    assert bf16["trace"]["device"] == "NVIDIA H200"
    assert "NVIDIA H200" in out
    assert bf16["trace"]["paths"][0] in text
    steps = bf16["steps"]
    assert f"{steps['count']} of {steps['total']} analysed" in text
    assert f"{steps['ids'][0]}-{steps['ids'][-1]}" in text  # ids 7, 8, 9 shown as a range

    summary = flat(console_section(out, "Step summary"))
    # one statistic for every per-step row: means over the kept steps of the step table
    kept = [r for r in steps["table"] if r["kept"]]
    mean = lambda key: sum(r[key] for r in kept) / len(kept)  # noqa: E731
    window, idle = mean("window_ms"), mean("idle_ms")
    assert f"Step time (means of {len(kept)} steps) {window:.2f} ms" in summary
    assert f"GPU busy (some op running) {window - idle:.2f} ms" in summary
    assert f"GPU idle (nothing running) {idle:.2f} ms" in summary
    lo, hi = min(r["window_ms"] for r in kept), max(r["window_ms"] for r in kept)
    assert f"range {lo:.2f}-{hi:.2f}" in summary
    assert f"GPU utilization (busy / step) {pct(bf16['device']['utilization'])} %" in summary
    assert "median" not in summary.split("Step time")[0]
    pre = bf16["device"]["launched_before_window"]
    assert pre["count"] > 0 and f"{pre['count']:,} GPU ops ({pre['ms']:.2f} ms in total)" in summary

    phase_text = console_section(out, "Phases (GPU time)")
    for name, key in (("Forward", "forward"), ("Backward", "backward"), ("Optimizer", "optimizer")):
        row = next(line for line in phase_text.splitlines() if line.startswith(name))
        assert row.split()[1:3] == [f"{phases[key]['ms_per_step']:.2f}", pct(phases[key]["share"])]
        bar = re.search(r"[█▏▎▍▌▋▊▉]+", row).group()  # 20 cells for 100%, in eighths of a cell
        eighths = 8 * bar.count("█") + (" ▏▎▍▌▋▊▉".index(bar[-1]) if bar[-1] != "█" else 0)
        assert eighths == round(phases[key]["share"] * 20 * 8)

    top_op = bf16["top_ops"][0]
    ops_text = console_section(out, "Top ops by GPU time (per step)")
    first = next(line for line in ops_text.splitlines() if line.lstrip().startswith("1 "))
    assert first.split()[1:] == [top_op["name"], f"{top_op['ms_per_step']:.2f}",
                                 f"{top_op['self_ms_per_step']:.2f}", pct(top_op["share"]),
                                 str(int(top_op["calls_per_step"]))]
    assert top_op["source"] in ops_text

    kernels_text = flat(console_section(out, "Top GPU kernels (per step)"))
    k0 = bf16["top_kernels"][0]
    assert short_kernel_name(k0["name"]) in kernels_text
    assert f"from {k0['op']}" in kernels_text
    assert f"{k0['avg_us']:,.1f}" in kernels_text

    findings_text = flat(console_section(out, "Findings"))
    for f in bf16["findings"]:
        assert f["title"] in findings_text
    assert ("No findings." in findings_text) == (not bf16["findings"])


def test_console_categories_sorted_without_zero_rows(bf16):
    section = console_section(console_text(bf16), "GPU time by kernel category")
    rows = [line for line in section.splitlines()[2:] if line.strip()]
    expected = sorted((v["ms_per_step"] for v in bf16["categories"].values() if v["ms_per_step"] > 0),
                      reverse=True)
    shown = [float(re.search(r"\s(\d+\.\d+)\s", row).group(1)) for row in rows]
    assert len(rows) == len(expected)
    assert shown == [float(f"{v:.2f}") if v >= 0.1 else float(f"{v:.3f}") for v in expected]
    assert "Communication" not in section  # zero in this trace


def test_console_copies_and_overview(bf16):
    out = console_text(bf16)
    copies = console_section(out, "Memory copies (per step)")
    d2d = bf16["copies"]["d2d"]
    row = next(line for line in copies.splitlines() if line.startswith("D2D"))
    assert row.split()[-4:] == [str(int(d2d["count_per_step"])), "0", "-", f"{d2d['ms_per_step']:.2f}"]
    for src in bf16["copies"]["sources"][:10]:
        if src["source"]:
            assert src["source"] in copies
    overview = console_section(out, "Step time breakdown (torch-tb-profiler Overview roles)")
    kernel = bf16["overview"]["kernel"]
    row = next(line for line in overview.splitlines() if line.startswith("Kernel"))
    assert row.split()[1:] == [f"{kernel['ms_per_step']:.2f}", pct(kernel["share"])]
    total = sum(v["ms_per_step"] for v in bf16["overview"].values())
    assert re.search(rf"^Total\s+{total:.2f}\s+100\.0$", overview, flags=re.M)


@pytest.mark.parametrize("width", [80, 100, 120])
def test_console_fits_the_width_and_uses_no_emoji(bf16, with_excluded, width):
    allowed = set("█▏▎▍▌▋▊▉µ…")
    for doc in (bf16, with_excluded):
        out = console_text(doc, width=width)
        assert max(len(line) for line in out.splitlines()) <= width
        odd = {ch for ch in out if ord(ch) > 127 and ch not in allowed and not 0x2500 <= ord(ch) <= 0x257F}
        assert not odd, odd


def test_console_top_limits_rows(bf16):
    section = console_section(console_text(bf16, top=3), "Top ops by GPU time (per step)")
    numbers = re.findall(r"^\s*(\d+)  \S", section, flags=re.M)
    assert numbers == ["1", "2", "3"]
    assert len(bf16["top_ops"]) > 3


def test_console_excluded_steps_and_reasons(with_excluded):
    excluded = with_excluded["steps"]["excluded"]
    assert excluded, "this anchor is expected to have an excluded warm-up step"
    text = flat(console_text(with_excluded))
    steps = with_excluded["steps"]
    assert f"{steps['count']} of {steps['total']} analysed" in text
    for e in excluded:
        assert f"step {e['id']}: {' '.join(e['reason'].split())}" in text
    outside = with_excluded["device"]["outside_kept_steps_ms"]
    assert outside > 0 and f"{outside:.2f} ms of GPU work in total fell outside the analysed steps" in text


def test_console_cpu_only_trace(cpu_only):
    out = console_text(cpu_only)
    text = flat(out)
    assert cpu_only["trace"]["device"] is None
    assert cpu_only["trace"]["time_basis"] == "cpu"
    assert "none (CPU only)" in text
    for warning in cpu_only["trace"]["warnings"]:
        assert warning in text
    dist = cpu_only["trace"]["distributed"]
    assert f"rank {dist['rank']} of {dist['world_size']}" in text
    # CPU time of the outermost ops is reported instead of GPU time, labelled as such; "GPU" is left
    # only where the document's own text says it (a remedy naming GPUs), never in a label
    assert "Phases (CPU time)" in out
    assert "GPU" not in out.split("Findings ─")[0]
    assert flat(out.split("Findings ─")[1]).count("GPU") == sum(
        json.dumps(f).count("GPU") for f in cpu_only["findings"])
    assert "Top CPU kernels" not in out and "Memory copies" not in out
    comm = cpu_only["overview"]["communication"]
    assert comm["ms_per_step"] > 0
    row = next(line for line in console_section(out, "Step time breakdown (torch-tb-profiler Overview roles)")
               .splitlines() if line.startswith("Communication"))
    assert row.split()[1:] == [f"{comm['ms_per_step']:.2f}", pct(comm["share"])]


def test_console_trace_without_steps(no_steps):
    assert no_steps["steps"]["synthetic"] is True
    text = flat(console_text(no_steps))
    assert text.count("analysed as one window") == 1  # the Steps line; the duplicate warning is folded in
    assert no_steps["trace"]["device"] in text
    fwd = no_steps["phases"]["forward"]
    assert f"Forward {pct(fwd['share'])}% ({fwd['ms_per_step']:.2f} ms)" in text


FINDINGS = [
    {
        "id": "copy-overhead",
        "severity": "high",
        "title": "Dtype casts take 12.7% of GPU time",
        "where": "aten::copy_ at record_gpu_traces.py:199 step",
        "evidence": {"copy_ms_per_step": 9.371482, "share": 0.1267, "kernels": ["direct_copy", "bfloat16_copy"]},
        "remedy": "Keep master weights in bf16 or cast once per step outside the loop.",
    },
    {
        "id": "idle-gpu",
        "severity": "info",
        "title": "GPU idle 1.3% of the step",
        "where": None,
        "evidence": "idle 1.01 ms of 75.02 ms",
        "remedy": "Nothing to do.",
    },
]


def test_findings_render_in_both_formats(bf16):
    doc = copy.deepcopy(bf16)
    doc["findings"] = copy.deepcopy(FINDINGS)
    out = console_text(doc)
    section = flat(console_section(out, "Findings"))
    assert "No findings." not in section
    assert "1. [HIGH] Dtype casts take 12.7% of GPU time (copy-overhead)" in section
    assert "Where aten::copy_ at record_gpu_traces.py:199 step" in section
    assert "copy_ms_per_step: 9.371" in section and "share: 0.1267" in section
    assert "kernels: direct_copy, bfloat16_copy" in section
    assert "Remedy Keep master weights in bf16 or cast once per step outside the loop." in section
    assert "2. [INFO] GPU idle 1.3% of the step" in section
    assert "Evidence idle 1.01 ms of 75.02 ms" in section

    md = md_sections(render_markdown(doc))["Findings"]
    assert "1. **[HIGH] Dtype casts take 12.7% of GPU time** (`copy-overhead`)" in md
    assert "   - Remedy: Keep master weights in bf16 or cast once per step outside the loop." in md
    assert "     - copy_ms_per_step: 9.371" in md
    assert "   - Evidence: idle 1.01 ms of 75.02 ms" in md
    assert "No findings." not in md


def test_names_are_not_read_as_rich_markup(bf16):
    doc = copy.deepcopy(bf16)
    doc["top_ops"][0]["name"] = "my[bold]op[/bold]"
    doc["top_kernels"][0]["name"] = "void ns::kern[abi:cxx11]<int>(int)"
    doc["trace"]["warnings"] = ["[red]literal[/red] warning"]
    text = flat(console_text(doc))
    assert "my[bold]op[/bold]" in text
    assert "kern[abi:cxx11]" in text
    assert "[red]literal[/red] warning" in text


# --- markdown -------------------------------------------------------------


def test_markdown_tables_match_the_document(bf16):
    top = 10
    md = render_markdown(bf16, top=top)
    sections = md_sections(md)
    assert list(sections) == SECTIONS

    (phases,) = md_tables(sections["Phases (GPU time)"])
    # every phase, and "unknown" only when some GPU time has no phase
    assert len(phases) == sum(1 for k, v in bf16["phases"].items() if k != "unknown" or v["ms_per_step"])
    fwd = bf16["phases"]["forward"]
    assert md_cells(phases[0]) == ["Forward", f"{fwd['ms_per_step']:.2f}", pct(fwd["share"])]

    (cats,) = md_tables(sections["GPU time by kernel category"])
    assert len(cats) == sum(1 for v in bf16["categories"].values() if v["ms_per_step"] > 0)

    (ops,) = md_tables(sections["Top ops by GPU time (per step)"])
    assert len(ops) == min(top, len(bf16["top_ops"]))
    for row, op in zip(ops, bf16["top_ops"]):
        cells = md_cells(row)
        assert cells[1] == f"`{op['name']}`"
        assert cells[2] == f"{op['ms_per_step']:.2f}"
        assert cells[6] == (f"`{op['source']}`" if op["source"] else "-")

    (kernels,) = md_tables(sections["Top GPU kernels (per step)"])
    assert len(kernels) == min(top, len(bf16["top_kernels"]))
    for row, k in zip(kernels, bf16["top_kernels"]):
        cells = md_cells(row)
        assert len(cells) == 9
        assert cells[2] == k["category"] and cells[7] == f"`{k['op']}`"

    directions, sources = md_tables(sections["Memory copies (per step)"])
    assert len(directions) == 3
    assert len(sources) == min(top, len(bf16["copies"]["sources"]))

    (overview,) = md_tables(sections["Step time breakdown (torch-tb-profiler Overview roles)"])
    assert len(overview) == len(bf16["overview"]) + 1  # + Total
    assert md_cells(overview[-1])[0] == "**Total**"

    for f in bf16["findings"]:
        assert f["title"] in sections["Findings"]


def test_markdown_top_parameter(bf16):
    sections = md_sections(render_markdown(bf16, top=2))
    assert len(md_tables(sections["Top ops by GPU time (per step)"])[0]) == 2
    assert len(md_tables(sections["Top GPU kernels (per step)"])[0]) == 2
    assert len(md_tables(sections["Memory copies (per step)"])[1]) == 2


def test_markdown_header(bf16, with_excluded, no_steps):
    md = render_markdown(bf16)
    fwd = bf16["phases"]["forward"]
    assert "- **Device:** NVIDIA H200" in md
    assert f"Forward {pct(fwd['share'])}% ({fwd['ms_per_step']:.2f} ms)" in md
    assert f"- **Trace:** `{bf16['trace']['paths'][0]}`" in md
    for e in with_excluded["steps"]["excluded"]:
        assert f"- **Excluded:** step {e['id']}: {e['reason']}" in render_markdown(with_excluded)
    assert "whole trace analysed as one window" in render_markdown(no_steps)


def test_markdown_escapes_pipes_in_names(bf16):
    doc = copy.deepcopy(bf16)
    doc["top_ops"][0]["name"] = "custom|op"
    doc["top_kernels"][0]["name"] = "kernel|with|pipes"
    doc["copies"]["sources"][0]["op"] = "copy|op"
    sections = md_sections(render_markdown(doc))
    ops_table = [line for line in sections["Top ops by GPU time (per step)"].splitlines() if line.startswith("|")]
    header, first = ops_table[0], ops_table[2]
    assert "`custom\\|op`" in first
    assert len(md_cells(first)) == len(md_cells(header))
    kernel_row = md_tables(sections["Top GPU kernels (per step)"])[0][0]
    assert "`kernel\\|with\\|pipes`" in kernel_row and len(md_cells(kernel_row)) == 9
    source_row = md_tables(sections["Memory copies (per step)"])[1][0]
    assert "`copy\\|op`" in source_row and len(md_cells(source_row)) == 5


def test_markdown_cpu_only(cpu_only):
    # no device work: the Markdown says CPU, as the terminal does
    md = render_markdown(cpu_only)
    sections = md_sections(md)
    assert "GPU" not in md.split("### Findings")[0]
    assert sections["Phases (CPU time)"].strip() == "No CPU time in the analysed steps."
    assert sections["Top CPU kernels (per step)"].strip() == "No CPU kernels in the analysed steps."
    assert sections["Memory copies (per step)"].strip() == "No host/device copies in the analysed steps."


# --- robustness -------------------------------------------------------------


@pytest.mark.parametrize("doc", [
    {"schema": "perfkit.analysis/1"},
    {},
    {"trace": None, "steps": {"count": None, "ids": None}, "phases": {"forward": None, "backward": "x"},
     "categories": {"matmul": {"ms_per_step": float("nan")}}, "top_ops": None,
     "top_kernels": [None, {"name": None, "ms_per_step": "fast"}], "copies": {"h2d": "x", "sources": [{}]},
     "overview": {"kernel": {}}, "device": {"launched_before_window": None},
     "findings": [{}, "junk", {"title": "T", "evidence": {"a": float("inf")}}]},
])
def test_incomplete_documents_render(doc):
    for width in (80, 100):
        out = console_text(doc, width=width)
        assert "perfkit report" in out and "Findings" in out
    md = render_markdown(doc)
    assert md.startswith("## perfkit report\n") and "### Findings" in md


def test_minimal_document_says_what_is_missing():
    doc = {"schema": "perfkit.analysis/1"}
    text = flat(console_text(doc))
    assert "Trace (unknown)" in text and "Steps no step information" in text and "No findings." in text
    assert "Step summary" not in text  # no steps/gpu keys: the section is skipped, not filled with dashes


# --- kernel names -------------------------------------------------------------


@pytest.mark.parametrize("name, expected", [
    ("nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT", "nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT"),
    ("void cutlass::Kernel2<cutlass_80_simt_sgemm_128x256_8x4_nt_align1>(cutlass_80_simt_sgemm_128x256_8x4_nt_align1::Params)",
     "cutlass::Kernel2<cutlass_80_simt_sgemm_128x256_8x4_nt_align1>"),
    ("void at::native::unrolled_elementwise_kernel<at::native::direct_copy_kernel_cuda(at::TensorIteratorBase&)::"
     "{lambda()#3}::operator()() const::{lambda()#7}::operator()() const::{lambda(float)#1}, std::array<char*, 2ul>, 4, "
     "TrivialOffsetCalculator<1, unsigned int>, TrivialOffsetCalculator<1, unsigned int>, "
     "at::native::memory::LoadWithCast<1>, at::native::memory::StoreWithCast<1> >(int, "
     "at::native::direct_copy_kernel_cuda(at::TensorIteratorBase&)::{lambda()#3}::operator()() const::"
     "{lambda()#7}::operator()() const::{lambda(float)#1}, std::array<char*, 2ul>)",
     "unrolled_elementwise_kernel<direct_copy_kernel_cuda, …>"),
    ("void at::native::(anonymous namespace)::cunn_SoftMaxForward<8, c10::BFloat16, float, c10::BFloat16, "
     "at::native::(anonymous namespace)::LogSoftMaxForwardEpilogue>(c10::BFloat16*, c10::BFloat16 const*, int)",
     "cunn_SoftMaxForward<…, LogSoftMaxForwardEpilogue>"),
    ("void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::MeanOps<float, float, float, "
     "float>, unsigned int, float, 4> >(at::native::ReduceOp<float, at::native::MeanOps<float, float, float, float>, "
     "unsigned int, float, 4>)",
     "reduce_kernel<…, ReduceOp<…, MeanOps<…>, …>>"),
    ("void cudnn::detail::dgrad_engine<float, 512, 6, 5, 3, 3, 3, false>(int, int, int, float const*, int)",
     "cudnn::dgrad_engine<float, 512, 6, 5, 3, 3, 3, false>"),
    ("Memcpy HtoD (Pageable -> Device)", "Memcpy HtoD (Pageable -> Device)"),
    (None, "-"),
])
def test_short_kernel_name(name, expected):
    assert short_kernel_name(name) == expected


def test_short_kernel_names_of_real_kernels_fit(bf16, with_excluded):
    for doc in (bf16, with_excluded):
        for k in doc["top_kernels"]:
            short = short_kernel_name(k["name"])
            assert 0 < len(short) <= 70
            assert "(" not in short or short.startswith("Memcpy")  # parameter lists are gone


# --- json and imports -----------------------------------------------------------


def test_write_json_round_trips(bf16, tmp_path):
    path = tmp_path / "analysis.json"
    doc = copy.deepcopy(bf16)
    doc["extra"] = {"numpy_int": np.int64(3), "numpy_float": np.float32(0.5)}
    write_json(doc, path)
    raw = path.read_text(encoding="utf-8")
    assert raw.startswith('{\n  "schema": "perfkit.analysis/2"')  # indent=2
    back = json.loads(raw)
    assert back["extra"] == {"numpy_int": 3, "numpy_float": 0.5}
    del back["extra"], doc["extra"]
    assert back == bf16


def test_write_json_writes_nan_as_null_with_a_warning(tmp_path, capsys):
    # never invalid JSON (NaN literals), never a crash: unknown is null, and the warning names the field
    write_json({"x": math.nan, "y": [1.5, -math.inf]}, tmp_path / "bad.json")
    assert json.loads((tmp_path / "bad.json").read_text()) == {"x": None, "y": [1.5, None]}
    err = capsys.readouterr().err
    assert "bad.json" in err and "x, y[1]" in err


def test_source_paths_fit_their_column_without_breaking_inside_a_path(tmp_path, monkeypatch):
    """At 80 columns "/work/main/examples/frameworks/compile_loo" + "p.py:32 main" was broken mid-word."""
    from perfkit.report.rows import fit_source

    monkeypatch.chdir(tmp_path)
    long = "/work/main/examples/frameworks/compile_loop.py:32 main"
    shown = fit_source(long, 42)
    assert len(shown) <= 42 and shown.endswith("compile_loop.py:32 main") and shown.startswith("…/")
    assert long.endswith(shown[2:])  # the kept part is the path's own tail
    inside = tmp_path / "pkg" / "train.py"
    assert fit_source(f"{inside}:7 step", 42) == "pkg/train.py:7 step"  # under the current folder: relative
    assert fit_source("train.py:3 <module>", 42) == "train.py:3 <module>"
    huge = "/a/" + "x" * 60 + ".py:1 f"  # a file name longer than the column is kept whole
    assert fit_source(huge, 42).endswith("x" * 60 + ".py:1 f")


def test_long_op_names_lose_their_middle_not_a_line_break():
    from perfkit.report.rows import fit_name

    name = "aten::_scaled_dot_product_flash_attention_for_cpu_backward"
    shown = fit_name(name, 42)
    assert len(shown) == 42 and "…" in shown
    head, tail = shown.split("…")
    assert name.startswith(head) and name.endswith(tail)
    assert fit_name("aten::mm", 42) == "aten::mm"


def test_breakdown_line_says_which_phases_had_no_work(tmp_path):
    """A phase with no GPU work is said in words, not as "Optimizer 0.0% (0.00 ms)" (read as a fast
    optimizer on a capture that has none): a public inference trace, and a DualPipe-shaped chunk."""
    from perfkit.report.rows import breakdown_line

    from .. import _cached, _dualpipe_trace
    from ..conftest import REPO

    infer = _cached.document(REPO / "tests/data/traces/nv-h100-bert-small-infer/gaunernst_bert-small-uncased__1016001.json.gz")
    assert infer["phases"]["backward"]["ms_per_step"] == infer["phases"]["optimizer"]["ms_per_step"] == 0
    line = breakdown_line(infer)
    assert line.startswith("Forward 100.0% (") and ", no backward or optimizer work; GPU busy" in line, line
    dual = perfkit.analyze(str(_dualpipe_trace.write(tmp_path / "train.json"))).to_dict()
    assert dual["phases"]["optimizer"]["ms_per_step"] == 0 and dual["phases"]["backward"]["ms_per_step"] > 0
    line = breakdown_line(dual)
    assert "Backward " in line and ", no optimizer work;" in line and "Optimizer 0.0%" not in line, line


def test_header_leaves_out_a_range_that_leads_every_category(tmp_path):
    """A public vLLM graph-replay trace: its step range around the graph launch launched every kernel, so
    "led by annotation execute_..." named it three times and pointed nowhere; the DualPipe-shaped trace's
    stage ranges each lead one category and stay."""
    from perfkit.report.rows import leading_ops, leading_ops_line

    from .. import _cached, _dualpipe_trace
    from ..conftest import REPO

    vllm = _cached.document(REPO / "tests/data/traces/amd-mi300x-vllm-decode-graph-replay/graph_execution.json.gz")
    assert sum(1 for k in vllm["top_kernels"] if k.get("op_basis") == "annotation") >= 2  # the case is meaningful
    assert [op for *_, op in leading_ops(vllm)] == [None, None, None]
    assert "led by" not in leading_ops_line(vllm)
    dual = perfkit.analyze(str(_dualpipe_trace.write(tmp_path / "train.json"))).to_dict()
    leads = [op for *_, op in leading_ops(dual) if op and op.startswith("annotation ")]
    assert leads and len(set(leads)) == len(leads), leads
