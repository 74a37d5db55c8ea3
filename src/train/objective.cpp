#include "train/objective.h"

#include <cmath>
#include <cstring>
#include <random>

#include "core/error.h"
#include "train/hidden_loss.h"

namespace condense::train {

void init_projection(Tensor& p, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(0.0, 1.0 / std::sqrt(double(p.dim(1))));
  float* v = p.f32();
  for (int64_t i = 0; i < p.numel(); ++i) v[i] = float(nd(rng));
}

Objective::Objective(const ModelConfig& s, const Model* teacher, const ObjectiveConfig& cfg, int batch, int seq)
    : cfg_(cfg), teacher_(teacher), student_graph_(s, batch, seq, true), loss_(s.vocab, cfg.loss_chunk) {
  const bool needs_teacher = cfg.token.kd > 0 || (!cfg.hidden.empty() && cfg.hidden_beta > 0);
  if (needs_teacher && !teacher) fail("Objective", "distillation losses need a teacher model");
  if (teacher && needs_teacher) {
    const ModelConfig& t = teacher->config;
    if (t.vocab != s.vocab) {
      fail("Objective", "teacher vocabulary (" + std::to_string(t.vocab) + ") differs from the student's (" + std::to_string(s.vocab) + ")");
    }
    teacher_graph_.emplace(t, batch, seq, false);
    for (const HiddenPair& p : cfg.hidden) {
      if (p.student_layer < 0 || p.student_layer >= s.n_layers || p.teacher_layer < 0 || p.teacher_layer >= t.n_layers) {
        fail("Objective", "hidden pair (student " + std::to_string(p.student_layer) + ", teacher " + std::to_string(p.teacher_layer) +
                              ") names a layer the models do not have");
      }
      if (cfg.hidden_projection || s.dim != t.dim) {
        proj_index_.push_back(int(proj_.size()));
        proj_.push_back(Tensor::empty(DType::F32, {t.dim, s.dim}));
        init_projection(proj_.back(), 0x9e3779b97f4a7c15ull + proj_.size());
      } else {
        proj_index_.push_back(-1);
      }
      teacher_hidden_.push_back(Tensor::empty(DType::F32, {int64_t(batch) * seq, t.dim}));
      d_hidden_.push_back(Tensor::empty(DType::F32, {int64_t(batch) * seq, s.dim}));
    }
  }
  d_final_ = Tensor::empty(DType::F32, {int64_t(batch) * seq, s.dim});
}

size_t Objective::activation_bytes() const {
  size_t b = student_graph_.activation_bytes() + d_final_.nbytes();
  if (teacher_graph_) b += teacher_graph_->activation_bytes();
  for (const Tensor& t : teacher_hidden_) b += t.nbytes();
  for (const Tensor& t : d_hidden_) b += t.nbytes();
  return b;
}

LossReport Objective::run(Model& student, const int* inputs, const int* targets, float scale, Model* grads,
                          std::vector<Tensor>* proj_grads, const std::function<void(int)>& before_layer) {
  const bool hidden = !cfg_.hidden.empty() && cfg_.hidden_beta > 0;
  ops::Mat xt;  // the teacher's final hidden states, in its graph until its next forward
  if (teacher_graph_) {
    xt = teacher_graph_->forward(*teacher_, inputs, [&](int l, const ops::Mat& x) {
      for (size_t k = 0; k < cfg_.hidden.size(); ++k) {
        if (hidden && cfg_.hidden[k].teacher_layer == l) std::memcpy(teacher_hidden_[k].f32(), x.data, teacher_hidden_[k].nbytes());
      }
    });
  }
  LossReport rep;
  ops::Mat xs = student_graph_.forward(student, inputs, [&](int l, const ops::Mat& x) {
    if (!hidden) return;
    for (size_t k = 0; k < cfg_.hidden.size(); ++k) {
      if (cfg_.hidden[k].student_layer != l) continue;
      ops::Mat d = ops::mat(d_hidden_[k]);
      std::fill_n(d.data, d_hidden_[k].numel(), 0.f);
      const int pi = proj_index_[k];
      Tensor* p = pi >= 0 ? &proj_[size_t(pi)] : nullptr;
      Tensor* dp = pi >= 0 && proj_grads ? &(*proj_grads)[size_t(pi)] : nullptr;
      rep.hidden += hidden_mse(x, ops::mat(teacher_hidden_[k]), p, cfg_.hidden_beta, scale, grads ? &d : nullptr, dp);
    }
  });
  Tensor& head = student.config.tied_embeddings ? student.embed : student.lm_head;
  Tensor* d_head = grads ? (student.config.tied_embeddings ? &grads->embed : &grads->lm_head) : nullptr;
  Tensor* t_head = teacher_ ? const_cast<Tensor*>(&teacher_->head()) : nullptr;
  ops::Mat dfin = ops::mat(d_final_);
  TokenLoss tl = loss_.run(xs, head, teacher_graph_ ? &xt : nullptr, t_head, targets, cfg_.token, scale, grads ? &dfin : nullptr, d_head);
  rep.tokens = tl.rows;
  rep.ce = tl.rows ? tl.ce_sum / double(tl.rows) : 0;
  rep.kd = tl.rows ? tl.kd_sum / double(tl.rows) : 0;
  rep.total = tl.value(cfg_.token) + rep.hidden;
  if (!grads) return rep;
  student_graph_.backward(student, dfin, *grads, [&](int l, const ops::Mat& dx) {
    if (before_layer) before_layer(l);
    if (!hidden) return;
    for (size_t k = 0; k < cfg_.hidden.size(); ++k) {
      if (cfg_.hidden[k].student_layer == l) ops::add(dx, ops::mat(d_hidden_[k]));
    }
  });
  return rep;
}

}  // namespace condense::train
