// Shared test helpers: where ../shared/data is, skipping when it is absent,
// temporary folders, and error reporting with the worst index.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"

namespace testutil {

inline std::string data_dir() {
  if (const char* e = std::getenv("CONDENSE_DATA_DIR")) return e;
  return CONDENSE_DEFAULT_DATA_DIR;
}
inline std::string data(const std::string& rel) { return data_dir() + "/" + rel; }

#define REQUIRE_DATA(rel)                                                                          \
  do {                                                                                             \
    if (!std::filesystem::exists(testutil::data(rel)))                                             \
      GTEST_SKIP() << "shared data file " << testutil::data(rel)                                   \
                   << " is absent (set CONDENSE_DATA_DIR to the shared/data folder to run this)"; \
  } while (0)

// A fresh folder under the system temp dir, removed when the object dies.
struct TempDir {
  std::filesystem::path path;
  TempDir();
  ~TempDir();
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

// Sets an environment variable for the object's lifetime (restoring it after).
struct ScopedEnv {
  std::string name, old;
  bool had = false;
  ScopedEnv(const char* n, const char* value) : name(n) {
    if (const char* v = std::getenv(n)) had = true, old = v;
    ::setenv(n, value, 1);
  }
  ~ScopedEnv() { had ? ::setenv(name.c_str(), old.c_str(), 1) : ::unsetenv(name.c_str()); }
};

// Runs f and expects a condense::Error whose message contains every needle.
template <typename F>
void expect_error(F f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "no error raised";
  } catch (const condense::Error& e) {
    for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << "'" << n << "' not in: " << e.what();
  }
}

// Writes bytes to a file (for corruption tests).
void write_file(const std::string& path, const std::string& bytes);
std::string read_file(const std::string& path);

// Runs a shell command, returning what it wrote to stdout and stderr and its exit status.
struct CommandResult {
  std::string output;
  int status = -1;
};
CommandResult run_command(const std::string& cmd);

}  // namespace testutil
