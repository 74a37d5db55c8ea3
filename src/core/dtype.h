// Element types and the one traits table that packing, printing and checks use.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace condense {

enum class DType : uint8_t { F32, BF16, F16, F8E4M3, F8E5M2, I8, I4 };
inline constexpr int kNumDTypes = 7;

struct DTypeTraits {
  DType type;
  const char* name;   // canonical lower-case name used in files and CLIs
  int bits;           // storage bits per element
  bool is_float;
  double max_finite;  // largest finite value (integers: largest code)
};

const DTypeTraits& traits(DType t);
inline const char* name(DType t) { return traits(t).name; }
// Bytes for n elements; sub-byte types round up to whole bytes.
size_t storage_bytes(DType t, int64_t n);
// Throws condense::Error listing the known names.
DType dtype_from_name(const std::string& s);

// Element-wise conversion through f32 (rounding to nearest even, saturating
// integers and E4M3). `src_offset`/`dst_offset` count elements, which matters
// for int4 where two share a byte.
void convert_to_f32(DType src_type, const void* src, float* dst, int64_t n, int64_t src_offset = 0);
void convert_from_f32(const float* src, DType dst_type, void* dst, int64_t n, int64_t dst_offset = 0);

}  // namespace condense
