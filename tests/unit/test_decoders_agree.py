"""The C scanner and the msgspec decoder implement one definition (perfkit/trace/decode.py).

Each input is decoded by both: the scanner either gives the same columns, or leaves the chunk
to the general decoder (valid JSON of a rare form), never a different answer; malformed JSON
is malformed for both. A fixed-seed generated slice, plus hand-written cases per item.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfkit.trace import decode, fallback
from perfkit.trace import model as m

MALFORMED = "malformed"
LEFT = "left to the general decoder"


def scanner(data: bytes):
    try:
        return decode._scan_columns(data, 1)
    except decode.UnsupportedChunk:
        return LEFT
    except decode.ChunkError:
        return MALFORMED


def general(data: bytes):
    try:
        return fallback.decode(decode._bracketed(data))
    except decode.ChunkError:
        return MALFORMED


def normal(out) -> object:
    """Columns -> comparable plain values (strings by content, not code)."""
    if isinstance(out, str):
        return out
    names = out["names"]
    ev = out["events"]
    rows = []
    for i in range(len(ev[m.TS])):
        row = []
        for col in m.EVENT_COLUMNS:
            v = ev[col][i].item()
            if col in (m.NAME, m.STACK):
                v = names[v] if v >= 0 else None
            row.append(v)
        rows.append(tuple(row))
    mem = [tuple(out["memory"][c][i].item() for c in m.MEMORY_COLUMNS) for i in range(len(out["memory"][m.MEM_TS]))]
    meta = [(n, decode._int_id(p), decode._int_id(t), a) for n, p, t, a in out["meta_events"]]
    return rows, mem, meta, dict(sorted(out["counts"].items()))


def agree(data: bytes):
    """Both decoders' normalised answer (the scanner's when it gives one)."""
    assert decode._scan is not None, "the C scanner was not built (setup.py build_ext)"
    c, g = scanner(data), general(data)
    if c is not LEFT:
        assert normal(c) == normal(g), data
    out = normal(g)
    if not isinstance(out, str):
        for row in out[0]:
            ts, dur = row[list(m.EVENT_COLUMNS).index(m.TS)], row[list(m.EVENT_COLUMNS).index(m.DUR)]
            assert math.isfinite(ts) and math.isfinite(dur) and dur >= 0
    return out


def only_row(data: bytes) -> dict:
    rows, _mem, _meta, _counts = agree(data)
    assert len(rows) == 1, rows
    return dict(zip(m.EVENT_COLUMNS, rows[0]))


def counts(data: bytes) -> dict:
    return agree(data)[3]


# ----------------------------------------------------------------------------- hand-written, per item

BASE = b'"cat":"kernel","name":"k","pid":0,"tid":7,"ts":10,"dur":2'


def test_escaped_keys_are_keys():
    row = only_row(b'{"p\\u0068":"X",' + BASE + b'}')
    assert row[m.NAME] == "k" and row[m.TS] == 10.0
    row = only_row(b'{"ph":"X",' + BASE.replace(b'"name"', b'"n\\u0061me"') + b',"args":{"corr\\u0065lation":5}}')
    assert row[m.NAME] == "k" and row[m.CORR] == 5


def test_a_number_where_a_string_belongs():
    # name/cat: the event is dropped and counted; "Call stack" / args.name: ignored
    assert counts(b'{"ph":"X",' + BASE.replace(b'"name":"k"', b'"name":5') + b'}') == {"problem:bad-name": 1}
    assert counts(b'{"ph":"X",' + BASE.replace(b'"cat":"kernel"', b'"cat":[1]') + b'}') == {"problem:bad-name": 1}
    row = only_row(b'{"ph":"X",' + BASE + b',"args":{"Call stack":73}}')
    assert row[m.STACK] is None
    _rows, _mem, meta, _c = agree(b'{"ph":"M","name":"thread_name","pid":1,"tid":2,"args":{"name":5}}')
    assert meta == [("thread_name", 1, 2, None)]


@pytest.mark.parametrize("number", [b"012", b"-01", b"1.", b".5", b"-", b"1e", b"+1", b"NaN", b"Infinity", b"0x10"])
@pytest.mark.parametrize("where", [b'"ts"', b'"unknown"', b'"args":{"correlation"'])
def test_numbers_outside_the_json_grammar_are_malformed(number, where):
    close = b"}" if where.startswith(b'"args"') else b""
    assert agree(b'{"ph":"X","name":"k",' + where + b":" + number + close + b"}") == MALFORMED


def test_invalid_utf8_reads_as_replacement_characters():
    row = only_row(b'{"ph":"X",' + BASE.replace(b'"name":"k"', b'"name":"a\xffb\xe2\x82"') + b',"x":"\xc0"}')
    assert row[m.NAME] == "a\ufffdb\ufffd"
    row = only_row(b'{"ph":"X",' + BASE.replace(b'"name":"k"', b'"name":"\\u00e9\xff"') + b'}')  # with an escape too
    assert row[m.NAME] == "\u00e9\ufffd"


def test_an_escaped_string_with_invalid_utf8_as_msgspec_before_0_23_decodes_it(monkeypatch):
    """msgspec up to 0.22 (the declared range starts at 0.18) raises the UnicodeDecodeError itself for invalid
    UTF-8 in a string, where 0.23 raises DecodeError: the scanner's strings with an escape went through it
    unguarded (seen on msgspec 0.18.0-0.22.0). The older behaviour, reproduced:"""
    import msgspec

    real = msgspec.json.decode

    def older(data, *args, **kwargs):
        bytes(data).decode("utf-8")  # raises UnicodeDecodeError on invalid UTF-8, as msgspec <= 0.22 did
        return real(data, *args, **kwargs)

    monkeypatch.setattr(msgspec.json, "decode", older)
    assert decode._decode_string(b"\\u00e9\xff", 1) == "\u00e9\ufffd"


@pytest.mark.parametrize("text, problem", [
    (b'"ts":1e400', "bad-ts"), (b'"ts":-1e400', "bad-ts"), (b'"ts":2e18', "bad-ts"), (b'"ts":"inf"', "bad-ts"),
    (b'"ts":null', "bad-ts"), (b'"ts":true', "bad-ts"), (b'"ts":{}', "bad-ts"),
    (b'"dur":1e400', "bad-dur"), (b'"dur":"nan"', "bad-dur"),
    (b'"pid":1.5', "bad-id"), (b'"pid":99999999999999999999', "bad-id"), (b'"pid":9223372036854775808', "bad-id"),
    (b'"tid":{"a":1}', "bad-id"), (b'"pid":[1]', "bad-id"), (b'"pid":1e400', "bad-id"), (b'"tid":null', "bad-id"),
    (b'"name":{}', "bad-name"),
])
def test_absurd_values_drop_the_event_and_are_counted(text, problem):
    key = text.split(b":")[0]
    fields = b",".join(f for f in BASE.split(b",") if not f.startswith(key))
    assert counts(b'{"ph":"X",' + fields + b"," + text + b"}") == {f"problem:{problem}": 1}


def test_values_that_are_kept_or_clamped():
    assert only_row(b'{"ph":"X",' + BASE + b',"pid":3.0}')[m.PID] == 3  # an integral number is an integer
    assert only_row(b'{"ph":"X",' + BASE + b',"pid":-9223372036854775808}')[m.PID] == -(2**63)
    assert only_row(b'{"ph":"X",' + BASE + b',"ts":"12.5"}')[m.TS] == 12.5  # a number in a string
    out = agree(b'{"ph":"X",' + BASE + b',"dur":-5}')
    assert out[0][0][list(m.EVENT_COLUMNS).index(m.DUR)] == 0.0 and out[3] == {"problem:neg-dur": 1}
    # id args beyond int64, fractional or of another type are ignored, and counted where the kind keeps
    # them (a kernel has no Sequence number: not counted); null is simply absent
    out = agree(b'{"ph":"X",' + BASE + b',"args":{"correlation":99999999999999999999,"External id":1.5,'
                b'"Sequence number":"N/A","Python id":null}}')
    assert out[3] == {"problem:bad-arg": 2}
    row = dict(zip(m.EVENT_COLUMNS, out[0][0]))
    assert row[m.CORR] == row[m.EXT] == m.MISSING


def test_phases_are_counted_alike():
    text = b",".join([
        b'{"ph":"f","id":1,"ts":1}', b'{"ph":"s","id":1,"ts":1}', b'{"ph":"f","bp":"e"}', b'{"ph":"Z"}',
        b'{"ph":"XX","ts":1}', b'{"ph":5}', b'{"name":"no phase"}', b'{"ph":"I","name":"[memory]","ts":1}',
        b'{"ph":"i","name":"[memory]","ts":1,"args":{"Bytes":8}}', b'{"ph":"i","name":"[memory]"}', b"[1]", b'"x"',
        b'{"ph":"X",' + BASE + b'}',
    ])
    rows, mem, _meta, got = agree(text)
    assert len(rows) == 1 and len(mem) == 1
    assert got == {"ph:f": 2, "ph:s": 1, "ph:Z": 1, "ph:?": 3, "ph:I": 1, "ph:i": 2,
                   "problem:mem-ts": 1, "problem:not-object": 2}


def test_last_key_wins_and_a_second_args_replaces_the_first():
    row = only_row(b'{"ph":"X",' + BASE + b',"args":{"correlation":4},"name":"k2","args":{"External id":3}}')
    assert row[m.NAME] == "k2" and row[m.CORR] == m.MISSING and row[m.EXT] == 3


@pytest.mark.parametrize("text", [
    b'{"ph":"X","name":"a\x01"}', b'{"ph":"X","name":"\\q"}', b'{"ph":"X","name":"\\ud800"}',
    b'{"ph":"X","name":"\\udc00x"}', b'{"ph":"X","name":"\\u12"}', b'{"ph":"X","x":[1,,2]}', b'{"ph":"X","x":tru}',
    b'{"ph":"X" "ts":1}', b'{"ph":"X",}', b'{"ph":"X","x":' + b"[" * 5000 + b"]" * 5000 + b"}",
])
def test_malformed_json_is_malformed_for_both(text):
    assert agree(text) == MALFORMED


@pytest.fixture(params=[None, 20000], ids=["default-limit", "raised-limit"])
def recursion_limit(request):
    """The fallback's answer must not depend on the interpreter's recursion limit (torch's compiler,
    for one, raises it): checked at the default limit and at a raised one."""
    old = sys.getrecursionlimit()
    if request.param:
        sys.setrecursionlimit(request.param)
    yield
    sys.setrecursionlimit(old)


@pytest.mark.parametrize("n", [254, 255, 256, 257, 300, 2000])
@pytest.mark.parametrize("where", ["field", "args", "item"])
def test_nesting_limit_is_the_same_for_both(n, where, recursion_limit):
    """Containers nested more than 257 levels below the events array are malformed for both decoders,
    wherever they are (an event's field, a value in its args, an item that is not an event)."""
    deep = b"[" * n + b"]" * n
    text = {"field": b'{"ph":"X",' + BASE + b',"x":' + deep + b"}",
            "args": b'{"ph":"X",' + BASE + b',"args":{"x":' + deep + b"}}",
            "item": deep}[where]
    levels = n + (1 if where == "field" else 2 if where == "args" else 0)  # below the event's own level
    out = agree(text)
    assert (out == MALFORMED) == (levels > 256), (where, n, out if isinstance(out, str) else "parsed")


def test_brackets_inside_strings_do_not_nest():
    # the JSON text "a\\" is a and an escaped backslash, then the closing quote; in "a\\\"{{{..." the quote is escaped
    assert counts(b'{"ph":"X",' + BASE + b',"x":"' + b"[" * 400 + b'","y":"a\\\\"}') == {}
    assert counts(b'{"ph":"X",' + BASE + b',"x":"a\\\\\\"' + b"{" * 400 + b'"}') == {}


def test_moderate_nesting_is_fine_for_both():
    assert counts(b'{"ph":"X",' + BASE + b',"x":' + b"[" * 100 + b"]" * 100 + b"}") == {}


# ----------------------------------------------------------------------------- generated

def _s(text: str) -> bytes:
    return ('"' + text + '"').encode()


STRINGS = st.sampled_from([
    b'"k"', b'"kernel"', b'"cpu_op"', b'"cuda_runtime"', b'"[memory]"', b'"thread_name"', b'""', b'"stream 7"',
    b'"12"', b'"12.5"', b'"-3"', b'"99999999999999999999"', b'"a\\"b"', b'"\\u00e9"', b'"\xff\xfe"', b'"\\ud83d\\ude00"',
    b'"Spans"', b'"nan"', b'"inf"', b'"\\u0058"', b'"X"', b'"M"', b'"i"', b'"f"', b'"XX"',
])
NUMBERS = st.sampled_from([
    b"0", b"-0", b"7", b"-1", b"3.0", b"1.5", b"-2.5", b"1e3", b"1E-2", b"1e400", b"-1e400", b"9223372036854775807",
    b"9223372036854775808", b"-9223372036854775808", b"99999999999999999999", b"1669783704212433.0", b"2e18",
    b"0.30000000000000004", b"5954312.583", b"012", b"1.", b"-", b".5",
])
LITERALS = st.sampled_from([b"true", b"false", b"null", b"tru", b"NaN"])
SCALARS = st.one_of(STRINGS, NUMBERS, LITERALS)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: b"[" + b",".join(xs) + b"]"),
        st.lists(st.tuples(st.sampled_from([b'"a"', b'"Call stack"', b'"name"', b'"correlation"']), inner),
                 max_size=3).map(lambda kv: b"{" + b",".join(k + b":" + v for k, v in kv) + b"}"),
    ),
    max_leaves=6,
)
ARG_KEYS = st.sampled_from([b'"correlation"', b'"External id"', b'"external id"', b'"Sequence number"',
                            b'"Fwd thread id"', b'"bytes"', b'"Python id"', b'"Python parent id"', b'"Call stack"',
                            b'"name"', b'"Bytes"', b'"Total Allocated"', b'"Device Id"', b'"Input Dims"',
                            b'"corr\\u0065lation"'])
ARGS = st.one_of(
    st.lists(st.tuples(ARG_KEYS, st.one_of(NUMBERS, STRINGS, LITERALS, VALUES)), max_size=4)
    .map(lambda kv: b"{" + b",".join(k + b":" + v for k, v in kv) + b"}"),
    VALUES,
)
TOP_KEYS = st.sampled_from([b'"ph"', b'"cat"', b'"name"', b'"pid"', b'"tid"', b'"ts"', b'"dur"', b'"id"',
                            b'"p\\u0068"', b'"bp"'])
PH = st.sampled_from([b'"X"', b'"X"', b'"X"', b'"M"', b'"i"', b'"I"', b'"f"', b'"s"', b'"Z"', b'""', b'"XX"', b"5"])


@st.composite
def events(draw) -> bytes:
    fields = []
    if draw(st.integers(0, 9)) > 0:  # mostly with a phase
        fields.append(b'"ph":' + draw(PH))
    good = {b'"cat"': draw(st.sampled_from([b'"kernel"', b'"cpu_op"', b'"cuda_runtime"', b'"Kernel"'])),
            b'"name"': draw(st.sampled_from([b'"k"', b'"[memory]"', b'"thread_name"', b'"aten::mm"'])),
            b'"pid"': draw(st.sampled_from([b"0", b"1", b'"stream 7"'])), b'"tid"': b"7",
            b'"ts"': draw(st.sampled_from([b"10", b"1699999999999.123"])), b'"dur"': b"2"}
    for key, value in good.items():
        if draw(st.integers(0, 9)) > 0:
            fields.append(key + b":" + value)
    for key, value in draw(st.lists(st.tuples(TOP_KEYS, st.one_of(SCALARS, VALUES)), max_size=3)):
        fields.append(key + b":" + value)
    if draw(st.booleans()):
        fields.append(b'"args":' + draw(ARGS))
    order = draw(st.permutations(range(len(fields))))
    return b"{" + b",".join(fields[i] for i in order) + b"}"


ITEMS = st.one_of(events(), events(), events(), SCALARS)


#: hypothesis examples (fixed seed) of the two generated tests here; tests/e2e/test_decoders_agree_full.py runs
#: the same strategies and checks with the full counts
GENERATED_EXAMPLES, FAST_GENERATED_EXAMPLES = 400, 50
MUTATED_EXAMPLES, FAST_MUTATED_EXAMPLES = 200, 25
GENERATED = given(st.lists(ITEMS, min_size=1, max_size=6), st.sampled_from([b",", b", ", b",\n  "]))
MUTATED = given(st.lists(events(), min_size=1, max_size=4), st.data())


def examples(n: int) -> settings:
    return settings(derandomize=True, max_examples=n, deadline=None)


@examples(FAST_GENERATED_EXAMPLES)
@GENERATED
def test_generated_events_decode_alike(items, sep):
    generated_events_decode_alike(items, sep)


def generated_events_decode_alike(items, sep):
    agree(sep.join(items))


@examples(FAST_MUTATED_EXAMPLES)
@MUTATED
def test_mutated_events_decode_alike(items, data):
    mutated_events_decode_alike(items, data)


test_generated_events_decode_alike.split_examples = (FAST_GENERATED_EXAMPLES, GENERATED_EXAMPLES)
test_mutated_events_decode_alike.split_examples = (FAST_MUTATED_EXAMPLES, MUTATED_EXAMPLES)


def mutated_events_decode_alike(items, data):
    """Byte-level damage (a byte dropped, replaced, inserted): both decoders still agree."""
    text = bytearray(b",".join(items))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(text) - 1))
        how = data.draw(st.integers(0, 2))
        byte = data.draw(st.sampled_from(b'"\\{}[],:0e-.\xff\x01 au'))
        if how == 0:
            del text[at]
        elif how == 1:
            text[at] = byte
        else:
            text.insert(at, byte)
        if not text:
            text = bytearray(b"{}")
    agree(bytes(text))


def test_scanner_decodes_kineto_like_chunks_itself():
    """The generated slice must exercise the scanner, not only its hand-over: real-shaped events stay in C."""
    text = b",".join(b'{"ph":"X",' + BASE + b',"args":{"correlation":%d,"External id":%d}}' % (i, i) for i in range(50))
    assert scanner(text) not in (LEFT, MALFORMED)
    assert len(agree(text)[0]) == 50
    assert np.isfinite(scanner(text)["events"][m.TS]).all()
