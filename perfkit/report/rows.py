"""The document -> rows step shared by every renderer (terminal, Markdown, HTML, plots).

Everything a report shows is decided here, with no drawing library involved: which rows each
section has, in which order, their labels, number formats and notes. :mod:`perfkit.report.console`
draws these rows with rich, :mod:`perfkit.report.markdown` as GitHub Markdown and
:mod:`perfkit.report.html` as one HTML page, so the three always agree.

The word for the time basis ("GPU", or "CPU" for a trace without device work, ``trace.time_basis``)
is decided once, here (:func:`words`, from :func:`perfkit.analysis.document.basis_word`): every
label and note that names the basis is built with it, and names from the trace (ops, kernels,
sources, paths) are never rewritten.

Every read tolerates a missing key (later schema revisions add keys, older documents lack some):
reads go through :func:`perfkit.report.values.get` with a default and a section without data gives
no rows.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any, cast

from .values import DASH, as_dict, as_list, compress_ids, fmt_ms, get, num, text
from ..variation import run_step_time

from ..analysis.document import OP_BASIS_ANNOTATION, Document, Finding, OpRow, basis_word, launcher_text
from . import ranks as _ranks


@dataclass(frozen=True)
class Words:
    """Every label and note of a report that names the time basis, built from one word.

    ``word`` is "GPU" (device kernels, copies and memsets) or "CPU" (a trace without device work:
    the tables hold time inside CPU ops); :func:`basis_words` picks it from ``trace.time_basis``.
    """

    word: str = "GPU"

    @property
    def cpu(self) -> bool:
        """True when the figures are CPU time (no device work: kernel and copy tables do not apply)."""
        return self.word == "CPU"

    @property
    def ms(self) -> str:
        return f"{self.word} ms"

    @property
    def ms_per_step(self) -> str:
        return f"{self.word} ms/step"

    @property
    def share_of_busy(self) -> str:
        return f"% of {self.word} busy"

    @property
    def phases_title(self) -> str:
        return f"Phases ({self.word} time)"

    @property
    def no_time(self) -> str:
        return f"No {self.word} time in the analysed steps."

    @property
    def categories_title(self) -> str:
        return f"{self.word} time by kernel category"

    @property
    def no_kernel_time(self) -> str:
        return f"No {self.word} kernel time in the analysed steps."

    @property
    def top_ops_title(self) -> str:
        return f"Top ops by {self.word} time (per step)"

    @property
    def no_ops(self) -> str:
        return f"No ops launched {self.word} work in the analysed steps."

    @property
    def top_ops_note(self) -> str:
        return (f"{self.word} ms includes kernels launched by child ops, so shares overlap; "
                "self ms counts only the op's own kernels.")

    @property
    def top_kernels_title(self) -> str:
        return f"Top {self.word} kernels (per step)"

    @property
    def no_kernels(self) -> str:
        return f"No {self.word} kernels in the analysed steps."

    @property
    def top_time(self) -> str:
        """The header line naming the largest categories ("Top GPU time")."""
        return f"Top {self.word} time"

    @property
    def step_columns(self) -> tuple[str, str, str]:
        """Headers of a step's window, busy and idle time in the per-step table."""
        return (f"{self.word} window ms", f"{self.word} busy ms", f"{self.word} idle ms")

    @property
    def compiled_headers(self) -> tuple[str, str, str, str, str]:
        return ("Graph", "Phase", self.ms, "Calls", "User code")

    @property
    def compiled_note(self) -> str:
        return (f"Each graph's {self.word} time is the work launched inside it (fused kernels and the extern "
                "kernels it calls). User code: the innermost user frame around the graph's call, often the "
                "compiled function itself (Dynamo runs the graph in its frame, which stays on its def line); a "
                "backward graph takes its forward's. \"unknown\": no Python stack in the trace around the call.")


GPU_WORDS = Words("GPU")
CPU_WORDS = Words("CPU")


def basis_words(doc: Any) -> Words:
    """The words of ``doc``'s time basis: decided here, once, from ``trace.time_basis``."""
    return CPU_WORDS if basis_word(get(doc, "trace", "time_basis")) == "CPU" else GPU_WORDS


PHASE_LABELS = {"forward": "Forward", "backward": "Backward", "optimizer": "Optimizer", "other": "Other", "unknown": "Unknown"}
#: How each kind of phase evidence reads in the report (docs/analysis.md "Phases").
EVIDENCE_LABELS = {
    "optimizer_range": "optimizer range",
    "annotation": "annotation",
    "data_loading": "data loading",
    "autograd": "autograd range/thread",
    "kernel_name": "kernel name",
    "position": "position before/after backward",
    "no_backward": "step without backward",
    "stream_neighbour": "stream neighbour",
    "none": "no evidence",
}
CATEGORY_LABELS = {
    "matmul": "Matrix multiply",
    "attention": "Attention",
    "convolution": "Convolution",
    "normalization": "Normalization",
    "elementwise": "Elementwise",
    "reduction": "Reduction",
    "indexing": "Indexing",
    "copy": "Copy",
    "memset": "Memset",
    "communication": "Communication",
    "compiled": "Compiled (torch.compile)",
    "other": "Other",
}
#: torch-tb-profiler's Overview "Step Time Breakdown" roles, in its priority order.
ROLE_LABELS = {
    "kernel": "Kernel",
    "memcpy": "Memcpy",
    "memset": "Memset",
    "communication": "Communication",
    "runtime": "Runtime",
    "dataloader": "DataLoader",
    "cpu_exec": "CPU Exec",
    "other": "Other",
}
DIRECTION_LABELS = {"h2d": "H2D (host to device)", "d2h": "D2H (device to host)", "d2d": "D2D (device to device)"}


def label(key: str, labels: dict[str, str]) -> str:
    return labels.get(key, key.replace("_", " ").capitalize())


def fmt_pct(share: Any) -> str:
    """A 0..1 share as a percentage with one decimal (no % sign: headers carry the unit)."""
    v = num(share)
    return DASH if v is None else f"{v * 100:.1f}"


def fmt_count(value: Any) -> str:
    """Calls or copies per step: integers without decimals, others with one."""
    v = num(value)
    if v is None:
        return DASH
    if abs(v - round(v)) < 1e-9:
        return f"{int(round(v)):,}"
    return f"{v:,.1f}"


def fmt_us(value: Any) -> str:
    v = num(value)
    return DASH if v is None else f"{v:,.1f}"


def fmt_mb(n_bytes: Any) -> str:
    """Bytes as MB (10^6 bytes), two decimals."""
    v = num(n_bytes)
    return DASH if v is None else f"{v / 1e6:,.2f}"


def fmt_where(where: Any) -> str:
    """A finding's ``where``: "name at source (x ms/step)" entries, or the value as text."""
    items = where if isinstance(where, list) else [where]
    parts = []
    for item in items:
        if not isinstance(item, dict):
            return fmt_value(where)
        label = item.get("name") or item.get("op") or item.get("step")
        label = short_op_name(label) if isinstance(label, str) else label
        if not item.get("name") and item.get("op_basis") == "annotation":
            label = launcher_name(item)
        src = short_source(item.get("source")) if item.get("source") else None
        ms = item.get("ms_per_step", item.get("ms_per_step"))
        text_ = " ".join(str(x) for x in (label, f"at {src}" if src else None) if x not in (None, ""))
        if ms is not None:
            text_ += f" ({fmt_ms(ms)} ms/step)"
        elif item.get("reason"):
            text_ += f": {item['reason']}"
        parts.append(text_ or fmt_value(item))
    return "; ".join(parts)


#: Items of an evidence list or dict shown in a report (a job of 1,000 ranks has a figure per rank).
MAX_EVIDENCE_ITEMS = 16


def fmt_value(value: Any) -> str:
    """A finding's evidence value: numbers with 4 significant digits, lists joined, dicts as compact JSON."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, float)):
        v = float(value)
        if not math.isfinite(v):
            return str(value)
        if isinstance(value, int) or v.is_integer():
            return f"{int(v):,}" if abs(v) >= 10000 else str(int(v))
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.4g}"
    if isinstance(value, (list, tuple)):
        more = f" ... ({len(value) - MAX_EVIDENCE_ITEMS} more)" if len(value) > MAX_EVIDENCE_ITEMS else ""
        return ", ".join(fmt_value(x) for x in value[:MAX_EVIDENCE_ITEMS]) + more
    if isinstance(value, dict):
        if len(value) > MAX_EVIDENCE_ITEMS:  # e.g. a figure per rank of 1,000 ranks: the document has them all
            head = dict(list(value.items())[:MAX_EVIDENCE_ITEMS])
            return json.dumps(head, default=str, separators=(", ", ": "))[:-1] + \
                f", ...}} ({len(value) - MAX_EVIDENCE_ITEMS} more in the document)"
        return json.dumps(value, default=str, separators=(", ", ": "))
    return str(value)


def evidence_items(evidence: Any) -> list[tuple[str | None, str]]:
    """A finding's evidence as (key, value) pairs; a plain string becomes one pair with key None."""
    if evidence is None or evidence == "" or evidence == {} or evidence == []:
        return []
    if isinstance(evidence, dict):
        return [(str(k), fmt_value(v)) for k, v in evidence.items()]
    if isinstance(evidence, (list, tuple)):
        return [(None, fmt_value(v)) for v in evidence]
    return [(None, str(evidence))]


_BORING_NAMESPACES = re.compile(
    r"\b(?:at|native|std|c10|detail|templates|cuda|memory)::|\(anonymous namespace\)::"
)
_LAMBDA = re.compile(r"::\{lambda\([^{}]*?\)#\d+\}")
_OPERATOR_CALL = re.compile(r"::operator\(\)\(\)(?: const)?")


def _drop_param_lists(s: str) -> str:
    """Remove every balanced ``(...)`` that directly follows a name or ``>`` (parameter lists)."""
    out: list[str] = []
    i = 0
    while i < len(s):
        ch = s[i]
        if ch == "(" and out and (out[-1][-1:].isalnum() or out[-1][-1:] in "_>"):
            depth = 0
            j = i
            while j < len(s):
                if s[j] == "(":
                    depth += 1
                elif s[j] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            i = j + 1
            if s.startswith(" const", i):
                i += len(" const")
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _split_top_level(args: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(args):
        if ch in "<([":
            depth += 1
        elif ch in ">)]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(args[start:i].strip())
            start = i + 1
    parts.append(args[start:].strip())
    return [p for p in parts if p]


_TRIVIAL_TYPES = frozenset({
    # builtin and numeric types
    "float", "double", "int", "long", "short", "char", "bool", "half", "Half", "BFloat16", "__half",
    "__nv_bfloat16", "float2", "float4", "int2", "int4", "int64_t", "uint32_t", "uint64_t", "size_t",
    "true", "false",
    # ATen TensorIterator plumbing that every elementwise kernel carries
    "array", "Array", "TrivialOffsetCalculator", "OffsetCalculator", "LoadWithCast", "StoreWithCast",
    "LoadWithoutCast", "StoreWithoutCast",
})
_NUMBER_ARG = re.compile(r"-?\d[\w.]*|\(\w+\)-?\d+")


def _template_parts(s: str) -> tuple[str, list[str]] | None:
    """``head<a, b<c>>`` -> ("head", ["a", "b<c>"]); None when ``s`` is not one template instance."""
    i = s.find("<")
    if i <= 0 or not s.endswith(">"):
        return None
    depth = 0
    for j in range(i, len(s)):
        depth += {"<": 1, ">": -1}.get(s[j], 0)
        if depth == 0 and j != len(s) - 1:
            return None
    return s[:i], _split_top_level(s[i + 1:-1])


def _is_trivial(arg: str) -> bool:
    """True for template arguments that say little about what a kernel does (sizes, dtypes, plumbing)."""
    if _NUMBER_ARG.fullmatch(arg):
        return True
    words = [w for w in re.split(r"[\s*&]+", arg.split("<", 1)[0]) if w and w not in ("const", "unsigned", "signed")]
    return not words or all(w in _TRIVIAL_TYPES for w in words)


def _elide_trivial(s: str) -> str:
    """Replace each run of trivial template arguments, at every nesting level, by one "…"."""
    parts = _template_parts(s)
    if parts is None:
        return s
    head, args = parts
    out: list[str] = []
    for arg in args:
        if _is_trivial(arg):
            if not out or out[-1] != "…":
                out.append("…")
        else:
            out.append(_elide_trivial(arg))
    return f"{head}<{', '.join(out)}>"


def _fit_prefix(s: str, max_len: int) -> tuple[str, bool]:
    """Keep the leading template arguments that fit in ``max_len``; (result, whether a non-trivial one was kept)."""
    parts = _template_parts(s)
    if parts is None:
        return s, False
    head, args = parts
    kept: list[str] = []
    for arg in args:
        if len(f"{head}<{', '.join(kept + [arg])}, …>") > max_len:
            break
        kept.append(arg)
    if not kept:
        return f"{head}<…>", False
    return f"{head}<{', '.join(kept)}, …>", any(not _is_trivial(a) for a in kept)


def short_kernel_name(name: Any, max_len: int = 70) -> str:
    """A readable kernel name of at most ``max_len`` characters.

    The return type, parameter lists, lambdas and the at/native/std/c10 namespaces go; library
    namespaces (cudnn::, cutlass::) stay. If that is still too long, the leading template arguments
    that fit are kept when they include a meaningful one
    (``unrolled_elementwise_kernel<direct_copy_kernel_cuda, array<char*, 2ul>, 4, …>``); otherwise sizes,
    dtypes and TensorIterator plumbing are elided (``elementwise_kernel<…, gpu_kernel_impl_nocast<
    direct_copy_kernel_cuda>>``, ``reduce_kernel<…, ReduceOp<…, MeanOps<…>, …>>``). Names without
    templates (nvjet_*, sm90_xmma_*, triton_*) are only truncated, keeping their start.
    """
    s = text(name, default="")
    if not s:
        return DASH
    if _COMPILED_GRAPH.match(s):  # a CPU-only trace lists its ops as the "kernels"
        return short_op_name(s)
    if s.startswith("void "):
        s = s[len("void "):]
    s = _LAMBDA.sub("", s)
    s = _OPERATOR_CALL.sub("", s)
    s = _LAMBDA.sub("", s)
    s = _drop_param_lists(s)
    s = _BORING_NAMESPACES.sub("", s)
    s = re.sub(r"\s+", " ", s).replace("> >", ">>").replace("> >", ">>").strip()
    if len(s) > max_len and _template_parts(s) is not None:
        prefix, meaningful = _fit_prefix(s, max_len)
        elided = _elide_trivial(s)
        if meaningful or _template_parts(elided) == (elided.split("<", 1)[0], ["…"]):
            s = prefix
        else:
            s = elided
    if len(s) > max_len:
        s = s[: max_len - 1] + "…"
    return s


_COMPILED_GRAPH = re.compile(r"^## Call CompiledFxGraph (\w+) ##$")
_INDUCTOR_FILE = re.compile(r"^(?P<dir>.*?torchinductor_[^/]*/|.*?/)?(?P<sub>[a-z0-9]{2}/)?(?P<file>c[a-z0-9]{40,})\.py"
                            r"(?P<rest>:\d+.*)$")


def short_op_name(name: Any, hash_chars: int = 8) -> str:
    """An op name that fits one line: Inductor's ``## Call CompiledFxGraph <52-character hash> ##`` becomes
    ``CompiledFxGraph fx5y4x2v…`` (the document keeps the full name); other names are unchanged."""
    s = text(name)
    mt = _COMPILED_GRAPH.match(s)
    if mt:
        h = mt.group(1)
        return f"CompiledFxGraph {h[:hash_chars]}…" if len(h) > hash_chars else f"CompiledFxGraph {h}"
    return s


def launcher_name(row: Any) -> str | None:
    """What launched a top kernel or copy source (``op``), shortened, "annotation NAME" where it is the
    user annotation around the launch rather than a CPU op (``op_basis``); None when unknown."""
    op = get(row, "op")
    if not op:
        return None
    return launcher_text(short_op_name(op), get(row, "op_basis"))


def short_source(source: Any) -> str:
    """A source line that fits one line: Inductor's generated files
    (``/tmp/torchinductor_root/zs/czs3xseugij2….py:104 call``) become ``inductor czs3xseu….py:104 call``."""
    s = text(source)
    mt = _INDUCTOR_FILE.match(s)
    if mt and (mt.group("dir") and "torchinductor_" in mt.group("dir") or mt.group("sub")):
        return f"inductor {mt.group('file')[:9]}….py{mt.group('rest')}"
    return s


def fit_name(name: str, width: int = 42) -> str:
    """An op name for a terminal column: one longer than ``width`` loses its middle to ``…``
    (``aten::_scaled_dot_pro…flash_attention_for_cpu_backward``) instead of wrapping inside a word;
    the document keeps the full name."""
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return name[:head] + "…" + name[len(name) - (width - 1 - head):]


def fit_source(source: Any, width: int = 42) -> str:
    """A source line for a terminal column of ``width`` characters, never broken inside a path.

    :func:`short_source`, then a path under the current directory relative to it, then, if
    still too long, the leading folders replaced by ``…/`` (the file name, line and function
    are kept whole). The document keeps the full path."""
    s = short_source(source)
    path, sep, rest = s.partition(" ")
    file, colon, line = path.rpartition(":")
    if not colon or not line.isdigit():
        file, line = path, ""
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = ""
    if cwd and file.startswith(cwd.rstrip("/") + "/"):
        file = file[len(cwd.rstrip("/")) + 1:]
    tail = (f":{line}" if line else "") + sep + rest
    parts = file.split("/")
    keep = len(parts)
    while keep > 1 and len("/".join(parts[-keep:])) + len(tail) + (2 if keep < len(parts) else 0) > width:
        keep -= 1
    shown = "/".join(parts[-keep:])
    return ("…/" if keep < len(parts) else "") + shown + tail


# --- rows shared by both renderers -----------------------------------------


def steps_line(doc: Document) -> str:
    steps = as_dict(doc.get("steps"))
    if not steps:
        return "no step information"
    if as_list(doc.get("ranks")):  # a job: steps per rank
        line = _ranks.job_steps_line(as_dict(doc))
        if line:
            return line
    if steps.get("synthetic"):
        return "whole trace analysed as one window (no ProfilerStep#N markers)"
    count = num(steps.get("count"))
    total = num(steps.get("total"))
    if count is None:
        return "no step information"
    line = f"{int(count)} of {int(total) if total is not None else '?'} analysed"
    ids = as_list(steps.get("ids"))
    if ids:
        line += f" ({'id' if len(ids) == 1 else 'ids'} {compress_ids(ids)})"
    cv = num(as_dict(steps.get("variation")).get("cv"))
    if cv is not None:
        line += f"; their times vary by {cv:.0%} (coefficient of variation)"
    return line


def device_line(doc: Document) -> str:
    devices = [d for d in as_list(get(doc, "trace", "devices")) if isinstance(d, dict)]
    name = get(doc, "trace", "device")
    if not devices:
        if name:
            return str(name)
        # "CPU only" is what a CPU-time analysis found; a document without a trace analysis (its trace
        # could not be analysed, or every rank of a job failed) does not say
        return "none (CPU only)" if get(doc, "trace", "time_basis") == "cpu" else "unknown (no trace analysis)"
    first = devices[0]
    names = [text(d.get("name"), "unknown device") for d in devices]
    title = str(name) if name else names[0]
    if len(devices) > 1:
        title = f"{len(devices)} x {names[0]}" if len(set(names)) == 1 else ", ".join(names)
    details = []
    mem = num(first.get("memory_bytes"))
    if mem:
        details.append(f"{mem / 2**30:.1f} GiB")
    cc = first.get("compute_capability")
    if cc:
        details.append(f"compute {cc}")
    sms = num(first.get("sms"))
    if sms:
        details.append(f"{int(sms)} SMs")
    return f"{title} ({', '.join(details)})" if details else title


def distributed_line(doc: Document) -> str | None:
    dist = as_dict(get(doc, "trace", "distributed"))
    if not dist:
        return None
    parts = []
    rank, world = dist.get("rank"), dist.get("world_size")
    if rank is not None:
        parts.append(f"rank {rank}" + (f" of {world}" if world is not None else ""))
    elif world is not None:
        parts.append(f"world size {world}")
    if dist.get("backend"):
        parts.append(f"backend {dist['backend']}")
    return ", ".join(parts) or None


def trace_parts(doc: Document) -> tuple[list[str], str]:
    """(trace paths, "9.4 MB, 28,804 events"-style details; empty for several files or none known)."""
    trace = as_dict(doc.get("trace"))
    paths = [str(p) for p in as_list(trace.get("paths")) if p]
    extras = []
    # The files' size on disk (several files: their sum); documents without it have only the size of
    # the JSON read (larger than a .gz file), labelled as such.
    size, what = num(trace.get("file_bytes")), ""
    if not size:
        size, what = num(trace.get("bytes")), " of JSON"
    if size:
        extras.append((f"{size / 1e6:,.1f} MB" if size >= 1e6 else f"{size / 1e3:,.1f} kB") + what)
    events = num(trace.get("events"))
    if events:
        extras.append(f"{int(events):,} events")
    if extras and len(paths) > 1:
        extras[-1] += " in all"
    return paths, ", ".join(extras)


def trace_line(doc: Document, max_paths: int = 4) -> str:
    paths, extras = trace_parts(doc)
    if not paths:
        return "(unknown)"
    if len(paths) == 1:
        return f"{paths[0]} ({extras})" if extras else paths[0]
    shown = paths[:max_paths]
    more = f" (+{len(paths) - len(shown)} more)" if len(paths) > len(shown) else ""
    return f"{len(paths)} files" + (f" ({extras})" if extras else "") + ": " + ", ".join(shown) + more


def header_facts(doc: Document) -> list[tuple[str, str]]:
    """(label, value) pairs for the report header, in display order."""
    facts = [("Trace", trace_line(doc)), ("Device", device_line(doc))]
    dist = distributed_line(doc)
    if dist:
        facts.append(("Distributed", dist))
    facts.append(("Steps", steps_line(doc)))
    if get(doc, "trace", "has_python_stacks") is False:
        facts.append(("Sources", "no Python stacks in the trace (perfkit profile samples them; or record with with_stack=True)"))
    return facts


def excluded_steps(doc: Document) -> list[tuple[str, str]]:
    out = []
    for e in as_list(get(doc, "steps", "excluded")):
        if isinstance(e, dict):
            out.append((text(e.get("id"), "?"), text(e.get("reason"), "no reason given")))
    return out


def warnings_list(doc: Document) -> list[str]:
    warns = [str(w) for w in as_list(get(doc, "trace", "warnings")) if w]
    if get(doc, "steps", "synthetic"):
        # The Steps line already says this; do not print it twice.
        warns = [w for w in warns if "analysed as one window" not in w]
    return warns


def phase_rows(doc: Document) -> list[tuple[str, float | None, float | None]]:
    """(label, GPU ms/step, share of GPU busy) for each phase, in forward/backward/optimizer/other order.

    The "unknown" row is listed only when some GPU time has no phase; when nothing decided
    any phase (``phases_unknown.whole_trace``) only that row is listed, never zeros for the others.
    """
    phases = as_dict(doc.get("phases"))
    keys = [k for k in PHASE_LABELS if k in phases] + [k for k in phases if k not in PHASE_LABELS]
    whole = bool(get(doc, "phases_unknown", "whole_trace"))
    rows = []
    for k in keys:
        if not isinstance(phases.get(k), dict):
            continue
        ms, share = num(get(phases, k, "ms_per_step")), num(get(phases, k, "share"))
        if k == "unknown" and not ms:
            continue
        if whole and k != "unknown":
            continue
        rows.append((label(k, PHASE_LABELS), ms, share))
    return rows


def phase_evidence_line(doc: Document) -> str | None:
    """"Backward: autograd range/thread 93%, annotation 7%; Forward: position before/after backward 100%"."""
    ev = as_dict(doc.get("phases_evidence"))
    parts = []
    for k in [k for k in PHASE_LABELS if k in ev] + [k for k in ev if k not in PHASE_LABELS]:
        shares = as_dict(ev.get(k))
        items = sorted(((num(v) or 0.0, e) for e, v in shares.items()), reverse=True)
        text_ = ", ".join(f"{label(e, EVIDENCE_LABELS)} {v * 100:.0f}%" for v, e in items if v > 0)
        if text_:
            parts.append(f"{label(k, PHASE_LABELS)}: {text_}")
    return "; ".join(parts) or None


def phase_unknown_note(doc: Document) -> str | None:
    """Why some (or all) GPU time has no phase, or None."""
    unk = as_dict(doc.get("phases_unknown"))
    if not unk:
        return None
    reason = str(unk.get("reason") or "no evidence")
    if unk.get("whole_trace"):
        return f"Phases unknown for the whole trace: {reason}."
    return (f"{fmt_pct(unk.get('share'))}% of {basis_words(doc).word} time has no phase (unknown): {reason}. "
            "The other phases are lower bounds.")


def category_rows(doc: Document) -> list[tuple[str, str, float | None, float | None]]:
    """(key, label, GPU ms/step, share) for categories with time, largest first."""
    cats = as_dict(doc.get("categories"))
    rows: list[tuple[str, str, float | None, float | None]] = []
    for k, v in cats.items():
        ms = num(get(v, "ms_per_step"))
        if ms:
            rows.append((k, label(k, CATEGORY_LABELS), ms, num(get(v, "share"))))
    rows.sort(key=lambda r: -(r[2] or 0.0))
    return rows


#: Overview roles that need device work (kernels, copies, memsets and the runtime calls that launch them).
DEVICE_ROLES = ("kernel", "memcpy", "memset", "runtime")


def overview_rows(doc: Document) -> list[tuple[str, float | None, float | None]]:
    """(role label, ms/step, share of step) in torch-tb-profiler's priority order.

    On a trace with no device work (``time_basis`` "cpu") the roles that need device work are left
    out (:func:`overview_note` says so once): they cannot apply, and five rows of 0.00 say nothing.
    """
    ov = as_dict(doc.get("overview"))
    keys = [k for k in ROLE_LABELS if k in ov] + [k for k in ov if k not in ROLE_LABELS]
    if get(doc, "trace", "time_basis") == "cpu":
        keys = [k for k in keys if k not in DEVICE_ROLES or num(get(ov, k, "ms_per_step"))]
    return [
        (label(k, ROLE_LABELS), num(get(ov, k, "ms_per_step")), num(get(ov, k, "share")))
        for k in keys
        if isinstance(ov.get(k), dict)
    ]


def overview_note(doc: Document) -> str:
    """The note under the Overview table (roles left out on a CPU-only trace, and why)."""
    note = "Roles in priority order: each gets the part of the step no role above it took, so they add up to the step time."
    if get(doc, "trace", "time_basis") == "cpu":
        gone = [label(k, ROLE_LABELS) for k in DEVICE_ROLES
                if isinstance(get(doc, "overview", k), dict) and not num(get(doc, "overview", k, "ms_per_step"))]
        if gone:
            note += f" {', '.join(gone)}: not shown, the trace has no device work (they need kernels, copies or launches)."
    return note


def copy_rows(doc: Document) -> list[tuple[str, str, str, str, str]]:
    """(direction, copies/step, of which copy-engine/step, MB/step, ms/step); empty when no copies at all.

    Copy kernels (dtype casts, contiguous()) record no byte count, so MB/step is "-" where
    copies exist but no bytes were recorded.
    """
    copies = as_dict(doc.get("copies"))
    rows = []
    any_copies = False
    for key in ("h2d", "d2h", "d2d"):
        d = copies.get(key)
        if not isinstance(d, dict):
            continue
        count = num(d.get("count_per_step")) or 0.0
        n_bytes = num(d.get("bytes_per_step"))
        any_copies = any_copies or count > 0 or bool(num(d.get("ms_per_step")))
        mb = DASH if (count > 0 and not n_bytes) else fmt_mb(n_bytes)
        rows.append((
            label(key, DIRECTION_LABELS), fmt_count(d.get("count_per_step")),
            fmt_count(d.get("memcpy_engine_count_per_step")), mb, fmt_ms(d.get("ms_per_step")),
        ))
    return rows if any_copies else []


def copy_sources(doc: Document, top: int) -> list[OpRow]:
    return cast("list[OpRow]", [s for s in as_list(get(doc, "copies", "sources")) if isinstance(s, dict)][: max(top, 0)])


def top_ops(doc: Document, top: int) -> list[OpRow]:
    return cast("list[OpRow]", [o for o in as_list(doc.get("top_ops")) if isinstance(o, dict)][: max(top, 0)])


def top_kernels(doc: Document, top: int) -> list[OpRow]:
    return cast("list[OpRow]", [k for k in as_list(doc.get("top_kernels")) if isinstance(k, dict)][: max(top, 0)])


def _source_lines(doc: Document) -> set[str]:
    """The ``source_line`` kinds of the document's listed sources (top ops, kernels, copy sources, frames)."""
    kinds = set()
    for key in ("top_ops", "top_kernels", "frames"):
        for r in as_list(doc.get(key)):
            if isinstance(r, dict) and r.get("source") and r.get("source_line"):
                kinds.add(str(r["source_line"]))
    for r in as_list(get(doc, "copies", "sources")):
        if isinstance(r, dict) and r.get("source") and r.get("source_line"):
            kinds.add(str(r["source_line"]))
    return kinds


def source_note(doc: Document) -> str | None:
    """What the source lines mean, when some are not call sites (torch's Python tracer: ``with_stack=True``)."""
    kinds = _source_lines(doc)
    parts = []
    if "def" in kinds:
        parts.append("\"(def)\" marks a function's definition line: torch's Python tracer records where a function "
                     "is defined, not the line that called the op")
    if "none" in kinds:
        parts.append("\":?\" marks a function that was already running when tracing started: its line is unknown")
    if not parts:
        return None
    return "Sources: " + "; ".join(parts) + ". perfkit profile samples the lines that call the ops (stack samples)."




def compiled_graph_rows(doc: Document, top: int = 10) -> list[tuple[str, str, str, str, str]]:
    """(graph with its Dynamo region, phase, GPU ms/step, calls/step, calling user code or "unknown")
    per torch.compile'd graph (``compiled_graphs``); the graph's full name stays in the document."""
    rows = []
    for g in as_list(doc.get("compiled_graphs"))[: max(top, 0)]:
        if not isinstance(g, dict):
            continue
        name = text(g.get("short_name")) if g.get("short_name") else short_op_name(g.get("name"))
        region = text(g.get("region"), "")
        if region.startswith("Torch-Compiled Region: "):
            name += f" (region {region[len('Torch-Compiled Region: '):]})"
        rows.append((name, text(g.get("phase"), "unknown"), fmt_ms(g.get("ms_per_step")), fmt_count(g.get("calls_per_step")),
                     short_source(g.get("source")) if g.get("source") else "unknown"))
    return rows




def findings(doc: Document) -> list[Finding]:
    """The findings, most important first (the document's order)."""
    return cast("list[Finding]", [f for f in as_list(doc.get("findings")) if isinstance(f, dict)])


def breakdown_line(doc: Document) -> str | None:
    """"Forward 34.0% (25.14 ms) / Backward 62.1% (45.93 ms) / ...; GPU busy ... of a ... ms step (means of N steps)"."""
    parts = []
    if get(doc, "phases_unknown", "whole_trace"):
        parts.append("phases unknown (no evidence)")
    else:
        # A phase with no work is said once, in words: "Optimizer 0.0% (0.00 ms)" read as a fast optimizer
        # on a capture with none (DeepSeek's DualPipe chunk, an inference trace).
        none = []
        for name, ms, share in phase_rows(doc):
            if ms is not None and ms <= 0 and name != "Unknown":
                none += [] if name == "Other" else [name.lower()]
                continue
            parts.append(f"{name} {fmt_pct(share)}% ({fmt_ms(ms)} ms)")
        if parts and none:
            parts[-1] += f", no {' or '.join(none)} work"
    stats = step_statistics(doc)
    busy = stats["active_ms"] if stats else num(get(doc, "device", "busy_ms_per_step"))
    if not parts or not busy:
        return None
    line = " / ".join(parts) + f"; {basis_words(doc).word} busy {fmt_ms(busy)} ms per step"
    if stats and stats["step_ms"]:
        line += f" of a {fmt_ms(stats['step_ms'])} ms step ({stats['basis']})"
    return line


def leading_ops(doc: Document) -> list[tuple[str, str, float | None, str | None]]:
    """The largest categories with, for each, the op launching most of its listed top kernels.

    Returns (category key, label, share, op or None), at most three. The op is taken from
    ``top_kernels`` only (the document carries no per-category op table), so it is a pointer,
    not a complete account.
    """
    by_cat: dict[str, dict[str, float]] = {}
    ranges = set()  # the launchers that are annotations
    for k in as_list(doc.get("top_kernels")):
        cat, op, ms = get(k, "category"), launcher_name(k), num(get(k, "ms_per_step"))
        if cat and op and ms:
            by_cat.setdefault(str(cat), {}).setdefault(str(op), 0.0)
            by_cat[str(cat)][str(op)] += ms
            if get(k, "op_basis") == OP_BASIS_ANNOTATION:
                ranges.add(str(op))
    out = []
    for key, name, _ms, share in category_rows(doc)[:3]:
        ops = by_cat.get(key)
        op = max(ops, key=lambda o: ops[o]) if ops else None
        out.append((key, name, share, op))
    # An annotation that leads several categories is a range around most of the step (vLLM's and
    # SGLang's step ranges around a graph replay), not a pointer to what to look at: left out here.
    leads = [op for _k, _n, _s, op in out if op in ranges]
    return [(k, n, s, None if op in leads and leads.count(op) > 1 else op) for k, n, s, op in out]


def leading_ops_line(doc: Document) -> str | None:
    items = leading_ops(doc)
    if not items:
        return None
    overlapped = communication_overlap(doc)
    parts = []
    for i, (key, name, share, op) in enumerate(items, 1):
        notes = ([f"{fmt_pct(overlapped['overlapped_share'])}% of it overlapped with compute"]
                 if key == "communication" and overlapped else []) + ([f"led by {op}"] if op else [])
        parts.append(f"{i}. {name} {fmt_pct(share)}%" + (f" ({'; '.join(notes)})" if notes else ""))
    return "; ".join(parts)


#: Communication overlapped at least this much is said so beside its share of GPU time.
OVERLAP_WORTH_SAYING = 0.25


def communication_overlap(doc: Document) -> dict[str, float] | None:
    """The communication kernels' time per step and the part of it no compute kernel overlapped
    (``communication.ms_per_step`` / ``exposed_ms_per_step``, GPU time), when a quarter or more of it
    was overlapped: ``{"ms", "exposed_ms", "overlapped_share", "cpu"}`` (``cpu``: host collectives, a
    CPU-basis trace); None otherwise or when unknown.

    The category table splits GPU time between kernels running at once, so communication that runs
    beside compute counts for part of its time there, and neither figure says how much of it the
    step waits for: on DeepSeek's DualPipe profile the table gave communication 45% of GPU time while
    4.2 of its 113 ms per step had no compute beside it."""
    comm = as_dict(doc.get("communication"))
    ms, exposed = num(comm.get("ms_per_step")), num(comm.get("exposed_ms_per_step"))
    if not ms or exposed is None or ms <= 0:
        return None
    share = max(ms - exposed, 0.0) / ms
    if share < OVERLAP_WORTH_SAYING:
        return None
    return {"ms": ms, "exposed_ms": exposed, "overlapped_share": share, "cpu": comm.get("basis") == "cpu"}


def category_notes(doc: Document) -> list[str]:
    """Sentences under the category table: how much communication overlapped compute."""
    c = communication_overlap(doc)
    if c is None:
        return []
    if c["cpu"]:  # gloo / c10d host ranges against the training threads' other ops (docs/analysis.md)
        ran, beside, table = "A collective ran", "no other op", "CPU time between ops running at once"
    else:
        ran, beside, table = "A communication kernel ran", "no compute kernel", "GPU time between kernels running at once"
    return [f"{ran} during {fmt_ms(c['ms'])} ms of each step, and {beside} beside it during "
            f"{fmt_ms(c['exposed_ms'])} ms of those ({fmt_pct(c['overlapped_share'])}% overlapped). The table splits "
            f"{table}, so it shows neither figure."]


def top_kernels_note(doc: Document, top: int) -> str | None:
    """Why a listed kernel's GPU ms is less than its calls times its average duration: kernels running
    at the same time split the busy time (communication beside compute), while Avg µs is a call's own
    duration. Names the kernel where the two differ most; None when no listed kernel overlapped, and on
    a CPU-basis document (whose rows are CPU ops, their time split with the ops nested in them)."""
    if basis_words(doc) is not GPU_WORDS:
        return None
    worst: tuple[float, Any, float, float, float, float] | None = None
    for k in top_kernels(doc, top):
        ms, calls, avg = num(get(k, "ms_per_step")), num(get(k, "calls_per_step")), num(get(k, "avg_us"))
        if ms is None or not calls or avg is None:
            continue
        own = calls * avg / 1000.0
        if own > 1.02 * ms + 0.001 and (worst is None or own - ms > worst[0]):
            worst = (own - ms, get(k, "name"), ms, calls, avg, own)
    if worst is None:
        return None
    _, name, ms, calls, avg, own = worst
    return (f"{basis_words(doc).word} ms is each kernel's share of busy time: kernels running at the same time split "
            f"it. Avg µs is a call's own duration (e.g. {short_kernel_name(name)}: {fmt_count(calls)} "
            f"call{'' if fmt_count(calls) == '1' else 's'} of "
            f"{fmt_us(avg)} µs = {fmt_ms(own)} ms per step, {fmt_ms(ms)} ms of it counted here).")


def _kept_rows(doc: Document) -> list[dict[str, Any]]:
    return [r for r in as_list(get(doc, "steps", "table")) if isinstance(r, dict) and r.get("kept") is not False]


def _mean_of(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [v for v in (num(r.get(key)) for r in rows) if v is not None]
    return sum(vals) / len(vals) if vals else None


def step_statistics(doc: Document) -> dict[str, Any] | None:
    """The step summary's figures, all means over the analysed steps (docs/analysis.md "Statistics").

    ``step_ms`` (the step's window on the device timeline), ``active_ms`` (time in it with some device
    op running) and ``idle_ms`` (none running) come from one set of steps, so busy + idle = step;
    ``wall_ms`` is the CPU range of ``ProfilerStep#N``; ``spread`` holds each one's median and range
    across the steps. Documents written before these fields existed get them from the step table
    (``window_ms - idle_ms`` is the busy part of each step). None when nothing is known.
    """
    steps, gpu = as_dict(doc.get("steps")), as_dict(doc.get("device"))
    rows = _kept_rows(doc)
    step_ms = num(steps.get("window_ms_mean"))
    if step_ms is None:
        step_ms = _mean_of(rows, "window_ms")
    idle_ms = num(gpu.get("idle_ms_per_step"))
    active_ms = num(gpu.get("active_ms_per_step"))
    if active_ms is None and step_ms is not None and idle_ms is not None:
        active_ms = max(step_ms - idle_ms, 0.0)
    wall_ms = num(steps.get("wall_ms_mean"))
    if wall_ms is None:
        wall_ms = _mean_of(rows, "wall_ms")
    if step_ms is None and idle_ms is None and active_ms is None:
        return None
    spread = as_dict(steps.get("spread"))
    count = num(steps.get("count"))
    n = int(count) if count is not None else len(rows)
    if not spread and rows:  # an older document: the same figures from its step table
        from statistics import median

        def col(key: str) -> dict[str, float] | None:
            vals = [v for v in (num(r.get(key)) for r in rows) if v is not None]
            return {"min": min(vals), "median": median(vals), "max": max(vals)} if vals else None

        spread = {"window_ms": col("window_ms"), "wall_ms": col("wall_ms")}
    # The step's host range differs from its device window only where device work outlasts it.
    wall_differs = any(
        num(r.get("wall_ms")) is not None and num(r.get("window_ms")) is not None
        and abs(num(r.get("wall_ms")) - num(r.get("window_ms"))) > 1e-3  # type: ignore[operator]
        for r in rows) if rows else (wall_ms is not None and step_ms is not None and abs(wall_ms - step_ms) > 1e-3)
    return {
        "n": n, "basis": f"mean{'s' if n != 1 else ''} of {n} step{'s' if n != 1 else ''}",
        "step_ms": step_ms, "active_ms": active_ms, "idle_ms": idle_ms, "wall_ms": wall_ms,
        "wall_differs": wall_differs, "spread": spread,
        "attributed_ms": num(gpu.get("busy_ms_per_step")), "utilization": num(gpu.get("utilization")),
    }


def spread_text(spread: Any) -> str:
    """"median 12.30, 11.90-13.00" (range min-max across the analysed steps), or "" when unknown."""
    sp = as_dict(spread)
    lo, med, hi = num(sp.get("min")), num(sp.get("median")), num(sp.get("max"))
    if lo is None or hi is None:
        return ""
    if hi - lo < 0.005:
        return "the same in every step"
    return (f"median {fmt_ms(med)}, " if med is not None else "") + f"range {fmt_ms(lo)}-{fmt_ms(hi)}"


def summary_rows(doc: Document) -> list[tuple[str, str, str]]:
    """(metric, value, unit and spread) rows of the step summary; empty when the document has neither steps nor gpu.

    Every figure is a mean over the same analysed steps, so GPU busy + GPU idle = the step time; the
    unit column carries each figure's median and range across the steps. The host (CPU) time of the
    step is listed only where it differs from the step's device window (never on a CPU-only trace,
    where the two are the same range).
    """
    stats = step_statistics(doc)
    if not stats:
        return []
    spread = as_dict(stats["spread"])

    def unit(key: str) -> str:
        extra = spread_text(spread.get(key)) if stats["n"] > 1 else ""
        return f"ms ({extra})" if extra else "ms"

    w = basis_words(doc).word
    rows = [
        (f"Step time ({stats['basis']})", fmt_ms(stats["step_ms"]), unit("window_ms")),
        (f"  {w} busy (some op running)", fmt_ms(stats["active_ms"]), unit("active_ms")),
        (f"  {w} idle (nothing running)", fmt_ms(stats["idle_ms"]), unit("idle_ms")),
        (f"{w} utilization (busy / step)", fmt_pct(stats["utilization"]), "%"),
    ]
    if stats["wall_differs"]:
        rows.append(("Host time of the step (CPU)", fmt_ms(stats["wall_ms"]), unit("wall_ms")))
    return rows


def summary_notes(doc: Document) -> list[str]:
    """Why two figures of the step summary differ where a reader would expect them to agree."""
    stats = step_statistics(doc)
    notes: list[str] = []
    if not stats:
        return notes
    w = basis_words(doc).word
    att, act = stats["attributed_ms"], stats["active_ms"]
    if att is not None and act is not None and abs(att - act) > max(0.01, 0.01 * act):
        more = att > act
        notes.append(
            f"The phase and category tables split {fmt_ms(att)} ms of {w} time per step: the time of the ops "
            "launched in each step, each device (or CPU thread) counted on its own"
            + (", so work running at once on several of them adds up to more than the busy time above."
               if more else ", while busy above also counts work of excluded steps or of no step running in the "
               "step's window.")
        )
    if stats["wall_differs"]:
        notes.append("Host time of the step is the ProfilerStep range on the CPU; the step time is the step's window "
                     f"on the {w}: from the step's start (or later, while earlier {w} work still runs) to the end of "
                     f"its last {w} work (the {w} runs behind the CPU).")
    return notes


def step_notes(doc: Document) -> list[str]:
    """Plain sentences about the step summary's figures and the basis' time not counted in the analysed steps."""
    notes = summary_notes(doc)
    w = basis_words(doc).word
    pre_count = num(get(doc, "device", "launched_before_window", "count"))
    pre_ms = num(get(doc, "device", "launched_before_window", "ms"))
    if pre_count:
        notes.append(
            f"{int(pre_count):,} {w} ops ({fmt_ms(pre_ms)} ms in total) were launched before the profiled "
            "window and are not counted in any step."
        )
    outside = num(get(doc, "device", "outside_kept_steps_ms"))
    if outside:
        notes.append(f"{fmt_ms(outside)} ms of {w} work in total fell outside the analysed steps and is not counted.")
    notes.extend(recording_notes(doc))
    return notes


def recording_notes(doc: Document) -> list[str]:
    """What recording the trace cost the host (estimated from the trace, measured by perfkit profile)."""
    rec = as_dict(doc.get("recording"))
    w = basis_words(doc).word
    notes: list[str] = []
    if rec.get("estimated_cost_ms_per_step") is not None:
        ev = as_dict(rec.get("events_per_step"))
        notes.append(
            f"Recording the trace cost the host about {fmt_ms(rec.get('estimated_cost_ms_per_step'))} ms per step "
            f"(estimate: {fmt_count(ev.get('ops_and_runtime_calls'))} ops and runtime calls, "
            f"{fmt_count(ev.get('python_frames'))} Python frames, {fmt_count(ev.get('memory_events'))} memory events "
            f"per step{'; ' + str(rec['not_counted']) + ' not counted' if rec.get('not_counted') else ''}); "
            f"without it the host works about {fmt_ms(rec.get('host_ms_without_recording'))} ms per step "
            f"against {fmt_ms(rec.get('gpu_busy_ms_per_step'))} ms of {w} work."
        )
    measured = as_dict(rec.get("measured"))
    if measured.get("unprofiled_step_ms") is not None:
        on = " on the GPU" if measured.get("step_basis") == "gpu" else ""
        notes.append(
            f"Unprofiled steps took {fmt_ms(measured.get('unprofiled_step_ms'))} ms{on} (median of "
            f"{fmt_count(measured.get('unprofiled_steps'))}), traced steps {fmt_ms(measured.get('profiled_step_ms'))} ms: "
            + (f"the run is {w}-bound without the profiler." if measured.get("gpu_bound_without_recording")
               else f"the unprofiled step is longer than the {w}'s work.")
        )
    return notes


def runtime_rows(doc: Document) -> list[tuple[str, str, str]]:
    """(label, value, unit) rows for what the live run measured (``perfkit profile``), if present."""
    rt = as_dict(doc.get("runtime"))
    if not rt:
        return []
    rows: list[tuple[str, str, str]] = []
    steps = as_dict(rt.get("steps"))
    source = rt.get("step_source")
    found = {"autograd backward": "found by autograd backward (no torch.optim optimizer)"}.get(
        str(source), f"found by {source}") if source else "no step boundary seen"
    rows.append(("Steps run", fmt_count(rt.get("steps_seen")), found))
    step_ms, basis = run_step_time(steps)
    if basis == "gpu":
        rows.append(("Step time, median (run timer)", fmt_ms(step_ms), "ms on the GPU (CUDA events)"))
        ahead = (": the host queues steps faster than the GPU runs them (it never waits in the step), "
                 "so this is not the step time") if steps.get("host_ahead") else ""
        rows.append(("Host wall time per step, median", fmt_ms(steps.get("wall_ms_median")), "ms" + ahead))
    else:
        rows.append(("Step time, median (run timer)", fmt_ms(step_ms), "ms, host wall time"))
    rows.extend(step_timing_rows(steps))
    if steps.get("first_step_ms") is not None:
        rows.append(("First step", fmt_ms(steps.get("first_step_ms")), "ms"))
    tp = as_dict(rt.get("throughput"))
    tokens, samples = num(tp.get("tokens_per_s")), num(tp.get("samples_per_s"))
    if tokens is not None:
        rows.append(("Throughput", f"{tokens:,.0f}", "tokens/s"))
    if samples is not None:
        rows.append(("Throughput", f"{samples:,.1f}", "samples/s"))
    rows.extend(flops_rows(doc))
    mem = as_dict(rt.get("memory"))
    unknown = as_dict(mem.get("unknown"))
    for key, label in (
        ("weights_bytes", "Weights"),
        ("gradients_bytes", "Gradients"),
        ("optimizer_state_bytes", "Optimizer state"),
        ("activations_and_temporaries_bytes_estimate", "Activations + temporaries (peak - above)"),
        ("peak_bytes", "Peak allocated"),
        ("reserved_bytes", "Reserved by the allocator"),
    ):
        if mem.get(key) is not None:
            rows.append((label, fmt_mb(mem.get(key)), "MB"))
        elif key in unknown:  # never 0: say it is not known, and why
            rows.append((label, "unknown", text(unknown.get(key), "")))
    phases = as_dict(rt.get("phases"))
    for name, entry in phases.items():
        if isinstance(entry, dict):
            value = entry.get("gpu_ms_median", entry.get("wall_ms_median"))
            unit = "ms GPU, median per call" if "gpu_ms_median" in entry else "ms wall, median per call"
            rows.append((f"Phase {name}", fmt_ms(value), unit))
    return rows  # runtime.analysis_error is among the header's warnings


def step_timing_rows(steps: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The run timer's traced-against-unprofiled step time and the spread of the unprofiled steps."""
    rows: list[tuple[str, str, str]] = []
    # documents before step_basis compared host wall times
    unit = "ms on the GPU" if steps.get("step_basis") == "gpu" else "ms wall"
    if num(steps.get("unprofiled_ms_median")) is not None and num(steps.get("profiled_ms_median")) is not None:
        where = text(steps.get("unprofiled_where"), "")
        rows.append(("Unprofiled steps, median", fmt_ms(steps.get("unprofiled_ms_median")),
                     f"{unit}, {len(as_list(steps.get('unprofiled_steps')))} steps {where}".rstrip()))
        rows.append(("Traced steps, median", fmt_ms(steps.get("profiled_ms_median")),
                     f"{unit}, {len(as_list(steps.get('profiled_steps')))} steps (run timer)"))
        slowdown = num(steps.get("slowdown"))
        if slowdown is not None:
            rows.append(("Traced vs unprofiled", f"{slowdown - 1:+.0%}",
                         "step time with the profiler recording: the trace's figures carry this"))
    sp = as_dict(steps.get("spread"))
    if num(sp.get("cv")) is not None:
        rows.append(("Step-time spread (CV)", fmt_pct(sp.get("cv")),
                     f"% over {fmt_count(sp.get('steps'))} unprofiled steps, {fmt_ms(sp.get('min_ms'))}-"
                     f"{fmt_ms(sp.get('max_ms'))} ms" + (" (unsteady)" if sp.get("unstable") else "")))
    return rows


def runtime_note(doc: Document) -> str | None:
    """Why the run timer's step time differs from the trace's (both appear in one report)."""
    rt_ms, basis = run_step_time(as_dict(get(doc, "runtime", "steps")))
    rt_ms = num(rt_ms)
    stats = step_statistics(doc)
    if rt_ms is None or not stats or not stats["step_ms"]:
        return None
    on = "on the GPU (CUDA events at the step boundaries)" if basis == "gpu" else "by the host's clock"
    return (f"The run timer times every step of the run {on}, most of them without the profiler: median "
            f"{fmt_ms(rt_ms)} ms. The step summary above is the mean of the {stats['n']} traced "
            f"step{'s' if stats['n'] != 1 else ''} ({fmt_ms(stats['step_ms'])} ms), recorded with the profiler "
            "on, which slows the host.")


def fmt_flops(value: Any) -> str:
    """FLOPs with an SI prefix: "1.29 GFLOP"; "-" when unknown."""
    v = num(value)
    if v is None:
        return DASH
    for scale, unit in ((1e15, "PFLOP"), (1e12, "TFLOP"), (1e9, "GFLOP"), (1e6, "MFLOP"), (1e3, "kFLOP")):
        if abs(v) >= scale:
            return f"{v / scale:,.3g} {unit}"
    return f"{v:,.0f} FLOP"


def mfu_figures(doc: Document) -> dict[str, Any] | None:
    """FLOPs per step (``perfkit profile --flops``), the achieved rate and MFU against the device's peak.

    Returns None without a FLOP count. ``mfu`` is the run's own figure when it computed one (CUDA),
    else FLOPs / step time / peak with the peak from ``perfkit.peaks.PEAK_TFLOPS`` (data with
    the datasheets it comes from) for the trace's device and the dtype the run saw; where no peak is
    known (a CPU, a device or dtype not in the table) ``mfu`` is None and ``why`` says why: unknown,
    never 0. The step time is the run timer's median (``runtime.steps``: GPU time by CUDA events when
    measured, else wall time), the same one the run's own MFU uses.
    """
    rt = as_dict(doc.get("runtime"))
    flops = num(rt.get("flops_per_step"))
    if not flops or flops <= 0:
        return None
    steps = as_dict(rt.get("steps"))
    step_ms = num(run_step_time(steps)[0])
    out: dict[str, Any] = {"flops_per_step": flops, "step_ms": step_ms, "mfu": None, "why": None,
                           "tflops_per_s": flops / (step_ms / 1000.0) / 1e12 if step_ms else None,
                           "peak_tflops": num(rt.get("peak_tflops")), "dtype": rt.get("mfu_dtype"),
                           "device": get(doc, "trace", "device")}
    if num(rt.get("mfu")) is not None:
        out["mfu"] = num(rt.get("mfu"))
        return out
    if get(doc, "trace", "time_basis") == "cpu" or not out["device"]:
        out["why"] = "no peak for a CPU run (the peak table lists accelerators only)"
        return out
    from ..peaks import device_key, peak_tflops

    dtype = out["dtype"]
    if device_key(str(out["device"])) is None:
        out["why"] = f"no peak TFLOP/s known for {out['device']}"
        return out
    if dtype is None:
        out["why"] = "the dtype of the matrix products is not known"
        return out
    peak = peak_tflops(str(out["device"]), dtype)
    if peak is None:
        out["why"] = f"no {dtype} peak known for {out['device']}"
        return out
    out["peak_tflops"] = peak
    if out["tflops_per_s"] is not None:
        out["mfu"] = out["tflops_per_s"] / peak  # one rank's FLOPs on one rank's device
    else:
        out["why"] = "no step time measured"
    return out


def flops_rows(doc: Document) -> list[tuple[str, str, str]]:
    """(label, value, unit) rows: FLOPs per step, achieved TFLOP/s and MFU (unknown when no peak is known)."""
    f = mfu_figures(doc)
    if not f:
        return []
    rows = [("FLOPs per step (counted)", fmt_flops(f["flops_per_step"]), "matmul, conv, attention; fwd + bwd")]
    if f["tflops_per_s"] is not None:
        rows.append(("Achieved", f"{f['tflops_per_s']:,.3g}", "TFLOP/s (FLOPs / median step)"))
    if f["mfu"] is not None:
        peak = f"{f['peak_tflops']:,.1f} TFLOP/s" if f["peak_tflops"] else "peak"
        what = " ".join(str(x) for x in (f["dtype"], "peak", f"of {f['device']}" if f["device"] else None) if x)
        rows.append(("MFU", fmt_pct(f["mfu"]), f"% of {peak} ({what})"))
    else:
        rows.append(("MFU", "unknown", str(f["why"] or "no peak known")))
    return rows


MODULE_HEADERS = ("Module", "Type", "Calls", "Fwd ms", "Bwd ms", "First ms", "% time")


def module_rows(doc: Document) -> list[tuple[str, str, str, str, str, str, str]]:
    """One row per module timed by ``perfkit profile --modules`` (medians per call), in the run's order.

    "% time" is the module's share of all timed module time; a first call marked "*" was a slow
    outlier (compilation, lazy initialisation) and is left out of the medians.
    """
    rows = []
    for m_ in as_list(as_dict(doc.get("runtime")).get("modules")):
        if not isinstance(m_, dict):
            continue
        first = fmt_ms(m_.get("first_call_ms")) + ("*" if m_.get("first_call_outlier") else "")
        rows.append((text(m_.get("name")), text(m_.get("type")), fmt_count(m_.get("calls")),
                     fmt_ms(m_.get("forward_ms_median")), fmt_ms(m_.get("backward_ms_median")), first,
                     fmt_pct(m_.get("share"))))
    return rows


def modules_note(doc: Document) -> str | None:
    err = get(doc, "runtime", "modules_error")
    if err:
        return f"Module timers failed: {text(err)}"
    if not module_rows(doc):
        return None
    note = ("Medians per call of each top-level module's forward and backward, timed in the run (perfkit profile "
            "--modules); * marks a first call slower than steady state (left out of the medians).")
    mods = [m for m in as_list(get(doc, "runtime", "modules")) if isinstance(m, dict)]
    untimed = [m for m in mods if not num(m.get("calls"))]
    if untimed:
        compiled = any(str(m.get("name", "")).startswith("_orig_mod") for m in untimed)
        note += (f" {len(untimed)} module(s) show no calls: " + (
            "they run inside a torch.compile'd graph, which perfkit does not split (timing inside it would break "
            "the graph and slow the run); the compiled graphs' own time is in their table"
            if compiled else "they were not called while the timers were on"))
    return note
