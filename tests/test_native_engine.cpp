// The engine runs a compressed model in its stored encodings (runtime/
// linear_parts.h) and must compute what the simulated model (its effective f32
// weights through the f32 kernels) computes: bit for bit where the kernels
// decode fl(scale * q) (group scales, fp8), and within f32 rounding where a
// per-channel int8 scale multiplies the finished sum. A .cpk loaded without f32
// copies runs exactly like the in-memory model it was saved from.
#include <gtest/gtest.h>

#include <cmath>
#include <algorithm>
#include <cstring>
#include <vector>

#include "compress/prune_model.h"
#include "compress/quantize_model.h"
#include "core/error.h"
#include "io/cpk.h"
#include "io/model_loader.h"
#include "model/shapes.h"
#include "kernels/cpu/qlinear.h"
#include "runtime/engine.h"
#include "runtime/generate.h"
#include "runtime/linear_parts.h"
#include "test_util.h"
#include "tiny_model.h"

using namespace condense;

namespace {

struct Case {
  const char* name;
  QuantScheme scheme;
  std::vector<std::string> targets;  // empty: the block linears
  bool bitwise;
};

std::vector<float> logits_of(const Model& m, const std::vector<int>& toks) {
  Engine e(m);
  std::vector<float> out(toks.size() * size_t(m.config.vocab));
  e.forward(toks.data(), int(toks.size()), 0, out.data(), int(toks.size()));
  return out;
}

// The same model with every packed form dropped: f32 effective weights only.
Model simulated(const Model& m) {
  Model s = m;
  s.compression.clear();
  return s;
}

}  // namespace

TEST(NativeEngine, MatchesTheSimulatedModel) {
  const Case cases[] = {
      {"int4 g16 sym", QuantScheme::of(DType::I4, Granularity::Group, 16), {}, true},
      {"int4 g24 asym (ragged)", QuantScheme::of(DType::I4, Granularity::Group, 24, false), {}, true},
      {"fp8 per-channel", QuantScheme::of(DType::F8E4M3, Granularity::PerChannel), {}, true},
      {"fp8 per-tensor", QuantScheme::of(DType::F8E4M3, Granularity::PerTensor), {}, true},
      {"int8 g16 + embedding", QuantScheme::of(DType::I8, Granularity::Group, 16),
       {"model.layers.*_proj.weight", "model.embed_tokens.weight"}, true},
      {"int8 per-channel", QuantScheme::of(DType::I8, Granularity::PerChannel), {}, false},
      {"int4 g16 embedding only", QuantScheme::of(DType::I4, Granularity::Group, 16), {"model.embed_tokens.weight"}, true},
  };
  const std::vector<int> toks = {1, 5, 9, 33, 2, 17, 17, 30, 4, 11, 39, 0, 8};
  for (const Case& c : cases) {
    Model m = random_model(testutil::tiny_config({.ffn = 72}), 3);
    compress::QuantizeOptions q;
    q.scheme = c.scheme;
    q.targets = c.targets;
    compress::quantize_model(m, q, nullptr);
    const auto sim = logits_of(simulated(m), toks);
    {  // codes decoded to f32: the simulated arithmetic
      testutil::ScopedEnv exact("CONDENSE_WEIGHT_ONLY", "f32");
      const auto native = logits_of(m, toks);
      if (c.bitwise) {
        ASSERT_EQ(0, std::memcmp(native.data(), sim.data(), native.size() * 4)) << c.name;
      } else {
        for (size_t i = 0; i < native.size(); ++i) ASSERT_NEAR(native[i], sim[i], 1e-5 * (1 + std::fabs(sim[i]))) << c.name << " logit " << i;
      }
    }
    // The default: int8 / int4 linears quantize their inputs to int16 (error
    // <= amax / 65278 per input), fp8 ones still decode to f32.
    const auto native = logits_of(m, toks);
    double max_err = 0;
    for (size_t i = 0; i < native.size(); ++i) {
      max_err = std::max(max_err, double(std::fabs(native[i] - sim[i])));
      ASSERT_NEAR(native[i], sim[i], 1e-4 * (1 + std::fabs(sim[i]))) << c.name << " int16 inputs, logit " << i;
    }
    if (c.scheme.type == DType::F8E4M3) EXPECT_EQ(max_err, 0.0) << c.name;
    else EXPECT_GT(max_err, 0.0) << c.name << ": identical logits: the int16 kernels did not run";
  }
  testutil::ScopedEnv bad("CONDENSE_WEIGHT_ONLY", "int12");
  try {
    weight_only_int16();
    ADD_FAILURE() << "CONDENSE_WEIGHT_ONLY=int12 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("int16, f32"), std::string::npos) << e.what();
  }
}

// W8A8 / W4A8 (the recipe's int8 activations): the integer kernels quantize
// each input row as the simulation does and sum exactly in int32, so the
// logits differ from the simulated model's only by f32 rounding.
TEST(NativeEngine, IntegerActivationsMatchTheSimulatedModel) {
  const QuantScheme schemes[] = {QuantScheme::of(DType::I8, Granularity::PerChannel),
                                 QuantScheme::of(DType::I4, Granularity::Group, 16),
                                 QuantScheme::of(DType::I4, Granularity::Group, 24, false)};
  const std::vector<int> toks = {1, 5, 9, 33, 2, 17, 17, 30, 4, 11, 39, 0, 8};
  for (const QuantScheme& s : schemes) {
    for (bool head : {false, true}) {  // head: the tied table quantized too, its input int8 (integer head kernels)
      Model m = random_model(testutil::tiny_config({.ffn = 72}), 4);
      compress::QuantizeOptions q;
      q.scheme = s;
      q.activations.type = DType::I8;
      q.activations.head = head;
      if (head) q.targets = {"model.layers.*_proj.weight", "model.embed_tokens.weight"};
      compress::quantize_model(m, q, nullptr);
      ASSERT_EQ(m.activations.type, DType::I8);
      EXPECT_EQ(Engine(m).head_integer(), head);
      const auto native = logits_of(m, toks), sim = logits_of(simulated(m), toks);
      double max_err = 0;
      for (size_t i = 0; i < native.size(); ++i) {
        max_err = std::max(max_err, double(std::fabs(native[i] - sim[i])));
        ASSERT_NEAR(native[i], sim[i], 1e-4 * (1 + std::fabs(sim[i]))) << s.describe() << " head " << head << " logit " << i;
      }
      EXPECT_GT(max_err, 0.0) << s.describe() << ": identical logits: the integer kernels did not run";
    }
  }
}

TEST(NativeEngine, CpkLoadedWithoutF32RunsLikeTheModelItCameFrom) {
  testutil::TempDir dir;
  Model m = random_model(testutil::tiny_config({.ffn = 72, .tied = true}), 5);
  compress::QuantizeOptions q;
  q.scheme = QuantScheme::of(DType::I4, Granularity::Group, 16, false);
  q.targets = {"model.layers.*_proj.weight", "model.embed_tokens.weight"};
  compress::quantize_model(m, q, nullptr);
  const auto p = dir.path / "m.cpk";
  save_cpk(m, p.string(), {});
  LoadedModel lm = load_model(p.string(), "", {.effective_f32 = false});
  EXPECT_FALSE(lm.model.embed.defined()) << "a quantized tensor was expanded to f32";
  EXPECT_FALSE(lm.model.layers[0].wq.defined());
  const std::vector<int> toks = {3, 1, 4, 1, 5, 9, 2, 6};
  const auto a = logits_of(m, toks), b = logits_of(lm.model, toks);
  ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4));
  // Weight bytes a decode step reads: the packed linears, the packed head (tied:
  // the embedding table) and one packed embedding row, not f32.
  Engine e(lm.model);
  Engine f(simulated(m));
  EXPECT_LT(double(e.decode_weight_bytes()), 0.2 * double(f.decode_weight_bytes()));
}

TEST(NativeEngine, RefusesCodesTheKernelsWouldMisreadNamingTheWeight) {
  Model m = random_model(testutil::tiny_config({.ffn = 72}), 6);
  compress::QuantizeOptions q;
  q.scheme = QuantScheme::of(DType::F8E4M3, Granularity::PerChannel);
  compress::quantize_model(m, q, nullptr);
  Model bad = m;
  bad.compression.at("model.layers.1.mlp.up_proj.weight").codes[5] = 0xff;  // E4M3 NaN
  try {
    Engine e(bad);
    FAIL() << "accepted a NaN code";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("model.layers.1.mlp.up_proj.weight"), std::string::npos) << err.what();
    EXPECT_NE(std::string(err.what()).find("NaN"), std::string::npos) << err.what();
  }
  Model inf = m;
  inf.compression.at("model.layers.0.self_attn.q_proj.weight").scales[2] = INFINITY;
  EXPECT_THROW(Engine e(inf), Error);
}

// Pruned int8 runs the sparse kernels only where they beat the dense ones
// (integer activations on AVX-512 with VBMI2; linear_parts.h); elsewhere the
// engine packs it dense. Either way the logits are the same, bit for bit, and
// CONDENSE_SPARSE=always / never forces the choice (always: fewer bytes); an
// unknown value is refused. (f32 inputs: the comparison decodes the codes to
// f32, as the sparse f32-input kernels do; there is no sparse int16 kernel.)
TEST(NativeEngine, PrunedInt8RunsSparseWhereItPays) {
  testutil::ScopedEnv exact("CONDENSE_WEIGHT_ONLY", "f32");
  for (bool a8 : {false, true}) {
    Model m = random_model(testutil::tiny_config({.ffn = 72}), 9);
    compress::PruneOptions po;
    po.sparsity = 0.6;
    compress::prune_model(m, po, nullptr);
    compress::QuantizeOptions q;
    q.scheme = QuantScheme::of(DType::I8, Granularity::PerChannel);
    q.activations.type = a8 ? DType::I8 : DType::F32;
    compress::quantize_model(m, q, nullptr);
    const std::vector<int> toks = {2, 7, 1, 8, 2, 8, 1, 8, 2, 8};
    int64_t bytes[2];
    std::vector<float> logits[2];
    for (int always = 0; always < 2; ++always) {
      testutil::ScopedEnv env("CONDENSE_SPARSE", always ? "always" : "never");
      bytes[always] = Engine(m).decode_weight_bytes();
      logits[always] = logits_of(m, toks);
    }
    EXPECT_LT(bytes[1], bytes[0]) << "a8 " << a8;
    ASSERT_EQ(0, std::memcmp(logits[0].data(), logits[1].data(), logits[0].size() * 4)) << "a8 " << a8;
    // auto: sparse only with integer activations where AVX-512 expands in registers.
    testutil::ScopedEnv env("CONDENSE_SPARSE", "auto");
    EXPECT_EQ(Engine(m).decode_weight_bytes(), bytes[a8 && kernels::sparse_a8_in_registers() ? 1 : 0]) << "a8 " << a8;
  }
  testutil::ScopedEnv bad("CONDENSE_SPARSE", "sometimes");
  try {
    sparse_int8_pays(true);
    ADD_FAILURE() << "CONDENSE_SPARSE=sometimes was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("auto, always, never"), std::string::npos) << e.what();
  }
}

// Greedy generation that samples the end-of-sequence token stops and says so
// (a random model's greedy argmax can be EOS at once: `condense generate`
// printed nothing then); stop_at_eos = false generates every step.
TEST(Generate, ReportsAnEarlyStopAndCanIgnoreIt) {
  Model m = random_model(testutil::tiny_config({.ffn = 72}), 5);
  Sampler greedy(0.f, 1.f, 1);
  std::vector<int> first;
  {
    Engine e(m);
    generate(e, {m.config.bos_id}, 1, greedy, {}, &first, false);
  }
  ASSERT_EQ(first.size(), 1u);
  m.config.eos_id = first[0];  // the greedy first token is now EOS
  Engine e(m);
  std::vector<int> out;
  GenerateStats st = generate(e, {m.config.bos_id}, 6, greedy, {}, &out);
  EXPECT_EQ(st.generated, 0);
  EXPECT_EQ(st.stop_token, first[0]);
  Engine e2(m);
  st = generate(e2, {m.config.bos_id}, 6, greedy, {}, &out, false);
  EXPECT_EQ(st.generated, 6);
  EXPECT_EQ(st.stop_token, -1);
  EXPECT_EQ(out.size(), 6u);
}

// A tied f32 table is held once: lookups read the head's pack (the same floats),
// so the engine's weight bytes are the head's plus the blocks', and the logits
// are the untied-copy ones bit for bit (a model with the table untied but equal).
TEST(NativeEngine, TiedF32TableIsHeldOnce) {
  Model tied = random_model(testutil::tiny_config({.ffn = 72}), 12);
  ASSERT_TRUE(tied.config.tied_embeddings);
  Engine e(tied);
  EXPECT_NE(e.describe_linears().find("embedding: the head's"), std::string::npos) << e.describe_linears();
  const size_t table = size_t(tied.config.vocab) * size_t(tied.config.dim) * 4;
  Model untied = tied;
  untied.config.tied_embeddings = false;
  untied.lm_head = Tensor::empty(DType::F32, {tied.config.vocab, tied.config.dim});
  std::memcpy(untied.lm_head.f32(), tied.embed.f32(), table);
  Engine u(untied);
  EXPECT_EQ(u.weight_bytes(), e.weight_bytes() + table) << "the untied engine holds the table and the head";
  const std::vector<int> toks = {1, 7, 3, 9, 2, 5};
  ASSERT_EQ(logits_of(tied, toks), logits_of(untied, toks));
}
