"""Loading: chunking, parallel decode, truncated files, things that are not traces."""

from __future__ import annotations

import gzip
import json
import os
import time

import numpy as np
import pytest

from perfkit.errors import TraceFormatError
from perfkit.trace import model as m
from perfkit.trace import reader
from perfkit.trace import read_trace

from .. import _split
from ..conftest import BF16, anchor


def _columns_equal(a, b):
    assert len(a) == len(b)
    for col in m.EVENT_COLUMNS:
        if col in (m.NAME, m.STACK):
            na, nb = a.name_array(), b.name_array()
            ca, cb = a.events[col], b.events[col]
            sa = np.where(ca >= 0, na[np.maximum(ca, 0)], None)
            sb = np.where(cb >= 0, nb[np.maximum(cb, 0)], None)
            assert (sa == sb).all(), col
        else:
            np.testing.assert_array_equal(a.events[col], b.events[col], err_msg=col)


@pytest.fixture(scope="module")
def bf16_json(tmp_path_factory):
    path = tmp_path_factory.mktemp("t") / "bf16.json"
    path.write_bytes(gzip.decompress(BF16.read_bytes()))
    old = time.time() - 3600  # not "being written": read through the memory map
    os.utime(path, (old, old))
    return path


@_split.cases("scanner", ["c", "msgspec"], ["c"], ids=str)  # the fallback in a process pool: tests/e2e
def test_small_chunks_and_workers_give_identical_columns(bf16_json, monkeypatch, scanner):
    from perfkit.trace import decode

    whole = read_trace(str(bf16_json), workers=0)
    if scanner == "msgspec":  # the fallback decoder, in a process pool
        monkeypatch.setattr(decode, "_scan", None)
    monkeypatch.setattr(reader, "CHUNK_BYTES", 64 * 1024)
    monkeypatch.setattr(reader, "_WINDOW", 16 * 1024)
    for path in (bf16_json, BF16):  # mmap ranges and the gzip stream
        chunked = read_trace(str(path), workers=0)
        _columns_equal(whole, chunked)
        parallel = read_trace(str(path), workers=2)
        _columns_equal(whole, parallel)
    assert not whole.warnings
    assert whole.meta["deviceProperties"]


def test_counts_match_stdlib_json(bf16_json):
    doc = json.loads(bf16_json.read_text())
    xs = [e for e in doc["traceEvents"] if e.get("ph") == "X"]
    trace = read_trace(str(bf16_json))
    assert len(trace) == len(xs)
    assert trace.meta["baseTimeNanoseconds"] == doc["baseTimeNanoseconds"]  # key after the events array
    kernels = sum(1 for e in xs if e.get("cat") == "kernel")
    assert int((trace.events[m.KIND] == m.Kind.KERNEL).sum()) == kernels


def test_separator_inside_a_string_is_harmless(tmp_path, monkeypatch):
    events = [{"ph": "X", "cat": "cpu_op", "name": f"op{i}" + ("}, {" * 50), "pid": 1, "tid": 1, "ts": i, "dur": 1}
              for i in range(400)]
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"traceEvents": events}))
    monkeypatch.setattr(reader, "CHUNK_BYTES", 2048)
    monkeypatch.setattr(reader, "_WINDOW", 512)
    trace = read_trace(str(path), workers=0)
    assert len(trace) == 400
    names = trace.name_array()[trace.events[m.NAME]]
    assert sorted(names.tolist()) == sorted(e["name"] for e in events)


@pytest.mark.parametrize("fraction", [0.3, 0.77, 0.999])
def test_truncated_trace_keeps_complete_events_and_warns(tmp_path, bf16_json, fraction):
    data = bf16_json.read_bytes()
    cut = tmp_path / "cut.json"
    cut.write_bytes(data[: int(len(data) * fraction)])
    full = read_trace(str(bf16_json))
    part = read_trace(str(cut))
    assert any("truncated" in w for w in part.warnings)
    assert 0 < len(part) <= len(full)
    # every event kept is complete and identical to the full read's events
    n = len(part)
    assert part.events[m.TS].min() >= full.events[m.TS].min()


def test_truncated_gzip_keeps_what_decompressed(tmp_path):
    data = BF16.read_bytes()
    cut = tmp_path / "cut.json.gz"
    cut.write_bytes(data[: len(data) // 2])
    part = read_trace(str(cut))
    assert len(part) > 1000
    assert any("gzip stream ends early" in w for w in part.warnings)
    assert any("truncated" in w for w in part.warnings)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"hello world", "not a JSON trace"),
        (b'{"foo": 1}', "no traceEvents"),
        (b"[[1, 2], [3, 4]]", "not event objects"),
    ],
)
def test_not_a_trace(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(TraceFormatError, match=message) as info:
        read_trace(str(path))
    assert str(path) in str(info.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(TraceFormatError, match="no such file"):
        read_trace(str(tmp_path / "nope.json"))
    with pytest.raises(TraceFormatError, match="directory"):
        read_trace(str(tmp_path))


def test_bare_array_and_legacy_string_ids():
    # Dec-2020 sample: a bare JSON array, "stream 7" tids, "external id".
    trace = read_trace(str(anchor("kineto/history/a0380a32/plugin/samples/resnet50_num_workers_0/worker0.pt.trace.json.gz")))
    kernels = trace.events[m.KIND] == m.Kind.KERNEL
    assert kernels.sum() == 9538
    assert (trace.events[m.TID][kernels] >= 0).all()
    assert (trace.events[m.EXT][kernels] >= 0).mean() > 0.9


def test_wrong_value_types_take_the_slow_path(tmp_path):
    events = [
        {"ph": "X", "cat": "kernel", "name": "k", "pid": 0, "tid": 7, "ts": "10", "dur": 5, "args": {"correlation": "N/A"}},
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 1, "tid": 1, "ts": 1, "dur": 2,
         "args": {"correlation": 3}},
        {"ph": "Z", "name": "unknown phase"},
    ]
    path = tmp_path / "odd.json"
    path.write_text(json.dumps({"traceEvents": events}))
    trace = read_trace(str(path))
    assert len(trace) == 2
    assert sorted(trace.events[m.CORR].tolist()) == [-1, 3]


AGREE = [
    "kineto/tb_plugin/samples/resnet50_num_workers_0/worker0.1623143089861.pt.trace.json.gz",  # 2021, memory events
    "kineto/history/a0380a32/plugin/samples/resnet50_num_workers_0/worker0.pt.trace.json.gz",  # bare array, "stream 7"
    "hta/tests/data/ns_resolution_trace/rank-0.Apr_03_18_51_38.1102.pt.trace.json.gz",  # ns timestamps
    "hta/tests/data/mtia_inference_trace/mtia_inference_rank_0.json.gz",
    "kineto/docs/traces/after_fix_trace.json",
]
#: the unit suite compares the decoders on these (small); tests/e2e/test_reader_full.py on the other, larger ones
UNIT_AGREE = [AGREE[3], AGREE[4], "BF16"]


@_split.cases("rel", AGREE + ["BF16"], UNIT_AGREE, ids=lambda r: r.split("/")[-1][:30])
def test_c_scanner_and_msgspec_decoder_agree(rel, monkeypatch):
    from perfkit.trace import decode

    assert decode._scan is not None, "the C scanner was not built (setup.py): pip install -e . builds it"
    path = str(BF16 if rel == "BF16" else anchor(rel))
    fast = read_trace(path, workers=0)
    monkeypatch.setattr(decode, "_scan", None)
    slow = read_trace(path, workers=0)
    _columns_equal(slow, fast)
    for col in m.MEMORY_COLUMNS:
        np.testing.assert_array_equal(slow.memory[col], fast.memory[col])
    assert slow.thread_names == fast.thread_names and slow.process_names == fast.process_names
    assert slow.meta == fast.meta


def test_scanner_rejects_what_it_does_not_know_and_the_fallback_reads_it(tmp_path):
    from perfkit.trace import decode

    weird = b'[{"ph": "X", "name": "k", "cat": "kernel", "pid": 0, "tid": 7, "ts": "12.5", "dur": 1}]'
    with pytest.raises(ValueError):
        decode._scan.scan(weird)
    out = decode.decode_chunk(weird, bracketed=True)
    assert out["events"][m.TS].tolist() == [12.5]


def test_scanner_numbers_are_exactly_what_python_parses():
    """The scanner's decimal fast path (m / 10^k) must round exactly like strtod / float()."""
    from perfkit.trace import decode

    rng = np.random.default_rng(7)
    texts = ["0.5", "-0.0", "1.0", "0.1", "0.30000000000000004", "9007199254740991.0", "9007199254740993.5",
             "1699999999999.123", "123456789.123456789", "1e3", "1.5e-3", "12345678901234567890.5",
             "0.000000000000000000000001", "5954312.583", "42",
             # zero fractions above 2^53, where rounding the integer matters (Python's json writes floats so)
             "1669783704212433.0", "9007199254740993.0", "18014398509481987.000", "-9223372036854775807.0",
             "9223372036854775807.0", "9223372036854775808.0", "1234567890123456789.00", "12345678901234567891.0",
             "123.000000000000000000000", "1.00000000000000000000001", "7.0e2", "3.00e-1"]
    # Kineto-like values: 10-16 digit timestamps with 0-9 decimals, and short durations.
    for _ in range(3000):
        whole = int(rng.integers(0, 10 ** int(rng.integers(1, 17))))
        decimals = int(rng.integers(0, 10))
        frac = "" if decimals == 0 else "." + "".join(str(d) for d in rng.integers(0, 10, decimals))
        if rng.random() < 0.2:  # integers of up to 19 digits written with a zero fraction
            whole = int(rng.integers(0, 10 ** int(rng.integers(1, 19)))) * int(rng.integers(1, 10))
            frac = "." + "0" * int(rng.integers(1, 4))
        texts.append(f"{'-' if rng.random() < 0.05 else ''}{whole}{frac}")
    body = ",".join(
        f'{{"ph":"X","cat":"kernel","name":"k","pid":0,"tid":7,"ts":{t},"dur":{t}}}' for t in texts
    )
    raw = decode._scan.scan(("[" + body + "]").encode())
    got = np.frombuffer(raw["ts"], np.float64)
    want = np.array([float(t) for t in texts])
    # times beyond 1e18 µs are absurd and dropped (counted); negative durations are clamped to 0
    assert int(np.frombuffer(raw["problems"], np.int64)[1]) == int((np.abs(want) > 1e18).sum()) > 0
    want = want[np.abs(want) <= 1e18]
    np.testing.assert_array_equal(got, want)  # bit for bit (assert_array_equal treats -0.0 == 0.0)
    assert np.array_equal(np.signbit(got), np.signbit(want))
    np.testing.assert_array_equal(np.frombuffer(raw["dur"], np.float64), np.where(want < 0, 0.0, want))


def test_scanner_strings_with_escapes_and_long_names():
    from perfkit.trace import decode

    names = ['plain', 'with \\"quote\\" inside', 'ends with backslash \\\\', 'x' * 300 + '\\\\\\"' + 'y' * 17,
             'tab\\there', 'unicode \\u00e9', '']
    body = ",".join(f'{{"ph":"X","cat":"cpu_op","name":"{n}","pid":1,"tid":2,"ts":1,"dur":1}}' for n in names)
    out = decode.decode_chunk(("[" + body + "]").encode(), bracketed=True)
    import json

    want = [json.loads(f'"{n}"') for n in names]
    got = [out["names"][i] for i in out["events"][m.NAME].tolist()]
    assert got == want


def test_scanner_reads_large_integer_ids_exactly(monkeypatch):
    """19-digit thread ids and ids above 2^53 stay exact (as the general decoder reads them), not rounded via double."""
    from perfkit.trace import decode

    body = (b'[{"ph":"X","cat":"cpu_op","name":"a","pid":783658,"tid":6212393379229260556,"ts":1,"dur":2,'
            b'"args":{"External id":9007199254740993,"Sequence number":-9223372036854775808}},'
            b'{"ph":"X","cat":"kernel","name":"k","pid":0,"tid":-1645028596,"ts":3,"dur":1,'
            b'"args":{"correlation":9223372036854775807}}]')
    raw = decode._scan.scan(body)  # the scanner itself reads them (no fallback to the general decoder)
    assert np.frombuffer(raw["tid"], np.int64).tolist() == [6212393379229260556, -1645028596]
    fast = decode.decode_chunk(body, bracketed=True)
    monkeypatch.setattr(decode, "_scan", None)
    slow = decode.decode_chunk(body, bracketed=True)
    assert fast["events"][m.TID].tolist() == slow["events"][m.TID].tolist() == [6212393379229260556, -1645028596]
    assert fast["events"][m.EXT].tolist()[0] == 9007199254740993 == slow["events"][m.EXT].tolist()[0]
    assert fast["events"][m.SEQ].tolist() == slow["events"][m.SEQ].tolist()
    assert fast["events"][m.CORR].tolist() == slow["events"][m.CORR].tolist()


def test_malloc_tuning_leaves_a_process_with_torch_alone(monkeypatch):
    """The analysis tunes glibc's thresholds in an analysis process, never in one that may go on training."""
    import sys

    from perfkit.trace import reader

    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(reader, "_libc", lambda: FakeLibc())  # glibc, loaded once by the reader
    monkeypatch.setitem(sys.modules, "torch", object())
    reader._tune_malloc(10**9)
    assert calls == []
    monkeypatch.delitem(sys.modules, "torch")
    reader._tune_malloc(2 * 10**9)  # 2 GB of JSON: the trim threshold's 64 MB cap
    reader._tune_malloc(100 << 20)  # 100 MB: 1/16 of it
    assert calls == [(-3, 32 << 20), (-1, 64 << 20), (-8, 1), (-3, 32 << 20), (-1, (100 << 20) // 16), (-8, 1)]


def test_recently_written_files_are_read_not_mapped(bf16_json, tmp_path):
    """A file still being written could shrink under a memory map: read it into buffers instead."""
    import shutil

    fresh = tmp_path / "fresh.json"
    shutil.copy(bf16_json, fresh)
    with reader._FileMap(reader._FileSource(str(bf16_json))) as fm:
        assert fm.mm is not None
    with reader._FileMap(reader._FileSource(str(fresh))) as fm:
        assert fm.mm is None
    _columns_equal(read_trace(str(bf16_json)), read_trace(str(fresh)))


def test_scanner_key_layouts_give_the_same_columns():
    """Known keys are matched by a fast path when written as Kineto writes them; any other layout
    (space before the colon, other key order, unknown keys, keys near the buffer's end) goes
    through the general lexer, with the same result."""
    from perfkit.trace import decode

    ev = {"ph": "X", "cat": "kernel", "name": "k1", "pid": 0, "tid": 7, "ts": 12.5, "dur": 3,
          "args": {"correlation": 5, "External id": 9}}
    layouts = [
        json.dumps([ev], separators=(",", ":")),
        json.dumps([ev], indent=2),
        '[{"ph" : "X", "cat" :"kernel","name"  :  "k1","pid" :0,"tid":7 ,"ts" : 12.5,"dur" :3,'
        '"args" : {"correlation" : 5, "External id" : 9}}]',
        '[{"args":{"External id":9,"correlation":5},"dur":3,"ts":12.5,"x":[1,{"ph":"M"}],"tid":7,'
        '"pid":0,"name":"k1","cat":"kernel","ph":"X"}]',
        '[{"name":"k1","cat":"kernel","pid":0,"tid":7,"ts":12.5,"dur":3,"args":{"correlation":5,"External id":9},"ph":"X"}]',
    ]
    outs = [decode._scan.scan(text.encode()) for text in layouts]
    for out in outs:
        names = np.frombuffer(out["name"], np.int32)
        assert len(names) == 1
        for key in ("ts", "dur", "pid", "tid", "corr", "ext_id"):
            assert out[key] == outs[0][key], key
        arena, offs = out["str_arena"], np.frombuffer(out["str_offsets"], np.int64)
        lens = np.frombuffer(out["str_lengths"], np.int64)
        assert arena[offs[names[0]]: offs[names[0]] + lens[names[0]]] == b"k1"
