// Data-parallel training and calibration over MPI ranks. Run by ctest under
// `mpirun -np 2` (label mpi); every rank also computes the single-process
// reference itself (no communicator) and compares with what the ranks did
// together.
//
// Tolerances. With 2 ranks the all-reduce returns fl(g0 + g1) for each
// gradient element (IEEE addition is commutative, so both ranks get the same
// bits); the single process instead adds micro-batch 1's contributions into
// micro-batch 0's inside each backward GEMM (beta = 1) and per-layer sums, a
// different association of the same terms. So the two agree to rounding: the
// losses and weights after 10 steps within 1e-6 relative (per tensor, L2).
// Runs of the same rank count are bitwise identical.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <optional>

#include "compress/calibration.h"
#include "compress/prune_model.h"
#include "compress/quantize_model.h"
#include "core/error.h"
#include "dist/comm.h"
#include "model/shapes.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"
#include "train/grad_reducer.h"
#include "train/trainer.h"

using namespace condense;
namespace fs = std::filesystem;

namespace {

dist::Communicator& world() { return dist::world(); }

struct Result {
  std::vector<double> loss, grad_norm;
  Model model;
  uint32_t checksum = 0;
  train::ReduceStats stats;
};

struct Case {
  testutil::TinyShape shape;
  const Model* teacher = nullptr;
  train::ObjectiveConfig objective;
  double sparsity = 0;  // magnitude-pruned student
  bool qat = false;
};

Model make_student(const Case& s) {
  Model m = random_model(testutil::tiny_config(s.shape), 21);
  if (s.sparsity > 0) {
    compress::PruneOptions p;
    p.sparsity = s.sparsity;
    compress::prune_model(m, p, nullptr);
  }
  if (s.qat) {
    compress::QuantizeOptions q;
    q.scheme = QuantScheme::of(DType::I4, Granularity::Group, 16);
    compress::quantize_model(m, q, nullptr);
  }
  return m;
}

train::TrainOptions options(int64_t steps, int batch, int accum) {
  train::TrainOptions o = testutil::short_run(steps, batch, 16, 1e-2);
  o.accum = accum;
  o.adam.weight_decay = 0.01;
  o.clip = 0.5;  // exercised: the norm is taken after the all-reduce
  o.check_every = 3;
  return o;
}

Result train_run(const Case& s, train::TrainOptions o, dist::Communicator* comm, const train::TokenDataset& data) {
  Result r;
  r.model = make_student(s);
  o.comm = comm;
  o.qat = s.qat;
  o.learn_scales = s.qat;
  train::Trainer tr(r.model, s.teacher, s.objective, o, data, r.model.config.bos_id);
  tr.run([&](const train::StepLog& l) {
    r.loss.push_back(l.loss.total);
    r.grad_norm.push_back(l.grad_norm);
  }, {});
  r.checksum = tr.state_checksum();
  if (tr.reduce_stats()) r.stats = *tr.reduce_stats();
  return r;
}

const Tensor& weight(const Model& m, const std::string& name) {
  const Tensor* t = nullptr;
  for_each_weight(m, [&](const WeightRef& w) {
    if (w.name == name) t = w.tensor;
  });
  if (!t) throw std::runtime_error("no weight " + name);
  return *t;
}

double rel_l2(const Tensor& a, const Tensor& b) {
  double d = 0, n = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double x = a.f32()[i], y = b.f32()[i];
    d += (x - y) * (x - y);
    n += x * x;
  }
  return n > 0 ? std::sqrt(d / n) : std::sqrt(d);
}

void expect_close(const Result& ref, const Result& got, double tol) {
  ASSERT_EQ(ref.loss.size(), got.loss.size());
  for (size_t i = 0; i < ref.loss.size(); ++i) {
    EXPECT_NEAR(got.loss[i], ref.loss[i], tol * std::fabs(ref.loss[i])) << "loss, step " << i + 1;
    EXPECT_NEAR(got.grad_norm[i], ref.grad_norm[i], 10 * tol * ref.grad_norm[i]) << "gradient norm, step " << i + 1;
  }
  std::vector<std::pair<std::string, const Tensor*>> a, b;
  for_each_weight(ref.model, [&](const WeightRef& w) { a.push_back({w.name, w.tensor}); });
  for_each_weight(got.model, [&](const WeightRef& w) { b.push_back({w.name, w.tensor}); });
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_LE(rel_l2(*a[i].second, *b[i].second), tol) << a[i].first;
  // it trained
  EXPECT_LT(got.loss.back(), got.loss.front());
}

class DataParallel : public ::testing::Test {
 protected:
  void SetUp() override {
    if (world().size() < 2) GTEST_SKIP() << "needs mpirun -np 2 (or more); ctest runs it so (label mpi)";
  }
  int N() const { return world().size(); }
};

TEST_F(DataParallel, RanksEqualOneRankWithGradientAccumulation) {
  // N ranks x 1 micro-batch of 4 == 1 rank x N micro-batches of 4
  const train::TokenDataset data = testutil::pattern_data(40, 3);
  Case s;
  const Result ref = train_run(s, options(10, 4, N()), nullptr, data);
  const Result a = train_run(s, options(10, 4, N()), &world(), data);
  expect_close(ref, a, 1e-6);
  const Result b = train_run(s, options(10, 4, N()), &world(), data);
  EXPECT_EQ(a.checksum, b.checksum) << "two runs of the same ranks differ";
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_GT(a.stats.bytes, 0);
  // an untied head: the embedding's gradient is then only the lookup's rows
  s.shape.tied = false;
  expect_close(train_run(s, options(10, 4, N()), nullptr, data), train_run(s, options(10, 4, N()), &world(), data), 1e-6);
}

TEST_F(DataParallel, WindowsOfOneMicroBatchSplitOverRanks) {
  // grad_accum 1: each rank takes batch / N windows of the one micro-batch.
  // Each rank's loss is then a mean over its batch / N windows scaled by 1 / N
  // where one process takes the mean over all batch windows: every gradient
  // element is scaled in a different order (1 ulp apart), which 10 Adam steps
  // amplify; observed up to 1.7e-6 (untied head, AVX-512) and 1.14e-6 (tied,
  // AVX2), so 1e-5 here.
  const train::TokenDataset data = testutil::pattern_data(40, 4);
  Case s;
  const Result ref = train_run(s, options(10, 2 * N(), 1), nullptr, data);
  const Result got = train_run(s, options(10, 2 * N(), 1), &world(), data);
  expect_close(ref, got, 1e-5);
  s.shape.tied = false;
  expect_close(train_run(s, options(10, 2 * N(), 1), nullptr, data), train_run(s, options(10, 2 * N(), 1), &world(), data), 1e-5);
}

TEST_F(DataParallel, DistillationWithHiddenProjectionsOnAPrunedStudent) {
  const train::TokenDataset data = testutil::pattern_data(40, 5);
  const Model teacher = random_model(testutil::tiny_config({.dim = 48, .layers = 3, .heads = 6, .kv = 3}), 77);
  Case s;
  s.teacher = &teacher;
  s.sparsity = 0.5;
  s.objective.token.kd = 0.7f;
  s.objective.token.ce = 0.3f;
  s.objective.token.temperature = 2.f;
  s.objective.hidden = {{0, 1}, {1, 2}};
  s.objective.hidden_beta = 0.5f;
  const Result ref = train_run(s, options(10, 4, N()), nullptr, data);
  const Result got = train_run(s, options(10, 4, N()), &world(), data);
  expect_close(ref, got, 1e-6);
  // the masks held on every rank: removed weights are still exactly 0
  for (const auto& [name, wc] : got.model.compression) {
    if (!wc.sparse()) continue;
    const Tensor& w = weight(got.model, name);
    for (int64_t e = 0; e < w.numel(); ++e) {
      if (!mask_kept(wc.mask, e)) {
        ASSERT_EQ(w.f32()[e], 0.f) << name;
      }
    }
  }
}

TEST_F(DataParallel, QatWithLearnedStepSizes) {
  const train::TokenDataset data = testutil::pattern_data(40, 6);
  Case s;
  s.shape.ffn = 64;
  s.qat = true;
  const Result ref = train_run(s, options(10, 4, N()), nullptr, data);
  const Result got = train_run(s, options(10, 4, N()), &world(), data);
  // The losses agree to rounding as above. The weights are fake-quantized: a
  // latent that rounding differences move across a rounding boundary flips
  // its code by one step, and the gradients of the next steps follow. So: the
  // codes, nearly all identical, and the weights within 1e-3 (observed: all
  // codes identical and the weights up to 1.1e-4 apart, so the learned step
  // sizes differ; the unquantized embedding 1.3e-6). The losses follow a
  // flipped code too: 1e-5 (observed 1.0e-6 on the portable path).
  ASSERT_EQ(ref.loss.size(), got.loss.size());
  for (size_t i = 0; i < ref.loss.size(); ++i) EXPECT_NEAR(got.loss[i], ref.loss[i], 1e-5 * ref.loss[i]) << "step " << i + 1;
  int64_t same = 0, total = 0;
  for (const auto& [name, wa] : ref.model.compression) {
    const WeightCompression& wb = got.model.compression.at(name);
    for (size_t i = 0; i < wa.codes.size(); ++i) same += wa.codes[i] == wb.codes[i];
    total += int64_t(wa.codes.size());
    EXPECT_LE(rel_l2(weight(ref.model, name), weight(got.model, name)), 1e-3) << name;
  }
  EXPECT_GE(double(same), 0.99 * double(total));
  EXPECT_LE(rel_l2(ref.model.embed, got.model.embed), 1e-5);
}

TEST_F(DataParallel, TheEmbeddingTailGoesAsRowsOrDenseAndEqualsOneRank) {
  // 64 tokens per rank: of a 40-token vocabulary a rank touches most rows
  // (gathering them costs more than a ring all-reduce: dense); of 512, few (rows)
  for (int vocab : {40, 512}) {
    const train::TokenDataset data = testutil::pattern_data(vocab, 11);
    Case s;
    s.shape.vocab = vocab;
    const Result ref = train_run(s, options(10, 4, N()), nullptr, data);
    const Result got = train_run(s, options(10, 4, N()), &world(), data);
    expect_close(ref, got, 1e-6);
    EXPECT_EQ(got.stats.sparse_tails + got.stats.dense_tails, 10);
    if (vocab == 512) EXPECT_EQ(got.stats.sparse_tails, 10);
    else EXPECT_GE(got.stats.dense_tails, 1);  // (steps whose windows repeat tokens still go as rows)
  }
}

TEST_F(DataParallel, BucketSizeDoesNotChangeTheResult) {
  // 1 KB buckets: many all-reduces per step, started during the backward;
  // each element's sum is the same whatever bucket carries it
  const train::TokenDataset data = testutil::pattern_data(40, 7);
  Case s;
  train::TrainOptions small = options(6, 4, N());
  small.bucket_bytes = 1024;
  const Result a = train_run(s, small, &world(), data);
  const Result b = train_run(s, options(6, 4, N()), &world(), data);
  EXPECT_EQ(a.checksum, b.checksum);
  // 1 KB: the head group (final norm + tied embedding) and each block fill one
  EXPECT_EQ(a.stats.buckets, 6 * 3) << "small buckets: one all-reduce for the head group and one per block";
  EXPECT_EQ(b.stats.buckets, 6);
}

TEST_F(DataParallel, StateFromRanksResumesOnOneRankAndOnRanks) {
  const train::TokenDataset data = testutil::pattern_data(40, 8);
  Case s;
  // rank 0 makes the folder; every rank sees it (one machine)
  std::optional<testutil::TempDir> tmp;
  if (world().root()) tmp.emplace();
  const std::string state = dist::broadcast_string(world(), tmp ? tmp->path.string() : "", 0) + "/state.h5";

  const Result full = train_run(s, options(10, 4, N()), &world(), data);
  {
    Model m = make_student(s);
    train::TrainOptions o = options(10, 4, N());
    o.comm = &world();
    train::Trainer tr(m, nullptr, {}, o, data, m.config.bos_id);
    tr.run({}, {}, 5);
    tr.save(state);
    world().barrier();  // written (rank 0) before anyone reads it
  }
  auto resumed = [&](dist::Communicator* comm) {
    Result r;
    r.model = make_student(s);
    train::TrainOptions o = options(10, 4, N());
    o.comm = comm;
    train::Trainer tr(r.model, nullptr, {}, o, data, r.model.config.bos_id);
    tr.resume(state);
    EXPECT_EQ(tr.step(), 5);
    tr.run([&](const train::StepLog& l) { r.loss.push_back(l.loss.total); }, {});
    r.checksum = tr.state_checksum();
    return r;
  };
  const Result on_ranks = resumed(&world());
  EXPECT_EQ(on_ranks.checksum, full.checksum) << "resumed on the same ranks: bitwise the uninterrupted run";
  const Result alone = resumed(nullptr);  // 1 rank, grad_accum N
  ASSERT_EQ(alone.loss.size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_NEAR(alone.loss[i], full.loss[5 + i], 1e-6 * full.loss[5 + i]) << "step " << 6 + i;
  double worst = 0;
  std::vector<const Tensor*> a, b;
  for_each_weight(full.model, [&](const WeightRef& w) { a.push_back(w.tensor); });
  for_each_weight(alone.model, [&](const WeightRef& w) { b.push_back(w.tensor); });
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, rel_l2(*a[i], *b[i]));
  EXPECT_LE(worst, 1e-6);
  world().barrier();  // every rank done with the folder before rank 0 removes it
}

TEST_F(DataParallel, DifferingStatesAreCaughtNamingTheStep) {
  const train::TokenDataset data = testutil::pattern_data(40, 9);
  Model m = random_model(testutil::tiny_config({}), 3);
  train::TrainOptions o = options(4, 4, N());
  o.comm = &world();
  train::Trainer tr(m, nullptr, {}, o, data, m.config.bos_id);
  tr.run({}, {}, 2);
  if (world().rank() == 1) m.layers[0].wq.f32()[5] += 1e-3f;  // what a diverging rank would do
  try {
    tr.check_ranks_agree();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("step 2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("differ"), std::string::npos) << e.what();
  }
}

TEST_F(DataParallel, AStepThatCannotBeSplitIsRefused) {
  const train::TokenDataset data = testutil::pattern_data(40, 9);
  Model m = random_model(testutil::tiny_config({}), 3);
  train::TrainOptions o = options(4, 2 * N() + 1, 1);
  o.comm = &world();
  try {
    train::Trainer tr(m, nullptr, {}, o, data, m.config.bos_id);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("grad_accum"), std::string::npos) << e.what();
  }
}

// Calibration: every statistic of the whole set on every rank, each rank
// having run only its share of the sequences. One sequence per chunk, so each
// chunk's f32 GEMM is the same on both sides and only the float64 sums over
// chunks are associated differently: 1e-12 relative.
TEST_F(DataParallel, CalibrationStatisticsEqualOneRanks) {
  const Model m = random_model(testutil::tiny_config({.ffn = 64}), 5);
  const compress::CalibrationSet cal = testutil::pattern_calibration(4 * N(), 16);
  compress::LayerwiseCalibrator alone(m, cal.inputs, cal.n_seq, cal.seq, 1);
  compress::LayerwiseCalibrator split(m, cal.inputs, cal.n_seq, cal.seq, 1, &world());
  for (int l = 0; l < m.config.n_layers; ++l) {
    const auto a = alone.collect(l), b = split.collect(l);
    for (int si = 0; si < compress::kNumSites; ++si) {
      const compress::SiteStats &x = a[size_t(si)], &y = b[size_t(si)];
      ASSERT_EQ(x.samples, y.samples);
      double d = 0, n = 0;
      for (size_t i = 0; i < x.hessian.size(); ++i) {
        d = std::max(d, std::fabs(x.hessian[i] - y.hessian[i]));
        n = std::max(n, std::fabs(x.hessian[i]));
      }
      EXPECT_LE(d, 1e-12 * n) << "layer " << l << " site " << si;
      for (size_t i = 0; i < x.abs_mean.size(); ++i) EXPECT_NEAR(x.abs_mean[i], y.abs_mean[i], 1e-12 * x.abs_mean[i]);
      EXPECT_EQ(x.abs_max, y.abs_max);  // a maximum is exact
    }
    std::vector<float> ka, va, kb, vb;
    alone.kv_absmax(l, ka, va);
    split.kv_absmax(l, kb, vb);
    EXPECT_EQ(ka, kb);
    EXPECT_EQ(va, vb);
    alone.advance(l);
    split.advance(l);
  }
}

TEST_F(DataParallel, GptqWithTheCalibrationSetSplitEqualsOneRank) {
  compress::CalibrationSet cal = testutil::pattern_calibration(4 * N(), 16);
  cal.chunk = 1;
  compress::QuantizeOptions q;
  q.method = "gptq";
  q.scheme = QuantScheme::of(DType::I4, Granularity::Group, 16);
  Model a = random_model(testutil::tiny_config({.ffn = 64}), 5), b = random_model(testutil::tiny_config({.ffn = 64}), 5);
  compress::quantize_model(a, q, &cal);
  cal.comm = &world();
  compress::quantize_model(b, q, &cal);
  int64_t same = 0, total = 0;
  for (const auto& [name, wa] : a.compression) {
    const WeightCompression& wb = b.compression.at(name);
    ASSERT_EQ(wa.codes.size(), wb.codes.size()) << name;
    for (size_t i = 0; i < wa.codes.size(); ++i) same += wa.codes[i] == wb.codes[i];
    total += int64_t(wa.codes.size());
    EXPECT_LE(rel_l2(weight(a, name), weight(b, name)), 1e-5) << name;
  }
  // Hessians equal to ~1e-15: a code can only flip on an exact rounding tie
  EXPECT_GE(double(same), 0.999 * double(total));
}

}  // namespace
