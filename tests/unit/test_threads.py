"""perfkit.threads.Pool: what perfkit used of ThreadPoolExecutor (submit, result, the with block)."""

from __future__ import annotations

import threading

import pytest

from perfkit.threads import Pool, done


def test_results_exceptions_and_the_with_block_waiting() -> None:
    gate = threading.Event()
    ran: list[int] = []

    def work(i: int, *, scale: int = 1) -> int:
        gate.wait()
        ran.append(i)
        return i * scale

    def fail() -> None:
        raise KeyError("boom")

    with Pool(2) as pool:
        tasks = [pool.submit(work, i, scale=3) for i in range(5)]
        bad = pool.submit(fail)
        assert ran == []  # the calls wait on the gate: submit does not run them here
        gate.set()
    assert sorted(ran) == [0, 1, 2, 3, 4]  # leaving the block waited for every call
    assert [t.result() for t in tasks] == [0, 3, 6, 9, 12]
    with pytest.raises(KeyError, match="boom"):
        bad.result()
    assert all(not t.is_alive() for t in pool._threads)
    assert done(7).result() == 7


def test_calls_run_on_the_pool_threads_not_the_caller() -> None:
    with Pool(1) as pool:
        name = pool.submit(lambda: threading.current_thread().name).result()
    assert name == "perfkit-0"
