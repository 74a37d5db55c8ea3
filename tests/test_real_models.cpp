// The production loaders and engine on the real stories260K checkpoint, against
// the independent float64 reference in tests/reference and the published sample.
//
// Tolerance for logits: the f32 forward rounds each K-long accumulation with
// error <= gamma_K * sum|a||b| (gamma_K ~ K u, u = 2^-24); the widest is K = 172
// (FFN) and the errors of n_layers blocks add along the residual stream, so we
// allow n_layers * 2 * K_max * u relative to the largest |logit| of the row.
#include <gtest/gtest.h>

#include <cmath>

#include "io/gguf.h"
#include "io/llama2c.h"
#include "io/model_loader.h"
#include "runtime/engine.h"
#include "runtime/generate.h"
#include "runtime/perplexity.h"
#include "tests/reference/llama2c_ref64.h"
#include "tests/test_util.h"

using namespace condense;

namespace {

const char* kBin = "models/stories260K/stories260K.bin";
const char* kTok = "models/stories260K/tok512.bin";
const char* kHf = "models/stories260K-hf";
const char* kText = "text/tinystories/tinystories_valid_head.txt";

std::vector<float> engine_logits(const Model& m, const std::vector<int>& tokens) {
  Engine e(m);
  std::vector<float> logits(tokens.size() * size_t(m.config.vocab));
  e.forward(tokens.data(), int(tokens.size()), 0, logits.data(), int(tokens.size()));
  return logits;
}

double logit_tolerance(const ModelConfig& c, double max_abs_logit) {
  const double u = 1.0 / (1 << 24);
  return c.n_layers * 2.0 * std::max({c.dim, c.ffn_dim, c.q_dim()}) * u * max_abs_logit;
}

std::vector<int> real_tokens(size_t n) {
  const auto tok = load_llama2c_tokenizer(testutil::data(kTok));
  auto ids = tok->encode(testutil::read_file(testutil::data(kText)).substr(0, 4000));
  ids.insert(ids.begin(), 1);
  ids.resize(n);
  return ids;
}

}  // namespace

TEST(RealModel, ForwardMatchesFloat64Reference) {
  REQUIRE_DATA(kBin);
  REQUIRE_DATA(kText);
  const Model m = load_llama2c(testutil::data(kBin));
  const auto r = ref::load_llama2c_ref(testutil::data(kBin));
  const auto tokens = real_tokens(200);
  const auto got = engine_logits(m, tokens);
  const auto want = ref::forward_ref(r, tokens);
  double worst = 0;
  for (size_t t = 0; t < tokens.size(); ++t) {
    double mx = 0;
    for (double v : want[t]) mx = std::max(mx, std::fabs(v));
    const double tol = logit_tolerance(m.config, mx);
    for (int v = 0; v < m.config.vocab; ++v) {
      const double err = std::fabs(got[t * 512 + size_t(v)] - want[t][size_t(v)]);
      worst = std::max(worst, err / tol);
      ASSERT_LE(err, tol) << "position " << t << " vocab " << v << " got " << got[t * 512 + size_t(v)] << " want " << want[t][size_t(v)];
    }
  }
  std::printf("worst logit error = %.3g of the tolerance\n", worst);
}

TEST(RealModel, GreedyFromBosReproducesPublishedSample) {
  REQUIRE_DATA(kBin);
  LoadedModel lm = load_model(testutil::data(kBin));  // finds tok512.bin beside it
  ASSERT_TRUE(lm.tokenizer);
  Engine e(lm.model);
  Sampler greedy(0.f, 1.f, 1);
  std::vector<int> out;
  generate(e, {1}, 60, greedy, {}, &out);
  const std::string text = lm.tokenizer->decode(out, 1);
  const std::string want =
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, "
      "red ball. She wanted to play with it, but it was too high";
  EXPECT_EQ(text.substr(0, want.size()), want) << text;
}

TEST(RealModel, Llama2cAndHfCopiesGiveIdenticalLogits) {
  REQUIRE_DATA(kBin);
  REQUIRE_DATA(kHf);
  const LoadedModel a = load_model(testutil::data(kBin)), b = load_model(testutil::data(kHf), testutil::data(kTok));
  EXPECT_EQ(b.model.format, "hf-safetensors");
  const auto tokens = real_tokens(64);
  EXPECT_EQ(engine_logits(a.model, tokens), engine_logits(b.model, tokens));
}

TEST(RealModel, PrefillLogitsEqualIncrementalDecode) {
  REQUIRE_DATA(kBin);
  const Model m = load_llama2c(testutil::data(kBin));
  const auto tokens = real_tokens(100);
  const auto prefill = engine_logits(m, tokens);
  Engine e(m);
  std::vector<float> step(512);
  for (size_t t = 0; t < tokens.size(); ++t) {
    e.forward(&tokens[t], 1, int(t), step.data(), 1);
    double mx = 0;
    for (int v = 0; v < 512; ++v) mx = std::max(mx, double(std::fabs(prefill[t * 512 + size_t(v)])));
    const double tol = logit_tolerance(m.config, mx);
    for (int v = 0; v < 512; ++v) ASSERT_NEAR(step[size_t(v)], prefill[t * 512 + size_t(v)], tol) << "position " << t;
  }
}

TEST(RealModel, PerplexityWithin005PercentOfFloat64Protocol) {
  REQUIRE_DATA(kBin);
  REQUIRE_DATA(kText);
  LoadedModel lm = load_model(testutil::data(kBin));
  const auto tokens = lm.tokenizer->encode(testutil::read_file(testutil::data(kText)));
  // (Tokenization itself is checked against run.c's algorithm in test_tokenizer.)
  Engine e(lm.model, 256);
  const PerplexityResult got = evaluate_perplexity(e, tokens, 256, 16);
  const double want = ref::perplexity_ref(ref::load_llama2c_ref(testutil::data(kBin)), tokens, 256, 16, 1);
  EXPECT_EQ(got.windows, 16);
  EXPECT_EQ(got.tokens_scored, 4096);
  EXPECT_LE(std::fabs(got.ppl - want) / want, 5e-4) << "condense " << got.ppl << " vs float64 " << want;
  std::printf("perplexity: condense %.6f, float64 reference %.6f, relative difference %.2e\n", got.ppl, want,
              std::fabs(got.ppl - want) / want);
}

TEST(RealModel, GgufCopyGivesIdenticalLogitsAndTokens) {
  REQUIRE_DATA(kBin);
  REQUIRE_DATA(kText);
  testutil::TempDir dir;
  const LoadedModel a = load_model(testutil::data(kBin));
  save_gguf_model(a.model, dynamic_cast<const Llama2cTokenizer*>(a.tokenizer.get()), dir / "s.gguf", DType::F32);
  const LoadedModel b = load_model(dir / "s.gguf");
  EXPECT_EQ(b.model.format, "gguf");
  ASSERT_TRUE(b.tokenizer);
  const auto tokens = real_tokens(64);
  EXPECT_EQ(engine_logits(a.model, tokens), engine_logits(b.model, tokens));
  const std::string text = testutil::read_file(testutil::data(kText)).substr(0, 20000);
  EXPECT_EQ(a.tokenizer->encode(text), b.tokenizer->encode(text));
}
