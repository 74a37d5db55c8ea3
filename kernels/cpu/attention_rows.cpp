// Scores of a block's 16 keys are 16 dot_f32 reductions side by side: each
// key's 16 partial sums in one vector (AVX2: two), then dot_f32's folding tree
// (lane j += lane j + 8, j + 4, j + 2, j + 1) applied to all keys at once by
// shuffles that pair the halves of two keys per add, which leaves the 16
// scores in one vector in a fixed lane order that one permute undoes. The
// value sums hold a head's output in registers across a block's positions
// (stored between blocks, which rounds nothing). One ISA-free walker runs the
// per-ISA block bodies through a table, blocks outermost.
// Multiplies and adds stay separate (this file is built with
// -ffp-contract=off: GCC would fuse them in target functions) so every ISA
// rounds as the scalar path does.
#include "kernels/cpu/attention_rows.h"

// GCC 12 reports the deliberately undefined pass-through operand inside its
// own AVX-512 shuffle intrinsics (_mm512_undefined_*) as uninitialized.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/simd.h"
#include "kernels/cpu/vexp_f32.h"

namespace condense::kernels {
namespace {

constexpr int kT = 16;     // positions per block
constexpr int kOutRegs = 8;  // output vectors kept in registers per pass over the values

// ---------------------------------------------------------------- AVX-512 ---

// Lanes: [a0..7, b0..7] + [a8..15, b8..15], and so on down the tree.
CONDENSE_AVX512 inline __m512 fold_pair_256(__m512 a, __m512 b) {
  return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
}
CONDENSE_AVX512 inline __m512 fold_pair_128(__m512 a, __m512 b) {
  return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
}
CONDENSE_AVX512 inline __m512 fold_pair_64(__m512 a, __m512 b) {
  return _mm512_add_ps(_mm512_shuffle_ps(a, b, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_ps(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
}
CONDENSE_AVX512 inline __m512 fold_pair_32(__m512 a, __m512 b) {
  return _mm512_add_ps(_mm512_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
}

// dot_f32's folding tree over 16 keys' partial-sum vectors, then the scale:
// the 16 scores in key order.
CONDENSE_AVX512 inline __m512 fold16_avx512(const __m512 (&acc)[kT], float scale) {
  __m512 s[8], u[4], w[2];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) s[i] = fold_pair_256(acc[2 * i], acc[2 * i + 1]);
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) u[i] = fold_pair_128(s[2 * i], s[2 * i + 1]);
#pragma GCC unroll 2
  for (int i = 0; i < 2; ++i) w[i] = fold_pair_64(u[2 * i], u[2 * i + 1]);
  __m512 f = fold_pair_32(w[0], w[1]);  // lane 4L + i holds key 4i + L
  f = _mm512_add_ps(f, _mm512_setzero_ps());  // dot_f32 adds its (empty) tail's +0
  f = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), f);
  return _mm512_mul_ps(f, _mm512_set1_ps(scale));
}

inline void prefetch_row(const uint8_t* p, int64_t bytes) {
  for (int64_t o = 0; o < bytes; o += 64) _mm_prefetch(reinterpret_cast<const char*>(p + o), _MM_HINT_T0);
}

// Sixteen elements [i, i + 16) of a block in its stored dtype, as the f32
// values the cache reads back (kv_paged.h: exact decodes, then fl(s * value)
// for the scaled codes), decoded in registers. E4M3: s is the scale times
// 2^120 (exact while |scale| < 2^8; attention_row_blocks checks), see below.
template <KvCode C>
CONDENSE_AVX512 inline __m512 load16(const uint8_t* base, int64_t i, __m512 s) {
  if constexpr (C == KvCode::F32) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(base) + i);
  } else if constexpr (C == KvCode::F16) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + 2 * i)));
  } else if constexpr (C == KvCode::BF16) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + 2 * i))), 16));
  } else if constexpr (C == KvCode::I8) {
    return _mm512_mul_ps(s, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(base + i)))));
  } else {
    static_assert(C == KvCode::E4M3);
    // The E4M3 fields moved into an f32 (sign to bit 31, exponent and
    // mantissa to bits 20..30: the sign-extended byte shifted by 20, the
    // sign's copies at bits 27..30 masked off) are the value times 2^-120,
    // subnormals included (exact); times s * 2^120 that is fl(scale * value),
    // the real product being the same.
    const __m512i d = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(base + i)));
    const __m512i bits = _mm512_and_si512(_mm512_slli_epi32(d, 20), _mm512_set1_epi32(int(0x87f00000u)));
    return _mm512_mul_ps(s, _mm512_castsi512_ps(bits));
  }
}

// scale * dot_f32(q_h, k_t) for a block's 16 keys in their stored dtype, for
// every query head: head h reads kv head h / group (kv scale ks[g]). C: hd / 16
// when known at compile time (accumulators stay in registers), else 0. Slots past n are read too
// (a block is always whole) and only their lanes, never stored, hold them.
// `next` (or null): the block read after this one, fetched a key's bytes per
// key computed (a burst of a whole block at once stalls on the misses a core
// keeps in flight).
template <KvCode Code, int C>
CONDENSE_AVX512 void score_heads_coded_avx512(const float* q, const uint8_t* k, int n, int hd, float scale, const float* ks, int nh,
                                              int group, int64_t head_bytes, const uint8_t* next, float* scores, int64_t ld) {
  const int nc = C ? C : hd / 16;
  const int64_t row_bytes = head_bytes / kT;
  const __mmask16 keep = lane_mask(n);
  for (int h = 0; h < nh; ++h) {
    const int g = h / group;
    const __m512 vs = _mm512_set1_ps((ks ? ks[g] : 1.f) * (Code == KvCode::E4M3 ? 0x1p120f : 1.f));
    const uint8_t* kg = k + g * head_bytes;
    const float* qh = q + int64_t(h) * hd;
    __m512 acc[kT];
#pragma GCC unroll 16
    for (int t = 0; t < kT; ++t) {
      if (next && h % group == 0) prefetch_row(next + g * head_bytes + t * row_bytes, row_bytes);
      acc[t] = _mm512_setzero_ps();
#pragma GCC unroll 8
      for (int c = 0; c < nc; ++c) acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(_mm512_loadu_ps(qh + 16 * c), load16<Code>(kg, t * hd + 16 * c, vs)));
    }
    _mm512_mask_storeu_ps(scores + h * ld, keep, fold16_avx512(acc, scale));
  }
}

// Adds the n positions of one block (stored dtype) to a head's output o (hd
// floats, vectors [c0, c0 + NR) in registers meanwhile): chains in position
// order, stored between blocks, which rounds nothing.
template <KvCode Code, int NR>
CONDENSE_AVX512 void values_coded_avx512(const float* p, const uint8_t* vb, int n, int hd, int c0, float s, const uint8_t* next,
                                         float* o) {
  const __m512 vs = _mm512_set1_ps(s * (Code == KvCode::E4M3 ? 0x1p120f : 1.f));
  const int64_t row_bytes = int64_t(hd) * kv_code_bytes(Code);
  __m512 acc[NR];
#pragma GCC unroll 8
  for (int i = 0; i < NR; ++i) acc[i] = _mm512_loadu_ps(o + 16 * (c0 + i));
  for (int t = 0; t < n; ++t) {
    if (next) prefetch_row(next + t * row_bytes, row_bytes);
    const __m512 pt = _mm512_set1_ps(p[t]);
#pragma GCC unroll 8
    for (int i = 0; i < NR; ++i) acc[i] = _mm512_add_ps(acc[i], _mm512_mul_ps(pt, load16<Code>(vb, t * hd + 16 * (c0 + i), vs)));
  }
#pragma GCC unroll 8
  for (int i = 0; i < NR; ++i) _mm512_storeu_ps(o + 16 * (c0 + i), acc[i]);
}

// Permute indices of the 16 x 8 -> 8 x 16 transpose in score_block_hd8_avx512.
struct Hd8Transpose {
  alignas(64) int32_t a[2][16], b[2][16], c[2][16];
  constexpr Hd8Transpose() : a(), b(), c() {
    for (int h = 0; h < 2; ++h) {
      for (int p = 0; p < 16; ++p) {
        const int i = p / 4, r = p % 4, d = p / 8, r8 = p % 8;
        a[h][p] = r < 2 ? r * 8 + i + 4 * h : 16 + (r - 2) * 8 + i + 4 * h;        // 4 rows: [dim 4h + i][row]
        b[h][p] = r8 < 4 ? (d + 2 * h) * 4 + r8 : 16 + (d + 2 * h) * 4 + r8 - 4;  // 8 rows: [dim 2h + d][row]
        c[h][p] = p < 8 ? 8 * h + p : 16 + 8 * h + p - 8;                           // 16 rows: dim h
      }
    }
  }
};
constexpr Hd8Transpose kHd8{};

// head_dim 8 (dot_f32's short form: one chain from 0 over the 8 products):
// the block's 16 x 8 keys transposed in registers (three rounds of
// two-source permutes), then the chain over dims with the 16 keys in lanes.
CONDENSE_AVX512 void score_block_hd8_avx512(const float* q, const float* k, int n, int, float scale, float* out) {
  __m512 z[8], a[8], b[8];
  for (int j = 0; j < 8; ++j) z[j] = _mm512_loadu_ps(k + 16 * j);  // keys 2j, 2j + 1
  const __m512i ia0 = _mm512_load_si512(kHd8.a[0]), ia1 = _mm512_load_si512(kHd8.a[1]);
  const __m512i ib0 = _mm512_load_si512(kHd8.b[0]), ib1 = _mm512_load_si512(kHd8.b[1]);
  const __m512i ic0 = _mm512_load_si512(kHd8.c[0]), ic1 = _mm512_load_si512(kHd8.c[1]);
  for (int g = 0; g < 4; ++g) {  // rows 4g..4g+3: dims 0-3 and 4-7
    a[2 * g] = _mm512_permutex2var_ps(z[2 * g], ia0, z[2 * g + 1]);
    a[2 * g + 1] = _mm512_permutex2var_ps(z[2 * g], ia1, z[2 * g + 1]);
  }
  for (int g = 0; g < 2; ++g) {  // rows 8g..8g+7: dim pairs (0,1) (2,3) from the low dims, (4,5) (6,7) from the high
    for (int h = 0; h < 2; ++h) {
      b[4 * g + 2 * h] = _mm512_permutex2var_ps(a[4 * g + h], ib0, a[4 * g + 2 + h]);
      b[4 * g + 2 * h + 1] = _mm512_permutex2var_ps(a[4 * g + h], ib1, a[4 * g + 2 + h]);
    }
  }
  __m512 acc = _mm512_setzero_ps();
  for (int dp = 0; dp < 4; ++dp) {  // dims 2dp, 2dp + 1 over the 16 rows
    acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(q[2 * dp]), _mm512_permutex2var_ps(b[dp], ic0, b[4 + dp])));
    acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(q[2 * dp + 1]), _mm512_permutex2var_ps(b[dp], ic1, b[4 + dp])));
  }
  _mm512_mask_storeu_ps(out, lane_mask(n), _mm512_mul_ps(acc, _mm512_set1_ps(scale)));
}

// ------------------------------------------------------------------- AVX2 ---

// scale * dot_f32(q, k_t) for keys [t0, t0 + 8) of a block holding n (C as
// for score_heads_coded_avx512).
template <int C>
CONDENSE_AVX2 __m256 scores8_avx2(const float* q, const float* k, int t0, int n, int hd, float scale) {
  const int nc = C ? C : hd / 16;
  __m256 a[8];
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) {
    __m256 lo = _mm256_setzero_ps(), hi = lo;
    if (t0 + j < n) {
      const float* kt = k + (t0 + j) * hd;
#pragma GCC unroll 8
      for (int c = 0; c < nc; ++c) {
        lo = _mm256_add_ps(lo, _mm256_mul_ps(_mm256_loadu_ps(q + 16 * c), _mm256_loadu_ps(kt + 16 * c)));
        hi = _mm256_add_ps(hi, _mm256_mul_ps(_mm256_loadu_ps(q + 16 * c + 8), _mm256_loadu_ps(kt + 16 * c + 8)));
      }
    }
    a[j] = _mm256_add_ps(lo, hi);  // lane j += lane j + 8
  }
  __m256 s[4], w[2];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    s[i] = _mm256_add_ps(_mm256_permute2f128_ps(a[2 * i], a[2 * i + 1], 0x20), _mm256_permute2f128_ps(a[2 * i], a[2 * i + 1], 0x31));
  }
#pragma GCC unroll 2
  for (int i = 0; i < 2; ++i) {
    w[i] = _mm256_add_ps(_mm256_shuffle_ps(s[2 * i], s[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm256_shuffle_ps(s[2 * i], s[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  }
  __m256 f = _mm256_add_ps(_mm256_shuffle_ps(w[0], w[1], _MM_SHUFFLE(2, 0, 2, 0)), _mm256_shuffle_ps(w[0], w[1], _MM_SHUFFLE(3, 1, 3, 1)));
  f = _mm256_add_ps(f, _mm256_setzero_ps());  // lane 4L + i holds key 2i + L
  f = _mm256_permutevar8x32_ps(f, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  return _mm256_mul_ps(f, _mm256_set1_ps(scale));
}

// head_dim 8 as score_block_hd8_avx512: 8 keys' rows transposed (the usual
// unpack / shuffle / lane-swap 8 x 8 transpose), the chain over dims in lanes.
CONDENSE_AVX2 void score_block_hd8_avx2(const float* q, const float* k, int n, int, float scale, float* out) {
  for (int t0 = 0; t0 < n; t0 += 8) {
    __m256 r[8], t[8], u[8];
    for (int j = 0; j < 8; ++j) r[j] = _mm256_loadu_ps(k + (t0 + j) * 8);
    for (int j = 0; j < 4; ++j) {
      t[2 * j] = _mm256_unpacklo_ps(r[2 * j], r[2 * j + 1]);
      t[2 * j + 1] = _mm256_unpackhi_ps(r[2 * j], r[2 * j + 1]);
    }
    for (int j = 0; j < 2; ++j) {
      u[4 * j] = _mm256_shuffle_ps(t[4 * j], t[4 * j + 2], 0x44);
      u[4 * j + 1] = _mm256_shuffle_ps(t[4 * j], t[4 * j + 2], 0xEE);
      u[4 * j + 2] = _mm256_shuffle_ps(t[4 * j + 1], t[4 * j + 3], 0x44);
      u[4 * j + 3] = _mm256_shuffle_ps(t[4 * j + 1], t[4 * j + 3], 0xEE);
    }
    __m256 acc = _mm256_setzero_ps();
    // dim i of the 8 keys; two loops so the permute's selector is an immediate at every optimization level
    for (int i = 0; i < 4; ++i) acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(q[i]), _mm256_permute2f128_ps(u[i], u[4 + i], 0x20)));
    for (int i = 4; i < 8; ++i) acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(q[i]), _mm256_permute2f128_ps(u[i - 4], u[i], 0x31)));
    _mm256_maskstore_ps(out + t0, lane_mask8(n - t0), _mm256_mul_ps(acc, _mm256_set1_ps(scale)));
  }
}

template <int C>
CONDENSE_AVX2 void score_block_avx2(const float* q, const float* k, int n, int hd, float scale, float* out) {
  for (int t0 = 0; t0 < n; t0 += 8) _mm256_maskstore_ps(out + t0, lane_mask8(n - t0), scores8_avx2<C>(q, k, t0, n, hd, scale));
}

// As values_coded_avx512 over f32: vectors (8 floats) [c0, c0 + NR) of one head's output.
template <int NR>
CONDENSE_AVX2 void values_avx2(const float* p, const float* vb, int n, int hd, int c0, float* o) {
  __m256 acc[NR];
#pragma GCC unroll 8
  for (int i = 0; i < NR; ++i) acc[i] = _mm256_loadu_ps(o + 8 * (c0 + i));
  vb += 8 * c0;
  for (int t = 0; t < n; ++t) {
    const __m256 pt = _mm256_set1_ps(p[t]);
#pragma GCC unroll 8
    for (int i = 0; i < NR; ++i) acc[i] = _mm256_add_ps(acc[i], _mm256_mul_ps(pt, _mm256_loadu_ps(vb + t * hd + 8 * i)));
  }
#pragma GCC unroll 8
  for (int i = 0; i < NR; ++i) _mm256_storeu_ps(o + 8 * (c0 + i), acc[i]);
}

// ------------------------------------------------------------ the walker ---

// Blocks as f32 (AVX2, and head_dim 8 on AVX-512).
using ScoreFn = void (*)(const float*, const float*, int, int, float, float*);
using ValueFn = void (*)(const float*, const float*, int, int, int, float*);
struct Bodies {
  ScoreFn score[5];  // hd 32, 64, 128, any multiple of 16, 8
  ValueFn value[kOutRegs];  // NR = 1..kOutRegs output vectors
  int lanes;                // floats per output vector
};

constexpr Bodies kAvx2 = {{&score_block_avx2<2>, &score_block_avx2<4>, &score_block_avx2<8>, &score_block_avx2<0>, &score_block_hd8_avx2},
                          {&values_avx2<1>, &values_avx2<2>, &values_avx2<3>, &values_avx2<4>, &values_avx2<5>, &values_avx2<6>,
                           &values_avx2<7>, &values_avx2<8>},
                          8};
// AVX-512 runs head_dim multiples of 16 through the coded bodies below; head_dim 8
// has its own score transpose and sums values 8 wide (AVX2 is within AVX-512).
constexpr Bodies kAvx512Hd8 = {{nullptr, nullptr, nullptr, nullptr, &score_block_hd8_avx512},
                               {&values_avx2<1>, &values_avx2<2>, &values_avx2<3>, &values_avx2<4>, &values_avx2<5>, &values_avx2<6>,
                                &values_avx2<7>, &values_avx2<8>},
                               8};

// Blocks in their stored dtype, f32 included (AVX-512, head_dim a multiple of 16).
using CodedScoreFn = void (*)(const float*, const uint8_t*, int, int, float, const float*, int, int, int64_t, const uint8_t*, float*,
                              int64_t);
using CodedValueFn = void (*)(const float*, const uint8_t*, int, int, int, float, const uint8_t*, float*);
struct CodedBodies {
  CodedScoreFn score[4];  // hd 32, 64, 128, any multiple of 16
  CodedValueFn value[kOutRegs];
};
template <KvCode C>
constexpr CodedBodies coded_bodies() {
  return {{&score_heads_coded_avx512<C, 2>, &score_heads_coded_avx512<C, 4>, &score_heads_coded_avx512<C, 8>, &score_heads_coded_avx512<C, 0>},
          {&values_coded_avx512<C, 1>, &values_coded_avx512<C, 2>, &values_coded_avx512<C, 3>, &values_coded_avx512<C, 4>,
           &values_coded_avx512<C, 5>, &values_coded_avx512<C, 6>, &values_coded_avx512<C, 7>, &values_coded_avx512<C, 8>}};
}
constexpr CodedBodies kCoded[] = {coded_bodies<KvCode::F32>(), coded_bodies<KvCode::F16>(), coded_bodies<KvCode::BF16>(),
                                  coded_bodies<KvCode::E4M3>(), coded_bodies<KvCode::I8>()};  // by KvCode

void softmax_rows(const RowBlocks& b, int nh, float* scores) {
  for (int h = 0; h < nh; ++h) {
    float* sc = scores + int64_t(h) * b.n_vis;
    const float mx = *std::max_element(sc, sc + b.n_vis);
    const float inv = float(1.0 / exp_shift_f32(sc, mx, 1.f, b.n_vis, sc));
    for (int64_t s = 0; s < b.n_vis; ++s) sc[s] *= inv;
  }
}

// The walker over blocks in their stored dtype.
void attention_coded(const float* q, const RowBlocks& b, float scale, float* scores, float* o) {
  const CodedBodies& B = kCoded[int(b.code)];
  const CodedScoreFn score = B.score[b.hd == 32 ? 0 : b.hd == 64 ? 1 : b.hd == 128 ? 2 : 3];
  const int nh = b.n_kv * b.group, nv = b.hd / 16;
  const int64_t head_bytes = int64_t(kT) * b.hd * kv_code_bytes(b.code);
  auto kv_scale = [&](const float* s, int g) { return s ? s[g] : 1.f; };
  // Keys block by block, then values; each body fetches the block read next.
  const int64_t nb = (b.n_vis + kT - 1) / kT;
  const uint8_t* kb = b.raw(b.ctx, false, 0);
  for (int64_t i = 0; i < nb; ++i) {
    const int n = int(std::min<int64_t>(kT, b.n_vis - i * kT));
    const uint8_t* next = b.raw(b.ctx, i + 1 < nb ? false : true, i + 1 < nb ? i + 1 : 0);
    score(q, kb, n, b.hd, scale, b.k_scale, nh, b.group, head_bytes, next, scores + i * kT, b.n_vis);
    kb = next;
  }
  softmax_rows(b, nh, scores);
  std::fill(o, o + int64_t(nh) * b.hd, 0.f);
  const uint8_t* vb = kb;
  for (int64_t i = 0; i < nb; ++i) {
    const int n = int(std::min<int64_t>(kT, b.n_vis - i * kT));
    const uint8_t* next = i + 1 < nb ? b.raw(b.ctx, true, i + 1) : nullptr;
    for (int h = 0; h < nh; ++h) {
      const int g = h / b.group;
      for (int c0 = 0; c0 < nv; c0 += kOutRegs) {
        // The next block's bytes of kv head g, fetched once (first head of its group, first pass).
        const uint8_t* pf = next && h % b.group == 0 && c0 == 0 ? next + g * head_bytes : nullptr;
        B.value[std::min(kOutRegs, nv - c0) - 1](scores + h * b.n_vis + i * kT, vb + g * head_bytes, n, b.hd, c0,
                                                 kv_scale(b.v_scale, g), pf, o + int64_t(h) * b.hd);
      }
    }
    vb = next;
  }
}

}  // namespace

bool attention_row_blocks(const float* q, const RowBlocks& b, float scale, float* scores, float* o) {
  const Isa isa = active_isa();
  if (b.hd <= 0 || (b.hd % 16 != 0 && b.hd != 8) || isa == Isa::Portable) return false;
  // E4M3 decodes in registers with the scale times 2^120 (exact below 2^8;
  // calibrated KV scales are amax / 448): larger ones read converted blocks.
  bool small = true;
  if (b.code == KvCode::E4M3) {
    for (int g = 0; g < b.n_kv; ++g) small = small && std::fabs(b.k_scale[g]) < 256.f && std::fabs(b.v_scale[g]) < 256.f;
  }
  if (isa == Isa::Avx512 && b.hd % 16 == 0 && small) {
    attention_coded(q, b, scale, scores, o);
    return true;
  }
  const Bodies& B = isa == Isa::Avx512 && b.hd == 8 ? kAvx512Hd8 : kAvx2;
  const ScoreFn score = B.score[b.hd == 8 ? 4 : b.hd == 32 ? 0 : b.hd == 64 ? 1 : b.hd == 128 ? 2 : 3];
  const int nh = b.n_kv * b.group, nv = b.hd / B.lanes;
  // Every head's scores, block by block; each head's softmax; its values block by block.
  for (int64_t p0 = 0; p0 < b.n_vis; p0 += kT) {
    const int n = int(std::min<int64_t>(kT, b.n_vis - p0));
    const float* kb = b.block(b.ctx, false, p0 / kT);
    for (int h = 0; h < nh; ++h) score(q + int64_t(h) * b.hd, kb + int64_t(h / b.group) * kT * b.hd, n, b.hd, scale, scores + h * b.n_vis + p0);
  }
  softmax_rows(b, nh, scores);
  std::fill(o, o + int64_t(nh) * b.hd, 0.f);
  for (int64_t p0 = 0; p0 < b.n_vis; p0 += kT) {
    const int n = int(std::min<int64_t>(kT, b.n_vis - p0));
    const float* vb = b.block(b.ctx, true, p0 / kT);
    for (int h = 0; h < nh; ++h) {
      for (int c0 = 0; c0 < nv; c0 += kOutRegs) {
        B.value[std::min(kOutRegs, nv - c0) - 1](scores + h * b.n_vis + p0, vb + int64_t(h / b.group) * kT * b.hd, n, b.hd, c0, o + int64_t(h) * b.hd);
      }
    }
  }
  return true;
}

}  // namespace condense::kernels
