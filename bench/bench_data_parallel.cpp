// Data-parallel training under mpirun: per step, the gradient bytes each rank
// all-reduces, the time the all-reduce took, the part of it the training
// thread waited for (exposed) and so the fraction hidden behind the backward;
// also the same bytes all-reduced alone (no compute: the link's algorithm
// bandwidth) and AdamW alone (it runs on every rank over all parameters).
// Random f32 model of a standard shape, random tokens, plain CE.
//   mpirun -np 2 bench_data_parallel --shape stories15M [--batch 2] [--seq 256] [--steps 3]
//          [--warmup 1] [--bucket-mb 25] [--threads 1]
// Rank 0 prints one JSON object (per-step values are the mean of the measured steps).
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "dist/comm.h"
#include "kernels/cpu/cpu_features.h"
#include "model/shapes.h"
#include "train/grad_reducer.h"
#include "train/trainer.h"

using namespace condense;
using clk = std::chrono::steady_clock;

int main(int argc, char** argv) {
  std::string shape = "stories15M";
  int batch = 2, seq = 256, steps = 3, warmup = 1, threads = 1;
  double bucket_mb = 25;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--shape") shape = v;
    else if (k == "--batch") batch = std::atoi(v.c_str());
    else if (k == "--seq") seq = std::atoi(v.c_str());
    else if (k == "--steps") steps = std::atoi(v.c_str());
    else if (k == "--warmup") warmup = std::atoi(v.c_str());
    else if (k == "--threads") threads = std::atoi(v.c_str());
    else if (k == "--bucket-mb") bucket_mb = std::atof(v.c_str());
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  try {
    omp_set_num_threads(threads);
    dist::Communicator& w = dist::world();
    const int N = w.size();
    const ModelConfig cfg = shape_config(shape);
    Model m = random_model(cfg, 1);
    std::mt19937 g(7);
    std::vector<int> toks(size_t(seq) * 64 + 1);
    for (int& t : toks) t = 3 + int(g() % uint32_t(cfg.vocab - 3));
    const train::TokenDataset data = train::TokenDataset::from_tokens(toks, {}, "bench");

    train::TrainOptions o;
    o.steps = warmup + steps;
    o.batch = batch;  // per rank: grad_accum N makes each rank run one micro-batch of `batch`
    o.accum = N;
    o.seq = seq;
    o.schedule.lr = 1e-4;
    o.schedule.total_steps = o.steps;
    o.comm = &w;
    o.bucket_bytes = size_t(bucket_mb * 1048576.0);
    o.check_every = 0;
    train::Trainer tr(m, nullptr, {}, o, data, cfg.bos_id);
    std::vector<double> step_s;
    train::ReduceStats before;
    tr.run([&](const train::StepLog& l) {
      if (l.step == warmup && tr.reduce_stats()) before = *tr.reduce_stats();
      if (l.step > warmup) step_s.push_back(l.seconds);
    }, {});
    const train::ReduceStats after = tr.reduce_stats() ? *tr.reduce_stats() : train::ReduceStats{};
    const size_t bytes = tr.reduce_bytes_per_step();

    // the same bytes alone, and AdamW alone
    std::vector<float> buf(bytes / 4, 1.f);
    double alone = 0;
    if (N > 1) {
      w.allreduce_sum(buf.data(), buf.size());
      w.barrier();
      const auto t0 = clk::now();
      for (int r = 0; r < 3; ++r) w.allreduce_sum(buf.data(), buf.size());
      alone = std::chrono::duration<double>(clk::now() - t0).count() / 3;
    }
    Model grads = train::zeros_model(cfg);
    train::ParamSet ps = train::model_params(m, grads, false);
    train::AdamW adam(ps, {});
    adam.step(ps, 1e-6);
    const auto ta = clk::now();
    adam.step(ps, 1e-6);
    const double adam_s = std::chrono::duration<double>(clk::now() - ta).count();

    if (w.root()) {
      double mean = 0;
      for (double s : step_s) mean += s / double(step_s.size());
      const double n_meas = double(after.steps - before.steps);
      const double comm = n_meas > 0 ? (after.comm_s - before.comm_s) / n_meas : 0;
      const double exposed = n_meas > 0 ? (after.exposed_s - before.exposed_s) / n_meas : 0;
      const double ring = N > 1 ? 2.0 * double(N - 1) / double(N) * double(bytes) : 0;
      nlohmann::json j = {
          {"bench", "data_parallel"}, {"shape", shape}, {"params", cfg.n_params()}, {"ranks", N}, {"backend", w.describe()},
          {"isa", kernels::isa_name(kernels::active_isa())}, {"cpu", kernels::cpu_name()}, {"threads_per_rank", threads},
          {"batch_per_rank", batch}, {"seq", seq}, {"tokens_per_step", int64_t(batch) * seq * N}, {"bucket_mb", bucket_mb},
          {"measured_steps", step_s.size()}, {"step_s", mean},
          {"allreduce_bytes_per_step", bytes}, {"ring_bytes_sent_per_rank", ring},
          {"buckets_per_step", n_meas > 0 ? double(after.buckets - before.buckets) / n_meas : 0},
          {"allreduce_s_per_step", comm}, {"exposed_s_per_step", exposed},
          {"hidden_fraction", comm > 0 ? std::max(0.0, 1.0 - exposed / comm) : 0.0},
          {"allreduce_alone_s", alone}, {"allreduce_alone_busbw_gbps", alone > 0 ? ring / alone / 1e9 : 0.0},
          {"adamw_s", adam_s}, {"compute_s_per_step", mean - exposed - adam_s},
          {"tokens_per_s", double(batch) * seq * N / mean}};
      std::printf("%s\n", j.dump(2).c_str());
    }
    dist::finalize();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_data_parallel: %s\n", e.what());
    if (dist::Communicator* w = dist::started_world()) w->abort(1);
    return 1;
  }
  return 0;
}
