// Hidden-state distillation between one student layer and one teacher layer:
//   loss = beta * mean over rows and teacher channels of (xs P^T - xt)^2
// P [dt, ds] is a learned projection when the widths differ (or when asked);
// without one, xs and xt must have the same width and P is the identity.
#pragma once
#include "core/ops/mat.h"
#include "core/tensor.h"

namespace condense::train {

// Returns the loss. Adds scale * d loss/d xs to dxs and, with a projection,
// scale * d loss/d P to d_proj (when not null). dxs may be null (evaluation).
double hidden_mse(const ops::Mat& xs, const ops::Mat& xt, Tensor* proj, float beta, float scale, const ops::Mat* dxs,
                  Tensor* d_proj);

}  // namespace condense::train
