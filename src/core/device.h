// Where a tensor's bytes live. Only CPU storage exists in a build without
// CUDA/HIP; asking for another device throws condense::Error.
#pragma once
#include <cstdint>

namespace condense {

enum class Device : uint8_t { CPU, CUDA, HIP };
const char* device_name(Device d);

}  // namespace condense
