// A recipe's draft stage end to end: the draft is distilled from the
// compressed model, written beside it, recorded (path and crc32c) in
// results.json and in model.cpk's provenance; `condense generate` of that
// .cpk then decodes speculatively with it (greedy output unchanged), refuses
// a changed draft, and --no-draft decodes without it.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/cpk.h"
#include "io/file_view.h"
#include "test_util.h"
#include "tiny_model.h"

using nlohmann::json;
namespace fs = std::filesystem;

namespace {
testutil::CommandResult run_condense(const std::string& args) { return testutil::run_command(std::string(CONDENSE_BIN) + " " + args); }
}  // namespace

TEST(DraftRecipe, DraftStageIsRecordedAndUsedByGenerate) {
  testutil::TempDir d;
  json spec = testutil::tiny_sweep_spec(d.path.string(), {});
  spec["student"] = {{"init", "from_teacher"}};
  spec["stages"] = json::parse(R"([{"type": "quantize", "weights": {"type": "int8", "granularity": "channel"}},
                                   {"type": "draft", "layers": [0], "steps": 4, "batch": 2, "seq": 16, "samples": 3,
                                    "sample_tokens": 20, "val_windows": 1}])");
  spec.erase("bench");
  const fs::path recipe = d.path / "r.json";
  std::ofstream(recipe) << spec.dump();
  const auto r = run_condense("run " + recipe.string() + " --json");
  ASSERT_EQ(r.status, 0) << r.output;
  const fs::path out = d.path / "out";
  const json res = json::parse(condense::read_text_file((out / "results.json").string()));
  ASSERT_TRUE(res.contains("draft")) << res.dump(2);
  EXPECT_EQ(res["draft"]["n_layers"], 1);
  EXPECT_EQ(res["stages"][1]["type"], "draft");
  EXPECT_TRUE(fs::is_regular_file(out / "draft.cpk"));
  const condense::LoadedModel lm = condense::load_cpk((out / "model.cpk").string());
  const condense::Model& m = lm.model;
  const json prov = json::parse(m.provenance);
  ASSERT_TRUE(prov.contains("draft")) << prov.dump();
  EXPECT_EQ(prov["draft"]["path"], "draft.cpk");
  EXPECT_EQ(prov["draft"]["crc32c"], res["draft"]["crc32c"]);
  EXPECT_EQ(m.config.n_layers, 2);  // the model itself keeps its blocks

  const std::string gen = "generate " + (out / "model.cpk").string() + " --temperature 0 --steps 24 --ignore-eos --prompt 'sun moon' --json";
  const auto with = run_condense(gen);
  ASSERT_EQ(with.status, 0) << with.output;
  EXPECT_NE(with.output.find("draft recorded in the model"), std::string::npos) << with.output;
  EXPECT_NE(with.output.find("spec_decode_acceptance_rate"), std::string::npos) << with.output;
  const auto without = run_condense(gen + " --no-draft");
  ASSERT_EQ(without.status, 0) << without.output;
  EXPECT_EQ(without.output.find("spec_decode"), std::string::npos) << without.output;
  // the text (first line) is the same: greedy speculative decoding changes nothing
  EXPECT_EQ(with.output.substr(with.output.find("sun moon")).substr(0, 60),
            without.output.substr(without.output.find("sun moon")).substr(0, 60));

  // a changed draft is refused, naming the way out
  {
    std::fstream f(out / "draft.cpk", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-1, std::ios::end);
    f.put('\x5a');
  }
  const auto changed = run_condense(gen);
  EXPECT_EQ(changed.status, 1) << changed.output;
  EXPECT_NE(changed.output.find("--no-draft"), std::string::npos) << changed.output;
  fs::remove(out / "draft.cpk");
  const auto missing = run_condense(gen);
  EXPECT_EQ(missing.status, 1) << missing.output;
  EXPECT_NE(missing.output.find("not there"), std::string::npos) << missing.output;
  EXPECT_EQ(run_condense(gen + " --no-draft").status, 0);
}

TEST(DraftRecipe, DraftStageMustBeLastAndNameBlocks) {
  testutil::TempDir d;
  json spec = testutil::tiny_sweep_spec(d.path.string(), {});
  spec.erase("bench");
  spec["student"] = {{"init", "from_teacher"}};
  spec["stages"] = json::parse(R"([{"type": "draft", "layers": [0]}, {"type": "quantize", "weights": {"type": "int8"}}])");
  const fs::path recipe = d.path / "r.json";
  std::ofstream(recipe) << spec.dump();
  auto r = run_condense("run " + recipe.string() + " --dry-run");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("must be the last stage"), std::string::npos) << r.output;
  spec["stages"] = json::parse(R"([{"type": "draft", "layers": [1, 0]}])");
  std::ofstream(recipe) << spec.dump();
  r = run_condense("run " + recipe.string() + " --dry-run");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("increasing block indices"), std::string::npos) << r.output;
  spec["stages"] = json::parse(R"([{"type": "draft", "layers": [7], "steps": 2}])");
  std::ofstream(recipe) << spec.dump();
  r = run_condense("run " + recipe.string());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("no block 7"), std::string::npos) << r.output;
}
