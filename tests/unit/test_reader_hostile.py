"""Hostile traces (issue #12, Loader): the reader never crashes, never hangs, keeps memory bounded
and loses no event for a bad one. Each reproducer of the issue is a test here."""

from __future__ import annotations

import ctypes
import gzip
import json
import math
import mmap
import os
import random
import signal
import zlib

import numpy as np
import pytest

from perfkit.errors import TraceFormatError
from perfkit.trace import decode, reader
from perfkit.trace import model as m
from perfkit.trace import read_trace


def ev(i: int, **kw) -> str:
    e = {"ph": "X", "cat": "kernel", "name": f"k{i}", "pid": 0, "tid": 7, "ts": 1000 + i, "dur": 1}
    e.update(kw)
    return json.dumps(e)


def write(tmp_path, items, name="t.json", gz=False, tail=',"displayTimeUnit":"ms"}') -> str:
    data = ('{"traceEvents":[' + ",".join(items) + "]" + tail).encode() if isinstance(items[0], str) else \
        b'{"traceEvents":[' + b",".join(items) + b"]" + tail.encode()
    path = tmp_path / (name + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(data) if gz else data)
    old = 1_600_000_000
    os.utime(path, (old, old))  # not "being written": plain files are read through the memory map
    return str(path)


@pytest.fixture(params=["c", "msgspec"])
def scanner(request, monkeypatch):
    if request.param == "msgspec":
        monkeypatch.setattr(decode, "_scan", None)
    else:
        assert decode._scan is not None, "the C scanner was not built (setup.py build_ext)"
    return request.param


def names_of(trace) -> list[str]:
    return sorted(trace.name_array()[trace.events[m.NAME]].tolist())


def no_nan_or_inf(trace) -> None:
    for col, arr in trace.events.items():
        if arr.dtype.kind == "f":
            assert np.isfinite(arr).all(), col
    assert np.isfinite(trace.memory[m.MEM_TS]).all()
    assert (trace.events[m.DUR] >= 0).all()


# ----------------------------------------------------------------------------- one bad event anywhere

BAD = ['{"ph":"X","ts":012}', '{"ph":"X","name":"a\x01b","ts":1}', '{"ph":"X","ts":1,}', '{"ph":"X",ts:1}',
       '{"ph":"X","name":"\\q"}', '{"ph":"X","ts":1 "dur":2}', '{"ph":"X","args":{"a":[1,,2]}}']


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("small_chunks", [False, True])
def test_a_malformed_event_anywhere_loses_nothing_else(tmp_path, monkeypatch, scanner, gz, small_chunks):
    """453 of the 482 tracebacks: ChunkError escaped the reader for one bad event not at the end."""
    if small_chunks:  # bad events at and across chunk boundaries
        monkeypatch.setattr(reader, "CHUNK_BYTES", 2048)
        monkeypatch.setattr(reader, "_WINDOW", 512)
    good = [ev(i) for i in range(600)]
    items = list(good)
    at = [0, 1, 77, 78, 300, 599]
    for k, pos in enumerate(sorted(at, reverse=True)):
        items.insert(pos, BAD[k % len(BAD)])
    path = write(tmp_path, items, gz=gz)
    trace = read_trace(path, workers=0)
    assert names_of(trace) == sorted(f"k{i}" for i in range(600))
    (warning,) = [w for w in trace.warnings if "could not be decoded" in w]
    assert warning.startswith(f"{path}: {len(at)} events could not be decoded")
    first = ('{"traceEvents":[' + ",".join(items)).encode().index(BAD[(len(at) - 1) % len(BAD)].encode())
    assert f"first at byte {first:,}" in warning


def test_consecutive_bad_events_are_counted_one_by_one(tmp_path, scanner):
    path = write(tmp_path, [ev(0)] + BAD + [ev(1)])
    trace = read_trace(path, workers=0)
    assert len(trace) == 2
    assert any(w.startswith(f"{path}: {len(BAD)} events could not be decoded") for w in trace.warnings)


def test_nothing_usable_is_exit_2_naming_the_file(tmp_path, scanner):
    path = write(tmp_path, BAD[:3])
    with pytest.raises(TraceFormatError, match="no event could be decoded") as info:
        read_trace(path, workers=0)
    assert str(info.value).startswith(path)


def test_separator_inside_names_across_many_chunks(tmp_path, monkeypatch, scanner):
    """A chunk cut inside a string is joined with the next one, not taken for a bad event."""
    monkeypatch.setattr(reader, "CHUNK_BYTES", 1024)
    monkeypatch.setattr(reader, "_WINDOW", 256)
    items = [ev(i, name=f"k{i}" + "}, {" * (i % 40) + "\\\"}, {") for i in range(300)]
    for gz in (False, True):
        trace = read_trace(write(tmp_path, items, gz=gz), workers=0)
        assert len(trace) == 300 and not trace.warnings


def test_invalid_utf8_in_the_fallback_decoder_loses_nothing(tmp_path, scanner):
    items = [ev(i).encode() for i in range(50)]
    items[20] = items[20].replace(b'"k20"', b'"k\xff20"')
    items[30] = items[30].replace(b'"kernel"', b'"kernel", "x": "\xc3"')
    trace = read_trace(write(tmp_path, items), workers=0)
    assert len(trace) == 50
    assert "k\ufffd20" in names_of(trace)
    assert any("U+FFFD" in w for w in trace.warnings)


def test_two_gzip_members_each_a_whole_document(tmp_path, scanner):
    """Defined: the first document is read, with a warning; the second is not mixed in."""
    first = ('{"traceEvents":[' + ",".join(ev(i) for i in range(10)) + "]}").encode()
    second = ('{"traceEvents":[' + ",".join(ev(i) for i in range(100, 130)) + "]}").encode()
    path = tmp_path / "two.json.gz"
    path.write_bytes(gzip.compress(first) + gzip.compress(second))
    trace = read_trace(str(path), workers=0)
    assert names_of(trace) == sorted(f"k{i}" for i in range(10))
    assert any("second gzip member holds another JSON document" in w for w in trace.warnings)
    # members that together hold one document (a writer that flushed members) are one stream
    whole = ('{"traceEvents":[' + ",".join(ev(i) for i in range(40)) + "]}").encode()
    path.write_bytes(gzip.compress(whole[:777]) + gzip.compress(whole[777:]))
    trace = read_trace(str(path), workers=0)
    assert len(trace) == 40 and not trace.warnings


# ----------------------------------------------------------------------------- wrong types, absurd numbers

def test_wrong_types_and_absurd_numbers_are_dropped_or_clamped_and_counted(tmp_path, scanner):
    odd = [
        '{"ph":"X","cat":"kernel","name":"k","pid":{"a":1},"tid":7,"ts":1,"dur":1}',  # TypeError: unhashable
        '{"ph":"X","cat":"kernel","name":"k","pid":0,"tid":[7],"ts":1,"dur":1}',
        '{"ph":"X","cat":"kernel","name":{"n":1},"pid":0,"tid":7,"ts":1,"dur":1}',
        '{"ph":"X","cat":["kernel"],"name":"k","pid":0,"tid":7,"ts":1,"dur":1}',
        '{"ph":"X","cat":"kernel","name":"k","pid":99999999999999999999,"tid":7,"ts":1,"dur":1}',  # OverflowError
        '{"ph":"X","cat":"kernel","name":"k","pid":1e19,"tid":7,"ts":1,"dur":1}',  # UB double->int64 cast
        '{"ph":"X","cat":"kernel","name":"k","pid":1.5,"tid":7,"ts":1,"dur":1}',
        '{"ph":"X","cat":"kernel","name":"k","pid":0,"tid":7,"ts":1e400,"dur":1}',
        '{"ph":"X","cat":"kernel","name":"k","pid":0,"tid":7,"ts":1,"dur":1e400}',
        '{"ph":"X","cat":"kernel","name":"k","pid":0,"tid":7,"ts":1,"dur":-3}',
        '{"ph":"X","cat":"kernel","name":"k","pid":0,"tid":7,"ts":1,"dur":2,"args":{"correlation":1e30}}',
        '{"ph":"i","name":"[memory]","ts":1e400,"args":{"Bytes":5}}',
    ]
    trace = read_trace(write(tmp_path, [ev(i) for i in range(5)] + odd), workers=0)
    assert len(trace) == 5 + 2  # the clamped dur and the ignored id arg stay
    no_nan_or_inf(trace)
    text = "\n".join(trace.warnings)
    for expect in ["5 timed events whose pid or tid", "2 timed events whose name or cat", "1 timed events whose ts",
                   "1 timed events whose dur", "1 timed events with a negative dur", "1 id args",
                   "1 [memory] events"]:
        assert expect in text, (expect, text)


def test_infinity_never_reaches_the_json_document(tmp_path):
    """--json crashed with "Out of range float values are not JSON compliant"."""
    from typer.testing import CliRunner

    from perfkit.cli import app

    items = [
        '{"ph":"X","cat":"user_annotation","name":"ProfilerStep#1","pid":1,"tid":1,"ts":0,"dur":100}',
        '{"ph":"X","cat":"cuda_runtime","name":"cudaLaunchKernel","pid":1,"tid":1,"ts":5,"dur":5,"args":{"correlation":1}}',
        '{"ph":"X","cat":"kernel","name":"k","pid":0,"tid":7,"ts":12,"dur":1e400,"args":{"correlation":1}}',
        '{"ph":"X","cat":"kernel","name":"k2","pid":0,"tid":7,"ts":Infinity,"dur":1,"args":{"correlation":1}}',
        '{"ph":"X","cat":"kernel","name":"k3","pid":0,"tid":7,"ts":20,"dur":3,"args":{"correlation":1}}',
    ]
    path = write(tmp_path, items)
    out = tmp_path / "a.json"
    result = CliRunner().invoke(app, ["analyze", path, "--json", str(out), "-q"])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "Infinity" not in text and "NaN" not in text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the document"))


@pytest.mark.parametrize("meta, dropped", [
    ('"deviceProperties": 7', "deviceProperties"),  # not a list: TypeError 'int' object is not iterable
    ('"deviceProperties": [{"id": null, "name": "H100"}]', "deviceProperties[0]"),  # int(None) in the devices table
    ('"deviceProperties": [{"id": 0, "totalGlobalMem": 1e400}]', "deviceProperties[0].totalGlobalMem"),
    ('"distributedInfo": {"rank": -3, "world_size": 2}', "distributedInfo.rank"),
    ('"distributedInfo": [1, 2]', "distributedInfo"),
    ('"baseTimeNanoseconds": "soon"', "baseTimeNanoseconds"),
])
def test_top_level_metadata_of_the_wrong_type_is_ignored_with_a_warning(tmp_path, meta, dropped):
    """Found by the fuzzer: a top-level key of the wrong type crashed perfkit.analyze()."""
    import perfkit

    items = [
        '{"ph":"X","cat":"user_annotation","name":"ProfilerStep#1","pid":1,"tid":1,"ts":0,"dur":100}',
        '{"ph":"X","cat":"cuda_runtime","name":"cudaLaunchKernel","pid":1,"tid":1,"ts":5,"dur":5,"args":{"correlation":1}}',
        '{"ph":"X","cat":"kernel","name":"k","pid":0,"tid":7,"ts":12,"dur":8,"args":{"correlation":1,"device":0}}',
    ]
    path = write(tmp_path, items, tail=f',{meta}}}')
    doc = perfkit.analyze(path).to_dict()
    json.dumps(doc, allow_nan=False)
    warned = [w for w in doc["trace"]["warnings"] if "metadata" in w]
    assert len(warned) == 1 and dropped in warned[0] and path in warned[0], doc["trace"]["warnings"]
    assert doc["device"]["busy_ms_per_step"] == pytest.approx(0.008)


def test_a_kernel_before_its_launch_is_moved_to_the_launch(tmp_path, scanner):
    items = [
        '{"ph":"X","cat":"cuda_runtime","name":"cudaLaunchKernel","pid":1,"tid":1,"ts":100,"dur":5,"args":{"correlation":9}}',
        '{"ph":"X","cat":"kernel","name":"early","pid":0,"tid":7,"ts":90,"dur":20,"args":{"correlation":9}}',
        '{"ph":"X","cat":"kernel","name":"gone","pid":0,"tid":7,"ts":50,"dur":20,"args":{"correlation":9}}',
        '{"ph":"X","cat":"kernel","name":"fine","pid":0,"tid":7,"ts":101,"dur":20,"args":{"correlation":9}}',
    ]
    trace = read_trace(write(tmp_path, items), workers=0)
    by = {n: i for i, n in enumerate(trace.name_array()[trace.events[m.NAME]].tolist())}
    ts, dur = trace.events[m.TS], trace.events[m.DUR]
    assert (ts[by["early"]], dur[by["early"]]) == (100.0, 10.0)  # end (110) kept
    assert (ts[by["gone"]], dur[by["gone"]]) == (100.0, 0.0)  # ended before the launch: nothing left
    assert (ts[by["fine"]], dur[by["fine"]]) == (101.0, 20.0)
    assert any("2 GPU events that start before their launch" in w for w in trace.warnings)


# ----------------------------------------------------------------------------- resource bounds

def _bomb(path, gap_bytes: int, events: int = 2000) -> None:
    """A gzip of events, ``gap_bytes`` of whitespace between two of them, more events."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(path, "wb") as f:
        f.write(c.compress(('{"traceEvents":[' + ",".join(ev(i) for i in range(events)) + " ").encode()))
        block = b" \n" * (1 << 19)
        for _ in range(gap_bytes // len(block)):
            f.write(c.compress(block))
        f.write(c.compress((", " + ",".join(ev(i) for i in range(events, 2 * events)) + '],"x":1}').encode()))
        f.write(c.flush())


@pytest.mark.parametrize("scanner", ["c"], indirect=True)
def test_gzip_bomb_streams_in_bounded_memory(tmp_path, monkeypatch, scanner):
    """3 MB of gzip holding GBs of whitespace between two events ran past 300 s at 9.3 GB: the chunker
    rescanned a growing buffer. Bound: the chunker never holds more than 2 chunks + a block + the
    largest event, whatever the gap (counted, not timed)."""
    chunk = 256 * 1024
    monkeypatch.setattr(reader, "CHUNK_BYTES", chunk)
    monkeypatch.setattr(reader, "_WINDOW", 16 * 1024)
    bounds = []
    for gap in (8 << 20, 64 << 20):
        path = tmp_path / f"bomb{gap}.json.gz"
        _bomb(path, gap)
        stats: dict = {}
        trace = read_trace(str(path), workers=0, stats=stats)
        assert len(trace) == 4000 and trace.meta == {"x": 1} and not trace.warnings
        assert stats["streamed"] == 1
        bounds.append(stats["max_buffer_bytes"])
    largest_event = max(len(ev(i)) for i in range(4000))
    assert max(bounds) <= 3 * chunk + 16 * 1024 + largest_event
    assert bounds[1] <= bounds[0] + largest_event  # 8x the gap, same memory


def test_plain_file_gap_and_a_huge_event_stream_in_bounded_memory(tmp_path, monkeypatch, scanner):
    chunk = 64 * 1024
    monkeypatch.setattr(reader, "CHUNK_BYTES", chunk)
    monkeypatch.setattr(reader, "_WINDOW", 8 * 1024)
    big = ev(5000, name="huge " + "x" * (3 * chunk))  # one event larger than a chunk
    items = [ev(i) for i in range(500)] + [" " * (20 * chunk) + ev(500)] + [big] + [ev(i) for i in range(501, 900)]
    for gz in (False, True):
        stats: dict = {}
        trace = read_trace(write(tmp_path, items, gz=gz), workers=0, stats=stats)
        assert len(trace) == 901 and not trace.warnings
        assert stats["max_buffer_bytes"] <= 6 * chunk + len(big)


def test_an_event_beyond_the_size_cap_is_skipped_and_counted(tmp_path, monkeypatch, scanner):
    monkeypatch.setattr(reader, "CHUNK_BYTES", 16 * 1024)
    monkeypatch.setattr(reader, "_WINDOW", 4 * 1024)
    monkeypatch.setattr(reader, "MAX_EVENT_BYTES", 100 * 1024)
    items = [ev(i) for i in range(100)] + [ev(100, name="y" * 300_000)] + [ev(i) for i in range(101, 200)]
    stats: dict = {}
    trace = read_trace(write(tmp_path, items, gz=True), workers=0, stats=stats)
    assert len(trace) == 199
    assert any("1 event could not be decoded" in w for w in trace.warnings)
    assert stats["max_buffer_bytes"] < 300_000


def test_a_huge_name_is_matched_on_its_first_characters_only(monkeypatch, request):
    """A 90 MB event name took 130 s and 2.3 GB in the category regexes."""
    import importlib

    from perfkit.analysis import rules, timeline

    attribute = importlib.import_module("perfkit.analysis.attribute")

    seen = []

    class Recording:
        """A compiled regex, or a fold.NameSearch (called with the text and its lower-cased form)."""

        def __init__(self, rx):
            self.rx = rx

        def search(self, text, *a):
            seen.append(len(text))
            return self.rx.search(text, *a)

        def __call__(self, text, lowered=None):
            seen.append(max(len(text), len(lowered or "")))
            return self.rx(text, lowered)

    import re

    from perfkit.analysis import fold

    real = re.compile
    monkeypatch.setattr(fold.re, "compile", lambda *a, **k: Recording(real(*a, **k)))
    fold.name_search.cache_clear()  # searches made before (by other tests) hold the real compile
    request.addfinalizer(fold.name_search.cache_clear)  # and these ones the recording one
    huge = "void gemm_kernel<" + "a" * 5_000_000 + ">()"
    assert timeline.name_mask(["x", huge], "gemm").tolist() == [False, True]
    assert timeline.name_mask(["x", huge], "(?i)GEMM").tolist() == [False, True]  # the folded search
    compiled = [(r, *(Recording(x) if x is not None else None for x in r.compiled())) for r in rules.CATEGORY_RULES]
    attribute._classify(compiled, "kernel", rules.match_text(huge), rules.match_text("aten::mm" + "b" * 10**6))
    assert seen and max(seen) <= rules.MATCH_CHARS
    assert attribute.classify(huge) == attribute.classify("void gemm_kernel<a>()")


# ----------------------------------------------------------------------------- files that are not traces

def test_a_fifo_is_refused_before_open(tmp_path):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    old = signal.signal(signal.SIGALRM, lambda *a: pytest.fail("read_trace blocked on a FIFO"))
    signal.alarm(20)
    try:
        with pytest.raises(TraceFormatError, match="FIFO") as info:
            read_trace(str(fifo))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert str(info.value).startswith(str(fifo)) and "\n" not in str(info.value)


def test_devices_are_refused_with_one_line():
    with pytest.raises(TraceFormatError, match="character device"):
        read_trace("/dev/null")


def test_unreadable_files_and_folders_are_one_line_naming_them(tmp_path, monkeypatch, scanner):
    path = write(tmp_path, [ev(0)])

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(reader, "open", denied, raising=False)  # as root, chmod does not deny reads
    with pytest.raises(TraceFormatError, match="Permission denied") as info:
        read_trace(path)
    assert str(info.value).startswith(path)
    monkeypatch.undo()

    from pathlib import Path

    from perfkit.trace.files import expand_traces

    monkeypatch.setattr(Path, "iterdir", denied)
    with pytest.raises(TraceFormatError, match="cannot list") as info:
        expand_traces([str(tmp_path)])
    assert str(info.value).startswith(str(tmp_path))


# ----------------------------------------------------------------------------- the scanner never reads past its buffer

def _guarded_scan(data: bytes, bare: int) -> None:
    """Scan ``data`` placed at the very end of a readable page followed by an unreadable one:
    a read past the buffer is a segfault here, not a silent pass."""
    page = mmap.PAGESIZE
    assert len(data) <= page
    mm = mmap.mmap(-1, 2 * page, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(mm))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert libc.mprotect(ctypes.c_void_p(base + page), page, 0) == 0  # PROT_NONE
    try:
        mm[page - len(data) : page] = data
        view = (ctypes.c_char * len(data)).from_address(base + page - len(data))
        try:
            decode._scan.scan(memoryview(view).cast("B"), bare)
        except ValueError:
            pass
    finally:
        libc.mprotect(ctypes.c_void_p(base + page), page, mmap.PROT_READ | mmap.PROT_WRITE)


GUARDED = [
    b'{"ph":"X","ts":1e5',  # strtod at the buffer's end
    b'{"ph":"X","args":{"Call stack":',  # *L->p after lex_key
    b'{"ph":"X","args":{"name":',
    b'{"ph":"X","cat":"kernel","name":"a\\"b\\u00e9\\ud83d\\ude00","pid":"stream 7","tid":-12,"ts":1699999999999.123,'
    b'"dur":1.0e3,"args":{"correlation":12345678901234567890,"External id":1.5,"Python parent id":null,'
    b'"Input Dims":[[1,2],[]],"x":{"y":[true,false,null,-0.5e-7]}}}',
    b'{"ph":"M","name":"thread_name","pid":1,"tid":2,"args":{"name":"w\\\\"}}',
    b'{"ph":"i","name":"[memory]","ts":1669783704212433.0,"args":{"Bytes":-5,"Device Id":0}}',
    b'{"p\\u0068":"X","ts":"12"}',
    b'[{"ph":"X","ts":123456789012345678901234567890}]',
]


def test_scanner_never_reads_past_its_buffer():
    assert decode._scan is not None, "the C scanner was not built (setup.py build_ext)"
    for text in GUARDED:
        for cut in range(1, len(text) + 1):
            for bare in (1, 0, -1):
                _guarded_scan(text[:cut], bare)
    # every full event ended at the page's end decodes to what it decodes to anywhere
    whole = GUARDED[3]
    _guarded_scan(whole, 1)
    assert len(np.frombuffer(decode._scan.scan(whole, 1)["ts"], np.float64)) == 1


def test_no_nan_in_real_columns_and_no_warnings_on_real_traces():
    """The definition keeps real traces as they were: no warning, nothing dropped."""
    from ..conftest import BF16, anchor

    for path in [BF16, anchor("kineto/tb_plugin/samples/resnet50_num_workers_0/worker0.1623143089861.pt.trace.json.gz"),
                 anchor("kineto/history/a0380a32/plugin/samples/resnet50_num_workers_0/worker0.pt.trace.json.gz")]:
        trace = read_trace(str(path))
        no_nan_or_inf(trace)
        assert not trace.warnings, trace.warnings
        assert math.isfinite(float(trace.events[m.TS].sum()))


def _count_tail_parses(monkeypatch) -> list[int]:
    sizes: list[int] = []
    real = reader._tail_meta

    def counting(rest):
        sizes.append(len(rest))
        return real(rest)

    monkeypatch.setattr(reader, "_tail_meta", counting)
    return sizes


@pytest.mark.parametrize("gz", [False, True])
def test_a_name_full_of_array_ends_is_not_parsed_as_the_file_end(tmp_path, monkeypatch, gz):
    """A 200,000-fold "}]" in the last event's name made the end-of-array search copy and parse the
    rest of the file at each one (11 s for 0.4 MB). Each candidate is now checked where it stands:
    the tail is parsed once, for the real end (counted, not timed)."""
    sizes = _count_tail_parses(monkeypatch)
    items = [ev(i) for i in range(300)] + [ev(300, name="}]" * 200_000)]
    trace = read_trace(write(tmp_path, items, gz=gz), workers=0)
    assert len(trace) == 301 and trace.meta == {"displayTimeUnit": "ms"} and not trace.warnings
    assert len(sizes) == 1 and sum(sizes) < 100


def test_array_ends_inside_strings_never_reach_the_tail_parse(tmp_path, monkeypatch):
    """A quote inside a JSON string is escaped, so no "}]" inside one is followed by what may follow the
    events array (nothing, a last "}", or ',"'): names of '}],"a":1' runs (written '}],\\"a\\":1') and
    of "}] }" runs cost no parse either, whatever their number."""
    sizes = _count_tail_parses(monkeypatch)
    items = ([ev(i) for i in range(300)] + [ev(300, name='}],"a":1' * 30_000)]
             + [ev(301, name="}] }" * 30_000)])
    trace = read_trace(write(tmp_path, items), workers=0)
    assert len(trace) == 302 and trace.meta == {"displayTimeUnit": "ms"} and not trace.warnings
    assert len(sizes) == 1


def test_the_tail_check_never_rejects_a_tail_that_parses():
    """The cheap check before the parse is a necessary condition of it: over generated tails, every one
    that _tail_meta accepts passes it."""
    rng = random.Random(5)
    alphabet = [b" ", b"\n", b"\t", b"\x0b", b"\x0c", b",", b"}", b"]", b'"', b"a", b":", b"1", b"{", b'"k"', b'"k":1']
    accepted = 0
    for _ in range(100_000):
        tail = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
        if reader._tail_meta(tail) is not None:
            accepted += 1
            assert reader._TAIL_START.match(tail, 0, len(tail)), tail
    assert accepted > 1000


def test_the_c_search_for_array_ends_finds_what_the_regular_expression_finds():
    """reader._close_brackets (the C scanner's close_bracket, called from each match's end) lists the same
    matches as _END.finditer, over generated buffers of braces, brackets, whitespace (every byte that
    \\s matches) and other bytes, from any start to any end, as bytes, bytearray and memoryview."""
    assert decode._scan is not None, "the C scanner was not built (setup.py build_ext)"
    rng = random.Random(11)
    alphabet = [b"}", b"]", b" ", b"\n", b"\t", b"\r", b"\x0b", b"\x0c", b"a", b"{", b"[", b",", b'"', b"}]", b"} ]"]
    found = 0
    for _ in range(20_000):
        buf = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        lo = rng.randint(0, len(buf))
        hi = rng.randint(lo, len(buf) + 2)
        want = [(mt.start(), mt.end()) for mt in reader._END.finditer(buf, lo, hi)]
        for view in (buf, bytearray(buf), memoryview(buf)):
            assert list(reader._close_brackets(view, lo, hi)) == want, (buf, lo, hi)
        found += len(want)
    assert found > 5_000
    assert decode._scan.close_bracket(b"}]", 5, 1) is None and decode._scan.close_bracket(b"x}\n]", -3, 99) == (1, 4)


@pytest.mark.parametrize("tail", [',"displayTimeUnit":"ms"}', "}", ',"deviceProperties":[{"id":0}],"traceName":"x"}'])
def test_the_events_end_is_the_same_with_and_without_the_c_search(tmp_path, monkeypatch, tail):
    items = [ev(i, name="a}]b") if i % 7 == 0 else ev(i) for i in range(50)]
    path = write(tmp_path, items, tail=tail)
    with_c = read_trace(path, workers=0)
    monkeypatch.setattr(decode, "_scan", None)
    without = read_trace(path, workers=0)
    assert len(with_c) == len(without) == 50 and with_c.meta == without.meta and not with_c.warnings
    assert names_of(with_c) == names_of(without)
