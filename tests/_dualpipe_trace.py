"""A synthetic Kineto trace with the shape of a DeepSeek-V3 DualPipe training step.

The shape (not the timings) follows the PyTorch-profiler trace that deepseek-ai/profile-data
publishes as ``train.json`` (rank 0 of 64, NVIDIA H800, EP64). That repository carries no
licence, so the file itself is not redistributed here; this module writes a trace with the same
structure and made-up durations:

- one ``ProfilerStep#1`` on the main thread, holding a ``1F1B`` user annotation;
- inside it, per MoE layer, the main thread's stage annotations in the order the real trace has
  them: ``combine(B)``, ``attn(F)``, ``mlp(B)``, ``dispatch(F)``, ``dispatch(B)``, ``mlp(W)``,
  ``mlp(F)``, ``attn(B)``, ``attn(W)``, ``combine(F)`` (4 layers: 40 stage ranges). ``F`` is a
  forward chunk, ``B`` a backward chunk and ``W`` its deferred weight-gradient part, the notation
  of the MIT-licensed deepseek-ai/DualPipe README (forward and backward chunks of two
  micro-batches overlapped, computation against expert-parallel communication);
- CPU ops (``cpu_op``) and runtime launches (``cuda_runtime`` / ``cuda_driver``) inside the
  stages, some launches with no CPU op around them (custom extensions), many
  ``cudaEventQuery`` polls that launch nothing; compute kernels on stream 7, the
  dispatch/combine communication kernels (DeepEP ``dpsk::ep::internode::*``) on stream 27,
  part of the ``mlp(W)`` weight-gradient GEMMs on stream 23;
- during each ``attn(B)`` the main thread only runs ``AccumulateGrad`` autograd functions and
  polls; the attention backward runs on a second thread (the autograd engine's device thread):
  ``autograd::engine::evaluate_function: ...Backward`` ops that launch the backward kernels,
  including the recomputed forward of an activation-checkpointed ``DropoutAddLayerNormFn``
  (its ``ln_fwd_kernel`` is backward work), ``fwdbwd`` flow arrows between them;
- no optimizer step.

Links are written the way Kineto wrote them in that file: every runtime call and device op
carries ``correlation`` and an ``External id`` equal to it; an ``ac2g`` flow starts at each
launch (``ph: s``) and ends on its device op (``ph: f``, ``bp: e``); CPU ops carry their own
``External id`` / ``Ev Idx`` sequence. Timestamps are integer epoch microseconds.

Durations are fixed numbers chosen here (no randomness): the expected phase split of a test
comes from reading the written events, not from these constants.
"""

from __future__ import annotations

import json
from pathlib import Path

PID = 1166  # the Python process
MAIN = 1166  # its main thread (ProfilerStep, stage annotations)
AUTOGRAD = 2571  # the autograd engine's device thread
GPU = 0
S_COMPUTE, S_WGRAD, S_COMM = 7, 23, 27
T0 = 1740461679470630  # trace start, epoch µs

# One launch: (CPU op around it or None, runtime call, stream, device op name, device µs).
# Runtime calls "cuLaunchKernel" are cuda_driver, the rest cuda_runtime; "Memcpy"/"Memset"
# device ops are gpu_memcpy/gpu_memset.
GEMM_FP8 = "void cutlass::device_kernel<dpsk::grouped_gemm::cuda::fp8_ptp128c::GemmKernel>(dpsk::grouped_gemm::cuda::fp8_ptp128c::GemmKernel::Params)"
GEMM_M_GROUPED = "void cutlass::device_kernel<dpsk::grouped_gemm::cuda::m_grouped_fp8_ptp128c::GemmKernel>(dpsk::grouped_gemm::cuda::m_grouped_fp8_ptp128c::GemmKernel::Params)"
GEMM_WGRAD = "void cutlass::device_kernel<dpsk::grouped_gemm::cuda::fp8_dptp128c_acc::GemmKernel>(dpsk::grouped_gemm::cuda::fp8_dptp128c_acc::GemmKernel::Params)"
CAST_FP8 = "void cuda::per_token_cast_to_fp8_with_channels<__nv_bfloat16, 128, false, 128, false>(__nv_bfloat16 const*, int, unsigned char*, float*, int, int, int, int, bool, float, __nv_fp8_interpretation_t)"
TRANSPOSE = "void dpsk::grouped_gemm::cuda::utils::transpose<512, 128, 4, 4>(unsigned char const*, unsigned char*, int, int)"
LN_FWD = "void layer_norm::ln_fwd_kernel<layer_norm::Kernel_traits<__nv_bfloat16, __nv_bfloat16, __nv_bfloat16, float, unsigned int, 7168u, 1u, 4u, 1u, 16u>>(layer_norm::FwdParams)"
CACHED_NOTIFY = "void dpsk::ep::internode::cached_notify<false>(int, int, int, int, int*, int, int, int const*, int const*, int*, void*, void**, int**, int, int, int, int*, bool, int)"
EP_DISPATCH = "void dpsk::ep::internode::dispatch<false, 8, false, 8>(int4*, float*, long*, float*, int*, int*, int*, int*, int*, void const*, void*, void**, int, int, int, int, int, int, int, int, int, int, bool)"
EP_DISPATCH_B = "void dpsk::ep::internode::dispatch<false, 8, true, 8>(int4*, float*, long*, float*, int*, int*, int*, int*, int*, void const*, void*, void**, int, int, int, int, int, int, int, int, int, int, bool)"
EP_COMBINE = "void dpsk::ep::internode::combine<false, 8, __nv_bfloat16, 8, 2, 16, 24>(int4*, float*, int4 const*, float const*, int const*, int const*, int const*, int const*, int const*, void*, void const**, int, int, int, int, int, int, int, int, int)"
ELEMENTWISE = "void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<c10::BFloat16>, at::detail::Array<char*, 3>>(int, at::native::CUDAFunctor_add<c10::BFloat16>, at::detail::Array<char*, 3>)"
REDUCE = "void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::func_wrapper_t<float, at::native::sum_functor<float, float, float>::operator()(at::TensorIterator&)::{lambda(float, float)#1}>, unsigned int, float, 4>>(at::native::ReduceOp<float, at::native::func_wrapper_t<float, at::native::sum_functor<float, float, float>::operator()(at::TensorIterator&)::{lambda(float, float)#1}>, unsigned int, float, 4>)"
TOPK = "void at::native::sbtopk::gatherTopK<float, unsigned int, 2, false>(at::cuda::detail::TensorInfo<float const, unsigned int>, unsigned int, unsigned int, bool, unsigned int, unsigned int, at::cuda::detail::TensorInfo<float, unsigned int>, unsigned int, at::cuda::detail::TensorInfo<long, unsigned int>, unsigned int)"

STAGES: dict[str, list[tuple]] = {
    "combine(B)": [
        (None, "cudaLaunchKernel", S_COMM, CAST_FP8, 60),
        (None, "cudaLaunchKernelExC", S_COMM, CACHED_NOTIFY, 700),
        (None, "cudaLaunchKernelExC", S_COMM, EP_DISPATCH_B, 1900),
    ],
    "attn(F)": [
        ("DropoutAddLayerNormFn", "cudaLaunchKernel", S_COMPUTE, LN_FWD, 55),
        ("LinearWithGradAccumulationFP8", "cudaLaunchKernel", S_COMPUTE, CAST_FP8, 40),
        ("LinearWithGradAccumulationFP8", "cudaLaunchKernelExC", S_COMPUTE, TRANSPOSE, 30),
        ("LinearWithGradAccumulationFP8", "cudaLaunchKernelExC", S_COMPUTE, GEMM_FP8, 420),
        ("RopeLoraFlashAttnVarlenFunc", "cudaLaunchKernel", S_COMPUTE, "rotary_kernel", 25),
        ("RopeLoraFlashAttnVarlenFunc", "cuLaunchKernel", S_COMPUTE,
         "void flash::compute_attn_ws<Flash_fwd_kernel_traits<192, 128, 128, 12, 2, false, 1, cutlass::bfloat16_t>, true>(flash::Flash_fwd_params)", 900),
        ("aten::copy_", "cudaMemcpyAsync", S_COMPUTE, "Memcpy DtoD (Device -> Device)", 3),
        ("aten::zeros", "cudaMemsetAsync", S_COMPUTE, "Memset (Device)", 1),
        ("aten::topk", "cudaLaunchKernel", S_COMPUTE, TOPK, 35),
        ("aten::sum", "cudaLaunchKernel", S_COMPUTE, REDUCE, 12),
        (None, "cudaLaunchKernelExC", S_COMPUTE, GEMM_FP8, 380),
    ],
    "mlp(B)": [
        (None, "cudaLaunchKernel", S_COMPUTE, "void cuda::swiglu_backward<__nv_bfloat16>(void const*, void const*, void*, int, int)", 90),
        (None, "cudaLaunchKernel", S_COMPUTE, "void cuda::cast_back_impl<__nv_fp8x2_e4m3>(void const*, void*, float const*, int, int)", 40),
        (None, "cudaLaunchKernelExC", S_COMPUTE, GEMM_M_GROUPED, 650),
        (None, "cudaLaunchKernelExC", S_COMPUTE, GEMM_FP8, 520),
        ("aten::contiguous", "cudaLaunchKernel", S_COMPUTE, ELEMENTWISE, 20),
    ],
    "dispatch(F)": [
        (None, "cudaLaunchKernelExC", S_COMM, "void dpsk::ep::cuda::get_dispatch_layout<256, 32, 8>(long const*, int*, int*, int*, bool*, int, int, int, int)", 15),
        (None, "cudaLaunchKernelExC", S_COMM, "void dpsk::ep::internode::notify_dispatch<false, 8>(int const*, long*, int, int const*, int*, int, int, bool const*, int*, int, int*, int*, int, int*, int*, int, void*, void**, int**, int, int, int, int)", 400),
        (None, "cudaLaunchKernelExC", S_COMM, EP_DISPATCH, 2100),
    ],
    "dispatch(B)": [
        (None, "cudaLaunchKernelExC", S_COMM, CACHED_NOTIFY, 500),
        (None, "cudaLaunchKernelExC", S_COMM, EP_COMBINE, 1600),
    ],
    "mlp(W)": [
        (None, "cudaLaunchKernel", S_COMPUTE, "void cuda::per_channel_cast_and_transpose<256, 128, true, true, true, false, true>(void const*, void*, float*, int, int)", 45),
        (None, "cudaLaunchKernelExC", S_WGRAD, GEMM_WGRAD, 480),
        (None, "cudaLaunchKernelExC", S_COMPUTE, GEMM_WGRAD, 460),
    ],
    "mlp(F)": [
        (None, "cudaLaunchKernel", S_COMPUTE, "void cuda::clean_and_count_expert<512>(long const*, int*, int*, int*, int*, int*, int, int, int)", 10),
        ("aten::mul", "cudaLaunchKernel", S_COMPUTE, ELEMENTWISE, 15),
        (None, "cudaLaunchKernelExC", S_COMPUTE, GEMM_M_GROUPED, 600),
        (None, "cudaLaunchKernel", S_COMPUTE, "void cuda::swiglu_forward_with_weight_and_per_token_cast_to_fp8_with_channels_impl<128>(void const*, float const*, unsigned char*, float*, int, int)", 50),
    ],
    "attn(B)": [],  # launches come from the autograd thread, see AUTOGRAD_FUNCTIONS
    "attn(W)": [
        (None, "cudaLaunchKernelExC", S_COMPUTE, GEMM_WGRAD, 300),
        (None, "cudaLaunchKernelExC", S_COMPUTE, GEMM_WGRAD, 280),
    ],
    "combine(F)": [
        (None, "cudaLaunchKernelExC", S_COMM, CACHED_NOTIFY, 450),
        (None, "cudaLaunchKernelExC", S_COMM, EP_COMBINE, 1700),
    ],
}
ORDER = ["combine(B)", "attn(F)", "mlp(B)", "dispatch(F)", "dispatch(B)", "mlp(W)", "mlp(F)", "attn(B)", "attn(W)",
         "combine(F)"]
LAYERS = 4

# The attention backward run by the autograd engine thread during each attn(B):
# (autograd function, [(inner CPU op or None, runtime call, stream, device op, device µs)]).
AUTOGRAD_FUNCTIONS: list[tuple[str, list[tuple]]] = [
    ("DivBackward0", [("aten::div", "cudaLaunchKernel", S_COMPUTE, ELEMENTWISE, 15)]),
    ("DropoutAddLayerNormFnBackward", [
        ("DropoutAddLayerNormFn", "cudaLaunchKernel", S_COMPUTE, LN_FWD, 55),  # recomputed forward
        (None, "cudaLaunchKernel", S_COMPUTE,
         "void layer_norm::ln_bwd_kernel<layer_norm::Kernel_traits<__nv_bfloat16, __nv_bfloat16, __nv_bfloat16, float, unsigned int, 7168u, 1u, 4u, 1u, 16u>>(layer_norm::BwdParams)", 110),
    ]),
    ("LinearWithGradAccumulationFP8Backward", [
        (None, "cudaLaunchKernel", S_COMPUTE, CAST_FP8, 40),
        (None, "cudaLaunchKernelExC", S_COMPUTE, TRANSPOSE, 30),
        (None, "cudaLaunchKernelExC", S_COMPUTE, GEMM_FP8, 700),
    ]),
    ("RopeLoraFlashAttnVarlenFuncBackward", [
        (None, "cudaLaunchKernel", S_COMPUTE, "void cutlass::device_kernel<flash::FlashAttnBwdPreprocess<cute::tuple<cute::C<64>, cute::C<128>>, cutlass::bfloat16_t, float>>(flash::FlashAttnBwdPreprocess::Params)", 30),
        (None, "cuLaunchKernel", S_COMPUTE, "void cutlass::device_kernel<flash::FlashAttnBwd<flash::CollectiveMainloopBwd<2, cute::tuple<cute::C<64>, cute::C<128>>>>>(flash::FlashAttnBwd::Params)", 2100),
        (None, "cudaLaunchKernel", S_COMPUTE, "void cutlass::device_kernel<flash::FlashAttnBwdPostprocessConvertdQ<cute::tuple<cute::C<64>, cute::C<128>>>>(flash::FlashAttnBwdPostprocessConvertdQ::Params)", 40),
        ("aten::zero_", "cudaMemsetAsync", S_COMPUTE, "Memset (Device)", 2),
        (None, "cudaLaunchKernel", S_COMPUTE, "rotary_kernel", 25),
    ]),
    ("MatmulToFP32Backward", [(None, "cudaLaunchKernel", S_COMPUTE, "sm90_xmma_gemm_bf16f32_bf16f32_f32_nt_n_tilesize128x128x64_warpgroupsize1x1x1_execute_segment_k_off_kernel__5x_cublas", 60)]),
    ("torch::autograd::AccumulateGrad", [("aten::add_", "cudaLaunchKernel", S_COMPUTE, ELEMENTWISE, 18)]),
]

DEVICE_PROPERTIES = [{"id": i, "name": "NVIDIA H800", "totalGlobalMem": 84943110144, "computeMajor": 9, "computeMinor": 0,
                      "maxThreadsPerBlock": 1024, "maxThreadsPerMultiprocessor": 2048, "regsPerBlock": 65536,
                      "regsPerMultiprocessor": 65536, "warpSize": 32, "sharedMemPerBlock": 49152,
                      "sharedMemPerMultiprocessor": 233472, "numSms": 132, "sharedMemPerBlockOptin": 232448}
                     for i in range(8)]


class _Writer:
    def __init__(self):
        self.events: list[dict] = []
        self.corr = 44449
        self.ext = 4609
        self.ev_idx = {MAIN: 2040, AUTOGRAD: 0}
        self.stream_free = {S_COMPUTE: T0 + 900, S_WGRAD: T0, S_COMM: T0 + 500}
        self.flow = 0
        self.seq = 0

    def flow_seq(self):
        self.seq += 1
        return self.seq

    def span(self, cat, name, tid, ts, dur, **args):
        e = {"ph": "X", "cat": cat, "name": name, "pid": PID, "tid": tid, "ts": ts, "dur": dur,
             "args": {"External id": self.ext, "Ev Idx": self.ev_idx[tid], **args}}
        self.ext += 1
        self.ev_idx[tid] += 1
        self.events.append(e)
        return e

    def poll(self, tid, ts):
        """A cudaEventQuery: a runtime call with a correlation id and no device op."""
        self.corr += 1
        self.events.append({"ph": "X", "cat": "cuda_runtime", "name": "cudaEventQuery", "pid": PID, "tid": tid, "ts": ts,
                            "dur": 3, "args": {"External id": self.corr, "cbid": 138, "correlation": self.corr}})
        return ts + 4

    def launch(self, tid, ts, op, call, stream, kernel, dur_us):
        """One launch at ts (inside CPU op `op` when given) and its device op; returns the time after it."""
        t = ts
        if op is not None:
            self.span("cpu_op", op, tid, t, 14)
            t += 3
        self.corr += 1
        c = self.corr
        cat = "cuda_driver" if call == "cuLaunchKernel" else "cuda_runtime"
        cbid = {"cudaLaunchKernel": 211, "cudaLaunchKernelExC": 430, "cuLaunchKernel": 307, "cudaMemcpyAsync": 41,
                "cudaMemsetAsync": 51}[call]
        self.events.append({"ph": "X", "cat": cat, "name": call, "pid": PID, "tid": tid, "ts": t, "dur": 6,
                            "args": {"External id": c, "cbid": cbid, "correlation": c}})
        self.events.append({"ph": "s", "id": c, "pid": PID, "tid": tid, "ts": t, "cat": "ac2g", "name": "ac2g"})
        start = max(t + 8, self.stream_free[stream])
        self.stream_free[stream] = start + dur_us + 2
        args = {"External id": c, "device": GPU, "context": 1, "stream": stream, "correlation": c}
        if kernel.startswith("Memcpy"):
            dcat = "gpu_memcpy"
            args.update({"bytes": 4194304, "memory bandwidth (GB/s)": 4194304 / dur_us / 1000.0})
        elif kernel.startswith("Memset"):
            dcat = "gpu_memset"
            args.update({"bytes": 1024, "memory bandwidth (GB/s)": 1024 / dur_us / 1000.0})
        else:
            dcat = "kernel"
            args = {"External id": c, "queued": 0, "device": GPU, "context": 1, "stream": stream, "correlation": c,
                    "registers per thread": 56, "shared memory": 0, "grid": [132, 1, 1], "block": [384, 1, 1]}
        self.events.append({"ph": "X", "cat": dcat, "name": kernel, "pid": GPU, "tid": stream, "ts": start,
                            "dur": dur_us, "args": args})
        self.events.append({"ph": "f", "id": c, "pid": GPU, "tid": stream, "ts": start, "cat": "ac2g", "name": "ac2g",
                            "bp": "e"})
        return t + 20

    def stage(self, name, ts):
        """The stage range on the main thread, its CPU ops and launches; returns its end."""
        ann = self.span("user_annotation", name, MAIN, ts, 0)
        t = ts + 5
        self.span("cpu_op", "aten::empty", MAIN, t, 4)
        t += 6
        for op, call, stream, kernel, dur in STAGES[name]:
            t = self.launch(MAIN, t, op, call, stream, kernel, dur)
            if stream == S_COMM:  # DeepEP waits on its communication: the host polls
                for _ in range(6):
                    t = self.poll(MAIN, t)
        if name == "attn(B)":
            t = self.attention_backward(t)
        ann["dur"] = t + 5 - ts
        return t + 15

    def attention_backward(self, ts):
        """Main thread: AccumulateGrad functions and polls; autograd thread: the backward launches."""
        t = ts + 120
        flows = []
        for fn, launches in AUTOGRAD_FUNCTIONS:
            outer = self.span("cpu_op", f"autograd::engine::evaluate_function: {fn}", AUTOGRAD, t, 0,
                              **{"Fwd thread id": 1, "Sequence number": 20703 - self.flow_seq()})
            inner = self.span("cpu_op", fn, AUTOGRAD, t + 3, 0, **{"Fwd thread id": 1})
            u = t + 6
            for op, call, stream, kernel, dur in launches:
                if op == "DropoutAddLayerNormFn":  # recomputation: its forward op, then the backward
                    flows.append(u)
                u = self.launch(AUTOGRAD, u, op, call, stream, kernel, dur)
            inner["dur"] = u - (t + 3)
            outer["dur"] = u + 2 - t
            t = u + 8
        for s in flows:  # forward op -> backward function, as torch records it
            self.flow += 1
            self.events.append({"ph": "s", "id": self.flow, "pid": PID, "tid": AUTOGRAD, "ts": s, "cat": "fwdbwd",
                                "name": "fwdbwd"})
            self.events.append({"ph": "f", "id": self.flow, "pid": PID, "tid": AUTOGRAD, "ts": s + 20, "cat": "fwdbwd",
                                "name": "fwdbwd", "bp": "e"})
        end = t
        u = ts + 10
        while u < end:  # the main thread meanwhile accumulates gradients and polls
            acc = self.span("cpu_op", "autograd::engine::evaluate_function: torch::autograd::AccumulateGrad", MAIN, u, 19)
            self.span("cpu_op", "torch::autograd::AccumulateGrad", MAIN, u + 2, 1)
            u = acc["ts"] + acc["dur"] + 2
            for _ in range(8):
                u = self.poll(MAIN, u)
        return max(u, end)


def write(path: Path) -> Path:
    """Write the trace (plain JSON) to `path` and return it."""
    w = _Writer()
    step = w.span("user_annotation", "ProfilerStep#1", MAIN, T0 + 300, 0)
    sched = w.span("user_annotation", "1F1B", MAIN, T0 + 320, 0)
    t = T0 + 400
    for layer in range(LAYERS):
        for name in ORDER:
            t = w.stage(name, t)
        # between layers the loop reads a scalar back (no device op of its own in the trace)
        item = w.span("cpu_op", "aten::item", MAIN, t, 12)
        w.span("cpu_op", "aten::_local_scalar_dense", MAIN, item["ts"] + 2, 8)
        t += 20
    sched["dur"] = t - sched["ts"]
    step["dur"] = t + 30 - step["ts"]
    meta = []
    for pid, label, sort in ((PID, "CPU", PID), (GPU, "GPU 0", 16777216)):
        meta += [{"name": "process_name", "ph": "M", "ts": T0, "pid": pid, "tid": 0, "args": {"name": "python3"}},
                 {"name": "process_labels", "ph": "M", "ts": T0, "pid": pid, "tid": 0, "args": {"labels": label}},
                 {"name": "process_sort_index", "ph": "M", "ts": T0, "pid": pid, "tid": 0, "args": {"sort_index": sort}}]
    for s in (S_COMPUTE, S_WGRAD, S_COMM):
        meta.append({"name": "thread_name", "ph": "M", "ts": T0, "pid": GPU, "tid": s, "args": {"name": f"stream {s} "}})
    for tid in (AUTOGRAD, MAIN):
        meta.append({"name": "thread_name", "ph": "M", "ts": T0, "pid": PID, "tid": tid,
                     "args": {"name": f"thread {tid} (python3)"}})
    end = max(e["ts"] + e.get("dur", 0) for e in w.events)
    tail = [{"ph": "X", "cat": "Trace", "ts": T0, "dur": end - T0, "pid": "Spans", "tid": "PyTorch Profiler",
             "name": "PyTorch Profiler (0)", "args": {"Op count": 0}},
            {"name": "Iteration Start: PyTorch Profiler", "ph": "i", "s": "g", "pid": "Traces",
             "tid": "Trace PyTorch Profiler", "ts": T0},
            {"name": "Record Window End", "ph": "i", "s": "g", "pid": "", "tid": "", "ts": end + 10}]
    doc = {"schemaVersion": 1, "deviceProperties": DEVICE_PROPERTIES,
           "distributedInfo": {"backend": "nccl", "rank": 0, "world_size": 64},
           "traceEvents": meta + w.events + tail,
           "traceName": "traces/prof_ep64_tp1_varsm_hidden7168_seqlen4096.json"}
    path.write_text(json.dumps(doc))
    return path
