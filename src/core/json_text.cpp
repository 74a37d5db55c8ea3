#include "core/json_text.h"

#include "core/error.h"

namespace condense {

nlohmann::json parse_json(std::string_view text, const std::string& where, const std::string& fix) {
  try {
    // The callback sees every value's depth before it is built, so a deep
    // document is refused without building (or later recursing through) it.
    return nlohmann::json::parse(text.begin(), text.end(), [&](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
      if (depth > kMaxJsonDepth) fail(where, "nests deeper than " + std::to_string(kMaxJsonDepth) + " levels", fix);
      return true;
    });
  } catch (const nlohmann::json::exception& e) {
    fail(where, std::string("is not valid JSON: ") + e.what(), fix);
  }
}

nlohmann::json try_parse_json(std::string_view text) {
  bool deep = false;
  nlohmann::json j = nlohmann::json::parse(
      text.begin(), text.end(),
      [&](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
        if (depth > kMaxJsonDepth) deep = true;
        return !deep;
      },
      false);
  return deep ? nlohmann::json(nlohmann::json::value_t::discarded) : j;
}

std::string json_snippet(const nlohmann::json& v, size_t max) {
  std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > max) s = s.substr(0, max) + "...";
  return s;
}

int64_t json_int(const nlohmann::json& v, const std::string& where, const std::string& field, int64_t lo, int64_t hi) {
  const std::string range = " (allowed: " + std::to_string(lo) + ".." + std::to_string(hi) + ")";
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > uint64_t(hi) || (lo > 0 && u < uint64_t(lo))) fail(where, "'" + field + "' is " + std::to_string(u) + ", out of range" + range);
    return int64_t(u);
  }
  if (!v.is_number_integer()) fail(where, "'" + field + "' has the wrong type: an integer is needed, got " + json_snippet(v, 60));
  const int64_t i = v.get<int64_t>();
  if (i < lo || i > hi) fail(where, "'" + field + "' is " + std::to_string(i) + ", out of range" + range);
  return i;
}

}  // namespace condense
