// Training throughput (forward + backward + AdamW) on one model: plain CE
// training on random token windows (or, with --teacher-shape, distillation
// from a random teacher of that shape: KD + CE, alpha 0.5), warm, best of
// --reps measured steps; prints one JSON object.
//   bench_train (MODEL | --shape NAME) [--threads N] [--batch 8] [--seq 256] [--reps 3]
//               [--device cpu|cuda|hip] [--bf16] [--teacher-shape NAME]
// On a GPU it also times one large GEMM in the run's precision (8192^3) and
// reports MFU against that measured peak.
// FLOPs counted per step: 6 * (linear + head params) * tokens (forward 2,
// backward 4), plus attention 6 * n_layers * q_dim * seq * (seq + 1) per
// sequence (QK^T and PV, causal, forward + backward).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/model_loader.h"
#include "kernels/cpu/cpu_features.h"
#include "model/shapes.h"
#include "train/trainer.h"
#ifdef CONDENSE_HAVE_GPU
#include "kernels/gpu/device_memory.h"
#include "kernels/gpu/device_query.h"
#include "kernels/gpu/train_ops.h"
#endif

using namespace condense;
using clk = std::chrono::steady_clock;

namespace {
// FLOP/s of an 8192^3 GEMM in the training precision: the peak this device
// reaches on the training's own GEMM path, measured in the same run.
double measured_gemm_peak(bool bf16) {
#ifdef CONDENSE_HAVE_GPU
  namespace gpu = kernels::gpu;
  const int64_t n = 8192;
  gpu::Stream s;
  gpu::DeviceBuffer a(size_t(n * n) * 4), b(size_t(n * n) * 4), c(size_t(n * n) * 4);
  gpu::memset_async(a.data(), 0x3c, a.bytes(), s);
  gpu::memset_async(b.data(), 0x3c, b.bytes(), s);
  auto run = [&] {
    if (bf16) gpu::gemm_bf16(false, true, n, n, n, 1.f, a.as<uint16_t>(), n, b.as<uint16_t>(), n, 0.f, c.as<float>(), n, s);
    else gpu::gemm_f32(false, true, n, n, n, 1.f, a.as<float>(), n, b.as<float>(), n, 0.f, c.as<float>(), n, s);
  };
  run();
  gpu::Timer t;
  t.start(s);
  for (int r = 0; r < 5; ++r) run();
  t.stop(s);
  return 2.0 * double(n) * n * n * 5 / t.seconds();
#else
  (void)bf16;
  return 0;
#endif
}
}  // namespace

int main(int argc, char** argv) {
  std::string path, shape, device = "cpu", teacher_shape;
  int threads = 0, batch = 8, seq = 256, reps = 3;
  bool bf16 = false;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k.rfind("--", 0) != 0) { path = k; continue; }
    if (k == "--bf16") { bf16 = true; continue; }
    if (i + 1 >= argc) { std::fprintf(stderr, "%s needs a value\n", k.c_str()); return 2; }
    const std::string v = argv[++i];
    if (k == "--shape") shape = v;
    else if (k == "--threads") threads = std::atoi(v.c_str());
    else if (k == "--batch") batch = std::atoi(v.c_str());
    else if (k == "--seq") seq = std::atoi(v.c_str());
    else if (k == "--reps") reps = std::atoi(v.c_str());
    else if (k == "--device") device = v;
    else if (k == "--teacher-shape") teacher_shape = v;
    else { std::fprintf(stderr, "unknown option %s\n", k.c_str()); return 2; }
  }
  if (path.empty() == shape.empty()) {
    std::fprintf(stderr, "usage: bench_train (MODEL | --shape NAME) [--threads N] [--batch 8] [--seq 256] [--reps 3] "
                         "[--device cpu|cuda|hip] [--bf16] [--teacher-shape NAME]\n");
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
    opt.device = device_from_name(device);
    opt.bf16 = bf16;
    std::optional<Model> teacher;
    train::ObjectiveConfig oc;
    if (!teacher_shape.empty()) {
      ModelConfig tc = shape_config(teacher_shape);
      if (tc.vocab != c.vocab) throw std::runtime_error("the teacher's vocabulary differs from the student's");
      teacher.emplace(random_model(tc, 2));
      oc.token = {0.5f, 0.5f, 1.f};
    }
    train::Trainer tr(m, teacher ? &*teacher : nullptr, oc, opt, data, c.bos_id);
    std::vector<double> secs;
    tr.run([&](const train::StepLog& s) { secs.push_back(s.seconds); }, {});
    const double best = *std::min_element(secs.begin() + 1, secs.end());  // step 1 is warm-up
    double linear = double(c.vocab) * c.dim;
    for_each_weight(static_cast<const Model&>(m), [&](const WeightRef& w) {
      if (w.kind == WeightKind::Linear) linear += double(w.tensor->numel());
    });
    const double tokens = double(batch) * seq;
    const double flops = 6.0 * linear * tokens + 6.0 * c.n_layers * double(c.q_dim()) * seq * (seq + 1.0) * batch;
    [[maybe_unused]] const double peak = opt.device == Device::CPU ? 0.0 : measured_gemm_peak(bf16);
    nlohmann::json j = {{"model", shape.empty() ? path : shape}, {"threads", omp_get_max_threads()}, {"isa", kernels::isa_name(kernels::active_isa())},
                        {"cpu", kernels::cpu_name()}, {"batch", batch}, {"seq", seq},
                        {"step_seconds", best}, {"tokens_per_s", tokens / best}, {"gflops", flops / best / 1e9},
                        {"flops_per_step", flops}, {"activation_mb", double(tr.activation_bytes()) / 1e6},
                        {"state_mb", double(tr.state_bytes()) / 1e6}, {"device", device},
                        {"precision", bf16 ? "bf16" : "f32"}, {"teacher", teacher_shape.empty() ? nlohmann::json() : nlohmann::json(teacher_shape)}};
    if (!teacher_shape.empty()) j["note"] = "flops count the student's training only (the teacher's forward is not in flops_per_step)";
#ifdef CONDENSE_HAVE_GPU
    if (opt.device != Device::CPU) {
      const auto devs = kernels::gpu::list_devices();
      j["gpu"] = devs.empty() ? "?" : devs[0].name;
      j["gemm_peak_tflops"] = peak / 1e12;
      j["mfu_vs_measured_gemm_peak"] = flops / best / peak;
    }
#endif
    std::printf("%s\n", j.dump().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train: %s\n", e.what());
    return 1;
  }
}
