"""Deterministic mutators of real Kineto traces, perfkit analysis documents and budget files.

Everything here is driven by a caller-supplied ``random.Random``, so a seed reproduces a case
byte for byte. Used by the CI slice (tests/test_fuzz_slice.py) and the long-running fuzzer
(scripts/fuzz_perfkit.py).

A trace is split once into a :class:`TraceDoc` (text before the ``traceEvents`` array, each
event's text, the separators between events, the text after the array); mutators then work
at three levels:

* event level: parse one event, change a field (type, absurd number, removed key, huge or
  invalid-UTF-8 string, deep nesting, duplicate or escaped key), dump it back;
* list level: delete, duplicate, swap or reorder events, junk or missing commas between
  events, a kernel moved before its launch, a key removed from every event;
* byte level, on the encoded file: truncate, delete, duplicate, swap or flip bytes, insert
  junk or invalid UTF-8; then a container: plain JSON, gzip, two gzip members, truncated
  gzip, gzip with trailing junk, a name that lies about the compression.

Values that ``json.dumps`` cannot write (``1e400``, ``NaN``, leading zeros, invalid UTF-8,
raw nesting) are placed as placeholders and substituted into the bytes at the end.

``heavy=True`` adds inputs meant to exhaust time or memory (gzip bombs, multi-megabyte
strings); the CI slice never asks for them.
"""

from __future__ import annotations

import copy
import gzip
import json
import math
import random
import re
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

# --------------------------------------------------------------------- raw values

#: Number tokens that are legal JSON (or near it) and hostile to an analyzer.
ABSURD_NUMBERS = [
    b"1e400", b"-1e400", b"NaN", b"Infinity", b"-Infinity", b"-1", b"-0", b"1.5", b"0.5",
    b"1180591620717411303424",  # 2**70
    b"9223372036854775808",  # int64 max + 1
    b"-9223372036854775809",
    b"18446744073709551616",  # uint64 max + 1
    b"1e18", b"1e308", b"1e-400", b"4.9e-324", b"0", b"00012", b"-00", b"1E+2", b"1e", b"-", b"+1", b".5",
]

#: Keys every Kineto duration event carries, and those the analysis leans on.
REQUIRED_KEYS = ["ph", "ts", "dur", "pid", "tid", "name", "cat", "args"]
NUMERIC_KEYS = ["ts", "dur", "pid", "tid", "id"]
ARG_NUMERIC_KEYS = ["correlation", "External id", "device", "stream", "Sequence number", "Fwd thread id",
                    "grid", "block", "registers per thread", "bytes", "memory bandwidth (GB/s)"]
PH_VALUES = ["X", "i", "I", "s", "f", "t", "B", "E", "M", "C", "b", "e", "n", "", "XX", "x"]


class _Raw:
    """Placeholder registry: ``put(b"1e400")`` returns a string that json.dumps writes as
    ``"@@RAW<n>@@"``; :meth:`substitute` swaps the quoted placeholder for the raw bytes."""

    def __init__(self) -> None:
        self.values: list[bytes] = []

    def put(self, raw: bytes) -> str:
        self.values.append(raw)
        return f"@@RAW{len(self.values) - 1}@@"

    def substitute(self, data: bytes) -> bytes:
        if not self.values:
            return data
        return re.sub(rb'"@@RAW(\d+)@@"', lambda m: self.values[int(m.group(1))], data)


# --------------------------------------------------------------------- the trace, split


@dataclass
class TraceDoc:
    """A trace as text: ``prefix`` + events joined by ``seps`` + ``suffix``.

    ``seps[i]`` is the text between ``events[i]`` and ``events[i + 1]``; ``lead`` is the text
    between ``[`` and the first event, ``tail`` the text between the last event and ``]``.
    """

    prefix: str
    lead: str
    events: list[str]
    seps: list[str]
    tail: str
    suffix: str
    raw: _Raw = field(default_factory=_Raw)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> "TraceDoc":
        m = re.search(r'"traceEvents"\s*:\s*\[', text)
        if m is None:
            raise ValueError("no traceEvents array")
        dec = json.JSONDecoder()
        pos = m.end()
        prefix = text[:pos]
        events: list[str] = []
        gaps: list[str] = []
        gap_start = pos
        while True:
            q = pos
            while text[q] in " \t\r\n,":
                q += 1
            if text[q] == "]":
                gaps.append(text[gap_start:q])
                suffix = text[q:]
                break
            gaps.append(text[gap_start:q])
            _, end = dec.raw_decode(text, q)
            events.append(text[q:end])
            pos = gap_start = end
        return cls(prefix, gaps[0], events, gaps[1:-1], gaps[-1] if events else "", suffix)

    def copy(self) -> "TraceDoc":
        return TraceDoc(self.prefix, self.lead, list(self.events), list(self.seps), self.tail, self.suffix)

    def text(self) -> str:
        parts = [self.prefix, self.lead]
        for i, ev in enumerate(self.events):
            parts.append(ev)
            parts.append(self.seps[i] if i < len(self.seps) else self.tail)
        parts.append(self.suffix)
        return "".join(parts)

    def encode(self) -> bytes:
        return self.raw.substitute(self.text().encode("utf-8"))

    # list surgery keeping seps aligned (one separator after each event but the last)
    def _default_sep(self) -> str:
        return self.seps[0] if self.seps else ", "

    def delete(self, i: int) -> None:
        del self.events[i]
        if self.seps:
            del self.seps[min(i, len(self.seps) - 1)]

    def insert(self, i: int, ev: str) -> None:
        self.events.insert(i, ev)
        if len(self.events) > 1:
            self.seps.insert(min(i, len(self.seps)), self._default_sep())


def _choose_event(doc: TraceDoc, rng: random.Random, pred: Optional[Callable[[dict], bool]] = None) -> Optional[tuple[int, dict]]:
    idx = list(range(len(doc.events)))
    rng.shuffle(idx)
    for i in idx[:200]:
        try:
            ev = json.loads(doc.events[i])
        except ValueError:
            continue
        if isinstance(ev, dict) and (pred is None or pred(ev)):
            return i, ev
    return None


def _dump(ev: Any) -> str:
    return json.dumps(ev, ensure_ascii=False)


def _hostile_value(rng: random.Random, raw: _Raw, old: Any) -> tuple[Any, str]:
    """Another type for ``old`` (number <-> string, object, list, null, bool)."""
    if isinstance(old, (int, float)) and not isinstance(old, bool):
        opts: list[tuple[Any, str]] = [(str(old), "string"), ({"v": old}, "object"), ([old], "list"),
                                       (None, "null"), (True, "bool"), ("", "empty string"), ("abc", "word")]
    elif isinstance(old, str):
        opts = [(len(old) or 7, "number"), ({"v": old}, "object"), ([old], "list"), (None, "null"),
                (1.5, "float"), (False, "bool"), (raw.put(b"1e400"), "1e400")]
    else:
        opts = [("x", "string"), (3, "number"), (None, "null"), ([], "empty list"), ({}, "empty object")]
    return opts[rng.randrange(len(opts))]


# --------------------------------------------------------------------- event mutators
# Each takes (doc, rng, size_bytes) and returns a description, or None when it did not apply.

def _pick_key(ev: dict, rng: random.Random) -> tuple[dict, str, str]:
    """A (container, key, dotted name) in the event, sometimes inside args."""
    args = ev.get("args")
    if isinstance(args, dict) and args and rng.random() < 0.4:
        k = rng.choice(sorted(args))
        return args, k, f"args.{k}"
    k = rng.choice(sorted(ev)) if ev else "name"
    return ev, k, k


def ev_retype(doc: TraceDoc, rng: random.Random, size: int) -> Optional[str]:
    got = _choose_event(doc, rng)
    if not got:
        return None
    i, ev = got
    box, k, name = _pick_key(ev, rng)
    if rng.random() < 0.5:  # the keys whose type the loader depends on
        box, k, name = ev, rng.choice(["pid", "tid", "name", "cat", "ph", "ts", "dur", "args", "id"]), ""
        name = k
    new, what = _hostile_value(rng, doc.raw, box.get(k, 1))
    box[k] = new
    doc.events[i] = _dump(ev)
    return f"event {i}: {name} -> {what}"


def ev_absurd_number(doc: TraceDoc, rng: random.Random, size: int) -> Optional[str]:
    got = _choose_event(doc, rng)
    if not got:
        return None
    i, ev = got
    tok = rng.choice(ABSURD_NUMBERS)
    args = ev.get("args")
    if isinstance(args, dict) and rng.random() < 0.35:
        k = rng.choice(ARG_NUMERIC_KEYS)
        args[k] = doc.raw.put(tok)
        name = f"args.{k}"
    else:
        name = rng.choice(NUMERIC_KEYS)
        ev[name] = doc.raw.put(tok)
    doc.events[i] = _dump(ev)
    return f"event {i}: {name} = {tok.decode()}"


def ev_remove_key(doc: TraceDoc, rng: random.Random, size: int) -> Optional[str]:
    got = _choose_event(doc, rng)
    if not got:
        return None
    i, ev = got
    k = rng.choice(REQUIRED_KEYS)
    args = ev.get("args")
    if isinstance(args, dict) and args and rng.random() < 0.25:
        k2 = rng.choice(sorted(args))
        del args[k2]
        doc.events[i] = _dump(ev)
        return f"event {i}: args.{k2} removed"
    ev.pop(k, None)
    doc.events[i] = _dump(ev)
    return f"event {i}: {k} removed"


def ev_huge_string(doc: TraceDoc, rng: random.Random, size: int) -> Optional[str]:
    got = _choose_event(doc, rng)
    if not got:
        return None
    i, ev = got
    k = rng.choice(["name", "name", "cat", "args"])
    n = rng.randint(size // 4, size)
    if k == "args":
        if not isinstance(ev.get("args"), dict):
            ev["args"] = {}
        ev["args"][rng.choice(["Call stack", "Input Dims", "kernel", "x"])] = "ab(" * (n // 3)
    else:
        # JSON's own punctuation too: event separators and array ends inside a string (the reader's
        # cuts and its search for the end of the events array must see through them)
        ev[k] = rng.choice(["a", "aten::", "(", "\\", "é", "}]", "}, {", '}],"k"']) * max(1, n // 6)
    doc.events[i] = _dump(ev)
    return f"event {i}: {k} huge string (~{n} chars)"


_INVALID_UTF8 = [b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x80", b"\x00"]


def ev_invalid_utf8(doc: TraceDoc, rng: random.Random, size: int) -> Optional[str]:
    got = _choose_event(doc, rng, lambda e: isinstance(e.get("name"), str))
    if not got:
        return None
    i, ev = got
    bad = rng.choice(_INVALID_UTF8)
    k = rng.choice(["name", "cat"])
    if rng.random() < 0.3:  # an escaped lone surrogate is valid JSON syntax but not valid text
        ev[k] = doc.raw.put(b'"x\\ud800y"')
        doc.events[i] = _dump(ev)
        return f"event {i}: {k} with an escaped lone surrogate"
    ev[k] = doc.raw.put(b'"' + str(ev.get(k, "n")).encode("utf-8", "replace")[:20] + bad + b'x"')
    doc.events[i] = _dump(ev)
    return f"event {i}: {k} with invalid UTF-8 {bad!r}"


def ev_deep_nesting(doc: TraceDoc, rng: random.Random, size: int) -> Optional[str]:
    got = _choose_event(doc, rng)
    if not got:
        return None
    i, ev = got
    depth = rng.choice([100, 1000, 5000, 20000, 100000])
    depth = min(depth, max(100, size // 2))
    opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
    k = rng.choice(["args", "name", "pid", "ts"])
    ev[k] = doc.raw.put(opener * depth + b"1" + closer * depth)
    doc.events[i] = _dump(ev)
    return f"event {i}: {k} nested {depth} deep"


def ev_duplicate_key(doc: TraceDoc, rng: random.Random, size: int) -> Optional[str]:
    got = _choose_event(doc, rng)
    if not got:
        return None
    i, ev = got
    k = rng.choice(["ph", "ts", "dur", "pid", "tid", "name", "cat", "args"])
    val = rng.choice(['"i"', '"X"', "-5", "1e400", '{"a":1}', "null", '"dup"', "[1]"])
    text = _dump(ev)
    doc.events[i] = text[:-1] + f', "{k}": {val}}}' if text.endswith("}") else text
    return f"event {i}: duplicate key {k} = {val}"


def ev_escaped_key(doc: TraceDoc, rng: random.Random, size: int) -> Optional[str]:
    got = _choose_event(doc, rng)
    if not got:
        return None
    i, ev = got
    k = rng.choice([k for k in ("ph", "ts", "dur", "pid", "tid", "name", "cat", "args") if k in ev] or ["ph"])
    esc = k[:-1] + "\\u%04x" % ord(k[-1])
    doc.events[i] = _dump(ev).replace(f'"{k}"', f'"{esc}"', 1)
    return f'event {i}: key "{k}" written as "{esc}"'


def ev_leading_zeros(doc: TraceDoc, rng: random.Random, size: int) -> Optional[str]:
    got = _choose_event(doc, rng, lambda e: isinstance(e.get("ts"), (int, float)))
    if not got:
        return None
    i, ev = got
    k = rng.choice([k for k in ("ts", "dur", "pid", "tid") if isinstance(ev.get(k), (int, float))])
    ev[k] = doc.raw.put(b"00" + json.dumps(ev[k]).encode())
    doc.events[i] = _dump(ev)
    return f"event {i}: {k} with leading zeros"


def ev_phase(doc: TraceDoc, rng: random.Random, size: int) -> Optional[str]:
    got = _choose_event(doc, rng)
    if not got:
        return None
    i, ev = got
    ph = rng.choice(PH_VALUES)
    ev["ph"] = ph
    if ph in ("s", "f", "t") and rng.random() < 0.5:
        ev["id"] = rng.choice([1, -1, "x", None, 2 ** 70])
    doc.events[i] = _dump(ev)
    return f"event {i}: ph -> {ph!r}"


def ev_negative_dur(doc: TraceDoc, rng: random.Random, size: int) -> Optional[str]:
    got = _choose_event(doc, rng, lambda e: "dur" in e)
    if not got:
        return None
    i, ev = got
    ev["dur"] = rng.choice([-1, -1000000, 0, -0.5, 1e15])
    doc.events[i] = _dump(ev)
    return f"event {i}: dur = {ev['dur']}"


def ev_kernel_before_launch(doc: TraceDoc, rng: random.Random, size: int) -> Optional[str]:
    """A GPU event whose ts precedes the CPU runtime call with the same correlation id."""
    parsed: dict[int, tuple[int, dict]] = {}
    gpu: list[tuple[int, dict]] = []
    for i, text in enumerate(doc.events):
        try:
            ev = json.loads(text)
        except ValueError:
            continue
        if not isinstance(ev, dict) or not isinstance(ev.get("args"), dict):
            continue
        corr = ev["args"].get("correlation")
        if not isinstance(corr, int):
            continue
        cat = str(ev.get("cat", "")).lower()
        if cat in ("kernel", "gpu_memcpy", "gpu_memset"):
            gpu.append((i, ev))
        elif "runtime" in cat or "driver" in cat:
            parsed[corr] = (i, ev)
    pairs = [(g, parsed[g[1]["args"]["correlation"]]) for g in gpu if g[1]["args"]["correlation"] in parsed]
    if not pairs:
        return None
    (gi, gev), (_, launch) = rng.choice(pairs)
    lead_us = rng.choice([1, 1000, 1e6, 1e9])
    try:
        gev["ts"] = float(launch["ts"]) - lead_us
    except (TypeError, ValueError, KeyError):
        return None
    doc.events[gi] = _dump(gev)
    return f"event {gi}: kernel ts {lead_us:g} us before its launch"


EVENT_MUTATORS = [ev_retype, ev_absurd_number, ev_remove_key, ev_huge_string, ev_invalid_utf8, ev_deep_nesting,
                  ev_duplicate_key, ev_escaped_key, ev_leading_zeros, ev_phase, ev_negative_dur,
                  ev_kernel_before_launch]


# --------------------------------------------------------------------- list mutators

def ls_delete(doc: TraceDoc, rng: random.Random, size: int) -> Optional[str]:
    if not doc.events:
        return None
    i = rng.randrange(len(doc.events))
    n = rng.choice([1, 1, 2, 10, len(doc.events)])
    for _ in range(min(n, len(doc.events) - i)):
        doc.delete(i)
    return f"events {i}..{i + n - 1} deleted"


def ls_duplicate(doc: TraceDoc, rng: random.Random, size: int) -> Optional[str]:
    if not doc.events:
        return None
    i = rng.randrange(len(doc.events))
    times = rng.choice([1, 1, 3, 100])
    for _ in range(times):
        doc.insert(i, doc.events[i])
    return f"event {i} duplicated {times}x"


def ls_swap(doc: TraceDoc, rng: random.Random, size: int) -> Optional[str]:
    if len(doc.events) < 2:
        return None
    if rng.random() < 0.2:
        doc.events.reverse()
        return "event order reversed"
    i, j = rng.randrange(len(doc.events)), rng.randrange(len(doc.events))
    doc.events[i], doc.events[j] = doc.events[j], doc.events[i]
    return f"events {i} and {j} swapped"


_JUNK = [",", ",,", "]", "[", "{", "}", "{}", "null", "1", '"x"', "[]", "true", "} {", '{"ph":', "\x00", "/*c*/",
         "NaN", "\n\n", "]}", '"traceEvents": [']


def ls_junk_between(doc: TraceDoc, rng: random.Random, size: int) -> Optional[str]:
    if len(doc.seps) < 1:
        return None
    i = rng.randrange(len(doc.seps))
    junk = rng.choice(_JUNK + ["missing comma", "non-object element"])
    if junk == "missing comma":
        doc.seps[i] = doc.seps[i].replace(",", " ")
    elif junk == "non-object element":
        doc.seps[i] = doc.seps[i] + rng.choice(['1, ', '"str", ', 'null, ', '[1,2], ', '[], ']) + ""
    else:
        doc.seps[i] = doc.seps[i] + junk
    return f"after event {i}: {junk!r}"


def ls_remove_key_everywhere(doc: TraceDoc, rng: random.Random, size: int) -> Optional[str]:
    k = rng.choice(REQUIRED_KEYS)
    cat = rng.choice([None, "kernel", "cpu_op", "cuda_runtime", "user_annotation"])
    n = 0
    for i, text in enumerate(doc.events):
        try:
            ev = json.loads(text)
        except ValueError:
            continue
        if isinstance(ev, dict) and (cat is None or ev.get("cat") == cat) and k in ev:
            del ev[k]
            doc.events[i] = _dump(ev)
            n += 1
    return f"{k} removed from {n} events" + (f" of cat {cat}" if cat else "") if n else None


def ls_whitespace_flood(doc: TraceDoc, rng: random.Random, size: int) -> Optional[str]:
    if not doc.seps:
        return None
    i = rng.randrange(len(doc.seps))
    n = rng.randint(size // 2, size)
    doc.seps[i] = doc.seps[i] + " " * n
    return f"after event {i}: {n} bytes of whitespace"


def ls_many_events(doc: TraceDoc, rng: random.Random, size: int) -> Optional[str]:
    """Repeat the event list until it is about ``size`` bytes (the same events, many times)."""
    if not doc.events:
        return None
    total = sum(len(e) for e in doc.events) or 1
    times = max(2, min(200, size // total))
    doc.events = doc.events * times
    sep = doc._default_sep()
    doc.seps = [sep] * (len(doc.events) - 1)
    return f"event list repeated {times}x"


LIST_MUTATORS = [ls_delete, ls_duplicate, ls_swap, ls_junk_between, ls_remove_key_everywhere]


# --------------------------------------------------------------------- whole-document mutators (parse, change, dump)

def _top_retype(rng: random.Random, raw: _Raw, top: dict) -> str:
    key = rng.choice(["traceEvents", "deviceProperties", "distributedInfo", "baseTimeNanoseconds",
                      "schemaVersion", "displayTimeUnit", "traceName"])
    if key == "distributedInfo" and rng.random() < 0.6:
        info = {"backend": "nccl", "rank": 0, "world_size": 2}
        sub = rng.choice(["rank", "world_size", "backend", "pg_config"])
        info[sub] = rng.choice(["x", -1, 1.5, None, [0], {"a": 1}, 2 ** 70, raw.put(b"1e400"), 100000])
        top[key] = info
        return f"distributedInfo.{sub} = {info[sub]!r}"
    if key == "deviceProperties" and isinstance(top.get(key), list) and top[key] and rng.random() < 0.6:
        dev = top[key][0]
        if isinstance(dev, dict) and dev:
            sub = rng.choice(sorted(dev))
            dev[sub] = rng.choice(["x", -1, None, [0], {"a": 1}, raw.put(b"1e400"), 0])
            return f"deviceProperties[0].{sub} = {dev[sub]!r}"
    new, what = _hostile_value(rng, raw, top.get(key, 1))
    top[key] = new
    return f"top-level {key} -> {what}"


def doc_structured(text: str, rng: random.Random, size: int) -> tuple[bytes, str]:
    """Parse the whole trace, change it, dump it: top-level retypes, the Chrome array form,
    an empty or non-list traceEvents."""
    top = json.loads(text)
    raw = _Raw()
    choice = rng.randrange(6)
    if choice == 0:
        desc = _top_retype(rng, raw, top)
    elif choice == 1:
        events = top.get("traceEvents", [])
        top = events if rng.random() < 0.5 else []
        desc = "Chrome array form (a bare list of events)" if top else "a bare empty list"
    elif choice == 2:
        top["traceEvents"] = rng.choice([[], [{}], [None], [[]], [1, "x"], [{"ph": "X"}]])
        desc = f"traceEvents = {top['traceEvents']!r}"
    elif choice == 3:
        top = rng.choice([{}, {"traceEvents": None}, None, 0, "traceEvents", {"a": {"traceEvents": []}}])
        desc = f"document = {top!r}"
    elif choice == 4:  # a random event, a random field, at JSON level
        events = top.get("traceEvents") or []
        if not events:
            return json.dumps(top).encode(), "no events to change"
        i = rng.randrange(len(events))
        ev = events[i] if isinstance(events[i], dict) else {}
        if ev:
            k = rng.choice(sorted(ev))
            ev[k], what = _hostile_value(rng, raw, ev[k])
            desc = f"event {i}: {k} -> {what} (JSON level)"
        else:
            desc = "nothing changed"
    else:  # events sorted by something odd
        events = [e for e in (top.get("traceEvents") or []) if isinstance(e, dict)]
        rng.shuffle(events)
        top["traceEvents"] = events
        desc = "events shuffled (JSON level)"
    dumped = json.dumps(top, indent=rng.choice([None, 1]))
    if rng.random() < 0.2 and isinstance(top, dict):  # a second traceEvents key
        dumped = dumped.rstrip()[:-1] + ', "traceEvents": [{"ph": "X", "name": "dup", "ts": 1, "dur": 1, "pid": 1, "tid": 1}]}'
        desc += "; a second traceEvents key"
    return raw.substitute(dumped.encode("utf-8")), desc


# --------------------------------------------------------------------- byte mutators

def by_truncate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    n = rng.randrange(len(data) + 1)
    return data[:n], f"truncated at byte {n} of {len(data)}"


def by_delete(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    if not data:
        return data, "nothing to delete"
    i = rng.randrange(len(data))
    n = rng.choice([1, 1, 2, 8, 64, 1024])
    return data[:i] + data[i + n:], f"{n} bytes deleted at {i}"


def by_duplicate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    if not data:
        return data, "nothing to duplicate"
    i = rng.randrange(len(data))
    n = rng.choice([1, 4, 64, 1024, 8192])
    return data[:i + n] + data[i:i + n] + data[i + n:], f"{n} bytes at {i} duplicated"


def by_swap(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    if len(data) < 4:
        return data, "too short to swap"
    n = rng.choice([1, 8, 100, 1000])
    i, j = sorted(rng.sample(range(len(data)), 2))
    n = min(n, j - i)
    if n <= 0:
        return data, "nothing swapped"
    return data[:i] + data[j:j + n] + data[i + n:j] + data[i:i + n] + data[j + n:], f"{n} bytes at {i} and {j} swapped"


def by_flip(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    if not data:
        return data, "nothing to flip"
    buf = bytearray(data)
    k = rng.choice([1, 1, 2, 5, 20])
    where = []
    for _ in range(k):
        i = rng.randrange(len(buf))
        buf[i] ^= 1 << rng.randrange(8)
        where.append(i)
    return bytes(buf), f"bits flipped at {where[:5]}"


def by_insert(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    i = rng.randrange(len(data) + 1)
    junk = rng.choice([b"\x00", b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"\x1f\x8b\x08", b"\"", b"\\", b"{", b"}",
                       b"]", b",", b"\r\n", b"\xef\xbb\xbf", bytes(rng.randrange(256) for _ in range(16))])
    return data[:i] + junk + data[i:], f"{junk!r} inserted at byte {i}"


def by_bom(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    return b"\xef\xbb\xbf" + data, "UTF-8 byte-order mark in front"


BYTE_MUTATORS = [by_truncate, by_delete, by_duplicate, by_swap, by_flip, by_insert, by_bom]


# --------------------------------------------------------------------- containers

def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1, mtime=0)


def wrap(data: bytes, rng: random.Random) -> tuple[bytes, str, str]:
    """Put ``data`` in a container; returns (file bytes, file suffix, description)."""
    k = rng.randrange(10)
    if k <= 3:
        return data, ".json", "plain"
    if k <= 5:
        return _gzip(data), ".json.gz", "gzip"
    if k == 6:
        if rng.random() < 0.5:
            return _gzip(data) + _gzip(data), ".json.gz", "two gzip members, each the whole document"
        cut = rng.randrange(len(data) + 1)
        return _gzip(data[:cut]) + _gzip(data[cut:]), ".json.gz", f"two gzip members split at byte {cut}"
    if k == 7:
        z = _gzip(data)
        cut = rng.randrange(len(z) + 1)
        return z[:cut], ".json.gz", f"gzip truncated at byte {cut} of {len(z)}"
    if k == 8:
        z = _gzip(data)
        return z + rng.choice([b"\x00" * 8, b"junk", b"\x1f\x8b", _gzip(b"")]), ".json.gz", "gzip with trailing bytes"
    # the name lies about the content
    if rng.random() < 0.5:
        return _gzip(data), ".json", "gzip content named .json"
    return data, ".json.gz", "plain content named .json.gz"


def gzip_bomb(doc: TraceDoc, rng: random.Random, whitespace_bytes: int) -> bytes:
    """Gzip of the trace with ``whitespace_bytes`` of spaces between two events, streamed so
    this process never holds the decompressed text."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    text = doc.text().encode("utf-8")
    cut = text.find(doc.events[len(doc.events) // 2].encode("utf-8")) if doc.events else len(text) // 2
    parts = [comp.compress(text[:cut])]
    block = b" " * (1 << 20)
    for _ in range(whitespace_bytes >> 20):
        parts.append(comp.compress(block))
    parts.append(comp.compress(text[cut:]))
    parts.append(comp.flush())
    return b"".join(parts)


# --------------------------------------------------------------------- one trace case


@dataclass
class Case:
    data: bytes  #: the file's bytes
    suffix: str  #: ".json" or ".json.gz"
    steps: list[str]  #: what was done, in order
    payload: bytes = b""  #: the bytes before the container (what a minimiser works on)
    container: str = "plain"
    #: True when the payload is not strict JSON (json.loads rejects it): a loader that
    #: analyses it must say so with a warning
    invalid_json: bool = False
    #: why the payload is not strict JSON (json.loads' message without positions)
    invalid_reason: str = ""

    @property
    def description(self) -> str:
        return "; ".join(self.steps + [self.container])


def rewrap(payload: bytes, container: str) -> tuple[bytes, str]:
    """The same container as a case's around new payload bytes (for minimising)."""
    if container == "plain":
        return payload, ".json"
    if container == "gzip":
        return _gzip(payload), ".json.gz"
    if container == "two gzip members, each the whole document":
        return _gzip(payload) + _gzip(payload), ".json.gz"
    if container == "gzip content named .json":
        return _gzip(payload), ".json"
    if container == "plain content named .json.gz":
        return payload, ".json.gz"
    raise ValueError(container)


def strict_json_problem(data: bytes) -> Optional[str]:
    """None when ``data`` is strict JSON (UTF-8, no NaN/Infinity tokens); else why not, without positions."""
    def bad_constant(name: str) -> Any:
        raise ValueError(f"{name} token")
    try:
        json.loads(data.decode("utf-8"), parse_constant=bad_constant)
    except UnicodeDecodeError:
        return "invalid UTF-8"
    except RecursionError:
        return "nesting deeper than the json module's recursion limit"
    except ValueError as e:
        return re.sub(r":? line \d+ column \d+ \(char \d+\)", "", str(e))
    return None


def mutate_trace(source: TraceDoc, rng: random.Random, *, max_string_bytes: int = 65536,
                 heavy: bool = False) -> Case:
    """One mutated trace: one to three mutations at event, list, document or byte level, then
    a container. ``max_string_bytes`` bounds huge strings, whitespace floods and nesting."""
    doc = source.copy()
    steps: list[str] = []
    size = max_string_bytes
    if heavy and rng.random() < 0.3:
        size = rng.choice([1 << 20, 8 << 20, 64 << 20])
    level = rng.random()
    data: Optional[bytes] = None
    if level < 0.10:
        data, desc = doc_structured(doc.text(), rng, size)
        steps.append(desc)
    else:
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            pool = EVENT_MUTATORS * 2 + LIST_MUTATORS + ([ls_whitespace_flood, ls_many_events] if rng.random() < 0.2 else [])
            for _attempt in range(5):
                desc = rng.choice(pool)(doc, rng, size)
                if desc:
                    steps.append(desc)
                    break
        data = doc.encode()
    if rng.random() < 0.35:
        for _ in range(rng.choice([1, 1, 2])):
            data, desc = rng.choice(BYTE_MUTATORS)(data, rng)
            steps.append(desc)
    problem = strict_json_problem(data)
    file_bytes, suffix, container = wrap(data, rng)
    return Case(file_bytes, suffix, steps, payload=data, container=container, invalid_json=problem is not None,
                invalid_reason=problem or "")


def bomb_case(source: TraceDoc, rng: random.Random, whitespace_bytes: int) -> Case:
    z = gzip_bomb(source, rng, whitespace_bytes)
    return Case(z, ".json.gz", [f"gzip bomb: {whitespace_bytes >> 20} MiB of spaces between two events "
                               f"({len(z) >> 10} KiB compressed)"], payload=b"", container="bomb")


# --------------------------------------------------------------------- analysis documents


def _walk(obj: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    """Every (path, value) in a JSON value, containers included."""
    out = [(path, obj)]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.extend(_walk(v, path + (k,)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:50]):
            out.extend(_walk(v, path + (i,)))
    return out


def _set(obj: Any, path: tuple, value: Any) -> None:
    for p in path[:-1]:
        obj = obj[p]
    obj[path[-1]] = value


def _delete(obj: Any, path: tuple) -> None:
    for p in path[:-1]:
        obj = obj[p]
    del obj[path[-1]]


def _fmt(path: tuple) -> str:
    return ".".join(str(p) for p in path) or "<root>"


def mutate_document(doc: dict, rng: random.Random) -> tuple[bytes, str]:
    """A corrupted perfkit analysis document (the bytes of a file) and what was done."""
    raw = _Raw()
    d = copy.deepcopy(doc)
    k = rng.randrange(10)
    steps = []
    if k == 0:
        d = rng.choice([[], None, "perfkit.analysis/1", 1, {}, {"schema": "perfkit.analysis/1"}])
        steps.append(f"document = {d!r}")
    elif k == 1:
        d["schema"] = rng.choice(["perfkit.analysis/3", "perfkit.analysis/0", "", None, 1, "other/1"])
        steps.append(f"schema = {d['schema']!r}")
    else:
        for _ in range(rng.choice([1, 1, 2, 4, 16])):
            nodes = _walk(d)[1:]
            if not nodes:
                break
            path, val = rng.choice(nodes)
            what = rng.random()
            if what < 0.3:
                _delete(d, path)
                steps.append(f"{_fmt(path)} deleted")
            elif what < 0.6:
                new, desc = _hostile_value(rng, raw, val)
                _set(d, path, new)
                steps.append(f"{_fmt(path)} -> {desc}")
            elif what < 0.85:
                tok = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1", b"0", b"1e308", b"2e19", b"-1e400"])
                _set(d, path, raw.put(tok))
                steps.append(f"{_fmt(path)} = {tok.decode()}")
            elif what < 0.95:
                depth = rng.choice([50, 1000, 100000])
                _set(d, path, raw.put(b"[" * depth + b"]" * depth))
                steps.append(f"{_fmt(path)} nested {depth} deep")
            else:
                _set(d, path, [] if isinstance(val, dict) else {} if isinstance(val, list) else [val] * 1000)
                steps.append(f"{_fmt(path)} emptied or repeated")
    data = raw.substitute(json.dumps(d, indent=rng.choice([None, 2])).encode("utf-8"))
    if rng.random() < 0.3:
        data, desc = rng.choice([by_truncate, by_flip, by_delete, by_insert, by_duplicate])(data, rng)
        steps.append(desc)
    return data, "; ".join(steps)


#: Keys of a budget file's [budget] table worth corrupting (budget init writes them).
def mutate_budget(text: str, rng: random.Random) -> tuple[bytes, str]:
    """A corrupted budget TOML (starting from a ``perfkit budget init`` file)."""
    lines = text.splitlines()
    limit_lines = [i for i, ln in enumerate(lines) if re.match(r"^[\w.]+ = \{", ln)]
    k = rng.randrange(8)
    if k <= 3 and limit_lines:
        i = rng.choice(limit_lines)
        val = rng.choice(["nan", "inf", "-inf", "-1", "1e400", '"x"', "[]", "{}", "true", "1e308", "0", "-0.0",
                          '"+5%"', '"-200%"', '"abc%"'])
        field = rng.choice(["max", "min"])
        new = re.sub(r"\{.*\}", f"{{ {field} = {val} }}", lines[i].split("#")[0]) if k < 3 else \
            re.sub(r"\{.*\}", "{ min = 10, max = 1 }", lines[i].split("#")[0])
        lines[i] = new
        desc = f"line {i + 1}: {new.strip()}"
    elif k == 4:
        key = rng.choice(["[budget]", "[settings]", "[budget.relative]", "nosuch.metric = { max = 1 }",
                          "step_ms = { max = 1, severity = \"nope\" }", "step_ms = 5", "min_samples = -3",
                          "alpha = 2.0", "alpha = nan"])
        lines.insert(rng.randrange(len(lines) + 1), key)
        desc = f"inserted {key!r}"
    elif k == 5:
        depth = rng.choice([100, 2000, 50000])
        lines.append("deep = " + "[" * depth + "]" * depth)
        desc = f"array nested {depth} deep"
    elif k == 6:
        lines = [ln for ln in lines if not ln.startswith("[budget]")]
        desc = "[budget] header removed"
    else:
        data, desc = rng.choice([by_truncate, by_flip, by_insert, by_delete])(text.encode(), rng)
        return data, desc
    return ("\n".join(lines) + "\n").encode("utf-8"), desc


# --------------------------------------------------------------------- the document commands

DOC_COMMANDS = ["merge", "diff", "diff-reversed", "report", "report-html", "budget-init", "budget-check",
                "budget-baseline", "budget-bad-toml"]


def make_document_sources(trace: str, base: str) -> dict[str, Any]:
    """Two per-rank analysis documents of one trace (rank0/rank1 by file name), a budget from
    the first (budget init) and a budget with relative limits too."""
    import os
    import shutil

    import perfkit
    from perfkit.budget.init import parse_headroom, starting_budget

    paths = {}
    for r in (0, 1):
        t = os.path.join(base, f"rank{r}.pt.trace.json.gz")
        shutil.copyfile(trace, t)
        doc = perfkit.analyze(t).to_dict()
        paths[r] = os.path.join(base, f"rank{r}.analysis.json")
        with open(paths[r], "w") as f:
            json.dump(doc, f, indent=2)
    with open(paths[1]) as f:
        doc1 = json.load(f)
    with open(paths[0]) as f:
        text = starting_budget(json.load(f), paths[0], parse_headroom("10%"))
    budget = os.path.join(base, "budget.toml")
    with open(budget, "w") as f:
        f.write(text)
    relative = text.replace("# [budget.relative]", "[budget.relative]").replace('# step_ms = "+5%"', 'step_ms = "+5%"')
    budget_rel = os.path.join(base, "budget-relative.toml")
    with open(budget_rel, "w") as f:
        f.write(relative)
    return {"rank0": paths[0], "rank1": paths[1], "doc1": doc1, "budget": budget, "budget_relative": budget_rel,
            "budget_text": relative}


def doc_command(command: str, bad: str, base: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """The argv that runs ``command`` with the corrupted file ``bad`` in it."""
    import os

    j, h, t = (os.path.join(out_dir, n) for n in ("out.json", "out.html", "out.toml"))
    good, budget = base["rank0"], base["budget"]
    argv = {
        "merge": ["merge", good, bad, "--json", j, "-q"],
        "diff": ["diff", good, bad, "--json", j],
        "diff-reversed": ["diff", bad, good, "--json", j],
        "report": ["report", bad],
        "report-html": ["report", bad, "--html", h],
        "budget-init": ["budget", "init", bad, "--out", t, "--force"],
        "budget-check": ["budget", "check", budget, bad],
        "budget-baseline": ["budget", "check", base["budget_relative"], good, "--baseline", bad],
        "budget-bad-toml": ["budget", "check", bad, good, "--baseline", good],
    }[command]
    return {"target": "docs", "command": command, "argv": argv, "names": [os.path.basename(bad)],
            "outputs": [j, h, t], "json_outputs": [j] if command in ("merge", "diff", "diff-reversed") else [],
            "budget_check": command.startswith("budget-") and command != "budget-init"}



# --------------------------------------------------------------------- checks shared by the slice and the fuzzer


class NonFinite(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise NonFinite(f"JSON constant {name}")


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise NonFinite(f"number {text} is not finite")
    return v


def load_strict_json(text: str) -> Any:
    """Parse a document perfkit wrote; NaN, Infinity, or a number that overflows to inf raise NonFinite."""
    return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)


def nonfinite_paths(obj: Any, path: str = "") -> list[str]:
    """Where a parsed document holds NaN or +-inf (list indices shown as [])."""
    out: list[str] = []
    if isinstance(obj, float) and not math.isfinite(obj):
        out.append(path or "<root>")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.extend(nonfinite_paths(v, f"{path}.{k}" if path else str(k)))
    elif isinstance(obj, list):
        for v in obj:
            out.extend(nonfinite_paths(v, path + "[]"))
    return sorted(set(out))


# --------------------------------------------------------------------- running the command line in-process


def run_cli(argv: list[str]) -> tuple[Optional[int], Optional[BaseException], str, str]:
    """``perfkit.cli.main(argv)`` with stdout and stderr captured.

    Returns (exit code, the exception that escaped main or None, stdout, stderr). Python
    warnings raised during the call are appended to stderr as a user would see them.
    """
    import contextlib
    import io
    import warnings

    from perfkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    rc: Optional[int] = None
    exc: Optional[BaseException] = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(argv)
            except (Exception, SystemExit) as e:  # noqa: BLE001  (anything but Ctrl-C is a finding)
                exc = e
    stderr = err.getvalue() + "".join(f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}\n" for w in caught)
    return rc, exc, out.getvalue(), stderr


def exception_signature(exc: BaseException) -> str:
    """Exception type and the innermost frame inside the perfkit package (file:line function)."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    inside = [f for f in frames if "/perfkit/" in f.filename.replace("\\", "/")]
    f = inside[-1] if inside else (frames[-1] if frames else None)
    if f is None:
        return type(exc).__name__
    name = f.filename.replace("\\", "/")
    rel = name[name.rfind("/perfkit/") + 1:] if "/perfkit/" in name else name.rsplit("/", 1)[-1]
    return f"{type(exc).__name__} @ {rel}:{f.lineno} {f.name}"


def error_line_problem(stderr: str, names: list[str]) -> Optional[str]:
    """None when stderr follows the exit-2 contract (README "Exit codes"): only ``perfkit: warning:``
    and ``perfkit: error:`` lines, at least one error, one line per problem, and every error line
    naming one of ``names`` (file base names); else what is wrong with it."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    if not lines:
        return "no message"
    errors = [ln for ln in lines if ln.startswith("perfkit: error:")]
    if not errors:
        return "no 'perfkit: error:' line"
    if any(not ln.startswith(("perfkit: error:", "perfkit: warning:")) for ln in lines):
        return "multi-line"
    if not all(any(n in ln for n in names) for ln in errors):
        return "no file named"
    return None
