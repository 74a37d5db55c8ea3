// Where a tensor's bytes live and where a command runs. Only CPU storage
// exists in a build without CUDA/HIP; asking for another device throws
// condense::Error.
#pragma once
#include <cstdint>
#include <string>

namespace condense {

enum class Device : uint8_t { CPU, CUDA, HIP };
const char* device_name(Device d);

// "cpu" | "cuda" | "hip" (what --device takes); fails naming the accepted values.
Device device_from_name(const std::string& name);
// Whether this build and machine can run on `d` (CPU always), and if not why.
bool device_usable(Device d, std::string* why);

}  // namespace condense
