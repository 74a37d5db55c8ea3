// Mixed precision: the allocation against brute force, the sensitivity pass
// against a direct float64 computation (tests/reference/model_ref64), per-tensor
// schemes in one quantize stage, the variants' recipes, and the sweep running
// the pass once (cached) and only new budgets later.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>

#include "compress/bit_allocation.h"
#include "compress/quantize_model.h"
#include "compress/rtn.h"
#include "core/error.h"
#include "io/hf_model.h"
#include "model/shapes.h"
#include "pipeline/mixed_precision.h"
#include "pipeline/sensitivity.h"
#include "pipeline/sweep.h"
#include "tests/reference/model_ref64.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"

using namespace condense;
using nlohmann::json;

namespace {

// The least summed loss within the budget over every combination (inf when none fits).
double brute_force(const std::vector<compress::AllocationItem>& items, double budget) {
  double best = INFINITY;
  std::vector<size_t> c(items.size(), 0);
  for (;;) {
    double size = 0, loss = 0;
    for (size_t i = 0; i < items.size(); ++i) size += items[i].size[c[i]], loss += items[i].loss[c[i]];
    if (size <= budget) best = std::min(best, loss);
    size_t i = 0;
    while (i < items.size() && ++c[i] == items[i].size.size()) c[i++] = 0;
    if (i == items.size()) return best;
  }
}

}  // namespace

TEST(BitAllocation, EqualsBruteForceOnIntegerSizes) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 200; ++trial) {
    const int n = 1 + int(rng() % 6), opts = 1 + int(rng() % 4);
    std::vector<compress::AllocationItem> items(static_cast<size_t>(n));
    double lo = 0, hi = 0;
    for (auto& it : items) {
      for (int o = 0; o < opts; ++o) {
        it.size.push_back(double(1 + rng() % 40));
        it.loss.push_back(std::uniform_real_distribution<double>(-0.2, 1)(rng));
      }
      lo += *std::min_element(it.size.begin(), it.size.end());
      hi += *std::max_element(it.size.begin(), it.size.end());
    }
    for (double budget : {lo - 1, lo, std::floor((lo + hi) / 2), hi - 1, hi, hi + 5}) {
      const double want = brute_force(items, budget);
      const auto got = compress::allocate(items, budget);
      if (std::isinf(want)) {
        EXPECT_FALSE(got.has_value()) << "trial " << trial;
        continue;
      }
      ASSERT_TRUE(got.has_value()) << "trial " << trial << " budget " << budget;
      EXPECT_NEAR(got->loss, want, 1e-12) << "trial " << trial << " budget " << budget;
      EXPECT_LE(got->size, budget);
      double size = 0, loss = 0;
      for (size_t i = 0; i < items.size(); ++i) size += items[i].size[size_t(got->choice[i])], loss += items[i].loss[size_t(got->choice[i])];
      EXPECT_EQ(size, got->size);
      EXPECT_NEAR(loss, got->loss, 1e-12);
    }
  }
}

TEST(BitAllocation, NeverExceedsALargeBudgetCutIntoUnits) {
  // sizes far above the grid: rounded to units, the true sum still fits
  std::mt19937 rng(5);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<compress::AllocationItem> items(12);
    double lo = 0, hi = 0;
    for (auto& it : items) {
      for (int o = 0; o < 3; ++o) {
        it.size.push_back(1e5 + double(rng() % 1000000) + 0.37);
        it.loss.push_back(std::uniform_real_distribution<double>(0, 1)(rng));
      }
      lo += *std::min_element(it.size.begin(), it.size.end());
      hi += *std::max_element(it.size.begin(), it.size.end());
    }
    const double budget = lo + (hi - lo) * 0.4;
    const auto a = compress::allocate(items, budget, 256);
    ASSERT_TRUE(a.has_value());
    EXPECT_LE(a->size, budget);
    // never worse than the cheapest choice everywhere
    double cheapest = 0;
    for (const auto& it : items) cheapest += it.loss[size_t(std::min_element(it.size.begin(), it.size.end()) - it.size.begin())];
    EXPECT_LE(a->loss, cheapest + 1e-12);
  }
  EXPECT_THROW(compress::allocate({{{1.0}, {0.5, 0.2}}}, 3), Error);  // one size, two losses
  EXPECT_THROW(compress::allocate({{{1.0}, {0.5}}}, NAN), Error);
}

namespace {

// Mean KL(ref || model) over every position, and the mean NLL change over the
// positions with a next token, for windows fed from position 0: float64 throughout.
void direct_kl(const ref::Ref64Model& r, const ref::Ref64Model& q, const compress::CalibrationSet& cal, double* kl, double* dnll) {
  const int V = r.c.vocab;
  double s = 0, d = 0;
  for (int w = 0; w < cal.n_seq; ++w) {
    std::vector<int> in(cal.inputs.begin() + w * cal.seq, cal.inputs.begin() + (w + 1) * cal.seq);
    const std::vector<double> a = ref::forward64(r, in, nullptr), b = ref::forward64(q, in, nullptr);
    for (int i = 0; i < cal.seq; ++i) {
      auto lse = [&](const std::vector<double>& l) {
        double mx = -INFINITY, z = 0;
        for (int j = 0; j < V; ++j) mx = std::max(mx, l[size_t(i * V + j)]);
        for (int j = 0; j < V; ++j) z += std::exp(l[size_t(i * V + j)] - mx);
        return mx + std::log(z);
      };
      const double la = lse(a), lb = lse(b);
      for (int j = 0; j < V; ++j) {
        const double pa = a[size_t(i * V + j)] - la, pb = b[size_t(i * V + j)] - lb;
        s += std::exp(pa) * (pa - pb);
      }
      if (i + 1 < cal.seq) {
        const int nx = in[size_t(i + 1)];
        d += (a[size_t(i * V + nx)] - la) - (b[size_t(i * V + nx)] - lb);
      }
    }
  }
  *kl = s / (cal.n_seq * cal.seq);
  *dnll = d / (cal.n_seq * (cal.seq - 1));
}

}  // namespace

TEST(Sensitivity, EqualsADirectFloat64Computation) {
  Model m = random_model(testutil::tiny_config({.vocab = 40, .max_seq = 32}), 11);
  // init-scale weights (sd 0.02) make a model whose outputs barely move (KL ~1e-10);
  // scaled up, compressing one weight moves the KL far above float rounding
  for_each_weight(m, [](const WeightRef& w) {
    if (w.kind != WeightKind::Linear && w.kind != WeightKind::Embedding) return;
    for (int64_t i = 0; i < w.tensor->numel(); ++i) w.tensor->f32()[i] *= 12;
  });
  const compress::CalibrationSet cal = testutil::pattern_calibration(3, 24, 40);
  const std::vector<pipeline::StorageOption> opts = {pipeline::storage_option(json{{"type", "int4"}, {"group", 16}}, "o0"),
                                                     pipeline::storage_option(json{{"type", "int8"}}, "o1"),
                                                     pipeline::storage_option(json{{"sparsity", 0.5}}, "o2")};
  EXPECT_EQ(opts[0].name, "int4g16");
  EXPECT_EQ(opts[2].name, "f32-s50");
  const std::vector<std::string> targets = {"model.layers.0.self_attn.k_proj.weight", "model.layers.1.mlp.down_proj.weight"};
  const pipeline::Sensitivity s = pipeline::measure_sensitivity(m, opts, targets, cal);
  ASSERT_EQ(s.rows.size(), 2u);
  for (const auto& row : s.rows) ASSERT_EQ(row.kl.size(), opts.size());
  const ref::Ref64Model r = ref::ref_from_model(m);
  for (const pipeline::SensitivityRow& row : s.rows) {
    for (size_t o = 0; o < opts.size(); ++o) {
      // the one weight compressed, by the test's own pruning or the (separately tested) RTN
      Model q = m;
      for_each_weight(q, [&](const WeightRef& w) {
        if (w.name != row.tensor) return;
        Tensor t = w.tensor->clone();
        const int64_t n = row.rows * row.cols;
        if (opts[o].sparsity > 0) {
          std::vector<float> mag(t.f32(), t.f32() + n);
          for (float& v : mag) v = std::fabs(v);
          std::vector<float> sorted = mag;
          std::nth_element(sorted.begin(), sorted.begin() + n / 2, sorted.end());
          const float cut = sorted[size_t(n / 2)];
          for (int64_t i = 0; i < n; ++i) {
            if (mag[size_t(i)] < cut) t.f32()[i] = 0;
          }
        } else {
          compress::quantize_rtn(opts[o].scheme, t.f32(), row.rows, row.cols, {}, t.f32());
        }
        *w.tensor = t;
      });
      double kl = 0, dnll = 0;
      direct_kl(r, ref::ref_from_model(q), cal, &kl, &dnll);
      // float32 forward against float64: log-probabilities agree to ~1e-7 of their size (|log p| ~ 4
      // here), the reference's stored as float; KLs here are 9e-6 .. 2e-2 (at least 100x the absolute floor), NLL changes 1e-4 .. 2e-2
      EXPECT_NEAR(row.kl[o], kl, 1e-4 * kl + 1e-8) << row.tensor << " " << opts[o].name;
      EXPECT_NEAR(row.dnll[o], dnll, 1e-4 * std::fabs(dnll) + 5e-7) << row.tensor << " " << opts[o].name;
      EXPECT_GT(row.kl[o], 1e-6) << row.tensor << " " << opts[o].name << ": too small to test anything";
    }
    for (double us : row.us) EXPECT_GT(us, 0) << row.tensor;  // a kernel's time on one row, measured
    EXPECT_GT(row.reference_us, 0) << row.tensor;
    // int4 g16 (4 bits + an f16 scale per 16) is smaller than int8 (8 bits + one scale per row)
    EXPECT_LT(row.bytes[0], row.bytes[1]);
    EXPECT_GT(row.kl[0], row.kl[1]);
  }
  // the table survives its JSON, and refuses other options
  const pipeline::Sensitivity back = pipeline::sensitivity_from_json(s.to_json(), opts);
  EXPECT_EQ(back.rows[1].kl, s.rows[1].kl);
  EXPECT_EQ(back.rows[1].bytes, s.rows[1].bytes);
  EXPECT_EQ(back.rows[1].us, s.rows[1].us);
  EXPECT_THROW(pipeline::sensitivity_from_json(s.to_json(), {opts[0], opts[1]}), Error);
  // GPTQ: the same weights calibrated; an already compressed model is refused
  pipeline::SensitivityMethod g;
  g.method = "gptq";
  g.calibration = &cal;
  const pipeline::Sensitivity sg = pipeline::measure_sensitivity(m, {opts[0], opts[1]}, targets, cal, g);
  for (const auto& row : sg.rows) EXPECT_GT(row.kl[0], row.kl[1]);
  Model c = m;
  compress::QuantizeOptions qo;
  qo.scheme = opts[1].scheme;
  compress::quantize_model(c, qo, nullptr);
  EXPECT_THROW(pipeline::measure_sensitivity(c, opts, targets, cal), Error);
}

TEST(MixedPrecision, OneQuantizeStageHoldsEveryWeightsOwnScheme) {
  const ModelConfig cfg = testutil::tiny_config({.vocab = 40, .max_seq = 32});
  const compress::CalibrationSet cal = testutil::pattern_calibration(4, 16, 40);
  for (const std::string method : {"rtn", "gptq"}) {
    Model m = random_model(cfg, 12);
    compress::QuantizeOptions q;
    q.scheme = QuantScheme::of(DType::I8, Granularity::PerChannel);
    q.method = method;
    q.schemes["model.layers.1.mlp.up_proj.weight"] = QuantScheme::of(DType::I4, Granularity::Group, 16);
    const json rep = compress::quantize_model(m, q, &cal);
    EXPECT_EQ(m.compression.at("model.layers.1.mlp.up_proj.weight").scheme.type, DType::I4);
    EXPECT_EQ(m.compression.at("model.layers.1.mlp.down_proj.weight").scheme.type, DType::I8);
    EXPECT_EQ(m.compression.at("model.layers.0.mlp.up_proj.weight").scheme.type, DType::I8);
    EXPECT_NE(rep["scheme"].get<std::string>().find("mixed:"), std::string::npos) << rep["scheme"];
  }
  Model m = random_model(cfg, 12);
  compress::QuantizeOptions q;
  q.scheme = QuantScheme::of(DType::I8, Granularity::PerChannel);
  q.targets = {"model.layers.0.*"};
  q.schemes["model.layers.1.mlp.up_proj.weight"] = QuantScheme::of(DType::I4, Granularity::Group, 16);
  EXPECT_THROW(compress::quantize_model(m, q, nullptr), Error);  // not a target
  // the recipe key, refused with AWQ
  json st = {{"type", "quantize"}, {"weights", {{"type", "int8"}}}, {"method", "awq"},
             {"overrides", {{"model.layers.0.mlp.up_proj.weight", {{"type", "int4"}, {"group", 16}}}}}};
  json r = {{"name", "x"}, {"teacher", {{"model", "t.bin"}}}, {"student", {{"init", "from_teacher"}}}, {"data", {{"text", "a.txt"}}},
            {"stages", {st}}, {"output", {{"dir", "o"}}}};
  EXPECT_THROW(pipeline::parse_recipe(r, ""), Error);
  r["stages"][0]["method"] = "rtn";
  EXPECT_EQ(pipeline::parse_recipe(r, "").stages[0].quantize.schemes.size(), 1u);
}

TEST(MixedPrecision, VariantsFollowTheAllocation) {
  const json spec = {{"teacher", {{"model", "t.bin"}}},
                     {"data", {{"text", "a.txt"}}},
                     {"mixed", {{"options", {{{"type", "int4"}, {"group", 32}}, {{"type", "int8"}}}}, {"bits", {"int4g32", 6.0, 1.0}}}},
                     {"output", {{"dir", "out"}}}};
  const pipeline::MixedSpec ms = pipeline::parse_mixed(spec);
  pipeline::Sensitivity s;
  s.options = ms.options;
  // three 64 x 64 weights: int4 g32 4.5 bits, int8 8.25; the second is the sensitive one
  // kernel times: int4 0.5 us, int8 1 us (the reference, f32, 2 us each)
  s.rows = {{"w.a", 64, 64, {0.01, 0.001}, {0, 0}, {2304, 4224}, {0.5, 1.0}, 2.0},
            {"w.b", 64, 64, {0.50, 0.002}, {0, 0}, {2304, 4224}, {0.5, 1.0}, 2.0},
            {"w.c", 64, 64, {0.02, 0.001}, {0, 0}, {2304, 4224}, {0.5, 1.0}, 2.0}};
  std::vector<std::string> notes;
  const auto pts = pipeline::mixed_points(spec, ms, s, NAN, &notes);
  ASSERT_EQ(pts.size(), 2u);
  EXPECT_EQ(notes.size(), 1u);  // 1 bit per weight fits nothing
  // at the uniform int4 g32 size nothing can be upgraded; at 6 bits only the sensitive one
  EXPECT_EQ(pts[0].choice, (std::vector<int>{0, 0, 0}));
  EXPECT_EQ(pts[0].point.name, "mixed-4.50b-rtn");
  EXPECT_EQ(pts[1].choice, (std::vector<int>{0, 1, 0}));
  const json& stages = pts[1].point.recipe["stages"];
  ASSERT_EQ(stages.size(), 1u);
  EXPECT_EQ(stages[0]["weights"], (json{{"type", "int4"}, {"group", 32}}));
  EXPECT_EQ(stages[0]["targets"], (json{"w.a", "w.b", "w.c"}));
  EXPECT_EQ(stages[0]["overrides"], (json{{"w.b", {{"type", "int8"}}}}));
  // latency budgets: the reference's 10 us step spends 6 us in the targets, so 4 us lie outside;
  // 6.6 us leave 2.6 us for the targets: two in int8 (the two that lose most in int4), one int4;
  // 5.6 us leave 1.6 us: int4 everywhere; 5 us leave 1 us: nothing fits
  json lat = spec;
  lat["mixed"].erase("bits");
  lat["mixed"]["tpot_ms"] = {0.0066, 0.0056, 0.005};
  const pipeline::MixedSpec ml = pipeline::parse_mixed(lat);
  notes.clear();
  const auto lp = pipeline::mixed_points(lat, ml, s, 0.010, &notes);
  ASSERT_EQ(lp.size(), 2u);
  EXPECT_EQ(notes.size(), 1u);
  EXPECT_EQ(lp[0].choice, (std::vector<int>{0, 1, 1}));
  EXPECT_NEAR(lp[0].tpot_ms, 0.0065, 1e-12);
  EXPECT_EQ(lp[0].point.name, "mixed-t0.0066ms-rtn");
  EXPECT_EQ(lp[1].choice, (std::vector<int>{0, 0, 0}));
  EXPECT_NEAR(lp[1].tpot_ms, 0.0055, 1e-12);
  EXPECT_THROW(pipeline::mixed_points(lat, ml, s, NAN, &notes), Error);  // no reference TPOT
  json bad = spec;
  bad["mixed"]["method"] = "awq";
  EXPECT_THROW(pipeline::parse_mixed(bad), Error);
  bad = spec;
  bad["mixed"].erase("bits");
  EXPECT_THROW(pipeline::parse_mixed(bad), Error);  // no budget at all
  bad["mixed"]["tpot_ms"] = {-1};
  EXPECT_THROW(pipeline::parse_mixed(bad), Error);
  bad = spec;
  bad["mixed"]["bits"] = {"int3"};
  EXPECT_THROW(pipeline::parse_mixed(bad), Error);
  bad = spec;
  bad["mixed"]["options"] = {{{"type", "int8"}}};
  EXPECT_THROW(pipeline::parse_mixed(bad), Error);
}

TEST(MixedPrecision, SweepMeasuresOnceAndRunsOnlyNewBudgets) {
  testutil::TempDir d;
  // rows and columns in multiples of the kernels' blocks, so bytes per weight are near the formats' own
  json spec = testutil::tiny_sweep_spec(d.path.string(), {.dim = 64, .hd = 16, .ffn = 128});
  spec.update(json{
               {"grid", {{"weights", {{{"type", "int4"}, {"group", 16}}}}}},
               {"mixed", {{"options", {{{"type", "int4"}, {"group", 16}}, {{"type", "int8"}}}}, {"bits", {6.0}}, {"windows", {{"samples", 2}, {"seq", 32}}}}},
               {"calibration", {{"samples", 4}, {"seq", 32}}}});
  auto r = pipeline::run_sweep(spec);
  ASSERT_EQ(r.ran.size(), 4u);  // reference, sensitivity, int4g16-rtn, the mixed variant
  EXPECT_EQ(r.ran[1], "sensitivity");
  EXPECT_EQ(r.ran[3].rfind("mixed-", 0), 0u) << r.ran[3];
  ASSERT_EQ(r.variants.size(), 3u);
  EXPECT_TRUE(r.variants[2].mixed);
  EXPECT_FALSE(r.variants[1].mixed);
  EXPECT_LE(r.variants[2].weight_bytes, r.variants[0].weight_bytes);
  EXPECT_GT(r.variants[2].weight_bytes, r.variants[1].weight_bytes);  // 6 bits buy some int8
  EXPECT_TRUE(std::filesystem::exists(d / "out/sensitivity.json"));
  EXPECT_TRUE(std::filesystem::exists(d / "out/mixed.json"));
  r = pipeline::run_sweep(spec);
  EXPECT_TRUE(r.ran.empty());
  EXPECT_EQ(r.cached.size(), 4u);
  spec["mixed"]["bits"] = {6.0, 7.0};
  r = pipeline::run_sweep(spec);
  ASSERT_EQ(r.ran.size(), 1u);
  EXPECT_EQ(r.ran[0].rfind("mixed-", 0), 0u);
}
