"""perfkit/cpus.py: the CPUs perfkit keeps busy honour a container's CPU quota (cgroup v2 and v1, in the
process's own cgroup or an ancestor's), not only the machine's count; files laid out as Linux mounts them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from perfkit import cpus


def _write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text + "\n")


@pytest.mark.parametrize("cpu_max, want", [("200000 100000", 2), ("150000 100000", 2), ("50000 100000", 1),
                                           ("max 100000", None), ("", None), ("garbage", None)])
def test_cgroup_v2_quota_of_a_container(tmp_path, cpu_max, want):
    _write(tmp_path, "cpu.max", cpu_max)  # a container sees its own cgroup as the root, path "/"
    assert cpus.cgroup_quota(str(tmp_path), "0::/\n") == want


def test_cgroup_v2_the_tightest_of_the_process_cgroup_and_its_ancestors(tmp_path):
    _write(tmp_path, "kubepods/cpu.max", "400000 100000")
    _write(tmp_path, "kubepods/pod1/cpu.max", "max 100000")
    _write(tmp_path, "kubepods/pod1/ctr/cpu.max", "800000 100000")
    assert cpus.cgroup_quota(str(tmp_path), "0::/kubepods/pod1/ctr\n") == 4
    assert cpus.cgroup_quota(str(tmp_path), "0::/elsewhere\n") is None  # no such cgroup: only the root is read


def test_cgroup_v1_quota_under_either_mount_name(tmp_path):
    proc = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n"
    _write(tmp_path, "cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "300000")
    _write(tmp_path, "cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000")
    assert cpus.cgroup_quota(str(tmp_path), proc) == 3
    _write(tmp_path, "cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "-1")  # no limit
    assert cpus.cgroup_quota(str(tmp_path), proc) is None
    other = tmp_path / "v1b"
    _write(other, "cpu/cpu.cfs_quota_us", "100000")
    _write(other, "cpu/cpu.cfs_period_us", "100000")
    assert cpus.cgroup_quota(str(other), "3:cpu:/\n") == 1


def test_no_cgroup_files_no_quota(tmp_path):
    assert cpus.cgroup_quota(str(tmp_path), "0::/\n3:cpu:/\n") is None
    assert cpus.cgroup_quota(str(tmp_path), "") is None


def test_available_is_the_fewest_of_affinity_and_quota(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    for quota, want in ((2, 2), (None, 64), (128, 64)):
        monkeypatch.setattr(cpus, "cgroup_quota", lambda q=quota: q)
        cpus.available.cache_clear()
        assert cpus.available() == want
    cpus.available.cache_clear()
