#include "core/dtype.h"

#include <cstring>

#include "core/error.h"
#include "kernels/common/int_codes.h"
#include "kernels/common/minifloat.h"

namespace condense {
namespace {

namespace mf = minifloat;

constexpr DTypeTraits kTable[kNumDTypes] = {
    {DType::F32, "f32", 32, true, 3.4028234663852886e38},
    {DType::BF16, "bf16", 16, true, 3.3895313892515355e38},
    {DType::F16, "f16", 16, true, 65504.0},
    {DType::F8E4M3, "fp8_e4m3", 8, true, 448.0},
    {DType::F8E5M2, "fp8_e5m2", 8, true, 57344.0},
    {DType::I8, "int8", 8, false, 127.0},
    {DType::I4, "int4", 4, false, 7.0},
};

}  // namespace

const DTypeTraits& traits(DType t) { return kTable[static_cast<int>(t)]; }

size_t storage_bytes(DType t, int64_t n) {
  int64_t bits = 0;
  if (n < 0 || __builtin_mul_overflow(n, int64_t(traits(t).bits), &bits) || bits > INT64_MAX - 7) {
    fail(std::string(name(t)) + " storage", "of " + std::to_string(n) + " elements overflows");
  }
  return size_t((bits + 7) / 8);
}

DType dtype_from_name(const std::string& s) {
  std::string known;
  for (const auto& t : kTable) {
    if (s == t.name) return t.type;
    known += known.empty() ? t.name : std::string(", ") + t.name;
  }
  fail("dtype '" + s + "'", "unknown element type", "Use one of: " + known);
}

void convert_to_f32(DType src_type, const void* src, float* dst, int64_t n, int64_t off) {
  switch (src_type) {
    case DType::F32: std::memcpy(dst, static_cast<const float*>(src) + off, size_t(n) * 4); return;
    case DType::BF16: {
      auto* p = static_cast<const uint16_t*>(src) + off;
      for (int64_t i = 0; i < n; ++i) dst[i] = mf::bf16_to_f32(p[i]);
      return;
    }
    case DType::F16: {
      auto* p = static_cast<const uint16_t*>(src) + off;
      for (int64_t i = 0; i < n; ++i) dst[i] = mf::f16_to_f32(p[i]);
      return;
    }
    case DType::F8E4M3: {
      auto* p = static_cast<const uint8_t*>(src) + off;
      for (int64_t i = 0; i < n; ++i) dst[i] = mf::e4m3_to_f32(p[i]);
      return;
    }
    case DType::F8E5M2: {
      auto* p = static_cast<const uint8_t*>(src) + off;
      for (int64_t i = 0; i < n; ++i) dst[i] = mf::e5m2_to_f32(p[i]);
      return;
    }
    case DType::I8: {
      auto* p = static_cast<const int8_t*>(src) + off;
      for (int64_t i = 0; i < n; ++i) dst[i] = float(p[i]);
      return;
    }
    case DType::I4: {
      auto* p = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = float(intcode::i4_get(p, off + i));
      return;
    }
  }
}

void convert_from_f32(const float* src, DType dst_type, void* dst, int64_t n, int64_t off) {
  switch (dst_type) {
    case DType::F32: std::memcpy(static_cast<float*>(dst) + off, src, size_t(n) * 4); return;
    case DType::BF16: {
      auto* p = static_cast<uint16_t*>(dst) + off;
      for (int64_t i = 0; i < n; ++i) p[i] = mf::f32_to_bf16(src[i]);
      return;
    }
    case DType::F16: {
      auto* p = static_cast<uint16_t*>(dst) + off;
      for (int64_t i = 0; i < n; ++i) p[i] = mf::f32_to_f16(src[i]);
      return;
    }
    case DType::F8E4M3: {
      auto* p = static_cast<uint8_t*>(dst) + off;
      for (int64_t i = 0; i < n; ++i) p[i] = mf::f32_to_e4m3(src[i]);
      return;
    }
    case DType::F8E5M2: {
      auto* p = static_cast<uint8_t*>(dst) + off;
      for (int64_t i = 0; i < n; ++i) p[i] = mf::f32_to_e5m2(src[i]);
      return;
    }
    case DType::I8: {
      auto* p = static_cast<int8_t*>(dst) + off;
      for (int64_t i = 0; i < n; ++i) p[i] = intcode::f32_to_i8(src[i]);
      return;
    }
    case DType::I4: {
      auto* p = static_cast<uint8_t*>(dst);
      for (int64_t i = 0; i < n; ++i) intcode::i4_set(p, off + i, intcode::f32_to_i4(src[i]));
      return;
    }
  }
}

}  // namespace condense
