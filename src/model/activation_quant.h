// W8A8: how the inputs of a model's block linears are quantized at run time.
// int8 is dynamic per token: each row of an input gets scale amax / 127 when
// it is computed (nothing stored). fp8 E4M3 is static per tensor: one scale
// per layer and input site (q/k/v, o_proj, gate/up, down_proj), calibrated as
// amax / 448 and stored with the model. The LM head's input stays f32 unless
// `head` (int8 only): then it is quantized per token too and the head runs on
// the integer kernels, as llama.cpp's Q8 activations do for the output matrix.
// fake_quant_rows() is the exact simulation the evaluation engine applies.
#pragma once
#include <cstdint>
#include <vector>

#include "core/dtype.h"

namespace condense {

struct ActivationQuant {
  static constexpr int kSites = 4;  // attn_in, attn_out, ffn_in, ffn_hidden
  DType type = DType::F32;          // F32 (not quantized), I8 (dynamic per token) or F8E4M3 (static per tensor)
  std::vector<float> scales;        // F8E4M3: [n_layers][kSites]
  bool head = false;                // I8: the LM head's input too

  bool quantized() const { return type != DType::F32; }
  float scale(int layer, int site) const { return scales[size_t(layer) * kSites + size_t(site)]; }
};

// x [rows, cols] (row stride `stride`) replaced by its quantized values: I8:
// per row s = amax / 127, x = s * round(x / s); F8E4M3: x = s * e4m3(x / s)
// with the static scale s (saturating at +-448).
void fake_quant_rows(float* x, int64_t rows, int64_t cols, int64_t stride, DType type, float static_scale);

}  // namespace condense
