// How a weight matrix is stored when it is not plain f32: quantization codes
// with their scales (and zero points) and/or a sparsity mask. The Model's f32
// tensor always holds the *effective* values (dequantized, pruned entries 0), so
// every forward pass, evaluation and saver sees exactly what the packed weights
// mean; the packed form is what a .cpk stores and a runtime kernel reads.
//
// Layout: a [rows, cols] matrix (rows = output features). Scales and zero
// points are [rows][groups_per_row] (per-channel: one group per row; per-tensor:
// a single scale). A row whose length is not a multiple of the group keeps a
// shorter last group.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace condense {

enum class Granularity : uint8_t { PerTensor, PerChannel, Group };

struct QuantScheme {
  DType type = DType::F32;  // I8, I4 or F8E4M3; F32 means not quantized
  Granularity granularity = Granularity::PerChannel;
  int group = 0;            // Group: columns per group
  bool symmetric = true;    // false: integer codes with a zero point per group

  static QuantScheme of(DType type, Granularity g, int group = 0, bool symmetric = true) { return {type, g, group, symmetric}; }
  bool quantized() const { return type != DType::F32; }
  int64_t groups_per_row(int64_t cols) const;
  int64_t num_scales(int64_t rows, int64_t cols) const;
  // Index into scales/zeros of element (r, c).
  int64_t scale_index(int64_t r, int64_t c, int64_t cols) const;
  // Largest code magnitude a symmetric integer scale maps amax to (127, 7),
  // and the code range: [qmin, qmax] signed (symmetric) or [0, qmax] (asymmetric).
  int qmax() const;
  int qmin() const;
  // "int4 g32 asym", "int8 per-channel", "fp8-e4m3 per-tensor".
  std::string describe() const;
  // The short form variant names use: "int4g32", "int8", "fp8t" (per tensor),
  // "int4g32a" (asymmetric), "f32".
  std::string tag() const;
  bool operator==(const QuantScheme&) const = default;
};

// Parses "int8" | "int4" | "fp8" (the e4m3 format) for QuantScheme::type.
DType quant_type_from_name(const std::string& s);
const char* quant_type_name(DType t);

// Kept-bitmaps: one bit per element, 1 = kept; an empty one keeps everything.
inline bool mask_kept(const std::vector<uint64_t>& m, int64_t i) { return m.empty() || ((m[size_t(i >> 6)] >> (i & 63)) & 1u); }
inline void mask_remove(std::vector<uint64_t>& m, int64_t i) { m[size_t(i >> 6)] &= ~(uint64_t(1) << (i & 63)); }
// A mask keeping all n elements, and the kept count of an n-element mask.
std::vector<uint64_t> keep_all(int64_t n);
int64_t count_kept(const std::vector<uint64_t>& m, int64_t n);

struct WeightCompression {
  QuantScheme scheme;           // type F32: sparsity only
  std::vector<float> scales;    // num_scales(); each exactly representable where it is stored (f16 when possible)
  std::vector<uint8_t> zeros;   // asymmetric only: the code that means 0.0, one per scale
  std::vector<uint8_t> codes;   // one per element: int8 two's complement byte; int4 low nibble (signed
                                // two's complement when symmetric, unsigned when asymmetric); fp8 the E4M3 byte
  std::vector<uint64_t> mask;   // one bit per element, 1 = kept; empty = dense

  // Scales of 1, zero points and codes of 0, sized for a [rows, cols] weight.
  static WeightCompression blank(const QuantScheme& s, int64_t rows, int64_t cols, std::vector<uint64_t> mask);
  bool sparse() const { return !mask.empty(); }
  bool kept(int64_t i) const { return mask_kept(mask, i); }
  int64_t count_kept(int64_t n) const { return condense::count_kept(mask, n); }
};

// One code's value, and the code of a value (round to nearest even, clamped to
// the code range; E4M3 saturates at +-448).
float dequant_code(const QuantScheme& s, uint8_t code, float scale, uint8_t zero);
uint8_t quant_value(const QuantScheme& s, float x, float scale, uint8_t zero);
// The effective matrix: codes through their scales (or `dense` values when the
// weight is not quantized), masked entries 0.
void dequantize(const WeightCompression& wc, int64_t rows, int64_t cols, float* out);
// The smallest scale >= s that f16 holds exactly when s is inside f16's normal
// range (so a .cpk stores it in 2 bytes without changing it), else s. Rounding
// up keeps amax / scale inside the code range.
float round_scale_up(float s);
// Reorders the rows of a [rows, cols] packed weight: new row r is old row
// src_row(r) (codes, per-row scales and zero points, mask bits).
void permute_rows(WeightCompression& wc, int64_t rows, int64_t cols, const std::function<int64_t(int64_t)>& src_row);
// A bitmap of n bits, 1 where w is nonzero.
std::vector<uint64_t> mask_from_nonzero(const float* w, int64_t n);

}  // namespace condense
