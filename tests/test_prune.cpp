// Pruning against references written here: mask selection (matrix, row, N:M,
// existing masks) against sorting, Wanda's scores in float64, SparseGPT
// against a float64 OBS implementation that inverts the remaining columns'
// Hessian at every step (no Cholesky, no lazy blocks), the cubic schedule in
// closed form, whole-model pruning (per-tensor and global thresholds, masks in
// Model::compression), and masks surviving training steps and a state file.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "compress/awq.h"
#include "compress/prune.h"
#include "compress/prune_model.h"
#include "core/error.h"
#include "io/train_state.h"
#include "model/shapes.h"
#include "tests/reference/linalg_ref64.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"
#include "train/token_data.h"
#include "train/trainer.h"

using namespace condense;
using namespace condense::compress;

namespace {

using testutil::randn;

bool kept(const std::vector<uint64_t>& m, int64_t i) { return (m[size_t(i >> 6)] >> (i & 63)) & 1u; }

// Checks that `mask` removes exactly `remove` of the indices [first, first + count)
// (stride 1) and that every removed score is <= every kept one.
void check_group(const std::vector<float>& score, const std::vector<uint64_t>& mask, int64_t first, int64_t count, int64_t remove) {
  std::vector<float> gone, left;
  for (int64_t i = first; i < first + count; ++i) (kept(mask, i) ? left : gone).push_back(score[size_t(i)]);
  ASSERT_EQ(int64_t(gone.size()), remove);
  if (!gone.empty() && !left.empty()) {
    EXPECT_LE(*std::max_element(gone.begin(), gone.end()), *std::min_element(left.begin(), left.end()));
  }
}

}  // namespace

TEST(PruneMask, MatrixRowAndNmSelectTheLowestScores) {
  const int64_t rows = 7, cols = 24;
  std::vector<float> s = randn(rows * cols, 1);
  for (float& v : s) v = std::fabs(v);
  check_group(s, select_mask(s, rows, cols, 0.3, Compare::Matrix, {}), 0, rows * cols, std::llround(0.3 * rows * cols));
  const std::vector<uint64_t> row = select_mask(s, rows, cols, 0.5, Compare::Row, {});
  for (int64_t r = 0; r < rows; ++r) check_group(s, row, r * cols, cols, 12);
  const std::vector<uint64_t> nm = select_mask(s, rows, cols, 0, Compare::Matrix, {2, 4});
  for (int64_t g = 0; g < rows * cols; g += 4) check_group(s, nm, g, 4, 2);
}

TEST(PruneMask, ExistingRemovalsStayAndCountTowardTheTarget) {
  const int64_t rows = 4, cols = 16, n = rows * cols;
  std::vector<float> s = randn(n, 2);
  for (float& v : s) v = std::fabs(v);
  // remove the 10 largest scores first: they must stay removed, and only 22 more go for 50%
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return s[size_t(a)] > s[size_t(b)]; });
  std::vector<uint64_t> existing = keep_all(n);
  for (int k = 0; k < 10; ++k) existing[0] &= ~(uint64_t(1) << order[size_t(k)]);
  const std::vector<uint64_t> m = select_mask(s, rows, cols, 0.5, Compare::Matrix, {}, existing);
  EXPECT_EQ(count_kept(m, n), n / 2);
  for (int k = 0; k < 10; ++k) EXPECT_FALSE(kept(m, order[size_t(k)]));
  // a target below what is already removed removes nothing more
  EXPECT_EQ(count_kept(select_mask(s, rows, cols, 0.05, Compare::Matrix, {}, existing), n), n - 10);
}

TEST(PruneMask, BadPatternsFailClearly) {
  const std::vector<float> s(6 * 10, 1.f);
  EXPECT_THROW(select_mask(s, 6, 10, 0, Compare::Matrix, {2, 4}), Error);  // 10 inputs are not groups of 4
  EXPECT_THROW(select_mask(s, 6, 10, 1.5, Compare::Matrix, {}), Error);
  EXPECT_THROW(select_mask(std::vector<float>(5), 6, 10, 0.5, Compare::Matrix, {}), Error);
}

TEST(Wanda, ScoresAreAbsWeightTimesInputNorm) {
  const int64_t rows = 5, cols = 12;
  const std::vector<float> w = randn(rows * cols, 3);
  const std::vector<double> h = ref::hessian(cols, 300, 4);
  const std::vector<float> s = wanda_scores(w.data(), rows, cols, h);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const double want = std::fabs(double(w[size_t(r * cols + c)])) * std::sqrt(h[size_t(c * cols + c)]);
      EXPECT_NEAR(s[size_t(r * cols + c)], want, 1e-6 * want);
    }
  }
}

namespace {

// SparseGPT in float64 by the OBS recursion written out: for each column c,
// Hinv_c = inverse of the damped H restricted to columns c.. (inverted afresh);
// at each block start the mask removes the lowest OBS saliencies w^2 / [Hinv_c]_00
// over the block; a removed weight's error err = w / [Hinv_c]_00 is spread over the
// remaining columns as w_j -= err * [Hinv_c]_0j.
std::vector<double> sparsegpt_ref(const std::vector<float>& w0, int64_t rows, int64_t cols, std::vector<double> h, double sparsity,
                                  int64_t block, double damp, std::vector<bool>& kept_out) {
  double mean = 0;
  for (int64_t i = 0; i < cols; ++i) mean += h[size_t(i * cols + i)] / double(cols);
  for (int64_t i = 0; i < cols; ++i) h[size_t(i * cols + i)] += damp * mean;
  std::vector<std::vector<double>> hinv(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) {
    const int64_t m = cols - c;
    std::vector<double> sub(size_t(m * m));
    for (int64_t a = 0; a < m; ++a) {
      for (int64_t b = 0; b < m; ++b) sub[size_t(a * m + b)] = h[size_t((c + a) * cols + c + b)];
    }
    hinv[size_t(c)] = ref::inverse(sub, m);
  }
  std::vector<double> w(w0.begin(), w0.end());
  kept_out.assign(size_t(rows * cols), true);
  for (int64_t i1 = 0; i1 < cols; i1 += block) {
    const int64_t i2 = std::min(cols, i1 + block), nb = i2 - i1;
    std::vector<std::pair<double, int64_t>> sc;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = i1; c < i2; ++c) {
        const double d = hinv[size_t(c)][0];
        sc.push_back({w[size_t(r * cols + c)] * w[size_t(r * cols + c)] / d, r * cols + c});
      }
    }
    std::sort(sc.begin(), sc.end());
    const int64_t remove = std::llround(sparsity * double(rows * nb));
    for (int64_t k = 0; k < remove; ++k) kept_out[size_t(sc[size_t(k)].second)] = false;
    for (int64_t c = i1; c < i2; ++c) {
      const std::vector<double>& hi = hinv[size_t(c)];
      const int64_t m = cols - c;
      for (int64_t r = 0; r < rows; ++r) {
        if (kept_out[size_t(r * cols + c)]) continue;
        const double err = w[size_t(r * cols + c)] / hi[0];
        for (int64_t j = 0; j < m; ++j) w[size_t(r * cols + c + j)] -= err * hi[size_t(j)];
      }
    }
  }
  return w;
}

}  // namespace

TEST(SparseGpt, MatchesFloat64ObsReference) {
  const int64_t rows = 10, cols = 40;
  const std::vector<double> h = ref::hessian(cols, 400, 5);
  const std::vector<float> w0 = randn(rows * cols, 6);
  for (int64_t block : {int64_t(8), int64_t(40)}) {
    SCOPED_TRACE("block " + std::to_string(block));
    std::vector<bool> ref_kept;
    const std::vector<double> ref = sparsegpt_ref(w0, rows, cols, h, 0.5, block, 0.01, ref_kept);
    std::vector<float> w = w0;
    SparseGptOptions o;
    o.block = int(block);
    const std::vector<uint64_t> mask = sparsegpt_prune(w.data(), rows, cols, h, 0.5, {}, o);
    EXPECT_EQ(count_kept(mask, rows * cols), rows * cols / 2);
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < rows * cols; ++i) {
      ASSERT_EQ(kept(mask, i), ref_kept[size_t(i)]) << "element " << i;
      if (!kept(mask, i)) {
        ASSERT_EQ(w[size_t(i)], 0.f);
      }
      worst = std::max(worst, std::fabs(double(w[size_t(i)]) - ref[size_t(i)]));
      scale = std::max(scale, std::fabs(ref[size_t(i)]));
    }
    EXPECT_LT(worst, 1e-5 * scale) << "float32 weights, float64 updates";
  }
}

TEST(SparseGpt, BeatsMagnitudeAndWandaOnCorrelatedInputs) {
  const int64_t rows = 16, cols = 64;
  const std::vector<double> h = ref::hessian(cols, 600, 7);
  const std::vector<float> w0 = randn(rows * cols, 8);
  for (const NmPattern nm : {NmPattern{}, NmPattern{2, 4}}) {
    SCOPED_TRACE(nm.active() ? "2:4" : "unstructured 50%");
    std::vector<float> mag = w0, wanda = w0, sgpt = w0;
    apply_mask(mag.data(), rows * cols, select_mask(magnitude_scores(w0.data(), rows * cols), rows, cols, 0.5, Compare::Matrix, nm));
    apply_mask(wanda.data(), rows * cols, select_mask(wanda_scores(w0.data(), rows, cols, h), rows, cols, 0.5, Compare::Row, nm));
    const std::vector<uint64_t> m = sparsegpt_prune(sgpt.data(), rows, cols, h, 0.5, nm, {});
    EXPECT_EQ(count_kept(m, rows * cols), rows * cols / 2);
    if (nm.active()) {
      for (int64_t g = 0; g < rows * cols; g += 4) EXPECT_EQ(int(kept(m, g)) + kept(m, g + 1) + kept(m, g + 2) + kept(m, g + 3), 2);
    }
    const double e_mag = output_error(w0.data(), mag.data(), rows, cols, h);
    const double e_wanda = output_error(w0.data(), wanda.data(), rows, cols, h);
    const double e_sgpt = output_error(w0.data(), sgpt.data(), rows, cols, h);
    EXPECT_LT(e_wanda, e_mag);
    EXPECT_LT(e_sgpt, e_wanda);
  }
}

TEST(SparseGpt, KeepsExistingRemovals) {
  const int64_t rows = 6, cols = 32, n = rows * cols;
  const std::vector<double> h = ref::hessian(cols, 200, 9);
  std::vector<float> w = randn(n, 10);
  std::vector<uint64_t> existing = keep_all(n);
  for (int64_t i = 0; i < n; i += 3) existing[size_t(i >> 6)] &= ~(uint64_t(1) << (i & 63));  // a third gone
  const std::vector<uint64_t> m = sparsegpt_prune(w.data(), rows, cols, h, 0.5, {}, {}, existing);
  for (int64_t i = 0; i < n; i += 3) EXPECT_FALSE(kept(m, i));
  EXPECT_EQ(count_kept(m, n), n / 2);
}

TEST(GradualSchedule, CubicFromInitialToFinal) {
  GradualSchedule g;
  g.initial = 0.1;
  g.final_sparsity = 0.7;
  g.begin = 10;
  g.end = 110;
  g.every = 30;
  EXPECT_DOUBLE_EQ(g.at(0), 0.1);
  EXPECT_DOUBLE_EQ(g.at(10), 0.1);
  EXPECT_NEAR(g.at(60), 0.7 + (0.1 - 0.7) * 0.125, 1e-12);  // halfway: (1 - 1/2)^3
  EXPECT_DOUBLE_EQ(g.at(110), 0.7);
  EXPECT_DOUBLE_EQ(g.at(500), 0.7);
  for (int64_t t = 10; t < 110; ++t) EXPECT_LE(g.at(t), g.at(t + 1));
  std::vector<int64_t> updates;
  for (int64_t t = 0; t < 200; ++t) {
    if (g.update_at(t)) updates.push_back(t);
  }
  EXPECT_EQ(updates, (std::vector<int64_t>{10, 40, 70, 100, 110}));
  EXPECT_EQ(g.next_update(0), 10);
  EXPECT_EQ(g.next_update(10), 40);
  EXPECT_EQ(g.next_update(100), 110);
  EXPECT_EQ(g.next_update(110), INT64_MAX);
}

namespace {

Model tiny(uint64_t seed) { return random_model(testutil::tiny_config({.ffn = 64}), seed); }

std::vector<std::string> block_linears(const Model& m) { return select_weights(m, {}, "test"); }

}  // namespace

TEST(PruneModel, PerTensorMagnitudeRecordsMasksAndZeroes) {
  Model m = tiny(1);
  const Model orig = tiny(1);
  PruneOptions o;
  o.sparsity = 0.5;
  const nlohmann::json rep = prune_model(m, o, nullptr);
  EXPECT_NEAR(rep["sparsity"].get<double>(), 0.5, 1e-9);
  std::vector<const Tensor*> before;
  for_each_weight(orig, [&](const WeightRef& r) { before.push_back(r.tensor); });
  size_t k = 0;
  int checked = 0;
  for_each_weight(m, [&](const WeightRef& r) {
    const Tensor& w0 = *before[k++];
    auto it = m.compression.find(r.name);
    if (it == m.compression.end()) return;
    ++checked;
    EXPECT_FALSE(it->second.scheme.quantized());
    EXPECT_DOUBLE_EQ(rep["tensors"][r.name]["sparsity"].get<double>(), 0.5);
    float max_removed = 0, min_kept = 1e30f;
    for (int64_t i = 0; i < r.tensor->numel(); ++i) {
      const float a = std::fabs(w0.f32()[i]);
      if (it->second.kept(i)) {
        min_kept = std::min(min_kept, a);
        EXPECT_EQ(r.tensor->f32()[i], w0.f32()[i]);
      } else {
        max_removed = std::max(max_removed, a);
        EXPECT_EQ(r.tensor->f32()[i], 0.f);
      }
    }
    EXPECT_LE(max_removed, min_kept) << r.name;
  });
  EXPECT_EQ(checked, 7 * m.config.n_layers);
  EXPECT_EQ(m.compression.count("model.embed_tokens.weight"), 0u) << "embeddings are not targets by default";
}

TEST(PruneModel, GlobalThresholdIsOneCutAcrossTensors) {
  Model m = tiny(2);
  Model orig = tiny(2);
  PruneOptions o;
  o.sparsity = 0.6;
  o.scope = "global";
  const nlohmann::json rep = prune_model(m, o, nullptr);
  EXPECT_NEAR(rep["sparsity"].get<double>(), 0.6, 1e-4);
  float max_removed = 0, min_kept = 1e30f;
  std::vector<double> per_tensor;
  for_each_weight(orig, [&](const WeightRef& r) {
    auto it = m.compression.find(r.name);
    if (it == m.compression.end()) return;
    for (int64_t i = 0; i < r.tensor->numel(); ++i) {
      const float a = std::fabs(r.tensor->f32()[i]);
      if (it->second.kept(i)) min_kept = std::min(min_kept, a);
      else max_removed = std::max(max_removed, a);
    }
    per_tensor.push_back(rep["tensors"][r.name]["sparsity"].get<double>());
  });
  EXPECT_LE(max_removed, min_kept);
  // random init scales differ by fan-in, so one global cut prunes tensors unevenly
  EXPECT_GT(*std::max_element(per_tensor.begin(), per_tensor.end()) - *std::min_element(per_tensor.begin(), per_tensor.end()), 0.05);
}

// SparseGPT's layer-wise output error is below magnitude's on every tensor;
// Wanda removes exactly half of every row (its comparison group).
TEST(PruneModel, CalibratedMethodsLayerwise) {
  Model base = tiny(3);
  CalibrationSet cal;
  cal.n_seq = 6;
  cal.seq = 24;
  std::mt19937 rng(5);
  for (int s = 0; s < cal.n_seq; ++s) {
    cal.inputs.push_back(base.config.bos_id);
    for (int t = 1; t < cal.seq; ++t) cal.inputs.push_back(int(rng() % uint32_t(base.config.vocab)));
  }
  for (const char* method : {"wanda", "sparsegpt"}) {
    SCOPED_TRACE(method);
    Model m = tiny(3);
    PruneOptions o;
    o.method = method;
    o.sparsity = 0.5;
    const nlohmann::json rep = prune_model(m, o, &cal);
    for (const auto& [n, e] : rep["tensors"].items()) {
      EXPECT_EQ(e["method"], method);
      EXPECT_DOUBLE_EQ(e["sparsity"].get<double>(), 0.5);
      if (std::string(method) == "sparsegpt") {
        EXPECT_LT(e["output_error"].get<double>(), e["output_error_magnitude"].get<double>()) << n;
      }
    }
    if (std::string(method) == "wanda") {
      for_each_weight(m, [&](const WeightRef& r) {
        if (!m.compression.count(r.name)) return;
        const WeightCompression& wc = m.compression.at(r.name);
        const int64_t cols = r.tensor->dim(1);
        for (int64_t row = 0; row < r.tensor->dim(0); ++row) {
          int64_t k = 0;
          for (int64_t c = 0; c < cols; ++c) k += wc.kept(row * cols + c);
          EXPECT_EQ(k, cols / 2) << r.name << " row " << row;
        }
      });
    }
  }
}

TEST(PruneModel, RefusesQuantizedWeightsAndBadOptions) {
  Model m = tiny(4);
  PruneOptions o;
  o.method = "wanda";
  EXPECT_THROW(prune_model(m, o, nullptr), Error);  // needs calibration
  o.method = "random";
  EXPECT_THROW(prune_model(m, o, nullptr), Error);
  o.method = "wanda";
  o.scope = "global";
  EXPECT_THROW(prune_model(m, o, nullptr), Error);
  QuantizeOptions q;
  q.scheme = QuantScheme::of(DType::I8, Granularity::PerChannel);
  quantize_model(m, q, nullptr);
  PruneOptions p;
  try {
    prune_model(m, p, nullptr);
    FAIL() << "pruned a quantized weight";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Prune before quantizing"), std::string::npos) << e.what();
  }
}

TEST(PruneModel, QuantizingAfterPruningKeepsTheMask) {
  Model m = tiny(5);
  PruneOptions p;
  p.sparsity = 0.5;
  prune_model(m, p, nullptr);
  QuantizeOptions q;
  q.scheme = QuantScheme::of(DType::I4, Granularity::Group, 16);
  quantize_model(m, q, nullptr);
  for (const std::string& n : block_linears(m)) {
    const WeightCompression& wc = m.compression.at(n);
    EXPECT_TRUE(wc.scheme.quantized());
    EXPECT_TRUE(wc.sparse());
  }
}

TEST(PruneTraining, MasksSurviveStepsAndTheStateFile) {
  Model m = tiny(6);
  PruneOptions p;
  p.sparsity = 0.5;
  prune_model(m, p, nullptr);
  const Model before = tiny(6);  // unpruned copy: kept weights must move
  const train::TokenDataset data = testutil::pattern_data(m.config.vocab, 7);
  train::TrainOptions o = testutil::short_run(4, 2, 16, 1e-2);
  o.adam.weight_decay = 0.1;
  testutil::TempDir dir;
  o.state_path = dir / "state.h5";
  train::Trainer tr(m, nullptr, {}, o, data, m.config.bos_id);
  tr.run({}, {});
  const std::string name = "model.layers.1.mlp.down_proj.weight";
  const WeightCompression& wc = m.compression.at(name);
  Tensor* w = nullptr;
  const Tensor* w0 = nullptr;
  for_each_weight(m, [&](const WeightRef& r) {
    if (r.name == name) w = r.tensor;
  });
  for_each_weight(before, [&](const WeightRef& r) {
    if (r.name == name) w0 = r.tensor;
  });
  Tensor am = Tensor::zeros(DType::F32, w->shape()), av = Tensor::zeros(DType::F32, w->shape()), mk = Tensor::zeros(DType::F32, w->shape());
  read_train_state_tensors(o.state_path, {{"adam_m/" + name, &am}, {"adam_v/" + name, &av}, {"mask/" + name, &mk}});
  int moved = 0;
  for (int64_t i = 0; i < w->numel(); ++i) {
    if (wc.kept(i)) {
      moved += w->f32()[i] != w0->f32()[i];
      EXPECT_EQ(mk.f32()[i], 1.f);
    } else {
      ASSERT_EQ(w->f32()[i], 0.f) << i;
      ASSERT_EQ(am.f32()[i], 0.f) << i;
      ASSERT_EQ(av.f32()[i], 0.f) << i;
      EXPECT_EQ(mk.f32()[i], 0.f);
    }
  }
  EXPECT_GT(moved, w->numel() / 4) << "the kept weights trained";

  // a run resumed from the state gets its masks back, even if the model's were changed since
  Model again = tiny(6);
  prune_model(again, p, nullptr);
  std::vector<uint64_t>& other = again.compression.at(name).mask;
  std::fill(other.begin(), other.end(), ~uint64_t(0));
  train::Trainer tr2(again, nullptr, {}, o, data, m.config.bos_id);
  tr2.resume(o.state_path);
  EXPECT_EQ(again.compression.at(name).mask, wc.mask);
}
