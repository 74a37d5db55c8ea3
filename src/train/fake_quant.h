// Quantization-aware training by fake quantization. Every weight the model
// already holds quantized (Model::compression, from a quantize stage) gets a
// latent f32 copy that the optimizer updates; before each forward pass the
// model's weight becomes Q(latent) = s * (round(latent / s) clamped to the
// code range), so training sees exactly the weights a runtime will use, and
// the compression entry's codes and scales are kept in step with it.
// Backward is the straight-through estimator: the weight's gradient passes to
// the latent where latent / s lies inside the code range and is 0 where it was
// clipped. With learned step sizes (LSQ, Esser et al. 2020) each scale is a
// parameter too, with gradient dQ/ds = q - latent/s inside the range and q at
// its ends (q the code's value in steps), scaled by 1 / sqrt(n * qmax) for a
// group of n weights. Scales start from the quantize stage's and are kept
// f16-exact (the stored value is the one trained with). Pruned elements stay 0.
#pragma once
#include <string>
#include <vector>

#include "model/model.h"

namespace condense::train {

class FakeQuant {
 public:
  struct Entry {
    std::string name;
    Tensor* weight = nullptr;       // the model's tensor: always Q(latent)
    WeightCompression* wc = nullptr;
    Tensor latent, latent_grad;     // [rows, cols]
    Tensor scale, scale_grad;       // [num_scales]: the trained step sizes (LSQ)
    int64_t rows = 0, cols = 0;
    size_t weight_index = 0;        // position in for_each_weight's order
  };

  // Fails when the model has no quantized weight.
  FakeQuant(Model& m, bool learn_scales);
  std::vector<Entry>& entries() { return entries_; }

  // weight = Q(latent); codes and scales into the compression entries.
  void quantize();
  // Adds the latent (and scale) gradients from the weight gradients in
  // `grads` (a Model of the same config), then zeroes those weight gradients.
  void backward(Model& grads);

 private:
  bool learn_scales_;
  std::vector<Entry> entries_;
};

}  // namespace condense::train
