// What the fuzz targets share: the input as a file in a folder of this process
// (most readers take a path), and the rule that a condense::Error is the one
// acceptable way to refuse an input. Any other exception, a crash, a hang or a
// huge allocation is a finding (libFuzzer reports it; the replay driver fails).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace condense::fuzz {

// A folder for this process's inputs (made on first use).
const std::string& work_dir();
// Writes the input to work_dir()/name and returns the path.
std::string input_file(const uint8_t* data, size_t size, const std::string& name);
// An input refused with an Error (printed when CONDENSE_FUZZ_VERBOSE is set, to see why a seed is refused).
void refused(const char* message);

}  // namespace condense::fuzz

#define CONDENSE_FUZZ_TARGET(data, size)                                              \
  static void condense_fuzz_one(const uint8_t* data, size_t size);                   \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* d, size_t n) {                \
    try {                                                                             \
      condense_fuzz_one(d, n);                                                        \
    } catch (const condense::Error& e) {                                              \
      condense::fuzz::refused(e.what());                                              \
    }                                                                                 \
    return 0;                                                                         \
  }                                                                                   \
  static void condense_fuzz_one(const uint8_t* data, size_t size)
