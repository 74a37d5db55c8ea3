// Training on the real stories260K model and text: data prepare with the real
// tokenizer, vocabulary checks between teacher, student and data, and a short
// distillation run through `run_recipe` that must lower the student's loss.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "io/llama2c.h"
#include "io/model_loader.h"
#include "model/shapes.h"
#include "pipeline/run_recipe.h"
#include "tests/test_util.h"
#include "train/token_data.h"

using namespace condense;
using nlohmann::json;

namespace {
const char* kModel = "models/stories260K/stories260K.bin";
const char* kTok = "models/stories260K/tok512.bin";
const char* kText = "text/tinystories/tinystories_valid_head.txt";
const char* kTok32k = "models/llama2c-tokenizer-32k/tokenizer.bin";

json recipe(const std::string& out) {
  return {{"name", "test"},
          {"teacher", {{"model", testutil::data(kModel)}, {"tokenizer", testutil::data(kTok)}}},
          {"data", {{"text", {testutil::data(kText)}}, {"skip_bytes", 102400}}},
          {"student", {{"init", "from_teacher"}, {"layers", {0, 4}}}},
          {"stages", {{{"type", "distill"}, {"steps", 20}, {"batch", 4}, {"seq", 64}, {"lr", 4e-3}, {"alpha", 0.8},
                       {"temperature", 2.0}, {"val_windows", 4}, {"hidden", {{"pairs", {{0, 0}, {1, 4}}}, {"beta", 0.1}}}}}},
          {"output", {{"dir", out}, {"format", "llama2c"}}}};
}
}  // namespace

TEST(RealTraining, DataPrepareRoundTripAndFingerprintCheck) {
  REQUIRE_DATA(kTok);
  REQUIRE_DATA(kTok32k);
  testutil::TempDir dir;
  auto tok = load_tokenizer_file(testutil::data(kTok));
  train::PrepareOptions opt;
  opt.texts = {testutil::data(kText)};
  opt.skip_bytes = 102400;
  const train::PrepareResult r = train::prepare_token_data(*tok, opt, dir / "tokens");
  const auto mem = train::TokenDataset::from_text(*tok, opt);
  const auto disk = train::TokenDataset::open(dir / "tokens", train::tokenizer_fingerprint(*tok));
  EXPECT_EQ(r.train_tokens, mem.train_tokens());
  EXPECT_EQ(disk.train_tokens(), mem.train_tokens());
  EXPECT_EQ(disk.val_tokens(), mem.val_tokens());
  EXPECT_GT(r.val_tokens, 0);
  std::vector<int> a(256), b(256), c(256), d(256);
  mem.sample(3, 9, 0, 2, 128, 1, a.data(), b.data());
  disk.sample(3, 9, 0, 2, 128, 1, c.data(), d.data());
  EXPECT_EQ(b, d);
  auto other = load_tokenizer_file(testutil::data(kTok32k));
  try {
    train::TokenDataset::open(dir / "tokens", train::tokenizer_fingerprint(*other));
    FAIL() << "a different tokenizer was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(":512:"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(":32000:"), std::string::npos) << e.what();
  }
}

TEST(RealTraining, OutputFormatThatCannotHoldTheStudentFailsBeforeTraining) {
  REQUIRE_DATA(kModel);
  testutil::TempDir dir;
  json j = recipe(dir / "out");
  j["student"]["width"] = {{"n_heads", 4}, {"calibration_windows", 4}};
  try {
    pipeline::run_recipe(pipeline::parse_recipe(j, ""), {});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("$.output.format"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "out/state-stage0.h5"));
}

TEST(RealTraining, StudentWithAnotherVocabularyIsRefusedNamingBoth) {
  REQUIRE_DATA(kModel);
  REQUIRE_DATA(kTok32k);
  testutil::TempDir dir;
  ModelConfig c = shape_config("stories15M");
  c.n_layers = 1;
  c.dim = 64;
  c.n_heads = c.n_kv_heads = 2;
  c.head_dim = 32;
  c.ffn_dim = 128;
  save_llama2c(random_model(c, 1), dir / "student.bin");
  json j = recipe(dir / "out");
  j["student"] = {{"init", "model"}, {"model", dir / "student.bin"}, {"tokenizer", testutil::data(kTok32k)}};
  try {
    pipeline::run_recipe(pipeline::parse_recipe(j, ""), {});
    FAIL() << "mismatched vocabularies were accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("32000 tokens"), std::string::npos) << m;
    EXPECT_NE(m.find("512 tokens"), std::string::npos) << m;
    EXPECT_NE(m.find("tokenizer.bin"), std::string::npos) << m;
    EXPECT_NE(m.find("tok512.bin"), std::string::npos) << m;
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "out/results.json"));
}

TEST(RealTraining, ShortDistillRunWritesAWorkingStudent) {
  REQUIRE_DATA(kModel);
  testutil::TempDir dir;
  json j = recipe(dir / "out");
  j["eval"] = {{"text", testutil::data(kText)}, {"ctx", 64}, {"max_windows", 4}};
  j["student"]["width"] = {{"ffn_dim", 128}, {"n_heads", 4}, {"calibration_windows", 8}};  // Minitron-style narrowing
  j["stages"][0]["hidden"]["projection"] = true;
  j["output"]["format"] = "hf";
  const json res = pipeline::run_recipe(pipeline::parse_recipe(j, ""), {});
  EXPECT_TRUE(std::filesystem::exists(dir / "out/model/model.safetensors"));
  EXPECT_TRUE(std::filesystem::exists(dir / "out/results.json"));
  EXPECT_TRUE(std::filesystem::exists(dir / "out/state-stage0.h5"));
  const LoadedModel m = load_model(dir / "out/model", testutil::data(kTok));
  EXPECT_EQ(m.model.config.n_layers, 2);
  EXPECT_EQ(m.model.config.ffn_dim, 128);
  EXPECT_EQ(m.model.config.n_heads, 4);
  EXPECT_EQ(m.model.config.n_kv_heads, 2);
  EXPECT_EQ(res["width_reduction"]["to"]["ffn_dim"], 128);
  const double ppl = res["eval"]["student_ppl"], teacher = res["eval"]["teacher_ppl"];
  EXPECT_GT(ppl, teacher);  // two narrowed layers of five after 20 steps: worse than the teacher ...
  EXPECT_LT(ppl, 100.0);    // ... but far from the uniform 512
}
