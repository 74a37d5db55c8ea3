#include "io/ggml_quants.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/common/minifloat.h"

namespace condense::ggml {
namespace {

// ggml.c's type_traits: name, elements and bytes per block (ids 4, 5, 31..33
// and 36..38 were removed from ggml).
constexpr TypeInfo kTypes[] = {
    {"F32", 1, 4},        {"F16", 1, 2},       {"Q4_0", 32, 18},    {"Q4_1", 32, 20},    {nullptr, 0, 0},     {nullptr, 0, 0},
    {"Q5_0", 32, 22},     {"Q5_1", 32, 24},    {"Q8_0", 32, 34},    {"Q8_1", 32, 36},    {"Q2_K", 256, 84},   {"Q3_K", 256, 110},
    {"Q4_K", 256, 144},   {"Q5_K", 256, 176},  {"Q6_K", 256, 210},  {"Q8_K", 256, 292},  {"IQ2_XXS", 256, 66}, {"IQ2_XS", 256, 74},
    {"IQ3_XXS", 256, 98}, {"IQ1_S", 256, 50},  {"IQ4_NL", 32, 18},  {"IQ3_S", 256, 110}, {"IQ2_S", 256, 82},  {"IQ4_XS", 256, 136},
    {"I8", 1, 1},         {"I16", 1, 2},       {"I32", 1, 4},       {"I64", 1, 8},       {"F64", 1, 8},       {"IQ1_M", 256, 56},
    {"BF16", 1, 2},       {nullptr, 0, 0},     {nullptr, 0, 0},     {nullptr, 0, 0},     {"TQ1_0", 256, 54},  {"TQ2_0", 256, 66},
    {nullptr, 0, 0},      {nullptr, 0, 0},     {nullptr, 0, 0},     {"MXFP4", 32, 17}};
constexpr int kQK = 256;  // QK_K

float h2f(const uint8_t* p) { return load_f16(p); }
void f2h(float v, uint8_t* p) { store_f16(v, p); }

// Rounds to nearest, ties to even (ggml's nearest_int adds 1.5 * 2^23 for the
// same result on the magnitudes used here, |x| < 2^22).
int nearest(float x) { return int(std::nearbyint(x)); }

// The 6-bit scale and min of sub-block j of a Q4_K/Q5_K block (get_scale_min_k4).
void scale_min_k4(int j, const uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}
void put_scale_min_k4(int j, int sc, int m, uint8_t* q) {
  if (j < 4) {
    q[j] = uint8_t(sc);
    q[j + 4] = uint8_t(m);
  } else {
    q[j + 4] = uint8_t((sc & 0xf) | ((m & 0xf) << 4));
    q[j - 4] |= uint8_t((sc >> 4) << 6);
    q[j] |= uint8_t((m >> 4) << 6);
  }
}

// ---- decoders -------------------------------------------------------------

void dec_q8_0(const uint8_t* b, float* y) {
  const float d = h2f(b);
  for (int j = 0; j < 32; ++j) y[j] = d * float(int8_t(b[2 + j]));
}
void dec_q4_0(const uint8_t* b, float* y) {
  const float d = h2f(b);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * float((b[2 + j] & 0xf) - 8);
    y[j + 16] = d * float((b[2 + j] >> 4) - 8);
  }
}
void dec_q4_1(const uint8_t* b, float* y) {
  const float d = h2f(b), m = h2f(b + 2);
  for (int j = 0; j < 16; ++j) {
    y[j] = float(b[4 + j] & 0xf) * d + m;
    y[j + 16] = float(b[4 + j] >> 4) * d + m;
  }
}
// Q4_K and Q5_K: each 64-element chunk c has two sub-blocks (2c: low nibbles,
// 2c+1: high nibbles), x = d*sc*q - dmin*m; Q5_K adds a fifth bit from qh.
void dec_k4(const uint8_t* b, float* y, const uint8_t* qh) {
  const float d = h2f(b), dmin = h2f(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + (qh ? 48 : 16);
  for (int c = 0; c < 4; ++c) {
    for (int half = 0; half < 2; ++half) {
      int sc, m;
      scale_min_k4(2 * c + half, scales, sc, m);
      const float ds = d * float(sc), ms = dmin * float(m);
      const int bit = 1 << (2 * c + half);
      for (int l = 0; l < 32; ++l) {
        const int low = half ? q[32 * c + l] >> 4 : q[32 * c + l] & 0xf;
        y[64 * c + 32 * half + l] = ds * float(low + (qh && (qh[l] & bit) ? 16 : 0)) - ms;
      }
    }
  }
}
void dec_q4_k(const uint8_t* b, float* y) { dec_k4(b, y, nullptr); }
void dec_q5_k(const uint8_t* b, float* y) { dec_k4(b, y, b + 16); }
void dec_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = h2f(b + 208);
  for (int half = 0; half < 2; ++half) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * float(sc[is]) * float(q1);
      y[l + 32] = d * float(sc[is + 2]) * float(q2);
      y[l + 64] = d * float(sc[is + 4]) * float(q3);
      y[l + 96] = d * float(sc[is + 6]) * float(q4);
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

// ---- reference encoders ---------------------------------------------------

void enc_q8_0(const float* x, uint8_t* b) {
  float amax = 0;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.f, id = d != 0.f ? 1.f / d : 0.f;
  f2h(d, b);
  for (int j = 0; j < 32; ++j) b[2 + j] = uint8_t(int8_t(std::round(x[j] * id)));
}
void enc_q4_0(const float* x, uint8_t* b) {
  float amax = 0, max = 0;  // the element of largest magnitude, with its sign
  for (int j = 0; j < 32; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  const float d = max / -8.f, id = d != 0.f ? 1.f / d : 0.f;
  f2h(d, b);
  for (int j = 0; j < 16; ++j) {
    const int q0 = std::min(15, int(int8_t(x[j] * id + 8.5f)));
    const int q1 = std::min(15, int(int8_t(x[j + 16] * id + 8.5f)));
    b[2 + j] = uint8_t(q0 | (q1 << 4));
  }
}
void enc_q4_1(const float* x, uint8_t* b) {
  float mn = x[0], mx = x[0];
  for (int j = 1; j < 32; ++j) {
    mn = std::min(mn, x[j]);
    mx = std::max(mx, x[j]);
  }
  const float d = (mx - mn) / 15.f, id = d != 0.f ? 1.f / d : 0.f;
  f2h(d, b);
  f2h(mn, b + 2);
  for (int j = 0; j < 16; ++j) {
    const int q0 = std::min(15, int(int8_t((x[j] - mn) * id + 0.5f)));
    const int q1 = std::min(15, int(int8_t((x[j + 16] - mn) * id + 0.5f)));
    b[4 + j] = uint8_t(q0 | (q1 << 4));
  }
}

// A scale and min for n values with codes 0..nmax minimising the weighted
// squared error over a small search of scales (ggml's make_qkx2_quants with
// use_mad = false). Returns the scale; `neg_min` gets -min (>= 0).
float fit_scale_min(int n, int nmax, const float* x, const float* w, uint8_t* L, float& neg_min, float rmin, float rdelta, int nstep) {
  float mn = x[0], mx = x[0], sum_w = w[0], sum_x = w[0] * x[0];
  for (int i = 1; i < n; ++i) {
    mn = std::min(mn, x[i]);
    mx = std::max(mx, x[i]);
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (mn > 0) mn = 0;
  if (mx == mn) {
    std::fill(L, L + n, 0);
    neg_min = -mn;
    return 0.f;
  }
  float iscale = float(nmax) / (mx - mn), scale = 1.f / iscale, best = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = uint8_t(std::clamp(nearest(iscale * (x[i] - mn)), 0, nmax));
    const float diff = scale * float(L[i]) + mn - x[i];
    best += w[i] * diff * diff;
  }
  uint8_t aux[32];
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * float(is) + float(nmax)) / (mx - mn);
    float sl = 0, sl2 = 0, sxl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest(iscale * (x[i] - mn)), 0, nmax);
      aux[i] = uint8_t(l);
      sl += w[i] * float(l);
      sl2 += w[i] * float(l) * float(l);
      sxl += w[i] * float(l) * x[i];
    }
    const float D = sum_w * sl2 - sl * sl;
    if (!(D > 0)) continue;
    float this_scale = (sum_w * sxl - sum_x * sl) / D, this_min = (sl2 * sum_x - sl * sxl) / D;
    if (this_min > 0) {
      this_min = 0;
      this_scale = sxl / sl2;
    }
    float err = 0;
    for (int i = 0; i < n; ++i) {
      const float diff = this_scale * float(aux[i]) + this_min - x[i];
      err += w[i] * diff * diff;
    }
    if (err < best) {
      std::copy(aux, aux + n, L);
      best = err;
      scale = this_scale;
      mn = this_min;
    }
  }
  neg_min = -mn;
  return scale;
}

void enc_q4_k(const float* x, uint8_t* b) {
  float scales[8], mins[8], w[32];
  uint8_t L[kQK];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    const float* xs = x + 32 * j;
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
    const float av = std::sqrt(sum_x2 / 32.f);
    for (int l = 0; l < 32; ++l) w[l] = av + std::fabs(xs[l]);
    scales[j] = fit_scale_min(32, 15, xs, w, L + 32 * j, mins[j], -1.f, 0.1f, 20);
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f, inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  uint8_t* packed = b + 4;
  std::memset(packed, 0, 12);
  for (int j = 0; j < 8; ++j) {
    const int ls = std::min(63, int(uint8_t(nearest(inv_scale * scales[j])))), lm = std::min(63, int(uint8_t(nearest(inv_min * mins[j]))));
    put_scale_min_k4(j, ls, lm, packed);
  }
  f2h(max_scale / 63.f, b);
  f2h(max_min / 63.f, b + 2);
  const float d = h2f(b), dmin = h2f(b + 2);
  for (int j = 0; j < 8; ++j) {
    int sc, m;
    scale_min_k4(j, packed, sc, m);
    const float ds = d * float(sc);
    if (ds == 0.f) continue;
    const float dm = dmin * float(m);
    for (int i = 0; i < 32; ++i) L[32 * j + i] = uint8_t(std::clamp(nearest((x[32 * j + i] + dm) / ds), 0, 15));
  }
  uint8_t* q = b + 16;
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) q[32 * c + l] = uint8_t(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
  }
}

// A symmetric scale for n values with codes -nmax..nmax-1, weights x^2, with a
// search over 18 nearby scales (ggml's make_qx_quants, rmse_type 1). L gets
// code + nmax.
float fit_scale_sym(int n, int nmax, const float* x, int8_t* L) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (amax < 1e-15f) {
    std::fill(L, L + n, 0);
    return 0.f;
  }
  auto code = [&](float iscale, int i) { return std::clamp(nearest(iscale * x[i]), -nmax, nmax - 1); };
  float iscale = -float(nmax) / max, sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = code(iscale, i);
    L[i] = int8_t(l + nmax);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * float(l);
    suml2 += w * float(l) * float(l);
  }
  float scale = suml2 != 0.f ? sumlx / suml2 : 0.f, best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(float(nmax) + 0.1f * float(is)) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = code(iscale, i);
      const float w = x[i] * x[i];
      sumlx += w * x[i] * float(l);
      suml2 += w * float(l) * float(l);
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) L[i] = int8_t(nmax + code(iscale, i));
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

void enc_q6_k(const float* x, uint8_t* b) {
  int8_t L[kQK];
  float scales[16], max_scale = 0, max_abs = 0;
  for (int ib = 0; ib < 16; ++ib) {
    scales[ib] = fit_scale_sym(16, 32, x + 16 * ib, L + 16 * ib);
    if (std::fabs(scales[ib]) > max_abs) {
      max_abs = std::fabs(scales[ib]);
      max_scale = scales[ib];
    }
  }
  std::memset(b, 0, 210);
  if (max_abs < 1e-15f) return;  // all zero: d = 0
  int8_t* sc = reinterpret_cast<int8_t*>(b + 192);
  const float iscale = -128.f / max_scale;
  f2h(1.f / iscale, b + 208);
  for (int ib = 0; ib < 16; ++ib) sc[ib] = int8_t(std::min(127, nearest(iscale * scales[ib])));
  const float d = h2f(b + 208);
  for (int j = 0; j < 16; ++j) {
    const float ds = d * float(sc[j]);
    if (ds == 0.f) continue;
    for (int i = 0; i < 16; ++i) L[16 * j + i] = int8_t(std::clamp(nearest(x[16 * j + i] / ds), -32, 31) + 32);
  }
  uint8_t* ql = b;
  uint8_t* qh = b + 128;
  for (int half = 0; half < 2; ++half) {
    const int8_t* Lh = L + 128 * half;
    for (int l = 0; l < 32; ++l) {
      const int q1 = Lh[l], q2 = Lh[l + 32], q3 = Lh[l + 64], q4 = Lh[l + 96];
      ql[l] = uint8_t((q1 & 0xf) | ((q3 & 0xf) << 4));
      ql[l + 32] = uint8_t((q2 & 0xf) | ((q4 & 0xf) << 4));
      qh[l] = uint8_t((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
    }
    ql += 64;
    qh += 32;
  }
}

using BlockFn = void (*)(const uint8_t*, float*);
using EncFn = void (*)(const float*, uint8_t*);
BlockFn decoder(uint32_t t) {
  switch (t) {
    case Q8_0: return dec_q8_0;
    case Q4_0: return dec_q4_0;
    case Q4_1: return dec_q4_1;
    case Q4_K: return dec_q4_k;
    case Q5_K: return dec_q5_k;
    case Q6_K: return dec_q6_k;
    default: return nullptr;
  }
}
EncFn encoder(uint32_t t) {
  switch (t) {
    case Q8_0: return enc_q8_0;
    case Q4_0: return enc_q4_0;
    case Q4_1: return enc_q4_1;
    case Q4_K: return enc_q4_k;
    case Q6_K: return enc_q6_k;
    default: return nullptr;
  }
}

}  // namespace

const TypeInfo* type_info(uint32_t t) {
  return t < sizeof(kTypes) / sizeof(kTypes[0]) && kTypes[t].name ? &kTypes[t] : nullptr;
}
const char* type_name(uint32_t t) { return type_info(t) ? type_info(t)->name : "unknown"; }
bool readable(uint32_t t) { return t == F32 || t == F16 || t == BF16 || decoder(t) != nullptr; }
bool writable(uint32_t t) { return t == F32 || t == F16 || t == BF16 || encoder(t) != nullptr; }

float load_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return minifloat::f16_to_f32(h);
}
void store_f16(float v, uint8_t* p) {
  const uint16_t h = minifloat::f32_to_f16(v);
  std::memcpy(p, &h, 2);
}

int type_from_name(const std::string& s) {
  for (uint32_t t = 0; t < sizeof(kTypes) / sizeof(kTypes[0]); ++t) {
    if (kTypes[t].name && s == kTypes[t].name) return int(t);
  }
  return -1;
}

Type writable_type_from_name(const std::string& s) {
  std::string u;
  for (char c : s) u += char(std::toupper(static_cast<unsigned char>(c)));
  for (uint32_t t : {F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K}) {
    if (u == type_name(t)) return Type(t);
  }
  fail("GGUF type", "'" + s + "' is not one condense writes", "Use f32, f16, bf16, q8_0, q4_0, q4_1, q4_k or q6_k");
}

uint64_t row_bytes(uint32_t t, int64_t n) {
  const TypeInfo* ti = type_info(t);
  return uint64_t(n) / ti->block * ti->bytes;
}

void dequantize_row(uint32_t t, const uint8_t* src, float* dst, int64_t n) {
  switch (t) {
    case F32: std::memcpy(dst, src, size_t(n) * 4); return;
    case F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = h2f(src + 2 * i);
      return;
    case BF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = minifloat::bf16_to_f32(h);
      }
      return;
    default: break;
  }
  const BlockFn f = decoder(t);
  if (!f) fail("GGUF", std::string("ggml type ") + type_name(t) + " cannot be decoded by condense");
  const TypeInfo* ti = type_info(t);
  for (int64_t b = 0; b < n / ti->block; ++b) f(src + b * ti->bytes, dst + b * ti->block);
}

void quantize_row(uint32_t t, const float* src, uint8_t* dst, int64_t n) {
  switch (t) {
    case F32: std::memcpy(dst, src, size_t(n) * 4); return;
    case F16:
      for (int64_t i = 0; i < n; ++i) f2h(src[i], dst + 2 * i);
      return;
    case BF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = minifloat::f32_to_bf16(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      return;
    default: break;
  }
  const EncFn f = encoder(t);
  if (!f) fail("GGUF", std::string("condense does not write ggml type ") + type_name(t));
  const TypeInfo* ti = type_info(t);
  for (int64_t b = 0; b < n / ti->block; ++b) f(src + b * ti->block, dst + b * ti->bytes);
}

int64_t first_bad_scale(uint32_t t, const uint8_t* src, int64_t n) {
  auto bad = [](float v) { return !std::isfinite(v); };
  // Float tensors: the exponent bits, without decoding (this runs over every
  // weight of a file at load).
  if (t == F32 || t == F16 || t == BF16) {
    for (int64_t i = 0; i < n; ++i) {
      if (t == F32) {
        uint32_t u;
        std::memcpy(&u, src + 4 * i, 4);
        if ((u & 0x7f800000u) == 0x7f800000u) return i;
      } else {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        if (t == F16 ? (h & 0x7c00u) == 0x7c00u : (h & 0x7f80u) == 0x7f80u) return i;
      }
    }
    return -1;
  }
  const TypeInfo* ti = type_info(t);
  for (int64_t b = 0; b < n / ti->block; ++b) {
    const uint8_t* p = src + b * ti->bytes;
    switch (t) {
      case Q8_0:
      case Q4_0: if (bad(h2f(p))) return b; break;
      case Q4_1:
      case Q4_K:
      case Q5_K: if (bad(h2f(p)) || bad(h2f(p + 2))) return b; break;
      case Q6_K: if (bad(h2f(p + 208))) return b; break;
      default: break;
    }
  }
  return -1;
}

}  // namespace condense::ggml
