#include "kernels/cpu/vexp_f32.h"

// GCC 12 flags the _mm512_undefined_ps() placeholders inside the roundscale and
// scalef intrinsics as maybe-uninitialized (a known false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/simd.h"

namespace condense::kernels {

namespace {

constexpr float kLo = -104.f, kHi = 88.7f, kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;  // hi has 9 bits: n * hi is exact
constexpr float kC6 = 1.f / 720, kC5 = 1.f / 120, kC4 = 1.f / 24, kC3 = 1.f / 6;

// Sums lanes in float64, so the result does not depend on the vector width
// beyond the f32 lane partials.
template <int W>
double lanes_sum(const float* lanes) {
  double s = 0;
  for (int i = 0; i < W; ++i) s += lanes[i];
  return s;
}

// ---------------------------------------------------------------- AVX-512 ---

CONDENSE_AVX512 inline __m512 exp512(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(kLo));  // below: scalef gives 0
  x = _mm512_min_ps(x, _mm512_set1_ps(kHi));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  __m512 p = _mm512_set1_ps(kC6);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC5));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
}

CONDENSE_AVX512 double exp_shift_avx512(const float* x, float shift, float mul, int64_t n, float* out) {
  const __m512 s = _mm512_set1_ps(shift), m = _mm512_set1_ps(mul);
  __m512 acc = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m512 e = exp512(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + j), s), m));
    _mm512_storeu_ps(out + j, e);
    acc = _mm512_add_ps(acc, e);
  }
  if (j < n) {
    const __mmask16 k = lane_mask(int(n - j));
    const __m512 e = exp512(_mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + j), s), m));
    _mm512_mask_storeu_ps(out + j, k, e);
    acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(k, e));
  }
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, acc);
  return lanes_sum<16>(lanes);
}

// ------------------------------------------------------------------- AVX2 ---

// 2^e for integer e in [-126, 127], built in the exponent field.
CONDENSE_AVX2 inline __m256 pow2i_avx2(__m256i e) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23));
}

CONDENSE_AVX2 inline __m256 exp256(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(kLo));
  x = _mm256_min_ps(x, _mm256_set1_ps(kHi));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kC6);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC5));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  const __m256i ni = _mm256_cvtps_epi32(n);      // n in [-150, 128]
  const __m256i n1 = _mm256_srai_epi32(ni, 1);   // both halves in [-75, 64]
  return _mm256_mul_ps(_mm256_mul_ps(p, pow2i_avx2(n1)), pow2i_avx2(_mm256_sub_epi32(ni, n1)));
}

CONDENSE_AVX2 double exp_shift_avx2(const float* x, float shift, float mul, int64_t n, float* out) {
  const __m256 s = _mm256_set1_ps(shift), m = _mm256_set1_ps(mul);
  __m256 acc = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 e = exp256(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), s), m));
    _mm256_storeu_ps(out + j, e);
    acc = _mm256_add_ps(acc, e);
  }
  if (j < n) {
    const __m256i k = lane_mask8(int(n - j));
    const __m256 e = _mm256_and_ps(exp256(_mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(x + j, k), s), m)),
                                   _mm256_castsi256_ps(k));
    _mm256_maskstore_ps(out + j, k, e);
    acc = _mm256_add_ps(acc, e);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  return lanes_sum<8>(lanes);
}

// --------------------------------------------------------------- portable ---

typedef int32_t vec4i __attribute__((vector_size(16)));

inline vec4f pow2i(vec4i e) { return (vec4f)((e + 127) << 23); }

// The same algorithm on 4-wide GCC vectors (SSE2, NEON, ...); rounding to the
// nearest integer by adding and subtracting 1.5 * 2^23 (|x log2 e| < 2^22),
// multiply and add unfused.
inline vec4f exp4(vec4f x) {
  const vec4f lo = {kLo, kLo, kLo, kLo}, hi = {kHi, kHi, kHi, kHi};
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  constexpr float kRound = 12582912.f;
  const vec4f n = (x * kLog2e + kRound) - kRound;
  vec4f r = x - n * kLn2Hi;
  r = r - n * kLn2Lo;
  vec4f p = kC6 * r + kC5;
  p = p * r + kC4;
  p = p * r + kC3;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  const vec4i ni = __builtin_convertvector(n, vec4i);
  const vec4i n1 = ni >> 1;
  return p * pow2i(n1) * pow2i(ni - n1);
}

double exp_shift_portable(const float* x, float shift, float mul, int64_t n, float* out) {
  vec4f acc = {0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    const vec4f e = exp4((load4(x + j) - shift) * mul);
    std::memcpy(out + j, &e, sizeof(e));
    acc += e;
  }
  if (j < n) {
    float tail[4] = {0, 0, 0, 0}, lanes[4];
    std::memcpy(tail, x + j, size_t(n - j) * sizeof(float));
    const vec4f e = exp4((load4(tail) - shift) * mul);
    std::memcpy(lanes, &e, sizeof(e));
    for (int64_t t = 0; t < n - j; ++t) acc[t] += (out[j + t] = lanes[t]);
  }
  float lanes[4];
  std::memcpy(lanes, &acc, sizeof(acc));
  return lanes_sum<4>(lanes);
}

}  // namespace

double exp_shift_f32(const float* x, float shift, float mul, int64_t n, float* out) {
  switch (active_isa()) {
    case Isa::Avx512: return exp_shift_avx512(x, shift, mul, n, out);
    case Isa::Avx2: return exp_shift_avx2(x, shift, mul, n, out);
    case Isa::Portable: break;
  }
  return exp_shift_portable(x, shift, mul, n, out);
}

}  // namespace condense::kernels
