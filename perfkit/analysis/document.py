"""The analysis document: the one type between analysis and everything that reads it.

``perfkit analyze`` produces, and ``report``, ``diff``, ``merge`` and ``budget`` read, one JSON
document, schema :data:`SCHEMA` (``perfkit.analysis/2``). This module is its contract:

* the vocabularies, each written once (:data:`PHASES`, :data:`CATEGORIES`, :data:`SEVERITIES`
  in order of importance, :data:`TIME_BASES`, :data:`COPY_DIRECTIONS`, :data:`OVERVIEW_ROLES`)
  with their ``Literal`` types;
* a ``TypedDict`` per section (:class:`AnalysisDoc` is the whole document; a job of several ranks
  adds ``ranks`` and ``job``); the document stays plain JSON-ready data, and the types let a type
  checker follow every key from the builder to the renderers;
* :func:`upgrade`: a ``perfkit.analysis/1`` document (perfkit before version 2 of the schema) read
  as a ``/2`` one. Documents are validated once, where they are read (:mod:`perfkit.documents`).

Keys are **basis-neutral**: a figure is ``ms_per_step`` (not ``gpu_ms_per_step``) and
``trace.time_basis`` says whose time it is: ``"gpu"`` (device kernels, copies and memsets) or
``"cpu"`` (a trace without device work: time inside CPU ops). The section that schema 1 called
``gpu`` is ``device``: the busy, idle and utilization of whatever the basis measures. Figures that
only exist on a GPU keep their word (``runtime.steps.gpu_ms``, measured with CUDA events; the
evidence of GPU-only findings). Every figure carries its unit in its name (``_ms``, ``_us``,
``_bytes``); ``None`` is unknown, never 0.

This module imports nothing but ``typing``: every stage may use it.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, TypedDict, Union

SCHEMA = "perfkit.analysis/2"
#: The schema of documents written before the keys became basis-neutral; :func:`upgrade` reads them.
SCHEMA_V1 = "perfkit.analysis/1"
SCHEMAS_READ = (SCHEMA, SCHEMA_V1)

# --------------------------------------------------------------------------- vocabularies

Phase = Literal["forward", "backward", "optimizer", "other", "unknown"]
#: The training phases, in report order ("unknown": the trace cannot say; see docs/analysis.md).
PHASES: tuple[Phase, ...] = ("forward", "backward", "optimizer", "other", "unknown")

Category = Literal["matmul", "attention", "convolution", "normalization", "elementwise", "reduction",
                   "indexing", "copy", "memset", "communication", "compiled", "other"]
#: The kernel / op categories, in report order (rules: :mod:`perfkit.analysis.rules`).
CATEGORIES: tuple[Category, ...] = ("matmul", "attention", "convolution", "normalization", "elementwise",
                                    "reduction", "indexing", "copy", "memset", "communication", "compiled",
                                    "other")

Severity = Literal["critical", "warning", "info"]

#: How a top kernel's or copy source's launcher (``op``) is known: ``op_basis``.
OP_BASIS_OP = "op"  #: the CPU op it ran under (External id, or the innermost op around its launch)
OP_BASIS_ANNOTATION = "annotation"  #: no CPU op: the innermost user annotation around its launch


def launcher_text(op: str, basis: Optional[str]) -> str:
    """How a launcher reads in titles and tables: "annotation NAME" for a range, the op's name else."""
    return f"annotation {op}" if basis == OP_BASIS_ANNOTATION else op
#: Finding severities, most important first.
SEVERITIES: tuple[Severity, ...] = ("critical", "warning", "info")

TimeBasis = Literal["gpu", "cpu"]
TIME_BASES: tuple[TimeBasis, ...] = ("gpu", "cpu")

CopyDirection = Literal["h2d", "d2h", "d2d"]
COPY_DIRECTIONS: tuple[CopyDirection, ...] = ("h2d", "d2h", "d2d")

OverviewRole = Literal["kernel", "memcpy", "memset", "communication", "runtime", "dataloader", "cpu_exec",
                       "other"]
#: tb-profiler's step-time breakdown roles (``overview``).
OVERVIEW_ROLES: tuple[OverviewRole, ...] = ("kernel", "memcpy", "memset", "communication", "runtime",
                                            "dataloader", "cpu_exec", "other")


def severity_rank(severity: Any) -> int:
    """Sort key: 0 for the most important severity; unknown severities last."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


def finding_order(finding: Any) -> tuple[int, float]:
    """Sort key of findings: most severe first, then the largest cost per step."""
    return severity_rank(finding.get("severity")), -float(finding.get("cost_ms_per_step") or 0.0)


def basis_word(basis: Any) -> str:
    """The word a report uses for the time basis: "GPU" or "CPU" (decided here, once)."""
    return "CPU" if basis == "cpu" else "GPU"


# --------------------------------------------------------------------------- sections


class Device(TypedDict, total=False):
    id: int
    name: str
    memory_bytes: Optional[int]
    compute_capability: Optional[str]
    sms: Optional[int]
    properties_from: Optional[int]  # the device whose properties the trace lists (None: none listed)
    assumed: bool  # the properties are another device's (the trace lists only that one's)


class TraceInfo(TypedDict, total=False):
    paths: list[str]
    bytes: Optional[int]
    file_bytes: Optional[int]
    events: Optional[int]
    devices: list[Device]
    device: Optional[str]
    distributed: Optional[dict[str, Any]]
    base_time_ns: Optional[int]
    time_basis: TimeBasis
    has_python_stacks: bool
    source_basis: Optional[str]
    stack_samples: Optional[dict[str, Any]]
    warnings: list[str]


class StepRow(TypedDict, total=False):
    """One step of ``steps.table`` (ms; ``None`` unknown)."""
    id: int
    rank: Optional[int]
    wall_ms: float
    window_ms: float
    busy_ms: float
    active_ms: float
    idle_ms: float
    kept: bool
    reason: Optional[str]
    forward_ms: Optional[float]
    backward_ms: Optional[float]
    optimizer_ms: Optional[float]
    other_ms: Optional[float]
    unknown_ms: Optional[float]
    categories_ms: dict[str, float]


class Steps(TypedDict, total=False):
    count: int
    total: int
    synthetic: bool
    ids: list[int]
    excluded: list[dict[str, Any]]
    window_ms_median: Optional[float]
    window_ms_mean: Optional[float]
    wall_ms_median: Optional[float]
    wall_ms_mean: Optional[float]
    variation: Optional[dict[str, Any]]
    spread: Optional[dict[str, Optional[dict[str, float]]]]
    table: list[StepRow]


class DeviceTime(TypedDict, total=False):
    """Busy, active and idle time per kept step of the basis' device (GPU or CPU), ms."""
    busy_ms_per_step: float
    active_ms_per_step: float
    idle_ms_per_step: float
    utilization: float
    outside_kept_steps_ms: float
    launched_before_window: dict[str, float]


class Share(TypedDict, total=False):
    """A phase, category or overview role: ms per kept step and share of busy time (None: unknown)."""
    ms_per_step: Optional[float]
    share: Optional[float]


class CopyStats(TypedDict, total=False):
    count_per_step: float
    bytes_per_step: float
    ms_per_step: float
    memcpy_engine_count_per_step: float


class OpRow(TypedDict, total=False):
    """A row of ``top_ops`` / ``top_kernels`` / ``copies.sources``."""
    name: str
    op: Optional[str]
    op_basis: Optional[str]  #: top_kernels, copies.sources: "op" (a CPU op), "annotation" (no op: the range around the launch)
    category: Optional[str]
    direction: Optional[str]
    ms_per_step: float
    self_ms_per_step: float
    share: float
    calls_per_step: float
    count_per_step: float
    avg_us: float
    source: Optional[str]
    source_line: Optional[str]
    source_basis: Optional[str]


class Finding(TypedDict, total=False):
    """A verdict: what is wrong, what it costs, where, and what to change; ``evidence`` says why."""
    id: str
    severity: Severity
    title: str
    detail: str
    remedy: Optional[str]
    cost_ms_per_step: float
    where: list[dict[str, Any]]
    evidence: dict[str, Any]
    rank: Optional[int]
    ranks: Optional[list[int]]
    trace: Optional[str]


class PhasesUnknown(TypedDict, total=False):
    reason: str
    whole_trace: bool
    share: Optional[float]
    ms_per_step: Optional[float]


class RankRow(TypedDict, total=False):
    """One rank of a job document (``ranks``)."""
    rank: Optional[int]
    status: str
    trace: Optional[str]
    steps: int
    step_ms_median: float
    wall_ms_median: float
    time_basis: TimeBasis
    busy_ms_per_step: float
    idle_ms_per_step: float
    phase_ms_per_step: dict[str, float]
    comm_ms_per_step: float
    comm_exposed_ms_per_step: float
    work_ms_per_step: float
    work_vs_median_ms: float


class AnalysisDoc(TypedDict, total=False):
    """The whole document. A trace analysis has every section up to ``findings``; a run directory's
    document adds ``runtime`` (what the training process measured); a job adds ``ranks`` and ``job``.
    A run whose trace could not be analysed has only ``schema``, ``trace``, ``findings`` and ``runtime``."""
    schema: str
    trace: TraceInfo
    steps: Steps
    device: DeviceTime
    phases: dict[str, Share]
    phases_evidence: dict[str, dict[str, float]]
    phases_unknown: Optional[PhasesUnknown]
    categories: dict[str, Share]
    copies: dict[str, Any]
    top_ops: list[OpRow]
    top_kernels: list[OpRow]
    overview: dict[str, Share]
    findings: list[Finding]
    memory_timeline: Optional[dict[str, Any]]
    communication: Optional[dict[str, Any]]
    frames: Any
    compiled_graphs: Optional[list[dict[str, Any]]]
    runtime: dict[str, Any]
    recording: dict[str, Any]
    ranks: list[RankRow]
    job: dict[str, Any]
    stalls: dict[str, Any]  # a job's watchdog files (perfkit.analysis.stalls), when the run has them


def is_job(doc: Any) -> bool:
    """True for the document of a job of several ranks (it has the per-rank table)."""
    return isinstance(doc, dict) and isinstance(doc.get("ranks"), list) and bool(doc.get("ranks"))


# --------------------------------------------------------------------------- schema 1 -> 2

#: Keys renamed from schema 1 (the left-hand names said "gpu" even for CPU-time documents), by where
#: they occur: in any row or group of figures (findings' evidence included, which quotes such rows);
#: in the ``steps`` section (its table and spread included); in the rows of a job's ``ranks``.
ROW_KEYS: dict[str, str] = {
    "gpu_ms_per_step": "ms_per_step",
    "self_gpu_ms_per_step": "self_ms_per_step",
    "avg_gpu_us": "avg_us",
}
STEP_KEYS: dict[str, str] = {
    "gpu_window_ms": "window_ms",
    "gpu_busy_ms": "busy_ms",
    "gpu_active_ms": "active_ms",
    "gpu_idle_ms": "idle_ms",
    "gpu_ms_median": "window_ms_median",
    "gpu_ms_mean": "window_ms_mean",
}
RANK_KEYS: dict[str, str] = {
    "gpu_busy_ms_per_step": "busy_ms_per_step",
    "gpu_idle_ms_per_step": "idle_ms_per_step",
}
#: Renamed top-level sections.
RENAMED_SECTIONS: dict[str, str] = {"gpu": "device"}
#: Top-level sections whose keys keep their schema-1 names: what the training process measured
#: (``runtime.steps.gpu_ms`` is CUDA-event time, truly GPU) and the recording-cost estimate.
_KEPT_SECTIONS = frozenset({"runtime", "recording"})


def _renamed(obj: Any, keys: dict[str, str]) -> Any:
    if isinstance(obj, dict):
        return {keys.get(k, k): _renamed(v, keys) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_renamed(v, keys) for v in obj]
    return obj


def upgrade(doc: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 document as schema 2 (a new dict; ``doc`` is not changed). Any other is returned as is.

    Schema 1 is schema 2 with GPU-worded keys (:data:`ROW_KEYS`, :data:`STEP_KEYS`, :data:`RANK_KEYS`,
    :data:`RENAMED_SECTIONS`); nothing else changed, so the upgrade is exact
    (``scripts/check_schema_upgrade.py`` compares it with a fresh analysis by the schema-1 code).
    """
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA_V1:
        return doc
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key in _KEPT_SECTIONS:
            out[key] = value
            continue
        keys = ROW_KEYS
        if key == "steps":
            keys = {**ROW_KEYS, **STEP_KEYS}
        elif key == "ranks":
            keys = {**ROW_KEYS, **RANK_KEYS}
        out[RENAMED_SECTIONS.get(key, key)] = _renamed(value, keys)
    out["schema"] = SCHEMA
    return out


Document = Union[AnalysisDoc, dict[str, Any]]
