// Width reduction: keeping everything is the identity; dropping FFN channels and
// kv groups gives exactly the model in which those units' output weights are
// zeroed (checked with the independent float64 forward); hidden channels kept
// are the most important ones; importance scores match a direct float64
// computation of mean |silu(g) * u| from the reference's weights.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "core/error.h"
#include "model/shapes.h"
#include "tests/reference/model_ref64.h"
#include "tests/tiny_model.h"
#include "train/width_prune.h"

using namespace condense;

namespace {

// groups of 2 query heads per kv head; biases; untied head
ModelConfig cfg() {
  return testutil::tiny_config({.dim = 24, .heads = 6, .kv = 3, .hd = 4, .ffn = 20, .vocab = 30, .max_seq = 16, .tied = false, .bias = true});
}

Model model(uint64_t seed) {
  Model m = random_model(cfg(), seed);
  // larger weights than the init's 0.02, so every unit matters
  for_each_weight(m, [](const WeightRef& w) {
    if (w.kind != WeightKind::Norm) for (int64_t i = 0; i < w.tensor->numel(); ++i) w.tensor->f32()[i] *= 15.f;
  });
  return m;
}

train::Importance random_importance(const ModelConfig& c, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<double> u;
  train::Importance imp;
  for (int l = 0; l < c.n_layers; ++l) {
    imp.ffn.emplace_back(size_t(c.ffn_dim));
    imp.group.emplace_back(size_t(c.n_kv_heads));
    for (double& x : imp.ffn.back()) x = u(g);
    for (double& x : imp.group.back()) x = u(g);
  }
  imp.hidden.resize(size_t(c.dim));
  for (double& x : imp.hidden) x = u(g);
  return imp;
}


std::vector<int> top(const std::vector<double>& s, int k) {
  std::vector<int> idx(s.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = int(i);
  std::sort(idx.begin(), idx.end(), [&](int a, int b) { return s[size_t(a)] > s[size_t(b)]; });
  idx.resize(size_t(k));
  return idx;
}

}  // namespace

TEST(Width, KeepingEverythingIsTheIdentity) {
  const Model m = model(1);
  const Model s = train::shrink_width(m, random_importance(m.config, 2), {});
  std::vector<const Tensor*> a, b;
  for_each_weight(m, [&](const WeightRef& w) { a.push_back(w.tensor); });
  for_each_weight(s, [&](const WeightRef& w) { b.push_back(w.tensor); });
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i]->shape(), b[i]->shape());
    EXPECT_EQ(0, std::memcmp(a[i]->data(), b[i]->data(), a[i]->nbytes())) << i;
  }
}

TEST(Width, DroppingUnitsEqualsZeroingTheirOutputs) {
  const Model m = model(3);
  const train::Importance imp = random_importance(m.config, 4);
  const Model s = train::shrink_width(m, imp, {12, 4, 0});  // ffn 20 -> 12, heads 6 -> 4 (kv 3 -> 2)
  EXPECT_EQ(s.config.n_kv_heads, 2);
  // the reference: the original with dropped FFN channels' w_down columns and
  // dropped heads' o_proj columns set to zero
  ref::Ref64Model z = ref::ref_from_model(m);
  const ModelConfig& c = m.config;
  for (int l = 0; l < c.n_layers; ++l) {
    const std::vector<int> kf = top(imp.ffn[size_t(l)], 12), kg = top(imp.group[size_t(l)], 2);
    for (int j = 0; j < c.ffn_dim; ++j) {
      if (std::count(kf.begin(), kf.end(), j)) continue;
      for (int r = 0; r < c.dim; ++r) z.layers[size_t(l)].wd[size_t(r) * c.ffn_dim + j] = 0;
    }
    for (int h = 0; h < c.n_heads; ++h) {
      if (std::count(kg.begin(), kg.end(), h / 2)) continue;
      for (int r = 0; r < c.dim; ++r) {
        for (int i = 0; i < c.head_dim; ++i) z.layers[size_t(l)].wo[size_t(r) * c.n_heads * c.head_dim + h * c.head_dim + i] = 0;
      }
    }
  }
  const std::vector<int> tokens = {1, 5, 9, 2, 27, 13, 13, 0, 8};
  const std::vector<double> want = ref::forward64(z, tokens, nullptr), got = ref::forward64(ref::ref_from_model(s), tokens, nullptr);
  ASSERT_EQ(want.size(), got.size());
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::fabs(want[i] - got[i]));
  EXPECT_LT(worst, 1e-9);
  // and the dropped units mattered: the full model differs
  const std::vector<double> full = ref::forward64(ref::ref_from_model(m), tokens, nullptr);
  double diff = 0;
  for (size_t i = 0; i < full.size(); ++i) diff = std::max(diff, std::fabs(full[i] - want[i]));
  EXPECT_GT(diff, 1e-3);
}

TEST(Width, HiddenChannelsKeptAreTheMostImportant) {
  const Model m = model(5);
  const train::Importance imp = random_importance(m.config, 6);
  const Model s = train::shrink_width(m, imp, {0, 0, 16});
  ASSERT_EQ(s.config.dim, 16);
  std::vector<int> keep = top(imp.hidden, 16);
  std::sort(keep.begin(), keep.end());
  for (int v = 0; v < m.config.vocab; ++v) {
    for (int j = 0; j < 16; ++j) ASSERT_EQ(s.embed.f32()[v * 16 + j], m.embed.f32()[v * m.config.dim + keep[size_t(j)]]);
  }
  EXPECT_EQ(s.layers[1].w_down.dim(0), 16);
  EXPECT_EQ(s.layers[0].wq.dim(1), 16);
  EXPECT_THROW(train::shrink_width(m, imp, {0, 5, 0}), Error);   // 5 heads: not whole groups of 2
  EXPECT_THROW(train::shrink_width(m, imp, {40, 0, 0}), Error);  // wider than the model
}

// measure_importance's FFN scores against mean |silu(x_n W_g^T) * (x_n W_u^T)|
// computed here in float64, on a one-layer model whose o_proj is zero so that
// the FFN's input is the embedding itself (x_n = RMSNorm(embedding)).
TEST(Width, FfnImportanceMatchesFloat64) {
  ModelConfig c = cfg();
  c.n_layers = 1;
  Model m = random_model(c, 7);
  for_each_weight(m, [](const WeightRef& w) {
    if (w.kind != WeightKind::Norm) for (int64_t i = 0; i < w.tensor->numel(); ++i) w.tensor->f32()[i] *= 15.f;
  });
  std::fill_n(m.layers[0].wo.f32(), m.layers[0].wo.numel(), 0.f);  // attention adds nothing
  std::vector<int> toks(400);
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = int((i * 7919) % 30);
  const auto data = train::TokenDataset::from_tokens(toks, {}, "t");
  const train::Importance imp = train::measure_importance(m, data, 4, 16, 1, 9);
  // the same windows, float64
  std::vector<int> in(64), tg(64);
  data.sample(9, 0, 0, 4, 16, 1, in.data(), tg.data());
  std::vector<double> want(size_t(c.ffn_dim), 0.0);
  for (int t : in) {
    const float* e = m.embed.f32() + t * c.dim;
    double ss = 0;
    for (int i = 0; i < c.dim; ++i) ss += double(e[i]) * e[i];
    const double r = 1.0 / std::sqrt(ss / c.dim + c.norm_eps);
    for (int j = 0; j < c.ffn_dim; ++j) {
      double g = 0, u = 0;
      for (int i = 0; i < c.dim; ++i) {
        const double xn = e[i] * r * m.layers[0].ffn_norm.f32()[i];
        g += xn * m.layers[0].w_gate.f32()[j * c.dim + i];
        u += xn * m.layers[0].w_up.f32()[j * c.dim + i];
      }
      want[size_t(j)] += std::fabs(g / (1 + std::exp(-g)) * u) / 64.0;
    }
  }
  for (int j = 0; j < c.ffn_dim; ++j) EXPECT_NEAR(imp.ffn[0][size_t(j)], want[size_t(j)], 1e-4 * want[size_t(j)] + 1e-6) << j;
}
