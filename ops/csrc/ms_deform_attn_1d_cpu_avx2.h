// AVX2 + FMA versions of one query's step of the CPU kernels (ms_deform_attn_1d_cpu.cpp), for
// float values with head dim D = 8·kV (kV = 4 or 8) and a multiple of 8 samples (L·P) per query.
// Compiled only when the build enables AVX2 and FMA (-mavx2 -mfma, chosen by tp2detr/ops/build.py
// from /proc/cpuinfo); the callers fall back to the portable loops otherwise.
//
// Taps, eight samples at a time (taps8): t = clamp(loc·T − 0.5, −2, T + 1) (NaN → −2),
// low = ⌊t⌋, frac = t − low; a tap outside its level gets weight 0 and a padding index.
//
// Forward (forward_row): out[d] = Σ_k c_low[k]·value[low key, d] + c_high[k]·value[high key, d],
// the output row in kV registers; a tap outside its level reads a row of zeros.
//
// Backward (backward_query): one query, given its locations / weights (L·P each), its output-gradient row g [D], the head's
// packed value slice `head` [S + 2, D] (rows S, S + 1 zero) and packed gradient slice `grad`:
//   1. taps, eight samples at a time: t = clamp(loc·T − 0.5, −2, T + 1) (NaN → −2), low = ⌊t⌋,
//      frac = t − low; a tap outside its level points at a padding row with weight 0;
//   2. per sample, one pass over D with g held in kV registers: grad[low] += c_low·g,
//      grad[high] += c_high·g, and the two dot products g·head[low], g·head[high] left as vectors;
//   3. the dot products reduced eight samples at a time, then grad_weights = (1 − frac)·dot_low +
//      frac·dot_high and grad_locations = T·w·(dot_high − dot_low) (0 for a sample with no tap
//      inside; a padding tap's dot is taken as exactly 0).
// The same semantics as the portable loop; one fixed order of operations: bitwise repeatable.
#pragma once

#include <c10/macros/Macros.h>

#include <cstdint>

#if defined(__AVX2__) && defined(__FMA__)
#define TP2DETR_CPU_AVX2 1
#include <immintrin.h>

namespace tp2detr_ops {
namespace avx2 {

// Eight vectors → one vector of their eight horizontal sums (lane i = sum of v[i]).
C10_ALWAYS_INLINE __m256 horizontal_sums8(const __m256* v) {
  const __m256 s01 = _mm256_hadd_ps(v[0], v[1]);
  const __m256 s23 = _mm256_hadd_ps(v[2], v[3]);
  const __m256 s45 = _mm256_hadd_ps(v[4], v[5]);
  const __m256 s67 = _mm256_hadd_ps(v[6], v[7]);
  const __m256 s0123 = _mm256_hadd_ps(s01, s23);  // [v0..v3 over lanes 0-3 | v0..v3 over lanes 4-7]
  const __m256 s4567 = _mm256_hadd_ps(s45, s67);
  return _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20), _mm256_permute2f128_ps(s0123, s4567, 0x31));
}

// The taps of eight samples: for each, the index of its low / high tap (start + ⌊t⌋, start + ⌊t⌋ + 1;
// pad_low / pad_high when that tap is outside its level) and their weights w·(1 − frac), w·frac
// (0 outside).
C10_ALWAYS_INLINE void taps8(const float* __restrict loc, const float* __restrict att,
                             const int32_t* __restrict length, const float* __restrict length_f,
                             const int32_t* __restrict start, int32_t pad_low, int32_t pad_high,
                             int32_t* __restrict low_out, int32_t* __restrict high_out,
                             float* __restrict c_low_out, float* __restrict c_high_out) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256i minus_one = _mm256_set1_epi32(-1);
  const __m256 len_f = _mm256_loadu_ps(length_f);
  __m256 t = _mm256_fmsub_ps(_mm256_loadu_ps(loc), len_f, _mm256_set1_ps(0.5f));
  t = _mm256_max_ps(t, _mm256_set1_ps(-2.0f));  // a NaN t becomes -2 (max returns its second operand)
  t = _mm256_min_ps(t, _mm256_add_ps(len_f, one));
  const __m256 low_f = _mm256_floor_ps(t);
  const __m256 frac = _mm256_sub_ps(t, low_f);
  const __m256i low = _mm256_cvttps_epi32(low_f);
  const __m256i high = _mm256_sub_epi32(low, minus_one);
  const __m256i len = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(length));
  const __m256i begin = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(start));
  const __m256i low_in = _mm256_and_si256(_mm256_cmpgt_epi32(low, minus_one), _mm256_cmpgt_epi32(len, low));
  const __m256i high_in = _mm256_and_si256(_mm256_cmpgt_epi32(high, minus_one), _mm256_cmpgt_epi32(len, high));
  const __m256 w = _mm256_loadu_ps(att);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(low_out),
                      _mm256_blendv_epi8(_mm256_set1_epi32(pad_low), _mm256_add_epi32(begin, low), low_in));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(high_out),
                      _mm256_blendv_epi8(_mm256_set1_epi32(pad_high), _mm256_add_epi32(begin, high), high_in));
  _mm256_storeu_ps(c_low_out, _mm256_and_ps(_mm256_castsi256_ps(low_in), _mm256_mul_ps(w, _mm256_sub_ps(one, frac))));
  _mm256_storeu_ps(c_high_out, _mm256_and_ps(_mm256_castsi256_ps(high_in), _mm256_mul_ps(w, frac)));
}

// One output row. head: value[n, 0, m, 0] (key k at head + k·key_stride); zeros: kD zero floats;
// scratch_*: [samples] each.
template <int kV>
C10_ALWAYS_INLINE void forward_row(const float* __restrict loc, const float* __restrict att,
                                   const int32_t* __restrict length, const float* __restrict length_f,
                                   const int32_t* __restrict start, int64_t samples,
                                   const float* __restrict head, int64_t key_stride, const float* __restrict zeros,
                                   int32_t* __restrict low_key, int32_t* __restrict high_key,
                                   float* __restrict c_low, float* __restrict c_high, float* __restrict out) {
  for (int64_t k = 0; k < samples; k += 8) {
    taps8(loc + k, att + k, length + k, length_f + k, start + k, -1, -1, low_key + k, high_key + k, c_low + k,
          c_high + k);
  }
  __m256 acc[kV];
#pragma GCC unroll 8
  for (int c = 0; c < kV; ++c) acc[c] = _mm256_setzero_ps();
  for (int64_t k = 0; k < samples; ++k) {
    const float* __restrict v_low = low_key[k] >= 0 ? head + int64_t(low_key[k]) * key_stride : zeros;
    const float* __restrict v_high = high_key[k] >= 0 ? head + int64_t(high_key[k]) * key_stride : zeros;
    const __m256 w_low = _mm256_set1_ps(c_low[k]);
    const __m256 w_high = _mm256_set1_ps(c_high[k]);
#pragma GCC unroll 8
    for (int c = 0; c < kV; ++c) {
      acc[c] = _mm256_fmadd_ps(w_low, _mm256_loadu_ps(v_low + 8 * c), acc[c]);
      acc[c] = _mm256_fmadd_ps(w_high, _mm256_loadu_ps(v_high + 8 * c), acc[c]);
    }
  }
#pragma GCC unroll 8
  for (int c = 0; c < kV; ++c) _mm256_storeu_ps(out + 8 * c, acc[c]);
}

// Scratch a task keeps for backward_query: samples·(2 int32 + 2 float + 2 __m256) plus masks.
struct QueryScratch {
  int32_t* low_row;    // [samples]
  int32_t* high_row;   // [samples]
  float* c_low;        // [samples]
  float* c_high;       // [samples]
  __m256* dot_low;     // [samples] partial dot products (32-byte aligned)
  __m256* dot_high;    // [samples]
};

template <int kV>
C10_ALWAYS_INLINE void backward_query(const float* __restrict loc, const float* __restrict att,
                                      const int32_t* __restrict length, const float* __restrict length_f,
                                      const int32_t* __restrict start, int32_t S, int64_t samples,
                                      const float* __restrict head, float* __restrict grad,
                                      const float* __restrict g, float* __restrict grad_loc,
                                      float* __restrict grad_att, const QueryScratch& scratch) {
  constexpr int kD = 8 * kV;
  const __m256 half = _mm256_set1_ps(0.5f);
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 minus_two = _mm256_set1_ps(-2.0f);
  const __m256i pad_low = _mm256_set1_epi32(S);
  const __m256i pad_high = _mm256_set1_epi32(S + 1);
  // 1. taps
  for (int64_t k = 0; k < samples; k += 8) {
    taps8(loc + k, att + k, length + k, length_f + k, start + k, S, S + 1, scratch.low_row + k,
          scratch.high_row + k, scratch.c_low + k, scratch.c_high + k);
  }
  // 2. one pass over D per sample
  __m256 g_row[kV];
#pragma GCC unroll 8
  for (int c = 0; c < kV; ++c) g_row[c] = _mm256_loadu_ps(g + 8 * c);
  for (int64_t k = 0; k < samples; ++k) {
    const int64_t low_offset = int64_t(scratch.low_row[k]) * kD;
    const int64_t high_offset = int64_t(scratch.high_row[k]) * kD;
    const float* __restrict v_low = head + low_offset;
    const float* __restrict v_high = head + high_offset;
    float* __restrict grad_low = grad + low_offset;  // distinct rows: low_row[k] != high_row[k]
    float* __restrict grad_high = grad + high_offset;
    const __m256 w_low = _mm256_set1_ps(scratch.c_low[k]);
    const __m256 w_high = _mm256_set1_ps(scratch.c_high[k]);
    __m256 sum_low = _mm256_mul_ps(g_row[0], _mm256_loadu_ps(v_low));
    __m256 sum_high = _mm256_mul_ps(g_row[0], _mm256_loadu_ps(v_high));
#pragma GCC unroll 8
    for (int c = 1; c < kV; ++c) {
      sum_low = _mm256_fmadd_ps(g_row[c], _mm256_loadu_ps(v_low + 8 * c), sum_low);
      sum_high = _mm256_fmadd_ps(g_row[c], _mm256_loadu_ps(v_high + 8 * c), sum_high);
    }
#pragma GCC unroll 8
    for (int c = 0; c < kV; ++c) {
      _mm256_storeu_ps(grad_low + 8 * c, _mm256_fmadd_ps(w_low, g_row[c], _mm256_loadu_ps(grad_low + 8 * c)));
      _mm256_storeu_ps(grad_high + 8 * c, _mm256_fmadd_ps(w_high, g_row[c], _mm256_loadu_ps(grad_high + 8 * c)));
    }
    scratch.dot_low[k] = sum_low;
    scratch.dot_high[k] = sum_high;
  }
  // 3. reduce the dot products and form the location / weight gradients
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t k = 0; k < samples; k += 8) {
    const __m256i low_row = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(scratch.low_row + k));
    const __m256i high_row = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(scratch.high_row + k));
    // A tap is inside its level iff its row is a key row: low rows are start + low or S, high
    // rows start + low + 1 (at most S - 1) or S + 1.
    const __m256 low_in = _mm256_castsi256_ps(_mm256_cmpgt_epi32(pad_low, low_row));
    const __m256 high_in = _mm256_castsi256_ps(_mm256_cmpgt_epi32(pad_high, high_row));
    const __m256 dot_low = _mm256_and_ps(low_in, horizontal_sums8(scratch.dot_low + k));
    const __m256 dot_high = _mm256_and_ps(high_in, horizontal_sums8(scratch.dot_high + k));
    const __m256 valid = _mm256_or_ps(low_in, high_in);
    const __m256 len_f = _mm256_loadu_ps(length_f + k);
    __m256 t = _mm256_fmsub_ps(_mm256_loadu_ps(loc + k), len_f, half);
    t = _mm256_max_ps(t, minus_two);
    t = _mm256_min_ps(t, _mm256_add_ps(len_f, one));
    const __m256 frac = _mm256_sub_ps(t, _mm256_floor_ps(t));
    const __m256 w = _mm256_loadu_ps(att + k);
    const __m256 d_att = _mm256_fmadd_ps(_mm256_sub_ps(one, frac), dot_low, _mm256_mul_ps(frac, dot_high));
    const __m256 d_loc = _mm256_mul_ps(_mm256_mul_ps(len_f, w), _mm256_sub_ps(dot_high, dot_low));
    _mm256_storeu_ps(grad_att + k, _mm256_blendv_ps(zero, d_att, valid));
    _mm256_storeu_ps(grad_loc + k, _mm256_blendv_ps(zero, d_loc, valid));
  }
}

}  // namespace avx2
}  // namespace tp2detr_ops

#else
#define TP2DETR_CPU_AVX2 0
#endif
