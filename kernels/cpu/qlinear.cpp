// Drivers of qlinear.h, one generic body per ISA over the decoders of
// qdecode.h. Decode (m = 1) streams each panel once, decoding in registers, two
// panels in flight so that four (AVX-512) or eight (AVX2) FMA chains hide the
// FMA latency. More rows decode each KC x 32 slice of a panel once into an
// L1-resident f32 tile and run the shared micro-kernels (microkernel_f32.h)
// over every MR-row block of x; f32 weights are used in place. Both paths
// reduce each output element the same way (per KC block an FMA chain from
// zero, blocks added in k order), which is what makes every row's result
// independent of m.
#include "kernels/cpu/qlinear.h"

// GCC 12 reports the deliberately undefined pass-through operand inside its
// own AVX-512 conversion intrinsics (_mm512_undefined_*) as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <omp.h>

#include <algorithm>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/microkernel_f32.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/qdecode.h"
#include "kernels/cpu/qdecode_sparse.h"
#include "kernels/cpu/qlinear_a8.h"
#include "kernels/cpu/simd.h"

namespace condense::kernels {
namespace {

constexpr int kMR = kMicroRows;
constexpr int64_t kKC = kMicroDepth;
constexpr int64_t kPrefetchBytes = 4096;  // how far ahead of the decode a panel stream is prefetched

// Positions [k0, kend) in scale-group stretches: on_group(g) when a stretch of
// group g starts, then step(k) for each of its positions.
template <class OnGroup, class Step>
__attribute__((always_inline)) inline void by_group(int64_t k0, int64_t kend, int64_t G, OnGroup&& on_group, Step&& step) {
  for (int64_t k = k0; k < kend;) {
    const int64_t g = k / G, ge = std::min(kend, (g + 1) * G);
    on_group(g);
    for (; k < ge; ++k) step(k);
  }
}

// A panel's decoder placed at k0.
template <class Dec>
__attribute__((always_inline)) inline Dec decoder_at(const QMatrix& w, int64_t p, int64_t k0) {
  Dec d;
  d.init(w, p);
  if constexpr (requires { d.seek(k0); }) d.seek(k0);
  return d;
}

// ---------------------------------------------------------------- AVX-512 ---

template <class Dec, int P>
CONDENSE_AVX512 void gemv_avx512(const float* x, const QMatrix& w, int64_t p0, float* y) {
  const QLayout& L = w.layout;
  const int64_t K = L.k, G = L.group_len();
  Dec d[P];
#pragma GCC unroll 2
  for (int i = 0; i < P; ++i) d[i].init(w, p0 + i);
  // Sparse panels have no fixed bytes per k-step: the hardware prefetcher alone.
  const int64_t bpk = L.sparse ? 0 : L.code_bytes() / (L.panels() * K), pf = bpk ? kPrefetchBytes / bpk : 0;
  const uint8_t* pb[P];
#pragma GCC unroll 2
  for (int i = 0; i < P; ++i) pb[i] = w.codes + (p0 + i) * K * bpk;
  __m512 t0[P], t1[P];
#pragma GCC unroll 2
  for (int i = 0; i < P; ++i) t0[i] = t1[i] = _mm512_setzero_ps();
  for (int64_t k0 = 0; k0 < K; k0 += kKC) {
    const int64_t kend = std::min(K, k0 + kKC);
    __m512 c0[P], c1[P];
#pragma GCC unroll 2
    for (int i = 0; i < P; ++i) c0[i] = c1[i] = _mm512_setzero_ps();
    for (int64_t k = k0; k < kend;) {
      const int64_t g = k / G, ge = std::min(kend, (g + 1) * G);
#pragma GCC unroll 2
      for (int i = 0; i < P; ++i) d[i].group(w, p0 + i, g);
      for (; k < ge; ++k) {
        const __m512 xb = _mm512_set1_ps(x[k]);
#pragma GCC unroll 2
        for (int i = 0; i < P; ++i) _mm_prefetch(reinterpret_cast<const char*>(pb[i] + (k + pf) * bpk), _MM_HINT_T0);
#pragma GCC unroll 2
        for (int i = 0; i < P; ++i) {
          __m512 w0, w1;
          d[i].at(k, w0, w1);
          c0[i] = _mm512_fmadd_ps(xb, w0, c0[i]);
          c1[i] = _mm512_fmadd_ps(xb, w1, c1[i]);
        }
      }
    }
#pragma GCC unroll 2
    for (int i = 0; i < P; ++i) {
      t0[i] = k0 == 0 ? c0[i] : _mm512_add_ps(c0[i], t0[i]);
      t1[i] = k0 == 0 ? c1[i] : _mm512_add_ps(c1[i], t1[i]);
    }
  }
#pragma GCC unroll 2
  for (int i = 0; i < P; ++i) {
    if constexpr (Dec::kScaleAtEnd) {
      t0[i] = _mm512_mul_ps(t0[i], d[i].s0);
      t1[i] = _mm512_mul_ps(t1[i], d[i].s1);
    }
    const int valid = int(std::min<int64_t>(32, L.n - (p0 + i) * 32));
    _mm512_mask_storeu_ps(y + (p0 + i) * 32, lane_mask(valid), t0[i]);
    _mm512_mask_storeu_ps(y + (p0 + i) * 32 + 16, lane_mask(valid - 16), t1[i]);
  }
}

template <class Dec>
CONDENSE_AVX512 void decode_avx512(const QMatrix& w, int64_t p, int64_t k0, int64_t kend, float* tile) {
  Dec d = decoder_at<Dec>(w, p, k0);
  by_group(k0, kend, w.layout.group_len(), [&](int64_t g) CONDENSE_AVX512 { d.group(w, p, g); }, [&](int64_t k) CONDENSE_AVX512 {
    __m512 w0, w1;
    d.at(k, w0, w1);
    _mm512_store_ps(tile + (k - k0) * 32, w0);
    _mm512_store_ps(tile + (k - k0) * 32 + 16, w1);
  });
}

// ------------------------------------------------------------------- AVX2 ---

template <class Dec, int P>
CONDENSE_AVX2 void gemv_avx2(const float* x, const QMatrix& w, int64_t p0, float* y) {
  const QLayout& L = w.layout;
  const int64_t K = L.k, G = L.group_len();
  Dec d[P];
#pragma GCC unroll 2
  for (int i = 0; i < P; ++i) d[i].init(w, p0 + i);
  __m256 t[P][4];
#pragma GCC unroll 8
  for (int i = 0; i < P * 4; ++i) t[i / 4][i % 4] = _mm256_setzero_ps();
  for (int64_t k0 = 0; k0 < K; k0 += kKC) {
    const int64_t kend = std::min(K, k0 + kKC);
    __m256 c[P][4];
#pragma GCC unroll 8
    for (int i = 0; i < P * 4; ++i) c[i / 4][i % 4] = _mm256_setzero_ps();
    for (int64_t k = k0; k < kend;) {
      const int64_t g = k / G, ge = std::min(kend, (g + 1) * G);
#pragma GCC unroll 2
      for (int i = 0; i < P; ++i) d[i].group(w, p0 + i, g);
      for (; k < ge; ++k) {
        const __m256 xb = _mm256_broadcast_ss(x + k);
#pragma GCC unroll 2
        for (int i = 0; i < P; ++i) {
          __m256 wv[4];
          d[i].at(k, wv);
#pragma GCC unroll 4
          for (int q = 0; q < 4; ++q) c[i][q] = _mm256_fmadd_ps(xb, wv[q], c[i][q]);
        }
      }
    }
#pragma GCC unroll 8
    for (int i = 0; i < P * 4; ++i) t[i / 4][i % 4] = k0 == 0 ? c[i / 4][i % 4] : _mm256_add_ps(c[i / 4][i % 4], t[i / 4][i % 4]);
  }
#pragma GCC unroll 2
  for (int i = 0; i < P; ++i) {
    const int valid = int(std::min<int64_t>(32, L.n - (p0 + i) * 32));
    float* yp = y + (p0 + i) * 32;
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      if constexpr (Dec::kScaleAtEnd) t[i][q] = _mm256_mul_ps(t[i][q], _mm256_load_ps(d[i].sz.s + 8 * q));
      const int v = valid - 8 * q;
      if (v >= 8) _mm256_storeu_ps(yp + 8 * q, t[i][q]);
      else if (v > 0) _mm256_maskstore_ps(yp + 8 * q, lane_mask8(v), t[i][q]);
    }
  }
}

template <class Dec>
CONDENSE_AVX2 void decode_avx2(const QMatrix& w, int64_t p, int64_t k0, int64_t kend, float* tile) {
  Dec d = decoder_at<Dec>(w, p, k0);
  by_group(k0, kend, w.layout.group_len(), [&](int64_t g) CONDENSE_AVX2 { d.group(w, p, g); }, [&](int64_t k) CONDENSE_AVX2 {
    __m256 wv[4];
    d.at(k, wv);
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) _mm256_store_ps(tile + (k - k0) * 32 + 8 * q, wv[q]);
  });
}

// --------------------------------------------------------------- portable ---

// Mul then add, as the portable micro-kernel does.
template <class Dec, int P>
void gemv_portable(const float* x, const QMatrix& w, int64_t p0, float* y) {
  const QLayout& L = w.layout;
  const int64_t K = L.k, G = L.group_len();
  Dec d[P];
  for (int i = 0; i < P; ++i) d[i].init(w, p0 + i);
  float t[P][32] = {};
  for (int64_t k0 = 0; k0 < K; k0 += kKC) {
    const int64_t kend = std::min(K, k0 + kKC);
    float c[P][32] = {};
    for (int64_t k = k0; k < kend;) {
      const int64_t g = k / G, ge = std::min(kend, (g + 1) * G);
      for (int i = 0; i < P; ++i) d[i].group(w, p0 + i, g);
      for (; k < ge; ++k) {
        const float xv = x[k];
        for (int i = 0; i < P; ++i) {
          float wv[32];
          d[i].at(k, wv);
          for (int j = 0; j < 32; ++j) c[i][j] = c[i][j] + xv * wv[j];
        }
      }
    }
    for (int i = 0; i < P; ++i) {
      for (int j = 0; j < 32; ++j) t[i][j] = k0 == 0 ? c[i][j] : c[i][j] + t[i][j];
    }
  }
  for (int i = 0; i < P; ++i) {
    if constexpr (Dec::kScaleAtEnd) {
      for (int j = 0; j < 32; ++j) t[i][j] = t[i][j] * d[i].sz.s[j];
    }
    const int valid = int(std::min<int64_t>(32, L.n - (p0 + i) * 32));
    std::copy(t[i], t[i] + valid, y + (p0 + i) * 32);
  }
}

template <class Dec>
void decode_portable(const QMatrix& w, int64_t p, int64_t k0, int64_t kend, float* tile) {
  Dec d = decoder_at<Dec>(w, p, k0);
  by_group(k0, kend, w.layout.group_len(), [&](int64_t g) { d.group(w, p, g); }, [&](int64_t k) { d.at(k, tile + (k - k0) * 32); });
}

// ------------------------------------------------------------ the tables ---

struct Bodies {
  void (*gemv1)(const float*, const QMatrix&, int64_t, float*);
  void (*gemv2)(const float*, const QMatrix&, int64_t, float*);
  void (*decode)(const QMatrix&, int64_t, int64_t, int64_t, float*);  // null: f32, used in place
  bool scale_at_end;
};

template <class Dec>
constexpr Bodies avx512_bodies(bool decodes) {
  return {&gemv_avx512<Dec, 1>, &gemv_avx512<Dec, 2>, decodes ? &decode_avx512<Dec> : nullptr, Dec::kScaleAtEnd};
}
template <class Dec>
constexpr Bodies avx2_bodies(bool decodes) {
  return {&gemv_avx2<Dec, 1>, &gemv_avx2<Dec, 2>, decodes ? &decode_avx2<Dec> : nullptr, Dec::kScaleAtEnd};
}
template <class Dec>
constexpr Bodies portable_bodies(bool decodes) {
  return {&gemv_portable<Dec, 1>, &gemv_portable<Dec, 2>, decodes ? &decode_portable<Dec> : nullptr, Dec::kScaleAtEnd};
}

const Bodies& bodies(Isa isa, const QLayout& L) {
  using namespace qdec;
  // Index: f32, i8 sym, i8 asym, i4 sym, i4 asym, e4m3, e4m3 prescaled, i8 sym
  // per channel, i8 asym per channel. f32 decode runs the 8-wide body on
  // AVX-512 CPUs too: on Zen 4 it streamed 8-10% faster than the 16-wide one.
  static const Bodies avx512[] = {
      {&gemv_avx2<F32x256, 1>, &gemv_avx2<F32x256, 2>, nullptr, false},
      avx512_bodies<I8x512<false, false>>(true), avx512_bodies<I8x512<true, false>>(true),
      avx512_bodies<I4x512<false>>(true),        avx512_bodies<I4x512<true>>(true),
      avx512_bodies<E4M3x512<false>>(true),      avx512_bodies<E4M3x512<true>>(true),
      avx512_bodies<I8x512<false, true>>(true),  avx512_bodies<I8x512<true, true>>(true)};
  static const Bodies avx2[] = {avx2_bodies<F32x256>(false),              avx2_bodies<I8x256<false, false>>(true),
                                avx2_bodies<I8x256<true, false>>(true),   avx2_bodies<I4x256<false>>(true),
                                avx2_bodies<I4x256<true>>(true),          avx2_bodies<E4M3x256<false>>(true),
                                avx2_bodies<E4M3x256<true>>(true),        avx2_bodies<I8x256<false, true>>(true),
                                avx2_bodies<I8x256<true, true>>(true)};
  static const Bodies portable[] = {portable_bodies<F32xP>(false),
                                    portable_bodies<IntxP<WCode::I8, false>>(true),
                                    portable_bodies<IntxP<WCode::I8, true>>(true),
                                    portable_bodies<IntxP<WCode::I4, false>>(true),
                                    portable_bodies<IntxP<WCode::I4, true>>(true),
                                    portable_bodies<E4M3xP>(true),
                                    portable_bodies<E4M3xP>(true),
                                    portable_bodies<IntxP<WCode::I8, false, true>>(true),
                                    portable_bodies<IntxP<WCode::I8, true, true>>(true)};
  static const Bodies sp_avx512[] = {avx512_bodies<SpF32x512>(true),         avx512_bodies<SpI8x512<false, false>>(true),
                                     avx512_bodies<SpI8x512<true, false>>(true), avx512_bodies<SpI8x512<false, true>>(true),
                                     avx512_bodies<SpI8x512<true, true>>(true)};
  static const Bodies sp_avx2[] = {avx2_bodies<SpF32x256>(true),         avx2_bodies<SpI8x256<false, false>>(true),
                                   avx2_bodies<SpI8x256<true, false>>(true), avx2_bodies<SpI8x256<false, true>>(true),
                                   avx2_bodies<SpI8x256<true, true>>(true)};
  static const Bodies sp_portable[] = {portable_bodies<SpxP<WCode::F32, false, false>>(true),
                                       portable_bodies<SpxP<WCode::I8, false, false>>(true),
                                       portable_bodies<SpxP<WCode::I8, true, false>>(true),
                                       portable_bodies<SpxP<WCode::I8, false, true>>(true),
                                       portable_bodies<SpxP<WCode::I8, true, true>>(true)};
  const bool channel = L.group == 0 || L.per_tensor;
  if (L.sparse) {
    const int i = L.code == WCode::F32 ? 0 : 1 + (L.asym ? 1 : 0) + (channel ? 2 : 0);
    return isa == Isa::Avx512 ? sp_avx512[i] : isa == Isa::Avx2 ? sp_avx2[i] : sp_portable[i];
  }
  int i = 0;
  switch (L.code) {
    case WCode::F32: i = 0; break;
    case WCode::I8: i = (L.asym ? 2 : 1) + (channel ? 6 : 0); break;
    case WCode::I4: i = L.asym ? 4 : 3; break;
    case WCode::E4M3: i = L.small_scales ? 6 : 5; break;
  }
  return isa == Isa::Avx512 ? avx512[i] : isa == Isa::Avx2 ? avx2[i] : portable[i];
}

// Packs rows [m0, m0 + mr) of x as [k][mr] (the micro-kernel's broadcast order).
void pack_x_block(const float* x, int64_t ldx, int64_t m0, int mr, int64_t k, float* out) {
  for (int i = 0; i < mr; ++i) {
    const float* xi = x + (m0 + i) * ldx;
    for (int64_t p = 0; p < k; ++p) out[p * mr + i] = xi[p];
  }
}

}  // namespace

void linear_q(const float* x, int64_t m, int64_t ldx, const QMatrix& w, float* y, int64_t ldy) {
  const QLayout& L = w.layout;
  const int64_t np = L.panels(), K = L.k;
  const Isa isa = active_isa();
  if (L.int_acts()) return linear_a8(x, m, ldx, w, y, ldy);
  const Bodies& b = bodies(isa, L);

  if (m == 1) {
    // Decode streams the weights: worth the other threads only for a long
    // stream, or a shorter one whose decoding is the bottleneck.
    const bool par = L.code_bytes() >= (L.code == WCode::F32 ? kParallelBytes : kParallelDecodeBytes);
    const int64_t pairs = (np + 1) / 2;
    auto pair = [&](int64_t i) {
      if (2 * i + 1 < np) b.gemv2(x, w, 2 * i, y);
      else b.gemv1(x, w, 2 * i, y);
    };
    if (!par) {  // no region at all: even an if(false) one costs libgomp calls per linear per token
      for (int64_t i = 0; i < pairs; ++i) pair(i);
      return;
    }
    const int64_t chunk = std::max<int64_t>(1, pairs / (8 * int64_t(omp_get_max_threads())));
#pragma omp parallel for schedule(dynamic, chunk)
    for (int64_t i = 0; i < pairs; ++i) pair(i);
    return;
  }

  const bool par = m * L.n * K >= kParallelMacs;
  const MicroTable& micro = micro_table(isa);
  const int64_t mblocks = (m + kMR - 1) / kMR;
  // Packed rows of x, reused across calls (batched decode runs this per linear per step).
  static thread_local std::vector<float> xp;
  if (xp.size() < size_t(mblocks * kMR * K)) xp.resize(size_t(mblocks * kMR * K));
  float* const xpk = xp.data();  // the calling thread's buffer (a thread_local named inside the region is each thread's own)
#pragma omp parallel if (par)
  {
#pragma omp for schedule(static)
    for (int64_t mb = 0; mb < mblocks; ++mb) {
      const int mr = int(std::min<int64_t>(kMR, m - mb * kMR));
      pack_x_block(x, ldx, mb * kMR, mr, K, xpk + mb * kMR * K);
    }
    alignas(64) float tile[kKC * 32];
#pragma omp for schedule(dynamic)
    for (int64_t p = 0; p < np; ++p) {
      const int valid = int(std::min<int64_t>(32, L.n - p * 32));
      for (int64_t k0 = 0; k0 < K; k0 += kKC) {
        const int64_t kc = std::min(kKC, K - k0);
        const float* slice;
        if (b.decode) {
          b.decode(w, p, k0, k0 + kc, tile);
          slice = tile;
        } else {
          slice = reinterpret_cast<const float*>(w.codes) + (p * K + k0) * 32;
        }
        for (int64_t mb = 0; mb < mblocks; ++mb) {
          const int mr = int(std::min<int64_t>(kMR, m - mb * kMR));
          micro[size_t(mr - 1)](kc, xpk + mb * kMR * K + k0 * mr, slice, y + mb * kMR * ldy + p * 32, ldy, valid,
                                k0 > 0);
        }
      }
      if (b.scale_at_end) {
        float s[32];
        qdec::scales_f32(w, p, 0, s);
        for (int64_t r = 0; r < m; ++r) {
          float* yr = y + r * ldy + p * 32;
          for (int j = 0; j < valid; ++j) yr[j] = yr[j] * s[j];
        }
      }
    }
  }
}

}  // namespace condense::kernels
