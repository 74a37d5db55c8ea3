#include "train/fake_quant.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace condense::train {

namespace {

// The code range in steps of the scale, relative to the zero point: a value
// latent / s outside [lo, hi] is clipped.
void step_range(const QuantScheme& s, uint8_t zero, float& lo, float& hi) {
  if (s.type == DType::F8E4M3) {
    lo = -448.f;
    hi = 448.f;
  } else {
    const float z = s.symmetric ? 0.f : float(zero);
    lo = float(s.qmin()) - z;
    hi = float(s.qmax()) - z;
  }
}

constexpr float kMinScale = 1e-10f;  // a learned scale never reaches 0 (latent / s would be infinite)

// Visits every element of e: kept(i, si, scale, zero) for kept ones, removed(i) for pruned ones.
template <class Kept, class Removed>
void each_element(const FakeQuant::Entry& e, Kept kept, Removed removed) {
  const QuantScheme& s = e.wc->scheme;
  for (int64_t r = 0; r < e.rows; ++r) {
    for (int64_t c = 0; c < e.cols; ++c) {
      const int64_t i = r * e.cols + c, si = s.scale_index(r, c, e.cols);
      if (!e.wc->kept(i)) {
        removed(i);
        continue;
      }
      kept(i, si, e.wc->scales[size_t(si)], s.symmetric ? uint8_t(0) : e.wc->zeros[size_t(si)]);
    }
  }
}

}  // namespace

FakeQuant::FakeQuant(Model& m, bool learn_scales) : learn_scales_(learn_scales) {
  size_t index = 0;
  for_each_weight(m, [&](const WeightRef& r) {
    const size_t weight_index = index++;
    auto it = m.compression.find(r.name);
    if (it == m.compression.end() || !it->second.scheme.quantized()) return;
    Entry e;
    e.weight_index = weight_index;
    e.name = r.name;
    e.weight = r.tensor;
    e.wc = &it->second;
    e.rows = r.tensor->dim(0);
    e.cols = r.tensor->ndim() == 2 ? r.tensor->dim(1) : 1;
    // the quantize stage's effective values are on the grid: Q(latent) reproduces them
    e.latent = Tensor::zeros(DType::F32, r.tensor->shape());
    std::copy_n(r.tensor->f32(), r.tensor->numel(), e.latent.f32());
    e.latent_grad = Tensor::zeros(DType::F32, r.tensor->shape());
    const int64_t ns = int64_t(e.wc->scales.size());
    e.scale = Tensor::zeros(DType::F32, {ns});
    std::copy_n(e.wc->scales.data(), ns, e.scale.f32());
    e.scale_grad = Tensor::zeros(DType::F32, {ns});
    entries_.push_back(std::move(e));
  });
  if (entries_.empty()) fail("qat", "the model has no quantized weight to train", "Put a quantize stage before the qat stage");
  quantize();
}

void FakeQuant::quantize() {
  for (Entry& e : entries_) {
    const QuantScheme& s = e.wc->scheme;
    float* sc = e.scale.f32();
    for (int64_t k = 0; k < e.scale.numel(); ++k) {
      if (!(sc[k] >= kMinScale)) sc[k] = kMinScale;
      e.wc->scales[size_t(k)] = round_scale_up(sc[k]);
    }
    const float* lat = e.latent.f32();
    float* w = e.weight->f32();
    each_element(
        e,
        [&](int64_t i, int64_t, float scale, uint8_t zero) {
          const uint8_t code = quant_value(s, lat[i], scale, zero);
          e.wc->codes[size_t(i)] = code;
          w[i] = dequant_code(s, code, scale, zero);
        },
        [&](int64_t i) { w[i] = 0.f; });
  }
}

void FakeQuant::backward(Model& grads) {
  std::vector<Tensor*> all;  // for_each_weight's order is the same for every model of a config
  for_each_weight(grads, [&](const WeightRef& r) { all.push_back(r.tensor); });
  for (Entry& e : entries_) {
    const QuantScheme& s = e.wc->scheme;
    float* g = all[e.weight_index]->f32();
    const float* lat = e.latent.f32();
    float* lg = e.latent_grad.f32();
    float* sg = e.scale_grad.f32();
    // LSQ's gradient scale: 1 / sqrt(weights per scale * largest code)
    const double per_scale = double(e.rows * e.cols) / double(e.scale.numel());
    const float gscale = float(1.0 / std::sqrt(per_scale * (s.type == DType::F8E4M3 ? 448.0 : double(s.qmax()))));
    each_element(
        e,
        [&](int64_t i, int64_t si, float scale, uint8_t zero) {
          const float v = lat[i] / scale;
          float lo, hi;
          step_range(s, zero, lo, hi);
          const bool inside = v >= lo && v <= hi;
          if (inside) lg[i] += g[i];
          if (learn_scales_) {
            const float q = dequant_code(s, e.wc->codes[size_t(i)], 1.f, zero);  // the code's value in steps
            sg[si] += g[i] * (inside ? q - v : q) * gscale;
          }
          g[i] = 0.f;
        },
        [&](int64_t i) { g[i] = 0.f; });
  }
}

}  // namespace condense::train
