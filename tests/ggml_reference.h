// Block decoders written for the tests from the published ggml layouts
// (ggml-common.h structs, ggml-quants.c dequantize_row_*; summarised in
// shared/INTEROP.md B.1), independent of src/io/ggml_quants.cpp, in float64,
// and a minimal GGUF tensor index that reads a file's tensor table.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace ggmlref {

inline double half(const uint8_t* p) {
  const unsigned h = unsigned(p[0]) | (unsigned(p[1]) << 8);
  const int s = (h >> 15) & 1, e = (h >> 10) & 31, f = h & 1023;
  double v;
  if (e == 0) v = std::ldexp(double(f), -24);
  else if (e == 31) v = f ? NAN : INFINITY;
  else v = std::ldexp(double(f + 1024), e - 25);
  return s ? -v : v;
}

// One block of each type into 32 or 256 doubles.
inline void q8_0(const uint8_t* b, double* y) {
  const double d = half(b);
  for (int j = 0; j < 32; ++j) y[j] = d * double(int8_t(b[2 + j]));
}
inline void q4_0(const uint8_t* b, double* y) {
  const double d = half(b);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * (int(b[2 + j] & 15) - 8);
    y[j + 16] = d * (int(b[2 + j] >> 4) - 8);
  }
}
inline void q4_1(const uint8_t* b, double* y) {
  const double d = half(b), m = half(b + 2);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * (b[4 + j] & 15) + m;
    y[j + 16] = d * (b[4 + j] >> 4) + m;
  }
}
// 6-bit scale and min of sub-block s of the 12 packed bytes.
inline void k4_scale_min(const uint8_t* sc, int s, int& scale, int& min) {
  if (s < 4) {
    scale = sc[s] & 63;
    min = sc[s + 4] & 63;
  } else {
    scale = (sc[s + 4] & 15) | ((sc[s - 4] >> 6) << 4);
    min = (sc[s + 4] >> 4) | ((sc[s] >> 6) << 4);
  }
}
// Q4_K, and Q5_K with its fifth bits in qh[32] (bit `sub` of qh[l]) before the nibbles.
inline void k_quant(const uint8_t* b, double* y, bool five) {
  const double d = half(b), dmin = half(b + 2);
  for (int e = 0; e < 256; ++e) {
    const int chunk = e / 64, within = e % 64, sub = 2 * chunk + within / 32;
    int sc, m;
    k4_scale_min(b + 4, sub, sc, m);
    const uint8_t byte = b[(five ? 48 : 16) + 32 * chunk + within % 32];
    const int high = five ? (b[16 + within % 32] >> sub) & 1 : 0;
    const int q = (within < 32 ? byte & 15 : byte >> 4) + 16 * high;
    y[e] = d * sc * q - dmin * m;
  }
}
inline void q4_k(const uint8_t* b, double* y) { k_quant(b, y, false); }
inline void q5_k(const uint8_t* b, double* y) { k_quant(b, y, true); }
inline void q6_k(const uint8_t* b, double* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const double d = half(b + 208);
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
    const uint8_t low_byte = ql[64 * h + l + (quarter & 1) * 32];
    const int low = quarter < 2 ? low_byte & 15 : low_byte >> 4;
    const int high = (qh[32 * h + l] >> (2 * quarter)) & 3;
    const int q = (low | (high << 4)) - 32;
    y[e] = d * sc[8 * h + l / 16 + 2 * quarter] * q;
  }
}

struct Kind { int block, bytes; void (*decode)(const uint8_t*, double*); };
inline Kind kind(uint32_t t) {
  switch (t) {
    case 8: return {32, 34, q8_0};
    case 2: return {32, 18, q4_0};
    case 3: return {32, 20, q4_1};
    case 12: return {256, 144, q4_k};
    case 13: return {256, 176, q5_k};
    case 14: return {256, 210, q6_k};
    default: return {0, 0, nullptr};
  }
}

// The tensor table of a GGUF v3 file: name -> (dims innermost first, type, absolute offset).
struct TensorEntry { std::vector<uint64_t> dims; uint32_t type; uint64_t offset; };
inline std::map<std::string, TensorEntry> gguf_tensors(const std::string& bytes) {
  size_t at = 8;
  auto u32 = [&] { uint32_t v; std::memcpy(&v, bytes.data() + at, 4); at += 4; return v; };
  auto u64 = [&] { uint64_t v; std::memcpy(&v, bytes.data() + at, 8); at += 8; return v; };
  auto str = [&] { const uint64_t n = u64(); std::string s = bytes.substr(at, n); at += n; return s; };
  const uint64_t n_tensors = u64(), n_kv = u64();
  const int scalar[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
  auto skip = [&](uint32_t t) { if (t == 8) str(); else at += size_t(scalar[t]); };
  for (uint64_t i = 0; i < n_kv; ++i) {
    str();
    const uint32_t t = u32();
    if (t == 9) {
      const uint32_t et = u32();
      const uint64_t n = u64();
      for (uint64_t k = 0; k < n; ++k) skip(et);
    } else {
      skip(t);
    }
  }
  std::map<std::string, TensorEntry> out;
  std::vector<std::string> order;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    const std::string name = str();
    TensorEntry e;
    const uint32_t nd = u32();
    for (uint32_t d = 0; d < nd; ++d) e.dims.push_back(u64());
    e.type = u32();
    e.offset = u64();
    out[name] = e;
  }
  const size_t data = (at + 31) / 32 * 32;  // general.alignment 32, as condense writes
  for (auto& [name, e] : out) e.offset += data;
  return out;
}

// A whole tensor of the file decoded to doubles (F32 and the block types above).
inline std::vector<double> decode_tensor(const std::string& bytes, const TensorEntry& e) {
  uint64_t n = 1;
  for (uint64_t d : e.dims) n *= d;
  std::vector<double> y(n);
  const uint8_t* p = reinterpret_cast<const uint8_t*>(bytes.data() + e.offset);
  if (e.type == 0) {
    for (uint64_t i = 0; i < n; ++i) {
      float f;
      std::memcpy(&f, p + 4 * i, 4);
      y[i] = f;
    }
    return y;
  }
  if (e.type == 1) {
    for (uint64_t i = 0; i < n; ++i) y[i] = half(p + 2 * i);
    return y;
  }
  const Kind k = kind(e.type);
  for (uint64_t b = 0; b < n / uint64_t(k.block); ++b) k.decode(p + b * uint64_t(k.bytes), y.data() + b * uint64_t(k.block));
  return y;
}

}  // namespace ggmlref
