"""The in-memory trace model: one columnar table of events plus side tables.

Every stage after loading works on :class:`Trace`. Columns are numpy arrays of
equal length (one row per timed event, ``ph == "X"``); their names and units
are defined here and nowhere else.

Time columns are microseconds (µs) as written in the file: ``ts_us`` is the
start, ``dur_us`` the duration. ``ts_us`` is absolute epoch µs in traces before
2024 and relative to ``meta["baseTimeNanoseconds"]`` after; analysis only ever
uses differences, so both work.
"""

from __future__ import annotations


import enum
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Kind(enum.IntEnum):
    """What a timed event is, normalised across Kineto format generations."""

    CPU_OP = 0  #: ATen op or autograd node (``cpu_op``; 2021: ``Operator``)
    USER_ANNOTATION = 1  #: ``record_function`` range, ``ProfilerStep#N``, ``Optimizer.step#...``
    PYTHON = 2  #: Python tracer frame (``python_function``), with_stack=True
    RUNTIME = 3  #: CUDA/HIP runtime API call on a CPU thread (``cudaLaunchKernel``...)
    DRIVER = 4  #: CUDA driver API call (``cuLaunchKernel``, Triton)
    KERNEL = 5  #: device kernel
    MEMCPY = 6  #: device memory copy
    MEMSET = 7  #: device memset
    GPU_ANNOTATION = 8  #: GPU-timeline copy of a user annotation
    SYNC = 9  #: CUPTI synchronisation record (``cuda_sync``)
    TRACE_SPAN = 10  #: the profiler's own ``PyTorch Profiler (N)`` span
    OTHER = 11  #: anything else with a duration


#: ``cat`` (lower-cased) -> Kind. The only place where category strings live.
CATEGORY_KINDS: dict[str, Kind] = {
    "cpu_op": Kind.CPU_OP,
    "operator": Kind.CPU_OP,
    "user_annotation": Kind.USER_ANNOTATION,
    "python_function": Kind.PYTHON,
    "python": Kind.PYTHON,
    "cuda_runtime": Kind.RUNTIME,
    "runtime": Kind.RUNTIME,
    "hip_runtime": Kind.RUNTIME,
    "mtia_runtime": Kind.RUNTIME,
    "xpu_runtime": Kind.RUNTIME,
    "privateuse1_runtime": Kind.RUNTIME,
    "cuda_driver": Kind.DRIVER,
    "hip_driver": Kind.DRIVER,
    "privateuse1_driver": Kind.DRIVER,
    "kernel": Kind.KERNEL,
    "mtia_ccp_events": Kind.KERNEL,
    "gpu_memcpy": Kind.MEMCPY,
    "memcpy": Kind.MEMCPY,
    "mtia_memcpy": Kind.MEMCPY,
    "gpu_memset": Kind.MEMSET,
    "memset": Kind.MEMSET,
    "gpu_user_annotation": Kind.GPU_ANNOTATION,
    "cuda_sync": Kind.SYNC,
    "trace": Kind.TRACE_SPAN,
}

#: Kinds that occupy a device (GPU) engine; their union is "GPU busy".
DEVICE_WORK_KINDS = (Kind.KERNEL, Kind.MEMCPY, Kind.MEMSET)
#: Kinds that live on a host thread.
HOST_KINDS = (Kind.CPU_OP, Kind.USER_ANNOTATION, Kind.PYTHON, Kind.RUNTIME, Kind.DRIVER)

#: Integer columns use this for "absent".
MISSING = -1

# Column names of Trace.events (one place; analysis imports these constants).
KIND = "kind"  #: int8 Kind
NAME = "name"  #: int32 index into Trace.names
PID = "pid"  #: int64 process id (CPU) or device index (GPU)
TID = "tid"  #: int64 thread id (CPU) or stream id (GPU)
TS = "ts_us"  #: float64 start, µs
DUR = "dur_us"  #: float64 duration, µs
CORR = "corr"  #: int32/int64 CUPTI correlation id (runtime <-> device op), MISSING if none
EXT = "ext_id"  #: int64 External id (CPU op <-> runtime/device op), MISSING if none
SEQ = "seq"  #: int64 autograd Sequence number, MISSING if none
FWD_TID = "fwd_tid"  #: int64 "Fwd thread id" (>0 marks a backward op), MISSING if none
BYTES = "bytes"  #: int64 bytes moved by a memcpy/memset, MISSING if none
PY_ID = "py_id"  #: int64 "Python id" of a python_function frame
PY_PARENT = "py_parent"  #: int64 "Python parent id"
STACK = "stack"  #: int32 index into Trace.names of the "Call stack" arg, MISSING if none

#: Column -> widest dtype. Id columns (corr, ext_id, seq, fwd_tid, bytes, py_id,
#: py_parent) are int32 when all values fit, to halve their memory.
EVENT_COLUMNS: dict[str, Any] = {
    KIND: np.int8,
    NAME: np.int32,
    PID: np.int64,
    TID: np.int64,
    TS: np.float64,
    DUR: np.float64,
    CORR: np.int64,
    EXT: np.int64,
    SEQ: np.int64,
    FWD_TID: np.int64,
    BYTES: np.int64,
    PY_ID: np.int64,
    PY_PARENT: np.int64,
    STACK: np.int32,
}

# Columns of Trace.memory ("[memory]" instant events, profile_memory=True).
MEM_TS = "ts_us"  #: float64 µs
MEM_BYTES = "bytes"  #: int64 allocation (+) or free (-) size in bytes
MEM_ALLOCATED = "total_allocated"  #: int64 bytes allocated after the event, MISSING if absent
MEM_RESERVED = "total_reserved"  #: int64 bytes reserved after the event, MISSING if absent
MEM_DEVICE_TYPE = "device_type"  #: int64 c10 DeviceType (0 CPU, 1 CUDA)
MEM_DEVICE_ID = "device_id"  #: int64 device index (-1 for CPU)

MEMORY_COLUMNS: dict[str, Any] = {
    MEM_TS: np.float64,
    MEM_BYTES: np.int64,
    MEM_ALLOCATED: np.int64,
    MEM_RESERVED: np.int64,
    MEM_DEVICE_TYPE: np.int64,
    MEM_DEVICE_ID: np.int64,
}


@dataclass
class Trace:
    """A loaded Kineto trace.

    Attributes:
        path: the file it was read from.
        meta: top-level JSON keys other than ``traceEvents`` (deviceProperties,
            distributedInfo, displayTimeUnit, baseTimeNanoseconds, ...).
        events: column name -> numpy array, one row per timed event, in file order.
        names: string table for the ``name`` and ``stack`` columns.
        memory: column name -> numpy array for ``[memory]`` instant events.
        thread_names: (pid, tid) -> thread name from ``thread_name`` metadata events.
        process_names: pid -> process name from ``process_name`` metadata events.
        counts: events read per (ph, cat) group that are not in ``events`` (flows, instants...).
        warnings: problems found while reading (truncation, unknown values); never fatal.
        bytes_read: uncompressed JSON bytes parsed.
        stack_samples: Python stack samples recorded beside the trace (``perfkit profile``), or None.
    """

    path: str
    meta: dict[str, Any]
    events: dict[str, np.ndarray]
    names: list[str]
    memory: dict[str, np.ndarray]
    thread_names: dict[tuple[int, int], str] = field(default_factory=dict)
    process_names: dict[int, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    bytes_read: int = 0
    stack_samples: Any = None  #: perfkit.trace.samples.StackSamples from a sidecar file, if one was found

    def __len__(self) -> int:
        return len(self.events[TS])

    def name_array(self) -> np.ndarray:
        """The string table as a numpy object array (index with the ``name`` column)."""
        return np.asarray(self.names, dtype=object)

    @property
    def device_properties(self) -> list[dict[str, Any]]:
        props = self.meta.get("deviceProperties") or self.meta.get("computeProperties") or []
        return [p for p in props if isinstance(p, dict)] if isinstance(props, list) else []


#: Top-level keys the analysis reads, and the type each must have (anything else is dropped with a warning).
_META_TYPES: dict[str, type | tuple[type, ...]] = {
    "deviceProperties": list,
    "computeProperties": list,
    "distributedInfo": dict,
    "baseTimeNanoseconds": int,
}
#: Keys inside ``distributedInfo`` that must be non-negative integers.
_DIST_INTS = ("rank", "world_size", "local_rank")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63


def clean_meta(meta: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The trace's top-level metadata with values of the wrong type or non-finite numbers removed.

    Returns the cleaned dict and the dotted names of what was removed (for one warning).
    ``deviceProperties`` entries must be objects whose ``id``, if present, is an integer.
    """
    dropped: list[str] = []

    def finite(v: Any, where: str, depth: int = 0) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            dropped.append(where)
            return None
        if depth > 32 and isinstance(v, (dict, list)):
            dropped.append(where)
            return None
        if isinstance(v, dict):
            return {k: finite(x, f"{where}.{k}", depth + 1) for k, x in v.items()}
        if isinstance(v, list):
            return [finite(x, f"{where}[{i}]", depth + 1) for i, x in enumerate(v)]
        return v

    out: dict[str, Any] = {}
    for key, value in meta.items():
        want = _META_TYPES.get(key)
        if want is not None and (not isinstance(value, want) or (want is int and not _is_int(value))):
            dropped.append(key)
            continue
        out[key] = finite(value, key)
    for key in ("deviceProperties", "computeProperties"):
        if key in out:
            keep = []
            for i, p in enumerate(out[key]):
                if isinstance(p, dict) and ("id" not in p or _is_int(p["id"])):
                    keep.append(p)
                else:
                    dropped.append(f"{key}[{i}]")
            out[key] = keep
    dist = out.get("distributedInfo")
    if isinstance(dist, dict):
        for k in _DIST_INTS:
            if k in dist and not (_is_int(dist[k]) and dist[k] >= 0):
                dropped.append(f"distributedInfo.{k}")
                del dist[k]
    return out, dropped
