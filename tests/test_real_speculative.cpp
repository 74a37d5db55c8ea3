// Speculative decoding on the real stories260K (../shared/data): greedy output
// with a 2-layer student cut from it equals plain greedy decoding.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <vector>

#include "io/model_loader.h"
#include "runtime/generate.h"
#include "runtime/speculative.h"
#include "spec_test_util.h"
#include "test_util.h"
#include "train/student_init.h"

using namespace condense;
using spectest::plain;
using spectest::prompts;
using spectest::speculative;
namespace fs = std::filesystem;

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

