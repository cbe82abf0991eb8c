// CPU kernels of the 1-D multi-scale deformable attention op.
//
// Forward: parallel over (n, q, m) rows of the output, an inner loop over the head dim D.
// Backward: parallel over (n, m) pairs. Every gradient element belongs to exactly one pair
// (grad_value[n, :, m, :], grad_locations / grad_weights[n, :, m, :, :]), so each task writes
// only its own slice: no atomics, a fixed summation order, bitwise repeatable results.
#include "ms_deform_attn_1d.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

namespace tp2detr_ops {
namespace {

// The two taps of one sample on a level of length T. valid = false: no tap can be inside.
template <typename scalar_t>
struct Taps {
  bool valid;
  bool low_inside;
  bool high_inside;
  int64_t low;  // index of the low tap within the level
  scalar_t frac;
};

template <typename scalar_t>
inline Taps<scalar_t> linear_taps(scalar_t location, int64_t length) {
  Taps<scalar_t> taps{false, false, false, 0, scalar_t(0)};
  const scalar_t length_f = static_cast<scalar_t>(length);
  const scalar_t position = location * length_f - scalar_t(0.5);
  // position < -1: both taps below 0; position >= T: both taps at or above T. (NaN: skipped.)
  if (!(position >= scalar_t(-1) && position < length_f)) return taps;
  const scalar_t low_f = std::floor(position);
  taps.valid = true;
  taps.frac = position - low_f;
  taps.low = static_cast<int64_t>(low_f);
  taps.low_inside = taps.low >= 0;
  taps.high_inside = taps.low + 1 < length;
  return taps;
}

// kD > 0: the head dim is the compile-time constant kD (loops unroll, the output row stays in
// registers); kD == 0: any head dim D.
template <typename scalar_t, int kD>
void forward_kernel(const scalar_t* __restrict value, const int64_t* lengths, const int64_t* starts,
                    const scalar_t* __restrict locations, const scalar_t* __restrict weights,
                    scalar_t* __restrict output, int64_t N, int64_t S, int64_t M, int64_t D,
                    int64_t Lq, int64_t L, int64_t P) {
  const int64_t rows = N * Lq * M;
  const int64_t grain = std::max<int64_t>(1, 2048 / std::max<int64_t>(1, L * P * D / 16));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t m = row % M;
      const int64_t n = row / (Lq * M);
      constexpr bool kFixed = kD > 0;
      const int64_t Dc = kFixed ? kD : D;
      scalar_t local[kFixed ? kD : 1];
      scalar_t* __restrict out = kFixed ? local : output + row * D;
      for (int64_t d = 0; d < Dc; ++d) out[d] = scalar_t(0);
      const scalar_t* loc = locations + row * L * P;
      const scalar_t* att = weights + row * L * P;
      for (int64_t l = 0; l < L; ++l) {
        const int64_t length = lengths[l];
        const scalar_t* level_value = value + ((n * S + starts[l]) * M + m) * D;
        for (int64_t p = 0; p < P; ++p) {
          const int64_t k = l * P + p;
          const Taps<scalar_t> taps = linear_taps(loc[k], length);
          if (!taps.valid) continue;
          const scalar_t w_low = att[k] * (scalar_t(1) - taps.frac);
          const scalar_t w_high = att[k] * taps.frac;
          if (taps.low_inside && taps.high_inside) {
            const scalar_t* __restrict v_low = level_value + taps.low * M * D;
            const scalar_t* __restrict v_high = v_low + M * D;
#pragma omp simd
            for (int64_t d = 0; d < Dc; ++d) out[d] += w_low * v_low[d] + w_high * v_high[d];
          } else if (taps.low_inside) {
            const scalar_t* __restrict v_low = level_value + taps.low * M * D;
#pragma omp simd
            for (int64_t d = 0; d < Dc; ++d) out[d] += w_low * v_low[d];
          } else if (taps.high_inside) {
            const scalar_t* __restrict v_high = level_value + (taps.low + 1) * M * D;
#pragma omp simd
            for (int64_t d = 0; d < Dc; ++d) out[d] += w_high * v_high[d];
          }
        }
      }
      if (kFixed) {
        scalar_t* __restrict target = output + row * D;
        for (int64_t d = 0; d < Dc; ++d) target[d] = out[d];
      }
    }
  });
}

// Adds c * g to the value gradient row and returns dot(g, v) (the sampled value's projection).
template <typename scalar_t, int kD>
inline scalar_t tap_backward(const scalar_t* __restrict g, const scalar_t* __restrict v,
                             scalar_t* __restrict grad_v, scalar_t c, int64_t D) {
  const int64_t Dc = kD > 0 ? kD : D;
  scalar_t dot = scalar_t(0);
#pragma omp simd reduction(+ : dot)
  for (int64_t d = 0; d < Dc; ++d) {
    dot += g[d] * v[d];
    grad_v[d] += c * g[d];
  }
  return dot;
}

template <typename scalar_t, int kD>
void backward_kernel(const scalar_t* __restrict value, const int64_t* lengths, const int64_t* starts,
                     const scalar_t* __restrict locations, const scalar_t* __restrict weights,
                     const scalar_t* __restrict grad_output, scalar_t* __restrict grad_value,
                     scalar_t* __restrict grad_locations, scalar_t* __restrict grad_weights, int64_t N,
                     int64_t S, int64_t M, int64_t D, int64_t Lq, int64_t L, int64_t P) {
  at::parallel_for(0, N * M, 1, [&](int64_t begin, int64_t end) {
    for (int64_t pair = begin; pair < end; ++pair) {
      const int64_t n = pair / M;
      const int64_t m = pair % M;
      for (int64_t key = 0; key < S; ++key) {  // this task's slice of grad_value, zeroed in place
        scalar_t* __restrict row_out = grad_value + ((n * S + key) * M + m) * D;
        for (int64_t d = 0; d < D; ++d) row_out[d] = scalar_t(0);
      }
      for (int64_t q = 0; q < Lq; ++q) {
        const int64_t row = (n * Lq + q) * M + m;
        const scalar_t* __restrict g = grad_output + row * D;
        const scalar_t* loc = locations + row * L * P;
        const scalar_t* att = weights + row * L * P;
        scalar_t* grad_loc = grad_locations + row * L * P;
        scalar_t* grad_att = grad_weights + row * L * P;
        for (int64_t l = 0; l < L; ++l) {
          const int64_t length = lengths[l];
          const int64_t level_row = ((n * S + starts[l]) * M + m) * D;
          for (int64_t p = 0; p < P; ++p) {
            const int64_t k = l * P + p;
            const Taps<scalar_t> taps = linear_taps(loc[k], length);
            if (!taps.valid) {
              grad_loc[k] = scalar_t(0);
              grad_att[k] = scalar_t(0);
              continue;
            }
            const scalar_t w = att[k];
            scalar_t dot_low = scalar_t(0);
            scalar_t dot_high = scalar_t(0);
            if (taps.low_inside) {
              const int64_t offset = level_row + taps.low * M * D;
              dot_low = tap_backward<scalar_t, kD>(g, value + offset, grad_value + offset,
                                     w * (scalar_t(1) - taps.frac), D);
            }
            if (taps.high_inside) {
              const int64_t offset = level_row + (taps.low + 1) * M * D;
              dot_high = tap_backward<scalar_t, kD>(g, value + offset, grad_value + offset, w * taps.frac, D);
            }
            grad_att[k] = (scalar_t(1) - taps.frac) * dot_low + taps.frac * dot_high;
            grad_loc[k] = static_cast<scalar_t>(length) * w * (dot_high - dot_low);
          }
        }
      }
    }
  });
}

}  // namespace

at::Tensor ms_deform_attn_1d_forward_cpu(const at::Tensor& value, const at::Tensor& level_lengths,
                                         const at::Tensor& level_start_index,
                                         const at::Tensor& sampling_locations,
                                         const at::Tensor& attention_weights) {
  check_inputs(value, level_lengths, level_start_index, sampling_locations, attention_weights);
  TORCH_CHECK(sampling_locations.scalar_type() == value.scalar_type() &&
                  attention_weights.scalar_type() == value.scalar_type(),
              "ms_deform_attn_1d (cpu): value, sampling_locations and attention_weights must share "
              "one dtype, found ", value.scalar_type(), ", ", sampling_locations.scalar_type(), ", ",
              attention_weights.scalar_type());
  const int64_t N = value.size(0), S = value.size(1), M = value.size(2), D = value.size(3);
  const int64_t Lq = sampling_locations.size(1), L = sampling_locations.size(3),
                P = sampling_locations.size(4);
  auto output = at::empty({N, Lq, M * D}, value.options());
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_1d_forward_cpu", [&] {
    auto kernel = D == 32 ? forward_kernel<scalar_t, 32>
                  : D == 64 ? forward_kernel<scalar_t, 64>
                  : D == 128 ? forward_kernel<scalar_t, 128> : forward_kernel<scalar_t, 0>;
    kernel(value.data_ptr<scalar_t>(), level_lengths.data_ptr<int64_t>(),
                             level_start_index.data_ptr<int64_t>(),
                             sampling_locations.data_ptr<scalar_t>(),
                             attention_weights.data_ptr<scalar_t>(), output.data_ptr<scalar_t>(), N,
                             S, M, D, Lq, L, P);
  });
  return output;
}

std::vector<at::Tensor> ms_deform_attn_1d_backward_cpu(const at::Tensor& value,
                                                       const at::Tensor& level_lengths,
                                                       const at::Tensor& level_start_index,
                                                       const at::Tensor& sampling_locations,
                                                       const at::Tensor& attention_weights,
                                                       const at::Tensor& grad_output) {
  check_inputs(value, level_lengths, level_start_index, sampling_locations, attention_weights);
  const int64_t N = value.size(0), S = value.size(1), M = value.size(2), D = value.size(3);
  const int64_t Lq = sampling_locations.size(1), L = sampling_locations.size(3),
                P = sampling_locations.size(4);
  TORCH_CHECK(grad_output.is_contiguous() && grad_output.scalar_type() == value.scalar_type() &&
                  grad_output.numel() == N * Lq * M * D,
              "ms_deform_attn_1d (cpu): grad_output must be a contiguous [N, Lq, M*D] tensor of the "
              "value's dtype, found shape ", grad_output.sizes(), " and dtype ",
              grad_output.scalar_type());
  auto grad_value = at::empty_like(value);  // zeroed slice by slice in the kernel
  auto grad_locations = at::empty_like(sampling_locations);
  auto grad_weights = at::empty_like(attention_weights);
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_1d_backward_cpu", [&] {
    auto kernel = D == 32 ? backward_kernel<scalar_t, 32>
                  : D == 64 ? backward_kernel<scalar_t, 64>
                  : D == 128 ? backward_kernel<scalar_t, 128> : backward_kernel<scalar_t, 0>;
    kernel(value.data_ptr<scalar_t>(), level_lengths.data_ptr<int64_t>(),
                              level_start_index.data_ptr<int64_t>(),
                              sampling_locations.data_ptr<scalar_t>(),
                              attention_weights.data_ptr<scalar_t>(),
                              grad_output.data_ptr<scalar_t>(), grad_value.data_ptr<scalar_t>(),
                              grad_locations.data_ptr<scalar_t>(), grad_weights.data_ptr<scalar_t>(),
                              N, S, M, D, Lq, L, P);
  });
  return {grad_value, grad_locations, grad_weights};
}

}  // namespace tp2detr_ops
