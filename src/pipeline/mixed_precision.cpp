#include "pipeline/mixed_precision.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "compress/bit_allocation.h"
#include "core/error.h"

namespace condense::pipeline {

using nlohmann::json;

StorageOption storage_option(const json& j, const std::string& where) {
  if (!j.is_object()) fail("sweep", where + ": expected a \"weights\" object (e.g. {\"type\": \"int4\", \"group\": 32}), optionally with \"sparsity\"");
  StorageOption o;
  json w = j;
  if (w.contains("sparsity")) {
    if (!w["sparsity"].is_number() || !(w["sparsity"].get<double>() >= 0 && w["sparsity"].get<double>() < 1)) {
      fail("sweep", where + ".sparsity: expected a fraction in [0, 1)");
    }
    o.sparsity = w["sparsity"].get<double>();
    w.erase("sparsity");
  }
  if (!w.empty()) {
    o.scheme = parse_weights(w, where);
    o.weights = w;
  } else if (o.sparsity == 0) {
    fail("sweep", where + ": an option quantizes (\"type\") or prunes (\"sparsity\"), or both");
  }
  std::string n = o.scheme.tag();
  if (o.sparsity > 0) n += sparsity_tag(o.sparsity);
  o.name = n;
  return o;
}

MixedSpec parse_mixed(const json& spec) {
  MixedSpec ms;
  if (!spec.contains("mixed")) return ms;
  const json& m = spec["mixed"];
  if (!m.is_object()) fail("sweep", "$.mixed: expected an object (options, bits, method)");
  for (const auto& [k, v] : m.items()) {
    static const std::set<std::string> known = {"options", "bits", "tpot_ms", "method", "gptq", "targets", "windows", "objective"};
    if (!known.count(k)) fail("sweep", "$.mixed." + k + ": unknown key (options, bits, tpot_ms, method, gptq, targets, windows, objective)");
  }
  if (!m.contains("options") || !m["options"].is_array() || m["options"].size() < 2) {
    fail("sweep", "$.mixed.options: expected at least two storage options, e.g. [{\"type\": \"int4\", \"group\": 32}, {\"type\": \"int8\"}]");
  }
  std::set<std::string> names;
  for (size_t i = 0; i < m["options"].size(); ++i) {
    ms.options.push_back(storage_option(m["options"][i], "$.mixed.options[" + std::to_string(i) + "]"));
    if (!names.insert(ms.options.back().name).second) fail("sweep", "$.mixed.options: '" + ms.options.back().name + "' is given twice");
  }
  if (!m.contains("bits") && !m.contains("tpot_ms")) fail("sweep", "$.mixed: give \"bits\" and/or \"tpot_ms\" budgets");
  if (m.contains("bits") && (!m["bits"].is_array() || m["bits"].empty())) {
    fail("sweep", "$.mixed.bits: expected a non-empty array of bits per weight (e.g. 5.0) or option names (that option's uniform size)");
  }
  if (m.contains("tpot_ms")) {
    if (!m["tpot_ms"].is_array() || m["tpot_ms"].empty()) fail("sweep", "$.mixed.tpot_ms: expected a non-empty array of milliseconds per token");
    for (const json& t : m["tpot_ms"]) {
      if (!t.is_number() || !(t.get<double>() > 0) || !std::isfinite(t.get<double>())) fail("sweep", "$.mixed.tpot_ms: " + t.dump() + " is not a positive number");
      ms.tpot_ms.push_back(t.get<double>());
    }
  }
  for (const json& b : m.value("bits", json::array())) {
    if (b.is_number() && b.get<double>() > 0 && std::isfinite(b.get<double>())) ms.budgets.push_back(b);
    else if (b.is_string() && names.count(b.get<std::string>())) ms.budgets.push_back(b);
    else fail("sweep", "$.mixed.bits: " + b.dump() + " is neither a positive number nor one of the options' names");
  }
  ms.method = m.value("method", std::string("rtn"));
  ms.objective = m.value("objective", std::string("kl"));
  if (ms.objective != "kl" && ms.objective != "nll") fail("sweep", "$.mixed.objective: expected kl or nll");
  if (ms.method == "awq") fail("sweep", "$.mixed.method: awq rescales the inputs every weight of a site shares, so it cannot quantize them in separate groups; use rtn or gptq");
  if (ms.method != "rtn" && ms.method != "gptq") fail("sweep", "$.mixed.method: expected rtn or gptq");
  if (m.contains("gptq")) {
    if (ms.method != "gptq") fail("sweep", "$.mixed.gptq: method is not gptq");
    ms.gptq = m["gptq"];
  } else if (ms.method == "gptq" && spec.contains("gptq")) {
    ms.gptq = spec["gptq"];  // the grid's GPTQ settings
  }
  if (m.contains("targets")) {
    if (!m["targets"].is_array() || m["targets"].empty()) fail("sweep", "$.mixed.targets: expected a non-empty array of weight-name globs");
    for (const json& t : m["targets"]) {
      if (!t.is_string()) fail("sweep", "$.mixed.targets: expected strings");
      ms.targets.push_back(t.get<std::string>());
    }
  }
  ms.windows.samples = 8;
  ms.windows.seq = sweep_calibration(spec).value("seq", 128);
  if (m.contains("windows")) {
    const json& w = m["windows"];
    if (!w.is_object()) fail("sweep", "$.mixed.windows: expected {\"samples\": N, \"seq\": T}");
    ms.windows.samples = w.value("samples", ms.windows.samples);
    ms.windows.seq = w.value("seq", ms.windows.seq);
  }
  if (ms.windows.samples < 1 || ms.windows.seq < 2) fail("sweep", "$.mixed.windows: samples >= 1 and seq >= 2");
  ms.windows.seed = 7;  // not the calibrated stages' windows (the recipe seed, 1234): the pass should not fit what GPTQ fits
  return ms;
}

namespace {

std::string bits_name(double b) {
  char s[32];
  std::snprintf(s, sizeof s, "%.2fb", b);
  return s;
}

// The quantize stage of a mixed variant, before its targets and overrides.
json quantize_stage(const MixedSpec& ms, const json& spec, const json& weights) {
  json q = {{"type", "quantize"}, {"weights", weights}, {"method", ms.method}};
  if (ms.method != "rtn") q["calibration"] = sweep_calibration(spec);
  if (!ms.gptq.is_null()) q["gptq"] = ms.gptq;
  return q;
}

// The stages that store each tensor in its chosen option: prunes first (one per
// sparsity), then one quantize stage over every quantized tensor, in the
// scheme most of them use, the others as per-tensor overrides.
json mixed_stages(const MixedSpec& ms, const json& spec, const Sensitivity& s, const std::vector<int>& choice) {
  std::map<double, std::vector<std::string>> prune;
  std::vector<std::string> quantized;
  std::map<size_t, int> uses;  // option index -> quantized tensors in it
  for (size_t r = 0; r < s.rows.size(); ++r) {
    const StorageOption& o = s.options[size_t(choice[r])];
    if (o.sparsity > 0) prune[o.sparsity].push_back(s.rows[r].tensor);
    if (!o.scheme.quantized()) continue;
    quantized.push_back(s.rows[r].tensor);
    ++uses[size_t(choice[r])];
  }
  json stages = json::array();
  for (const auto& [sp, names] : prune) {
    json p = {{"type", "prune"}, {"sparsity", sp}, {"targets", names}};
    if (ms.method == "rtn") p["method"] = "magnitude";
    else p["method"] = "sparsegpt", p["calibration"] = sweep_calibration(spec);
    stages.push_back(p);
  }
  if (quantized.empty()) return stages;
  size_t main = uses.begin()->first;
  for (const auto& [o, n] : uses) {
    if (n > uses[main]) main = o;
  }
  json q = quantize_stage(ms, spec, s.options[main].weights);
  q["targets"] = quantized;
  json over = json::object();
  for (size_t r = 0; r < s.rows.size(); ++r) {
    const StorageOption& o = s.options[size_t(choice[r])];
    if (o.scheme.quantized() && !(o.scheme == s.options[main].scheme)) over[s.rows[r].tensor] = o.weights;
  }
  if (!over.empty()) q["overrides"] = over;
  stages.push_back(q);
  return stages;
}

}  // namespace

StageSpec mixed_quantize_stage(const json& spec, const MixedSpec& ms) {
  auto q = std::find_if(ms.options.begin(), ms.options.end(), [](const StorageOption& o) { return o.scheme.quantized(); });
  if (q == ms.options.end()) fail("sweep", "$.mixed.options: no option quantizes, so there is no quantize stage");
  return parse_recipe(sweep_recipe(spec, "mixed", json::array({quantize_stage(ms, spec, q->weights)})), "").stages[0];
}

std::vector<MixedPoint> mixed_points(const json& spec, const MixedSpec& ms, const Sensitivity& s, double reference_tpot_ms,
                                     std::vector<std::string>* notes) {
  std::vector<compress::AllocationItem> by_size, by_time;
  double params = 0, reference_us = 0;
  for (const SensitivityRow& r : s.rows) {
    const std::vector<double>& loss = ms.objective == "kl" ? r.kl : r.dnll;
    by_size.push_back({r.bytes, loss});
    // in nanoseconds: the allocation's unit is at least 1 (a byte, a nanosecond)
    std::vector<double> ns;
    for (double us : r.us) ns.push_back(us * 1e3);
    by_time.push_back({ns, loss});
    params += double(r.rows) * double(r.cols);
    reference_us += r.reference_us;
  }
  const double fixed_us = reference_tpot_ms * 1e3 - reference_us;  // the step outside the targets' kernels
  auto predict_ms = [&](const std::vector<int>& c) {
    double us = fixed_us;
    for (size_t i = 0; i < c.size(); ++i) us += s.rows[i].us[size_t(c[i])];
    return us * 1e-3;
  };
  std::vector<MixedPoint> out;
  std::set<std::vector<int>> seen;
  // name(allocation) spells the variant's name after "mixed-"
  auto add = [&](const std::vector<compress::AllocationItem>& items, double budget, const std::string& what, const auto& name) {
    const auto a = budget >= 0 ? compress::allocate(items, budget) : std::nullopt;
    if (!a) {
      if (notes) notes->push_back("mixed at " + what + ": no allocation fits (below the smallest options)");
      return;
    }
    if (!seen.insert(a->choice).second) return;  // another budget allocated the same way
    MixedPoint p;
    p.choice = a->choice;
    p.predicted = a->loss;
    double bytes = 0;
    for (size_t i = 0; i < p.choice.size(); ++i) bytes += s.rows[i].bytes[size_t(p.choice[i])];
    p.bits = 8 * bytes / params;
    p.tpot_ms = predict_ms(p.choice);
    const std::string full = "mixed-" + name(*a) + "-" + ms.method + (ms.objective == "kl" ? "" : "-" + ms.objective);
    p.point = {full, sweep_recipe(spec, full, mixed_stages(ms, spec, s, a->choice))};
    parse_recipe(p.point.recipe, "");
    out.push_back(std::move(p));
  };
  for (const json& b : ms.budgets) {
    double budget = 0;
    if (b.is_number()) {
      budget = b.get<double>() * params / 8;
    } else {
      size_t o = 0;
      while (s.options[o].name != b.get<std::string>()) ++o;
      for (const SensitivityRow& r : s.rows) budget += r.bytes[o];
    }
    add(by_size, budget, b.dump() + " (" + bits_name(8 * budget / params) + " per weight)",
        [&](const compress::Allocation& a) { return bits_name(8 * a.size / params); });
  }
  for (double t : ms.tpot_ms) {
    if (!std::isfinite(fixed_us)) fail("sweep", "$.mixed.tpot_ms: the reference's TPOT is unknown (its bench did not run)");
    char name[48];
    std::snprintf(name, sizeof name, "t%.4gms", t);
    add(by_time, (t * 1e3 - fixed_us) * 1e3, std::string(name) + " per token", [&](const compress::Allocation&) { return std::string(name); });
  }
  return out;
}

}  // namespace condense::pipeline
