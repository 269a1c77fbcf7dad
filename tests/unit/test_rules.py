"""Kernel classification rules on kernel names taken from real traces."""

from __future__ import annotations

import pytest

from perfkit.analysis.attribute import classify

CASES = [
    ("nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT", "aten::mm", "matmul"),
    ("sm80_xmma_gemm_f32f32_f32f32_f32_tn_n_tilesize128x128x8_stage3_warpsize2x2x1_ffma_aligna4_alignc4_execute_kernel__5x_cublas", "aten::addmm", "matmul"),
    ("volta_sgemm_128x64_nn", "aten::mm", "matmul"),
    ("void cutlass::Kernel2<cutlass_80_simt_sgemm_128x256_8x4_nt_align1>(cutlass_80_simt_sgemm_128x256_8x4_nt_align1::Params)", "aten::mm", "matmul"),
    ("Cijk_Alik_Bljk_SB_MT64x64x16_SN_1LDSB0", "aten::mm", "matmul"),
    ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64, 128, 128, 4>>(Flash_fwd_params)", "aten::_flash_attention_forward", "attention"),
    ("fmha_cutlassF_bf16_aligned_64x128_rf_sm80", "aten::_efficient_attention_forward", "attention"),
    ("void cudnn::fusion::compute_dot_do_o_specialized<true, 64>(void const*)", "", "attention"),
    ("void cudnn::bn_fw_tr_1C11_kernel_NCHW<float, float, int, 512, true, 1>(cudnnTensorStruct)", "aten::cudnn_batch_norm", "normalization"),
    ("void at::native::(anonymous namespace)::GammaBetaBackwardCUDAKernelTemplate<float, float>(long)", "aten::native_layer_norm_backward", "normalization"),
    ("void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<float, float>(int)", "aten::native_layer_norm", "normalization"),
    ("sm80_xmma_fprop_implicit_gemm_indexed_tf32f32_tf32f32_f32_nhwckrsc_nchw", "aten::cudnn_convolution", "convolution"),
    ("volta_scudnn_128x64_relu_interior_nn_v1", "aten::cudnn_convolution", "convolution"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::direct_copy_kernel_cuda(at::TensorIteratorBase&)>", "aten::copy_", "copy"),
    ("void at::native::unrolled_elementwise_kernel<at::native::direct_copy_kernel_cuda>", "aten::copy_", "copy"),
    ("void at::native::elementwise_kernel<128, 2>(int, at::native::gpu_kernel_impl)", "aten::copy_", "copy"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::GeluCUDAKernelImpl>", "aten::gelu", "elementwise"),
    ("void at::native::(anonymous namespace)::multi_tensor_apply_kernel<TensorListMetadata<4>, AdamFunctor>", "aten::_foreach_add_", "elementwise"),
    ("ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevComm*, unsigned long, ncclWork*)", "nccl:all_reduce", "communication"),
    ("ncclKernel_AllReduce_RING_LL_Sum_float(ncclDevComm*, unsigned long, ncclWork*)", "", "communication"),
    ("void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::MeanOps<float, float>>>", "aten::mean", "reduction"),
    ("void at::native::(anonymous namespace)::cunn_SoftMaxForward<4, float>(float*)", "aten::_softmax", "reduction"),
    ("void at::native::vectorized_gather_kernel<16, long>(char*, char*, long*, int)", "aten::index", "indexing"),
    ("void at_cuda_detail::cub::DeviceRadixSortOnesweepKernel<long>", "aten::unique_consecutive", "indexing"),
    ("void at::native::indexSelectLargeIndex<float, long, unsigned int, 2, 2, -2, true>", "aten::index_select", "indexing"),
    ("triton_poi_fused_add_mul_0", "", "elementwise"),
    ("triton_red_fused_native_layer_norm_1", "", "normalization"),
    ("triton_per_fused__softmax_2", "", "reduction"),
    ("some_unknown_kernel_xyz", "", "other"),
]


@pytest.mark.parametrize("kernel, op, expected", CASES, ids=[c[0][:40] for c in CASES])
def test_kernel_categories(kernel, op, expected):
    assert classify(kernel, op) == expected


def test_device_kinds():
    assert classify("Memcpy HtoD (Pageable -> Device)", "aten::copy_", "memcpy") == "copy"
    assert classify("Memset (Device)", "aten::zero_", "memset") == "memset"


@pytest.mark.parametrize("frame, library", [
    ("my_functools.py(3): f", False),  # a user file whose name ends like a stdlib module's
    ("my_threading.py(7): run", False),
    ("functools.py(12): wrapper", True),  # the tracer strips the stdlib directory
    ("/usr/lib/python3.11/functools.py(12): wrapper", True),
    ("threading.py(1012): run", True),
    ("runpy.py(198): _run_module_as_main", True),
    ("contextlib.py(81): inner", True),
    ("importlib/__init__.py(126): import_module", True),
    ("<frozen importlib._bootstrap>(1176): _find_and_load", True),
])
def test_library_frame_pattern_anchored(frame, library):
    import re

    from perfkit.analysis import rules

    assert bool(re.search(rules.LIBRARY_FRAME_PATTERN, frame)) is library
