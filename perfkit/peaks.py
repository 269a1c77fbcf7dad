"""Dense peak throughput of common accelerators (datasheet figures) and their lookup by device name.

Torch-free data: the run's MFU (:func:`mfu`, perfkit/run/finish.py) and the report's MFU of a saved
document (:func:`perfkit.report.rows.mfu_figures`) read the same table.
"""

from __future__ import annotations

import re
from typing import Any, Optional

#: Dense peak TFLOP/s (10^12 floating-point operations per second) per device and dtype.
#:
#: Source: the vendors' datasheets (NVIDIA V100, T4, A100, A10, L4, L40S, H100,
#: H200, GH200 and HGX B200 datasheets; AMD Instinct MI250X and MI300X
#: datasheets). Values are DENSE: where a datasheet gives the tensor-core figure
#: "with sparsity" (2:4 structured sparsity, the starred numbers), the figure
#: here is half of it. "fp32" is the plain FP32 rate (CUDA cores; the FP32
#: matrix-core rate on AMD, which is what matrix products use there); "tf32" is
#: the TF32 tensor-core rate (used for FP32 matrix products when
#: ``torch.backends.cuda.matmul.allow_tf32`` or
#: ``torch.set_float32_matmul_precision("high")`` is set); "bf16"/"fp16" the
#: 16-bit tensor-core rates; "fp8" the FP8 tensor-core rate. A dtype a device
#: has no fast path for (TF32 and BF16 on V100 and T4) is absent.
#: Boost clocks, SXM parts unless the name says PCIe or NVL. B200 is the HGX
#: B200 figure (1000 W); B200s run at higher power in GB200 systems are faster.
#:
#: Keys are matched against ``torch.cuda.get_device_name()`` as whole words,
#: case-insensitive, each space standing for any text ("V100 PCIe" matches
#: "Tesla V100-PCIE-32GB"), in this order: more specific names come first.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H100 PCIe": {"fp32": 51.2, "tf32": 378.0, "bf16": 756.5, "fp16": 756.5, "fp8": 1513.0},
    "H100 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5, "fp8": 1670.5},
    "H100": {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5, "fp8": 1979.0},  # SXM5 ("H100 80GB HBM3")
    "GH200": {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5, "fp8": 1979.0},
    "H200 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5, "fp8": 1670.5},
    "H200": {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5, "fp8": 1979.0},  # SXM
    "B200": {"fp32": 75.0, "tf32": 1125.0, "bf16": 2250.0, "fp16": 2250.0, "fp8": 4500.0},
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0},  # SXM4 40/80GB and PCIe alike
    "A10": {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0},
    "L40S": {"fp32": 91.6, "tf32": 183.0, "bf16": 362.05, "fp16": 362.05, "fp8": 733.0},
    "L4": {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0, "fp8": 242.5},
    "V100S": {"fp32": 16.4, "fp16": 130.0},
    "V100 PCIe": {"fp32": 14.0, "fp16": 112.0},
    "V100": {"fp32": 15.7, "fp16": 125.0},  # SXM2/SXM3
    "T4": {"fp32": 8.1, "fp16": 65.0},
    "MI300X": {"fp32": 163.4, "tf32": 653.7, "bf16": 1307.4, "fp16": 1307.4, "fp8": 2614.9},
    "MI250X": {"fp32": 95.7, "bf16": 383.0, "fp16": 383.0},
}

#: Accepted spellings of each dtype key.
DTYPE_ALIASES: dict[str, str] = {
    "fp32": "fp32", "float32": "fp32", "float": "fp32", "f32": "fp32",
    "tf32": "tf32", "tensorfloat32": "tf32",
    "bf16": "bf16", "bfloat16": "bf16",
    "fp16": "fp16", "float16": "fp16", "half": "fp16", "f16": "fp16",
    "fp8": "fp8", "float8": "fp8", "float8_e4m3fn": "fp8", "float8_e5m2": "fp8",
    "float8_e4m3fnuz": "fp8", "float8_e5m2fnuz": "fp8", "e4m3": "fp8", "e5m2": "fp8",
}


def _pattern(key: str) -> "re.Pattern[str]":
    words = [re.escape(w) for w in key.split()]
    body = ".*?".join(rf"(?<![A-Za-z0-9]){w}(?![A-Za-z0-9])" for w in words)
    return re.compile(body, re.IGNORECASE)


_PATTERNS = [(_pattern(key), key) for key in PEAK_TFLOPS]


def normalize_dtype(dtype: Any) -> Optional[str]:
    """``"bf16"``, ``"bfloat16"``, ``torch.bfloat16`` ... -> ``"bf16"`` (None if unknown)."""
    text = str(dtype).lower().strip()
    if text.startswith("torch."):
        text = text[len("torch."):]
    return DTYPE_ALIASES.get(text.replace("-", "").replace(" ", ""))


def device_key(device_name: str) -> Optional[str]:
    """The :data:`PEAK_TFLOPS` key that ``device_name`` matches, or None."""
    for pattern, key in _PATTERNS:
        if pattern.search(device_name or ""):
            return key
    return None


def peak_tflops(device_name: str, dtype: Any) -> Optional[float]:
    """Dense peak TFLOP/s of one device for ``dtype``, or None when the device or dtype is unknown.

    >>> peak_tflops("NVIDIA H100 80GB HBM3", "bf16")
    989.5
    """
    key = device_key(device_name)
    kind = normalize_dtype(dtype)
    if key is None or kind is None:
        return None
    return PEAK_TFLOPS[key].get(kind)


def mfu(
    flops_per_step: float,
    step_seconds: float,
    device_name: str,
    dtype: Any,
    n_devices: int = 1,
) -> Optional[float]:
    """Model FLOPs utilisation: achieved FLOP/s over the devices' dense peak (0..1).

    ``flops_per_step`` is the work of one step over all ``n_devices`` (for
    data parallelism: one rank's count times the number of ranks).
    Returns None when the peak is unknown or the inputs are not positive.
    """
    peak = peak_tflops(device_name, dtype)
    if peak is None or not step_seconds or step_seconds <= 0 or n_devices < 1 or flops_per_step is None:
        return None
    return float(flops_per_step) / float(step_seconds) / (peak * 1e12 * n_devices)
