#include "model/activation_quant.h"

#include <cmath>

#include "core/error.h"
#include "kernels/common/minifloat.h"

namespace condense {

void fake_quant_rows(float* x, int64_t rows, int64_t cols, int64_t stride, DType type, float static_scale) {
  if (type == DType::I8) {
#pragma omp parallel for schedule(static) if (rows * cols >= (1 << 16))
    for (int64_t r = 0; r < rows; ++r) {
      float* p = x + r * stride;
      float amax = 0;
      for (int64_t j = 0; j < cols; ++j) amax = std::fmax(amax, std::fabs(p[j]));
      if (amax == 0) continue;
      const float s = amax / 127.f, inv = 1.f / s;
      for (int64_t j = 0; j < cols; ++j) p[j] = s * std::fmin(127.f, std::fmax(-127.f, std::nearbyint(p[j] * inv)));
    }
  } else if (type == DType::F8E4M3) {
    if (!(static_scale > 0)) fail("fake_quant_rows", "an fp8 activation scale must be positive");
#pragma omp parallel for schedule(static) if (rows * cols >= (1 << 16))
    for (int64_t r = 0; r < rows; ++r) {
      float* p = x + r * stride;
      for (int64_t j = 0; j < cols; ++j) p[j] = static_scale * minifloat::e4m3_to_f32(minifloat::f32_to_e4m3(p[j] / static_scale));
    }
  } else if (type != DType::F32) {
    fail("fake_quant_rows", std::string("activations cannot be quantized to ") + name(type));
  }
}

}  // namespace condense
