"""Classification rules, as data. Every name pattern perfkit matches lives here.

Categories: each device interval (kernel, memcpy, memset) gets the category of
the first :class:`CategoryRule` that matches it. A rule can look at the kernel
name, the name of the CPU op that launched it (the innermost op), or both.
Kernel-name rules for unambiguous library kernels come first; op-name rules
classify generic kernels (``elementwise_kernel`` launched by ``aten::copy_`` is a
copy); generic kernel-name fallbacks come last.

Phases: annotation names that users and frameworks put around phases, and the
names of optimizer / backward / data-loader ranges.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

# ----------------------------------------------------------------------------- categories

MATMUL = "matmul"
ATTENTION = "attention"
CONVOLUTION = "convolution"
NORMALIZATION = "normalization"
ELEMENTWISE = "elementwise"
REDUCTION = "reduction"
INDEXING = "indexing"
COPY = "copy"
MEMSET = "memset"
COMMUNICATION = "communication"
OTHER = "other"

#: Display order of categories.
CATEGORIES = (
    MATMUL,
    ATTENTION,
    CONVOLUTION,
    NORMALIZATION,
    ELEMENTWISE,
    REDUCTION,
    INDEXING,
    COPY,
    MEMSET,
    COMMUNICATION,
    OTHER,
)


@dataclass(frozen=True)
class CategoryRule:
    """Assign ``category`` when every given pattern matches (case-insensitive search)."""

    category: str
    kernel: Optional[str] = None  #: regex on the kernel / memcpy / memset name
    op: Optional[str] = None  #: regex on the launching CPU op's name
    device_kind: Optional[str] = None  #: "kernel", "memcpy" or "memset"
    why: str = ""

    def compiled(self) -> tuple[Optional[re.Pattern[str]], Optional[re.Pattern[str]]]:
        return (
            re.compile(self.kernel, re.I) if self.kernel else None,
            re.compile(self.op, re.I) if self.op else None,
        )


_COMM_KERNEL = r"nccl|rccl|\bgloo|all_?reduce|all_?gather|reduce_?scatter|alltoall|all_to_all|sendrecv|cross_device_reduce|multimem"
_COMM_BACKENDS = r"nccl:|gloo:|mpi:|ucc:"
_COMM_OP = rf"^({_COMM_BACKENDS}|c10d::|record_param_comms|_?c10d_functional::|torch\.distributed)"
_ATTN_KERNEL = (
    r"flash|fmha|attention|attn|sdpa|_efficient_attention|xformers|"
    r"cudnn_generated_fort_native_sdpa|scaled_dot_product|cudnn::fusion::(convert_dq|compute_dot_do_o)"
)
_ATTN_OP = r"scaled_dot_product|flash_attention|efficient_attention|_cudnn_attention|flashattn|flex_attention|Sdpa|ScaledDotProduct|FlashAttention|EfficientAttention"
_CONV_KERNEL = (
    r"conv|cudnn|implicit_?gemm|wgrad|dgrad|fprop|winograd|_fft|"
    r"igemm|miopen|xmma_fprop|scudnn|nchwToNhwc|nhwcToNchw"
)
_CONV_OP = r"conv|cudnn_convolution|ConvolutionBackward|CudnnConvolution|ThnnConv"
_MATMUL_KERNEL = (
    r"gemm|gemv|sgemm|hgemm|cublas|cutlass|nvjet|wgmma|Cijk_|"
    r"splitKreduce|_mm_|matmul|dot_kernel|tensorop|triton_tem_|\bmm\b"
)
_MATMUL_OP = (
    r"^aten::(mm|addmm|bmm|baddbmm|matmul|linear|_scaled_mm|addmv|mv|dot|addbmm|einsum|"
    r"_int_mm|linalg_.*|tensordot|chain_matmul)$|MmBackward|AddmmBackward|BmmBackward|"
    r"BaddbmmBackward|MvBackward|AddmvBackward|LinearBackward|DotBackward"
)
_NORM_KERNEL = r"GammaBeta|layer_?norm|rms_?norm|batch_?norm|group_?norm|instance_?norm|bn_fw|bn_bw|cudnn::bn|welford|_norm_"
_NORM_OP = r"layer_norm|rms_norm|batch_norm|group_norm|instance_norm|native_norm|NormBackward"
_INDEX_KERNEL = (
    r"index|gather|scatter|embedding|sort|radix|unique|nonzero|cub::|masked|take|"
    r"where_kernel|compute_cuda_kernel|segment|histogram|topk|bitonic"
)
_INDEX_OP = (
    r"^aten::(index|index_select|index_put_?|_index_put_impl_|gather|scatter|scatter_add_?|"
    r"embedding|embedding_dense_backward|embedding_backward|sort|argsort|unique|_unique2?|"
    r"unique_consecutive|nonzero|masked_select|masked_scatter_?|take|topk|searchsorted|"
    r"bincount|histc|where|repeat_interleave)$|IndexBackward|EmbeddingBackward|GatherBackward"
)
_REDUCE_KERNEL = r"reduce|softmax|cross_?entropy|nll_loss|log_softmax|argmax|argmin|\bsum\b|mean|norm_kernel|triton_red_|triton_per_|cumsum|scan"
_REDUCE_OP = (
    r"^aten::(sum|mean|max|min|amax|amin|argmax|argmin|prod|norm|linalg_vector_norm|std|var|"
    r"softmax|_softmax|log_softmax|_log_softmax|cross_entropy_loss|nll_loss.*|mse_loss|"
    r"cumsum|logsumexp|all|any|count_nonzero)$|SoftmaxBackward|NllLoss|SumBackward|MeanBackward"
)
_COPY_KERNEL = r"copy|CatArrayBatchedCopy|transpose|permute|contiguous|fill_kernel_cuda_impl_dummy"
_COPY_OP = r"^aten::(copy_|to|_to_copy|contiguous|clone|cat|_cat|stack|cpu|cuda|type_as|t_copy|transpose_copy|permute_copy|_copy_from|_copy_from_and_resize)$|CopyBackwards|ToCopyBackward|CloneBackward|CatBackward"
_ELEMENTWISE_KERNEL = (
    r"elementwise|vectorized|unrolled|pointwise|triton_poi_|multi_tensor_apply|"
    r"foreach|fused_adam|adam|sgd|fill|relu|gelu|silu|sigmoid|tanh|dropout|"
    r"mul|add|div|sub|pow|sqrt|exp|where|clamp|bernoulli|philox|uniform|normal_kernel|"
    r"activation|bias|cast|convert"
)

#: Ordered rules; the first match wins. Edit here to change classification everywhere.
CATEGORY_RULES: tuple[CategoryRule, ...] = (
    CategoryRule(MEMSET, device_kind="memset", why="memset engine"),
    CategoryRule(COPY, device_kind="memcpy", why="memcpy engine (h2d/d2h/d2d/p2p)"),
    CategoryRule(COMMUNICATION, kernel=_COMM_KERNEL, why="collective / p2p kernel"),
    CategoryRule(COMMUNICATION, op=_COMM_OP, why="launched by a collective op"),
    CategoryRule(ATTENTION, kernel=_ATTN_KERNEL, why="fused attention kernel"),
    CategoryRule(ATTENTION, op=_ATTN_OP, why="launched by an attention op"),
    CategoryRule(NORMALIZATION, kernel=_NORM_KERNEL, why="normalization kernel name"),
    CategoryRule(CONVOLUTION, kernel=_CONV_KERNEL, why="convolution kernel name"),
    CategoryRule(MATMUL, kernel=_MATMUL_KERNEL, why="GEMM library kernel"),
    CategoryRule(CONVOLUTION, op=_CONV_OP, why="launched by a convolution op"),
    CategoryRule(MATMUL, op=_MATMUL_OP, why="launched by a matmul op"),
    CategoryRule(NORMALIZATION, op=_NORM_OP, why="launched by a normalization op"),
    CategoryRule(COPY, kernel=_COPY_KERNEL, why="copy / layout kernel"),
    CategoryRule(COPY, op=_COPY_OP, why="launched by a copy op"),
    CategoryRule(INDEXING, op=_INDEX_OP, why="launched by an indexing / sort op"),
    CategoryRule(REDUCTION, op=_REDUCE_OP, why="launched by a reduction op"),
    CategoryRule(INDEXING, kernel=_INDEX_KERNEL, why="indexing / sort kernel name"),
    CategoryRule(REDUCTION, kernel=_REDUCE_KERNEL, why="reduction kernel name"),
    CategoryRule(ELEMENTWISE, kernel=_ELEMENTWISE_KERNEL, why="elementwise kernel name"),
)

#: Copy direction from a memcpy event name ("Memcpy HtoD (Pageable -> Device)").
COPY_DIRECTIONS: tuple[tuple[str, str], ...] = (
    ("h2d", r"HtoD|H2D|host.?to.?device"),
    ("d2h", r"DtoH|D2H|device.?to.?host"),
    ("d2d", r"DtoD|D2D|device.?to.?device|PtoP|P2P|peer"),
)

# ----------------------------------------------------------------------------- phases

FORWARD = "forward"
BACKWARD = "backward"
OPTIMIZER = "optimizer"
PHASE_OTHER = "other"
PHASES = (FORWARD, BACKWARD, OPTIMIZER, PHASE_OTHER)

#: ``ProfilerStep#N`` (torch.profiler schedule) marks steps.
STEP_PATTERN = r"^ProfilerStep#(\d+)$"
#: Ranges whose launches are optimizer work (``torch.optim`` wraps step/zero_grad).
OPTIMIZER_PATTERN = r"^Optimizer\.(step|zero_grad)#|^perfkit\.phase:optimizer$|^## *optimi[sz]er *##$"
#: The optimizer step (not zero_grad, which loops often call between forward and backward).
OPTIMIZER_STEP_PATTERN = r"^Optimizer\.step#|^perfkit\.phase:optimizer$|^## *optimi[sz]er *##$"
#: CPU ops that run backward: autograd engine nodes, and (2021 traces) node ops.
BACKWARD_OP_PATTERN = r"^autograd::engine::evaluate_function: |Backward\d*$|^torch::autograd::AccumulateGrad$"
#: Thread names of the autograd engine's device threads.
BACKWARD_THREAD_PATTERN = r"pt_autograd|autograd"
#: User annotations that name a phase explicitly (refine the automatic split).
PHASE_ANNOTATIONS: tuple[tuple[str, str], ...] = (
    (FORWARD, r"^## *forward *##$|^perfkit\.phase:forward$|^forward$|^fwd$"),
    (BACKWARD, r"^## *backward *##$|^perfkit\.phase:backward$|^backward$|^bwd$"),
)
#: Data loading ranges (torch DataLoader / DataPipe iteration).
DATALOADER_PATTERN = r"^enumerate\(DataLoader\)#.*\.__next__$|^enumerate\(DataPipe\)#|^perfkit\.phase:data$"
#: Runtime calls that launch device work (used to spot steps whose GPU work was not recorded).
LAUNCH_API_PATTERN = r"Launch|Memcpy|Memset|GraphLaunch"
#: Host-side communication ops (torch-tb-profiler's Communication role).
COMM_OP_PATTERN = _COMM_OP
#: Host ranges of the collectives themselves (backend ranges, c10d ops): communication on a CPU-only
#: trace. Narrower than COMM_OP_PATTERN: only the collectives' own ranges count as waiting; DDP's
#: Python-level work around them (torch.distributed frames, bucket copies) is compute.
COLLECTIVE_HOST_PATTERN = rf"^({_COMM_BACKENDS}|c10d::|record_param_comms$|_?c10d_functional::)"
#: Device kernels that are collectives themselves (one per collective call; the arrival-order
#: comparison of ranks matches them), not the copies and casts that collective ops also launch.
COLLECTIVE_KERNEL_PATTERN = r"nccl|rccl|msccl"
#: Host ranges of a backend's collective (the arrival-order comparison on a CPU-only, gloo, trace).
COLLECTIVE_BACKEND_RANGE_PATTERN = rf"^({_COMM_BACKENDS})"
#: Kind of a collective from the name of its op (``nccl:all_to_all``, ``c10d::allreduce_``) or, when the
#: op says nothing (``record_param_comms``), its kernel (``ncclKernel_SendRecv_...``): first match wins
#: (case-insensitive). NCCL runs all-to-all as grouped send/recv kernels: the op name tells them apart.
COLLECTIVE_KINDS: tuple[tuple[str, str], ...] = (
    ("all_to_all", r"all_?to_?all"),
    ("all_reduce", r"all_?reduce"),
    ("all_gather", r"all_?gather"),
    ("reduce_scatter", r"reduce_?scatter"),
    ("broadcast", r"broadcast|bcast"),
    ("reduce", r"reduce"),
    ("barrier", r"barrier"),
    ("send_recv", r"send|recv"),
)
#: python_function / Call stack frames that belong to libraries, not the user's code.
LIBRARY_FRAME_PATTERN = (
    r"site-packages|dist-packages|lib/python3|(^|/)torch/|<built-in|<frozen|^nn\.Module:|"
    r"threading\.py|runpy\.py|(^|/)perfkit/|importlib|^<string>|contextlib\.py|functools\.py"
)
#: A Python frame as torch.profiler writes it: "path/file.py(123): function".
FRAME_PATTERN = r"^(?P<file>.*)\((?P<line>\d+)\): (?P<func>.*)$"
#: Warm-up / outlier rule: a step slower than this multiple of the median is excluded.
OUTLIER_FACTOR = 1.5
#: A step is incomplete when more than this fraction of its launches has no recorded GPU work.
INCOMPLETE_FRACTION = 0.10
