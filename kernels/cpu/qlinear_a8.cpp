// Integer-activation linears (qlinear.h, a8 and a16 in the VNNI order): x
// rows quantized to int8 (a8) or int16 (a16) once per call, then integer dot
// products against the unsigned codes, exact per block (a scale group; a16
// cuts it every 256 positions). a16 runs the int8 products once per byte
// ("digit") of its codes, except AVX2 int8, which widens the codes to 16 bits.
// One body per ISA handles MR rows of x (AVX-512 up to 8, a16 4; AVX2 and
// portable up to 4) against one 32-row panel, so a panel's codes (and, for
// int4, their unpacking) are loaded once per MR rows; m = 1 is MR = 1 of the
// same body, and every row goes through the same operations whatever MR is
// (batch invariance). The unsigned-code offset (q + 128, q + 8, or the zero
// point) is removed per block in int32 through the block's sum of activation codes.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

// GCC 12 reports the undefined pass-through operand inside its own AVX-512
// conversion intrinsics as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/qdecode.h"
#include "kernels/cpu/qlinear.h"
#include "kernels/cpu/qlinear_a8.h"
#include "kernels/cpu/simd.h"

namespace condense::kernels {
namespace {

// Rows of x in integers: codes at the layout's padded k positions (zeros in
// the padding), the per-block sums of the codes, and each row's scale.
struct A8Rows {
  std::vector<int8_t> q;    // a8: [m][kp] (+8 bytes of slack for the last 4-byte reads); a16: the low digits l
  std::vector<int8_t> qh;   // a16: the high digits h of q16 = 256 h + l, likewise
  std::vector<int16_t> q16; // a16: [m][kp] (+8 likewise)
  // The VNNI bodies' copy: rows in passes of `mr`, each pass [units][rows]
  // 4-byte units (4 int8 or 2 int16 codes; a16 int4: [units][digit][rows], the
  // low digits' unit first), so a step's broadcasts read one line at fixed offsets.
  std::vector<int32_t> qi;
  std::vector<int32_t> sx; // [m][blocks]
  std::vector<float> s;    // [m]
  int64_t kp = 0, blocks = 0;
  // How far ahead of the VNNI body its panel's codes are fetched: at m = 1 a
  // short distance; with several passes over each panel (one per MR rows), the
  // next panel, spread over this one's passes, so that it streams from memory
  // while this one's passes run from the cache.
  int64_t prefetch = 0;
  int64_t passes = 1;       // passes over each panel (> 1: prefetch is the next panel)
  int64_t mr = 4;           // rows per pass
};

// The W8A8 recipe's quantization (model/activation_quant.h fake_quant_rows):
// s = amax / 127, q = nearbyint(x * (1 / s)) clamped to +-127; a zero row is 0.
// a16 the same with 32639 (= 127 * 257: two signed digits). One row's largest |x|, and one run of codes q =
// clamp(nearbyint(x * inv)) with their sum (returned). Per ISA; the vector
// bodies round to nearest even as nearbyint does in the default rounding mode,
// so every body gives the same codes.
template <class T>
constexpr float kQMax = sizeof(T) == 1 ? 127.f : 32639.f;

float amax_portable(const float* x, int64_t n) {
  float a = 0;
  for (int64_t c = 0; c < n; ++c) a = std::fmax(a, std::fabs(x[c]));
  return a;
}
template <class T>
int32_t quant_portable(const float* x, int64_t n, float inv, T* q) {
  int32_t sum = 0;
  for (int64_t c = 0; c < n; ++c) {
    const int v = int(std::fmin(kQMax<T>, std::fmax(-kQMax<T>, std::nearbyint(x[c] * inv))));
    q[c] = T(v);
    sum += v;
  }
  return sum;
}

CONDENSE_AVX512_VNNI float amax_avx512(const float* x, int64_t n) {
  __m512 a = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= n; c += 16) a = _mm512_max_ps(a, _mm512_abs_ps(_mm512_loadu_ps(x + c)));
  alignas(64) float l[16];
  _mm512_store_ps(l, a);
  float m = amax_portable(x + c, n - c);
  for (float v : l) m = std::max(m, v);
  return m;
}
template <class T>
CONDENSE_AVX512_VNNI int32_t quant_avx512(const float* x, int64_t n, float inv, T* q) {
  const __m512 vi = _mm512_set1_ps(inv), hi = _mm512_set1_ps(kQMax<T>), lo = _mm512_set1_ps(-kQMax<T>);
  __m512i sum = _mm512_setzero_si512();
  int64_t c = 0;
  for (; c + 16 <= n; c += 16) {
    const __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_loadu_ps(x + c), vi), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512i v = _mm512_cvtps_epi32(_mm512_min_ps(hi, _mm512_max_ps(lo, r)));
    if constexpr (sizeof(T) == 1) _mm_storeu_si128(reinterpret_cast<__m128i*>(q + c), _mm512_cvtepi32_epi8(v));
    else _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + c), _mm512_cvtepi32_epi16(v));
    sum = _mm512_add_epi32(sum, v);
  }
  alignas(64) int32_t l[16];
  _mm512_store_si512(l, sum);
  int32_t total = quant_portable(x + c, n - c, inv, q + c);
  for (int32_t v : l) total += v;
  return total;
}

CONDENSE_AVX2 float amax_avx2(const float* x, int64_t n) {
  const __m256 mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 a = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 8 <= n; c += 8) a = _mm256_max_ps(a, _mm256_and_ps(_mm256_loadu_ps(x + c), mask));
  alignas(32) float l[8];
  _mm256_store_ps(l, a);
  float m = amax_portable(x + c, n - c);
  for (float v : l) m = std::max(m, v);
  return m;
}
template <class T>
CONDENSE_AVX2 int32_t quant_avx2(const float* x, int64_t n, float inv, T* q) {
  const __m256 vi = _mm256_set1_ps(inv), hi = _mm256_set1_ps(kQMax<T>), lo = _mm256_set1_ps(-kQMax<T>);
  __m256i sum = _mm256_setzero_si256();
  int64_t c = 0;
  for (; c + 8 <= n; c += 8) {
    const __m256 r = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + c), vi), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256i v = _mm256_cvtps_epi32(_mm256_min_ps(hi, _mm256_max_ps(lo, r)));
    alignas(32) int32_t l[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(l), v);
    for (int j = 0; j < 8; ++j) q[c + j] = T(l[j]);
    sum = _mm256_add_epi32(sum, v);
  }
  alignas(32) int32_t s[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(s), sum);
  int32_t total = quant_portable(x + c, n - c, inv, q + c);
  for (int32_t v : s) total += v;
  return total;
}

template <class T>
void quantize_rows_as(const float* x, int64_t m, int64_t ldx, const QLayout& L, A8Rows& out, std::vector<T>& codes) {
  const int64_t K = L.k, glen = L.group_len(), span = L.a8_group_span(), bpg = L.blocks_per_group();
  const int64_t blen = L.a16 ? QLayout::kA16Block : glen;
  out.kp = L.a8_kp();
  out.blocks = L.sum_blocks();
  codes.assign(size_t(m * out.kp + 8), 0);
  out.sx.assign(size_t(m * out.blocks), 0);
  out.s.assign(size_t(m), 0.f);
  const Isa isa = active_isa();
  const bool v512 = isa == Isa::Avx512 && avx512_vnni_supported();
  auto amax_of = v512 ? amax_avx512 : isa != Isa::Portable ? amax_avx2 : amax_portable;
  auto quant = v512 ? quant_avx512<T> : isa != Isa::Portable ? quant_avx2<T> : quant_portable<T>;
  for (int64_t r = 0; r < m; ++r) {
    const float* xr = x + r * ldx;
    const float amax = amax_of(xr, K);
    if (amax == 0) continue;
    const float s = amax / kQMax<T>, inv = 1.f / s;
    out.s[size_t(r)] = s;
    T* q = codes.data() + r * out.kp;
    int32_t* sx = out.sx.data() + r * out.blocks;
    for (int64_t g = 0; g < L.groups(); ++g) {
      const int64_t len = std::min(glen, K - g * glen);
      for (int64_t b = 0; b * blen < len; ++b) {
        sx[g * bpg + b] = quant(xr + g * glen + b * blen, std::min(blen, len - b * blen), inv, q + g * span + b * blen);
      }
    }
  }
}

void quantize_rows(const float* x, int64_t m, int64_t ldx, const QLayout& L, A8Rows& out) {
  if (!L.a16) return quantize_rows_as(x, m, ldx, L, out, out.q);
  quantize_rows_as(x, m, ldx, L, out, out.q16);
  // The digits, for the bodies that read them (VNNI, AVX2 int4); AVX2 int8 and
  // portable multiply q16 itself.
  const Isa isa = active_isa();
  const bool vnni = isa == Isa::Avx512 && avx512_vnni_supported();
  if (!vnni && (isa == Isa::Portable || L.code != WCode::I4)) return;
  // q = 256 h + l with l the signed low byte: |h| <= 127 as |q| <= 32639.
  out.q.resize(out.q16.size());
  out.qh.resize(out.q16.size());
  for (size_t i = 0; i < out.q16.size(); ++i) {
    const int v = out.q16[i], l = int8_t(uint8_t(v & 255));
    out.q[i] = int8_t(l);
    out.qh[i] = int8_t((v - l) / 256);
  }
}

int32_t load32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

int32_t code_offset(const QLayout& L) { return L.code == WCode::I4 ? 8 : 128; }

void zero_codes(const QMatrix& w, int64_t p, int64_t g, uint8_t* fill);

constexpr int64_t kPrefetchBytes = 4096;  // how far ahead of the kernel a panel's codes are prefetched
constexpr auto kHint = _MM_HINT_T1;  // auto: an enum in GCC's headers, an int in clang's;  // next panel into L2: T0 evicted this panel's lines between passes (m = 16: 175-186 vs 159-160 us)

// ----------------------------------------------------------- AVX-512 VNNI ---

// A group's integer sums into the float accumulators: the unsigned-code offset
// removed through the group's activation-code sums, then the group's scales.
// The float accumulators live in memory (touched once per group), leaving the
// 32 registers to the integer sums of 8 rows. (GCC 12 still copies the sums
// between registers at each step of the 8-row loop: ~17 moves per 16 vpdpbusd,
// which Zen 4 mostly eliminates at rename; the kernel reaches ~80% of the VNNI
// peak at m = 16 from memory.)
template <int MR, bool Asym>
CONDENSE_AVX512_VNNI inline void group_end_vnni(const QMatrix& w, int64_t p, int64_t g, int64_t blk, const A8Rows& xr, int64_t r0,
                                                const __m512i (&a)[MR][2], float (&f)[MR][32]) {
  __m512 s0, s1;
  qdec::scales512(w, p, g, s0, s1);
  __m512i z0 = _mm512_setzero_si512(), z1 = z0;
  if constexpr (Asym) qdec::zeros512(w, p, g, z0, z1);
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    const int32_t sxs = xr.sx[size_t((r0 + r) * xr.blocks + blk)];
    const __m512i sx = _mm512_set1_epi32(sxs);
    const __m512i c0 = Asym ? _mm512_mullo_epi32(z0, sx) : _mm512_set1_epi32(code_offset(w.layout) * sxs);
    const __m512i c1 = Asym ? _mm512_mullo_epi32(z1, sx) : c0;
    _mm512_store_ps(f[r], _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(a[r][0], c0)), s0, _mm512_load_ps(f[r])));
    _mm512_store_ps(f[r] + 16, _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(a[r][1], c1)), s1, _mm512_load_ps(f[r] + 16)));
  }
}

// One int8 step of MR rows: the panel's two 64-byte halves against each row's
// four activation codes (xs: the pass's interleaved codes of this step).
template <int MR>
CONDENSE_AVX512_VNNI inline void step_i8_vnni(__m512i (&a)[MR][2], __m512i v0, __m512i v1, const int32_t* xs) {
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    const __m512i xb = _mm512_set1_epi32(xs[r]);
    a[r][0] = _mm512_dpbusd_epi32(a[r][0], v0, xb);
    a[r][1] = _mm512_dpbusd_epi32(a[r][1], v1, xb);
  }
}

template <int MR>
CONDENSE_AVX512_VNNI inline void store_vnni(const QMatrix& w, int64_t p, const A8Rows& xr, int64_t r0, const float (&f)[MR][32],
                                            float* y, int64_t ldy) {
  const int valid = int(std::min<int64_t>(32, w.layout.n - p * 32));
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    const __m512 s = _mm512_set1_ps(xr.s[size_t(r0 + r)]);
    float* yr = y + (r0 + r) * ldy + p * 32;
    _mm512_mask_storeu_ps(yr, lane_mask(valid), _mm512_mul_ps(_mm512_load_ps(f[r]), s));
    _mm512_mask_storeu_ps(yr + 16, lane_mask(valid - 16), _mm512_mul_ps(_mm512_load_ps(f[r] + 16), s));
  }
}

// One a16 step of MR rows: the a8 step once per digit of the activation
// codes, the low digits' sums into a[r][0..1], the high digits' into
// a[r][2..3]. xs: [unit][digit][rows]; int4 reads units pos/4 (low nibbles)
// and pos/4 + 1 (high nibbles), int8 unit pos/4.
template <int MR, bool I4>
CONDENSE_AVX512_VNNI inline void step_digits_vnni(__m512i (&a)[MR][4], __m512i v0, __m512i v1, const int32_t* xs) {
  if constexpr (I4) {
    const __m512i nib = _mm512_set1_epi8(0x0f);
    const __m512i l0 = _mm512_and_si512(v0, nib), h0 = _mm512_and_si512(_mm512_srli_epi16(v0, 4), nib);
    const __m512i l1 = _mm512_and_si512(v1, nib), h1 = _mm512_and_si512(_mm512_srli_epi16(v1, 4), nib);
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 2
      for (int d = 0; d < 2; ++d) {
        const __m512i xl = _mm512_set1_epi32(xs[d * MR + r]), xh = _mm512_set1_epi32(xs[(2 + d) * MR + r]);
        a[r][2 * d] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(a[r][2 * d], l0, xl), h0, xh);
        a[r][2 * d + 1] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(a[r][2 * d + 1], l1, xl), h1, xh);
      }
    }
  } else {
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 2
      for (int d = 0; d < 2; ++d) {
        const __m512i xb = _mm512_set1_epi32(xs[d * MR + r]);
        a[r][2 * d] = _mm512_dpbusd_epi32(a[r][2 * d], v0, xb);
        a[r][2 * d + 1] = _mm512_dpbusd_epi32(a[r][2 * d + 1], v1, xb);
      }
    }
  }
}

// A row's integer sums per panel half: a[r][h] (+ 256 a[r][2 + h], the high digits').
template <int MR, int NA>
CONDENSE_AVX512_VNNI inline void block_sum(const __m512i (&a)[MR][NA], __m512i (&out)[MR][2]) {
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) out[r][h] = NA == 2 ? a[r][h] : _mm512_add_epi32(a[r][h], _mm512_slli_epi32(a[r][NA - 2 + h], 8));
  }
}

// One panel x MR rows of x, a8 or (A16) a16. (Two panels in flight at m = 1,
// two streams from memory, measured 20-30% slower on Zen 4.)
template <int MR, bool I4, bool Asym, bool NextPanel, bool A16>
CONDENSE_AVX512_VNNI void body_vnni(const QMatrix& w, int64_t p, const uint8_t* pc, const A8Rows& xr, int64_t r0, float* y, int64_t ldy) {
  const QLayout& L = w.layout;
  const int64_t K = L.k, G = L.groups(), glen = L.group_len(), span = L.a8_group_span(), unit = L.a8_unit();
  const int64_t bpg = L.blocks_per_group(), bsteps = A16 ? QLayout::kA16Block / unit : (glen + unit - 1) / unit;
  const int64_t units_per_row = A16 ? xr.kp / 2 : xr.kp / 4;  // 4-byte units (a16: both digits)
  constexpr int NA = A16 ? 4 : 2;
  const uint8_t* c = pc;
  const int32_t* xi = xr.qi.data() + r0 * units_per_row;
  // m <= MR: two lines per step, xr.prefetch ahead; m > MR: the next panel's
  // lines spread evenly over this panel's passes (a burst in the first pass
  // alone overflows the misses a core keeps in flight).
  const uint8_t* next = pc + xr.prefetch;
  const uint32_t rate = uint32_t((2 << 16) / xr.passes);
  uint32_t acc = uint32_t(r0 / xr.mr * (xr.kp / unit)) * rate;
  const __m512i nib = _mm512_set1_epi8(0x0f);
  alignas(64) float f[MR][32] = {};
  for (int64_t g = 0; g < G; ++g) {
    const int64_t steps = (std::min(glen, K - g * glen) + unit - 1) / unit;
    for (int64_t b = 0, st = 0; st < steps; ++b) {
      const int64_t send = std::min(steps, st + bsteps);
      __m512i a[MR][NA];
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
        for (int q = 0; q < NA; ++q) a[r][q] = _mm512_setzero_si512();
      for (; st < send; ++st, c += 128) {
        const int64_t pos = g * span + st * unit;
        if constexpr (NextPanel) {
          // At most one line per step (two passes or more): one prefetch, no branch.
          _mm_prefetch(reinterpret_cast<const char*>(next + 64 * (acc >> 16)), kHint);
          acc += rate;
        } else {  // m = 1 streams: into L1 (T1 measured 10-20% slower at m = 1)
          _mm_prefetch(reinterpret_cast<const char*>(c + xr.prefetch), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(c + xr.prefetch + 64), _MM_HINT_T0);
        }
        const __m512i v0 = _mm512_loadu_si512(c), v1 = _mm512_loadu_si512(c + 64);
        if constexpr (A16) {
          step_digits_vnni<MR, I4>(a, v0, v1, xi + (pos / 4) * 2 * MR);
        } else if constexpr (I4) {
          const __m512i l0 = _mm512_and_si512(v0, nib), h0 = _mm512_and_si512(_mm512_srli_epi16(v0, 4), nib);
          const __m512i l1 = _mm512_and_si512(v1, nib), h1 = _mm512_and_si512(_mm512_srli_epi16(v1, 4), nib);
#pragma GCC unroll 8
          for (int r = 0; r < MR; ++r) {
            const __m512i xl = _mm512_set1_epi32(xi[(pos / 4) * MR + r]), xh = _mm512_set1_epi32(xi[(pos / 4 + 1) * MR + r]);
            a[r][0] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(a[r][0], l0, xl), h0, xh);
            a[r][1] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(a[r][1], l1, xl), h1, xh);
          }
        } else {
          step_i8_vnni<MR>(a, v0, v1, xi + (pos / 4) * MR);
        }
      }
      __m512i sums[MR][2];
      block_sum<MR, NA>(a, sums);
      group_end_vnni<MR, Asym>(w, p, g, g * bpg + b, xr, r0, sums, f);
    }
  }
  store_vnni<MR>(w, p, xr, r0, f, y, ldy);
}

// Sparse int8 (qlinear.h): each 64-byte half of a step is expanded from the
// kept codes with vpexpandb straight into the register the dense body loads,
// the pruned bytes taking the code of 0 from `fill`, so the sums are the dense
// body's. One pass over a panel's kept codes per MR rows.
template <int MR, bool Asym>
CONDENSE_AVX512_VNNI_VBMI2 void body_vnni_sparse(const QMatrix& w, int64_t p, const uint8_t*, const A8Rows& xr, int64_t r0, float* y,
                                                 int64_t ldy) {
  const QLayout& L = w.layout;
  const int64_t K = L.k, G = L.groups(), glen = L.group_len(), span = L.a8_group_span();
  const int64_t steps_all = xr.kp / 4;
  const uint8_t* c = w.codes + w.panel_start[p];
  const int32_t* xi = xr.qi.data() + r0 * (xr.kp / 4);
  const uint32_t* mk = w.masks + p * steps_all * 4;
  // At m > MR the next panel is fetched while this one's passes run (as dense).
  const int64_t ahead = xr.passes == 1 ? kPrefetchBytes : p + 1 < L.panels() ? w.panel_start[p + 1] - w.panel_start[p] : 0;
  __m512i fill0 = _mm512_set1_epi8(char(0x80)), fill1 = fill0;
  alignas(64) float f[MR][32] = {};
  for (int64_t g = 0; g < G; ++g) {
    const int64_t steps = (std::min(glen, K - g * glen) + 3) / 4;
    if constexpr (Asym) {
      alignas(64) uint8_t z[128];
      zero_codes(w, p, g, z);
      fill0 = _mm512_load_si512(z);
      fill1 = _mm512_load_si512(z + 64);
    }
    __m512i a[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) a[r][0] = a[r][1] = _mm512_setzero_si512();
    for (int64_t st = 0; st < steps; ++st, mk += 4) {
      const int64_t pos = g * span + st * 4;
      _mm_prefetch(reinterpret_cast<const char*>(c + ahead), _MM_HINT_T0);
      uint64_t m0, m1;
      std::memcpy(&m0, mk, 8);
      std::memcpy(&m1, mk + 2, 8);
      const __m512i v0 = _mm512_mask_expand_epi8(fill0, m0, _mm512_loadu_si512(c));
      c += std::popcount(m0);
      const __m512i v1 = _mm512_mask_expand_epi8(fill1, m1, _mm512_loadu_si512(c));
      c += std::popcount(m1);
      step_i8_vnni<MR>(a, v0, v1, xi + (pos / 4) * MR);
    }
    group_end_vnni<MR, Asym>(w, p, g, g, xr, r0, a, f);
  }
  store_vnni<MR>(w, p, xr, r0, f, y, ldy);
}

// ------------------------------------------------------------------- AVX2 ---
// vpmaddubsw multiplies unsigned by signed bytes into saturating int16 pairs:
// int4 codes (<= 15) never saturate; int8 codes are split into nibbles, the
// high one weighted by 16 in the vpmaddwd that widens to int32. Half a panel
// (16 rows, two ymm) at a time keeps MR x 2 accumulators in the 16 registers.

// a16 int8: vpmaddwd on the codes widened to 16 bits (vpmovzxbw: 4 rows x 4
// positions per ymm) against the row's 4 activation codes (a 64-bit
// broadcast), two lanes per row (a2_count = 4 accumulators) that pair_sums adds.
// a16 int4: the a8 int4 step per digit, the high digit's int16 sums weighted
// by 256 in the vpmaddwd that widens them.
constexpr int a2_count(bool i4, bool a16) { return a16 && !i4 ? 4 : 2; }  // a function: clang 14 misparses a variable template in an array bound

template <int MR, bool I4, bool A16>
CONDENSE_AVX2 inline void step_avx2(__m256i (&a)[MR][a2_count(I4, A16)], const uint8_t* c, int h, const A8Rows& xr, int64_t r0, int64_t pos) {
  const __m256i nib = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1), sixteen = _mm256_set1_epi16(16);
  if constexpr (A16 && !I4) {
    __m256i v[4];  // rows 4e..4e+3 of the half
#pragma GCC unroll 4
    for (int e = 0; e < 4; ++e) v[e] = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + 64 * h + 16 * e)));
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      int64_t q4;
      std::memcpy(&q4, xr.q16.data() + (r0 + r) * xr.kp + pos, 8);
      const __m256i xb = _mm256_set1_epi64x(q4);
#pragma GCC unroll 4
      for (int e = 0; e < 4; ++e) a[r][e] = _mm256_add_epi32(a[r][e], _mm256_madd_epi16(v[e], xb));
    }
  } else {
    const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 64 * h));
    const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 64 * h + 32));
    const __m256i l0 = _mm256_and_si256(v0, nib), h0 = _mm256_and_si256(_mm256_srli_epi16(v0, 4), nib);
    const __m256i l1 = _mm256_and_si256(v1, nib), h1 = _mm256_and_si256(_mm256_srli_epi16(v1, 4), nib);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const int8_t* q = xr.q.data() + (r0 + r) * xr.kp + pos;
      if constexpr (I4) {
        // int16 pair sums of one digit: <= 4 * 15 * 127, no saturation.
        auto digit = [&](const int8_t* d, __m256i& p0, __m256i& p1) CONDENSE_AVX2 {
          const __m256i xl = _mm256_set1_epi32(load32(d)), xh = _mm256_set1_epi32(load32(d + 4));
          p0 = _mm256_add_epi16(_mm256_maddubs_epi16(l0, xl), _mm256_maddubs_epi16(h0, xh));
          p1 = _mm256_add_epi16(_mm256_maddubs_epi16(l1, xl), _mm256_maddubs_epi16(h1, xh));
        };
        __m256i p0, p1;
        digit(q, p0, p1);
        a[r][0] = _mm256_add_epi32(a[r][0], _mm256_madd_epi16(p0, ones));
        a[r][1] = _mm256_add_epi32(a[r][1], _mm256_madd_epi16(p1, ones));
        if constexpr (A16) {
          const __m256i w256 = _mm256_set1_epi16(256);
          digit(xr.qh.data() + (r0 + r) * xr.kp + pos, p0, p1);
          a[r][0] = _mm256_add_epi32(a[r][0], _mm256_madd_epi16(p0, w256));
          a[r][1] = _mm256_add_epi32(a[r][1], _mm256_madd_epi16(p1, w256));
        }
      } else {
        const __m256i xb = _mm256_set1_epi32(load32(q));
        a[r][0] = _mm256_add_epi32(a[r][0], _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(l0, xb), ones),
                                                             _mm256_madd_epi16(_mm256_maddubs_epi16(h0, xb), sixteen)));
        a[r][1] = _mm256_add_epi32(a[r][1], _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(l1, xb), ones),
                                                             _mm256_madd_epi16(_mm256_maddubs_epi16(h1, xb), sixteen)));
      }
    }
  }
}

// a2_count = 4: each row's two lanes added, rows back in order (8 per ymm).
template <int MR, bool I4, bool A16>
CONDENSE_AVX2 inline void pair_sums(const __m256i (&a)[MR][a2_count(I4, A16)], __m256i (&out)[MR][2]) {
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    if constexpr (a2_count(I4, A16) == 2) {
      out[r][0] = a[r][0];
      out[r][1] = a[r][1];
    } else {
      out[r][0] = _mm256_permute4x64_epi64(_mm256_hadd_epi32(a[r][0], a[r][1]), 0xD8);
      out[r][1] = _mm256_permute4x64_epi64(_mm256_hadd_epi32(a[r][2], a[r][3]), 0xD8);
    }
  }
}

template <int MR, bool I4, bool Asym, bool A16>
CONDENSE_AVX2 void body_avx2(const QMatrix& w, int64_t p, const uint8_t* pc, const A8Rows& xr, int64_t r0, float* y, int64_t ldy) {
  const QLayout& L = w.layout;
  const int64_t K = L.k, G = L.groups(), glen = L.group_len(), span = L.a8_group_span(), unit = L.a8_unit();
  const int64_t bpg = L.blocks_per_group(), bsteps = A16 ? QLayout::kA16Block / unit : (glen + unit - 1) / unit;
  const int valid = int(std::min<int64_t>(32, L.n - p * 32));
  for (int h = 0; h < 2 && valid > 16 * h; ++h) {
    const uint8_t* c = pc;
    __m256 f[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) f[r][0] = f[r][1] = _mm256_setzero_ps();
    for (int64_t g = 0; g < G; ++g) {
      const int64_t steps = (std::min(glen, K - g * glen) + unit - 1) / unit;
      qdec::ScaleZero256 sz;
      sz.load_avx2(w, p, g, Asym, 1.f);
      for (int64_t b = 0, st = 0; st < steps; ++b) {
        const int64_t send = std::min(steps, st + bsteps);
        constexpr int lanes = a2_count(I4, A16);
        __m256i acc[MR][lanes], a[MR][2];
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
          for (int q = 0; q < lanes; ++q) acc[r][q] = _mm256_setzero_si256();
        for (; st < send; ++st, c += 128) step_avx2<MR, I4, A16>(acc, c, h, xr, r0, g * span + st * unit);
        pair_sums<MR, I4, A16>(acc, a);
        const __m256i off = _mm256_set1_epi32(code_offset(L));
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
          const __m256i sx = _mm256_set1_epi32(xr.sx[size_t((r0 + r) * xr.blocks + g * bpg + b)]);
#pragma GCC unroll 2
          for (int q = 0; q < 2; ++q) {
            const __m256i z = Asym ? _mm256_load_si256(reinterpret_cast<const __m256i*>(sz.z + 16 * h + 8 * q)) : off;
            const __m256 t = _mm256_cvtepi32_ps(_mm256_sub_epi32(a[r][q], _mm256_mullo_epi32(z, sx)));
            f[r][q] = _mm256_fmadd_ps(t, _mm256_load_ps(sz.s + 16 * h + 8 * q), f[r][q]);
          }
        }
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m256 s = _mm256_set1_ps(xr.s[size_t(r0 + r)]);
      float* yr = y + (r0 + r) * ldy + p * 32 + 16 * h;
#pragma GCC unroll 2
      for (int q = 0; q < 2; ++q) {
        const int v = valid - 16 * h - 8 * q;
        const __m256 out = _mm256_mul_ps(f[r][q], s);
        if (v >= 8) _mm256_storeu_ps(yr + 8 * q, out);
        else if (v > 0) _mm256_maskstore_ps(yr + 8 * q, lane_mask8(v), out);
      }
    }
  }
}

// --------------------------------------------------------------- portable ---

template <int MR, bool I4, bool Asym, bool A16>
void body_portable(const QMatrix& w, int64_t p, const uint8_t* pc, const A8Rows& xr, int64_t r0, float* y, int64_t ldy) {
  const QLayout& L = w.layout;
  const int64_t K = L.k, G = L.groups(), glen = L.group_len(), span = L.a8_group_span(), unit = L.a8_unit();
  const int64_t bpg = L.blocks_per_group(), bsteps = A16 ? QLayout::kA16Block / unit : (glen + unit - 1) / unit;
  // Row j's code at position `in` of a step (unsigned, as stored).
  auto code = [&](const uint8_t* c, int j, int64_t in) -> int32_t {
    if constexpr (I4) {
      return (c[j * 4 + in % 4] >> (in < 4 ? 0 : 4)) & 15;
    } else {
      return c[j * 4 + in];
    }
  };
  const uint8_t* c = pc;
  float f[MR][32] = {};
  for (int64_t g = 0; g < G; ++g) {
    const int64_t steps = (std::min(glen, K - g * glen) + unit - 1) / unit;
    qdec::ScaleZero256 sz;
    sz.load(w, p, g, Asym, 1.f);
    for (int64_t b = 0, st = 0; st < steps; ++b) {
      const int64_t send = std::min(steps, st + bsteps);
      int32_t a[MR][32] = {};
      for (; st < send; ++st, c += 128) {
        const int64_t pos = g * span + st * unit;
        for (int r = 0; r < MR; ++r) {
          for (int j = 0; j < 32; ++j) {
            int32_t acc = 0;
            for (int64_t in = 0; in < unit; ++in) {
              const int32_t q = A16 ? xr.q16[size_t((r0 + r) * xr.kp + pos + in)] : xr.q[size_t((r0 + r) * xr.kp + pos + in)];
              acc += code(c, j, in) * q;
            }
            a[r][j] += acc;
          }
        }
      }
      for (int r = 0; r < MR; ++r) {
        const int32_t sx = xr.sx[size_t((r0 + r) * xr.blocks + g * bpg + b)];
        for (int j = 0; j < 32; ++j) {
          const int32_t z = Asym ? sz.z[j] : code_offset(L);
          f[r][j] = f[r][j] + float(a[r][j] - z * sx) * sz.s[j];
        }
      }
    }
  }
  const int valid = int(std::min<int64_t>(32, L.n - p * 32));
  for (int r = 0; r < MR; ++r) {
    for (int j = 0; j < valid; ++j) y[(r0 + r) * ldy + p * 32 + j] = f[r][j] * xr.s[size_t(r0 + r)];
  }
}

// ------------------------------------------------------ sparse expansion ---
// A sparse (int8) panel in the dense VNNI order: kp * 32 bytes, pruned bytes
// holding the code of 0 (128; asymmetric: the row's zero point of the step's
// group), so the dense bodies give the dense matrix's result.

void zero_codes(const QMatrix& w, int64_t p, int64_t g, uint8_t* fill) {
  const QLayout& L = w.layout;
  for (int b = 0; b < 128; ++b) fill[b] = !L.asym ? 128 : L.per_tensor ? w.zeros[0] : w.zeros[(p * L.groups() + g) * 32 + b / 4];
}

// AVX2: 8 bytes at a time through a shuffle table. Entry m (8 bits of mask)
// sends kept byte i to its lane from the 8 kept codes and each pruned lane j
// to byte 8 + j, where the fill's bytes sit beside them.
struct ExpandTable {
  alignas(64) uint8_t idx[256][8];
  ExpandTable() {
    for (int m = 0; m < 256; ++m)
      for (int j = 0, k = 0; j < 8; ++j) idx[m][j] = uint8_t((m >> j) & 1 ? k++ : 8 + j);
  }
};

CONDENSE_AVX2 void expand_avx2(const QMatrix& w, int64_t p, uint8_t* out) {
  static const ExpandTable table;
  const QLayout& L = w.layout;
  const int64_t steps = L.a8_kp() / 4, span = L.a8_group_span();
  const uint8_t* src = w.codes + w.panel_start[p];
  alignas(64) uint8_t fill[128];
  for (int64_t u = 0, g = -1; u < steps; ++u) {
    if (u * 4 / span != g) zero_codes(w, p, g = u * 4 / span, fill);
    const uint32_t* m = w.masks + (p * steps + u) * 4;
    for (int q = 0; q < 16; ++q) {
      const unsigned mb = (m[q / 4] >> (8 * (q % 4))) & 255;
      const __m128i v = _mm_unpacklo_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src)),
                                           _mm_loadl_epi64(reinterpret_cast<const __m128i*>(fill + 8 * q)));
      const __m128i r = _mm_shuffle_epi8(v, _mm_loadl_epi64(reinterpret_cast<const __m128i*>(table.idx[mb])));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(out + u * 128 + 8 * q), r);
      src += std::popcount(mb);
    }
  }
}

// AVX-512 VBMI2, for many rows (prefill): a panel expanded once into the
// buffer, as AVX2 does, instead of once per pass of 8 rows in registers.
CONDENSE_AVX512_VNNI_VBMI2 void expand_vbmi2(const QMatrix& w, int64_t p, uint8_t* out) {
  const QLayout& L = w.layout;
  const int64_t steps = L.a8_kp() / 4, span = L.a8_group_span();
  const uint8_t* src = w.codes + w.panel_start[p];
  alignas(64) uint8_t fill[128];
  __m512i f0 = _mm512_setzero_si512(), f1 = f0;
  for (int64_t u = 0, g = -1; u < steps; ++u) {
    if (u * 4 / span != g) {
      zero_codes(w, p, g = u * 4 / span, fill);
      f0 = _mm512_load_si512(fill);
      f1 = _mm512_load_si512(fill + 64);
    }
    uint64_t m0, m1;
    std::memcpy(&m0, w.masks + (p * steps + u) * 4, 8);
    std::memcpy(&m1, w.masks + (p * steps + u) * 4 + 2, 8);
    _mm512_storeu_si512(out + u * 128, _mm512_mask_expand_epi8(f0, m0, _mm512_loadu_si512(src)));
    src += std::popcount(m0);
    _mm512_storeu_si512(out + u * 128 + 64, _mm512_mask_expand_epi8(f1, m1, _mm512_loadu_si512(src)));
    src += std::popcount(m1);
  }
}

void expand_portable(const QMatrix& w, int64_t p, uint8_t* out) {
  const QLayout& L = w.layout;
  const int64_t steps = L.a8_kp() / 4, span = L.a8_group_span();
  const uint8_t* src = w.codes + w.panel_start[p];
  uint8_t fill[128];
  for (int64_t u = 0, g = -1; u < steps; ++u) {
    if (u * 4 / span != g) zero_codes(w, p, g = u * 4 / span, fill);
    const uint32_t* m = w.masks + (p * steps + u) * 4;
    for (int b = 0; b < 128; ++b) out[u * 128 + b] = (m[b / 32] >> (b % 32)) & 1 ? *src++ : fill[b];
  }
}

// ------------------------------------------------------------ the tables ---

using Body = void (*)(const QMatrix&, int64_t, const uint8_t*, const A8Rows&, int64_t, float*, int64_t);
constexpr int kMaxMR = 8;

// Bodies for MR = 1..max rows of x (one pass over a panel each).
struct Bodies {
  std::array<Body, kMaxMR> mr{};
  int max = 0;
  bool interleaved = false;  // the bodies read A8Rows::qi (VNNI)
};

// AVX2 keeps MR x 4 accumulators in 16 registers only up to MR = 2: three
// and four rows run as 2 + 1 and 2 + 2 (each row's operations unchanged).
template <int MR, bool I4, bool Asym, bool A16>
CONDENSE_AVX2 void body_avx2_split(const QMatrix& w, int64_t p, const uint8_t* pc, const A8Rows& xr, int64_t r0, float* y, int64_t ldy) {
  if constexpr (MR <= 2) {
    body_avx2<MR, I4, Asym, A16>(w, p, pc, xr, r0, y, ldy);
  } else {
    body_avx2<2, I4, Asym, A16>(w, p, pc, xr, r0, y, ldy);
    body_avx2<MR - 2, I4, Asym, A16>(w, p, pc, xr, r0 + 2, y, ldy);
  }
}

// AVX-512 (32 registers): up to 8 rows x 2 accumulators per pass; a16 (4
// accumulators per row: two digits) up to 4 rows.
template <bool I4, bool Asym, bool NextPanel, bool A16>
Bodies vnni_bodies() {
  if constexpr (A16) {
    return {{&body_vnni<1, I4, Asym, NextPanel, A16>, &body_vnni<2, I4, Asym, NextPanel, A16>, &body_vnni<3, I4, Asym, NextPanel, A16>,
             &body_vnni<4, I4, Asym, NextPanel, A16>},
            4,
            true};
  } else {
    return {{&body_vnni<1, I4, Asym, NextPanel, A16>, &body_vnni<2, I4, Asym, NextPanel, A16>, &body_vnni<3, I4, Asym, NextPanel, A16>,
             &body_vnni<4, I4, Asym, NextPanel, A16>, &body_vnni<5, I4, Asym, NextPanel, A16>, &body_vnni<6, I4, Asym, NextPanel, A16>,
             &body_vnni<7, I4, Asym, NextPanel, A16>, &body_vnni<8, I4, Asym, NextPanel, A16>},
            8,
            true};
  }
}
template <bool Asym>
Bodies sparse_vnni_bodies() {
  return {{&body_vnni_sparse<1, Asym>, &body_vnni_sparse<2, Asym>, &body_vnni_sparse<3, Asym>, &body_vnni_sparse<4, Asym>,
           &body_vnni_sparse<5, Asym>, &body_vnni_sparse<6, Asym>, &body_vnni_sparse<7, Asym>, &body_vnni_sparse<8, Asym>},
          8,
          true};
}
template <bool I4, bool Asym, bool A16>
Bodies avx2_bodies() {
  return {{&body_avx2_split<1, I4, Asym, A16>, &body_avx2_split<2, I4, Asym, A16>, &body_avx2_split<3, I4, Asym, A16>,
           &body_avx2_split<4, I4, Asym, A16>},
          4};
}
template <bool I4, bool Asym, bool A16>
Bodies portable_bodies() {
  return {{&body_portable<1, I4, Asym, A16>, &body_portable<2, I4, Asym, A16>, &body_portable<3, I4, Asym, A16>,
           &body_portable<4, I4, Asym, A16>},
          4};
}

// The four (int4, asym) variants of each family, for a8 or a16.
template <bool A16, bool NextPanel>
std::array<Bodies, 4> vnni_family() {
  return {vnni_bodies<false, false, NextPanel, A16>(), vnni_bodies<false, true, NextPanel, A16>(), vnni_bodies<true, false, NextPanel, A16>(),
          vnni_bodies<true, true, NextPanel, A16>()};
}
template <bool A16>
std::array<Bodies, 4> avx2_family() {
  return {avx2_bodies<false, false, A16>(), avx2_bodies<false, true, A16>(), avx2_bodies<true, false, A16>(), avx2_bodies<true, true, A16>()};
}
template <bool A16>
std::array<Bodies, 4> portable_family() {
  return {portable_bodies<false, false, A16>(), portable_bodies<false, true, A16>(), portable_bodies<true, false, A16>(),
          portable_bodies<true, true, A16>()};
}

// AVX-512 CPUs without VNNI run AVX2's; sparse int8 expands in registers where
// VBMI2 is present.
const Bodies& bodies(const QLayout& L, bool fused_sparse, bool next_panel) {
  static const std::array<Bodies, 4> vnni[2][2] = {{vnni_family<false, false>(), vnni_family<false, true>()},
                                                   {vnni_family<true, false>(), vnni_family<true, true>()}};
  static const Bodies sparse[2] = {sparse_vnni_bodies<false>(), sparse_vnni_bodies<true>()};
  static const std::array<Bodies, 4> avx2[2] = {avx2_family<false>(), avx2_family<true>()};
  static const std::array<Bodies, 4> portable[2] = {portable_family<false>(), portable_family<true>()};
  const int i = (L.code == WCode::I4 ? 2 : 0) + (L.asym ? 1 : 0), a16 = L.a16 ? 1 : 0;
  const Isa isa = active_isa();
  if (fused_sparse) return sparse[L.asym ? 1 : 0];
  if (isa == Isa::Avx512 && avx512_vnni_supported()) return vnni[a16][next_panel ? 1 : 0][size_t(i)];
  if (isa == Isa::Avx512 || isa == Isa::Avx2) return avx2[a16][size_t(i)];
  return portable[a16][size_t(i)];
}

}  // namespace

bool sparse_a8_in_registers() { return active_isa() == Isa::Avx512 && avx512_vnni_supported() && avx512_vbmi2_supported(); }

void linear_a8(const float* x, int64_t m, int64_t ldx, const QMatrix& w, float* y, int64_t ldy) {
  const QLayout& L = w.layout;
  // One buffer per thread that calls (the engine's), reused across calls.
  static thread_local A8Rows xr;
  quantize_rows(x, m, ldx, L, xr);
  // Sparse: AVX-512 (VBMI2) expands in registers for up to two passes of 8 rows
  // (decode and batched decode; at m = 16 a buffer was 5-10% slower); for more
  // rows, and on the other ISAs, each panel is expanded once into an L1-sized
  // buffer in the dense order and the dense bodies run on it.
  const bool in_regs = L.sparse && sparse_a8_in_registers();
  const bool fused = in_regs && m <= 2 * kMaxMR;
  const Bodies& table = bodies(L, fused, m > kMaxMR);
  xr.mr = table.max;
  xr.passes = (m + table.max - 1) / table.max;
  xr.prefetch = xr.passes > 1 ? xr.kp * (L.code == WCode::I4 ? 16 : 32) : kPrefetchBytes;
  if (table.interleaved) {
    // Per pass of mr rows: [unit][rows] 4-byte units of the row codes (a16:
    // [unit][digit][rows], low digit first).
    const bool digits = L.a16;
    const int64_t units = xr.kp / 4, per_row = digits ? 2 * units : units;
    xr.qi.resize(size_t(m * per_row));
    for (int64_t r0 = 0; r0 < m; r0 += table.max) {
      const int64_t mr = std::min<int64_t>(table.max, m - r0);
      int32_t* d = xr.qi.data() + r0 * per_row;
      for (int64_t r = 0; r < mr; ++r) {
        if (digits) {
          const int8_t* lo = xr.q.data() + (r0 + r) * xr.kp;
          const int8_t* hi = xr.qh.data() + (r0 + r) * xr.kp;
          for (int64_t u = 0; u < units; ++u) {
            std::memcpy(&d[(2 * u) * mr + r], lo + 4 * u, 4);
            std::memcpy(&d[(2 * u + 1) * mr + r], hi + 4 * u, 4);
          }
          continue;
        }
        const int8_t* q = xr.q.data() + (r0 + r) * xr.kp;
        for (int64_t u = 0; u < units; ++u) std::memcpy(&d[u * mr + r], q + 4 * u, 4);
      }
    }
  }
  const int64_t np = L.panels();
  const bool par = m == 1 ? L.code_bytes() >= kParallelBytes : m * L.n * L.k >= kParallelMacs;
  const A8Rows& rows = xr;
  const int64_t panel_bytes = xr.kp * (L.code == WCode::I4 ? 16 : 32);
  void (*const expand)(const QMatrix&, int64_t, uint8_t*) = !L.sparse || fused           ? nullptr
                                                             : in_regs                        ? &expand_vbmi2
                                                             : active_isa() != Isa::Portable ? &expand_avx2
                                                                                               : &expand_portable;
#pragma omp parallel for schedule(dynamic) if (par)
  for (int64_t p = 0; p < np; ++p) {
    const uint8_t* pc = w.codes + p * panel_bytes;
    if (expand) {
      static thread_local std::vector<uint8_t> dense;  // this thread's (named inside the loop)
      if (dense.size() < size_t(panel_bytes + 64)) dense.resize(size_t(panel_bytes + 64));
      expand(w, p, dense.data());
      pc = dense.data();
    }
    for (int64_t r0 = 0; r0 < m; r0 += table.max) {
      const int mr = int(std::min<int64_t>(table.max, m - r0));
      table.mr[size_t(mr - 1)](w, p, pc, rows, r0, y, ldy);
    }
  }
}

}  // namespace condense::kernels
