// CPU kernels of the 1-D multi-scale deformable attention op.
//
// Both kernels run on at::parallel_for, whose OpenMP region is compiled into this extension
// (built with -fopenmp). Forward: parallel over (n, q, m) rows of the output, an inner loop over
// the head dim D. Backward: parallel over (n, m) pairs; each task copies its head slice
// value[n, :, m, :] into a contiguous [S + 2, D] buffer (two zero rows for the padding taps, so
// the loops over D have no data-dependent branches), accumulates its value gradient in a second
// such buffer and writes it out once. Every gradient element belongs to exactly one pair, so each
// task writes only its own slice: no atomics, a fixed summation order, bitwise repeatable results
// for any thread count.
#include "ms_deform_attn_1d.h"
#include "ms_deform_attn_1d_cpu_avx2.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

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

// Per sample k = l * P + p of a query: its level's length T (as int and as float) and start.
template <typename scalar_t>
struct SampleLevels {
  std::vector<int32_t> length;
  std::vector<scalar_t> length_f;
  std::vector<int32_t> start;

  SampleLevels(const int64_t* lengths, const int64_t* starts, int64_t L, int64_t P)
      : length(L * P), length_f(L * P), start(L * P) {
    for (int64_t k = 0; k < L * P; ++k) {
      length[k] = static_cast<int32_t>(lengths[k / P]);
      length_f[k] = static_cast<scalar_t>(lengths[k / P]);
      start[k] = static_cast<int32_t>(starts[k / P]);
    }
  }
};

// Where the two taps of one query's samples read, as rows of a packed head slice [S + 2, D]
// whose rows S and S + 1 are the zero padding (see pack_head): a tap outside its level points at
// a padding row, so the loops over D have no data-dependent branches. Filled by one branch-free
// (vectorisable) loop; low_inside / high_inside are 0 or 1; frac is the high tap's weight.
template <typename scalar_t>
struct TapTable {
  std::vector<int32_t> low_row, high_row, low_inside, high_inside;
  std::vector<scalar_t> frac;

  explicit TapTable(int64_t samples)
      : low_row(samples), high_row(samples), low_inside(samples), high_inside(samples), frac(samples) {}

  // Continuous index t = loc * T - 0.5 (align_corners=False), taps floor(t) and floor(t) + 1.
  // t is clamped to [-2, T + 1] first (NaN -> -2): outside [-1, T) both taps stay outside, inside
  // it t, floor(t) and frac are unchanged.
  void fill(const scalar_t* __restrict loc, const SampleLevels<scalar_t>& levels, int32_t S) {
    const int64_t samples = static_cast<int64_t>(frac.size());
    const int32_t* __restrict length = levels.length.data();
    const scalar_t* __restrict length_f = levels.length_f.data();
    const int32_t* __restrict start = levels.start.data();
    int32_t* __restrict low_out = low_row.data();
    int32_t* __restrict high_out = high_row.data();
    int32_t* __restrict low_in_out = low_inside.data();
    int32_t* __restrict high_in_out = high_inside.data();
    scalar_t* __restrict frac_out = frac.data();
#pragma omp simd
    for (int64_t k = 0; k < samples; ++k) {
      scalar_t t = loc[k] * length_f[k] - scalar_t(0.5);
      t = t >= scalar_t(-2) ? t : scalar_t(-2);
      t = t <= length_f[k] + scalar_t(1) ? t : length_f[k] + scalar_t(1);
      const scalar_t low_f = std::floor(t);
      const int32_t low = static_cast<int32_t>(low_f);
      const int32_t low_in = (low >= 0) & (low < length[k]);
      const int32_t high_in = (low + 1 >= 0) & (low + 1 < length[k]);
      low_in_out[k] = low_in;
      high_in_out[k] = high_in;
      low_out[k] = low_in ? start[k] + low : S;
      high_out[k] = high_in ? start[k] + low + 1 : S + 1;
      frac_out[k] = t - low_f;
    }
  }
};

// Copies value[n, :, m, :] (keys M·D elements apart in the [N, S, M, D] layout, so that all rows
// of one head fall into a few cache sets) into the contiguous rows 0..S-1 of `packed` and zeroes
// the two padding rows S and S + 1.
template <typename scalar_t>
inline void pack_head(const scalar_t* __restrict head, int64_t key_stride, int64_t S, int64_t D,
                      scalar_t* __restrict packed) {
  for (int64_t key = 0; key < S; ++key) {
    const scalar_t* __restrict source = head + key * key_stride;
    scalar_t* __restrict target = packed + key * D;
    for (int64_t d = 0; d < D; ++d) target[d] = source[d];
  }
  std::fill(packed + S * D, packed + (S + 2) * D, scalar_t(0));
}

// Forward: parallel over (n, q, m) rows of the output (reads locations, weights and output in
// memory order). kD > 0: the head dim is the compile-time constant kD (loops unroll, the output
// row stays in registers); kD == 0: any head dim D.
template <typename scalar_t, int kD>
void forward_kernel(const scalar_t* __restrict value, const int64_t* lengths, const int64_t* starts,
                    const scalar_t* __restrict locations, const scalar_t* __restrict weights,
                    scalar_t* __restrict output, int64_t N, int64_t S, int64_t M, int64_t D,
                    int64_t Lq, int64_t L, int64_t P) {
  const int64_t rows = N * Lq * M;
  const int64_t grain = std::max<int64_t>(1, 2048 / std::max<int64_t>(1, L * P * D / 16));
#if TP2DETR_CPU_AVX2
  // float, D = 32 or 64, whole groups of 8 samples: the AVX2 row step (ms_deform_attn_1d_cpu_avx2.h).
  constexpr bool kAvx2Type = std::is_same_v<scalar_t, float> && (kD == 32 || kD == 64);
  const int64_t samples = L * P;
  const bool use_avx2 = kAvx2Type && samples % 8 == 0;
  const SampleLevels<scalar_t> levels(lengths, starts, L, P);
  alignas(32) static const float kZeroRow[64] = {};  // read by taps outside their level
#endif
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
#if TP2DETR_CPU_AVX2
    std::vector<int32_t> keys(use_avx2 ? 2 * samples : 0);
    std::vector<float> tap_weights(use_avx2 ? 2 * samples : 0);
#endif
    for (int64_t row = begin; row < end; ++row) {
      const int64_t m = row % M;
      const int64_t n = row / (Lq * M);
#if TP2DETR_CPU_AVX2
      if constexpr (kAvx2Type) {
        if (use_avx2) {
          avx2::forward_row<kD / 8>(locations + row * samples, weights + row * samples, levels.length.data(),
                                    levels.length_f.data(), levels.start.data(), samples,
                                    value + (n * S * M + m) * kD, M * kD, kZeroRow, keys.data(),
                                    keys.data() + samples, tap_weights.data(), tap_weights.data() + samples,
                                    output + row * kD);
          continue;
        }
      }
#endif
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

// Sum of kD terms as a fixed pairwise tree: independent adds instead of one serial accumulator
// chain, and one fixed order, so the result stays bitwise repeatable.
template <typename scalar_t, int kD>
C10_ALWAYS_INLINE scalar_t tree_sum(scalar_t* __restrict terms) {
  static_assert(kD > 0 && (kD & (kD - 1)) == 0, "tree_sum needs a power-of-two head dim");
#pragma GCC unroll 8
  for (int width = kD / 2; width >= 1; width /= 2) {
#pragma omp simd
    for (int d = 0; d < width; ++d) terms[d] += terms[d + width];
  }
  return terms[0];
}

// Both taps of one sample in one pass over D: adds c_low * g and c_high * g to the two gradient
// rows (distinct rows, so no aliasing) and returns dot(g, v_low), dot(g, v_high).
template <typename scalar_t, int kD>
C10_ALWAYS_INLINE void pair_backward(const scalar_t* __restrict g, const scalar_t* __restrict v_low,
                                     const scalar_t* __restrict v_high, scalar_t* __restrict grad_low,
                                     scalar_t* __restrict grad_high, scalar_t c_low, scalar_t c_high,
                                     int64_t D, scalar_t& dot_low, scalar_t& dot_high) {
  if constexpr (kD > 0) {
    alignas(64) scalar_t low[kD];
    alignas(64) scalar_t high[kD];
#pragma omp simd
    for (int d = 0; d < kD; ++d) {
      const scalar_t gd = g[d];
      low[d] = gd * v_low[d];
      high[d] = gd * v_high[d];
      grad_low[d] += c_low * gd;
      grad_high[d] += c_high * gd;
    }
    dot_low = tree_sum<scalar_t, kD>(low);
    dot_high = tree_sum<scalar_t, kD>(high);
  } else {
    scalar_t low = scalar_t(0);
    scalar_t high = scalar_t(0);
#pragma omp simd reduction(+ : low, high)
    for (int64_t d = 0; d < D; ++d) {
      const scalar_t gd = g[d];
      low += gd * v_low[d];
      high += gd * v_high[d];
      grad_low[d] += c_low * gd;
      grad_high[d] += c_high * gd;
    }
    dot_low = low;
    dot_high = high;
  }
}

// Backward: parallel over (n, m) pairs. Every gradient element belongs to exactly one pair
// (grad_value[n, :, m, :], grad_locations / grad_weights[n, :, m, :, :]), so each task writes only
// its own slice: no atomics, a fixed summation order. The task accumulates its value gradient in
// a packed [S + 2, D] buffer (rows S, S + 1 collect the padding taps' contributions and are
// dropped) and writes every element of its grad_value slice once at the end.
template <typename scalar_t, int kD>
void backward_kernel(const scalar_t* __restrict value, const int64_t* lengths, const int64_t* starts,
                     const scalar_t* __restrict locations, const scalar_t* __restrict weights,
                     const scalar_t* __restrict grad_output, scalar_t* __restrict grad_value,
                     scalar_t* __restrict grad_locations, scalar_t* __restrict grad_weights, int64_t N,
                     int64_t S, int64_t M, int64_t D, int64_t Lq, int64_t L, int64_t P) {
  const int64_t Dc = kD > 0 ? kD : D;
  const int64_t key_stride = M * Dc;  // elements between consecutive keys of one head in value
  const int64_t samples = L * P;
  const SampleLevels<scalar_t> levels(lengths, starts, L, P);
#if TP2DETR_CPU_AVX2
  // float, D = 32 or 64, whole groups of 8 samples: the AVX2 query step (ms_deform_attn_1d_cpu_avx2.h).
  constexpr bool kAvx2Type = std::is_same_v<scalar_t, float> && (kD == 32 || kD == 64);
  const bool use_avx2 = kAvx2Type && samples % 8 == 0;
#endif
  at::parallel_for(0, N * M, 1, [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> packed(static_cast<size_t>(2 * (S + 2) * Dc));
    TapTable<scalar_t> taps(samples);
    std::vector<scalar_t> dots(2 * samples);
    scalar_t* __restrict head_value = packed.data();
    scalar_t* __restrict head_grad = packed.data() + (S + 2) * Dc;
#if TP2DETR_CPU_AVX2
    std::vector<int32_t> rows(use_avx2 ? 2 * samples : 0);
    std::vector<float> weights_scratch(use_avx2 ? 2 * samples : 0);
    std::vector<__m256> partial_dots(use_avx2 ? 2 * samples : 0);  // 32-byte aligned (C++17)
    const avx2::QueryScratch scratch{rows.data(), rows.data() + samples, weights_scratch.data(),
                                     weights_scratch.data() + samples, partial_dots.data(),
                                     partial_dots.data() + samples};
#endif
    for (int64_t pair = begin; pair < end; ++pair) {
      const int64_t n = pair / M;
      const int64_t m = pair % M;
      const int64_t head_offset = (n * S * M + m) * Dc;  // value[n, 0, m, 0]
      pack_head(value + head_offset, key_stride, S, Dc, head_value);
      std::fill(head_grad, head_grad + (S + 2) * Dc, scalar_t(0));
      for (int64_t q = 0; q < Lq; ++q) {
        const int64_t row = (n * Lq + q) * M + m;
        const scalar_t* __restrict g = grad_output + row * Dc;
        const scalar_t* loc = locations + row * L * P;
        const scalar_t* att = weights + row * L * P;
        scalar_t* grad_loc = grad_locations + row * L * P;
        scalar_t* grad_att = grad_weights + row * L * P;
#if TP2DETR_CPU_AVX2
        if constexpr (kAvx2Type) {
          if (use_avx2) {
            avx2::backward_query<kD / 8>(loc, att, levels.length.data(), levels.length_f.data(),
                                         levels.start.data(), static_cast<int32_t>(S), samples, head_value,
                                         head_grad, g, grad_loc, grad_att, scratch);
            continue;
          }
        }
#endif
        taps.fill(loc, levels, static_cast<int32_t>(S));
        const int32_t* __restrict low_row = taps.low_row.data();
        const int32_t* __restrict high_row = taps.high_row.data();
        const int32_t* __restrict low_in = taps.low_inside.data();
        const int32_t* __restrict high_in = taps.high_inside.data();
        const scalar_t* __restrict frac = taps.frac.data();
        scalar_t* __restrict dot_low = dots.data();
        scalar_t* __restrict dot_high = dots.data() + samples;
        for (int64_t k = 0; k < samples; ++k) {
          const int64_t low_offset = int64_t(low_row[k]) * Dc;
          const int64_t high_offset = int64_t(high_row[k]) * Dc;
          pair_backward<scalar_t, kD>(g, head_value + low_offset, head_value + high_offset,
                                      head_grad + low_offset, head_grad + high_offset,
                                      att[k] * (scalar_t(1) - frac[k]), att[k] * frac[k], Dc,
                                      dot_low[k], dot_high[k]);
        }
#pragma omp simd
        for (int64_t k = 0; k < samples; ++k) {
          // A padding tap reads zero: its dot is exactly 0 (selected, so that a non-finite g times
          // the zero row cannot leak in); with both taps outside, both gradients are 0.
          const scalar_t low = low_in[k] ? dot_low[k] : scalar_t(0);
          const scalar_t high = high_in[k] ? dot_high[k] : scalar_t(0);
          const bool valid = low_in[k] | high_in[k];
          grad_att[k] = valid ? (scalar_t(1) - frac[k]) * low + frac[k] * high : scalar_t(0);
          grad_loc[k] = valid ? levels.length_f[k] * att[k] * (high - low) : scalar_t(0);
        }
      }
      for (int64_t key = 0; key < S; ++key) {  // every element of the slice is written: no zero-fill
        const scalar_t* __restrict source = head_grad + key * Dc;
        scalar_t* __restrict target = grad_value + head_offset + key * key_stride;
        for (int64_t d = 0; d < Dc; ++d) target[d] = source[d];
      }
    }
  });
}

// The CPU kernels index keys (and two zero rows per head) with int32.
void check_key_count(int64_t S) {
  TORCH_CHECK(S + 2 <= std::numeric_limits<int32_t>::max(),
              "ms_deform_attn_1d (cpu): value has ", S, " keys; the CPU kernels index keys with "
              "int32 and take at most ", std::numeric_limits<int32_t>::max() - 2);
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
  check_key_count(S);
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
  check_key_count(S);
  TORCH_CHECK(grad_output.is_contiguous() && grad_output.scalar_type() == value.scalar_type() &&
                  grad_output.numel() == N * Lq * M * D,
              "ms_deform_attn_1d (cpu): grad_output must be a contiguous [N, Lq, M*D] tensor of the "
              "value's dtype, found shape ", grad_output.sizes(), " and dtype ",
              grad_output.scalar_type());
  auto grad_value = at::empty_like(value);  // every element written by the kernel
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
