// The LM head and the token losses, chunked over rows so that at most `chunk`
// rows of logits exist at once (a 32000-word vocabulary at 2048 tokens would
// otherwise need 262 MB for the student's logits alone, and as much again for
// the teacher's).
//   loss = ce_weight * mean CE(student, targets)
//        + kd_weight * mean T^2 KL(softmax(teacher/T) || softmax(student/T))
// Means are over the scored rows (target >= 0); `scale` multiplies the
// gradients (1/accumulation steps).
#pragma once
#include <cstdint>

#include "core/ops/mat.h"
#include "core/tensor.h"

namespace condense::train {

struct TokenLossWeights {
  float ce = 1.f;
  float kd = 0.f;
  float temperature = 1.f;
};

struct TokenLoss {
  double ce_sum = 0;  // summed NLL
  double kd_sum = 0;  // summed T^2 KL
  int64_t rows = 0;   // rows scored
  double value(const TokenLossWeights& w) const { return rows ? (w.ce * ce_sum + w.kd * kd_sum) / double(rows) : 0.0; }
};

class LmLoss {
 public:
  LmLoss(int64_t vocab, int64_t chunk_rows);

  // xs: student final-normed hidden [rows, ds]; head_s: [vocab, ds]. Teacher
  // (xt [rows, dt], head_t [vocab, dt]) only when w.kd > 0. Writes dxs (the
  // gradient w.r.t. xs, times scale) and adds the head's gradient to d_head when
  // given. dxs may be null for evaluation.
  TokenLoss run(const ops::Mat& xs, Tensor& head_s, const ops::Mat* xt, Tensor* head_t, const int* targets,
                const TokenLossWeights& w, float scale, const ops::Mat* dxs, Tensor* d_head);

 private:
  int64_t vocab_, chunk_;
  Tensor logits_, teacher_logits_, grad_tmp_;
};

}  // namespace condense::train
