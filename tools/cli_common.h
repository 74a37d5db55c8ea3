// Options and helpers every `condense` subcommand shares.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

namespace condense::cli {

struct ModelArgs {
  std::string model;
  std::string tokenizer;
  int threads = 0;
};

// Adds MODEL (positional), --tokenizer and --threads.
void add_model_args(CLI::App& app, ModelArgs& a);
// Applies --threads (0 = OpenMP's default).
void apply_threads(int threads);
int active_threads();

void register_info(CLI::App& app);
void register_generate(CLI::App& app);
void register_eval(CLI::App& app);
void register_init(CLI::App& app);
void register_run(CLI::App& app);
void register_train(CLI::App& app);
void register_data(CLI::App& app);

}  // namespace condense::cli
