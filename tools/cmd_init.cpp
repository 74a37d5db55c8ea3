// condense init --shape NAME: a randomly initialised model of a standard shape.
#include <filesystem>
#include <iostream>

#include "io/hf_model.h"
#include "io/llama2c.h"
#include "model/model.h"
#include "model/shapes.h"
#include "tools/cli_common.h"

namespace condense::cli {

namespace {
struct InitArgs {
  std::string shape, out, llama2c, dtype = "f32";
  uint64_t seed = 1;
};
}  // namespace

void register_init(CLI::App& app) {
  std::string shapes;
  for (const auto& s : standard_shapes()) shapes += (shapes.empty() ? "" : ", ") + s.name;
  auto* cmd = app.add_subcommand("init", "Write a RANDOMLY initialised model of a standard shape (for benchmarks at realistic sizes)");
  auto a = std::make_shared<InitArgs>();
  cmd->add_option("--shape", a->shape, "One of: " + shapes)->required();
  cmd->add_option("--seed", a->seed, "Initialisation seed");
  cmd->add_option("--out", a->out, "Output folder (Hugging Face layout: config.json + model.safetensors)")->required();
  cmd->add_option("--dtype", a->dtype, "Stored weight type: f32 or bf16");
  cmd->add_option("--llama2c", a->llama2c, "Also write a llama2.c .bin to this path");
  cmd->callback([a] {
    const ModelConfig c = shape_config(a->shape);
    Model m = random_model(c, a->seed);
    save_hf_model(m, a->out, dtype_from_name(a->dtype),
                  {{"condense.random_init", "true"}, {"condense.shape", a->shape}, {"condense.seed", std::to_string(a->seed)}});
    std::cout << "wrote " << a->out << " (" << a->shape << ", " << c.n_params() / 1e6 << " M parameters, random weights)\n";
    if (!a->llama2c.empty()) {
      save_llama2c(m, a->llama2c);
      std::cout << "wrote " << a->llama2c << "\n";
    }
  });
}

}  // namespace condense::cli
