"""How many CPUs perfkit may keep busy: the fewest of the machine's, the process's affinity mask, and
the container's CPU quota.

``os.cpu_count()`` counts the machine's CPUs. In a container limited to 2 CPUs on a 64-core host
(``docker run --cpus 2``, a Kubernetes CPU limit, a CI runner) it says 64, and a reader that starts
one decode thread per CPU, or an engine that forks one helper per CPU, would start 32 times too
many: each thread or process only waits for the quota, and the helpers' memory is spent for
nothing. The quota is read where Linux puts it (cgroup v2 ``cpu.max``, cgroup v1
``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), rounded up (1.5 CPUs: 2).
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from typing import Optional

__all__ = ["available", "cgroup_quota"]

#: Where the cgroup file systems are mounted (tests give another root).
CGROUP_ROOT = "/sys/fs/cgroup"


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _own_cgroups(proc_cgroup: str) -> tuple[Optional[str], Optional[str]]:
    """(the cgroup v2 path, the v1 ``cpu`` controller's path) of this process, from ``/proc/self/cgroup``."""
    v2 = v1 = None
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def cgroup_quota(root: str = CGROUP_ROOT, proc_cgroup: Optional[str] = None) -> Optional[int]:
    """The CPU quota of this process's cgroup (and of its ancestors) in whole CPUs, rounded up; None
    where there is none (``max``, ``-1``) or it cannot be read."""
    own = proc_cgroup if proc_cgroup is not None else (_read("/proc/self/cgroup") or "")
    v2, v1 = _own_cgroups(own)
    quotas: list[float] = []
    if v2 is not None:  # the process's cgroup and its ancestors (a container sees its own as "/")
        for d in _ancestors(os.path.join(root, v2.lstrip("/")), root):
            text = _read(os.path.join(d, "cpu.max"))
            if text:
                q, _, period = text.partition(" ")
                if q != "max" and q.isdigit() and period.isdigit() and int(period) > 0:
                    quotas.append(int(q) / int(period))
    if not quotas and v1 is not None:
        for base in (os.path.join(root, "cpu"), os.path.join(root, "cpu,cpuacct")):
            for d in _ancestors(os.path.join(base, v1.lstrip("/")), base):
                us, per = _read(os.path.join(d, "cpu.cfs_quota_us")), _read(os.path.join(d, "cpu.cfs_period_us"))
                if us and per and us.isdigit() and per.isdigit() and int(us) > 0 and int(per) > 0:
                    quotas.append(int(us) / int(per))  # "-1": no limit
            if quotas:
                break
    return max(1, math.ceil(min(quotas) - 1e-9)) if quotas else None


def _ancestors(path: str, root: str) -> list[str]:
    """``path`` and each folder above it up to ``root``, where they exist."""
    out = []
    path, root = os.path.normpath(path), os.path.normpath(root)
    while True:
        if os.path.isdir(path):
            out.append(path)
        if path == root or not path.startswith(root + os.sep):
            return out
        path = os.path.dirname(path)


@lru_cache(maxsize=1)
def available() -> int:
    """CPUs this process may keep busy: its affinity mask (else the machine's count), capped by the
    container's CPU quota; at least 1. Read once per process."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = cgroup_quota()
    return max(1, min(n, quota) if quota is not None else n)
