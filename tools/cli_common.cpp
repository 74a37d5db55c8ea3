#include "tools/cli_common.h"

#include <omp.h>

namespace condense::cli {

void add_model_args(CLI::App& app, ModelArgs& a) {
  app.add_option("model", a.model,
                 "Model: a llama2.c .bin, a Hugging Face folder (config.json + *.safetensors) or a .gguf file")
      ->required();
  app.add_option("--tokenizer", a.tokenizer,
                 "Tokenizer file (llama2.c tokenizer.bin, SentencePiece tokenizer.model or HF tokenizer.json) for formats that carry none");
  app.add_option("--threads", a.threads, "OpenMP threads (default: all cores)")->check(CLI::NonNegativeNumber);
}

void apply_threads(int threads) {
  if (threads > 0) omp_set_num_threads(threads);
}

int active_threads() { return omp_get_max_threads(); }

}  // namespace condense::cli
