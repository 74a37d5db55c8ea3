// AdamW (Loshchilov & Hutter): Adam moments with bias correction and weight
// decay decoupled from the gradient: p -= lr * (m_hat / (sqrt(v_hat) + eps) + wd * p),
// the decay applied only to parameters marked `decay`.
#pragma once
#include <string>
#include <vector>

#include "train/param_set.h"

namespace condense::train {

struct AdamWConfig {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
};

// The scalars of one update (what a device kernel needs besides the tensors).
struct AdamWStep {
  float b1, b2, eps, step_size, inv_sqrt_bc2;
  float decay;     // the multiplier of parameters that decay: 1 - lr * weight_decay
};

class AdamW {
 public:
  AdamW(const ParamSet& params, const AdamWConfig& cfg);
  // One update at learning rate lr; increments step().
  void step(ParamSet& params, double lr);
  // Increments step() and returns that update's scalars, for an update applied
  // elsewhere (the GPU) to the same moments.
  AdamWStep begin_step(double lr);
  int64_t steps() const { return t_; }
  void set_steps(int64_t t) { t_ = t; }
  // Moments, parallel to the ParamSet's list (for the training state).
  std::vector<Tensor>& m() { return m_; }
  std::vector<Tensor>& v() { return v_; }

 private:
  AdamWConfig cfg_;
  int64_t t_ = 0;
  std::vector<Tensor> m_, v_;
};

// Learning rate at `step` (0-based): linear warmup from lr/warmup to lr over
// `warmup` steps, then "cosine" or "linear" decay to min_lr at total_steps, or
// "constant".
struct Schedule {
  std::string kind = "cosine";
  double lr = 1e-3, min_lr = 0;
  int64_t warmup = 0, total_steps = 1;
  double at(int64_t step) const;
};

}  // namespace condense::train
