// Whole-model gradients of the training objective against central differences
// of an independent float64 implementation (tests/reference/model_ref64): for a
// random direction u over every trainable parameter,
//   <u, grad> (f32, src/train)  vs  (L64(theta + h u) - L64(theta - h u)) / 2h.
// h = 1e-4 in float64 leaves ~1e-8 relative truncation error; the gap is the f32
// forward/backward's rounding over a few thousand accumulations, so we allow
// 2e-4 of sum_i |u_i grad_i|.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "model/model.h"
#include "tests/reference/model_ref64.h"
#include "tests/tiny_model.h"
#include "train/objective.h"
#include "train/param_set.h"

using namespace condense;

namespace {

ModelConfig tiny_config(int dim, int layers, int heads, int kv, int hd, int ffn, bool tied, bool bias) {
  return testutil::tiny_config({dim, layers, heads, kv, hd, ffn, 37, 16, tied, bias, 500.f});
}

// Weights ~ N(0, scale^2), norms ~ N(1, 0.2^2): large enough that every
// non-linearity (softmax, SiLU, RMSNorm) is far from linear.
Model random_weights(const ModelConfig& c, uint32_t seed, double scale) {
  Model m;
  m.config = c;
  allocate_weights(m);
  std::mt19937 g(seed);
  std::normal_distribution<double> n(0.0, 1.0);
  for_each_weight(m, [&](const WeightRef& w) {
    float* v = w.tensor->f32();
    for (int64_t i = 0; i < w.tensor->numel(); ++i) v[i] = float(w.kind == WeightKind::Norm ? 1.0 + 0.2 * n(g) : scale * n(g));
  });
  return m;
}

std::vector<double> to64(const Tensor& t) {
  if (!t.defined()) return {};
  return std::vector<double>(t.f32(), t.f32() + t.numel());
}


struct Case {
  Model student, teacher;
  bool with_teacher = false;
  train::ObjectiveConfig cfg;
  int batch = 2, seq = 7;
};

// <u, grad> from src/train and the float64 central difference along u.
void check_gradient(Case& k) {
  const int n = k.batch * k.seq;
  std::mt19937 g(99);
  std::vector<int> inputs(static_cast<size_t>(n)), targets(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    inputs[size_t(i)] = int(g() % 37);
    targets[size_t(i)] = int(g() % 37);
  }
  targets[3] = -1;  // an ignored position
  train::Objective obj(k.student.config, k.with_teacher ? &k.teacher : nullptr, k.cfg, k.batch, k.seq);
  Model grads = train::zeros_model(k.student.config);
  std::vector<Tensor> pg;
  for (Tensor& p : obj.projections()) pg.push_back(Tensor::zeros(DType::F32, p.shape()));
  const train::LossReport rep = obj.run(k.student, inputs.data(), targets.data(), 1.f, &grads, &pg);

  ref::Ref64Objective o{k.cfg.token.ce, k.cfg.token.kd, k.cfg.token.temperature, k.cfg.hidden_beta, {}};
  for (const auto& p : k.cfg.hidden) o.hidden.push_back({p.student_layer, p.teacher_layer});
  ref::Ref64Model s64 = ref::ref_from_model(k.student), t64 = ref::ref_from_model(k.teacher);
  std::vector<std::vector<double>> proj64;
  size_t pi = 0;
  for (size_t i = 0; i < k.cfg.hidden.size(); ++i) {
    const bool learned = k.cfg.hidden_projection || k.student.config.dim != k.teacher.config.dim;
    proj64.push_back(learned ? to64(obj.projections()[pi++]) : std::vector<double>{});
  }
  const ref::Ref64Model* tp = k.with_teacher ? &t64 : nullptr;
  const double l0 = ref::loss64(s64, tp, proj64, o, inputs, targets, k.batch, k.seq);
  EXPECT_NEAR(rep.total, l0, 1e-5 * std::fabs(l0)) << "loss value";

  // direction u over student weights and projections; analytic <u, grad>
  Model u = random_weights(k.student.config, 7, 1.0);
  std::vector<std::vector<double>> u_proj;
  for (Tensor& p : pg) {
    std::normal_distribution<double> nd;
    std::vector<double> v(static_cast<size_t>(p.numel()));
    for (double& x : v) x = nd(g);
    u_proj.push_back(v);
  }
  double dot = 0, mag = 0;
  std::vector<const Tensor*> gt, ut;
  for_each_weight(static_cast<const Model&>(grads), [&](const WeightRef& w) { gt.push_back(w.tensor); });
  for_each_weight(static_cast<const Model&>(u), [&](const WeightRef& w) { ut.push_back(w.tensor); });
  ASSERT_EQ(gt.size(), ut.size());
  for (size_t i = 0; i < gt.size(); ++i) {
    for (int64_t j = 0; j < gt[i]->numel(); ++j) {
      dot += double(ut[i]->f32()[j]) * gt[i]->f32()[j];
      mag += std::fabs(double(ut[i]->f32()[j]) * gt[i]->f32()[j]);
    }
  }
  for (size_t i = 0; i < pg.size(); ++i) {
    for (int64_t j = 0; j < pg[i].numel(); ++j) {
      dot += u_proj[i][size_t(j)] * pg[i].f32()[j];
      mag += std::fabs(u_proj[i][size_t(j)] * pg[i].f32()[j]);
    }
  }
  ref::Ref64Model u64 = ref::ref_from_model(u);
  const double h = 1e-4;
  auto shifted = [&](double sign) {
    ref::Ref64Model p = s64;
    auto pp = p.params();
    auto up = u64.params();
    for (size_t i = 0; i < pp.size(); ++i) {
      for (size_t j = 0; j < pp[i]->size(); ++j) (*pp[i])[j] += sign * h * (*up[i])[j];
    }
    std::vector<std::vector<double>> pr = proj64;
    size_t q = 0;
    for (auto& v : pr) {
      if (v.empty()) continue;
      for (size_t j = 0; j < v.size(); ++j) v[j] += sign * h * u_proj[q][j];
      ++q;
    }
    return ref::loss64(p, tp, pr, o, inputs, targets, k.batch, k.seq);
  };
  const double fd = (shifted(1) - shifted(-1)) / (2 * h);
  EXPECT_NEAR(dot, fd, 2e-4 * mag) << "analytic " << dot << " vs finite difference " << fd << " (sum |u g| = " << mag << ")";
}

}  // namespace

TEST(TrainGradient, CrossEntropyUntiedGqaWithBiases) {
  Case k;
  k.student = random_weights(tiny_config(16, 2, 4, 2, 6, 20, false, true), 1, 0.3);
  check_gradient(k);
}

TEST(TrainGradient, CrossEntropyTiedHead) {
  Case k;
  k.student = random_weights(tiny_config(12, 2, 2, 2, 6, 18, true, false), 2, 0.4);
  k.batch = 3;
  k.seq = 5;
  check_gradient(k);
}

TEST(TrainGradient, DistillationKlCeAndHiddenWithProjection) {
  Case k;
  k.student = random_weights(tiny_config(16, 2, 4, 2, 6, 20, false, true), 3, 0.3);
  k.teacher = random_weights(tiny_config(24, 3, 3, 1, 8, 30, true, false), 4, 0.3);
  k.with_teacher = true;
  k.cfg.token = {0.4f, 0.6f, 2.0f};
  k.cfg.hidden = {{0, 1}, {1, 2}};
  k.cfg.hidden_beta = 0.5f;
  check_gradient(k);
}

TEST(TrainGradient, DistillationHiddenSameWidthIdentity) {
  Case k;
  k.student = random_weights(tiny_config(16, 1, 4, 2, 6, 20, true, false), 5, 0.3);
  k.teacher = random_weights(tiny_config(16, 2, 4, 4, 4, 24, true, false), 6, 0.3);
  k.with_teacher = true;
  k.cfg.token = {0.f, 1.f, 1.5f};
  k.cfg.hidden = {{0, 1}};
  k.cfg.hidden_beta = 2.f;
  check_gradient(k);
}
