// `condense sweep`: the grid expands to the valid variants (invalid
// combinations listed, not run), a budget names the best variant within it,
// and a sweep runs each variant once: a rerun runs nothing, a grown grid runs
// only the new points. The teacher here is a tiny random model with a learned
// tokenizer (no shared data needed).
#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "io/hf_model.h"
#include "model/shapes.h"
#include "pipeline/sweep.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"

using namespace condense;
using nlohmann::json;

TEST(Sweep, ExpandsTheGridAndListsWhatItSkips) {
  const json spec = {{"teacher", {{"model", "t.bin"}}},
                     {"data", {{"text", "a.txt"}}},
                     {"grid", {{"weights", {{{"type", "int8"}}, {{"type", "fp8"}, {"granularity", "channel"}}}},
                               {"method", {"rtn", "gptq"}},
                               {"sparsity", {0, 0.5}}}},
                     {"output", {{"dir", "out"}}}};
  std::vector<std::string> skipped;
  const auto pts = pipeline::expand_sweep(spec, &skipped);
  std::vector<std::string> names;
  for (const auto& p : pts) names.push_back(p.name);
  EXPECT_EQ(names, (std::vector<std::string>{"int8-rtn", "int8-rtn-s50", "int8-gptq", "int8-gptq-s50", "fp8-rtn", "fp8-rtn-s50"}));
  EXPECT_EQ(skipped.size(), 2u);  // fp8 x gptq
  EXPECT_EQ(pts[1].recipe["stages"][0]["type"], "prune");
  EXPECT_EQ(pts[1].recipe["output"]["dir"], "out/int8-rtn-s50");
  json bad = spec;
  bad["grid"]["bits"] = {4};
  EXPECT_THROW(pipeline::expand_sweep(bad), Error);
}

TEST(Sweep, BudgetNamesTheBestQualityWithin) {
  std::vector<report::Variant> v(4);
  v[0].reference = true, v[0].delta_ppl_pct = 0, v[0].weight_bytes = 9e6, v[0].tpot_p99_ms = 5;
  v[1].name = "a", v[1].delta_ppl_pct = 1.0, v[1].weight_bytes = 2e6, v[1].tpot_p99_ms = 2;
  v[2].name = "b", v[2].delta_ppl_pct = 0.5, v[2].weight_bytes = 4e6, v[2].tpot_p99_ms = 3;
  v[3].name = "c", v[3].delta_ppl_pct = 3.0, v[3].weight_bytes = 1e6, v[3].tpot_p99_ms = 1;
  EXPECT_EQ(pipeline::best_within(v, "size<=4M")->name, "b");
  EXPECT_EQ(pipeline::best_within(v, "size<=3000000")->name, "a");
  EXPECT_EQ(pipeline::best_within(v, "tpot_p99<=1.5")->name, "c");
  EXPECT_FALSE(pipeline::best_within(v, "size<=0.5M").has_value());  // the reference never counts
  EXPECT_THROW(pipeline::best_within(v, "size<4M"), Error);
  EXPECT_THROW(pipeline::best_within(v, "latency<=3"), Error);
}

TEST(Sweep, RunsEachVariantOnceAndOnlyNewPointsLater) {
  testutil::TempDir d;
  json spec = testutil::tiny_sweep_spec(d.path.string(), {});
  spec["grid"] = {{"weights", {{{"type", "int8"}}, {{"type", "int4"}, {"group", 16}}}}};
  auto r = pipeline::run_sweep(spec);
  EXPECT_EQ(r.ran, (std::vector<std::string>{"reference", "int8-rtn", "int4g16-rtn"}));
  ASSERT_EQ(r.variants.size(), 3u);
  EXPECT_TRUE(r.variants[0].reference);
  EXPECT_TRUE(std::isfinite(r.variants[1].delta_ppl_pct));
  EXPECT_TRUE(std::filesystem::exists(r.report));
  r = pipeline::run_sweep(spec);
  EXPECT_TRUE(r.ran.empty());
  EXPECT_EQ(r.cached.size(), 3u);
  spec["grid"]["sparsity"] = {0, 0.5};
  r = pipeline::run_sweep(spec);
  EXPECT_EQ(r.ran, (std::vector<std::string>{"int8-rtn-s50", "int4g16-rtn-s50"}));
}
