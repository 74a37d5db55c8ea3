// KV cache quantization: the cache stores scale * decode(encode(x / scale)),
// checked against a float64 codec over the enumerated E4M3 grid; the engine
// applies it (logits move by an fp8-sized amount) identically in prefill and
// in token-by-token decoding; calibrated scales map each layer's largest
// |key| / |value| (measured independently with a full-model graph) to 448; a
// .cpk keeps the scales.
#include <gtest/gtest.h>

#include <cmath>

#include "compress/kv_calibration.h"
#include "core/error.h"
#include "io/cpk.h"
#include "kernels/cpu/kv_paged.h"
#include "model/shapes.h"
#include "runtime/engine.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"
#include "train/model_graph.h"

using namespace condense;

namespace {

Model model() {
  Model m = random_model(testutil::tiny_config({.ffn = 40}), 3);
  for_each_weight(m, [](const WeightRef& w) {
    if (w.kind != WeightKind::Norm) for (int64_t i = 0; i < w.tensor->numel(); ++i) w.tensor->f32()[i] *= 10.f;
  });
  return m;
}

compress::CalibrationSet calib(int n_seq, int seq) { return testutil::pattern_calibration(n_seq, seq); }

}  // namespace

TEST(KvCache, CalibratedScalesMapAbsMaxTo448) {
  Model m = model();
  const compress::CalibrationSet c = calib(4, 16);
  compress::KvCalibrationOptions o;
  o.per_head = true;
  compress::calibrate_kv(m, o, &c);
  // independent measurement: a full-model graph over the same windows keeps every layer's K/V
  train::ModelGraph g(m.config, 4, 16, true);
  g.forward(m, c.inputs.data());
  for (int l = 0; l < m.config.n_layers; ++l) {
    for (auto [act, scales] : {std::pair{train::ModelGraph::Act::Keys, &m.kv_cache.k_scales},
                               {train::ModelGraph::Act::Values, &m.kv_cache.v_scales}}) {
      const ops::Mat x = g.activation(l, act);
      std::vector<double> amax(2, 0.0);
      for (int64_t r = 0; r < x.rows; ++r) {
        for (int64_t j = 0; j < x.cols; ++j) amax[size_t((r / 16) % 2)] = std::max(amax[size_t((r / 16) % 2)], std::fabs(double(x.row(r)[j])));
      }
      for (int h = 0; h < 2; ++h) EXPECT_NEAR((*scales)[size_t(l * 2 + h)] * 448.0, amax[size_t(h)], 1e-4 * amax[size_t(h)]) << l << "," << h;
    }
  }
}

TEST(KvCache, EngineAppliesTheCacheInPrefillAndDecode) {
  Model m = model();
  const compress::CalibrationSet c = calib(2, 16);
  compress::KvCalibrationOptions o;
  compress::calibrate_kv(m, o, &c);
  // logits with the fp8 cache differ from the f32 cache's by an fp8-sized amount
  std::vector<int> toks(c.inputs.begin(), c.inputs.begin() + 16);
  std::vector<float> a(16 * 40), b(16 * 40), f(16 * 40);
  Engine e1(m, 16);
  e1.forward(toks.data(), 16, 0, a.data(), 16);
  Model plain = m;
  plain.kv_cache = {};
  Engine e0(plain, 16);
  e0.forward(toks.data(), 16, 0, f.data(), 16);
  double diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, double(std::fabs(a[i] - f[i])));
  EXPECT_GT(diff, 1e-4);  // quantization is applied
  EXPECT_LT(diff, 1.0);   // and is an fp8-sized perturbation
  // decoding one token at a time reads the same quantized cache as prefill
  // (f32 summation order differs, hence the tolerance)
  Engine e2(m, 16);
  for (int i = 0; i < 16; ++i) e2.forward(&toks[size_t(i)], 1, i, b.data() + size_t(i) * 40, 1);
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-4f * (1 + std::fabs(a[i]))) << i;
}

TEST(KvCache, CpkKeepsTheScales) {
  testutil::TempDir d;
  Model m = model();
  const compress::CalibrationSet c = calib(2, 16);
  compress::KvCalibrationOptions o;
  o.type = DType::I8;
  o.per_head = true;
  compress::calibrate_kv(m, o, &c);
  save_cpk(m, d / "m.cpk", {});
  const LoadedModel back = load_cpk(d / "m.cpk");
  EXPECT_EQ(back.model.kv_cache.type, DType::I8);
  EXPECT_TRUE(back.model.kv_cache.per_head);
  EXPECT_EQ(back.model.kv_cache.k_scales, m.kv_cache.k_scales);
  EXPECT_EQ(back.model.kv_cache.v_scales, m.kv_cache.v_scales);
}

TEST(KvCache, StoreMatchesFloat64Codec) {
  // One paged block (2 kv heads of 8), position 2, written and read back.
  const float ks[2] = {0.05f, 0.2f}, vs[2] = {0.01f, 3.f};
  std::vector<uint8_t> block(size_t(kernels::kv_block_bytes(kernels::KvCode::E4M3, 2, 8, 16)));
  const int32_t table[1] = {0};
  kernels::KvPagedView kv;
  kv.code = kernels::KvCode::E4M3;
  kv.base = block.data();
  kv.block_bytes = int64_t(block.size());
  kv.table = table;
  kv.n_kv = 2;
  kv.hd = 8;
  kv.k_scale = ks;
  kv.v_scale = vs;
  std::vector<float> k(16), v(16);
  for (int i = 0; i < 16; ++i) {
    k[size_t(i)] = float(std::sin(i * 1.7) * 20);
    v[size_t(i)] = float(std::cos(i * 0.9) * 2);
  }
  kernels::kv_paged_write(kv, k.data(), v.data(), 2);
  std::vector<float> kr(16), vr(16);
  for (int h = 0; h < 2; ++h) {
    kernels::kv_paged_read(kv, false, h, 2, 1, kr.data() + h * 8);
    kernels::kv_paged_read(kv, true, h, 2, 1, vr.data() + h * 8);
  }
  // float64 reference: nearest E4M3 value (enumerated) of x / scale, saturating at 448
  std::vector<double> grid;
  for (int c = 0; c < 127; ++c) {
    const int e = c >> 3, mnt = c & 7;
    grid.push_back(e == 0 ? std::ldexp(mnt, -9) : std::ldexp(8 + mnt, e - 10));
  }
  // x / scale is the f32 quotient (what the cache encodes); the rounding to the grid is float64
  auto ref = [&](float x, float s) {
    const double a = std::fabs(double(x / s));
    double best = grid[0];
    for (double g : grid) {
      if (std::fabs(g - a) < std::fabs(best - a)) best = g;
    }
    return (x < 0 ? -best : best) * double(s);
  };
  for (int h = 0; h < 2; ++h) {
    for (int i = 0; i < 8; ++i) {
      const double kq = kr[size_t(h * 8 + i)], vq = vr[size_t(h * 8 + i)];
      EXPECT_NEAR(kq, ref(k[size_t(h * 8 + i)], ks[h]), 1e-6 * std::fabs(kq) + 1e-9);
      EXPECT_NEAR(vq, ref(v[size_t(h * 8 + i)], vs[h]), 1e-6 * std::fabs(vq) + 1e-9);
    }
  }
}
