// Training throughput (forward + backward + AdamW) on one model: plain CE
// training on random token windows, warm, best of --reps measured steps;
// prints one JSON object.
//   bench_train (MODEL | --shape NAME) [--threads N] [--batch 8] [--seq 256] [--reps 3]
// FLOPs counted per step: 6 * (linear + head params) * tokens (forward 2,
// backward 4), plus attention 6 * n_layers * q_dim * seq * (seq + 1) per
// sequence (QK^T and PV, causal, forward + backward).
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
#include "model/shapes.h"
#include "train/trainer.h"

using namespace condense;
using clk = std::chrono::steady_clock;

int main(int argc, char** argv) {
  std::string path, shape;
  int threads = 0, batch = 8, seq = 256, reps = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k.rfind("--", 0) != 0) { path = k; continue; }
    if (i + 1 >= argc) { std::fprintf(stderr, "%s needs a value\n", k.c_str()); return 2; }
    const std::string v = argv[++i];
    if (k == "--shape") shape = v;
    else if (k == "--threads") threads = std::atoi(v.c_str());
    else if (k == "--batch") batch = std::atoi(v.c_str());
    else if (k == "--seq") seq = std::atoi(v.c_str());
    else if (k == "--reps") reps = std::atoi(v.c_str());
    else { std::fprintf(stderr, "unknown option %s\n", k.c_str()); return 2; }
  }
  if (path.empty() == shape.empty()) {
    std::fprintf(stderr, "usage: bench_train (MODEL | --shape NAME) [--threads N] [--batch 8] [--seq 256] [--reps 3]\n");
    return 2;
  }
  if (threads > 0) omp_set_num_threads(threads);
  try {
    Model m = shape.empty() ? load_model(path).model : random_model(shape_config(shape), 1);
    const ModelConfig c = m.config;
    seq = std::min(seq, c.max_seq);
    std::vector<int> toks(1 << 16);
    for (size_t i = 0; i < toks.size(); ++i) toks[i] = int((uint64_t(i) * 2654435761u) % uint64_t(c.vocab));
    train::TokenDataset data = train::TokenDataset::from_tokens(toks, {}, "bench");
    train::TrainOptions opt;
    opt.batch = batch;
    opt.seq = seq;
    opt.steps = reps + 1;
    opt.schedule.lr = 1e-4;
    train::Trainer tr(m, nullptr, {}, opt, data, c.bos_id);
    std::vector<double> secs;
    tr.run([&](const train::StepLog& s) { secs.push_back(s.seconds); }, {});
    const double best = *std::min_element(secs.begin() + 1, secs.end());  // step 1 is warm-up
    double linear = double(c.vocab) * c.dim;
    for_each_weight(static_cast<const Model&>(m), [&](const WeightRef& w) {
      if (w.kind == WeightKind::Linear) linear += double(w.tensor->numel());
    });
    const double tokens = double(batch) * seq;
    const double flops = 6.0 * linear * tokens + 6.0 * c.n_layers * double(c.q_dim()) * seq * (seq + 1.0) * batch;
    nlohmann::json j = {{"model", shape.empty() ? path : shape}, {"threads", omp_get_max_threads()}, {"isa", kernels::isa_name(kernels::active_isa())},
                        {"cpu", kernels::cpu_name()}, {"batch", batch}, {"seq", seq},
                        {"step_seconds", best}, {"tokens_per_s", tokens / best}, {"gflops", flops / best / 1e9},
                        {"flops_per_step", flops}, {"activation_mb", double(tr.activation_bytes()) / 1e6},
                        {"state_mb", double(tr.state_bytes()) / 1e6}};
    std::printf("%s\n", j.dump().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train: %s\n", e.what());
    return 1;
  }
}
