// CUDA kernels of the 1-D multi-scale deformable attention op. Torch-free: checkable with plain nvcc.
//
// scalar_t: the value / output / grad_output element type (double, float, half or bfloat16).
// acc_t:    the accumulation type and the type of sampling locations, attention weights and their
//           gradients (double for double values, float otherwise).
// Layouts (contiguous): value [N, S, M, D]; locations / weights [N, Lq, M, L, P];
// output / grad_output [N, Lq, M, D]; level lengths / start index [L] int64.
// Every kernel is a grid-stride loop, so any grid size is correct; D may be any positive integer.
#pragma once

#include <cstdint>

namespace tp2detr_ops {
namespace cuda {

constexpr int kWarpSize = 32;

template <typename acc_t>
struct DeviceTaps {
  bool valid;
  bool low_inside;
  bool high_inside;
  int64_t low;  // index of the low tap within its level
  acc_t frac;
};

// align_corners=False linear interpolation: t = loc * T - 0.5, taps floor(t), floor(t) + 1.
template <typename acc_t>
__device__ __forceinline__ DeviceTaps<acc_t> device_taps(acc_t location, int64_t length) {
  DeviceTaps<acc_t> taps{false, false, false, 0, acc_t(0)};
  const acc_t length_f = static_cast<acc_t>(length);
  const acc_t position = location * length_f - acc_t(0.5);
  if (!(position >= acc_t(-1) && position < length_f)) return taps;  // no tap inside (or NaN)
  const acc_t low_f = floor(position);
  taps.valid = true;
  taps.frac = position - low_f;
  taps.low = static_cast<int64_t>(low_f);
  taps.low_inside = taps.low >= 0;
  taps.high_inside = taps.low + 1 < length;
  return taps;
}

template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum(acc_t x) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) {
    x += __shfl_xor_sync(0xffffffffu, x, offset);
  }
  return x;
}

// Channels each lane accumulates per pass of the forward kernel: one pass covers D <= 128.
constexpr int kForwardChannelsPerLane = 4;

// One warp per (n, q, m) row. Lane j computes the taps of samples j, j + 32, ... once (instead of
// every channel recomputing every sample's taps); the warp then walks the samples in (l, p) order,
// broadcasting each one's two key offsets and tap weights with shuffles, and lane j accumulates the
// channels d = j, j + 32, ... in acc_t (any D, in passes of 32 * kForwardChannelsPerLane).
// index_t is int32_t when every offset fits (the launcher checks), else int64_t.
template <typename scalar_t, typename acc_t, typename index_t>
__global__ void forward_kernel(const scalar_t* __restrict__ value, const int64_t* __restrict__ lengths,
                               const int64_t* __restrict__ starts, const acc_t* __restrict__ locations,
                               const acc_t* __restrict__ weights, scalar_t* __restrict__ output,
                               index_t N, index_t S, index_t M, index_t D, index_t Lq, index_t L,
                               index_t P) {
  const index_t rows = N * Lq * M;
  const index_t samples = L * P;
  const index_t key_stride = M * D;  // elements between consecutive keys of one head
  const int lane = threadIdx.x % kWarpSize;
  const index_t warps_per_grid = static_cast<index_t>(gridDim.x) * (blockDim.x / kWarpSize);
  // blockDim.x is a multiple of 32, so every lane of a warp sees the same row: shuffles are safe.
  for (index_t row = (static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarpSize;
       row < rows; row += warps_per_grid) {
    const index_t m = row % M;
    const index_t n = row / (Lq * M);
    const scalar_t* head_value = value + (n * S * M + m) * D;  // key k, channel d: [k * key_stride + d]
    const acc_t* loc = locations + row * samples;
    const acc_t* att = weights + row * samples;
    for (index_t d0 = 0; d0 < D; d0 += kWarpSize * kForwardChannelsPerLane) {
      acc_t sum[kForwardChannelsPerLane];
#pragma unroll
      for (int i = 0; i < kForwardChannelsPerLane; ++i) sum[i] = acc_t(0);
      for (index_t s0 = 0; s0 < samples; s0 += kWarpSize) {
        // This lane's sample: key offsets (-1 = tap outside its level) and tap weights.
        index_t my_low = -1, my_high = -1;
        acc_t my_c_low = acc_t(0), my_c_high = acc_t(0);
        const index_t s = s0 + lane;
        if (s < samples) {
          const index_t l = s / P;
          const index_t length = static_cast<index_t>(lengths[l]);
          const DeviceTaps<acc_t> taps = device_taps(loc[s], static_cast<int64_t>(length));
          if (taps.valid) {
            const acc_t w = att[s];
            const index_t key = static_cast<index_t>(starts[l]) + static_cast<index_t>(taps.low);
            if (taps.low_inside) {
              my_low = key * key_stride;
              my_c_low = w * (acc_t(1) - taps.frac);
            }
            if (taps.high_inside) {
              my_high = (key + 1) * key_stride;
              my_c_high = w * taps.frac;
            }
          }
        }
        const index_t count = samples - s0 < kWarpSize ? samples - s0 : kWarpSize;
        for (index_t j = 0; j < count; ++j) {
          const index_t low = __shfl_sync(0xffffffffu, my_low, static_cast<int>(j));
          const index_t high = __shfl_sync(0xffffffffu, my_high, static_cast<int>(j));
          const acc_t c_low = __shfl_sync(0xffffffffu, my_c_low, static_cast<int>(j));
          const acc_t c_high = __shfl_sync(0xffffffffu, my_c_high, static_cast<int>(j));
#pragma unroll
          for (int i = 0; i < kForwardChannelsPerLane; ++i) {
            const index_t d = d0 + lane + i * kWarpSize;
            if (d < D) {
              if (low >= 0) sum[i] += c_low * static_cast<acc_t>(head_value[low + d]);
              if (high >= 0) sum[i] += c_high * static_cast<acc_t>(head_value[high + d]);
            }
          }
        }
      }
#pragma unroll
      for (int i = 0; i < kForwardChannelsPerLane; ++i) {
        const index_t d = d0 + lane + i * kWarpSize;
        if (d < D) output[row * D + d] = static_cast<scalar_t>(sum[i]);
      }
    }
  }
}

// One warp per (n, q, m): lanes stride over D, the per-sample dot products are reduced with warp
// shuffles (any D). With kAtomicValueGrad the warp also scatters into grad_value_acc with
// atomicAdd; without it grad_value is left to value_grad_deterministic_kernel.
template <typename scalar_t, typename acc_t, bool kAtomicValueGrad>
__global__ void backward_sample_kernel(const scalar_t* __restrict__ value,
                                       const int64_t* __restrict__ lengths,
                                       const int64_t* __restrict__ starts,
                                       const acc_t* __restrict__ locations,
                                       const acc_t* __restrict__ weights,
                                       const scalar_t* __restrict__ grad_output,
                                       acc_t* __restrict__ grad_value_acc,
                                       acc_t* __restrict__ grad_locations,
                                       acc_t* __restrict__ grad_weights, int64_t N, int64_t S,
                                       int64_t M, int64_t D, int64_t Lq, int64_t L, int64_t P) {
  const int64_t rows = N * Lq * M;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t warps_per_grid = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarpSize;
  // blockDim.x is a multiple of 32, so every lane of a warp sees the same row: shuffles are safe.
  for (int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarpSize;
       row < rows; row += warps_per_grid) {
    const int64_t m = row % M;
    const int64_t n = row / (Lq * M);
    const scalar_t* g = grad_output + row * D;
    const acc_t* loc = locations + row * L * P;
    const acc_t* att = weights + row * L * P;
    for (int64_t l = 0; l < L; ++l) {
      const int64_t length = lengths[l];
      const int64_t level_offset = ((n * S + starts[l]) * M + m) * D;
      for (int64_t p = 0; p < P; ++p) {
        const int64_t k = row * L * P + l * P + p;
        const DeviceTaps<acc_t> taps = device_taps(loc[l * P + p], length);
        if (!taps.valid) {
          if (lane == 0) {
            grad_locations[k] = acc_t(0);
            grad_weights[k] = acc_t(0);
          }
          continue;
        }
        const acc_t w = att[l * P + p];
        const acc_t c_low = w * (acc_t(1) - taps.frac);
        const acc_t c_high = w * taps.frac;
        const int64_t low_offset = level_offset + taps.low * M * D;
        const int64_t high_offset = low_offset + M * D;
        acc_t dot_low = acc_t(0);
        acc_t dot_high = acc_t(0);
        for (int64_t d = lane; d < D; d += kWarpSize) {
          const acc_t go = static_cast<acc_t>(g[d]);
          if (taps.low_inside) {
            dot_low += go * static_cast<acc_t>(value[low_offset + d]);
            if (kAtomicValueGrad) atomicAdd(grad_value_acc + low_offset + d, c_low * go);
          }
          if (taps.high_inside) {
            dot_high += go * static_cast<acc_t>(value[high_offset + d]);
            if (kAtomicValueGrad) atomicAdd(grad_value_acc + high_offset + d, c_high * go);
          }
        }
        dot_low = warp_sum(dot_low);
        dot_high = warp_sum(dot_high);
        if (lane == 0) {
          grad_weights[k] = (acc_t(1) - taps.frac) * dot_low + taps.frac * dot_high;
          grad_locations[k] = static_cast<acc_t>(length) * w * (dot_high - dot_low);
        }
      }
    }
  }
}

// Deterministic value gradient: one thread owns the column (n, m, d) of grad_value and visits the
// samples in a fixed order (q, l, p), so no two threads write one element and no atomics are used.
template <typename scalar_t, typename acc_t>
__global__ void value_grad_deterministic_kernel(const int64_t* __restrict__ lengths,
                                                const int64_t* __restrict__ starts,
                                                const acc_t* __restrict__ locations,
                                                const acc_t* __restrict__ weights,
                                                const scalar_t* __restrict__ grad_output,
                                                acc_t* __restrict__ grad_value_acc, int64_t N,
                                                int64_t S, int64_t M, int64_t D, int64_t Lq,
                                                int64_t L, int64_t P) {
  const int64_t columns = N * M * D;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t column = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       column < columns; column += stride) {
    const int64_t d = column % D;
    const int64_t m = (column / D) % M;
    const int64_t n = column / (M * D);
    for (int64_t q = 0; q < Lq; ++q) {
      const int64_t row = (n * Lq + q) * M + m;
      const acc_t go = static_cast<acc_t>(grad_output[row * D + d]);
      const acc_t* loc = locations + row * L * P;
      const acc_t* att = weights + row * L * P;
      for (int64_t l = 0; l < L; ++l) {
        const int64_t length = lengths[l];
        const int64_t level_offset = ((n * S + starts[l]) * M + m) * D + d;
        for (int64_t p = 0; p < P; ++p) {
          const DeviceTaps<acc_t> taps = device_taps(loc[l * P + p], length);
          if (!taps.valid) continue;
          const acc_t w = att[l * P + p];
          if (taps.low_inside) {
            grad_value_acc[level_offset + taps.low * M * D] += w * (acc_t(1) - taps.frac) * go;
          }
          if (taps.high_inside) {
            grad_value_acc[level_offset + (taps.low + 1) * M * D] += w * taps.frac * go;
          }
        }
      }
    }
  }
}

}  // namespace cuda
}  // namespace tp2detr_ops
