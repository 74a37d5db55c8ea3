// The subset of Jinja2 that Hugging Face chat templates use, rendered as
// transformers renders them (apply_chat_template: trim_blocks and
// lstrip_blocks on): text, {{ expressions }}, {% if / elif / else %},
// {% for x in xs %} (loop.index, index0, first, last, length, revindex),
// {% set %} (and namespace() attributes), {# comments #}, whitespace control
// with '-', string / number / list / dict literals, attribute and index access,
// slices, + - * / // % ~, comparisons, and / or / not / in / is (defined,
// none, string, mapping, ...), a if b else c, the filters templates use (trim,
// length, tojson, upper, lower, join, default, ...), string methods (strip,
// startswith, split, ...), raise_exception() and namespace(). Anything else
// is an Error naming the template line, never a silently different prompt.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace condense::jinja {

// Renders `source` with the variables of the JSON object `vars`.
std::string render(const std::string& source, const nlohmann::json& vars, const std::string& where = "chat template");

}  // namespace condense::jinja
