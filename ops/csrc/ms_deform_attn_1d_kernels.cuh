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

// Channels each lane holds per pass of the backward kernel: one pass covers D <= 128.
constexpr int kBackwardChannelsPerLane = 4;

// Samples a warp of the backward kernel takes at a time: the model's rows have L x P = 16 samples
// (4 levels x 4 points), and 16 per-lane partial sums of two kinds keep the kernel in registers.
constexpr int kBackwardChunk = 16;

// One stage of warp_transpose_sum: kWidth (a compile-time constant, so every index is static and
// the values stay in registers) halves the number of values a lane holds. A lane keeps the half
// whose sample index has the lane's kWidth bit, adding the partner lane's (lane ^ kWidth) copy.
template <int kWidth, typename acc_t>
__device__ __forceinline__ void transpose_sum_stage(acc_t (&v)[kBackwardChunk], bool upper) {
#pragma unroll
  for (int i = 0; i < kWidth; ++i) {
    const acc_t send = upper ? v[i] : v[i + kWidth];
    const acc_t keep = upper ? v[i + kWidth] : v[i];
    v[i] = keep + __shfl_xor_sync(0xffffffffu, send, kWidth);
  }
}

// Reduce-scatter across the warp: on entry each lane holds v[0..15], its partial sums for the 16
// samples of a chunk; on return lanes j and j + 16 hold the warp-wide sum of sample j. 31
// shuffles (16 to add the two half-warps, then 8 + 4 + 2 + 1) for the 16 sums, where a butterfly
// sum per sample takes 16 x 5.
template <typename acc_t>
__device__ __forceinline__ acc_t warp_transpose_sum(acc_t (&v)[kBackwardChunk], int lane) {
  static_assert(kBackwardChunk == 16, "the stages below are written for 16 samples");
#pragma unroll
  for (int i = 0; i < kBackwardChunk; ++i) v[i] += __shfl_xor_sync(0xffffffffu, v[i], 16);
  transpose_sum_stage<8>(v, (lane & 8) != 0);
  transpose_sum_stage<4>(v, (lane & 4) != 0);
  transpose_sum_stage<2>(v, (lane & 2) != 0);
  transpose_sum_stage<1>(v, (lane & 1) != 0);
  return v[0];
}

// Value-gradient contributions of a warp, combined before they become atomics: the warp walks its
// taps in order and keeps the two most recent distinct keys (warp-uniform, so no divergence) with
// each lane's channel sums; a tap at one of them adds in registers, another key flushes the older
// slot with one atomicAdd per channel. Neighbouring sampling points often share a key (the high
// tap of one is the low tap of the next, or both fall in one cell, especially at coarse levels).
// (Two named slots, not an array indexed by a runtime slot number: that would live in local memory.)
template <typename acc_t, typename index_t>
struct TapCombiner {
  acc_t* grad;      // the head's grad_value_acc: key k, channel d at [k + d]
  index_t d0;       // this lane's first channel: d0 + i * kWarpSize
  index_t D;
  index_t key_a, key_b;  // -1: empty
  acc_t sum_a[kBackwardChannelsPerLane], sum_b[kBackwardChannelsPerLane];
  bool replace_a;        // which slot a new key takes (the older one)

  __device__ __forceinline__ TapCombiner(acc_t* grad_, index_t d0_, index_t D_)
      : grad(grad_), d0(d0_), D(D_), key_a(-1), key_b(-1), replace_a(true) {}

  __device__ __forceinline__ void flush(index_t key, const acc_t (&sum)[kBackwardChannelsPerLane]) {
    if (key < 0) return;
#pragma unroll
    for (int i = 0; i < kBackwardChannelsPerLane; ++i) {
      const index_t d = d0 + i * kWarpSize;
      if (d < D) atomicAdd(grad + key + d, sum[i]);
    }
  }

  // Add coefficient c times this lane's grad_output channels go[] at key k (k >= 0).
  __device__ __forceinline__ void add(index_t k, acc_t c, const acc_t (&go)[kBackwardChannelsPerLane]) {
    if (k == key_a) {
#pragma unroll
      for (int i = 0; i < kBackwardChannelsPerLane; ++i) sum_a[i] += c * go[i];
    } else if (k == key_b) {
#pragma unroll
      for (int i = 0; i < kBackwardChannelsPerLane; ++i) sum_b[i] += c * go[i];
    } else if (replace_a) {
      flush(key_a, sum_a);
      key_a = k;
#pragma unroll
      for (int i = 0; i < kBackwardChannelsPerLane; ++i) sum_a[i] = c * go[i];
      replace_a = false;
    } else {
      flush(key_b, sum_b);
      key_b = k;
#pragma unroll
      for (int i = 0; i < kBackwardChannelsPerLane; ++i) sum_b[i] = c * go[i];
      replace_a = true;
    }
  }

  __device__ __forceinline__ void flush_all() {
    flush(key_a, sum_a);
    flush(key_b, sum_b);
  }
};

// One warp per (n, q, m) row, laid out like the forward kernel: lane j < 16 computes the taps of
// sample j of each chunk of 16 once and the warp broadcasts them with shuffles; lane j keeps the
// grad_output channels d = j, j + 32, ... in registers and accumulates its partial dot products
// with the two tap values for every sample of the chunk; one reduce-scatter (warp_transpose_sum)
// then leaves sample j's sums in lane j, which writes its location and weight gradients. With
// kAtomicValueGrad the warp also adds the value gradient, through a TapCombiner; without it
// grad_value is left to value_grad_deterministic_kernel.
// index_t is int32_t when every offset fits (the launcher checks), else int64_t.
template <typename scalar_t, typename acc_t, typename index_t, bool kAtomicValueGrad>
__global__ void backward_sample_kernel(const scalar_t* __restrict__ value,
                                       const int64_t* __restrict__ lengths,
                                       const int64_t* __restrict__ starts,
                                       const acc_t* __restrict__ locations,
                                       const acc_t* __restrict__ weights,
                                       const scalar_t* __restrict__ grad_output,
                                       acc_t* __restrict__ grad_value_acc,
                                       acc_t* __restrict__ grad_locations,
                                       acc_t* __restrict__ grad_weights, index_t N, index_t S,
                                       index_t M, index_t D, index_t Lq, index_t L, index_t P) {
  const index_t rows = N * Lq * M;
  const index_t samples = L * P;
  const index_t key_stride = M * D;
  const int lane = threadIdx.x % kWarpSize;
  const index_t warps_per_grid = static_cast<index_t>(gridDim.x) * (blockDim.x / kWarpSize);
  // blockDim.x is a multiple of 32, so every lane of a warp sees the same row: shuffles are safe.
  for (index_t row = (static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarpSize;
       row < rows; row += warps_per_grid) {
    const index_t m = row % M;
    const index_t n = row / (Lq * M);
    const index_t head = (n * S * M + m) * D;  // key k, channel d of this head: [head + k * key_stride + d]
    const scalar_t* head_value = value + head;
    acc_t* head_grad_value = grad_value_acc + head;
    const scalar_t* g = grad_output + row * D;
    const acc_t* loc = locations + row * samples;
    const acc_t* att = weights + row * samples;
    for (index_t s0 = 0; s0 < samples; s0 += kBackwardChunk) {
      // This lane's sample: key offsets (-1 = tap outside its level), tap weights, and what its
      // location gradient needs.
      const index_t s = s0 + lane;
      const bool mine = lane < kBackwardChunk && s < samples;  // this lane owns sample s
      bool valid = false;
      index_t my_low = -1, my_high = -1;
      acc_t my_c_low = acc_t(0), my_c_high = acc_t(0), frac = acc_t(0), w = acc_t(0), length_f = acc_t(0);
      if (mine) {
        const index_t l = s / P;
        const int64_t length = lengths[l];
        const DeviceTaps<acc_t> taps = device_taps(loc[s], length);
        if (taps.valid) {
          valid = true;
          w = att[s];
          frac = taps.frac;
          length_f = static_cast<acc_t>(length);
          const index_t key = static_cast<index_t>(starts[l]) + static_cast<index_t>(taps.low);
          if (taps.low_inside) {
            my_low = key * key_stride;
            my_c_low = w * (acc_t(1) - frac);
          }
          if (taps.high_inside) {
            my_high = (key + 1) * key_stride;
            my_c_high = w * frac;
          }
        }
      }
      const index_t count = samples - s0 < kBackwardChunk ? samples - s0 : kBackwardChunk;
      acc_t dot_low[kBackwardChunk], dot_high[kBackwardChunk];
#pragma unroll
      for (int j = 0; j < kBackwardChunk; ++j) dot_low[j] = dot_high[j] = acc_t(0);
      for (index_t d0 = 0; d0 < D; d0 += kWarpSize * kBackwardChannelsPerLane) {
        acc_t go[kBackwardChannelsPerLane];
#pragma unroll
        for (int i = 0; i < kBackwardChannelsPerLane; ++i) {
          const index_t d = d0 + lane + i * kWarpSize;
          go[i] = d < D ? static_cast<acc_t>(g[d]) : acc_t(0);
        }
        TapCombiner<acc_t, index_t> combiner(head_grad_value, d0 + lane, D);
#pragma unroll
        for (int j = 0; j < kBackwardChunk; ++j) {
          if (j < count) {  // warp-uniform
            const index_t low = __shfl_sync(0xffffffffu, my_low, j);
            const index_t high = __shfl_sync(0xffffffffu, my_high, j);
            acc_t partial_low = acc_t(0), partial_high = acc_t(0);
#pragma unroll
            for (int i = 0; i < kBackwardChannelsPerLane; ++i) {
              const index_t d = d0 + lane + i * kWarpSize;
              if (d < D) {
                if (low >= 0) partial_low += go[i] * static_cast<acc_t>(head_value[low + d]);
                if (high >= 0) partial_high += go[i] * static_cast<acc_t>(head_value[high + d]);
              }
            }
            dot_low[j] += partial_low;
            dot_high[j] += partial_high;
            if (kAtomicValueGrad) {
              const acc_t c_low = __shfl_sync(0xffffffffu, my_c_low, j);
              const acc_t c_high = __shfl_sync(0xffffffffu, my_c_high, j);
              if (low >= 0) combiner.add(low, c_low, go);
              if (high >= 0) combiner.add(high, c_high, go);
            }
          }
        }
        if (kAtomicValueGrad) combiner.flush_all();
      }
      const acc_t sum_low = warp_transpose_sum(dot_low, lane);
      const acc_t sum_high = warp_transpose_sum(dot_high, lane);
      if (mine) {
        const index_t k = row * samples + s;
        grad_weights[k] = valid ? (acc_t(1) - frac) * sum_low + frac * sum_high : acc_t(0);
        grad_locations[k] = valid ? length_f * w * (sum_high - sum_low) : acc_t(0);
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
