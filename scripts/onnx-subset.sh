#!/usr/bin/env bash
# Copies a fixed subset of ONNX's backend node tests into compiler/tests/onnx/, where
# `cargo test` runs them without network access (compiler/tests/onnx_import.rs). Run
# scripts/conformance.sh first: it fetches the tests into target/onnx-conformance/. The
# flint_* cases beside them come from scripts/gen_onnx_cases.py and are left alone.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/target/onnx-conformance/onnx-1.22.0/onnx/backend/test/data/node"
dest="$root/compiler/tests/onnx"
cases=(
  test_abs test_add_bcast test_sub_bcast test_mul_bcast test_div_bcast test_pow_bcast_array
  test_mod_mixed_sign_int32 test_sqrt test_exp test_log test_tanh test_sigmoid test_erf test_relu
  test_leakyrelu test_clip test_where_example test_equal_bcast test_greater test_not_3d
  test_and_bcast4v3d test_cast_FLOAT_to_FLOAT16 test_reduce_sum_keepdims_random
  test_reduce_mean_default_axes_keepdims_random test_reduce_max_do_not_keepdims_random
  test_argmax_keepdims_random_select_last_index test_matmul_4d test_matmul_2d
  test_gemm_all_attributes test_gemm_transposeB
  test_reshape_negative_extended_dims test_flatten_axis2 test_transpose_all_permutations_3
  test_squeeze test_unsqueeze_two_axes test_expand_dim_changed test_concat_3d_axis_negative_1
  test_split_variable_parts_2d_opset18 test_slice_neg_steps test_gather_negative_indices
  test_gather_elements_negative_indices test_edge_pad test_tile_precomputed
  test_conv_with_strides_and_asymmetric_padding test_maxpool_2d_same_upper
  test_averagepool_2d_ceil test_globalaveragepool test_batchnorm_epsilon test_instancenorm_example
  test_softmax_axis_1 test_softmax_axis_1_expanded test_logsoftmax_large_number
  test_layer_normalization_3d_axis1_epsilon test_layer_normalization_4d_axis_negative_2_expanded
  test_rms_normalization_3d_axis2_epsilon test_gelu_tanh_2 test_attention_4d_gqa
  test_attention_3d_causal test_attention_4d_attn_mask_bool test_sce_mean_weight_ii
  test_nllloss_NCd1d2_with_weight_reduction_mean test_hardmax_axis_1 test_cumsum_2d_int32
  test_tril_neg test_range_float_type_positive_delta test_shape test_constantofshape_float_ones
  test_depthtospace_crd_mode_example test_onehot_with_axis
  test_acos test_atan test_gridsample_bicubic test_gridsample_reflection_padding
  test_gridsample_volumetric_nearest_align_corners_1 test_roialign_mode_max test_col2im_strides
  test_deform_conv_with_multiple_offset_groups test_maxpool_with_argmax_2d_precomputed_strides
  test_stft_with_window test_melweightmatrix test_linear_attention_gated_delta_gqa
  test_causal_conv_with_state_silu_with_past_state test_tensorscatter_circular
  test_flexattention_score_mod test_attention_4d_diff_heads_mask4d_padded_kv
  test_training_dropout_zero_ratio_mask
)
rm -rf "$dest"/test_*
for c in "${cases[@]}"; do
  mkdir -p "$dest/$c"
  cp "$src/$c/model.onnx" "$dest/$c/"
  cp -r "$src/$c/test_data_set_0" "$dest/$c/"
done
echo "copied ${#cases[@]} cases, $(du -sb "$dest" | cut -f1) bytes"
