#include "train/adamw.h"

#include <cmath>
#include <numbers>

#include "core/error.h"
#include "kernels/cpu/parallel.h"

namespace condense::train {

AdamW::AdamW(const ParamSet& params, const AdamWConfig& cfg) : cfg_(cfg) {
  for (const Param& p : params.params) {
    m_.push_back(Tensor::zeros(DType::F32, p.value->shape()));
    v_.push_back(Tensor::zeros(DType::F32, p.value->shape()));
  }
}

AdamWStep AdamW::begin_step(double lr) {
  ++t_;
  const double bc1 = 1.0 - std::pow(cfg_.beta1, double(t_)), bc2 = 1.0 - std::pow(cfg_.beta2, double(t_));
  return {float(cfg_.beta1), float(cfg_.beta2), float(cfg_.eps), float(lr / bc1), float(1.0 / std::sqrt(bc2)),
          float(1.0 - lr * cfg_.weight_decay)};
}

void AdamW::step(ParamSet& params, double lr) {
  const AdamWStep c = begin_step(lr);
  const float b1 = c.b1, b2 = c.b2, eps = c.eps, step_size = c.step_size, inv_sqrt_bc2 = c.inv_sqrt_bc2;
  for (size_t i = 0; i < params.params.size(); ++i) {
    Param& p = params.params[i];
    float* w = p.value->f32();
    const float* g = p.grad->f32();
    float* m = m_[i].f32();
    float* v = v_[i].f32();
    const float decay = p.decay ? c.decay : 1.f;
    const int64_t n = p.value->numel();
#pragma omp parallel for schedule(static) if (n >= kernels::kParallelElems)
    for (int64_t j = 0; j < n; ++j) {
      m[j] = b1 * m[j] + (1.f - b1) * g[j];
      v[j] = b2 * v[j] + (1.f - b2) * g[j] * g[j];
      w[j] = w[j] * decay - step_size * m[j] / (std::sqrt(v[j]) * inv_sqrt_bc2 + eps);
    }
  }
}

double Schedule::at(int64_t step) const {
  if (warmup > 0 && step < warmup) return lr * double(step + 1) / double(warmup);
  if (kind == "constant") return lr;
  const int64_t span = std::max<int64_t>(1, total_steps - warmup);
  const double frac = std::min(1.0, double(step - warmup) / double(span));
  if (kind == "linear") return min_lr + (lr - min_lr) * (1.0 - frac);
  if (kind == "cosine") return min_lr + (lr - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * frac));
  fail("Schedule", "unknown schedule '" + kind + "'", "Use cosine, linear or constant");
}

}  // namespace condense::train
