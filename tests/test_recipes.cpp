// Recipe validation: every bad input fails before any work with the JSON path
// of the offending value and what is allowed there.
#include <gtest/gtest.h>

#include "core/error.h"
#include "pipeline/recipe.h"
#include "tests/test_util.h"

using namespace condense;
using nlohmann::json;

namespace {

json good() {
  return json::parse(R"({
    "name": "t", "teacher": {"model": "teacher.bin"},
    "data": {"text": ["a.txt"]},
    "student": {"init": "from_teacher", "layers": [0, 2]},
    "stages": [{"type": "distill", "steps": 10, "alpha": 0.5, "temperature": 2.0,
                "hidden": {"pairs": [[0, 0], [1, 2]], "beta": 0.5}}],
    "output": {"dir": "out"}
  })");
}

// Parses `j` expecting an Error whose message contains every one of `parts`.
void expect_error(const json& j, std::initializer_list<const char*> parts) {
  try {
    pipeline::parse_recipe(j, "");
    FAIL() << "no error for " << j.dump();
  } catch (const Error& e) {
    for (const char* p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << "'" << p << "' not in: " << e.what();
  }
}

}  // namespace

TEST(Recipe, GoodRecipeParses) {
  const pipeline::Recipe r = pipeline::parse_recipe(good(), "");
  ASSERT_EQ(r.stages.size(), 1u);
  EXPECT_FLOAT_EQ(r.stages[0].objective.token.kd, 0.5f);
  EXPECT_FLOAT_EQ(r.stages[0].objective.token.ce, 0.5f);
  EXPECT_EQ(r.stages[0].objective.hidden.size(), 2u);
  EXPECT_EQ(r.student.layers, (std::vector<int>{0, 2}));
}

TEST(Recipe, PrecisionIsF32OrBf16) {
  EXPECT_FALSE(pipeline::parse_recipe(good(), "").stages[0].train.bf16);
  json j = good();
  j["stages"][0]["precision"] = "bf16";
  EXPECT_TRUE(pipeline::parse_recipe(j, "").stages[0].train.bf16);
  j["stages"][0]["precision"] = "fp16";
  expect_error(j, {"$.stages[0].precision", "f32, bf16"});
}

TEST(Recipe, UnknownStageNamesTheAllowedOnes) {
  json j = good();
  j["stages"][0]["type"] = "distil";
  expect_error(j, {"$.stages[0].type", "one of train, distill"});
}

TEST(Recipe, PruneStageParses) {
  json j = good();
  j["stages"] = json::parse(R"([{"type": "prune", "method": "sparsegpt", "sparsity": 0.6, "sparsegpt": {"block": 64},
                                  "calibration": {"samples": 8, "seq": 32}},
                                 {"type": "prune", "method": "wanda", "pattern": "2:4", "targets": ["model.layers.*.mlp.*"]},
                                 {"type": "prune", "sparsity": 0.7, "gradual": {"end": 80, "every": 10,
                                  "train": {"type": "distill", "steps": 100, "alpha": 1.0}}}])");
  const pipeline::Recipe r = pipeline::parse_recipe(j, "");
  EXPECT_EQ(r.output_format, "cpk");
  EXPECT_EQ(r.stages[0].prune.method, "sparsegpt");
  EXPECT_DOUBLE_EQ(r.stages[0].prune.sparsity, 0.6);
  EXPECT_EQ(r.stages[0].prune.sparsegpt.block, 64);
  EXPECT_EQ(r.stages[0].calibration.samples, 8);
  EXPECT_EQ(r.stages[1].prune.nm.n, 2);
  EXPECT_EQ(r.stages[1].prune.nm.m, 4);
  EXPECT_DOUBLE_EQ(r.stages[1].prune.sparsity, 0.5);
  ASSERT_TRUE(r.stages[2].gradual.has_value());
  EXPECT_TRUE(r.stages[2].trains());
  EXPECT_TRUE(r.stages[2].uses_teacher());
  EXPECT_EQ(r.stages[2].train.steps, 100);
  EXPECT_EQ(r.stages[2].gradual->end, 80);
  EXPECT_EQ(r.stages[2].gradual->every, 10);
  EXPECT_DOUBLE_EQ(r.stages[2].gradual->final_sparsity, 0.7);
  EXPECT_FLOAT_EQ(r.stages[2].objective.token.kd, 1.f);
}

TEST(Recipe, PruneStageErrorsNameThePath) {
  json j = good();
  j["stages"] = json::parse(R"([{"type": "prune", "pattern": "2:4", "sparsity": 0.5}])");
  expect_error(j, {"$.stages[0].sparsity", "pattern"});
  j["stages"] = json::parse(R"([{"type": "prune", "pattern": "4:2"}])");
  expect_error(j, {"$.stages[0].pattern", "N:M"});
  j["stages"] = json::parse(R"([{"type": "prune", "method": "wanda", "gradual": {"train": {"type": "train"}}}])");
  expect_error(j, {"$.stages[0].gradual", "by magnitude"});
  j["stages"] = json::parse(R"([{"type": "prune", "gradual": {"every": 5}}])");
  expect_error(j, {"$.stages[0].gradual.train"});
  j["stages"] = json::parse(R"([{"type": "prune", "calibration": {"samples": 4}}])");
  expect_error(j, {"$.stages[0].calibration", "magnitude pruning needs no calibration"});
  j["stages"] = json::parse(R"([{"type": "quantize", "weights": {"type": "int8"}}, {"type": "prune"}])");
  expect_error(j, {"$.stages[1]", "Prune before quantizing"});
  j["stages"] = json::parse(R"([{"type": "prune", "sparsity": 1.0}])");
  expect_error(j, {"$.stages[0].sparsity"});
}

TEST(Recipe, QatStageNeedsAQuantizeStageAndATeacher) {
  json j = good();
  j["stages"] = json::parse(R"([{"type": "quantize", "weights": {"type": "int4", "group": 32}},
                                 {"type": "qat", "steps": 20, "learn_scales": true}])");
  const pipeline::Recipe r = pipeline::parse_recipe(j, "");
  EXPECT_TRUE(r.stages[1].train.qat);
  EXPECT_TRUE(r.stages[1].train.learn_scales);
  EXPECT_TRUE(r.stages[1].uses_teacher());
  j["stages"] = json::parse(R"([{"type": "qat", "steps": 20}])");
  expect_error(j, {"$.stages[0]", "no quantize stage comes before it"});
  j["stages"] = json::parse(R"([{"type": "quantize", "weights": {"type": "int4", "group": 32}}, {"type": "qat"}, {"type": "train"}])");
  expect_error(j, {"$.stages[2]", "after quantize"});
  j["stages"] = json::parse(R"([{"type": "quantize", "weights": {"type": "int4", "group": 32}}, {"type": "qat"}])");
  j.erase("teacher");
  j["student"] = json::parse(R"({"init": "model", "model": "s.bin"})");
  expect_error(j, {"$.stages[1]", "teacher"});
}

TEST(Recipe, WrongTypeNamesPathAndExpectation) {
  json j = good();
  j["stages"][0]["steps"] = "ten";
  expect_error(j, {"$.stages[0].steps", "an integer", "\"ten\""});
  j = good();
  j["stages"][0]["alpha"] = 1.5;
  expect_error(j, {"$.stages[0].alpha", "[0, 1]"});
  j = good();
  j["stages"][0]["hidden"]["pairs"][1] = "x";
  expect_error(j, {"$.stages[0].hidden.pairs[1]"});
}

TEST(Recipe, MissingTeacherForDistill) {
  json j = good();
  j.erase("teacher");
  j["student"] = {{"init", "random"}, {"shape", "stories15M"}};
  expect_error(j, {"$.stages[0]", "teacher"});
  j = good();
  j.erase("teacher");
  expect_error(j, {"$.student.init", "teacher"});
}

TEST(Recipe, UnknownKeyIsRejected) {
  json j = good();
  j["stages"][0]["alpah"] = 0.5;
  expect_error(j, {"$.stages[0].alpah", "unknown key"});
  j = good();
  j["bogus"] = 1;
  expect_error(j, {"$.bogus", "unknown key"});
}

TEST(Recipe, WidthReductionIsValidated) {
  json j = good();
  j["student"]["width"] = {{"ffn_dim", 96}, {"n_heads", 4}};
  const pipeline::Recipe r = pipeline::parse_recipe(j, "");
  EXPECT_TRUE(r.student.shrink);
  EXPECT_EQ(r.student.width.ffn_dim, 96);
  j["student"]["width"]["heads"] = 2;
  expect_error(j, {"$.student.width.heads", "unknown key"});
  j = good();
  j["student"] = {{"init", "random"}, {"shape", "stories15M"}, {"width", {{"dim", 8}}}};
  expect_error(j, {"$.student.width", "from_teacher"});
}

TEST(Recipe, RandomStudentConfigIsValidatedUpFront) {
  json j = good();
  j["student"] = {{"init", "random"}, {"config", {{"n_layers", "three"}}}};
  expect_error(j, {"$.student.config.n_layers", "an integer"});
  j["student"] = {{"init", "random"}, {"config", {{"n_layer", 3}}}};
  expect_error(j, {"$.student.config.n_layer", "unknown key"});
  j["student"] = {{"init", "random"}, {"shape", "stories16M"}};
  expect_error(j, {"$.student.shape", "stories15M"});
  j["student"] = {{"init", "from_teacher"}, {"tokenizer", "t.bin"}};
  expect_error(j, {"$.student.tokenizer", "teacher's tokenizer"});
  j.erase("teacher");
  j["stages"] = json::parse(R"([{"type": "train", "steps": 2}])");
  j["student"] = {{"init", "random"}, {"shape", "stories15M"}};
  expect_error(j, {"$.student.tokenizer", "condense data tokenizer"});
  j["student"]["tokenizer"] = "t.model";  // from scratch: its own tokenizer
  EXPECT_NO_THROW(pipeline::parse_recipe(j, ""));
}

TEST(Recipe, DataNeedsExactlyOneSource) {
  json j = good();
  j["data"] = json::object();
  expect_error(j, {"$.data.text", "exactly one"});
}

TEST(Recipe, SetOverridesByPath) {
  json j = good();
  pipeline::apply_set(j, "stages[0].steps=77");
  pipeline::apply_set(j, "output.dir=elsewhere");
  pipeline::apply_set(j, R"(student={"init":"random","config":{"n_layers":3}})");
  EXPECT_EQ(j["stages"][0]["steps"], 77);
  EXPECT_EQ(j["output"]["dir"], "elsewhere");
  EXPECT_EQ(j["student"]["config"]["n_layers"], 3);
  EXPECT_THROW(pipeline::apply_set(j, "stages[5].steps=1"), Error);
  EXPECT_THROW(pipeline::apply_set(j, "novalue"), Error);
}

TEST(Recipe, QuantizeStageParsesAndDefaultsToCpk) {
  json j = good();
  j["stages"] = json::parse(R"([{"type": "quantize", "weights": {"type": "int4", "group": 32, "symmetric": false},
                                  "method": "gptq", "gptq": {"damp": 0.02, "act_order": true}, "calibration": {"samples": 16, "seq": 64}},
                                 {"type": "calibrate_kv", "dtype": "fp8", "granularity": "head"}])");
  const pipeline::Recipe r = pipeline::parse_recipe(j, "");
  EXPECT_EQ(r.output_format, "cpk");
  const compress::QuantizeOptions& q = r.stages[0].quantize;
  EXPECT_EQ(q.scheme.describe(), "int4 g32 asym");
  EXPECT_EQ(q.method, "gptq");
  EXPECT_DOUBLE_EQ(q.gptq.damp, 0.02);
  EXPECT_TRUE(q.gptq.act_order);
  EXPECT_EQ(r.stages[0].calibration.samples, 16);
  EXPECT_TRUE(r.stages[1].kv.per_head);
  EXPECT_EQ(r.stages[1].kv.type, DType::F8E4M3);
}

TEST(Recipe, QuantizeStageErrorsNameThePath) {
  json j = good();
  j["stages"] = json::parse(R"([{"type": "quantize", "weights": {"type": "int3"}}])");
  expect_error(j, {"$.stages[0].weights.type", "int8, int4, fp8"});
  j["stages"] = json::parse(R"([{"type": "quantize", "weights": {"type": "int4"}}])");
  expect_error(j, {"$.stages[0].weights.group", "group size"});
  j["stages"] = json::parse(R"([{"type": "quantize", "weights": {"type": "fp8", "symmetric": false}}])");
  expect_error(j, {"$.stages[0].weights.symmetric"});
  j["stages"] = json::parse(R"([{"type": "quantize", "weights": {"type": "int8"}, "gptq": {"damp": 0.1}}])");
  expect_error(j, {"$.stages[0].gptq", "method is not gptq"});
  j["stages"] = json::parse(R"([{"type": "quantize", "weights": {"type": "int8"}, "calibration": {"samples": 8}}])");
  expect_error(j, {"$.stages[0].calibration", "rtn needs no calibration"});
  j["stages"] = json::parse(R"([{"type": "quantize", "weights": {"type": "int8"}}])");
  j["output"]["format"] = "hf";
  expect_error(j, {"$.output.format", "cpk"});
  j["output"].erase("format");
  j["stages"] = json::parse(R"([{"type": "quantize", "weights": {"type": "int8"}}, {"type": "train", "steps": 5}])");
  expect_error(j, {"$.stages[1]", "after quantize"});
  j["stages"] = json::parse(R"([{"type": "calibrate_kv", "dtype": "fp16"}])");
  expect_error(j, {"$.stages[0].dtype", "fp8, int8"});
  j["stages"] = json::parse(R"([{"type": "quantize", "weights": {"type": "int8"}, "activations": {"type": "int4"}}])");
  expect_error(j, {"$.stages[0].activations.type", "int8, fp8"});
  j["stages"] = json::parse(R"([{"type": "quantize", "weights": {"type": "int8"}, "activations": {"type": "fp8", "head": true}, "calibration": {"samples": 4}}])");
  expect_error(j, {"$.stages[0].activations.head", "int8"});
  j["stages"] = json::parse(R"([{"type": "quantize", "weights": {"type": "int8"}, "activations": {"type": "int8", "head": 1}}])");
  expect_error(j, {"$.stages[0].activations.head"});
  j["stages"] = json::parse(R"([{"type": "quantize", "weights": {"type": "int8"}, "activations": {"type": "int8", "alpha": 0.8}}])");
  expect_error(j, {"$.stages[0].activations.alpha", "smoothquant is off"});
  j["stages"] = json::parse(R"([{"type": "quantize", "weights": {"type": "int8"}, "activations": {"type": "int8"}, "calibration": {"samples": 4}}])");
  expect_error(j, {"$.stages[0].calibration", "rtn needs no calibration"});
}

TEST(Recipe, W8A8OptionsParse) {
  json j = good();
  j["stages"] = json::parse(R"([{"type": "quantize", "weights": {"type": "int8"},
                                  "activations": {"type": "fp8", "smoothquant": true, "alpha": 0.7}, "calibration": {"samples": 4}}])");
  const compress::ActivationOptions a = pipeline::parse_recipe(j, "").stages[0].quantize.activations;
  EXPECT_EQ(a.type, DType::F8E4M3);
  EXPECT_TRUE(a.smooth);
  EXPECT_DOUBLE_EQ(a.alpha, 0.7);
  EXPECT_FALSE(a.head);
  j["stages"] = json::parse(R"([{"type": "quantize", "weights": {"type": "int4", "group": 32}, "activations": {"type": "int8", "head": true}}])");
  EXPECT_TRUE(pipeline::parse_recipe(j, "").stages[0].quantize.activations.head);
}

// $.data may be left out when nothing reads it (RTN quantize, magnitude prune);
// a stage that trains or calibrates names itself when it is missing.
TEST(Recipe, DataIsNeededOnlyByStagesThatReadIt) {
  json j = good();
  j.erase("data");
  j["stages"] = json::parse(R"([{"type": "prune", "sparsity": 0.5}, {"type": "quantize", "weights": {"type": "int8"}}])");
  EXPECT_NO_THROW(pipeline::parse_recipe(j, ""));
  j["stages"][1]["method"] = "gptq";
  expect_error(j, {"$.data", "$.stages[1] (quantize)"});
  j["stages"] = json::parse(R"([{"type": "distill", "steps": 2}])");
  expect_error(j, {"$.data", "$.stages[0] (distill)"});
}

// "$CONDENSE_DATA_DIR/..." expands to the environment's data folder (else the
// one beside the source tree), so recipes/ run from anywhere without --set.
TEST(Recipe, DataDirVariableExpands) {
  json j = good();
  j["teacher"]["model"] = "$CONDENSE_DATA_DIR/models/m.bin";
  j["data"]["text"] = json::array({"$CONDENSE_DATA_DIR/t.txt", "$CONDENSE_DATA_DIRX/u.txt"});
  {
    testutil::ScopedEnv env("CONDENSE_DATA_DIR", "/data/here");
    const pipeline::Recipe r = pipeline::parse_recipe(j, "");
    EXPECT_EQ(r.teacher->model, "/data/here/models/m.bin");
    EXPECT_EQ(r.data.text[0], "/data/here/t.txt");
    EXPECT_EQ(r.data.text[1], "$CONDENSE_DATA_DIRX/u.txt");  // another name: left alone
  }
  testutil::ScopedEnv unset("CONDENSE_DATA_DIR", "");
  const pipeline::Recipe r = pipeline::parse_recipe(j, "");
  EXPECT_NE(r.teacher->model.find("shared/data/models/m.bin"), std::string::npos) << r.teacher->model;
}
