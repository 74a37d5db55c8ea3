// Recipe JSON with a --set assignment: the first line of the input is the
// assignment, the rest the recipe.
#include <string>

#include "core/error.h"
#include "core/json_text.h"
#include "fuzz/fuzz_input.h"
#include "pipeline/recipe.h"

CONDENSE_FUZZ_TARGET(data, size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const size_t nl = text.find('\n');
  nlohmann::json j = condense::parse_json(nl == std::string::npos ? text : text.substr(nl + 1), "recipe.json");
  if (nl != std::string::npos && nl > 0) condense::pipeline::apply_set(j, text.substr(0, nl));
  condense::pipeline::parse_recipe(j, "/nonexistent");
}
