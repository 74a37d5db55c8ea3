// Speculative decoding (runtime/speculative.h): greedy output identical to
// plain greedy decoding, the sampled distribution identical to the target's
// (a chi-square test that fails for deliberately wrong acceptance rules), the
// KV caches after rejections equal to a fresh prefill of the accepted tokens,
// and k adapting to the acceptance rate.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <vector>

#include "compress/quantize_model.h"
#include "model/shapes.h"
#include "runtime/generate.h"
#include "runtime/speculative.h"
#include "spec_test_util.h"
#include "test_util.h"
#include "tiny_model.h"
#include "train/student_init.h"

using namespace condense;
using spectest::plain;
using spectest::prompts;
using spectest::speculative;

namespace {

// Scales the (untied) head so the logits spread over a few units: a random
// model's are nearly uniform, and every draft would look like the target.
// (Scaling a tied embedding instead would make every model predict its input
// token, and every draft agree.)
void sharpen(Model& m, float f) {
  ASSERT_FALSE(m.config.tied_embeddings);
  for (int64_t i = 0; i < m.lm_head.numel(); ++i) m.lm_head.f32()[i] *= f;
}

}  // namespace

// Greedy: token for token the output of plain greedy decoding, with a draft
// that agrees (the target itself), one that shares the first layer (a
// layer-dropped student, as distillation starts from) and a random one that
// rejects nearly everything; targets f32 and int8.
TEST(Speculative, GreedyEqualsPlainGreedyForEveryDraft) {
  const ModelConfig cfg = testutil::tiny_config({.dim = 48, .layers = 3, .heads = 4, .kv = 2, .hd = 12, .ffn = 96, .vocab = 64, .max_seq = 96, .tied = false});
  Model target = random_model(cfg, 3);
  sharpen(target, 10.f);
  Model int8 = random_model(cfg, 3);
  sharpen(int8, 10.f);
  compress::QuantizeOptions q;
  q.scheme = QuantScheme::of(DType::I8, Granularity::PerChannel);
  compress::quantize_model(int8, q, nullptr);
  Model same = random_model(cfg, 3);
  sharpen(same, 10.f);
  Model layer0 = train::student_from_teacher(target, {0});
  Model other = random_model(cfg, 77);
  sharpen(other, 10.f);
  for (Model* t : {&target, &int8}) {
    Engine te(*t, 96);
    for (auto [name, d] : {std::pair<const char*, Model*>{"self", &same}, {"layer 0", &layer0}, {"random", &other}}) {
      SCOPED_TRACE(std::string(t == &target ? "f32 target, " : "int8 target, ") + name + " draft");
      Engine de(*d, 96);
      for (const auto& p : prompts(cfg.vocab, 4, 9)) {
        Engine fresh(*t, 96);
        const std::vector<int> want = plain(fresh, p, 40, Sampler(0.f, 1.f, 1));
        te.truncate(0, 0);
        de.truncate(0, 0);
        SpecStats st;
        const std::vector<int> got = speculative(te, de, p, 40, Sampler(0.f, 1.f, 1), {}, &st);
        EXPECT_EQ(got, want);
        EXPECT_GT(st.drafts, 0);
        if (d == &same && t == &target) {
          EXPECT_EQ(st.accepted_tokens, st.draft_tokens);
        }
        if (d == &other) {
          EXPECT_LT(st.accepted_tokens * 2, st.draft_tokens) << "a random draft should be rejected mostly";
        }
      }
    }
  }
}

namespace {

// The exact joint distribution of the next L tokens under the target's
// sampler (temperature, top-k), by enumeration, and N speculative samples of
// them; returns the chi-square statistic's Wilson-Hilferty z score (cells
// with expected count < 5 merged).
double chi_square_z(SpecConfig::Rule rule, float temperature, int top_k, int k, int samples) {
  const ModelConfig cfg = testutil::tiny_config({.dim = 16, .layers = 1, .heads = 2, .kv = 1, .hd = 8, .ffn = 32, .vocab = 6, .max_seq = 16, .tied = false});
  Model target = random_model(cfg, 5), draft = random_model(cfg, 6);
  sharpen(target, 20.f);
  sharpen(draft, 20.f);
  const int L = 3, V = cfg.vocab;
  const std::vector<int> prompt{1, 3};
  Engine te(target, 16), de(draft, 16);
  const std::vector<double> joint = spectest::exact_joint3(target, prompt, temperature, top_k);
  SpecConfig sc;
  sc.k = sc.k_min = sc.k_max = k;
  sc.adaptive = false;
  sc.rule = rule;
  Sampler s(temperature, 1.f, 12345, top_k);
  std::vector<int64_t> count(joint.size(), 0);
  std::vector<int> out;
  for (int n = 0; n < samples; ++n) {
    te.truncate(0, 0);
    de.truncate(0, 0);
    SpeculativeDecoder dec(te, de, sc);
    dec.start(prompt);
    out.clear();
    while (int(out.size()) < L) dec.round(s, L - int(out.size()), out);
    ++count[size_t((out[0] * V + out[1]) * V + out[2])];
  }
  char what[96];
  std::snprintf(what, sizeof what, "rule %d, T %.1f, top-k %d, k %d", int(rule), temperature, top_k, k);
  return spectest::chi_square_z(joint, count, samples, what);
}

}  // namespace

// 30000 seeded samples of 3 tokens (216 cells) with a draft unlike the target:
// the exact rule passes (z < 3.5, p ~ 2e-4 one-sided), the mutants fail by far.
TEST(Speculative, SampledDistributionEqualsTheTargetsChiSquare) {
  for (const auto& [t, topk, k] : {std::tuple{1.f, 0, 2}, std::tuple{0.8f, 4, 3}}) {
    SCOPED_TRACE("T = " + std::to_string(t) + ", top-k " + std::to_string(topk) + ", k " + std::to_string(k));
    EXPECT_LT(chi_square_z(SpecConfig::Rule::Exact, t, topk, k, 30000), 3.5);
    EXPECT_GT(chi_square_z(SpecConfig::Rule::ResampleFromTarget, t, topk, k, 30000), 10.0) << "a wrong residual went unnoticed";
    EXPECT_GT(chi_square_z(SpecConfig::Rule::NoRejectionTest, t, topk, k, 30000), 10.0) << "the draft's own distribution went unnoticed";
  }
}

// After rounds with rejections, both caches hold exactly the committed tokens:
// the next-token logits equal those of engines that prefilled them afresh.
TEST(Speculative, RejectedPositionsAreRolledBack) {
  const ModelConfig cfg = testutil::tiny_config({.vocab = 50, .max_seq = 64, .tied = false});
  Model target = random_model(cfg, 8), draft = random_model(cfg, 9);
  sharpen(target, 15.f);
  sharpen(draft, 15.f);
  Engine te(target, 64), de(draft, 64);
  SpecConfig sc;
  sc.k = sc.k_max = 6;
  sc.adaptive = false;
  SpeculativeDecoder dec(te, de, sc);
  const std::vector<int> prompt{1, 7, 9};
  dec.start(prompt);
  std::vector<int> out;
  Sampler s(1.f, 1.f, 4);
  for (int r = 0; r < 6; ++r) dec.round(s, 100, out);
  ASSERT_LT(dec.stats().accepted_tokens, dec.stats().draft_tokens) << "no rejection: the test shows nothing";
  std::vector<int> all = prompt;
  all.insert(all.end(), out.begin(), out.end());
  ASSERT_EQ(int(all.size()), dec.length());
  // the target's cache: all but the last committed token
  EXPECT_EQ(te.length(0), int(all.size()) - 1);
  std::vector<float> a(size_t(cfg.vocab)), b(size_t(cfg.vocab));
  te.step({{0, &all.back(), 1, a.data(), 1}});
  Engine fresh(target, 64);
  fresh.forward(all.data(), int(all.size()), 0, b.data(), 1);
  for (int i = 0; i < cfg.vocab; ++i) EXPECT_NEAR(a[size_t(i)], b[size_t(i)], 1e-5f * (1 + std::fabs(b[size_t(i)]))) << i;
  // the draft's cache: a prefix of the committed tokens
  const int dl = de.length(0);
  ASSERT_LE(dl, int(all.size()) - 1);
  std::vector<int> rest(all.begin() + dl, all.end());
  de.step({{0, rest.data(), int(rest.size()), a.data(), 1}});
  Engine fresh_d(draft, 64);
  fresh_d.forward(all.data(), int(all.size()), 0, b.data(), 1);
  for (int i = 0; i < cfg.vocab; ++i) EXPECT_NEAR(a[size_t(i)], b[size_t(i)], 1e-5f * (1 + std::fabs(b[size_t(i)]))) << i;
}

// k climbs to k_max with a draft that is always right and falls to k_min with
// one that is nearly always wrong; the counters add up.
TEST(Speculative, DraftLengthAdaptsToAcceptance) {
  const ModelConfig cfg = testutil::tiny_config({.vocab = 50, .max_seq = 200, .tied = false});
  Model target = random_model(cfg, 8), same = random_model(cfg, 8), other = random_model(cfg, 19);
  sharpen(target, 15.f);
  sharpen(same, 15.f);
  sharpen(other, 15.f);
  for (auto [d, want_k] : {std::pair<Model*, int>{&same, 8}, {&other, 1}}) {
    Engine te(target, 200), de(*d, 200);
    SpecConfig sc;
    SpeculativeDecoder dec(te, de, sc);
    dec.start({1, 5});
    std::vector<int> out;
    Sampler s(0.f, 1.f, 1);
    while (out.size() < 150) dec.round(s, 150 - int(out.size()), out);
    EXPECT_EQ(dec.k(), want_k);
    const SpecStats& st = dec.stats();
    int64_t prop = 0, acc = 0;
    for (size_t i = 0; i < st.proposed_per_pos.size(); ++i) {
      prop += st.proposed_per_pos[i];
      acc += st.accepted_per_pos[i];
      if (i > 0) {
        EXPECT_LE(st.accepted_per_pos[i], st.accepted_per_pos[i - 1]);  // a prefix is accepted
      }
    }
    EXPECT_EQ(prop, st.draft_tokens);
    EXPECT_EQ(acc, st.accepted_tokens);
    EXPECT_GE(int64_t(out.size()), st.accepted_tokens + st.drafts);  // a corrected or bonus token per round (and rounds without a draft)
  }
}
