// Blocking (measured in bench/bench_linear.cpp on Zen 4, 1 MB L2, 32 KB L1D):
// the micro-kernel of the active ISA (microkernel_f32.h) keeps an MR x 32 tile
// of y in registers and streams a KC x 32 slice of a weight panel, which stays
// in L1 while every MR-row block of x passes over it; x is packed per MR-row
// block as [k][MR] so its broadcasts read contiguous memory. Decode (m = 1)
// streams each panel once through a GEMV body.
#include "kernels/cpu/linear_f32.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/microkernel_f32.h"
#include "kernels/cpu/simd.h"
#include "kernels/cpu/parallel.h"

namespace condense::kernels {
namespace {

static_assert(kPanel == kMicroCols, "packed weights use the micro-kernel panel width");
constexpr int kMR = kMicroRows;
constexpr int64_t kKC = kMicroDepth;

int64_t n_panels(int64_t n) { return (n + kPanel - 1) / kPanel; }

// ------------------------------------------------------------------- AVX2 ---

// Decode on 8-wide vectors, for AVX-512 CPUs too: decode is memory-bound, and on
// Zen 4 this body streamed 8% faster than a 512-bit one (stories110M decode,
// 4 interleaved A/B rounds, median 69.4 vs 64.2 tok/s), which was removed. A
// panel row is 4 ymm; two k-steps in flight keep 8 independent accumulators,
// enough to hide FMA latency behind the stream.
CONDENSE_AVX2 void gemv_panel_avx2(const float* x, int64_t k, const float* b, float* y, int valid) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  int64_t p = 0;
  for (; p + 2 <= k; p += 2) {
    const float* bp = b + p * kPanel;
    const __m256 x0 = _mm256_broadcast_ss(x + p), x1 = _mm256_broadcast_ss(x + p + 1);
    a0 = _mm256_fmadd_ps(x0, _mm256_load_ps(bp), a0);
    a1 = _mm256_fmadd_ps(x0, _mm256_load_ps(bp + 8), a1);
    a2 = _mm256_fmadd_ps(x0, _mm256_load_ps(bp + 16), a2);
    a3 = _mm256_fmadd_ps(x0, _mm256_load_ps(bp + 24), a3);
    a4 = _mm256_fmadd_ps(x1, _mm256_load_ps(bp + 32), a4);
    a5 = _mm256_fmadd_ps(x1, _mm256_load_ps(bp + 40), a5);
    a6 = _mm256_fmadd_ps(x1, _mm256_load_ps(bp + 48), a6);
    a7 = _mm256_fmadd_ps(x1, _mm256_load_ps(bp + 56), a7);
  }
  if (p < k) {
    const __m256 xv = _mm256_broadcast_ss(x + p);
    const float* bp = b + p * kPanel;
    a0 = _mm256_fmadd_ps(xv, _mm256_load_ps(bp), a0);
    a1 = _mm256_fmadd_ps(xv, _mm256_load_ps(bp + 8), a1);
    a2 = _mm256_fmadd_ps(xv, _mm256_load_ps(bp + 16), a2);
    a3 = _mm256_fmadd_ps(xv, _mm256_load_ps(bp + 24), a3);
  }
  const __m256 r[4] = {_mm256_add_ps(a0, a4), _mm256_add_ps(a1, a5), _mm256_add_ps(a2, a6), _mm256_add_ps(a3, a7)};
  for (int q = 0; q < 4; ++q) {
    const int v = valid - 8 * q;
    if (v <= 0) break;
    if (v >= 8) _mm256_storeu_ps(y + 8 * q, r[q]);
    else _mm256_maskstore_ps(y + 8 * q, lane_mask8(v), r[q]);
  }
}

// --------------------------------------------------------------- portable ---

// Decode in plain C++ that compilers vectorize (32 independent sums per panel).
void gemv_panel_portable(const float* x, int64_t k, const float* b, float* y, int valid) {
  float acc[kPanel] = {};
  for (int64_t p = 0; p < k; ++p) {
    const float xv = x[p];
    const float* bp = b + p * kPanel;
    for (int j = 0; j < kPanel; ++j) acc[j] += xv * bp[j];
  }
  std::memcpy(y, acc, size_t(valid) * sizeof(float));
}

// Packs rows [m0, m0 + mr) of x as [k][mr] (the micro-kernel's broadcast order).
void pack_x_block(const float* x, int64_t ldx, int64_t m0, int mr, int64_t k, float* out) {
  for (int i = 0; i < mr; ++i) {
    const float* xi = x + (m0 + i) * ldx;
    for (int64_t p = 0; p < k; ++p) out[p * mr + i] = xi[p];
  }
}

// Whether a problem is big enough to be worth waking the other threads: decode
// streams the weights (memory-bound), prefill computes on them.
bool worth_threads(int64_t m, int64_t n, int64_t k) {
  return m == 1 ? n * k * int64_t(sizeof(float)) >= kParallelBytes : m * n * k >= kParallelMacs;
}

}  // namespace

int64_t packed_f32_size(int64_t n, int64_t k) { return n_panels(n) * k * kPanel; }

void pack_f32_rows(const float* w, int64_t rows, int64_t k, int64_t row0, float* packed) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t row = row0 + r;
    float* dst = packed + (row / kPanel) * k * kPanel + (row % kPanel);
    const float* src = w + r * k;
    for (int64_t p = 0; p < k; ++p) dst[p * kPanel] = src[p];
  }
}

void linear_f32(const float* x, int64_t m, int64_t k, int64_t ldx, const float* packed, int64_t n, float* y,
                int64_t ldy) {
  const int64_t np = n_panels(n);
  const bool par = worth_threads(m, n, k);
  auto valid_cols = [n](int64_t p) { return int(std::min<int64_t>(kPanel, n - p * kPanel)); };

  const Isa isa = active_isa();
  if (m == 1) {
    auto gemv = isa == Isa::Portable ? gemv_panel_portable : gemv_panel_avx2;
    // Dynamic chunks of panels: a thread on a core shared with another process
    // takes fewer of them instead of making the others wait.
    const int64_t chunk = std::max<int64_t>(1, np / (8 * int64_t(omp_get_max_threads())));
#pragma omp parallel for schedule(dynamic, chunk) if (par)
    for (int64_t p = 0; p < np; ++p) gemv(x, k, packed + p * k * kPanel, y + p * kPanel, valid_cols(p));
    return;
  }

  const MicroTable& micro = micro_table(isa);
  const int64_t mblocks = (m + kMR - 1) / kMR;
  std::vector<float> xp(size_t(mblocks * kMR * k));
#pragma omp parallel if (par)
  {
#pragma omp for schedule(static)
    for (int64_t mb = 0; mb < mblocks; ++mb) {
      const int mr = int(std::min<int64_t>(kMR, m - mb * kMR));
      pack_x_block(x, ldx, mb * kMR, mr, k, xp.data() + mb * kMR * k);
    }
#pragma omp for schedule(dynamic)
    for (int64_t p = 0; p < np; ++p) {
      const float* panel = packed + p * k * kPanel;
      const int valid = valid_cols(p);
      for (int64_t k0 = 0; k0 < k; k0 += kKC) {
        const int64_t kc = std::min(kKC, k - k0);
        for (int64_t mb = 0; mb < mblocks; ++mb) {
          const int mr = int(std::min<int64_t>(kMR, m - mb * kMR));
          micro[size_t(mr - 1)](kc, xp.data() + mb * kMR * k + k0 * mr, panel + k0 * kPanel,
                                 y + mb * kMR * ldy + p * kPanel, ldy, valid, k0 > 0);
        }
      }
    }
  }
}

}  // namespace condense::kernels
