// The kernel-side description of a Model's linear weights: each one in the
// encoding the model stores (model/quantized_weight.h: int8, int4, fp8 codes
// with scales and zero points, never expanded to f32), or its f32 values when it
// has no packed form. The engine packs these into ops::PackedLinear.
#pragma once
#include <string>
#include <vector>

#include "core/ops/linear.h"
#include "model/model.h"

namespace condense {

struct LinearSource {
  ops::LinearPart part;
  std::vector<uint8_t> codes;  // owned copy when pruned codes had to be rewritten
};

// Whether pruned int8 weights run the sparse kernels: where they beat the
// dense ones on this CPU, i.e. with integer activations on AVX-512 with VBMI2
// (vpexpandb in registers). With f32 inputs, or on AVX2 (a shuffle table per 8
// bytes), expanding the kept codes costs more than the bytes it saves (Zen 4:
// 0.66x and 0.4x dense), so they run dense at the dense model's memory.
// CONDENSE_SPARSE=always / never overrides (always: the smallest memory);
// auto (or unset) is this rule; another value is refused.
bool sparse_int8_pays(bool int8_activations);

// Whether int8 / int4 weights with f32 inputs (weight-only recipes) run the
// int16-activation kernels (kernels/cpu/qlinear.h a16: inputs quantized to
// int16 per row inside the kernel, the W8A8 layout and speed: 1.4x (int8) and
// 2.7x (int4 g32) decoding the codes to f32 on Zen 4, kernel level) or decode the codes to
// f32 (bitwise the dequantized f32 model, the simulated path's arithmetic).
// CONDENSE_WEIGHT_ONLY=int16 (default) / f32; another value is refused.
bool weight_only_int16();

// `t` is the weight's f32 tensor (may be undefined when the packed form is
// there); rows x cols its shape. A pruned f32 weight, and a pruned int8 one
// when sparse_int8, passes its kept-bitmap (the sparse kernels read only kept
// codes); the others run dense, their pruned elements given the code that means
// 0 (asymmetric: the zero point). Fails naming the weight when it has neither form.
LinearSource linear_source(const Model& m, const std::string& name, const Tensor& t, int64_t rows, int64_t cols, bool sparse_int8);

// int8_activations: integer kernels for int8/int4 weights (the W8A8 recipes'
// dynamic per-row input quantization done inside the kernel).

// Packs the named weights of `m` (each [rows_i, cols]) as one fused linear.
ops::PackedLinear pack_linear(const Model& m, const std::vector<std::pair<std::string, const Tensor*>>& weights,
                              const std::vector<int64_t>& rows, int64_t cols, bool int8_activations = false,
                              ByteArena* arena = nullptr);

}  // namespace condense
