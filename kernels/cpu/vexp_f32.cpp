#include "kernels/cpu/vexp_f32.h"

// GCC 12 flags the _mm512_undefined_ps() placeholders inside the roundscale and
// scalef intrinsics as maybe-uninitialized (a known false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cmath>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/microkernel_f32.h"

namespace condense::kernels {

namespace {

CONDENSE_AVX512 inline __m512 exp512(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.f));  // below: scalef gives 0
  x = _mm512_min_ps(x, _mm512_set1_ps(88.7f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);  // ln2 split: hi has 9 bits, n * hi is exact
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6));
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
  double sum = 0;
  for (float v : lanes) sum += v;
  return sum;
}

}  // namespace

double exp_shift_f32(const float* x, float shift, float mul, int64_t n, float* out) {
  if (active_isa() == Isa::Avx512) return exp_shift_avx512(x, shift, mul, n, out);
  double sum = 0;
  for (int64_t j = 0; j < n; ++j) sum += (out[j] = std::exp((x[j] - shift) * mul));
  return sum;
}

}  // namespace condense::kernels
