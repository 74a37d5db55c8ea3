// Progress of long work on stderr: a redrawn bar on a terminal, one JSON line
// per update with --log-json, a plain line every 5 s (and the final one) when
// stderr is a file or pipe. Not thread-safe: call from one thread.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace condense {

class Progress {
 public:
  Progress(std::string label, int64_t total, bool json_lines);
  // `detail` is appended to the line (e.g. "loss 2.31").
  void update(int64_t done, const std::string& detail = "");
  void finish(const std::string& detail = "");

 private:
  std::string label_;
  int64_t total_;
  bool json_, tty_;
  std::chrono::steady_clock::time_point start_, last_;
  int64_t printed_ = -1;  // the last count written as a plain line (finish() repeats the total)
};

}  // namespace condense
