// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of every
// .cpk section and header. crc32c("123456789") == 0xE3069283.
#pragma once
#include <cstddef>
#include <cstdint>

namespace condense {

uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);

}  // namespace condense
