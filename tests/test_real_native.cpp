// Every recipe in recipes/, on the real stories260K, shortened (a few training
// steps, small calibration sets) so the suite stays quick: its .cpk evaluated
// through the native kernels (loaded without f32 copies) has the perplexity of
// the simulated evaluation (the same file's effective f32 weights through the
// f32 kernels, the same KV and activation quantization) within 1e-4 relative.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "io/file_view.h"
#include "io/model_loader.h"
#include "pipeline/run_recipe.h"
#include "runtime/engine.h"
#include "runtime/perplexity.h"
#include "tests/test_util.h"

using namespace condense;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// Shortens every training schedule and calibration set of a recipe's stages.
void shorten(json& j) {
  if (j.is_object()) {
    for (auto& [k, v] : j.items()) {
      if (k == "steps" && v.is_number()) v = 6;
      else if (k == "samples" && v.is_number()) v = 8;
      else if (k == "seq" && v.is_number()) v = 64;
      else if (k == "batch" && v.is_number()) v = 4;
      else if ((k == "eval_every" || k == "every") && v.is_number()) v = 2;
      else if (k == "end" && v.is_number()) v = 4;
      else if (k == "warmup" && v.is_number()) v = 1;
      else shorten(v);
    }
  } else if (j.is_array()) {
    for (auto& v : j) shorten(v);
  }
}

// Paths in the recipes are relative to the repository root: point them at the data.
void rebase_paths(json& j) {
  if (j.is_string()) {
    const std::string v = j.get<std::string>(), prefix = "../shared/data/";
    if (v.rfind(prefix, 0) == 0) j = testutil::data(v.substr(prefix.size()));
  } else if (j.is_object() || j.is_array()) {
    for (auto& v : j) rebase_paths(v);
  }
}

double ppl(const Model& m, const std::vector<int>& tokens) {
  Engine e(m, 128);
  return evaluate_perplexity(e, tokens, 128, 4).ppl;
}

}  // namespace

TEST(RealNative, EveryRecipesCpkEvaluatesNativelyAsSimulated) {
  const fs::path recipes = fs::path(CONDENSE_SOURCE_DIR) / "recipes";
  if (!fs::exists(testutil::data("models/stories260K/stories260K.bin"))) GTEST_SKIP() << "needs ../shared/data";
  testutil::TempDir dir;
  int n = 0;
  for (const auto& entry : fs::directory_iterator(recipes)) {
    if (entry.path().extension() != ".json") continue;
    json r = json::parse(std::ifstream(entry.path()));
    shorten(r["stages"]);
    rebase_paths(r);
    r["output"] = {{"dir", dir / entry.path().stem().string()}};
    r.erase("eval");
    pipeline::run_recipe(pipeline::parse_recipe(r, ""), {});
    const std::string cpk = dir / (entry.path().stem().string() + "/model.cpk");
    if (!fs::exists(cpk)) continue;  // a recipe that writes no .cpk (no compressing stage)
    LoadedModel native = load_model(cpk, "", {.effective_f32 = false});
    LoadedModel sim = load_model(cpk);
    sim.model.compression.clear();  // effective f32 weights only, through the f32 kernels
    const std::vector<int> tokens = native.tokenizer->encode(read_text_file(testutil::data("text/tinystories/tinystories_valid_head.txt")).substr(0, 8000));
    const double a = ppl(native.model, tokens), b = ppl(sim.model, tokens);
    EXPECT_NEAR(a / b, 1.0, 1e-4) << entry.path().filename() << ": native " << a << ", simulated " << b;
    ++n;
  }
  EXPECT_GE(n, 8) << "recipes with a .cpk evaluated";
}
