// Quantization-aware training: fake quantization reproduces the quantize
// stage's weights, the straight-through and LSQ gradients match a float64
// implementation of their definitions written here (and a finite difference
// where Q is differentiable: clipped elements, Q = s * qmax), and training
// keeps every weight on its grid, pruned elements at 0 and the compression
// entry in step with the model.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "compress/prune_model.h"
#include "compress/quantize_model.h"
#include "core/error.h"
#include "model/shapes.h"
#include "tests/tiny_model.h"
#include "train/fake_quant.h"
#include "train/param_set.h"
#include "train/token_data.h"
#include "train/trainer.h"

using namespace condense;

namespace {

Model quantized_tiny(uint64_t seed, const QuantScheme& s) {
  Model m = random_model(testutil::tiny_config({.ffn = 64}), seed);
  compress::QuantizeOptions q;
  q.scheme = s;
  compress::quantize_model(m, q, nullptr);
  return m;
}

const QuantScheme kInt4 = QuantScheme::of(DType::I4, Granularity::Group, 16);

using testutil::pattern_data;

// Every quantized weight equals its codes through its scales, bit for bit.
void expect_on_grid(const Model& m) {
  for_each_weight(m, [&](const WeightRef& r) {
    auto it = m.compression.find(r.name);
    if (it == m.compression.end() || !it->second.scheme.quantized()) return;
    std::vector<float> d(size_t(r.tensor->numel()));
    dequantize(it->second, r.tensor->dim(0), r.tensor->dim(1), d.data());
    for (int64_t i = 0; i < r.tensor->numel(); ++i) ASSERT_EQ(r.tensor->f32()[i], d[size_t(i)]) << r.name << " " << i;
  });
}

}  // namespace

TEST(FakeQuant, StartsExactlyAtTheQuantizeStageWeights) {
  for (const QuantScheme& s : {kInt4, QuantScheme::of(DType::I8, Granularity::PerChannel, 0, false),
                               QuantScheme::of(DType::F8E4M3, Granularity::PerTensor)}) {
    SCOPED_TRACE(s.describe());
    Model m = quantized_tiny(1, s);
    const Model ref = quantized_tiny(1, s);
    train::FakeQuant fq(m, true);
    EXPECT_EQ(fq.entries().size(), size_t(7 * m.config.n_layers));
    testutil::expect_same_weights(m, ref);
    for (const auto& [n, wc] : ref.compression) {
      EXPECT_EQ(m.compression.at(n).codes, wc.codes) << n;
      EXPECT_EQ(m.compression.at(n).scales, wc.scales) << n;
    }
  }
}

TEST(FakeQuant, StraightThroughAndLsqGradientsMatchTheirDefinition) {
  Model m = quantized_tiny(2, kInt4);
  train::FakeQuant fq(m, true);
  train::FakeQuant::Entry& e = fq.entries()[3];
  // push some latents outside the code range, then requantize
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (int64_t i = 0; i < e.latent.numel(); i += 7) e.latent.f32()[i] *= 12.f;
  fq.quantize();
  Model grads = train::zeros_model(m.config);
  Tensor* gw = nullptr;
  for_each_weight(grads, [&](const WeightRef& r) {
    if (r.name == e.name) gw = r.tensor;
  });
  std::vector<double> g(size_t(gw->numel()));
  for (int64_t i = 0; i < gw->numel(); ++i) gw->f32()[i] = float(g[size_t(i)] = nd(rng));
  fq.backward(grads);

  // float64: v = latent / s; inside [-8, 7]: dL/dlatent = g, dL/ds += g (round(v) - v); outside: 0 and g * clamp(round(v))
  const QuantScheme& s = e.wc->scheme;
  const int64_t cols = e.cols, per_scale = s.group;
  std::vector<double> sg(size_t(e.scale.numel()), 0.0);
  int clipped = 0;
  for (int64_t r = 0; r < e.rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t i = r * cols + c, si = s.scale_index(r, c, cols);
      const double scale = e.wc->scales[size_t(si)], v = double(e.latent.f32()[i]) / scale;
      const double q = std::clamp(std::nearbyint(v), -8.0, 7.0);
      const bool inside = v >= -8 && v <= 7;
      clipped += !inside;
      EXPECT_EQ(double(e.latent_grad.f32()[i]), inside ? double(float(g[size_t(i)])) : 0.0) << i;
      sg[size_t(si)] += double(float(g[size_t(i)])) * (inside ? q - v : q) / std::sqrt(double(per_scale) * 7.0);
    }
  }
  EXPECT_GT(clipped, 10);
  for (int64_t k = 0; k < e.scale.numel(); ++k) EXPECT_NEAR(e.scale_grad.f32()[k], sg[size_t(k)], 1e-4 * (1 + std::fabs(sg[size_t(k)])));
  for (int64_t i = 0; i < gw->numel(); ++i) ASSERT_EQ(gw->f32()[i], 0.f) << "weight gradients are consumed";
}

TEST(FakeQuant, ClippedElementsScaleGradientIsTheFiniteDifference) {
  // every latent far outside the range: Q = s * qmax (or s * qmin) is linear in s,
  // so the LSQ gradient (without its 1/sqrt(n qmax) factor) is dQ/ds exactly
  Model m = quantized_tiny(4, kInt4);
  train::FakeQuant fq(m, true);
  train::FakeQuant::Entry& e = fq.entries()[0];
  for (int64_t i = 0; i < e.latent.numel(); ++i) e.latent.f32()[i] = (i % 2 ? 1.f : -1.f) * 100.f;
  fq.quantize();
  Model grads = train::zeros_model(m.config);
  std::vector<double> g(size_t(e.latent.numel()));
  std::mt19937 rng(5);
  std::normal_distribution<double> nd(0, 1);
  for_each_weight(grads, [&](const WeightRef& r) {
    if (r.name != e.name) return;
    for (int64_t i = 0; i < r.tensor->numel(); ++i) r.tensor->f32()[i] = float(g[size_t(i)] = nd(rng));
  });
  fq.backward(grads);
  auto loss = [&](double scale_delta) {  // L = sum g * Q with scale 0 changed
    double l = 0;
    for (int64_t c = 0; c < kInt4.group; ++c) {
      const double s0 = e.wc->scales[0] + scale_delta;
      l += g[size_t(c)] * s0 * (e.latent.f32()[c] > 0 ? 7.0 : -8.0);
    }
    return l;
  };
  const double h = 1e-3, fd = (loss(h) - loss(-h)) / (2 * h);
  EXPECT_NEAR(e.scale_grad.f32()[0] * std::sqrt(double(kInt4.group) * 7.0), fd, 1e-4 * (1 + std::fabs(fd)));
}

TEST(Qat, TrainingKeepsWeightsOnTheGridAndMasksAtZero) {
  Model m = random_model(testutil::tiny_config({.ffn = 64}), 6);
  compress::PruneOptions p;
  p.sparsity = 0.5;
  compress::prune_model(m, p, nullptr);
  compress::QuantizeOptions q;
  q.scheme = kInt4;
  compress::quantize_model(m, q, nullptr);
  const Model start = [&] {
    Model c = random_model(testutil::tiny_config({.ffn = 64}), 6);
    compress::prune_model(c, p, nullptr);
    compress::quantize_model(c, q, nullptr);
    return c;
  }();
  const train::TokenDataset data = pattern_data(m.config.vocab, 7);
  train::TrainOptions o = testutil::short_run(6, 2, 16, 3e-2);
  o.qat = true;
  o.learn_scales = true;
  train::Trainer tr(m, nullptr, {}, o, data, m.config.bos_id);
  tr.run({}, {});
  expect_on_grid(m);
  int changed_codes = 0, changed_scales = 0;
  for (const auto& [n, wc] : m.compression) {
    const WeightCompression& w0 = start.compression.at(n);
    ASSERT_EQ(wc.mask, w0.mask);
    for (size_t i = 0; i < wc.codes.size(); ++i) {
      if (!wc.kept(int64_t(i))) continue;
      changed_codes += wc.codes[i] != w0.codes[i];
    }
    for (size_t k = 0; k < wc.scales.size(); ++k) changed_scales += wc.scales[k] != w0.scales[k];
  }
  EXPECT_GT(changed_codes, 100) << "latent weights crossed rounding boundaries";
  EXPECT_GT(changed_scales, 10) << "LSQ moved the scales";
  for_each_weight(m, [&](const WeightRef& r) {
    auto it = m.compression.find(r.name);
    if (it == m.compression.end()) return;
    for (int64_t i = 0; i < r.tensor->numel(); ++i) {
      if (!it->second.kept(i)) {
        ASSERT_EQ(r.tensor->f32()[i], 0.f);
      }
    }
  });
}

TEST(Qat, LowersTheLossOfARoundedModel) {
  Model m = quantized_tiny(8, kInt4);
  const train::TokenDataset data = pattern_data(m.config.vocab, 9);
  train::TrainOptions o = testutil::short_run(30, 4, 16, 1e-2);
  o.val_windows = 8;
  o.qat = true;
  train::Trainer tr(m, nullptr, {}, o, data, m.config.bos_id);
  const double before = tr.validate().loss;
  tr.run({}, {});
  EXPECT_LT(tr.validate().loss, before - 0.05);
  expect_on_grid(m);
}

TEST(Qat, TrainingAQuantizedModelWithoutQatIsRefused) {
  Model m = quantized_tiny(10, kInt4);
  const train::TokenDataset data = pattern_data(m.config.vocab, 11);
  train::TrainOptions o = testutil::short_run(1, 1, 8, 1e-3);
  EXPECT_THROW(train::Trainer(m, nullptr, {}, o, data, m.config.bos_id), Error);
  Model dense = random_model(testutil::tiny_config({}), 12);
  o.qat = true;
  EXPECT_THROW(train::Trainer(dense, nullptr, {}, o, data, dense.config.bos_id), Error);
}
