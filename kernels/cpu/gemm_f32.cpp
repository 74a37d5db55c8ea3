// Blocking as in linear_f32.cpp (the same on every ISA; only the micro-kernel
// differs), with both operands packed on the fly, one
// KC-deep slab at a time: all threads pack the slab of A into MR-row blocks
// ([kc][MR], alpha folded in); then each thread packs one 32-column panel slice
// of B ([kc][32], zero-padded) and sweeps every row block over it. Buffers stay
// at m x KC and KC x 32 floats whatever k is (the 32000-wide LM head included).
#include "kernels/cpu/gemm_f32.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <new>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/microkernel_f32.h"
#include "kernels/cpu/parallel.h"

namespace condense::kernels {
namespace {

constexpr int kMR = kMicroRows, kNR = kMicroCols;
constexpr int64_t kKC = kMicroDepth;

void scale_c(int64_t m, int64_t n, float beta, float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    float* ci = c + i * ldc;
    if (beta == 0.f) std::fill(ci, ci + n, 0.f);
    else for (int64_t j = 0; j < n; ++j) ci[j] *= beta;
  }
}

// out[p * mr + r] = alpha * A(i0 + r, p0 + p) for p < kc, loops ordered for the unit stride.
void pack_a(const float* a, int64_t a_rs, int64_t a_cs, int64_t i0, int mr, int64_t p0, int64_t kc, float alpha, float* out) {
  if (a_cs == 1) {
    for (int r = 0; r < mr; ++r) {
      const float* ar = a + (i0 + r) * a_rs + p0;
      for (int64_t p = 0; p < kc; ++p) out[p * mr + r] = alpha * ar[p];
    }
  } else {
    for (int64_t p = 0; p < kc; ++p) {
      for (int r = 0; r < mr; ++r) out[p * mr + r] = alpha * a[(i0 + r) * a_rs + (p0 + p) * a_cs];
    }
  }
}

// out[p * 32 + j] = B(p0 + p, j0 + j) for p < kc, j < valid; 0 beyond valid.
void pack_b(const float* b, int64_t b_rs, int64_t b_cs, int64_t p0, int64_t j0, int valid, int64_t k, float* out) {
  b += p0 * b_rs;
  if (b_cs == 1) {
    for (int64_t p = 0; p < k; ++p) {
      const float* bp = b + p * b_rs + j0;
      float* o = out + p * kNR;
      for (int j = 0; j < valid; ++j) o[j] = bp[j];
      for (int j = valid; j < kNR; ++j) o[j] = 0.f;
    }
  } else {
    for (int j = 0; j < kNR; ++j) {
      if (j >= valid) {
        for (int64_t p = 0; p < k; ++p) out[p * kNR + j] = 0.f;
        continue;
      }
      const float* bj = b + (j0 + j) * b_cs;
      for (int64_t p = 0; p < k; ++p) out[p * kNR + j] = bj[p * b_rs];
    }
  }
}

// A 64-byte aligned float buffer that only grows (the micro-kernel loads aligned).
struct PackBuffer {
  float* p = nullptr;
  size_t cap = 0;
  ~PackBuffer() { std::free(p); }
  float* get(size_t n) {
    if (n > cap) {
      std::free(p);
      cap = (n + 15) / 16 * 16;
      p = static_cast<float*>(std::aligned_alloc(64, cap * sizeof(float)));
      if (!p) throw std::bad_alloc();
    }
    return p;
  }
};

}  // namespace

void gemm_f32(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
              int64_t b_rs, int64_t b_cs, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == 0.f) {
    scale_c(m, n, beta, c, ldc);
    return;
  }
  const MicroTable& micro = micro_table(active_isa());
  // GotoBLAS order: per KC slab, B is packed once into 32-wide panels and A into
  // 12-row blocks; each task then holds an MC-row group of A (~200 KB, in L2)
  // while it sweeps every B panel (streamed through L1). Buffers are per calling
  // thread and only grow, so repeated calls fault no fresh pages.
  const int64_t mblocks = (m + kMR - 1) / kMR, npanels = (n + kNR - 1) / kNR;
  const int64_t kc_max = std::min(k, kKC);
  thread_local PackBuffer ap_buf, bp_buf;
  float* ap = ap_buf.get(size_t(mblocks * kMR * kc_max));
  float* bp = bp_buf.get(size_t(npanels * kNR * kc_max));
  constexpr int64_t kGroup = 16;  // m-blocks per task: MC = 192 rows
  const int64_t groups = (mblocks + kGroup - 1) / kGroup;
  const bool par = m * n * k >= kParallelMacs;
  const bool by_group = groups >= 2 * int64_t(omp_get_max_threads());
  if (beta != 0.f && beta != 1.f) scale_c(m, n, beta, c, ldc);
#pragma omp parallel if (par)
  {
    for (int64_t k0 = 0; k0 < k; k0 += kKC) {
      const int64_t kc = std::min(kKC, k - k0);
      const bool acc = k0 > 0 || beta != 0.f;
#pragma omp for schedule(dynamic, 8)
      for (int64_t mb = 0; mb < mblocks; ++mb) {
        const int mr = int(std::min<int64_t>(kMR, m - mb * kMR));
        pack_a(a, a_rs, a_cs, mb * kMR, mr, k0, kc, alpha, ap + mb * kMR * kc);
      }
#pragma omp for schedule(dynamic, 8)
      for (int64_t pn = 0; pn < npanels; ++pn) {
        pack_b(b, b_rs, b_cs, k0, pn * kNR, int(std::min<int64_t>(kNR, n - pn * kNR)), kc, bp + pn * kNR * kc);
      }
      auto tile = [&](int64_t mb, int64_t pn) {
        const int mr = int(std::min<int64_t>(kMR, m - mb * kMR));
        const int valid = int(std::min<int64_t>(kNR, n - pn * kNR));
        micro[size_t(mr - 1)](kc, ap + mb * kMR * kc, bp + pn * kNR * kc, c + mb * kMR * ldc + pn * kNR, ldc, valid, acc);
      };
      // Threads split the row groups when there are enough of them, else the panels.
      const int64_t outer = by_group ? groups : npanels, inner = by_group ? npanels : groups;
      // Dynamic: a thread slowed by a busy neighbour core takes fewer tasks
      // instead of holding the others at the barrier (each C tile is still
      // summed in one fixed order, so results do not depend on the schedule).
#pragma omp for schedule(dynamic)
      for (int64_t o = 0; o < outer; ++o) {
        for (int64_t i = 0; i < inner; ++i) {
          const int64_t g = by_group ? o : i, pn = by_group ? i : o;
          for (int64_t mb = g * kGroup; mb < std::min(mblocks, (g + 1) * kGroup); ++mb) tile(mb, pn);
        }
      }  // the implicit barrier keeps this slab's packs alive until every tile used them
    }
  }
}

}  // namespace condense::kernels
