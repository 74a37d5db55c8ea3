#include "train/param_set.h"

#include <algorithm>
#include <cmath>

namespace condense::train {

int64_t ParamSet::numel() const {
  int64_t n = 0;
  for (const Param& p : params) n += p.value->numel();
  return n;
}

void ParamSet::zero_grads() {
  for (Param& p : params) std::fill_n(p.grad->f32(), p.grad->numel(), 0.f);
}

std::string ParamSet::first_non_finite() const {
  for (const Param& p : params) {
    const float* v = p.value->f32();
    const int64_t n = p.value->numel();
    bool bad = false;
    // x - x is 0 for finite x and NaN otherwise: one pass, vectorizable, no branches.
#pragma omp parallel for reduction(|| : bad) schedule(static) if (n >= (1 << 18))
    for (int64_t i = 0; i < n; ++i) bad = bad || (v[i] - v[i] != 0.f);
    if (bad) return p.name;
  }
  return "";
}

double ParamSet::grad_norm() const {
  constexpr int64_t kBlock = 1 << 14;
  double total = 0;
  for (const Param& p : params) {
    const float* g = p.grad->f32();
    const int64_t n = p.grad->numel(), nb = (n + kBlock - 1) / kBlock;
    std::vector<double> part(static_cast<size_t>(nb));
#pragma omp parallel for schedule(static) if (n >= (1 << 18))
    for (int64_t b = 0; b < nb; ++b) {
      double s = 0;
      for (int64_t i = b * kBlock; i < std::min(n, (b + 1) * kBlock); ++i) s += double(g[i]) * g[i];
      part[size_t(b)] = s;
    }
    for (double s : part) total += s;
  }
  return std::sqrt(total);
}

void ParamSet::scale_grads(float s) {
  for (Param& p : params) {
    float* g = p.grad->f32();
    const int64_t n = p.grad->numel();
#pragma omp parallel for schedule(static) if (n >= (1 << 18))
    for (int64_t i = 0; i < n; ++i) g[i] *= s;
  }
}

ParamSet model_params(Model& model, Model& grads, bool decay_all) {
  std::vector<Tensor*> gs;
  for_each_weight(grads, [&](const WeightRef& w) { gs.push_back(w.tensor); });
  ParamSet set;
  size_t i = 0;
  for_each_weight(model, [&](const WeightRef& w) {
    const bool decays = w.kind == WeightKind::Linear || w.kind == WeightKind::Head;
    set.params.push_back({w.name, w.tensor, gs[i++], decay_all || decays});
  });
  return set;
}

Model zeros_model(const ModelConfig& cfg) {
  Model m;
  m.config = cfg;
  allocate_weights(m);
  for_each_weight(m, [](const WeightRef& w) { std::fill_n(w.tensor->f32(), w.tensor->numel(), 0.f); });
  return m;
}

}  // namespace condense::train
