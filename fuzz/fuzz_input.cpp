#include "fuzz/fuzz_input.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

namespace condense::fuzz {

const std::string& work_dir() {
  static const std::string dir = [] {
    const auto d = std::filesystem::temp_directory_path() / ("condense-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d.string();
  }();
  return dir;
}

std::string input_file(const uint8_t* data, size_t size, const std::string& name) {
  const std::string path = work_dir() + "/" + name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (size && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) std::abort();  // the harness, not the input
  return path;
}

void refused(const char* message) {
  static const bool verbose = std::getenv("CONDENSE_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "refused: %s\n", message);
}

}  // namespace condense::fuzz
