"""The stack sampler's frame walk in C (perfkit/collect/_frames.c): the same stacks a Python walk reads
(checked on a thread paused inside known functions, where a Python walk is safe), only the threads asked
for, the depth cap, and a sampler without the compiled walker takes no samples rather than walking in
Python (which crashed a Lightning training process under load: _frames.c says why)."""

from __future__ import annotations

import sys
import threading

import pytest

from perfkit.collect import stacks

from perfkit.collect import _frames as walker  # built by the install (setup.py); a failed build fails here


def _paused_thread(depth: int) -> tuple[threading.Thread, threading.Event, threading.Event]:
    """A thread ``depth`` calls deep in ``inner``, waiting on an event (its stack does not move)."""
    ready, release = threading.Event(), threading.Event()

    def inner(n: int) -> None:
        if n == 0:
            ready.set()
            release.wait(60)
            return
        inner(n - 1)

    t = threading.Thread(target=inner, args=(depth,), daemon=True)
    t.start()
    assert ready.wait(30)
    return t, ready, release


def _python_walk(ident: int, max_depth: int) -> list:
    f = sys._current_frames()[ident]
    out: list = []
    while f is not None and len(out) < 2 * max_depth:
        out += [f.f_code, f.f_lasti]
        f = f.f_back
    return out


def test_the_c_walk_reads_what_a_python_walk_reads_on_a_paused_thread():
    t, _, release = _paused_thread(12)
    try:
        (ident, walked), = walker.sample((t.ident,), 256)
        assert ident == t.ident
        assert list(walked) == _python_walk(t.ident, 256)  # the same code objects and byte offsets
        names = [c.co_name for c in walked[0::2]]
        assert names.count("inner") == 13  # inner(12) .. inner(0), below Event.wait's frames
        assert names.index("inner") < names.index("run")  # innermost first
        (_, capped), = walker.sample((t.ident,), 5)
        assert list(capped) == _python_walk(t.ident, 5) and len(capped) == 10
    finally:
        release.set()
        t.join()


def test_only_threads_asked_for_and_alive_are_sampled():
    t, _, release = _paused_thread(2)
    try:
        got = walker.sample((t.ident, 987654321, threading.get_ident()), 64)
        assert [ident for ident, _ in got] == [t.ident, threading.get_ident()]  # an unknown ident is skipped
        me = got[1][1]
        assert me[0].co_name == "test_only_threads_asked_for_and_alive_are_sampled"  # this frame, innermost
    finally:
        release.set()
        t.join()
    assert walker.sample((), 64) == ()
    with pytest.raises(TypeError):
        walker.sample(5, 64)


def test_the_walk_leaves_the_collector_as_it_found_it():
    import gc

    assert gc.isenabled()
    walker.sample((threading.get_ident(),), 64)
    assert gc.isenabled()
    gc.disable()
    try:
        walker.sample((threading.get_ident(),), 64)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_without_the_compiled_walker_the_sampler_says_so_and_takes_no_samples(monkeypatch):
    from perfkit.collect import frames

    monkeypatch.setattr(frames, "walker", None)
    s = stacks.StackSampler(interval_us=200)
    s.start()
    assert not s.running and s._thread is None and s.ts_us == []
    assert s.warning == frames.NO_WALKER and not s.failed
    assert s.summary()["warning"] == frames.NO_WALKER


def test_a_walked_stack_is_formatted_as_traceback_formats_the_frame():
    import traceback

    from perfkit.collect.frames import format_stack

    t, _, release = _paused_thread(3)
    try:
        frame = sys._current_frames()[t.ident]  # paused: a Python walk is safe here
        expected = "".join(traceback.format_stack(frame))
        del frame
        (_, walked), = walker.sample((t.ident,), 256)
        assert format_stack(walked) == expected
    finally:
        release.set()
        t.join()
