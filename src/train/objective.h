// Objective: the training loss of a student, optionally distilled from a frozen
// teacher, with its gradient. One call runs the teacher forward (no
// activations kept), the student forward, the chunked head + token losses, the
// hidden-state losses and the student backward.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "model/model.h"
#include "train/lm_loss.h"
#include "train/model_graph.h"

namespace condense::train {

struct HiddenPair {
  int student_layer = 0, teacher_layer = 0;
};

struct ObjectiveConfig {
  TokenLossWeights token;                 // CE and KD weights, temperature
  std::vector<HiddenPair> hidden;         // layers whose outputs are matched
  float hidden_beta = 0.f;
  bool hidden_projection = false;         // learn P even when widths match
  int64_t loss_chunk = 512;               // rows of logits at a time
};

struct LossReport {
  double total = 0, ce = 0, kd = 0, hidden = 0;  // means per scored token (hidden: per element)
  int64_t tokens = 0;
};

class Objective {
 public:
  // teacher may be null (plain CE training); it must outlive the Objective.
  Objective(const ModelConfig& student, const Model* teacher, const ObjectiveConfig& cfg, int batch, int seq);

  // inputs, targets: [batch * seq]. With grads (a Model of the student's config)
  // adds scale * gradient into it and into proj_grads (same shapes as
  // projections()); without, only evaluates.
  // before_layer(l), when given, is called as the backward reaches block l
  // (block l + 1's gradients, or the head's and final norm's, are final then).
  LossReport run(Model& student, const int* inputs, const int* targets, float scale, Model* grads,
                 std::vector<Tensor>* proj_grads, const std::function<void(int)>& before_layer = {});

  // Learned hidden-state projections [dt, ds], one per hidden pair that needs one.
  std::vector<Tensor>& projections() { return proj_; }
  size_t activation_bytes() const;
  const ObjectiveConfig& config() const { return cfg_; }

 private:
  ObjectiveConfig cfg_;
  const Model* teacher_;
  ModelGraph student_graph_;
  std::optional<ModelGraph> teacher_graph_;
  LmLoss loss_;
  std::vector<Tensor> proj_, teacher_hidden_, d_hidden_;
  std::vector<int> proj_index_;  // per pair: index into proj_ or -1
  Tensor d_final_;
};

// Random init for learned projections: N(0, 1/ds), seeded.
void init_projection(Tensor& p, uint64_t seed);

}  // namespace condense::train
