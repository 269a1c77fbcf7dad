"""torch-tb-profiler's Overview "Step Time Breakdown", re-implemented.

Roles in priority order (kernel > memcpy > memset > communication > runtime >
dataloader > cpu_exec), each the union of its intervals over the whole trace;
a role gets the part of each step window not already taken by a higher one,
and ``other`` is what is left, so the roles add up to the step's wall time.
Differences from the plugin (documented in docs/analysis.md): GPU-side copies
of user annotations are not counted as CPU Exec, and the steps are perfkit's
kept steps.
"""

from __future__ import annotations

import numpy as np

from ..trace import model as m
from . import rules
from .attribute import CATEGORY_CODES, DeviceWork
from .intervals import Coverage
from .steps import StepStats
from .timeline import Timeline

ROLES = ("kernel", "memcpy", "memset", "communication", "runtime", "dataloader", "cpu_exec", "other")


def overview(tl: Timeline, dw: DeviceWork, stats: StepStats) -> dict[str, np.ndarray]:
    """Role -> µs per step (arrays over all steps)."""
    comm_code = CATEGORY_CODES[rules.COMMUNICATION]
    host = tl.rows(m.Kind.CPU_OP, m.Kind.USER_ANNOTATION, m.Kind.PYTHON)
    is_comm = tl.matches(rules.COMM_OP_PATTERN)[host]
    is_loader = tl.matches(rules.DATALOADER_PATTERN)[host]
    comm_host = host[is_comm]
    loader = host[is_loader]
    step_like = tl.matches(rules.STEP_PATTERN)[host]
    cpu_exec = host[~step_like & ~is_comm & ~is_loader]
    dev_kind = dw.kind

    def spans(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return tl.start[rows], tl.end[rows]

    def device(sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return dw.start[sel], dw.end[sel]

    # Each role's spans are made when its turn comes (fewer arrays alive at once).
    role_spans = {
        "kernel": lambda: device((dev_kind == int(m.Kind.KERNEL)) & (dw.category != comm_code)),
        "memcpy": lambda: device(dev_kind == int(m.Kind.MEMCPY)),
        "memset": lambda: device(dev_kind == int(m.Kind.MEMSET)),
        "communication": lambda: tuple(np.concatenate(x) for x in zip(device(dw.category == comm_code), spans(comm_host))),
        "runtime": lambda: spans(tl.rows(m.Kind.RUNTIME, m.Kind.DRIVER)),
        "dataloader": lambda: spans(loader),
        "cpu_exec": lambda: spans(cpu_exec),
    }
    a, b = stats.win_start, stats.win_end
    out: dict[str, np.ndarray] = {}
    # Union of the roles so far, carried forward already merged (disjoint and
    # small), so each role only adds its own spans to it.
    acc_s, acc_e = np.zeros(0), np.zeros(0)
    covered_before = np.zeros(len(a))
    for role in ROLES[:-1]:
        s, e = role_spans[role]()
        cov = Coverage(np.concatenate([acc_s, np.asarray(s, float)]), np.concatenate([acc_e, np.asarray(e, float)]))
        del s, e
        acc_s, acc_e = cov.starts, cov.ends
        covered = cov.within(a, b)
        out[role] = covered - covered_before
        covered_before = covered
    out["other"] = np.maximum((b - a) - covered_before, 0.0)
    return out
