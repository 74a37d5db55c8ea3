#include "io/json_text.h"

#include "core/error.h"

namespace condense {

nlohmann::json parse_json(std::string_view text, const std::string& where, const std::string& fix) {
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    fail(where, std::string("is not valid JSON: ") + e.what(), fix);
  }
}

}  // namespace condense
