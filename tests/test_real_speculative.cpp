// Speculative decoding on the real stories260K (../shared/data): greedy output
// with a 2-layer student cut from it equals plain greedy decoding.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <vector>

#include "io/model_loader.h"
#include "runtime/generate.h"
#include "runtime/speculative.h"
#include "test_util.h"
#include "train/student_init.h"

using namespace condense;
namespace fs = std::filesystem;

namespace {
std::vector<int> plain(Engine& e, const std::vector<int>& prompt, int steps, Sampler s) {
  std::vector<int> out;
  generate(e, prompt, steps, s, {}, &out, false);
  return out;
}
std::vector<int> speculative(Engine& t, Engine& d, const std::vector<int>& prompt, int steps, Sampler s, SpecConfig cfg,
                             SpecStats* st = nullptr) {
  std::vector<int> out;
  generate_speculative(t, d, prompt, steps, s, cfg, {}, &out, false, st);
  return out;
}
std::vector<std::vector<int>> prompts(int vocab, int n, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<std::vector<int>> ps;
  for (int i = 0; i < n; ++i) {
    std::vector<int> p{1};
    for (int j = 0; j < 1 + i * 3; ++j) p.push_back(int(2 + g() % uint32_t(vocab - 2)));
    ps.push_back(p);
  }
  return ps;
}
}  // namespace

// The real stories260K with a 2-layer student cut from it: greedy output equal
// to plain greedy on several prompts.
TEST(Speculative, RealStories260KGreedyEqualsPlain) {
  const std::string path = testutil::data("models/stories260K/stories260K.bin");
  if (!fs::exists(path)) GTEST_SKIP() << "needs ../shared/data (models/stories260K)";
  LoadedModel lm = load_model(path, "", {});
  Model student = train::student_from_teacher(lm.model, {0, lm.model.config.n_layers - 1});
  Engine te(lm.model, 200), de(student, 200);
  for (const auto& p : prompts(lm.model.config.vocab, 3, 4)) {
    Engine fresh(lm.model, 200);
    const std::vector<int> want = plain(fresh, p, 120, Sampler(0.f, 1.f, 1));
    te.truncate(0, 0);
    de.truncate(0, 0);
    SpecStats st;
    EXPECT_EQ(speculative(te, de, p, 120, Sampler(0.f, 1.f, 1), {}, &st), want);
    EXPECT_GT(st.accepted_tokens, 0);
  }
}

