// Signed integer codes: int8 and int4 (two's complement nibbles, two per byte,
// element 2i in the low nibble). Encoding rounds to nearest even and clamps.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/common/host_device.h"

namespace condense::intcode {

CONDENSE_HD int8_t f32_to_i8(float x) {
  if (x != x) return 0;
  const float r = std::nearbyint(x);
  return int8_t(r < -128.f ? -128.f : (r > 127.f ? 127.f : r));
}
CONDENSE_HD int f32_to_i4(float x) {
  if (x != x) return 0;
  const float r = std::nearbyint(x);
  return int(r < -8.f ? -8.f : (r > 7.f ? 7.f : r));
}
// Nibble n (0..15) read as two's complement: 8..15 are -8..-1.
CONDENSE_HD int i4_from_nibble(uint8_t n) { return int(n & 0xf) - ((n & 0x8) ? 16 : 0); }
CONDENSE_HD int i4_get(const uint8_t* packed, int64_t i) {
  return i4_from_nibble(uint8_t(packed[i >> 1] >> ((i & 1) * 4)));
}
CONDENSE_HD void i4_set(uint8_t* packed, int64_t i, int v) {
  const int shift = int(i & 1) * 4;
  packed[i >> 1] = uint8_t((packed[i >> 1] & ~(0xf << shift)) | ((v & 0xf) << shift));
}

}  // namespace condense::intcode
