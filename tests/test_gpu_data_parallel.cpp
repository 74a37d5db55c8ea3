// Data-parallel training on GPU ranks, run under `mpirun -np 2` (label mpi)
// in builds without a GPU backend: the GPU trainer against
// tests/gpu_emulator.cpp (device memory is host memory), its gradients summed
// by a DeviceAllReduce that all-reduces those buffers over MPI where NCCL
// would on GPUs. It checks what the trainer hands to the device all-reduce
// (every weight's and projection's gradient, before masks and fake
// quantization) and when: 2 emulated GPU ranks x 1 micro-batch equal 1
// emulated GPU x 2 micro-batches within 1e-6 (as tests/test_data_parallel.cpp,
// same reason). NCCL itself is not run here.
#include <gtest/gtest.h>

#include <cmath>

#include "compress/prune_model.h"
#include "dist/comm.h"
#include "dist/device_allreduce.h"
#include "model/shapes.h"
#include "tests/tiny_model.h"
#include "train/grad_reducer.h"
#include "train/trainer.h"

using namespace condense;

namespace {

class HostAllReduce final : public dist::DeviceAllReduce {
 public:
  explicit HostAllReduce(dist::Communicator& c) : c_(c) {}
  void sum(const std::vector<std::pair<float*, size_t>>& buffers, void*) override {
    for (const auto& [p, n] : buffers) c_.allreduce_sum(p, n);
    ++calls;
  }
  std::string describe() const override { return "host (emulated device memory)"; }
  int calls = 0;

 private:
  dist::Communicator& c_;
};

struct Outcome {
  std::vector<double> loss;
  Model model;
};

Outcome train_gpu(dist::Communicator* comm, HostAllReduce* ar, const Model* teacher, const train::ObjectiveConfig& obj) {
  Outcome r;
  r.model = random_model(testutil::tiny_config({}), 31);
  compress::PruneOptions p;
  p.sparsity = 0.4;
  compress::prune_model(r.model, p, nullptr);
  const train::TokenDataset data = testutil::pattern_data(40, 12);
  train::TrainOptions o = testutil::short_run(10, 4, 16, 1e-2);
  o.accum = 2;
  o.clip = 0.5;
  o.device = Device::CUDA;
  o.comm = comm;
  o.device_allreduce = ar;
  o.check_every = 3;
  train::Trainer tr(r.model, teacher, obj, o, data, r.model.config.bos_id);
  tr.run([&](const train::StepLog& l) { r.loss.push_back(l.loss.total); }, {});
  return r;
}

double rel_l2(const Tensor& a, const Tensor& b) {
  double d = 0, n = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    d += (double(a.f32()[i]) - b.f32()[i]) * (double(a.f32()[i]) - b.f32()[i]);
    n += double(a.f32()[i]) * a.f32()[i];
  }
  return std::sqrt(d / std::max(n, 1e-30));
}

TEST(GpuDataParallel, EmulatedGpuRanksEqualOneGpuWithAccumulation) {
  dist::Communicator& w = dist::world();
  if (w.size() != 2) GTEST_SKIP() << "needs mpirun -np 2 (ctest runs it so, label mpi)";
  const Model teacher = random_model(testutil::tiny_config({.dim = 48, .layers = 3, .heads = 6, .kv = 3}), 8);
  train::ObjectiveConfig obj;
  obj.token.kd = 0.5f;
  obj.token.ce = 0.5f;
  obj.hidden = {{1, 2}};
  obj.hidden_beta = 0.3f;
  HostAllReduce ar(w);
  const Outcome ref = train_gpu(nullptr, nullptr, &teacher, obj);
  const Outcome got = train_gpu(&w, &ar, &teacher, obj);
  EXPECT_EQ(ar.calls, 10);  // once per step
  ASSERT_EQ(ref.loss.size(), got.loss.size());
  for (size_t i = 0; i < ref.loss.size(); ++i) EXPECT_NEAR(got.loss[i], ref.loss[i], 1e-6 * ref.loss[i]) << "step " << i + 1;
  std::vector<const Tensor*> a, b;
  for_each_weight(ref.model, [&](const WeightRef& x) { a.push_back(x.tensor); });
  for_each_weight(got.model, [&](const WeightRef& x) { b.push_back(x.tensor); });
  for (size_t i = 0; i < a.size(); ++i) EXPECT_LE(rel_l2(*a[i], *b[i]), 1e-6) << "tensor " << i;
  EXPECT_LT(got.loss.back(), got.loss.front());
}

}  // namespace
