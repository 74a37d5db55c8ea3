// Parsing JSON text read from a file (or a file's header) with the one error
// every reader gives: "<where>: is not valid JSON: <parser message>. <fix>",
// and reading integers from it with their range checked (nlohmann's get<int>()
// truncates 2^63 to -1 and 3.7 to 3 without a word).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace condense {

// Nesting deeper than this is refused: nothing condense reads needs it, and
// code that walks or prints a value recurses once per level.
constexpr int kMaxJsonDepth = 128;

nlohmann::json parse_json(std::string_view text, const std::string& where, const std::string& fix = "");
// The same limits, no exception: a discarded value (is_discarded()) when the
// text is not JSON or nests too deep. For input whose caller words the error.
nlohmann::json try_parse_json(std::string_view text);

// `v` as JSON text for an error message, at most `max` bytes; bytes that are
// not UTF-8 (strings from binary files or the command line) shown as U+FFFD
// instead of making dump() throw.
std::string json_snippet(const nlohmann::json& v, size_t max = 80);

// The integer `v` (named `field` in errors about `where`) if it is a JSON
// integer in [lo, hi]; anything else (a float, a string, out of range) fails.
int64_t json_int(const nlohmann::json& v, const std::string& where, const std::string& field, int64_t lo, int64_t hi);

}  // namespace condense
