"""Device labels: ids that deviceProperties does not list, and memory-timeline device types."""

from __future__ import annotations

import gzip
import json

import perfkit

from ..conftest import anchor


def _x(cat, name, ts, dur, pid=1, tid=1, **args):
    return {"ph": "X", "cat": cat, "name": name, "pid": pid, "tid": tid, "ts": ts, "dur": dur, "args": args}


def _trace(tmp_path, props, kernel_pid, extra=()):
    events = [
        _x("cpu_op", "aten::mm", 0, 50, **{"External id": 1}),
        _x("cuda_runtime", "hipLaunchKernel", 10, 5, correlation=7, **{"External id": 1}),
        _x("kernel", "Cijk_Ailk_Bljk_S_B_MT64x64x16", 100, 40, pid=kernel_pid, tid=3, correlation=7, device=kernel_pid),
        *extra,
    ]
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"deviceProperties": props, "traceEvents": events}))
    return str(path)


MI300 = {"name": "AMD Instinct MI300X VF", "totalGlobalMem": 205822885888, "computeMajor": 9, "computeMinor": 4, "numSms": 304}


def test_unlisted_device_of_a_homogeneous_node_takes_the_listed_name_marked_assumed(tmp_path):
    # As in public ROCm traces (e.g. an MI300X trace listing id 0 while the kernels run on device 2).
    doc = perfkit.analyze(_trace(tmp_path, [{"id": 0, **MI300}], kernel_pid=2)).to_dict()
    (dev,) = doc["trace"]["devices"]
    assert dev["id"] == 2
    assert dev["name"] == "AMD Instinct MI300X VF (device 2; properties listed for device 0 only)"
    assert dev["assumed"] is True and dev["properties_from"] == 0
    assert dev["memory_bytes"] == MI300["totalGlobalMem"] and dev["compute_capability"] == "9.4"


def test_unlisted_device_of_a_mixed_node_has_no_properties(tmp_path):
    props = [{"id": 0, **MI300}, {"id": 1, **MI300, "name": "AMD Instinct MI210"}]
    doc = perfkit.analyze(_trace(tmp_path, props, kernel_pid=5)).to_dict()
    (dev,) = doc["trace"]["devices"]
    assert dev["name"] == "device 5 (no properties in the trace)"
    assert dev["assumed"] is False and dev["properties_from"] is None
    assert dev["memory_bytes"] is None and dev["compute_capability"] is None  # unknown, not 0


def test_listed_device_uses_its_own_properties_on_the_amd_anchor():
    path = anchor("hta/tests/data/amd_trace/mi250_minitoy_train_ROCm6_2_kineto.json.gz")
    raw = json.loads(gzip.open(path).read())
    kernel_pids = {e["pid"] for e in raw["traceEvents"] if e.get("cat") == "kernel"}
    listed = {p["id"]: p for p in raw["deviceProperties"]}
    doc = perfkit.analyze(str(path)).to_dict()
    devs = doc["trace"]["devices"]
    assert [d["id"] for d in devs] == sorted(kernel_pids)
    for d in devs:
        assert d["name"] == listed[d["id"]]["name"] and d["assumed"] is False and d["properties_from"] == d["id"]


def test_memory_timeline_names_device_types(tmp_path):
    def mem(ts, dev_type, dev_id, nbytes, total):
        return {"ph": "i", "s": "t", "cat": "[memory]", "name": "[memory]", "pid": 1, "tid": 1, "ts": ts,
                "args": {"Device Type": dev_type, "Device Id": dev_id, "Addr": 1000 + ts, "Bytes": nbytes,
                         "Total Allocated": total, "Total Reserved": 4096}}
    extra = [mem(20, 6, 0, 512, 512), mem(30, 6, 0, -512, 0), mem(40, 0, -1, 64, 64), mem(45, 42, 0, 8, 8)]
    doc = perfkit.analyze(_trace(tmp_path, [{"id": 0, **MI300}], kernel_pid=0, extra=extra)).to_dict()
    labels = [d["device"] for d in doc["memory_timeline"]["devices"]]
    assert labels == ["hip:0", "unknown device type 42:0", "cpu"]
    assert not any(label.startswith("device type") for label in labels)
