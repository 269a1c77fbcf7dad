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
from typing import Final, Optional

from . import document
from .fold import NameSearch, name_search

# ----------------------------------------------------------------------------- categories

MATMUL: Final = "matmul"
ATTENTION: Final = "attention"
CONVOLUTION: Final = "convolution"
NORMALIZATION: Final = "normalization"
ELEMENTWISE: Final = "elementwise"
REDUCTION: Final = "reduction"
INDEXING: Final = "indexing"
COPY: Final = "copy"
MEMSET: Final = "memset"
COMMUNICATION: Final = "communication"
#: torch.compile'd code whose work the trace does not split into ops or named kernels (see the rules).
COMPILED: Final = "compiled"
OTHER: Final = "other"

#: Display order of categories: the document's vocabulary (:mod:`perfkit.analysis.document`).
CATEGORIES = document.CATEGORIES


#: Names are matched on their first this many characters only (the full name is kept for display):
#: a 90 MB event name would otherwise take minutes in the regexes. Kernel signatures run to a few KB.
MATCH_CHARS = 4096


def match_text(name: str) -> str:
    """The part of ``name`` that the rules' regexes look at (its first :data:`MATCH_CHARS` characters)."""
    return name if len(name) <= MATCH_CHARS else name[:MATCH_CHARS]


@dataclass(frozen=True)
class CategoryRule:
    """Assign ``category`` when every given pattern matches (case-insensitive search)."""

    category: document.Category
    kernel: Optional[str] = None  #: regex on the kernel / memcpy / memset name
    op: Optional[str] = None  #: regex on the launching CPU op's name
    device_kind: Optional[str] = None  #: "kernel", "memcpy" or "memset"
    why: str = ""

    def compiled(self) -> tuple[Optional[NameSearch], Optional[NameSearch]]:
        """The kernel and op searches (case-insensitive; see :class:`~perfkit.analysis.fold.NameSearch`)."""
        return (
            name_search(self.kernel, re.I) if self.kernel else None,
            name_search(self.op, re.I) if self.op else None,
        )


_COMM_KERNEL = (
    r"nccl|rccl|msccl|nvshmem|\bgloo|all_?reduce|all_?gather|reduce_?scatter|alltoall|all_to_all|sendrecv|"
    r"cross_device_reduce|multimem|"
    # Expert-parallel all-to-all libraries (DeepEP and its forks): every kernel of their
    # intranode / internode / low-latency / elastic namespaces moves tokens between ranks.
    r"\b(deep_ep|dpsk::ep)::(legacy::|elastic::)?(intranode|internode|internode_ll)::|"
    r"\bdeep_ep::elastic::(hybrid_)?(dispatch|combine|barrier)"
)
_COMM_BACKENDS = r"nccl:|gloo:|mpi:|ucc:"
_COMM_OP = rf"^({_COMM_BACKENDS}|c10d::|record_param_comms|_?c10d_functional::|torch\.distributed)"
#: Inductor's fused kernels say what they are in their prefix: ``triton_poi_`` pointwise,
#: ``triton_red_`` / ``triton_per_`` reductions (looped / persistent), ``triton_tem_`` templates
#: (GEMM, conv, flex attention). The rest of the name lists the fused ATen ops, which may name a
#: matmul or attention op whose pointwise epilogue this kernel is, so the prefix decides first.
_INDUCTOR_POINTWISE = r"^triton_poi_"
_INDUCTOR_REDUCTION = r"^triton_(red|per)_"
#: A pointwise kernel that fuses only data-movement ops is a copy.
_INDUCTOR_COPY_ONLY = (
    r"^triton_poi_fused_((_to_copy|_unsafe_view|as_strided|cat|clone|constant_pad_nd|contiguous|copy|"
    r"empty|empty_like|expand|new_zeros|permute|reshape|select|slice|split|split_with_sizes|squeeze|"
    r"stack|t|transpose|unbind|unsqueeze|view|zeros)_)+\d+$"
)
#: Normalization written out by Inductor: a named norm op, or the rsqrt of a mean (RMS / layer norm).
_INDUCTOR_NORM = r"^triton_(red|per)_fused_.*(native_layer_norm|native_group_norm|native_batch_norm|rms_norm|_norm_|mean_.*rsqrt)"
_ATTN_KERNEL = (
    r"flash|fmha|attention|attn|sdpa|_efficient_attention|xformers|"
    r"cudnn_generated_fort_native_sdpa|scaled_dot_product|cudnn::fusion::(convert_dq|compute_dot_do_o)|"
    r"\bsage_(fwd|bwd|attn)"
)
_ATTN_OP = r"scaled_dot_product|flash_attention|efficient_attention|_cudnn_attention|flashattn|flex_attention|Sdpa|ScaledDotProduct|FlashAttention|EfficientAttention"
#: Scatters by index whose names hold other rules' words: paged KV-cache writes and index builds of
#: inference engines (named after the attention backend they feed, "flash", "flashinfer", but doing no
#: attention math), and ATen's index_copy_ / index_put_ kernels ("copy").
_KV_CACHE_KERNEL = r"reshape_and_cache|store_kvcache|kv_?cache_(store|write|copy)|kv_indices|index_(copy|put)_kernel_impl"
_CONV_KERNEL = (
    r"conv(?!ert)|cudnn|implicit_?gemm|wgrad|dgrad|fprop|winograd|\bfft|_fft|"
    r"igemm_(fwd|bwd|wrw)|miopen(?!batchnorm)|xmma_fprop|scudnn|nchwToNhwc|nhwcToNchw|"
    r"im2col|col2im|Im\dd2Col|xdlops_bwd_weight"
)
_CONV_OP = r"conv|cudnn_convolution|ConvolutionBackward|CudnnConvolution|ThnnConv"
#: Kernel-name prefixes that only GEMM libraries use (their names may also hold "bias", "swiGlu"...).
_GEMM_PREFIX = r"^(bmm_|nvjet_|Cijk_|sm\d+_xmma_gemm_|(ampere|volta|turing|hopper)_[a-z0-9]*gemm_)"
#: "cutlass" alone also names types in template arguments (cutlass::bfloat16_t): match its kernels.
#: "gemm" inside "fbgemm" (Meta's embedding library namespace) is not a GEMM.
_MATMUL_KERNEL = (
    r"(?<!fb)gemm|gemv|cublas|nvjet|wgmma|Cijk_|"
    r"cutlass::(Kernel2?|device_kernel)<|cutlass_\d|cutlass3x|"
    r"splitKreduce|_mm_|matmul|dot_kernel|tensorop|triton_tem_|\bmm\b|"
    r"(^|\s|::)bmm_"
)
_MATMUL_OP = (
    r"^aten::(mm|addmm|bmm|baddbmm|matmul|linear|_scaled_mm|addmv|mv|dot|addbmm|einsum|"
    r"_int_mm|linalg_.*|tensordot|chain_matmul)$|MmBackward|AddmmBackward|BmmBackward|"
    r"BaddbmmBackward|MvBackward|AddmvBackward|LinearBackward|DotBackward"
)
_NORM_KERNEL = (
    r"GammaBeta|layer_?norm|rms_?norm|batch_?norm|group_?norm|instance_?norm|bn_fw|bn_bw|cudnn::bn|"
    r"cuWelford|_norm_|\bln_(fwd|bwd)"
)
_NORM_OP = r"layer_norm|rms_norm|batch_norm|group_norm|instance_norm|native_norm|NormBackward"
#: Transposes are copies even inside GEMM / BLAS libraries (cuBLAS geam, grouped-GEMM layout prep).
_TRANSPOSE_KERNEL = r"(^|\s|::)(batched_)?transpose(_readWrite\w*)?(<|_\d|\(|$)|^transpose_[A-Z]+2[A-Z]+"
_INDEX_KERNEL = (
    r"index|gather|scatter|embedding|sort|radix|unique|nonzero|cub::|masked_(select|scatter)|take|"
    r"compute_cuda_kernel|segment|histogram|topk|bitonic|indices"
)
_INDEX_OP = (
    r"^aten::(index|index_select|index_put_?|_index_put_impl_|gather|scatter|scatter_add_?|"
    r"embedding|embedding_dense_backward|embedding_backward|sort|argsort|unique|_unique2?|"
    r"unique_consecutive|nonzero|masked_select|masked_scatter_?|take|topk|searchsorted|"
    r"bincount|histc|repeat_interleave)$|IndexBackward|EmbeddingBackward|GatherBackward"
)
_REDUCE_KERNEL = (
    r"reduce|softmax|cross_?entropy|nll_loss|NLLCriterion|log_softmax|argmax|argmin|\bsum\b|mean|"
    r"norm_kernel|cumsum|scan"
)
_REDUCE_OP = (
    r"^aten::(sum|mean|max|min|amax|amin|argmax|argmin|prod|norm|linalg_vector_norm|std|var|"
    r"softmax|_softmax|log_softmax|_log_softmax|cross_entropy_loss|nll_loss.*|mse_loss|"
    r"cumsum|logsumexp|all|any|count_nonzero)$|SoftmaxBackward|NllLoss|SumBackward|MeanBackward"
)
_COPY_KERNEL = r"copy|CatArrayBatchedCopy|transpose|permute|contiguous|fill_kernel_cuda_impl_dummy"
_COPY_OP = r"^aten::(copy_|to|_to_copy|contiguous|clone|cat|_cat|stack|cpu|cuda|type_as|t_copy|transpose_copy|permute_copy|_copy_from|_copy_from_and_resize)$|CopyBackwards|ToCopyBackward|CloneBackward|CatBackward"
#: Kernels that are elementwise although their names contain words of other rules: MIOpen's
#: SubTensorOp* (scale / cast a tensor; "tensorop" is not a tensor-core GEMM here), rotary
#: position embedding ("embedding"), quantize / cast kernels, torch.where / masked_fill.
_ELEMENTWISE_EARLY_KERNEL = (
    r"SubTensorOp|rotary|quantiz|_quant_kernel|per_token_cast|cast_back|cast_to_fp8|swiglu|"
    r"where_kernel|masked_fill|elementwise_kernel_with_index"
)
_ELEMENTWISE_KERNEL = (
    r"elementwise|vectorized|unrolled|pointwise|triton_poi_|multi_tensor_apply|"
    r"foreach|fused_adam|adam|sgd|fill|relu|gelu|silu|sigmoid|tanh|dropout|"
    r"mul|add|div|sub|pow|sqrt|exp|where|clamp|bernoulli|philox|uniform|normal_kernel|"
    r"activation|bias|cast|convert"
)

#: The ranges torch.compile records on the host around a compiled graph (torch 2.1-2.13): Inductor's
#: ``## Call CompiledFxGraph <hash> ##`` around the graph's wrapper code, and the Dynamo / AOTAutograd
#: wrappers around it. On a CPU (Inductor's C++ backend) the graph's fused loops (``cpp_fused_*``) run
#: inline in the CompiledFxGraph range and are no separate ops: its own time is theirs; extern kernels
#: (``aten::mm``/``aten::addmm`` called by the graph) are ops of their own and keep their category.
#: The wrappers' own time (guards, the autograd Function) is compiled-code overhead. Anchored: the
#: graph hash is random letters (``fx5y4x2v5alk...``) that would meet other rules' words.
COMPILED_GRAPH_RANGE_PATTERN = (
    r"^## Call CompiledFxGraph \w+ ##$|^Torch-Compiled Region: \d+/\d+$|^CompiledFunction(Backward)?$|"
    r"^TorchDynamo Cache Lookup$|^Pregraph bytecode$|^AOTDispatcher Runtime Wrapper (Prologue|Epilogue)$"
)
#: The Inductor graph range alone (where a compiled graph's work is timed).
COMPILED_GRAPH_PATTERN = r"^## Call CompiledFxGraph (?P<hash>\w+) ##$"
#: torch 2.0 Inductor named every Triton kernel ``triton_`` and Triton appended the arguments'
#: specialisation (``0d1d2d``): such a kernel names none of the ops it fuses.
_INDUCTOR_UNNAMED = r"^triton__[0-9dc]+$"

#: Ordered rules; the first match wins. Edit here to change classification everywhere.
#: Each ``why`` names real kernels (from public traces / sources) that justify the rule's place.
CATEGORY_RULES: tuple[CategoryRule, ...] = (
    CategoryRule(MEMSET, device_kind="memset", why="memset engine"),
    CategoryRule(COPY, device_kind="memcpy", why="memcpy engine (h2d/d2h/d2d/p2p)"),
    CategoryRule(COMPILED, kernel=COMPILED_GRAPH_RANGE_PATTERN,
                 why="CPU-only traces: a compiled graph's own time (its cpp_fused_* loops run inline): "
                     "'## Call CompiledFxGraph fx5y4x2v5alkzihyquvwmhvsijudt3voggy4gadc77b63tqmlwbs ##', "
                     "'Torch-Compiled Region: 0/0', 'CompiledFunctionBackward' (torch 2.13, CPU)"),
    CategoryRule(COMPILED, kernel=_INDUCTOR_UNNAMED,
                 why="torch 2.0 Inductor Triton kernel with no fused-op names: triton__0d1d2d, "
                     "triton__0d1d2d3d4d5d6d7d8d9d10d11d12d13d14"),
    CategoryRule(COPY, kernel=_INDUCTOR_COPY_ONLY,
                 why="Inductor pointwise kernel fusing only layout ops: triton_poi_fused_clone_transpose_21"),
    CategoryRule(ELEMENTWISE, kernel=_INDUCTOR_POINTWISE,
                 why="Inductor pointwise kernel (its name may list addmm / attention ops whose epilogue it is): "
                     "triton_poi_fused_addmm_gelu_view_26"),
    CategoryRule(NORMALIZATION, kernel=_INDUCTOR_NORM,
                 why="Inductor reduction computing a norm: triton_red_fused_add_mean_mul_pow_rsqrt_0 (RMSNorm), "
                     "triton_red_fused_add_addmm_mul_native_layer_norm_split_unsqueeze_view_27"),
    CategoryRule(REDUCTION, kernel=_INDUCTOR_REDUCTION,
                 why="Inductor reduction kernel: triton_red_fused_abs_amax_transpose_view_32"),
    CategoryRule(COMMUNICATION, kernel=_COMM_KERNEL,
                 why="collective / p2p / expert-parallel kernel: ncclDevKernel_AllGather_RING_LL, "
                     "multimem_all_reduce_kernel, dpsk::ep::internode::dispatch, deep_ep::legacy::intranode::combine"),
    CategoryRule(COMMUNICATION, op=_COMM_OP, why="launched by a collective op"),
    CategoryRule(INDEXING, kernel=_KV_CACHE_KERNEL,
                 why="paged KV-cache scatter: vllm::reshape_and_cache_flash_kernel, store_kvcache, "
                     "create_flashinfer_kv_indices_triton"),
    CategoryRule(MATMUL, kernel=_GEMM_PREFIX,
                 why="GEMM-only name prefixes: bmm_MxE4m3_MxE2m1MxE4m3_*_biasM_*_swiGlu_* (trtllm-gen MoE), "
                     "nvjet_tst_*_bias_TNT, Cijk_Alik_Bljk_*_Bias_* (hipBLASLt), sm90_xmma_gemm_*, volta_sgemm_*"),
    CategoryRule(NORMALIZATION, kernel=_NORM_KERNEL,
                 why="normalization kernel: vectorized_layer_norm_kernel, MIOpenBatchNormFwdTrainSpatial, "
                     "layer_norm::ln_fwd_kernel, vllm::rms_norm_kernel, aiter add_rmsnorm_quant_kernel"),
    CategoryRule(ELEMENTWISE, kernel=_ELEMENTWISE_EARLY_KERNEL,
                 why="elementwise despite other rules' words: SubTensorOpWithScalar1d (MIOpen, not a GEMM), "
                     "vllm::rotary_embedding_kernel, scaled_fp8_quant_kernel, where_kernel_impl, masked_fill_kernel"),
    CategoryRule(ATTENTION, kernel=_ATTN_KERNEL,
                 why="fused attention kernel: pytorch_flash::flash_fwd_kernel, flash::FlashAttnBwd, "
                     "fmhaSm100aKernel_*, fmha_cutlassF_*, ck_tile FmhaBatchPrefill*, attn_fwd, sage_fwd"),
    CategoryRule(ATTENTION, op=_ATTN_OP, why="launched by an attention op"),
    CategoryRule(COPY, kernel=_TRANSPOSE_KERNEL,
                 why="transpose inside a GEMM / BLAS library: transpose_readWrite_alignment_kernel (cuBLAS), "
                     "dpsk::grouped_gemm::cuda::utils::transpose, batched_transpose_32x32_half (MIOpen)"),
    CategoryRule(CONVOLUTION, kernel=_CONV_KERNEL,
                 why="convolution kernel: volta_scudnn_*, sm80_xmma_fprop_implicit_gemm_*, igemm_fwd_gtcx3_*, "
                     "Im2d2Col_v2, ck kernel_grouped_conv_fwd_*, ck kernel_batched_gemm_xdlops_bwd_weight"),
    CategoryRule(MATMUL, kernel=_MATMUL_KERNEL,
                 why="GEMM library kernel: nvjet_tst_*, sm90_xmma_gemm_*, Cijk_* (hipBLASLt), cutlass::Kernel2<...gemm>, "
                     "cutlass::device_kernel<...GemmKernel>, bmm_MxE4m3_MxE2m1MxE4m3_* (trtllm-gen MoE, names hold 'bias')"),
    CategoryRule(CONVOLUTION, op=_CONV_OP, why="launched by a convolution op"),
    CategoryRule(MATMUL, op=_MATMUL_OP, why="launched by a matmul op"),
    CategoryRule(NORMALIZATION, op=_NORM_OP, why="launched by a normalization op"),
    CategoryRule(COPY, kernel=_COPY_KERNEL, why="copy / layout kernel: direct_copy_kernel_cuda, CatArrayBatchedCopy"),
    CategoryRule(COPY, op=_COPY_OP, why="launched by a copy op"),
    CategoryRule(INDEXING, op=_INDEX_OP, why="launched by an indexing / sort op"),
    CategoryRule(REDUCTION, op=_REDUCE_OP, why="launched by a reduction op"),
    CategoryRule(INDEXING, kernel=_INDEX_KERNEL,
                 why="indexing / sort kernel: indexSelectLargeIndex, vectorized_gather_kernel, cub::DeviceRadixSort*, "
                     "moe::dev::routing::routingIndicesHistogramKernel, split_embedding_codegen_forward_*"),
    CategoryRule(REDUCTION, kernel=_REDUCE_KERNEL,
                 why="reduction kernel: reduce_kernel<...>, softmax_warp_forward, cunn_ClassNLLCriterion_updateOutput_kernel"),
    CategoryRule(ELEMENTWISE, kernel=_ELEMENTWISE_KERNEL, why="elementwise kernel name: vectorized_elementwise_kernel"),
    CategoryRule(COMPILED, op=r"^## Call CompiledFxGraph \w+ ##$",
                 why="a kernel no rule above knows, launched by an Inductor graph's wrapper code"),
)

#: Copy direction from a memcpy event name ("Memcpy HtoD (Pageable -> Device)").
COPY_DIRECTIONS: tuple[tuple[str, str], ...] = (
    ("h2d", r"HtoD|H2D|host.?to.?device"),
    ("d2h", r"DtoH|D2H|device.?to.?host"),
    ("d2d", r"DtoD|D2D|device.?to.?device|PtoP|P2P|peer"),
)

# ----------------------------------------------------------------------------- phases

FORWARD: Final = "forward"
BACKWARD: Final = "backward"
OPTIMIZER: Final = "optimizer"
PHASE_OTHER: Final = "other"
#: Device time no evidence places in a phase (a trace without CPU ops whose kernel names do not
#: bracket it, device ops launched before the window on a stream with no placed neighbour).
PHASE_UNKNOWN: Final = "unknown"
PHASES = document.PHASES

#: What decided a device op's phase, in the order the rules are tried (docs/analysis.md "Phases").
EVIDENCE_OPTIMIZER = "optimizer_range"  #: launched inside Optimizer.step#/zero_grad#
EVIDENCE_ANNOTATION = "annotation"  #: inside an explicit phase / pipeline-stage annotation
EVIDENCE_DATALOADER = "data_loading"  #: inside the DataLoader's ``__next__`` (fetch, collate): other, not forward
EVIDENCE_AUTOGRAD = "autograd"  #: inside an autograd-engine range or from an autograd thread
EVIDENCE_KERNEL = "kernel_name"  #: the kernel's own name (``*_backward*``, ``igemm_wrw``, ``multi_tensor_apply``...)
EVIDENCE_POSITION = "position"  #: where it falls between backward / optimizer boundaries of its step
EVIDENCE_NO_BACKWARD = "no_backward"  #: its step has no backward pass at all (inference, evaluation)
EVIDENCE_NEIGHBOUR = "stream_neighbour"  #: no launch event: the phase of its neighbour on the stream
EVIDENCE_NONE = "none"  #: nothing: the phase is unknown
PHASE_EVIDENCE = (
    EVIDENCE_OPTIMIZER,
    EVIDENCE_ANNOTATION,
    EVIDENCE_DATALOADER,
    EVIDENCE_AUTOGRAD,
    EVIDENCE_KERNEL,
    EVIDENCE_POSITION,
    EVIDENCE_NO_BACKWARD,
    EVIDENCE_NEIGHBOUR,
    EVIDENCE_NONE,
)

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

# Explicit phase annotations: user markers and the ranges pipeline-parallel engines record around
# each stage's work. The innermost matching annotation around a launch decides. A weight-gradient
# pass (zero-bubble "W", torch.distributed.pipelining BACKWARD_WEIGHT / BACKWARD_INPUT "I") is
# backward: it is the second half of the backward pass, split off to fill pipeline bubbles.
# Names that hold both directions (a whole "1F1B" schedule, torch's "OVERLAP_F_B" action,
# "forward-backward") and the schedules' send/recv/unshard/reduce actions name no phase.
_FWD_ANNOTATION = (
    r"(?i)^## *forward *##$|^perfkit\.phase:forward$"
    # plain user names: "forward", "fwd", "forward_pass", "model.forward", "forward step 3"
    r"|^(model[._ ])?(forward|fwd)([_ .-]?(pass|step|compute|microstep|micro_?batch))?([ _#:]*\d+)?$"
    # torch.distributed.pipelining: PipelineScheduleSingle "Forward {mb}", runtime "PP:{stage}F{mb}"
    r"|^PP:\d+F\d*$"
    # DualPipe / zero-bubble style stage annotations: "attn(F)", "mlp(F)", "(F)"
    r"|^[\w.:/ -]*\(F\)$"
    # Megatron timers, DeepSpeed pipeline instructions / engine timers
    r"|^forward-compute$|^ForwardPass(\(.*\))?$|^forward_microstep$"
    # "stage 0 Forward", "stage0.forward"
    r"|^stage[ _]?\d+[ _.]+(forward|fwd)( \d+)?$"
)
_BWD_ANNOTATION = (
    r"(?i)^## *backward *##$|^perfkit\.phase:backward$"
    r"|^(model[._ ]|loss[._ ])?(backward|bwd)([_ .-]?(pass|step|compute|microstep|micro_?batch))?([ _#:]*\d+)?$"
    r"|^PP:\d+[BIW]\d*$"
    r"|^[\w.:/ -]*\([BW]\)$"
    r"|^backward-compute$|^BackwardPass(\(.*\))?$|^backward_(inner_)?microstep$"
    r"|^stage[ _]?\d+[ _.]+(backward|bwd)( \d+)?$"
    # weight-gradient passes named in words
    r"|^(backward[_ ]weight|weight[_ ]grad(ient)?|wgrad)([ _#:]*\d+)?$"
)
#: (phase, regex on the annotation / op name), case-insensitive.
PHASE_ANNOTATIONS: tuple[tuple[document.Phase, str], ...] = (
    (FORWARD, _FWD_ANNOTATION),
    (BACKWARD, _BWD_ANNOTATION),
)

# Kernel-name evidence: used where no host range decides (the op was launched outside every
# optimizer, annotation and autograd range), for ops without a launch event, and for the whole
# trace when it has no CPU ops. Backward is tried first (a fused "bwd + optimizer" kernel such
# as FBGEMM's split_embedding_backward_..._adagrad is backward work), then optimizer, then forward.
#: Backward / weight-gradient kernels: autograd kernels of ATen (``*_backward_*``, ``GammaBetaBackward``,
#: ``layer_norm_grad_input``), cuDNN ``dgrad``/``wgrad``, MIOpen ``igemm_bwd``/``igemm_wrw``,
#: flash-attention ``bwd``. "grad" alone would match "winograd"; "upgrade" and such are excluded too.
BACKWARD_KERNEL_PATTERN = (
    r"(?i)backward|bwd|wgrad|dgrad|_wrw|wrw_|(?<![a-z])grad(?![a-z])|(?<!wino)grad_|_grad(?!e)|"
    r"GradInput|GradWeight"
)
#: Kernels whose names are no phase evidence at all: Inductor (torch.compile) names a fused Triton
#: kernel after every ATen op it holds, and the partitioner puts ops of the backward into the
#: forward graph: ``triton_per_fused__to_copy_add_native_layer_norm_native_layer_norm_backward_view_16``
#: runs in the *forward* of a compiled GPT (H100, torch 2.11, ``traces/compiled_gpt_h100``), 0.7 ms
#: of its 7.2 ms forward. Such kernels take their phase from host ranges or their position.
NO_PHASE_FROM_NAME_PATTERN = r"^triton_"
#: Optimizer update kernels (foreach / fused torch.optim, apex, DeepSpeed). Note: gradient clipping
#: with foreach ops also runs multi_tensor_apply kernels.
OPTIMIZER_KERNEL_PATTERN = (
    r"(?i)multi_tensor_apply|fused_?adam|AdamFunctor|adam_?w?_(kernel|update|step)|"
    r"fused_?sgd|sgd_(kernel|update|step)|SGDFunctor|lamb_(kernel|stage|update)|LAMBStage|"
    r"adagrad_(kernel|update)|fused_optim"
)
#: Forward-only kernels (their backward has its own name): convolution fprop, flash-attention fwd,
#: batch-norm statistics, MIOpen igemm_fwd.
FORWARD_KERNEL_PATTERN = (
    r"(?i)igemm_fwd|_fwd_|fwd_kernel|flash_fwd|fprop|batch_norm_collect_statistics|bn_fw_|"
    r"batch_norm_transform_input"
)
#: Data loading ranges (torch DataLoader / DataPipe iteration).
DATALOADER_PATTERN = r"^enumerate\(DataLoader\)#.*\.__next__$|^enumerate\(DataPipe\)#|^perfkit\.phase:data$"
#: Runtime calls that launch device work (used to spot steps whose GPU work was not recorded).
LAUNCH_API_PATTERN = r"Launch|Memcpy|Memset|GraphLaunch"
#: A CUDA/HIP graph replay: one runtime call that starts every kernel of a captured graph
#: (``cudaGraphLaunch``, ``hipGraphLaunch``; vLLM and SGLang decode steps). Kernels it starts
#: were not launched one by one, so they say nothing about launch overhead.
GRAPH_LAUNCH_PATTERN = r"GraphLaunch"
#: Stream capture (``cudaStreamBeginCapture`` ... ``cudaStreamEndCapture``, ``hip*`` alike): the
#: launches in between are recorded into a graph, not run, so the GPU idles by design and the
#: launches have no device work.
GRAPH_CAPTURE_BEGIN_PATTERN = r"^(cuda|hip)StreamBeginCapture"
GRAPH_CAPTURE_END_PATTERN = r"^(cuda|hip)StreamEndCapture"
#: Host-side communication ops (torch-tb-profiler's Communication role).
COMM_OP_PATTERN = _COMM_OP
#: Host ranges of the collectives themselves (backend ranges, c10d ops): communication on a CPU-only
#: trace. Narrower than COMM_OP_PATTERN: only the collectives' own ranges count as waiting; DDP's
#: Python-level work around them (torch.distributed frames, bucket copies) is compute.
COLLECTIVE_HOST_PATTERN = rf"^({_COMM_BACKENDS}|c10d::|record_param_comms$|_?c10d_functional::)"
#: Top-level packages whose frames are library code, not the user's. torch's Python tracer
#: strips the ``sys.path`` entry from each file name (site-packages, the standard library's
#: directory, the script's directory), so a library frame reads "multiprocessing/queues.py(251):
#: _feed" or "tqdm/_monitor.py(60): run", with nothing left to say it was installed: these
#: names say it. Standard-library packages, then common third-party infrastructure
#: (numerics, progress bars, logging, serialisation, compilers). Frameworks a user builds
#: the step with (transformers, vllm, lightning, ...) are not listed: their frames are the
#: nearest code a user can act on when the step runs inside them.
LIBRARY_PACKAGES = (
    # standard library packages
    "asyncio", "collections", "concurrent", "ctypes", "curses", "dbm", "distutils", "email", "encodings",
    "ensurepip", "html", "http", "idlelib", "importlib", "json", "lib2to3", "logging", "multiprocessing",
    "pydoc_data", "re", "sqlite3", "tkinter", "tomllib", "unittest", "urllib", "venv", "wsgiref", "xml",
    "xmlrpc", "zoneinfo",
    # third-party infrastructure
    "numpy", "scipy", "pandas", "tqdm", "triton", "torchvision", "torchaudio", "torchtext", "torchdata",
    "torch_xla", "functorch", "PIL", "cv2", "sklearn", "einops", "safetensors", "huggingface_hub", "tokenizers",
    "filelock", "fsspec", "packaging", "yaml", "regex", "requests", "urllib3", "wandb", "tensorboard",
    "tensorboardX", "google", "typing_extensions", "psutil", "sympy", "jinja2", "networkx", "setuptools",
    "pkg_resources", "_pytest", "pytest", "pluggy", "IPython", "ipykernel", "tornado", "zmq", "traitlets",
    "debugpy", "_pydevd_bundle", "pydevd", "rich", "click", "absl", "optree", "pydantic", "attr", "cloudpickle",
)
#: Single-file standard-library modules, as the tracer writes them ("threading.py(1012): run").
#: Names a user might give a script (trace, profile, code, test, types) are left out.
LIBRARY_MODULES = (
    "threading", "queue", "selectors", "socket", "socketserver", "subprocess", "runpy", "contextlib",
    "functools", "abc", "weakref", "_weakrefset", "copy", "copyreg", "pickle", "typing", "dataclasses", "enum",
    "inspect", "os", "posixpath", "genericpath", "shutil", "tempfile", "traceback", "linecache", "tokenize",
    "warnings", "codecs", "signal", "random", "pathlib", "glob", "fnmatch", "datetime", "argparse", "bisect",
    "heapq", "operator", "struct", "gzip", "zipfile", "tarfile", "ssl", "reprlib", "pprint", "ast", "dis",
    "site", "sysconfig", "atexit", "contextvars", "io", "_pyio", "stat", "pkgutil", "cProfile", "pstats",
    "timeit", "pdb", "bdb", "shlex", "csv", "configparser", "difflib", "sre_compile", "sre_parse",
    "_collections_abc", "_threading_local", "numbers", "decimal", "fractions", "statistics", "base64",
    "hashlib", "uuid", "string", "textwrap", "locale", "_compat_pickle", "_bootlocale",
)
#: Device kernels that are collectives themselves (one per collective call; the arrival-order
#: comparison of ranks matches them), not the copies and casts that collective ops also launch:
#: the communication category's own kernel list (NCCL/RCCL, custom all-reduce such as
#: ``multimem_all_reduce_kernel``, DeepEP ...), one list for both.
COLLECTIVE_KERNEL_PATTERN = _COMM_KERNEL
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
    r"(^|/)perfkit/|^<string>|"
    # torch.compile's generated code: Inductor's output files (/tmp/torchinductor_<user>/zs/czs3xseu....py,
    # also under a TORCHINDUCTOR_CACHE_DIR: a two-character folder and a "c" + 51-character hash) and
    # torch.fx's generated forward (<eval_with_key>.3). Their caller is the user's line.
    r"torchinductor_|(^|/)[a-z0-9]{2}/c[a-z0-9]{40,}\.py\(|^<eval_with_key>|"
    rf"^(?:{'|'.join(LIBRARY_PACKAGES)})/|^(?:{'|'.join(LIBRARY_MODULES)})\.py\("
)
#: The install folder of a package's frame as perfkit's stack sampler records it (an absolute path:
#: "/opt/venv/lib/python3.12/site-packages/transformers/models/gpt2/modeling_gpt2.py(285): forward").
#: It is cut before the library rules apply, so the frame reads as torch's Python tracer writes it
#: (relative to its path entry: "transformers/models/gpt2/modeling_gpt2.py(285): forward") and both
#: recordings name the same line: torch's and numpy's frames stay library, a framework's model code is
#: the nearest code a user acts on (on a Hugging Face Trainer run the samples named the ``train()``
#: call for every op, the tracer the model's line).
INSTALL_PREFIX_PATTERN = r"^.*/(?:site|dist)-packages/"
#: A Python frame as torch.profiler writes it: "path/file.py(123): function".
FRAME_PATTERN = r"^(?P<file>.*)\((?P<line>\d+)\): (?P<func>.*)$"
#: Warm-up / outlier rule: a step slower than this multiple of the median is excluded.
OUTLIER_FACTOR = 1.5
#: A step is incomplete when more than this fraction of its launches has no recorded GPU work.
INCOMPLETE_FRACTION = 0.10


# The vocabularies are the document's (one definition); the rules name each member.
assert set(CATEGORIES) == {MATMUL, ATTENTION, CONVOLUTION, NORMALIZATION, ELEMENTWISE, REDUCTION, INDEXING, COPY,
                           MEMSET, COMMUNICATION, COMPILED, OTHER}
assert PHASES == (FORWARD, BACKWARD, OPTIMIZER, PHASE_OTHER, PHASE_UNKNOWN)
