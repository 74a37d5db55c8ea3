// Reads are one plain loop per dtype, compiled three times (AVX-512, AVX2 +
// F16C, baseline) so each ISA vectorizes it; every read is exact (the f16 and
// E4M3 bit fields are moved into an f32 and rescaled by a power of two), so all
// three give the same floats. Attention of a chunk (16 rows or more) reads one
// kv head's keys and values at a time into an L2-sized f32 buffer and runs
// attention_f32 on its query heads; decode rows with head_dim a multiple of 16
// or 8 run attention_rows.h's vector bodies block by block (AVX-512 with
// head_dim a multiple of 16: every dtype decoded in registers as it is used;
// otherwise f32 in place, other dtypes one converted block at a time), others
// the scalar path below.
#include "kernels/cpu/kv_paged.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/common/int_codes.h"
#include "kernels/common/minifloat.h"
#include "kernels/cpu/attention_rows.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/dot_f32.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/vexp_f32.h"
#include "kernels/cpu/simd.h"
#include "kernels/cpu/transformer_f32.h"

// GCC 12 reports the undefined pass-through operand inside its own AVX-512
// intrinsics as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace condense::kernels {
namespace {

inline uint8_t* elem_ptr(const KvPagedView& kv, bool values, int h, int64_t pos) {
  const int64_t b = kv.table[pos / kv.block_tokens], slot = pos % kv.block_tokens, esz = kv_code_bytes(kv.code);
  const int64_t half = int64_t(kv.n_kv) * kv.block_tokens * kv.hd * esz;
  return kv.base + b * kv.block_bytes + (values ? half : 0) + ((int64_t(h) * kv.block_tokens + slot) * kv.hd) * esz;
}

template <KvCode C>
__attribute__((always_inline)) inline void read_run(const uint8_t* src, float scale, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    if constexpr (C == KvCode::F32) {
      std::memcpy(&out[i], src + 4 * i, 4);
    } else if constexpr (C == KvCode::F16) {
      uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      out[i] = minifloat::f16_finite_to_f32(h);  // the cache holds finite values
    } else if constexpr (C == KvCode::BF16) {
      uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      out[i] = minifloat::bits_f32(uint32_t(h) << 16);
    } else if constexpr (C == KvCode::E4M3) {
      out[i] = scale * minifloat::e4m3_finite_to_f32(src[i]);
    } else {
      out[i] = scale * float(int8_t(src[i]));
    }
  }
}

template <KvCode C>
__attribute__((always_inline)) inline void read_head(const KvPagedView& kv, bool values, int h, int64_t pos0, int64_t n, float* out) {
  const float scale = C == KvCode::E4M3 || C == KvCode::I8 ? (values ? kv.v_scale : kv.k_scale)[h] : 1.f;
  for (int64_t p = pos0; p < pos0 + n;) {
    const int64_t run = std::min<int64_t>(kv.block_tokens - p % kv.block_tokens, pos0 + n - p);  // one block's slots
    read_run<C>(elem_ptr(kv, values, h, p), scale, run * kv.hd, out + (p - pos0) * kv.hd);
    p += run;
  }
}

using ReadFn = void (*)(const KvPagedView&, bool, int, int64_t, int64_t, float*);

template <KvCode C>
CONDENSE_AVX512 void read_avx512(const KvPagedView& kv, bool values, int h, int64_t pos0, int64_t n, float* out) {
  read_head<C>(kv, values, h, pos0, n, out);
}
template <KvCode C>
CONDENSE_AVX2 void read_avx2(const KvPagedView& kv, bool values, int h, int64_t pos0, int64_t n, float* out) {
  read_head<C>(kv, values, h, pos0, n, out);
}
template <KvCode C>
void read_portable(const KvPagedView& kv, bool values, int h, int64_t pos0, int64_t n, float* out) {
  read_head<C>(kv, values, h, pos0, n, out);
}

ReadFn reader(KvCode c) {
  static const ReadFn avx512[] = {&read_avx512<KvCode::F32>, &read_avx512<KvCode::F16>, &read_avx512<KvCode::BF16>,
                                  &read_avx512<KvCode::E4M3>, &read_avx512<KvCode::I8>};
  static const ReadFn avx2[] = {&read_avx2<KvCode::F32>, &read_avx2<KvCode::F16>, &read_avx2<KvCode::BF16>,
                                &read_avx2<KvCode::E4M3>, &read_avx2<KvCode::I8>};
  static const ReadFn portable[] = {&read_portable<KvCode::F32>, &read_portable<KvCode::F16>, &read_portable<KvCode::BF16>,
                                    &read_portable<KvCode::E4M3>, &read_portable<KvCode::I8>};
  const Isa isa = active_isa();
  return (isa == Isa::Avx512 ? avx512 : isa == Isa::Avx2 ? avx2 : portable)[int(c)];
}

}  // namespace

int kv_code_bytes(KvCode c) {
  switch (c) {
    case KvCode::F32: return 4;
    case KvCode::F16:
    case KvCode::BF16: return 2;
    case KvCode::E4M3:
    case KvCode::I8: return 1;
  }
  return 4;
}

int64_t kv_block_bytes(KvCode c, int n_kv, int hd, int block_tokens) {
  return 2 * int64_t(n_kv) * block_tokens * hd * kv_code_bytes(c);
}

namespace {

// int8 codes of hd values: intcode::f32_to_i8(x / s) (the quotient rounded to
// nearest even, clamped to [-128, 127], NaN to 0), 16 or 8 at a time.
CONDENSE_AVX512 int write_i8_avx512(const float* x, float s, int hd, uint8_t* dst) {
  const __m512 vs = _mm512_set1_ps(s), lo = _mm512_set1_ps(-128.f), hi = _mm512_set1_ps(127.f);
  int i = 0;
  for (; i + 16 <= hd; i += 16) {
    const __m512 r = _mm512_roundscale_ps(_mm512_div_ps(_mm512_loadu_ps(x + i), vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __mmask16 ord = _mm512_cmp_ps_mask(r, r, _CMP_ORD_Q);
    const __m512i v = _mm512_maskz_cvtps_epi32(ord, _mm512_min_ps(hi, _mm512_max_ps(lo, r)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm512_cvtepi32_epi8(v));
  }
  return i;
}
CONDENSE_AVX2 int write_i8_avx2(const float* x, float s, int hd, uint8_t* dst) {
  const __m256 vs = _mm256_set1_ps(s), lo = _mm256_set1_ps(-128.f), hi = _mm256_set1_ps(127.f);
  int i = 0;
  for (; i + 8 <= hd; i += 8) {
    const __m256 r = _mm256_round_ps(_mm256_div_ps(_mm256_loadu_ps(x + i), vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 ord = _mm256_cmp_ps(r, r, _CMP_ORD_Q);
    const __m256 c = _mm256_and_ps(ord, _mm256_min_ps(hi, _mm256_max_ps(lo, r)));
    const __m128i v32lo = _mm256_castsi256_si128(_mm256_cvtps_epi32(c)), v32hi = _mm256_extracti128_si256(_mm256_cvtps_epi32(c), 1);
    const __m128i b = _mm_packs_epi16(_mm_packs_epi32(v32lo, v32hi), _mm_setzero_si128());
    _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + i), b);
  }
  return i;
}

// The block the f32-block walker (attention_rows.h) reads after block b of a
// row attending n_vis positions (keys in order, then values in order), fetched
// whole: blocks are scattered, a few KB each, too short for the hardware
// prefetcher. (The in-register bodies fetch a key row per key instead.)
void prefetch_after(const KvPagedView& v, int64_t n_vis, bool values, int64_t b) {
  const int64_t last = (n_vis - 1) / v.block_tokens;
  if (b == last && values) return;
  const int64_t nb = b < last ? b + 1 : 0, esz = kv_code_bytes(v.code);
  const uint8_t* next = elem_ptr(v, b < last ? values : true, 0, nb * v.block_tokens);
  const int64_t bytes = std::min<int64_t>(v.block_tokens, n_vis - nb * v.block_tokens) * v.hd * esz;
  for (int g = 0; g < v.n_kv; ++g) {
    const uint8_t* h = next + int64_t(g) * v.block_tokens * v.hd * esz;
    for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(h + o, 0, 2);
  }
}

}  // namespace

void kv_paged_write(const KvPagedView& kv, const float* k_row, const float* v_row, int64_t pos) {
  const Isa isa = active_isa();
  for (int part = 0; part < 2; ++part) {
    const float* src = part ? v_row : k_row;
    for (int h = 0; h < kv.n_kv; ++h) {
      uint8_t* dst = elem_ptr(kv, part == 1, h, pos);
      const float* x = src + int64_t(h) * kv.hd;
      const float s = kv.code == KvCode::E4M3 || kv.code == KvCode::I8 ? (part ? kv.v_scale : kv.k_scale)[h] : 1.f;
      int i0 = 0;
      if (kv.code == KvCode::I8 && isa != Isa::Portable) i0 = (isa == Isa::Avx512 ? write_i8_avx512 : write_i8_avx2)(x, s, kv.hd, dst);
      for (int i = i0; i < kv.hd; ++i) {
        switch (kv.code) {
          case KvCode::F32: std::memcpy(dst + 4 * i, &x[i], 4); break;
          case KvCode::F16: {
            const uint16_t c = minifloat::f32_to_f16(x[i]);
            std::memcpy(dst + 2 * i, &c, 2);
            break;
          }
          case KvCode::BF16: {
            const uint16_t c = minifloat::f32_to_bf16(x[i]);
            std::memcpy(dst + 2 * i, &c, 2);
            break;
          }
          case KvCode::E4M3: dst[i] = minifloat::f32_to_e4m3(x[i] / s); break;
          case KvCode::I8: dst[i] = uint8_t(intcode::f32_to_i8(x[i] / s)); break;
        }
      }
    }
  }
}

void kv_paged_read(const KvPagedView& kv, bool values, int h, int64_t pos0, int64_t n, float* out) {
  reader(kv.code)(kv, values, h, pos0, n, out);
}

namespace {

typedef float vec4f_t __attribute__((vector_size(16)));

// s[t] = dot_f32(q, column t of kt, n) for 16 columns of kt [n][16] and n < 16:
// per lane the same chain d = ((0 + q0 k0) + q1 k1) + ..., multiply and add
// rounded separately (this file is built for baseline x86-64: no FMA to fuse).
void dot_lanes16(const float* q, const float* kt, int64_t n, float* s) {
  vec4f_t d[4] = {};
  for (int64_t i = 0; i < n; ++i) {
    for (int j = 0; j < 4; ++j) {
      vec4f_t k;
      std::memcpy(&k, kt + i * 16 + 4 * j, sizeof k);
      d[j] = d[j] + q[i] * k;
    }
  }
  std::memcpy(s, d, sizeof d);
}

// Rows < 16 (decode, short chunks): attention_f32's row path (per row and head:
// scores by dot_f32, the vectorised exp, then o += p v in position order),
// walking the blocks: f32 blocks are read in place, others one block of one kv
// head at a time into a 16 x hd buffer shared by the query heads of its group.
void attention_rows_paged(const float* q, int64_t ldq, int64_t rows, int64_t pos0, int n_heads, const KvPagedView& kv, float* out,
                          int64_t ldo) {
  const int64_t hd = kv.hd, T = kv.block_tokens;
  const int group = n_heads / kv.n_kv;
  const float scale = 1.0f / std::sqrt(float(hd));
  const ReadFn read = reader(kv.code);
  const int64_t work = rows * n_heads * (pos0 + rows) * hd;
  if (T == 16 && (hd % 16 == 0 || hd == 8) && active_isa() != Isa::Portable) {
    // Vector bodies (attention_rows.h), block by block over every head.
    struct Ctx {
      const KvPagedView* kv;
      ReadFn read;
      int64_t n_vis;
      float* buf;  // a converted block, [n_kv][16][hd]
    };
    auto block = [](void* c, bool values, int64_t b) -> const float* {
      const Ctx& x = *static_cast<const Ctx*>(c);
      const KvPagedView& v = *x.kv;
      prefetch_after(v, x.n_vis, values, b);
      if (v.code == KvCode::F32) return reinterpret_cast<const float*>(elem_ptr(v, values, 0, b * v.block_tokens));
      const int64_t n = std::min<int64_t>(v.block_tokens, x.n_vis - b * v.block_tokens);
      for (int g = 0; g < v.n_kv; ++g) x.read(v, values, g, b * v.block_tokens, n, x.buf + int64_t(g) * v.block_tokens * v.hd);
      return x.buf;
    };
    auto raw = [](void* c, bool values, int64_t b) -> const uint8_t* {  // the bodies fetch ahead themselves
      const Ctx& x = *static_cast<const Ctx*>(c);
      return elem_ptr(*x.kv, values, 0, b * x.kv->block_tokens);
    };
    auto row = [&](int64_t r) {
      static thread_local std::vector<float> scores, buf;  // reused: decode calls this per layer per token
      if (scores.size() < size_t(n_heads * (pos0 + rows))) scores.resize(size_t(n_heads * (pos0 + rows)));
      if (buf.size() < size_t(kv.n_kv * T * hd)) buf.resize(size_t(kv.n_kv * T * hd));
      Ctx ctx{&kv, read, pos0 + r + 1, buf.data()};
      const RowBlocks rb{block, &ctx, ctx.n_vis, kv.n_kv, group, int(hd), raw, kv.code, kv.k_scale, kv.v_scale};
      attention_row_blocks(q + r * ldq, rb, scale, scores.data(), out + r * ldo);
    };
    if (work < kParallelMacs) {
      for (int64_t r = 0; r < rows; ++r) row(r);
      return;
    }
#pragma omp parallel for schedule(dynamic)
    for (int64_t r = 0; r < rows; ++r) row(r);
    return;
  }
  // One (row, kv head): the scores, softmax and values of its group's query heads.
  auto one = [&](int64_t r, int g) {
    static thread_local std::vector<float> scores, buf;  // reused: decode calls this per layer per token
    if (scores.size() < size_t(group * (pos0 + rows))) scores.resize(size_t(group * (pos0 + rows)));
    if (buf.size() < size_t(T * hd)) buf.resize(size_t(T * hd));
    const int64_t n_vis = pos0 + r + 1;
    auto block = [&](bool values, int64_t p0, int64_t n) -> const float* {
      if (kv.code == KvCode::F32) return reinterpret_cast<const float*>(elem_ptr(kv, values, g, p0));
      read(kv, values, g, p0, n, buf.data());
      return buf.data();
    };
    for (int64_t p0 = 0; p0 < n_vis; p0 += T) {
      const int64_t n = std::min(T, n_vis - p0);
      const float* kb = block(false, p0, n);
      if (hd < 16 && T == 16) {
        // Short heads: dot_f32 is one sequential mul-add chain per key;
        // the same chain for the block's keys side by side (keys transposed
        // into lanes) gives the same scores in a few vector operations.
        float kt[16 * 16];
        if (n < T) std::fill(kt, kt + hd * T, 0.f);
        for (int64_t t = 0; t < n; ++t) {
          for (int64_t i = 0; i < hd; ++i) kt[i * T + t] = kb[t * hd + i];
        }
        for (int h = 0; h < group; ++h) {
          const float* qh = q + r * ldq + int64_t(g * group + h) * hd;
          float s[16];
          dot_lanes16(qh, kt, hd, s);
          float* sc = scores.data() + int64_t(h) * n_vis;
          for (int64_t t = 0; t < n; ++t) sc[p0 + t] = s[t] * scale;
        }
        continue;
      }
      for (int h = 0; h < group; ++h) {
        const float* qh = q + r * ldq + int64_t(g * group + h) * hd;
        float* sc = scores.data() + int64_t(h) * n_vis;
        for (int64_t t = 0; t < n; ++t) sc[p0 + t] = dot_f32(qh, kb + t * hd, hd) * scale;
      }
    }
    for (int h = 0; h < group; ++h) {
      float* sc = scores.data() + int64_t(h) * n_vis;
      const float mx = *std::max_element(sc, sc + n_vis);
      const float inv = float(1.0 / exp_shift_f32(sc, mx, 1.f, n_vis, sc));
      for (int64_t s = 0; s < n_vis; ++s) sc[s] *= inv;
      float* o = out + r * ldo + int64_t(g * group + h) * hd;
      std::fill(o, o + hd, 0.f);
    }
    for (int64_t p0 = 0; p0 < n_vis; p0 += T) {
      const int64_t n = std::min(T, n_vis - p0);
      const float* vb = block(true, p0, n);
      for (int h = 0; h < group; ++h) {
        const float* sc = scores.data() + int64_t(h) * n_vis;
        float* o = out + r * ldo + int64_t(g * group + h) * hd;
        for (int64_t t = 0; t < n; ++t) {
          const float p = sc[p0 + t];
          const float* vs = vb + t * hd;
          for (int64_t i = 0; i < hd; ++i) o[i] += p * vs[i];
        }
      }
    }
  };
  if (work < kParallelMacs) {  // no region at all: even an if(false) one costs libgomp calls per token
    for (int64_t r = 0; r < rows; ++r) {
      for (int g = 0; g < kv.n_kv; ++g) one(r, g);
    }
    return;
  }
#pragma omp parallel for schedule(dynamic) collapse(2)
  for (int64_t r = 0; r < rows; ++r) {
    for (int g = 0; g < kv.n_kv; ++g) one(r, g);
  }
}

}  // namespace

void attention_paged_f32(const float* q, int64_t ldq, int64_t rows, int64_t pos0, int n_heads, const KvPagedView& kv,
                         float* out, int64_t ldo) {
  if (rows < 16) return attention_rows_paged(q, ldq, rows, pos0, n_heads, kv, out, ldo);
  // Chunks: one kv head's keys and values read into f32 at a time, then
  // attention_f32's blocked GEMMs on them.
  const int64_t n_pos = pos0 + rows, hd = kv.hd;
  const int group = n_heads / kv.n_kv;
  static thread_local std::vector<float> buf;
  if (buf.size() < size_t(2 * n_pos * hd)) buf.resize(size_t(2 * n_pos * hd));
  float* k = buf.data();
  float* v = buf.data() + n_pos * hd;
  const ReadFn read = reader(kv.code);
  for (int g = 0; g < kv.n_kv; ++g) {
    read(kv, false, g, 0, n_pos, k);
    read(kv, true, g, 0, n_pos, v);
    attention_f32(q + int64_t(g) * group * hd, ldq, k, v, n_pos * hd, rows, pos0, group, 1, int(hd),
                  out + int64_t(g) * group * hd, ldo);
  }
}

}  // namespace condense::kernels
