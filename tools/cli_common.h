// Options and helpers every `condense` subcommand shares.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "core/device.h"
#include "model/model.h"

namespace condense::cli {

struct ModelArgs {
  std::string model;
  std::string tokenizer;
  int threads = 0;
};

// Adds MODEL (positional), --tokenizer and --threads.
void add_model_args(CLI::App& app, ModelArgs& a);
// Adds --device (cpu | cuda | hip; default cpu). training: the option of
// `run` / `train` (its help says which stages run there).
void add_device_option(CLI::App& app, std::string& device, bool training = false);
// The parsed --device, failing with the reason when this build or machine
// cannot run on it (no GPU backend, another backend, no device visible).
Device parse_device(const std::string& device);
// The draft model a .cpk's provenance records (a recipe's draft stage), as a
// path resolved against the model's folder, after checking that the file is
// still the one recorded (crc32c); "" when none is recorded. Fails when the
// recorded draft is missing or changed, naming --no-draft.
std::string recorded_draft(const std::string& model_path, const Model& m);
// Adds --threads (0 = the default below).
void add_threads_option(CLI::App& app, int& threads);
// Every command's default, set once in main: OMP_NUM_THREADS, else the CPUs
// this process may use (kernels::available_cpus()), never more than those.
void apply_default_threads();
// Applies --threads when given (> 0), bounded like the default; 0 keeps it.
void apply_threads(int threads);
int active_threads();
// "1G", "512M", "65536", "2GiB": bytes (K/M/G/T are powers of 1024); Error naming `option` otherwise.
size_t parse_bytes(const std::string& s, const std::string& option);

// Gives every floating-point option of `app` and its subcommands a check that
// refuses NaN and infinities (CLI11's range checks let NaN through: every
// comparison with it is false). Call once, after all options are registered.
void refuse_non_finite_numbers(CLI::App& app);

void register_info(CLI::App& app);
void register_generate(CLI::App& app);
void register_eval(CLI::App& app);
void register_init(CLI::App& app);
void register_run(CLI::App& app);
void register_train(CLI::App& app);
void register_data(CLI::App& app);
void register_bench(CLI::App& app);
void register_quantize(CLI::App& app);
void register_report(CLI::App& app);
void register_sweep(CLI::App& app);
void register_serve(CLI::App& app);
void register_convert(CLI::App& app);

}  // namespace condense::cli
