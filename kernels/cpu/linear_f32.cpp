// Dense f32 linear: the packed panels are qlinear.h's f32 layout, so the
// multiply is linear_q's (one reduction order for every m: batch invariant).
#include "kernels/cpu/linear_f32.h"

#include "kernels/cpu/qlinear.h"

namespace condense::kernels {

int64_t packed_f32_size(int64_t n, int64_t k) { return (n + kPanel - 1) / kPanel * k * kPanel; }

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
  QMatrix w;
  w.layout.code = WCode::F32;
  w.layout.n = n;
  w.layout.k = k;
  w.codes = reinterpret_cast<const uint8_t*>(packed);
  linear_q(x, m, ldx, w, y, ldy);
}

}  // namespace condense::kernels
