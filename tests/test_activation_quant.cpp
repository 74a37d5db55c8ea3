// W8A8: the activation codec against float64 (int8 per-token within half a
// step of amax/127; fp8 within E4M3's half-ulp and saturating at 448), the
// engine applying it (logits move by a quantization-sized amount, the same in
// prefill and decode up to rounding flips from f32 order), SmoothQuant leaving
// the f32 model's function unchanged while shrinking activation outliers, and
// the .cpk keeping the activation settings.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>

#include "compress/quantize_model.h"
#include "compress/smoothquant.h"
#include "core/error.h"
#include "io/cpk.h"
#include "model/activation_quant.h"
#include "model/shapes.h"
#include "runtime/engine.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"

using namespace condense;

namespace {

Model model(uint64_t seed) {
  Model m = random_model(testutil::tiny_config({.ffn = 40}), seed);
  // outlier input channels, as real LLMs have: scale a few columns of every norm
  for (LayerWeights& l : m.layers) {
    for (Tensor* t : {&l.attn_norm, &l.ffn_norm}) {
      t->f32()[3] *= 20.f;
      t->f32()[17] *= 12.f;
    }
  }
  return m;
}

compress::CalibrationSet calib(int n_seq, int seq) { return testutil::pattern_calibration(n_seq, seq); }

std::vector<float> logits(const Model& m, const std::vector<int>& toks) {
  Engine e(m, int(toks.size()));
  std::vector<float> out(toks.size() * size_t(m.config.vocab));
  e.forward(toks.data(), int(toks.size()), 0, out.data(), int(toks.size()));
  return out;
}

}  // namespace

TEST(ActivationCodec, Int8PerTokenWithinHalfAStep) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int64_t rows = 5, cols = 33, ld = 40;
  std::vector<float> x(size_t(rows * ld));
  for (float& v : x) v = nd(rng);
  x[7] = 25.f;  // an outlier sets row 0's scale
  std::vector<float> q = x;
  fake_quant_rows(q.data(), rows, cols, ld, DType::I8, 0.f);
  for (int64_t r = 0; r < rows; ++r) {
    double amax = 0;
    for (int64_t j = 0; j < cols; ++j) amax = std::max(amax, std::fabs(double(x[size_t(r * ld + j)])));
    const double s = amax / 127;
    for (int64_t j = 0; j < cols; ++j) {
      const double xv = x[size_t(r * ld + j)], qv = q[size_t(r * ld + j)];
      EXPECT_LE(std::fabs(xv - qv), s / 2 * (1 + 1e-5)) << r << "," << j;
      EXPECT_NEAR(qv / s, std::nearbyint(qv / s), 1e-3) << "on the grid";
    }
    for (int64_t j = cols; j < ld; ++j) EXPECT_EQ(q[size_t(r * ld + j)], x[size_t(r * ld + j)]) << "padding untouched";
  }
}

TEST(ActivationCodec, Fp8StaticWithinHalfAnUlpAndSaturates) {
  std::mt19937 rng(2);
  std::normal_distribution<float> nd(0.f, 3.f);
  const float s = 0.01f;
  std::vector<float> x(256);
  for (float& v : x) v = nd(rng);
  x[0] = 10.f;  // 1000 steps: saturates at 448 * s
  std::vector<float> q = x;
  fake_quant_rows(q.data(), 1, 256, 256, DType::F8E4M3, s);
  EXPECT_FLOAT_EQ(q[0], 448.f * s);
  for (size_t i = 1; i < x.size(); ++i) {
    const double v = double(x[i]) / s, r = double(q[i]) / s;
    if (std::fabs(v) > 448) continue;
    // E4M3: 3 mantissa bits, so half an ulp is 2^-4 relative (normal), 2^-10 absolute (subnormal)
    EXPECT_LE(std::fabs(v - r), std::max(std::fabs(v) / 16, 1.0 / 1024) * (1 + 1e-6)) << i;
  }
  EXPECT_THROW(fake_quant_rows(q.data(), 1, 256, 256, DType::F8E4M3, 0.f), Error);
  EXPECT_THROW(fake_quant_rows(q.data(), 1, 256, 256, DType::I4, 1.f), Error);
}

TEST(W8A8, EngineQuantizesTheLinearInputs) {
  const std::vector<int> toks(calib(1, 16).inputs);
  for (DType t : {DType::I8, DType::F8E4M3}) {
    SCOPED_TRACE(name(t));
    Model m = model(3);
    const compress::CalibrationSet c = calib(2, 16);
    compress::QuantizeOptions q;
    q.scheme = QuantScheme::of(DType::I8, Granularity::PerChannel);
    q.activations.type = t;
    compress::quantize_model(m, q, &c);
    ASSERT_EQ(m.activations.type, t);
    Model w8 = m;
    w8.activations = {};
    const std::vector<float> a = logits(m, toks), f = logits(w8, toks);
    double diff = 0;
    for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, double(std::fabs(a[i] - f[i])));
    EXPECT_GT(diff, 1e-4);  // applied
    EXPECT_LT(diff, 1.0);   // and quantization-sized
    // token by token: the same per-token (or static) scales; f32 order may flip a rounding
    Engine e(m, 16);
    std::vector<float> b(a.size());
    for (int i = 0; i < 16; ++i) e.forward(&toks[size_t(i)], 1, i, b.data() + size_t(i) * 40, 1);
    double mean = 0;
    for (size_t i = 0; i < a.size(); ++i) mean += std::fabs(a[i] - b[i]) / double(a.size());
    EXPECT_LT(mean, 1e-3);
  }
}

TEST(SmoothQuant, KeepsTheFloatModelAndShrinksOutliers) {
  Model m = model(4);
  const Model orig = model(4);
  const compress::CalibrationSet c = calib(4, 16);
  const nlohmann::json rep = compress::smooth_model(m, c, 0.5);
  const std::vector<int> toks(c.inputs.begin(), c.inputs.begin() + 16);
  const std::vector<float> a = logits(m, toks), b = logits(orig, toks);
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-4f * (1 + std::fabs(b[i]))) << i;
  int shrunk = 0;
  for (const auto& layer : rep["layers"]) {
    EXPECT_FALSE(layer.contains("attn_out")) << "o_proj is not smoothed with shared kv heads";
    const auto& s = layer["attn_in"];
    shrunk += s["act_absmax_after"].get<double>() < 0.5 * s["act_absmax_before"].get<double>();
  }
  EXPECT_EQ(shrunk, m.config.n_layers);
}

TEST(W8A8, CpkKeepsActivationSettings) {
  testutil::TempDir d;
  Model m = model(5);
  const compress::CalibrationSet c = calib(2, 16);
  compress::QuantizeOptions q;
  q.scheme = QuantScheme::of(DType::I8, Granularity::PerChannel);
  q.activations.type = DType::F8E4M3;
  q.activations.smooth = true;
  compress::quantize_model(m, q, &c);
  save_cpk(m, d / "m.cpk", {});
  const LoadedModel back = load_cpk(d / "m.cpk");
  EXPECT_EQ(back.model.activations.type, DType::F8E4M3);
  EXPECT_EQ(back.model.activations.scales, m.activations.scales);
  const std::vector<int> toks(c.inputs.begin(), c.inputs.begin() + 16);
  EXPECT_EQ(logits(back.model, toks), logits(m, toks));
}

// `head`: the final-normed rows the LM head reads are quantized per token too.
// The head's first `dim` rows are made the identity, so those logits are its
// input itself: f32 without `head`, and with it exactly the per-row int8 grid
// of that input computed here in float64 (s = amax / 127, round half to even,
// the fake_quant_rows definition). The other rows: the random head applied to
// that grid, in float64.
TEST(W8A8, HeadInputQuantizedPerTokenWhenAsked) {
  Model m = random_model(testutil::tiny_config({.ffn = 40, .vocab = 48, .tied = false}), 7);
  const int64_t d = m.config.dim, V = m.config.vocab;
  float* w = m.lm_head.f32();
  for (int64_t r = 0; r < d; ++r) {
    for (int64_t c = 0; c < d; ++c) w[r * d + c] = r == c ? 1.f : 0.f;
  }
  compress::QuantizeOptions q;
  q.scheme = QuantScheme::of(DType::I8, Granularity::PerChannel);
  q.activations.type = DType::I8;
  q.activations.head = true;
  compress::quantize_model(m, q, nullptr);  // the blocks' linears; the head stays f32
  ASSERT_TRUE(m.activations.head);
  Model plain = m;
  plain.activations.head = false;
  const std::vector<int> toks = {3, 1, 4, 1, 5, 9, 2, 6};
  const std::vector<float> a = logits(m, toks), f = logits(plain, toks);
  const int64_t T = int64_t(toks.size());
  for (int64_t t = 0; t < T; ++t) {
    const float* xn = &f[size_t(t * V)];  // the head's f32 input
    double amax = 0;
    for (int64_t c = 0; c < d; ++c) amax = std::max(amax, std::fabs(double(xn[c])));
    const double s = double(float(amax) / 127.f);
    std::vector<double> grid(static_cast<size_t>(d));
    for (int64_t c = 0; c < d; ++c) grid[size_t(c)] = double(float(s * std::nearbyint(double(xn[c]) / s)));
    for (int64_t c = 0; c < d; ++c) ASSERT_EQ(double(a[size_t(t * V + c)]), grid[size_t(c)]) << "token " << t << " channel " << c;
    for (int64_t r = d; r < V; ++r) {
      double ref = 0;
      for (int64_t c = 0; c < d; ++c) ref += double(w[r * d + c]) * grid[size_t(c)];
      ASSERT_NEAR(a[size_t(t * V + r)], ref, 1e-5 * (1 + std::fabs(ref))) << "token " << t << " row " << r;
    }
  }
}

TEST(W8A8, CpkKeepsTheHeadSettingAndRefusesBadOnes) {
  testutil::TempDir d;
  Model m = model(8);
  compress::QuantizeOptions q;
  q.scheme = QuantScheme::of(DType::I4, Granularity::Group, 16);
  q.targets = {"model.layers.*_proj.weight", "model.embed_tokens.weight"};
  q.activations.type = DType::I8;
  q.activations.head = true;
  compress::quantize_model(m, q, nullptr);
  save_cpk(m, d / "m.cpk", {});
  const LoadedModel back = load_cpk(d / "m.cpk");
  EXPECT_TRUE(back.model.activations.head);
  const std::vector<int> toks = {7, 3, 3, 9, 1};
  EXPECT_EQ(logits(back.model, toks), logits(m, toks));
  Model fp8 = m;
  fp8.activations = {DType::F8E4M3, std::vector<float>(size_t(m.config.n_layers) * ActivationQuant::kSites, 0.1f), true};
  EXPECT_THROW(save_cpk(fp8, d / "bad.cpk", {}), Error);
  EXPECT_FALSE(std::filesystem::exists(d / "bad.cpk"));
}

// `condense info` says how a checkpoint's activations and KV cache run.
TEST(W8A8, InfoShowsActivationAndKvSettings) {
  testutil::TempDir d;
  Model m = model(9);
  compress::QuantizeOptions q;
  q.scheme = QuantScheme::of(DType::I8, Granularity::PerChannel);
  q.activations.type = DType::I8;
  q.activations.head = true;
  compress::quantize_model(m, q, nullptr);
  save_cpk(m, d / "m.cpk", {});
  const testutil::CommandResult res = testutil::run_command(std::string(CONDENSE_BIN) + " info " + (d / "m.cpk"));
  const std::string& out = res.output;
  EXPECT_EQ(res.status, 0) << out;
  EXPECT_NE(out.find("activations: int8 dynamic per token (block linears and the LM head)"), std::string::npos) << out;
  EXPECT_NE(out.find("kv cache:    f32"), std::string::npos) << out;
}
