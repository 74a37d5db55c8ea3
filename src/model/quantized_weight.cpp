#include "model/quantized_weight.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "core/error.h"
#include "kernels/common/int_codes.h"
#include "kernels/common/minifloat.h"

namespace condense {

int64_t QuantScheme::groups_per_row(int64_t cols) const {
  if (granularity != Granularity::Group) return 1;
  return (cols + group - 1) / group;
}

int64_t QuantScheme::num_scales(int64_t rows, int64_t cols) const {
  if (!quantized()) return 0;
  if (granularity == Granularity::PerTensor) return 1;
  return rows * groups_per_row(cols);
}

int64_t QuantScheme::scale_index(int64_t r, int64_t c, int64_t cols) const {
  switch (granularity) {
    case Granularity::PerTensor: return 0;
    case Granularity::PerChannel: return r;
    case Granularity::Group: return r * groups_per_row(cols) + c / group;
  }
  return 0;
}

int QuantScheme::qmax() const {
  switch (type) {
    case DType::I8: return symmetric ? 127 : 255;
    case DType::I4: return symmetric ? 7 : 15;
    default: return 0;
  }
}

int QuantScheme::qmin() const {
  if (!symmetric) return 0;
  return type == DType::I8 ? -128 : (type == DType::I4 ? -8 : 0);
}

const char* quant_type_name(DType t) {
  switch (t) {
    case DType::I8: return "int8";
    case DType::I4: return "int4";
    case DType::F8E4M3: return "fp8";
    case DType::F32: return "f32";
    default: return name(t);
  }
}

DType quant_type_from_name(const std::string& s) {
  if (s == "int8") return DType::I8;
  if (s == "int4") return DType::I4;
  if (s == "fp8" || s == "fp8-e4m3" || s == "f8e4m3") return DType::F8E4M3;
  fail("quantization type", "'" + s + "' is not one of int8, int4, fp8");
}

std::string QuantScheme::tag() const {
  std::string n = quant_type_name(type);
  if (!quantized()) return n;
  if (granularity == Granularity::Group) n += "g" + std::to_string(group);
  else if (granularity == Granularity::PerTensor) n += "t";
  return symmetric ? n : n + "a";
}

std::string QuantScheme::describe() const {
  if (!quantized()) return "f32";
  std::string s = type == DType::F8E4M3 ? "fp8-e4m3" : quant_type_name(type);
  switch (granularity) {
    case Granularity::PerTensor: s += " per-tensor"; break;
    case Granularity::PerChannel: s += " per-channel"; break;
    case Granularity::Group: s += " g" + std::to_string(group); break;
  }
  if (type != DType::F8E4M3) s += symmetric ? " sym" : " asym";
  return s;
}

WeightCompression WeightCompression::blank(const QuantScheme& s, int64_t rows, int64_t cols, std::vector<uint64_t> mask) {
  WeightCompression wc;
  wc.scheme = s;
  wc.mask = std::move(mask);
  const int64_t ns = s.num_scales(rows, cols);
  wc.scales.assign(size_t(ns), 1.f);
  if (!s.symmetric) wc.zeros.assign(size_t(ns), 0);
  wc.codes.assign(size_t(rows * cols), 0);
  return wc;
}

std::vector<uint64_t> keep_all(int64_t n) {
  std::vector<uint64_t> m(size_t((n + 63) / 64), ~uint64_t(0));
  if (n % 64) m.back() = (uint64_t(1) << (n % 64)) - 1;
  return m;
}

int64_t count_kept(const std::vector<uint64_t>& m, int64_t n) {
  if (m.empty()) return n;
  int64_t k = 0;
  for (uint64_t w : m) k += std::popcount(w);  // bits past n are never set
  return k;
}

float dequant_code(const QuantScheme& s, uint8_t code, float scale, uint8_t zero) {
  switch (s.type) {
    case DType::I8: return scale * float(s.symmetric ? int(int8_t(code)) : int(code) - int(zero));
    case DType::I4: return scale * float(s.symmetric ? intcode::i4_from_nibble(code) : int(code & 0xf) - int(zero));
    case DType::F8E4M3: return scale * minifloat::e4m3_to_f32(code);
    default: fail("dequant_code", std::string("not a quantized type: ") + name(s.type));
  }
}

uint8_t quant_value(const QuantScheme& s, float x, float scale, uint8_t zero) {
  if (s.type == DType::F8E4M3) return minifloat::f32_to_e4m3(x / scale);
  float q = std::nearbyint(x / scale) + (s.symmetric ? 0.f : float(zero));
  if (!(q == q)) q = 0;
  q = std::fmin(std::fmax(q, float(s.qmin())), float(s.qmax()));
  const int v = int(q);
  return s.type == DType::I4 ? uint8_t(v & 0xf) : uint8_t(v & 0xff);
}

void dequantize(const WeightCompression& wc, int64_t rows, int64_t cols, float* out) {
  const QuantScheme& s = wc.scheme;
  if (!s.quantized()) fail("dequantize", "the weight is not quantized (its f32 values are the weight)");
  if (int64_t(wc.codes.size()) != rows * cols || int64_t(wc.scales.size()) != s.num_scales(rows, cols)) {
    fail("dequantize", "codes/scales do not match a [" + std::to_string(rows) + ", " + std::to_string(cols) + "] " + s.describe() + " weight");
  }
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t i = r * cols + c;
      const int64_t si = s.scale_index(r, c, cols);
      out[i] = wc.kept(i) ? dequant_code(s, wc.codes[size_t(i)], wc.scales[size_t(si)], s.symmetric ? 0 : wc.zeros[size_t(si)]) : 0.f;
    }
  }
}

float round_scale_up(float s) {
  if (!(s >= 6.103515625e-05f && s <= 65504.f)) return s;
  const uint16_t h = minifloat::f32_to_f16(s);
  float v = minifloat::f16_to_f32(h);
  if (v < s) v = minifloat::f16_to_f32(uint16_t(h + 1));
  return v;
}

void permute_rows(WeightCompression& wc, int64_t rows, int64_t cols, const std::function<int64_t(int64_t)>& src_row) {
  const WeightCompression old = wc;
  const QuantScheme& s = wc.scheme;
  const int64_t per_row = s.granularity == Granularity::PerTensor ? 0 : s.num_scales(rows, cols) / rows;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = src_row(r);
    if (!old.codes.empty()) std::copy_n(old.codes.begin() + o * cols, cols, wc.codes.begin() + r * cols);
    for (int64_t g = 0; g < per_row; ++g) {
      wc.scales[size_t(r * per_row + g)] = old.scales[size_t(o * per_row + g)];
      if (!old.zeros.empty()) wc.zeros[size_t(r * per_row + g)] = old.zeros[size_t(o * per_row + g)];
    }
    if (!old.mask.empty()) {
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t i = r * cols + c;
        if (old.kept(o * cols + c)) wc.mask[size_t(i >> 6)] |= uint64_t(1) << (i & 63);
        else mask_remove(wc.mask, i);
      }
    }
  }
}

std::vector<uint64_t> mask_from_nonzero(const float* w, int64_t n) {
  std::vector<uint64_t> m(size_t((n + 63) / 64), 0);
  for (int64_t i = 0; i < n; ++i) {
    if (w[i] != 0.f) m[size_t(i >> 6)] |= uint64_t(1) << (i & 63);
  }
  return m;
}

}  // namespace condense
