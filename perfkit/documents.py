"""Reading perfkit's own JSON documents: one place that loads, checks the schema and validates the fields.

Every command that reads a document perfkit wrote (``analysis.json``, a rank's
``rank<R>.analysis.json``, a job document, a diff) goes through
:func:`load_analysis` or :func:`read_json`, so a bad file gives the same one-line
error everywhere (:class:`DocumentError`, exit 2), naming the file:

* the file is missing, a folder, not a regular file (a FIFO would block), unreadable,
  empty, not UTF-8, not JSON, or nested too deeply to parse;
* the JSON is not an object, has no ``schema``, or its schema is another one
  (``perfkit.analysis/2`` from another perfkit version, a ``perfkit.diff/1`` where
  an analysis is expected): never read as if it were the expected kind;
* a field the commands need has the wrong type or is missing (``steps.count`` a
  string, ``trace.paths`` an object).

A field that is wrong but not needed (a row of ``top_ops`` without a name, a phase
whose time is a string, a number that is NaN or infinite) is dropped or made unknown
(null) with **one** warning line on stderr naming the file and the first fields; the
rest of the document is used. The checks are a declarative spec of the document
(:func:`analysis_spec`): the fields the report, diff, merge and budget commands read,
with their types; fields the spec does not name pass through unchecked.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Callable, Iterable, Optional, Union

from ._io import regular_file
from .errors import PerfkitError

from .analysis.document import SCHEMA, SCHEMAS_READ, upgrade

#: The analysis document's schema, and the schemas read (an older one is upgraded), for readers of documents.
ANALYSIS_SCHEMA = SCHEMA
ANALYSIS_SCHEMAS_READ = SCHEMAS_READ

DIFF_SCHEMA = "perfkit.diff/2"
#: Largest document read (bytes): perfkit's own documents are kilobytes to a few MB.
MAX_DOCUMENT_BYTES = 512 * 2**20


class DocumentError(PerfkitError):
    """A perfkit document cannot be used (one line naming the file; exit 2)."""


# --------------------------------------------------------------------------- reading the JSON


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number" if math.isfinite(value) else f"{value!r} (not a finite number)"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def read_bytes(path: str, what: str = "file", limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """The bytes of a regular file; DocumentError (one line) for anything else."""
    st = regular_file(path, what, DocumentError)
    if st.st_size > limit:
        raise DocumentError(f"{path}: {st.st_size} bytes, larger than any {what} perfkit writes ({limit} bytes)")
    try:
        with open(path, "rb") as fh:
            return fh.read(limit + 1)
    except OSError as exc:
        raise DocumentError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None


def read_json(path: str, what: str = "JSON document") -> Any:
    """The parsed JSON of ``path``; DocumentError (one line naming the file) when it cannot be read or parsed."""
    data = read_bytes(path, what)
    if not data.strip():
        raise DocumentError(f"{path}: empty file, expected a {what}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"{path}: not UTF-8 text (byte {exc.start}), expected a {what}") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise DocumentError(f"{path}: JSON nested too deeply to read, expected a {what}") from None
    except ValueError as exc:
        raise DocumentError(f"{path}: not valid JSON ({exc}), expected a {what}") from None


def check_schema(doc: Any, path: str, expected: Union[str, Iterable[str]]) -> dict[str, Any]:
    """``doc`` if it is an object whose ``schema`` is one of ``expected``; else DocumentError naming both."""
    want = [expected] if isinstance(expected, str) else list(expected)
    want_text = " or ".join(want)
    kinds = " or ".join(dict.fromkeys(w.split("/")[0].split(".")[-1] for w in want))
    if not isinstance(doc, dict):
        raise DocumentError(f"{path}: the JSON is {_describe(doc)}, not a perfkit {kinds} document "
                            f"(an object with \"schema\": \"{want_text}\")")
    found = doc.get("schema")
    if found in want:
        return doc
    if found is None:
        raise DocumentError(f"{path}: not a perfkit {kinds} document (no \"schema\" key; expected "
                            f"\"schema\": \"{want_text}\")")
    if not isinstance(found, str):
        raise DocumentError(f"{path}: \"schema\" is {_describe(found)}, expected \"{want_text}\"")
    shown = found if len(found) <= 80 else found[:77] + "..."
    same_kind = any(found.split("/")[0] == w.split("/")[0] for w in want)
    hint = (" (written by another perfkit version: re-create it with this one)" if same_kind
            else "")
    raise DocumentError(f"{path}: schema {shown!r}, expected {want_text!r}{hint}")


# --------------------------------------------------------------------------- the spec language


class _Bad(Exception):
    """A value that does not fit its spec; ``where`` is the dotted path."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}")
        self.where, self.why = where, why


class Spec:
    null = False

    def check(self, value: Any, where: str, notes: list[str]) -> Any:
        raise NotImplementedError

    def __call__(self, value: Any, where: str, notes: list[str]) -> Any:
        if value is None:
            if self.null:
                return None
            raise _Bad(where, f"is null, expected {self.expected}")
        return self.check(value, where, notes)

    expected = "a value"


class Num(Spec):
    """A finite number (not a boolean). NaN or infinity: unknown (null) where null is allowed, else bad."""

    def __init__(self, null: bool = True, min: Optional[float] = None) -> None:
        self.null, self.min = null, min
        self.expected = "a number" if min is None else f"a number >= {min:g}"

    def check(self, value: Any, where: str, notes: list[str]) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Bad(where, f"is {_describe(value)}, expected {self.expected}")
        if isinstance(value, float) and not math.isfinite(value):
            if self.null:
                notes.append(f"{where} is {value!r}, read as unknown")
                return None
            raise _Bad(where, f"is {value!r}, expected a finite number")
        if self.min is not None and value < self.min:
            raise _Bad(where, f"is {value!r}, expected {self.expected}")
        return value


class Int(Spec):
    def __init__(self, null: bool = False, min: Optional[int] = None) -> None:
        self.null, self.min = null, min
        self.expected = "an integer" if min is None else f"an integer >= {min}"

    def check(self, value: Any, where: str, notes: list[str]) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(where, f"is {_describe(value)}, expected {self.expected}")
        if self.min is not None and value < self.min:
            raise _Bad(where, f"is {value}, expected {self.expected}")
        return value


class Str(Spec):
    expected = "a string"

    def __init__(self, null: bool = False) -> None:
        self.null = null

    def check(self, value: Any, where: str, notes: list[str]) -> Any:
        if not isinstance(value, str):
            raise _Bad(where, f"is {_describe(value)}, expected a string")
        return value


class Bool(Spec):
    expected = "true or false"

    def __init__(self, null: bool = False) -> None:
        self.null = null

    def check(self, value: Any, where: str, notes: list[str]) -> Any:
        if not isinstance(value, bool):
            raise _Bad(where, f"is {_describe(value)}, expected true or false")
        return value


class AnyValue(Spec):
    null = True

    def check(self, value: Any, where: str, notes: list[str]) -> Any:
        return value


class Obj(Spec):
    """An object: ``fields`` by name (those in ``required`` must be there), ``values`` for every other key.

    A field that does not fit and is not required is dropped (a note); a required one makes the whole
    object bad, which drops it from its parent (or refuses the document at the top).
    """

    expected = "an object"

    def __init__(self, fields: Optional[dict[str, Spec]] = None, required: Iterable[str] = (),
                 values: Optional[Spec] = None, null: bool = False,
                 check: Optional[Callable[[dict[str, Any]], Optional[str]]] = None) -> None:
        self.fields, self.required, self.values, self.null = fields or {}, set(required), values, null
        self.extra_check = check

    def check(self, value: Any, where: str, notes: list[str]) -> Any:
        if not isinstance(value, dict):
            raise _Bad(where, f"is {_describe(value)}, expected an object")
        for name in self.required:
            if name not in value:
                raise _Bad(f"{where}.{name}".lstrip("."), "is missing")
        out = {}
        for name, v in value.items():
            spec = self.fields.get(name, self.values)
            if spec is None:
                out[name] = v
                continue
            sub = f"{where}.{name}".lstrip(".")
            try:
                out[name] = spec(v, sub, notes)
            except _Bad as bad:
                if name in self.required:
                    raise
                notes.append(f"{bad.where} {bad.why}: ignored" if bad.where == sub else
                             f"{sub} ignored ({bad.where} {bad.why})")
        if self.extra_check is not None:
            why = self.extra_check(out)
            if why:
                raise _Bad(where or "the document", why)
        return out


class Seq(Spec):
    """A list; an item that does not fit is dropped (a note), unless ``strict`` (then the list is bad)."""

    expected = "a list"

    def __init__(self, item: Spec, null: bool = False, strict: bool = False, min_len: int = 0) -> None:
        self.item, self.null, self.strict, self.min_len = item, null, strict, min_len

    def check(self, value: Any, where: str, notes: list[str]) -> Any:
        if not isinstance(value, list):
            raise _Bad(where, f"is {_describe(value)}, expected a list")
        out = []
        dropped: list[str] = []
        for i, v in enumerate(value):
            try:
                out.append(self.item(v, f"{where}[{i}]", notes))
            except _Bad as bad:
                if self.strict:
                    raise
                dropped.append(f"{bad.where} {bad.why}")
        if dropped:
            notes.append(f"{len(dropped)} item(s) of {where} ignored ({dropped[0]})")
        if len(out) < self.min_len:
            raise _Bad(where, f"has {len(out)} usable item(s), expected at least {self.min_len}")
        return out


# --------------------------------------------------------------------------- the analysis document


def _collectives_consistent(c: dict[str, Any]) -> Optional[str]:
    """The per-collective columns of ``communication.collectives`` line up (perfkit merge matches them)."""
    if not c.get("listed"):
        return None
    need = ("origin_ns", "kinds", "step", "kind", "n", "before_op")
    missing = [k for k in need if k not in c]
    if missing:
        return f"lists collectives but has no {missing[0]}"
    n = len(c["step"])
    if n == 0:
        return "lists collectives but its columns are empty"
    for col in ("kind", "n", "before_op", "start_us", "end_us", "launch_us", "gap_us", "before_busy_us",
                "before_op_us"):
        if c.get(col) is not None and len(c[col]) != n:
            return f"column {col} has {len(c[col])} values, step has {n}"
    if any(k < 0 or k >= len(c["kinds"]) for k in c["kind"]):
        return "column kind points past kinds"
    steps = c.get("steps")
    if not isinstance(steps, dict) or not isinstance(steps.get("id"), list) or \
            not isinstance(steps.get("start_us"), list):
        return "lists collectives but not its steps (id, start_us)"
    return None


def analysis_spec(trace_analysis: bool = False) -> Obj:
    """The fields of a ``perfkit.analysis/2`` document the commands read, with their types.

    ``trace_analysis``: the document must hold a trace analysis (steps, GPU time, phases...), as
    ``perfkit merge`` needs; otherwise every section is optional (a run whose trace could not be
    analysed has only ``trace``, ``runtime`` and ``findings``).
    """
    req = (lambda *names: names) if trace_analysis else (lambda *names: ())
    num = Num()
    share_row = Obj({"ms_per_step": num, "share": num, "ms_per_step": num}, null=True)
    row_num = {k: num for k in ("ms_per_step", "self_ms_per_step", "calls_per_step", "share",
                                "avg_us", "avg_us", "count_per_step", "ms_per_step")}
    top_row = Obj({"name": Str(), **row_num, "op": Str(null=True), "category": Str(null=True),
                   "source": Str(null=True), "source_basis": Str(null=True)}, required=("name",))
    step_row = Obj({"id": Int(null=True), "kept": Bool(), "reason": Str(null=True),
                    "wall_ms": Num(null=not trace_analysis), "window_ms": Num(null=not trace_analysis),
                    "busy_ms": num, "idle_ms": num,
                    **{f"{p}_ms": num for p in ("forward", "backward", "optimizer", "other", "unknown")},
                    "categories_ms": Obj(values=num), "rank": Int(null=True)},
                   required=req("kept", "wall_ms", "window_ms"))
    copy_dir = Obj({"ms_per_step": Num(null=False), "count_per_step": Num(null=False),
                    "bytes_per_step": Num(null=False)}, values=Num(null=False),
                   required=req("ms_per_step", "count_per_step", "bytes_per_step"))
    finding = Obj({"id": Str(), "severity": Str(), "title": Str(), "remedy": Str(null=True),
                   "cost_ms_per_step": Num(null=False), "rank": Int(null=True), "trace": Str(null=True),
                   "ranks": Seq(Int(null=True), null=True), "where": Seq(Obj({"name": Str(null=True), "op": Str(null=True), "source": Str(null=True),
                                      "ms_per_step": num, "ms_per_step": num, "reason": Str(null=True)},
                                     values=AnyValue()), null=True),
                   "evidence": Obj(values=AnyValue(), null=True)},
                  required=("id", "severity", "title"))
    collectives = Obj({
        "origin_ns": Int(), "listed": Int(null=True, min=0), "count": Int(null=True), "kinds": Seq(Str(), strict=True),
        "step": Seq(Int(), strict=True), "kind": Seq(Int(), strict=True), "n": Seq(Int(min=0), strict=True),
        "before_op": Seq(Int(), strict=True), "ops": Seq(Str(), strict=True, null=True),
        **{c: Seq(Num(), strict=True, null=True) for c in ("start_us", "end_us", "launch_us", "gap_us",
                                                          "before_busy_us", "before_op_us")},
        "steps": Obj({"id": Seq(Int(), strict=True), "start_us": Seq(Num(), strict=True)}, null=True),
    }, null=True, check=_collectives_consistent)
    communication = Obj({
        "ms_per_step": num, "exposed_ms_per_step": num, "overlapped_ms_per_step": num, "exposed_share": num,
        "by_phase_ms_per_step": Obj(values=num, null=True),
        "ops": Seq(Obj({"name": Str(), "ms_per_step": Num(null=False), "calls_per_step": num},
                       required=("name", "ms_per_step")), null=True),
        "table": Seq(Obj(values=AnyValue()), null=True),
        "collectives": collectives,
    }, null=True)
    trace = Obj({
        "paths": Seq(Str(), min_len=1 if trace_analysis else 0), "warnings": Seq(Str()),
        "bytes": Int(null=True, min=0), "file_bytes": Int(null=True, min=0), "events": Int(null=True, min=0), "device": Str(null=True),
        "time_basis": Str(null=True), "base_time_ns": Int(null=True),
        "devices": Seq(Obj(values=AnyValue()), null=True),
        "distributed": Obj({"rank": Int(null=True, min=0), "world_size": Int(null=True, min=1)},
                           values=AnyValue(), null=True),
    }, required=req("paths", "warnings"))
    steps = Obj({
        "count": Int(min=0), "total": Int(min=0), "ids": Seq(Int()), "excluded": Seq(Obj(values=AnyValue())),
        "table": Seq(step_row), "window_ms_median": num, "wall_ms_median": num, "synthetic": Bool(null=True),
        "variation": Obj({"cv": num, "min_ms": num, "max_ms": num, "median_ms": num}, values=AnyValue(), null=True),
        "spread": Obj(values=Obj(values=num, null=True), null=True),
    }, required=req("count", "total", "ids", "excluded", "table"))
    device = Obj({"busy_ms_per_step": Num(null=not trace_analysis), "idle_ms_per_step": Num(null=not trace_analysis),
               "utilization": Num(null=not trace_analysis), "outside_kept_steps_ms": num},
              values=AnyValue(), required=req("busy_ms_per_step", "idle_ms_per_step", "utilization"))
    runtime_steps = Obj({"count": Int(null=True, min=0), "steady_from_step": Int(null=True, min=0),
                         "wall_ms": Seq(Num(null=False), null=True), "gpu_ms": Seq(Num(null=False), null=True),
                         "wall_ms_median": num, "gpu_ms_median": num, "first_step_ms": num},
                        values=AnyValue(), null=True)
    runtime = Obj({
        "steps": runtime_steps, "rank": Int(null=True), "world_size": Int(null=True, min=1),
        "mfu": num, "flops_per_step": num, "peak_tflops": num, "analysis_error": Str(null=True),
        "memory": Obj({k: Num() for k in ("peak_bytes", "weights_bytes", "gradients_bytes", "optimizer_state_bytes",
                                          "activations_and_temporaries_bytes_estimate", "reserved_bytes",
                                          "allocated_bytes_end")}, values=AnyValue(), null=True),
        "throughput": Obj({k: num for k in ("tokens_per_step", "samples_per_step", "tokens_per_s",
                                            "samples_per_s")}, values=AnyValue(), null=True),
    }, values=AnyValue(), null=True)
    fields: dict[str, Spec] = {
        "schema": Str(),
        "trace": trace,
        "steps": steps,
        "device": device,
        "phases": Obj(values=share_row, required=()),
        "categories": Obj(values=share_row),
        "overview": Obj(values=share_row),
        "copies": Obj({d: copy_dir for d in ("h2d", "d2h", "d2d")}
                      | {"sources": Seq(Obj({"op": Str(null=True), "source": Str(null=True),
                                             "direction": Str(null=True), **row_num}))},
                      required=req("h2d", "d2h", "d2d")),
        "top_ops": Seq(top_row),
        "top_kernels": Seq(top_row),
        "findings": Seq(finding),
        "phases_evidence": Obj(values=Obj(values=Num(null=False)), null=True),
        "phases_unknown": Obj({"reason": Str(), "whole_trace": Bool(null=True), "share": num,
                               "ms_per_step": num}, values=AnyValue(), required=("reason",), null=True),
        "communication": communication,
        "compiled_graphs": Seq(Obj({"name": Str(), "short_name": Str(null=True), "phase": Str(null=True),
                                    "region": Str(null=True), "source": Str(null=True), "ms_per_step": num,
                                    "calls_per_step": num}, required=("name",)), null=True),
        "runtime": runtime,
        "ranks": Seq(Obj({"rank": Int(null=True), "status": Str(null=True)}, values=AnyValue())),
        "job": Obj(values=AnyValue(), null=True),
    }
    return Obj(fields, required=("schema", *req("trace", "steps", "device", "phases", "categories", "overview",
                                                   "copies", "top_ops", "top_kernels", "findings")))


# --------------------------------------------------------------------------- entry points


def warn(path: str, notes: list[str], out: Any = None) -> None:
    """One warning line for the fields of ``path`` that were ignored or read as unknown."""
    if not notes:
        return
    shown = "; ".join(notes[:3]) + (f"; and {len(notes) - 3} more" if len(notes) > 3 else "")
    print(f"perfkit: warning: {path}: {len(notes)} field(s) not usable, the rest is used: {shown}",
          file=out or sys.stderr, flush=True)


def validate_analysis(doc: Any, path: str, *, trace_analysis: bool = False) -> tuple[dict[str, Any], list[str]]:
    """(the document with unusable fields dropped or nulled, notes on what was); DocumentError if unusable.

    A ``perfkit.analysis/1`` document is upgraded to ``/2`` first (:func:`perfkit.analysis.document.upgrade`).
    """
    check_schema(doc, path, ANALYSIS_SCHEMAS_READ)
    notes: list[str] = []
    try:
        clean = analysis_spec(trace_analysis)(upgrade(doc), "", notes)
    except _Bad as bad:
        need = " (perfkit merge needs the trace analysis of each rank)" if trace_analysis else ""
        raise DocumentError(f"{path}: not a usable {ANALYSIS_SCHEMA} document: {bad.where} {bad.why}{need}") from None
    except RecursionError:
        raise DocumentError(f"{path}: JSON nested too deeply to read, expected a {ANALYSIS_SCHEMA} document") from None
    return clean, notes


def load_analysis(path: str, *, trace_analysis: bool = False, quiet: bool = False) -> dict[str, Any]:
    """An analysis document from ``path`` (a JSON file), checked and cleaned; a warning for fields dropped."""
    doc = read_json(path, f"{ANALYSIS_SCHEMA} document")
    clean, notes = validate_analysis(doc, path, trace_analysis=trace_analysis)
    if not quiet:
        warn(path, notes)
    return clean


def finite_or_none(obj: Any, where: str = "", found: Optional[list[str]] = None) -> Any:
    """A copy of ``obj`` with every NaN or infinite float replaced by None (unknown); paths in ``found``."""
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        if found is not None:
            found.append(where or "(top)")
        return None
    if isinstance(obj, dict):
        return {k: finite_or_none(v, f"{where}.{k}".lstrip("."), found) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v, f"{where}[{i}]", found) for i, v in enumerate(obj)]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # a numpy scalar
        return finite_or_none(obj.item(), where, found)
    if hasattr(obj, "tolist"):
        return finite_or_none(obj.tolist(), where, found)
    return obj
