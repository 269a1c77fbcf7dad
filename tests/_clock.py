"""A virtual clock for tests of code that times itself: a counter (seconds) that only ``sleep`` moves,
so timings are exact on a loaded machine. It stands in for the ``time`` module of the code under test
(or for one clock function of it); names it does not define are the real ``time`` module's."""

from __future__ import annotations

import time
from typing import Any


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.readings = 0  #: calls of perf_counter / monotonic
        self.sleeps = 0  #: calls of sleep

    def perf_counter(self) -> float:
        self.readings += 1
        return self.now

    monotonic = perf_counter

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)
