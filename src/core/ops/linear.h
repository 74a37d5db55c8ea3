// PackedLinear: one or more weight matrices [n_i, k] ("out x in") packed once,
// row-concatenated, into the panel layout the linear kernels stream
// (kernels/cpu/qlinear.h), each in its own encoding: f32 values, or int8 /
// int4 / fp8 codes with their scales (and zero points), never expanded to f32.
// Fusing q/k/v or gate/up makes one pass over x instead of three; parts fuse
// into one kernel call when they share an encoding (per-tensor scales do not
// fuse), else they run one after another into their columns of y.
#pragma once
#include <string>
#include <vector>

#include "core/ops/mat.h"
#include "core/byte_arena.h"
#include "core/tensor.h"
#include "kernels/cpu/qlinear.h"

namespace condense::ops {

// One matrix of a pack. Dense: `f32` [rows, cols]. Quantized: `codes`, one byte
// per element (int4: the low nibble; signed two's complement when symmetric),
// `scales` [rows][groups] (one when per_tensor), `zeros` likewise (asymmetric).
struct LinearPart {
  int64_t rows = 0, cols = 0;
  const float* f32 = nullptr;
  kernels::WCode code = kernels::WCode::F32;
  int64_t group = 0;  // columns per scale group; 0: per channel
  bool per_tensor = false, asym = false;
  // int8 / int4 codes: multiply with int8-quantized rows of x (W8A8 / W4A8,
  // dynamic per row), in integers; other encodings ignore it.
  bool int8_activations = false;
  // int8 / int4 codes with f32 inputs (when int8_activations is not set):
  // multiply with int16-quantized rows of x (kernels/cpu/qlinear.h, a16), in
  // integers; otherwise the codes are decoded to f32, the result bitwise the
  // f32 kernel's on the dequantized weights. Dense weights only.
  bool int16_activations = false;
  // Pruned: one bit per element, row-major, 1 = kept (model/quantized_weight.h's
  // kept-bitmap). f32 and int8 weights (with f32 activations) then run the
  // sparse kernels that store and read only the kept codes; other encodings
  // run dense, their pruned codes meaning 0.
  const uint64_t* mask = nullptr;
  const uint8_t* codes = nullptr;
  const float* scales = nullptr;
  const uint8_t* zeros = nullptr;
  const char* name = nullptr;  // for errors: the weight refused
};

class PackedLinear {
 public:
  PackedLinear() = default;
  static PackedLinear pack(const std::vector<const Tensor*>& parts);  // f32 matrices
  // Buffers come from `arena` when given (the engine's: huge pages, use order).
  static PackedLinear pack_parts(const std::vector<LinearPart>& parts, ByteArena* arena = nullptr);
  int64_t out_features() const { return n_; }
  int64_t in_features() const { return k_; }
  // Bytes of weights a pass reads (codes, scales, zero points): what decode speed is bound by.
  size_t weight_bytes() const;
  // Multiply-adds per row of x.
  int64_t macs() const { return n_ * k_; }
  // Whether every part multiplies int8-quantized activations itself.
  bool integer_activations() const;
  // Whether every part multiplies int16-quantized activations itself.
  bool int16_activations() const;
  // "int4 g32" / "f32" / "int8 per-channel + f32": what the kernels run.
  std::string describe() const;

  // Row r's effective weights (k floats): embedding lookups from a tied table.
  void row(int64_t r, float* out) const;

  // y[m, n] = x[m, k] . W^T. y must not overlap x.
  void apply(const Mat& x, const Mat& y) const;

 private:
  struct Segment {
    kernels::QMatrix w;
    int64_t col0 = 0;
    Tensor codes, scales, zeros, masks;  // owners of w's buffers (byte tensors)
  };
  std::vector<Segment> segs_;
  int64_t n_ = 0, k_ = 0;
};

}  // namespace condense::ops
