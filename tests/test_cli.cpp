// The command line as a newcomer meets it: an unknown command is named with the
// list of commands, --help shows defaults, `quantize` maps onto the recipe it
// prints with --dry-run, and refuses a calibrated method without text before
// any work. (Running `quantize` on a real model: test_real_compress.cpp.)
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "tests/test_util.h"

namespace {

testutil::CommandResult run_condense(const std::string& args) { return testutil::run_command(std::string(CONDENSE_BIN) + " " + args); }

}  // namespace

TEST(Cli, UnknownCommandIsNamedWithTheCommands) {
  const auto r = run_condense("quantise model.bin");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("unknown command 'quantise'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("quantize"), std::string::npos) << r.output;  // the list
  const auto none = run_condense("");
  EXPECT_EQ(none.status, 1);
  EXPECT_NE(none.output.find("Usage: condense"), std::string::npos) << none.output;
}

TEST(Cli, HelpShowsDefaultsAndThatCpkIsAModel) {
  const auto r = run_condense("eval --help");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("=256"), std::string::npos) << r.output;  // --ctx's default
  EXPECT_NE(r.output.find(".cpk"), std::string::npos) << r.output;
}

TEST(Cli, QuantizeMapsOntoARecipe) {
  const auto r = run_condense("quantize m.bin --to int4 --head --activations int8 --kv int8 --text t.txt --out x.cpk --dry-run");
  ASSERT_EQ(r.status, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  const auto& q = j["stages"][0];
  EXPECT_EQ(q["weights"]["type"], "int4");
  EXPECT_EQ(q["weights"]["group"], 32);  // int4's default
  EXPECT_EQ(q["method"], "rtn");
  EXPECT_FALSE(q.contains("calibration"));  // rtn reads none
  EXPECT_EQ(q["targets"][1], "model.embed_tokens.weight");
  EXPECT_EQ(q["activations"]["head"], true);
  EXPECT_EQ(j["stages"][1]["type"], "calibrate_kv");
  EXPECT_EQ(j["data"]["text"][0], "t.txt");
  // RTN alone needs no data; a calibrated method does, and says how to give it.
  const auto rtn = run_condense("quantize m.bin --to int8 --out x.cpk --dry-run");
  ASSERT_EQ(rtn.status, 0) << rtn.output;
  EXPECT_FALSE(nlohmann::json::parse(rtn.output).contains("data"));
  const auto gptq = run_condense("quantize m.bin --to int4 --method gptq --out x.cpk");
  EXPECT_EQ(gptq.status, 1);
  EXPECT_NE(gptq.output.find("--text"), std::string::npos) << gptq.output;
}

// --device: a device this build or machine cannot use is refused before any
// model is read, saying why (training commands too).
TEST(Cli, DeviceOptionRefusesWhatThisBuildCannotRun) {
  const auto bad = run_condense("generate no-such-model.bin --device tpu");
  EXPECT_EQ(bad.status, 1) << bad.output;
  EXPECT_NE(bad.output.find("'tpu' is not one of cpu, cuda, hip"), std::string::npos) << bad.output;
  for (const char* d : {"cuda", "hip"}) {
    const auto r = run_condense(std::string("generate no-such-model.bin --device ") + d);
    EXPECT_EQ(r.status, 1) << r.output;
    EXPECT_NE(r.output.find(std::string("cannot run on ") + d), std::string::npos) << r.output;
  }
  const auto train = run_condense("train no-such-model.bin --text t.txt --out o --device cuda");
  EXPECT_EQ(train.status, 1) << train.output;
  EXPECT_NE(train.output.find("cannot run on cuda"), std::string::npos) << train.output;
  const auto help = run_condense("serve --help");
  EXPECT_NE(help.output.find("--device"), std::string::npos) << help.output;
}
