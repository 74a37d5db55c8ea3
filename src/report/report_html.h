// The report of a set of variants: one self-contained HTML page (inline SVG
// and CSS, a few lines of inline JS to sort the table; no network, printable),
// and the same rows as JSON and CSV. Output depends only on the variants
// (no clock), so the same inputs give the same bytes.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "report/variants.h"

namespace condense::report {

// The two fronts every variant is placed on: quality (ΔPPL %, lower better)
// against decode latency (TPOT p50) and against size (weight bytes).
struct Fronts {
  std::vector<bool> latency, size, bits;  // ΔPPL against TPOT p50, weight bytes, bits per weight
};
Fronts fronts_of(const std::vector<Variant>& v);

std::string render_html(const std::vector<Variant>& v, const std::string& title);
nlohmann::json to_json(const std::vector<Variant>& v);
std::string to_csv(const std::vector<Variant>& v);

}  // namespace condense::report
