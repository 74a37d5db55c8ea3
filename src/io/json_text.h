// Parsing JSON text read from a file (or a file's header) with the one error
// every reader gives: "<where>: is not valid JSON: <parser message>. <fix>".
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace condense {

nlohmann::json parse_json(std::string_view text, const std::string& where, const std::string& fix = "");

}  // namespace condense
