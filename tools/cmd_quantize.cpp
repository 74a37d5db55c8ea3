// condense quantize MODEL --to int8|int4|fp8 --out FILE.cpk: the common case
// in one line, mapped onto a one-stage recipe (docs/RECIPES.md) as `train` is.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "pipeline/recipe.h"
#include "pipeline/run_recipe.h"
#include "tools/cli_common.h"

namespace condense::cli {

namespace fs = std::filesystem;

namespace {
struct QuantizeArgs {
  ModelArgs model;
  std::string to, method = "rtn", out, tokens, activations, kv;
  std::vector<std::string> text, targets, sets;
  int group = -1, samples = 128;
  bool asym = false, head = false, json = false, log_json = false, dry_run = false;
};

// The recipe the options describe.
nlohmann::json recipe_of(const QuantizeArgs& a, const std::string& out_dir) {
  using nlohmann::json;
  const int group = a.group >= 0 ? a.group : a.to == "int4" ? 32 : 0;
  json weights = {{"type", a.to}, {"granularity", group > 0 ? "group" : "channel"}};
  if (group > 0) weights["group"] = group;
  if (a.asym) weights["symmetric"] = false;
  json q = {{"type", "quantize"}, {"weights", weights}, {"method", a.method}};
  if (a.method != "rtn" || a.activations == "fp8") q["calibration"] = {{"samples", a.samples}};
  if (!a.targets.empty()) q["targets"] = a.targets;
  else if (a.head) q["targets"] = json::array({"model.layers.*_proj.weight", "model.embed_tokens.weight"});
  if (!a.activations.empty()) {
    q["activations"] = {{"type", a.activations}};
    if (a.head && a.activations == "int8") q["activations"]["head"] = true;
  }
  json stages = json::array({q});
  if (!a.kv.empty()) stages.push_back({{"type", "calibrate_kv"}, {"dtype", a.kv}, {"calibration", {{"samples", a.samples}}}});
  json teacher = {{"model", a.model.model}};
  if (!a.model.tokenizer.empty()) teacher["tokenizer"] = a.model.tokenizer;
  json j = {{"name", "quantize"}, {"teacher", teacher}, {"student", {{"init", "from_teacher"}}}, {"stages", stages},
            {"output", {{"dir", out_dir}}}};
  if (!a.text.empty()) j["data"] = {{"text", a.text}};
  else if (!a.tokens.empty()) j["data"] = {{"tokens", a.tokens}};
  for (const std::string& s : a.sets) pipeline::apply_set(j, s);
  return j;
}
}  // namespace

void register_quantize(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "quantize", "Quantize a model into a .cpk in one line (a one-stage recipe: `--dry-run` prints it; see docs/RECIPES.md)");
  auto a = std::make_shared<QuantizeArgs>();
  add_model_args(*cmd, a->model);
  cmd->add_option("--to", a->to, "Weight format")->required()->check(CLI::IsMember({"int8", "int4", "fp8"}));
  cmd->add_option("--out", a->out, "Output: FILE.cpk (its recipe results beside it as FILE.results.json), or a folder")->required();
  cmd->add_option("--group", a->group, "Columns per scale group (default: 32 for int4, per channel for int8 / fp8; 0 = per channel)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--asym", a->asym, "A zero point per group (int8 / int4)");
  cmd->add_option("--method", a->method, "rtn, or gptq / awq (calibrated: need --text or --tokens)")
      ->check(CLI::IsMember({"rtn", "gptq", "awq"}));
  cmd->add_option("--text", a->text, "Calibration text files (gptq, awq, --activations fp8, --kv)");
  cmd->add_option("--tokens", a->tokens, "A folder from `condense data prepare` instead of --text");
  cmd->add_option("--samples", a->samples, "Calibration windows")->check(CLI::PositiveNumber);
  cmd->add_option("--activations", a->activations, "Also quantize the block linears' inputs: int8 (per token, at run time: W8A8) or fp8")
      ->check(CLI::IsMember({"int8", "fp8"}));
  cmd->add_flag("--head", a->head, "Quantize the tied embedding / LM head too (with --activations int8: its input as well)");
  cmd->add_option("--targets", a->targets, "Weight name globs to quantize instead (default: every block linear; see --head)");
  cmd->add_option("--kv", a->kv, "Calibrate a KV cache dtype stored with the model")->check(CLI::IsMember({"fp8", "int8"}));
  cmd->add_option("--set", a->sets, "Override a value of the recipe (as `condense run --set`), e.g. stages[0].gptq.damp=0.05");
  cmd->add_flag("--json", a->json, "Print the results object as JSON");
  cmd->add_flag("--log-json", a->log_json, "Progress as JSON lines on stderr");
  cmd->add_flag("--dry-run", a->dry_run, "Print the recipe and run nothing");
  cmd->callback([a] {
    const std::string needs = a->method != "rtn" ? a->method : a->activations == "fp8" ? "--activations fp8" : !a->kv.empty() ? "--kv" : "";
    if (!needs.empty() && a->text.empty() && a->tokens.empty()) {
      fail("--text", needs + " calibrates on text: pass --text FILE... (or --tokens DIR from `condense data prepare`)");
    }
    const fs::path out(a->out);
    const bool file = out.extension() == ".cpk";
    // A .cpk output is built in a work folder beside it and moved into place
    // at the end: no half-written file under the name asked for.
    const fs::path dir = file ? out.parent_path() / ("." + out.filename().string() + ".work") : out;
    const nlohmann::json j = recipe_of(*a, dir.string());
    const pipeline::Recipe r = pipeline::parse_recipe(j, "");
    if (a->dry_run) {
      std::cout << j.dump(2) << "\n";
      return;
    }
    apply_threads(a->model.threads);
    nlohmann::json res;
    try {
      res = pipeline::run_recipe(r, {false, a->log_json});
      if (file) {
        const fs::path results = fs::path(out).replace_extension(".results.json");
        fs::rename(dir / "model.cpk", out);
        fs::rename(dir / "results.json", results);
        fs::remove_all(dir);
        res["output_model"] = out.string();
        res["results"] = results.string();
      }
    } catch (...) {
      if (file) {
        std::error_code ec;
        fs::remove_all(dir, ec);
      }
      throw;
    }
    if (a->json) {
      std::cout << res.dump() << "\n";
      return;
    }
    std::printf("wrote %s (%.1f s)\n", res["output_model"].get<std::string>().c_str(), res["seconds"].get<double>());
  });
}

}  // namespace condense::cli
