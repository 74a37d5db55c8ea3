// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of every
// .cpk section and header. crc32c("123456789") == 0xE3069283.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace condense {

uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);
// A whole file's CRC-32C as 8 lower-case hex digits (how a .cpk's provenance
// names the draft model written beside it).
std::string file_crc32c_hex(const std::string& path);

}  // namespace condense
