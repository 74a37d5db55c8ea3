#include "train/lm_loss.h"

#include <algorithm>

#include "core/error.h"
#include "core/ops/backward.h"
#include "core/ops/gemm.h"
#include "kernels/cpu/transformer_f32.h"

namespace condense::train {

LmLoss::LmLoss(int64_t vocab, int64_t chunk) : vocab_(vocab), chunk_(std::max<int64_t>(1, chunk)) {
  logits_ = Tensor::empty(DType::F32, {chunk_, vocab_});
}

TokenLoss LmLoss::run(const ops::Mat& xs, Tensor& head_s, const ops::Mat* xt, Tensor* head_t, const int* targets,
                      const TokenLossWeights& w, float scale, const ops::Mat* dxs, Tensor* d_head) {
  const bool kd = w.kd > 0;
  if (kd && (!xt || !head_t)) fail("LmLoss", "a distillation weight needs the teacher's hidden states and head");
  if (kd && head_t->dim(0) != vocab_) fail("LmLoss", "teacher and student vocabularies differ");
  if (kd && !teacher_logits_.defined()) {
    teacher_logits_ = Tensor::empty(DType::F32, {chunk_, vocab_});
    grad_tmp_ = Tensor::empty(DType::F32, {chunk_, vocab_});
  }
  TokenLoss out;
  for (int64_t i = 0; i < xs.rows; ++i) out.rows += targets[i] >= 0;
  if (out.rows == 0) {  // nothing scored: a zero gradient, not whatever the buffer held
    if (dxs) {
      for (int64_t r = 0; r < dxs->rows; ++r) std::fill_n(dxs->row(r), dxs->cols, 0.f);
    }
    return out;
  }
  const float g = scale / float(out.rows);  // gradient of the mean
  ops::Mat head = ops::mat(head_s);
  for (int64_t r0 = 0; r0 < xs.rows; r0 += chunk_) {
    const int64_t nr = std::min(chunk_, xs.rows - r0);
    ops::Mat x = xs.rows_slice(r0, nr);
    ops::Mat lg = ops::mat(logits_).rows_slice(0, nr);
    ops::matmul(x, false, head, true, lg);
    const int* tg = targets + r0;
    if (kd) {
      ops::Mat tl = ops::mat(teacher_logits_).rows_slice(0, nr);
      ops::matmul(xt->rows_slice(r0, nr), false, ops::mat(*head_t), true, tl);
      ops::Mat gt = ops::mat(grad_tmp_).rows_slice(0, nr);
      // KL only on scored rows, so ignored positions carry no loss at all
      for (int64_t r = 0; r < nr; ++r) {
        if (tg[r] < 0) std::copy_n(lg.row(r), vocab_, tl.row(r));
      }
      out.kd_sum += ops::kl_divergence(tl, lg, w.temperature, w.kd * g, dxs ? &gt : nullptr);
      out.ce_sum += ops::cross_entropy(lg, tg, w.ce * g, lg);
      if (dxs) kernels::add_f32(lg.data, gt.data, nr * vocab_);
    } else {
      out.ce_sum += ops::cross_entropy(lg, tg, w.ce * g, lg);
    }
    if (!dxs) continue;
    // lg now holds dlogits
    ops::matmul(lg, false, head, false, dxs->rows_slice(r0, nr));
    if (d_head) ops::matmul(lg, true, x, false, ops::mat(*d_head), 1.f, 1.f);
  }
  return out;
}

}  // namespace condense::train
