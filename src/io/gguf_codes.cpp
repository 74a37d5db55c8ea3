#include "io/gguf_codes.h"

#include <cmath>
#include <cstring>

#include "io/ggml_quants.h"
#include "kernels/common/int_codes.h"
#include "kernels/common/minifloat.h"

namespace condense {
namespace {

bool f16_exact(float v) { return minifloat::f16_to_f32(minifloat::f32_to_f16(v)) == v; }
float h2f(const uint8_t* p) { return ggml::load_f16(p); }
void f2h(float v, uint8_t* p) { ggml::store_f16(v, p); }

// Element i's value in units of its scale: the signed code, or code - zero.
int offset_code(const WeightCompression& wc, int64_t i, int64_t si) {
  if (!wc.kept(i)) return 0;
  const uint8_t c = wc.codes[size_t(i)];
  const QuantScheme& s = wc.scheme;
  if (s.symmetric) return s.type == DType::I4 ? intcode::i4_from_nibble(c) : int(int8_t(c));
  return int(s.type == DType::I4 ? (c & 0xf) : c) - int(wc.zeros[size_t(si)]);
}

// The sign d takes for a Q8_0 / Q4_0 group: +1 when every offset code fits
// the block's signed range ([-128, 127] / [-8, 7]), -1 when the negated ones
// do (ggml's negative d), 0 when neither.
int group_sign(const WeightCompression& wc, int64_t r, int64_t g, int64_t cols, uint32_t t) {
  const int lo = t == ggml::Q8_0 ? -128 : -8, hi = t == ggml::Q8_0 ? 127 : 7;
  bool pos = true, neg = true;
  const int64_t si = r * (cols / 32) + g;
  for (int64_t c = g * 32; c < g * 32 + 32; ++c) {
    const int v = offset_code(wc, r * cols + c, si);
    pos = pos && v >= lo && v <= hi;
    neg = neg && -v >= lo && -v <= hi;
  }
  return pos ? 1 : neg ? -1 : 0;
}

}  // namespace

bool codes_fit_ggml(const WeightCompression& wc, int64_t rows, int64_t cols, uint32_t t, std::string* why) {
  auto no = [&](const std::string& w) {
    if (why) *why = w;
    return false;
  };
  const QuantScheme& s = wc.scheme;
  const DType want = t == ggml::Q8_0 ? DType::I8 : DType::I4;
  if (t != ggml::Q8_0 && t != ggml::Q4_0 && t != ggml::Q4_1) return no(std::string(ggml::type_name(t)) + " is never an exact copy of condense codes");
  if (!s.quantized()) return no("the weight is not quantized");
  if (s.type != want || s.granularity != Granularity::Group || s.group != 32) {
    return no("stored as " + s.describe() + ", " + ggml::type_name(t) + " holds " + (want == DType::I8 ? "int8" : "int4") + " in groups of 32");
  }
  if (cols % 32) return no("rows of " + std::to_string(cols) + " are not whole groups of 32");
  if (t == ggml::Q4_1 && s.symmetric) return no("symmetric int4 goes to Q4_0");
  for (size_t i = 0; i < wc.scales.size(); ++i) {
    if (!f16_exact(wc.scales[i])) return no("scale " + std::to_string(i) + " is not exact in f16");
    if (t == ggml::Q4_1 && !f16_exact(-wc.scales[i] * float(wc.zeros[i]))) return no("group " + std::to_string(i) + "'s minimum is not exact in f16");
  }
  const int64_t groups = cols / 32;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      if (t != ggml::Q4_1 && group_sign(wc, r, g, cols, t) == 0) {
        return no("row " + std::to_string(r) + " group " + std::to_string(g) + " spans more than " + (t == ggml::Q8_0 ? "256" : "16") +
                  " codes around its zero point");
      }
    }
  }
  return true;
}

void encode_codes_row(const WeightCompression& wc, int64_t r, int64_t cols, uint32_t t, uint8_t* dst) {
  const int64_t groups = cols / 32;
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t si = r * groups + g, base = r * cols + g * 32;
    const float scale = wc.scales[size_t(si)];
    if (t == ggml::Q8_0) {
      uint8_t* b = dst + g * 34;
      const int sign = group_sign(wc, r, g, cols, t);
      f2h(float(sign) * scale, b);
      for (int j = 0; j < 32; ++j) b[2 + j] = uint8_t(int8_t(sign * offset_code(wc, base + j, si)));
    } else if (t == ggml::Q4_0) {
      uint8_t* b = dst + g * 18;
      const int sign = group_sign(wc, r, g, cols, t);
      f2h(float(sign) * scale, b);
      for (int j = 0; j < 16; ++j) {
        const int lo = sign * offset_code(wc, base + j, si) + 8, hi = sign * offset_code(wc, base + j + 16, si) + 8;
        b[2 + j] = uint8_t(lo | (hi << 4));
      }
    } else {  // Q4_1: x = d*q + m with d = scale, m = -scale*zero, q the stored code
      uint8_t* b = dst + g * 20;
      const int zero = wc.zeros[size_t(si)];
      f2h(scale, b);
      f2h(-scale * float(zero), b + 2);
      for (int j = 0; j < 16; ++j) {
        const int lo = offset_code(wc, base + j, si) + zero, hi = offset_code(wc, base + j + 16, si) + zero;
        b[4 + j] = uint8_t(lo | (hi << 4));
      }
    }
  }
}

std::optional<WeightCompression> codes_from_ggml(uint32_t t, const uint8_t* data, int64_t rows, int64_t cols) {
  if (t != ggml::Q8_0 && t != ggml::Q4_0) return std::nullopt;
  const bool q8 = t == ggml::Q8_0;
  const int64_t nb = rows * (cols / 32), bytes = q8 ? 34 : 18;
  // Symmetric when every block's codes fit after taking |d|; else a zero point per group.
  bool sym = true;
  for (int64_t b = 0; b < nb && sym; ++b) {
    const uint8_t* p = data + b * bytes;
    if (!std::signbit(h2f(p))) continue;
    for (int j = 0; j < (q8 ? 32 : 16); ++j) {
      if (q8 ? int8_t(p[2 + j]) == -128 : ((p[2 + j] & 0xf) == 0 || (p[2 + j] >> 4) == 0)) sym = false;
    }
  }
  WeightCompression wc = WeightCompression::blank(QuantScheme::of(q8 ? DType::I8 : DType::I4, Granularity::Group, 32, sym), rows, cols, {});
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* p = data + b * bytes;
    const float d = h2f(p);
    const bool neg = std::signbit(d);
    wc.scales[size_t(b)] = std::fabs(d);
    if (!sym) wc.zeros[size_t(b)] = uint8_t(q8 ? (neg ? 127 : 128) : (neg ? 7 : 8));
    for (int j = 0; j < 32; ++j) {
      // v: the value in units of |d|
      const int q = q8 ? int(int8_t(p[2 + j])) : (j < 16 ? (p[2 + j] & 0xf) : (p[2 + j - 16] >> 4)) - 8;
      const int v = neg ? -q : q;
      uint8_t& code = wc.codes[size_t(b * 32 + j)];
      if (sym) code = q8 ? uint8_t(int8_t(v)) : uint8_t(v & 0xf);
      else code = uint8_t(v + wc.zeros[size_t(b)]);
    }
  }
  return wc;
}

}  // namespace condense
