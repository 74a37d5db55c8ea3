// ggml's tensor types and block codecs (the layouts of ggml-common.h, the
// decoders of ggml-quants.c dequantize_row_*, the reference encoders of
// quantize_row_*_ref, so a file condense writes matches what llama-quantize
// writes without an importance matrix). A block covers 32 or 256 consecutive
// elements of one row; every scale inside a block is an IEEE half.
//
//   Q8_0  32 el, 34 B: d f16, qs[32] int8                      x = d*q
//   Q4_0  32 el, 18 B: d f16, qs[16]: el j low nibble, j+16 high  x = d*(q-8)
//   Q4_1  32 el, 20 B: d f16, m f16, qs[16] as Q4_0             x = d*q + m
//   Q4_K 256 el, 144 B: d, dmin f16, scales[12] (8 six-bit scales + mins),
//                       qs[128]: chunk c of 64 uses qs[32c..]: low nibbles
//                       sub-block 2c, high 2c+1                  x = d*sc*q - dmin*m
//   Q5_K 256 el, 176 B: as Q4_K plus qh[32] (the fifth bit)     (decode only)
//   Q6_K 256 el, 210 B: ql[128], qh[64], scales[16] int8, d f16 (last)
//                                                                 x = d*sc*(q-32)
#pragma once
#include <cstdint>
#include <string>

namespace condense::ggml {

enum Type : uint32_t { F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q8_0 = 8, Q4_K = 12, Q5_K = 13, Q6_K = 14, BF16 = 30 };

struct TypeInfo {
  const char* name;  // ggml's spelling: "Q4_K", "F16"
  uint32_t block;    // elements per block
  uint32_t bytes;    // bytes per block
};

// Every type ggml defines (ids of removed types give null), for reading headers.
const TypeInfo* type_info(uint32_t t);
const char* type_name(uint32_t t);  // "unknown" for ids ggml does not define
// condense decodes it (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K) /
// encodes it (the same but Q5_K).
bool readable(uint32_t t);
bool writable(uint32_t t);
// The id of a type named as ggml spells it ("Q5_K"), or -1.
int type_from_name(const std::string& s);
// "q4_k", "Q4_K", "f16", ... for a writable type; Error listing them otherwise.
Type writable_type_from_name(const std::string& s);
// Bytes of a row of n elements (n a multiple of the block).
uint64_t row_bytes(uint32_t t, int64_t n);

// An IEEE half at p (little-endian), as block scales are stored.
float load_f16(const uint8_t* p);
void store_f16(float v, uint8_t* p);

// One row of n elements (a multiple of the type's block).
void dequantize_row(uint32_t t, const uint8_t* src, float* dst, int64_t n);
void quantize_row(uint32_t t, const float* src, uint8_t* dst, int64_t n);
// The first non-finite block scale (d, dmin, m) of a row, or -1: llama.cpp's
// --check-tensors refuses those; F16/BF16/F32 values are checked as well.
int64_t first_bad_scale(uint32_t t, const uint8_t* src, int64_t n);

}  // namespace condense::ggml
