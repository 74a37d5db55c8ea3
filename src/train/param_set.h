// ParamSet: the trainable tensors of a run (a student's weights plus learned
// projections), each with its gradient and whether weight decay applies. The
// optimizer, gradient clipping and the training state all walk this one list.
#pragma once
#include <string>
#include <vector>

#include "model/model.h"

namespace condense::train {

struct Param {
  std::string name;
  Tensor* value;
  Tensor* grad;
  bool decay;
};

struct ParamSet {
  std::vector<Param> params;
  int64_t numel() const;
  void zero_grads();
  // sqrt(sum of squared gradients), summed in fixed-size blocks in a fixed
  // order, so the result does not depend on the thread count.
  double grad_norm() const;
  // The first parameter holding a NaN or infinity (its name), or "" when all are finite.
  std::string first_non_finite() const;
  void scale_grads(float s);
};

// Pairs model and grads (same config) weight by weight. Linear weights and an
// untied head decay; norms, biases and embeddings (tied heads included) only
// when decay_all is set.
ParamSet model_params(Model& model, Model& grads, bool decay_all);
// A Model of `cfg` with every weight allocated and zero (gradient storage).
Model zeros_model(const ModelConfig& cfg);

}  // namespace condense::train
