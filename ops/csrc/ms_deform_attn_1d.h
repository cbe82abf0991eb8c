// 1-D multi-scale deformable attention: declarations shared by the CPU, CUDA and binding sources.
//
// Shapes (all tensors contiguous):
//   value               [N, S, M, D]      S = sum of the level lengths T_l (snippets)
//   level_lengths       [L]   int64       T_l, on the value's device
//   level_start_index   [L]   int64       first key of each level in S, on the value's device
//   sampling_locations  [N, Lq, M, L, P]  normalised (0 = level start, 1 = level end)
//   attention_weights   [N, Lq, M, L, P]
//   output              [N, Lq, M * D]
// Semantics: linear interpolation with align_corners=False and zero padding, i.e. the continuous
// index is t = loc * T_l - 0.5, taps floor(t) and floor(t) + 1 with weights 1 - frac and frac,
// a tap outside [0, T_l - 1] reads zero.
#pragma once

#include <ATen/ATen.h>

#include <vector>

namespace tp2detr_ops {

at::Tensor ms_deform_attn_1d_forward_cpu(const at::Tensor& value, const at::Tensor& level_lengths,
                                         const at::Tensor& level_start_index,
                                         const at::Tensor& sampling_locations,
                                         const at::Tensor& attention_weights);

// Returns {grad_value [N, S, M, D], grad_locations [N, Lq, M, L, P], grad_weights [N, Lq, M, L, P]}.
std::vector<at::Tensor> ms_deform_attn_1d_backward_cpu(const at::Tensor& value,
                                                       const at::Tensor& level_lengths,
                                                       const at::Tensor& level_start_index,
                                                       const at::Tensor& sampling_locations,
                                                       const at::Tensor& attention_weights,
                                                       const at::Tensor& grad_output);

#ifdef TP2DETR_WITH_CUDA
at::Tensor ms_deform_attn_1d_forward_cuda(const at::Tensor& value, const at::Tensor& level_lengths,
                                          const at::Tensor& level_start_index,
                                          const at::Tensor& sampling_locations,
                                          const at::Tensor& attention_weights);

// deterministic = true: grad_value without atomic adds (one thread owns each (n, m, d) column).
std::vector<at::Tensor> ms_deform_attn_1d_backward_cuda(const at::Tensor& value,
                                                        const at::Tensor& level_lengths,
                                                        const at::Tensor& level_start_index,
                                                        const at::Tensor& sampling_locations,
                                                        const at::Tensor& attention_weights,
                                                        const at::Tensor& grad_output,
                                                        bool deterministic);
#endif

// Shape, dtype, device and layout checks shared by every entry point (TORCH_CHECK → Python error).
void check_inputs(const at::Tensor& value, const at::Tensor& level_lengths,
                  const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                  const at::Tensor& attention_weights);

}  // namespace tp2detr_ops
