// End-to-end engine speed on one model: prefill (batches of --batch tokens,
// all logits computed as evaluation does) and decode (one token at a time after
// a --prompt-token prompt), warm, repeated; prints one JSON object.
//   bench_engine MODEL [--threads N] [--batch 128] [--decode 128] [--reps 3]
// FLOPs counted: 2 * (linear + head params) per token, plus attention
// 4 * n_layers * q_dim * (context length) per token.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/model_loader.h"
#include "kernels/cpu/cpu_features.h"
#include "runtime/engine.h"

using namespace condense;
using clk = std::chrono::steady_clock;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_engine MODEL [--threads N] [--batch 128] [--decode 128] [--reps 3]\n");
    return 2;
  }
  std::string path = argv[1];
  int threads = 0, batch = 128, decode = 128, reps = 3;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (k == "--threads") threads = v;
    else if (k == "--batch") batch = v;
    else if (k == "--decode") decode = v;
    else if (k == "--reps") reps = v;
    else { std::fprintf(stderr, "unknown option %s\n", k.c_str()); return 2; }
  }
  if (threads > 0) omp_set_num_threads(threads);
  try {
    LoadedModel lm = load_model(path, "", {.effective_f32 = false});
    const ModelConfig c = lm.model.config;
    const int ctx = std::max(batch, decode + 1);
    Engine e(lm.model, ctx);
    const std::string format = lm.model.format;
    const bool random = lm.model.random_init;
    release_weights(lm.model);
    std::vector<int> tokens(static_cast<size_t>(ctx));
    for (int i = 0; i < ctx; ++i) tokens[size_t(i)] = int((uint64_t(i) * 2654435761u) % uint64_t(c.vocab));
    std::vector<float> logits(size_t(batch) * size_t(c.vocab));

    const double linear_params = double(e.decode_weight_bytes()) / 4.0;  // linear + head weights read per token
    double best_prefill = 1e30, best_decode = 1e30;
    e.forward(tokens.data(), batch, 0, logits.data(), batch);  // warm-up: page in, allocate scratch
    for (int r = 0; r < reps; ++r) {
      auto t0 = clk::now();
      e.forward(tokens.data(), batch, 0, logits.data(), batch);
      best_prefill = std::min(best_prefill, std::chrono::duration<double>(clk::now() - t0).count());
      t0 = clk::now();
      for (int i = 0; i < decode; ++i) e.forward(&tokens[size_t(i)], 1, i, logits.data(), 1);
      best_decode = std::min(best_decode, std::chrono::duration<double>(clk::now() - t0).count());
    }
    const double attn_prefill = 4.0 * c.n_layers * c.q_dim() * (double(batch) * (batch + 1) / 2.0);
    const double prefill_flops = 2.0 * linear_params * batch + attn_prefill;
    const double decode_bytes = double(e.decode_weight_bytes()) * decode;
    nlohmann::json j = {{"model", path},
                        {"format", format},
                        {"random_init", random},
                        {"parameters", c.n_params()},
                        {"threads", omp_get_max_threads()}, {"isa", kernels::isa_name(kernels::active_isa())},
                        {"cpu", kernels::cpu_name()},
                        {"prefill_batch", batch},
                        {"prefill_tok_s", batch / best_prefill},
                        {"prefill_gflops", prefill_flops / best_prefill / 1e9},
                        {"decode_tokens", decode},
                        {"decode_tok_s", decode / best_decode},
                        {"decode_weight_bytes_per_token", e.decode_weight_bytes()},
                        {"decode_weight_gb_s", decode_bytes / best_decode / 1e9},
                        {"reps", reps}};
    std::printf("%s\n", j.dump().c_str());
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "bench_engine: %s\n", ex.what());
    return 1;
  }
  return 0;
}
