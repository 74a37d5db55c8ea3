// Quantization-aware training on the GPU: train/fake_quant.h's forward (the
// weight becomes Q(latent) on the grid of its scales) and backward (the
// straight-through estimator, and LSQ's step-size gradient), on device
// copies. Codes are not stored: the backward recomputes them from the same
// latent and scales, which is what the forward used.
#pragma once
#include <cstdint>

namespace condense::kernels::gpu {

class Stream;

struct FakeQuantLayout {
  enum Type : uint8_t { Int8, Int4, E4M3 } type = Int8;
  enum Gran : uint8_t { PerTensor, PerChannel, Group } granularity = PerChannel;
  bool symmetric = true;
  int group = 0;       // Group: columns per group
  int qmin = 0, qmax = 0;  // integer code range (as QuantScheme::qmin/qmax)
  int64_t rows = 0, cols = 0, num_scales = 0;
};

// Floats of scratch weight_fake_quant_backward needs for LSQ.
int64_t weight_fake_quant_scratch(const FakeQuantLayout& l);

// scale [num_scales]: the trained step sizes, raised to at least 1e-10 in
// place; eff_scale: each rounded up to an f16-exact value (what a .cpk stores
// and what the grid uses). weight = eff * code(latent), 0 where kept's bit is 0
// (kept may be null: dense). zeros: asymmetric zero points (null: symmetric).
void weight_fake_quant(const FakeQuantLayout& l, float* scale, float* eff_scale, const uint8_t* zeros, const uint64_t* kept,
                       const float* latent, float* weight, Stream& s);
// grad (the weight's gradient) passes to latent_grad where latent / eff lies in
// the code range; with scale_grad, LSQ adds sum g * (inside ? q - v : q) *
// gscale per scale (scratch: weight_fake_quant_scratch floats). grad is zeroed.
void weight_fake_quant_backward(const FakeQuantLayout& l, const float* eff_scale, const uint8_t* zeros, const uint64_t* kept,
                                const float* latent, float* grad, float* latent_grad, float* scale_grad, float gscale,
                                float* scratch, Stream& s);

}  // namespace condense::kernels::gpu
