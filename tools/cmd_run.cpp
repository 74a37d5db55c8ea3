// condense run RECIPE [--set key=value]... : runs a recipe's stages in order.
// condense train MODEL --text FILE|--tokens DIR --out DIR : a one-stage recipe.
#include <iostream>
#include <nlohmann/json.hpp>

#include "dist/comm.h"
#include "dist/rank_output.h"
#include "dist/watchdog.h"
#include "pipeline/preflight.h"
#include "pipeline/recipe.h"
#include "pipeline/run_recipe.h"
#include "tools/cli_common.h"

namespace condense::cli {

namespace {
struct RunArgs {
  std::string recipe;
  std::vector<std::string> sets;
  bool resume = false, log_json = false, json = false, dry_run = false;
  int threads = 0;
  std::string device = "cpu";
  double bucket_mb = 25, comm_timeout = 300;
  int64_t check_every = 50;
  CLI::Option* timeout_opt = nullptr;
};

void print_result(const nlohmann::json& res, bool as_json) {
  if (as_json) {
    std::cout << res.dump() << "\n";
    return;
  }
  std::cout << "wrote " << res["output_model"].get<std::string>() << "\n";
  if (res.contains("eval")) {
    const auto& e = res["eval"];
    std::cout << "perplexity (ctx " << e["ctx"] << ", " << e["max_windows"] << " windows): student " << e["student_ppl"];
    if (e.contains("teacher_ppl")) std::cout << ", teacher " << e["teacher_ppl"];
    std::cout << "\n";
  }
  std::cout << "total " << res["seconds"].get<double>() << " s\n";
}

void add_common(CLI::App* cmd, RunArgs& a) {
  cmd->add_option("--set", a.sets, "Override a recipe value: key=value, e.g. stages[0].steps=200 (repeatable)");
  cmd->add_flag("--resume", a.resume, "Continue each stage from its state file in the output folder");
  cmd->add_flag("--log-json", a.log_json, "Progress, steps and validation as JSON lines on stderr");
  cmd->add_flag("--json", a.json, "Print the results object as JSON");
  cmd->add_flag("--dry-run", a.dry_run, "Validate the recipe (after --set) and print it; run nothing");
  add_threads_option(*cmd, a.threads);
  add_device_option(*cmd, a.device, true);
  auto* dp = "Data parallel (under mpirun -np N)";
  cmd->add_option("--bucket-mb", a.bucket_mb, "Megabytes of gradients per all-reduce, each started as soon as the backward has finished them")
      ->check(CLI::Range(0.001, 1e6))->group(dp);
  cmd->add_option("--check-every", a.check_every,
                  "Steps between checks that every rank holds the same weights, moments and masks (0: at the end of each stage only)")
      ->check(CLI::NonNegativeNumber)->group(dp);
  a.timeout_opt = cmd->add_option("--comm-timeout", a.comm_timeout,
                                  "Seconds a rank waits in a collective before exiting with an error (a peer died or stalled; 0: forever). "
                                  "Default: $CONDENSE_COMM_TIMEOUT, else 300")
                      ->check(CLI::NonNegativeNumber)->group(dp);
}

void execute(nlohmann::json j, const RunArgs& a) {
  const Device device = parse_device(a.device);  // refused here, before the recipe is read
  for (const std::string& s : a.sets) pipeline::apply_set(j, s);
  const pipeline::Recipe r = pipeline::parse_recipe(j, "");
  if (a.dry_run) {
    pipeline::preflight(r);  // the files it names, read as far as their headers
    std::cout << j.dump(2) << "\n";
    return;
  }
  apply_threads(a.threads);
  if (a.timeout_opt->count()) dist::set_comm_timeout(a.comm_timeout);
  pipeline::RunOptions o{a.resume, a.log_json, device};
  dist::Communicator& w = dist::world();
  if (w.size() > 1) {
    o.comm = &w;
    o.bucket_bytes = size_t(a.bucket_mb * 1048576.0);
    o.check_every = a.check_every;
    dist::silence_stderr_unless_root();  // rank 0 reports for the run; main() restores it for an error
  }
  const nlohmann::json res = pipeline::run_recipe(r, o);
  dist::restore_stderr();
  if (w.root()) print_result(res, a.json);
}
}  // namespace

void register_run(CLI::App& app) {
  auto* cmd = app.add_subcommand("run", "Run a recipe (JSON: teacher, data, student, stages, output; see docs/RECIPES.md)");
  auto a = std::make_shared<RunArgs>();
  cmd->add_option("recipe", a->recipe, "Recipe file")->required()->check(CLI::ExistingFile);
  add_common(cmd, *a);
  cmd->callback([a] { execute(pipeline::load_recipe_json(a->recipe), *a); });
}

void register_train(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Train a model with cross-entropy: a one-stage recipe (options map onto it)");
  auto a = std::make_shared<RunArgs>();
  auto m = std::make_shared<std::string>();
  auto tok = std::make_shared<std::string>();
  auto text = std::make_shared<std::vector<std::string>>();
  auto tokens = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto steps = std::make_shared<int64_t>(100);
  auto batch = std::make_shared<int>(8);
  auto seq = std::make_shared<int>(256);
  auto lr = std::make_shared<double>(1e-3);
  cmd->add_option("model", *m, "Starting model (any format condense reads)")->required();
  cmd->add_option("--tokenizer", *tok, "Tokenizer file, for formats that carry none");
  cmd->add_option("--text", *text, "Training text files (the tail of each is held out for validation)");
  cmd->add_option("--tokens", *tokens, "A folder from `condense data prepare` instead of --text");
  cmd->add_option("--out", *out, "Output folder (model, state, results.json)")->required();
  cmd->add_option("--steps", *steps, "Optimizer steps")->check(CLI::PositiveNumber);
  cmd->add_option("--batch", *batch, "Windows per step")->check(CLI::PositiveNumber);
  cmd->add_option("--seq", *seq, "Tokens per window")->check(CLI::Range(2, 1 << 20));
  cmd->add_option("--lr", *lr, "Peak learning rate (cosine schedule)")->check(CLI::PositiveNumber);
  add_common(cmd, *a);
  cmd->callback([=] {
    nlohmann::json j = {{"name", "train"},
                        {"student", {{"init", "model"}, {"model", *m}}},
                        {"stages", {{{"type", "train"}, {"steps", *steps}, {"batch", *batch}, {"seq", *seq}, {"lr", *lr}}}},
                        {"output", {{"dir", *out}}}};
    if (!tok->empty()) j["student"]["tokenizer"] = *tok;
    j["data"] = tokens->empty() ? nlohmann::json{{"text", *text}} : nlohmann::json{{"tokens", *tokens}};
    execute(j, *a);
  });
}

}  // namespace condense::cli
