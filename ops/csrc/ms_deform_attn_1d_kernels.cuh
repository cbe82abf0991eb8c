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

// One thread per output element (n, q, m, d); adjacent threads read adjacent channels.
template <typename scalar_t, typename acc_t>
__global__ void forward_kernel(const scalar_t* __restrict__ value, const int64_t* __restrict__ lengths,
                               const int64_t* __restrict__ starts, const acc_t* __restrict__ locations,
                               const acc_t* __restrict__ weights, scalar_t* __restrict__ output,
                               int64_t N, int64_t S, int64_t M, int64_t D, int64_t Lq, int64_t L,
                               int64_t P) {
  const int64_t total = N * Lq * M * D;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; index < total;
       index += stride) {
    const int64_t d = index % D;
    const int64_t row = index / D;  // (n, q, m)
    const int64_t m = row % M;
    const int64_t n = row / (Lq * M);
    const acc_t* loc = locations + row * L * P;
    const acc_t* att = weights + row * L * P;
    acc_t sum = acc_t(0);
    for (int64_t l = 0; l < L; ++l) {
      const int64_t length = lengths[l];
      const scalar_t* level_value = value + ((n * S + starts[l]) * M + m) * D + d;
      for (int64_t p = 0; p < P; ++p) {
        const DeviceTaps<acc_t> taps = device_taps(loc[l * P + p], length);
        if (!taps.valid) continue;
        const acc_t w = att[l * P + p];
        if (taps.low_inside) {
          sum += w * (acc_t(1) - taps.frac) * static_cast<acc_t>(level_value[taps.low * M * D]);
        }
        if (taps.high_inside) {
          sum += w * taps.frac * static_cast<acc_t>(level_value[(taps.low + 1) * M * D]);
        }
      }
    }
    output[index] = static_cast<scalar_t>(sum);
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
