// CUDA launchers of the 1-D multi-scale deformable attention op: dtype dispatch (double, float,
// half, bfloat16 values; fp32 accumulation for the 16-bit types), device guard, current stream,
// and a launch check after every kernel (an error becomes a Python exception, never a printf).
// Only c10/cuda headers are used (ATen/cuda/CUDAContext.h pulls in cusparse.h).
#include "ms_deform_attn_1d.h"
#include "ms_deform_attn_1d_kernels.cuh"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <type_traits>

namespace tp2detr_ops {
namespace {

constexpr int kThreads = 256;  // a multiple of the warp size (the backward kernel relies on it)
constexpr int64_t kMaxBlocks = int64_t(1) << 30;
// Below this many elements (and warp threads) the forward kernel indexes with int32: offsets and the
// grid-stride counter then stay under 2^31 with room to spare.
constexpr int64_t kInt32IndexLimit = int64_t(1) << 30;

int blocks_for(int64_t work_items) {
  const int64_t blocks = (work_items + kThreads - 1) / kThreads;
  return static_cast<int>(std::max<int64_t>(1, std::min(blocks, kMaxBlocks)));
}

void check_cuda_inputs(const at::Tensor& value, const at::Tensor& sampling_locations,
                       const at::Tensor& attention_weights) {
  TORCH_CHECK(value.is_cuda(), "ms_deform_attn_1d (cuda): value must be a CUDA tensor");
  const auto accumulate = at::toOpMathType(value.scalar_type());
  TORCH_CHECK(sampling_locations.scalar_type() == accumulate &&
                  attention_weights.scalar_type() == accumulate,
              "ms_deform_attn_1d (cuda): sampling_locations and attention_weights must be ",
              accumulate, " for ", value.scalar_type(), " values, found ",
              sampling_locations.scalar_type(), " and ", attention_weights.scalar_type());
}

}  // namespace

at::Tensor ms_deform_attn_1d_forward_cuda(const at::Tensor& value, const at::Tensor& level_lengths,
                                          const at::Tensor& level_start_index,
                                          const at::Tensor& sampling_locations,
                                          const at::Tensor& attention_weights) {
  check_inputs(value, level_lengths, level_start_index, sampling_locations, attention_weights);
  check_cuda_inputs(value, sampling_locations, attention_weights);
  const c10::cuda::CUDAGuard guard(value.device());
  const int64_t N = value.size(0), S = value.size(1), M = value.size(2), D = value.size(3);
  const int64_t Lq = sampling_locations.size(1), L = sampling_locations.size(3),
                P = sampling_locations.size(4);
  auto output = at::empty({N, Lq, M * D}, value.options());
  const int64_t rows = N * Lq * M;
  if (rows == 0 || D == 0) return output;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  // 32-bit index arithmetic when every offset (and the grid-stride row counter) stays far from 2^31.
  const bool small = std::max({value.numel(), output.numel(), sampling_locations.numel(),
                               rows * cuda::kWarpSize}) < kInt32IndexLimit;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_1d_forward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const int blocks = blocks_for(rows * cuda::kWarpSize);
        if (small) {
          cuda::forward_kernel<scalar_t, acc_t, int32_t><<<blocks, kThreads, 0, stream>>>(
              value.data_ptr<scalar_t>(), level_lengths.data_ptr<int64_t>(),
              level_start_index.data_ptr<int64_t>(), sampling_locations.data_ptr<acc_t>(),
              attention_weights.data_ptr<acc_t>(), output.data_ptr<scalar_t>(),
              static_cast<int32_t>(N), static_cast<int32_t>(S), static_cast<int32_t>(M),
              static_cast<int32_t>(D), static_cast<int32_t>(Lq), static_cast<int32_t>(L),
              static_cast<int32_t>(P));
        } else {
          cuda::forward_kernel<scalar_t, acc_t, int64_t><<<blocks, kThreads, 0, stream>>>(
              value.data_ptr<scalar_t>(), level_lengths.data_ptr<int64_t>(),
              level_start_index.data_ptr<int64_t>(), sampling_locations.data_ptr<acc_t>(),
              attention_weights.data_ptr<acc_t>(), output.data_ptr<scalar_t>(), N, S, M, D, Lq, L, P);
        }
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return output;
}

std::vector<at::Tensor> ms_deform_attn_1d_backward_cuda(const at::Tensor& value,
                                                        const at::Tensor& level_lengths,
                                                        const at::Tensor& level_start_index,
                                                        const at::Tensor& sampling_locations,
                                                        const at::Tensor& attention_weights,
                                                        const at::Tensor& grad_output,
                                                        bool deterministic) {
  check_inputs(value, level_lengths, level_start_index, sampling_locations, attention_weights);
  check_cuda_inputs(value, sampling_locations, attention_weights);
  const int64_t N = value.size(0), S = value.size(1), M = value.size(2), D = value.size(3);
  const int64_t Lq = sampling_locations.size(1), L = sampling_locations.size(3),
                P = sampling_locations.size(4);
  TORCH_CHECK(grad_output.is_cuda() && grad_output.device() == value.device() &&
                  grad_output.is_contiguous() && grad_output.scalar_type() == value.scalar_type() &&
                  grad_output.numel() == N * Lq * M * D,
              "ms_deform_attn_1d (cuda): grad_output must be a contiguous [N, Lq, M*D] tensor of the "
              "value's dtype and device, found shape ", grad_output.sizes(), ", dtype ",
              grad_output.scalar_type(), ", device ", grad_output.device());
  const c10::cuda::CUDAGuard guard(value.device());
  const auto accumulate = at::toOpMathType(value.scalar_type());
  auto grad_value_acc = at::zeros(value.sizes(), value.options().dtype(accumulate));
  auto grad_locations = at::empty_like(sampling_locations);
  auto grad_weights = at::empty_like(attention_weights);
  const int64_t rows = N * Lq * M;
  if (rows > 0 && D > 0) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    const bool small = std::max({value.numel(), grad_output.numel(), sampling_locations.numel(),
                                 rows * cuda::kWarpSize}) < kInt32IndexLimit;
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_1d_backward_cuda", [&] {
          using acc_t = at::opmath_type<scalar_t>;
          const int blocks = blocks_for(rows * cuda::kWarpSize);
          // The sample kernel: location and weight gradients, and (unless deterministic) the
          // value gradient with atomics; 32- or 64-bit indexing as in the forward.
          auto launch_sample_kernel = [&](auto index_tag, auto atomic_tag) {
            using index_t = decltype(index_tag);
            constexpr bool kAtomic = decltype(atomic_tag)::value;
            cuda::backward_sample_kernel<scalar_t, acc_t, index_t, kAtomic><<<blocks, kThreads, 0, stream>>>(
                value.data_ptr<scalar_t>(), level_lengths.data_ptr<int64_t>(),
                level_start_index.data_ptr<int64_t>(), sampling_locations.data_ptr<acc_t>(),
                attention_weights.data_ptr<acc_t>(), grad_output.data_ptr<scalar_t>(),
                grad_value_acc.data_ptr<acc_t>(), grad_locations.data_ptr<acc_t>(),
                grad_weights.data_ptr<acc_t>(), static_cast<index_t>(N), static_cast<index_t>(S),
                static_cast<index_t>(M), static_cast<index_t>(D), static_cast<index_t>(Lq),
                static_cast<index_t>(L), static_cast<index_t>(P));
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          };
          auto launch = [&](auto atomic_tag) {
            if (small) {
              launch_sample_kernel(int32_t{}, atomic_tag);
            } else {
              launch_sample_kernel(int64_t{}, atomic_tag);
            }
          };
          if (deterministic) {
            launch(std::false_type{});
            cuda::value_grad_deterministic_kernel<scalar_t, acc_t>
                <<<blocks_for(N * M * D), kThreads, 0, stream>>>(
                    level_lengths.data_ptr<int64_t>(), level_start_index.data_ptr<int64_t>(),
                    sampling_locations.data_ptr<acc_t>(), attention_weights.data_ptr<acc_t>(),
                    grad_output.data_ptr<scalar_t>(), grad_value_acc.data_ptr<acc_t>(), N, S, M, D,
                    Lq, L, P);
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          } else {
            launch(std::true_type{});
          }
        });
  }
  auto grad_value =
      grad_value_acc.scalar_type() == value.scalar_type() ? grad_value_acc : grad_value_acc.to(value.scalar_type());
  return {grad_value, grad_locations, grad_weights};
}

}  // namespace tp2detr_ops
