// condense::Error: thrown for bad input (files, configs, arguments). The message
// says what was wrong, where (file, offset, tensor, JSON path) and how to fix it.
// Programmer errors use assertions instead.
#pragma once
#include <stdexcept>
#include <string>

namespace condense {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// "<where>: <what>. <fix>" with empty parts left out.
[[noreturn]] void fail(const std::string& where, const std::string& what, const std::string& fix = "");

}  // namespace condense
