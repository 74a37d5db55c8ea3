#include "pipeline/sweep.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "core/json_text.h"
#include "io/atomic_writer.h"
#include "io/file_view.h"
#include "core/progress.h"
#include "io/model_loader.h"
#include "pipeline/mixed_precision.h"
#include "pipeline/recipe.h"
#include "pipeline/run_recipe.h"
#include "report/report_html.h"
#include "runtime/bench_run.h"

namespace condense::pipeline {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const json& need(const json& j, const char* key, const std::string& at) {
  if (!j.contains(key)) fail("sweep", at + "." + key + ": required");
  return j[key];
}

// A grid axis: the spec's array, else the one default value.
std::vector<json> axis(const json& grid, const char* key, json dflt) {
  if (!grid.contains(key)) return {std::move(dflt)};
  const json& a = grid[key];
  if (!a.is_array() || a.empty()) fail("sweep", std::string("$.grid.") + key + ": expected a non-empty array");
  return std::vector<json>(a.begin(), a.end());
}

// FNV-1a 64 over bytes: the cache key (not a security boundary).
uint64_t fnv(const std::string& s, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

uint64_t hash_path(const fs::path& p) {
  std::vector<fs::path> files;
  if (fs::is_directory(p)) {
    for (const auto& e : fs::recursive_directory_iterator(p)) {
      if (e.is_regular_file()) files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
  } else {
    files.push_back(p);
  }
  uint64_t h = 1469598103934665603ull;
  std::vector<char> buf(size_t(1) << 20);
  for (const fs::path& f : files) {
    h = fnv(fs::is_directory(p) ? fs::relative(f, p).string() : f.filename().string(), h);
    require_regular_file(f.string());
    std::ifstream in(f, std::ios::binary);
    if (!in) fail(f.string(), "cannot be read");
    while (in.read(buf.data(), std::streamsize(buf.size())) || in.gcount() > 0) h = fnv(std::string(buf.data(), size_t(in.gcount())), h);
  }
  return h;
}

std::string hex(uint64_t h) {
  char b[17];
  std::snprintf(b, sizeof b, "%016llx", (unsigned long long)h);
  return b;
}

// run_bench with progress (a bench of a large model takes minutes)
json bench_with_progress(const std::string& model, const BenchOptions& bo, bool log_json) {
  std::optional<Progress> prog;
  json j = run_bench(model, bo, [&](int done, int total, const std::string&) {
    if (!prog) prog.emplace("bench", total, log_json);
    prog->update(done);
  });
  if (prog) prog->finish();
  return j;
}

BenchOptions bench_options(const json& spec) {
  BenchOptions b;
  const json bj = spec.value("bench", json::object());
  b.prefill = {bj.value("prefill", 64)};
  b.batches = {1};
  b.contexts = {bj.value("context", 64)};
  b.decode_tokens = bj.value("decode_tokens", 32);
  b.reps = 1;
  b.probe_bytes = size_t(bj.value("probe_mb", 256)) << 20;
  return b;
}

}  // namespace

json sweep_calibration(const json& spec) { return spec.value("calibration", json{{"samples", 32}, {"seq", 128}}); }

std::string sparsity_tag(double sparsity) { return "-s" + std::to_string(int(std::lround(sparsity * 100))); }

json sweep_recipe(const json& spec, const std::string& name, json stages) {
  const std::string dir = need(need(spec, "output", "$"), "dir", "$.output").get<std::string>();
  json r = {{"name", name}, {"teacher", need(spec, "teacher", "$")}, {"student", {{"init", "from_teacher"}}}, {"stages", std::move(stages)},
            {"output", {{"dir", (fs::path(dir) / name).string()}}}};
  if (spec.contains("data")) r["data"] = spec["data"];
  if (spec.contains("eval")) r["eval"] = spec["eval"];
  return r;
}

std::vector<SweepPoint> expand_sweep(const json& spec, std::vector<std::string>* skipped) {
  if (!spec.is_object()) fail("sweep", "the spec must be a JSON object");
  need(spec, "teacher", "$");
  const json grid = spec.value("grid", json::object());
  for (const auto& [k, v] : grid.items()) {
    static const std::set<std::string> known = {"weights", "method", "sparsity", "kv", "activations"};
    if (!known.count(k)) fail("sweep", "$.grid." + k + ": unknown axis (weights, method, sparsity, kv, activations)");
  }
  const json out = need(spec, "output", "$");
  const std::string dir = need(out, "dir", "$.output").get<std::string>();
  const json calibration = sweep_calibration(spec);
  parse_mixed(spec);  // its errors before anything runs; its variants need the sensitivity pass
  std::vector<SweepPoint> pts;
  for (const json& w : axis(grid, "weights", json{{"type", "int8"}}))
    for (const json& m : axis(grid, "method", "rtn"))
      for (const json& s : axis(grid, "sparsity", 0.0))
        for (const json& kv : axis(grid, "kv", "none"))
          for (const json& act : axis(grid, "activations", "none")) {
            if (!w.is_object() || !w.contains("type")) fail("sweep", "$.grid.weights: each entry is a quantize stage's \"weights\" object");
            const std::string wt = w["type"].get<std::string>(), mt = m.get<std::string>(), kt = kv.get<std::string>(), at = act.get<std::string>();
            const double sp = s.get<double>();
            std::string name = parse_weights(w, "$.grid.weights").tag() + "-" + mt;
            if (sp > 0) name += sparsity_tag(sp);
            if (kt != "none") name += "-kv" + kt;
            if (at != "none") name += "-a" + (at == "int8" ? std::string("8") : at);
            if (wt == "fp8" && mt != "rtn") {
              if (skipped) skipped->push_back(name + ": " + mt + " applies to integer weights");
              continue;
            }
            if (wt == "fp8" && at == "int8") {
              if (skipped) skipped->push_back(name + ": int8 activations need int8/int4 weights");
              continue;
            }
            json stages = json::array();
            if (sp > 0) stages.push_back({{"type", "prune"}, {"sparsity", sp}, {"method", "sparsegpt"}, {"calibration", calibration}});
            json q = {{"type", "quantize"}, {"weights", w}, {"method", mt}};
            if (mt != "rtn") q["calibration"] = calibration;
            if (mt == "gptq" && spec.contains("gptq")) q["gptq"] = spec["gptq"];
            if (at != "none") q["activations"] = {{"type", at}};
            stages.push_back(q);
            if (kt != "none") stages.push_back({{"type", "calibrate_kv"}, {"dtype", kt}, {"calibration", calibration}});
            json r = sweep_recipe(spec, name, stages);
            parse_recipe(r, "");  // every point valid before any runs
            pts.push_back({name, r});
          }
  return pts;
}

namespace {

// The per-tensor sensitivity, measured or read from OUT/sensitivity.json when
// its key (the pass's settings, the data, the teacher's bytes) is unchanged.
Sensitivity sweep_sensitivity(const json& spec, const MixedSpec& ms, const Recipe& any, const fs::path& dir, uint64_t teacher_hash,
                              bool log_json, SweepResult& res) {
  const fs::path sp = dir / "sensitivity.json", kp = dir / "sensitivity.key";
  json key_src = {{"options", spec["mixed"]["options"]}, {"targets", ms.targets}, {"windows", {ms.windows.samples, ms.windows.seq}},
                  {"data", spec.value("data", json())}, {"method", ms.method}, {"gptq", ms.gptq}};
  if (ms.method != "rtn") key_src["calibration"] = sweep_calibration(spec);
  const std::string key = hex(fnv(key_src.dump(), teacher_hash)) + "\n";
  if (fs::exists(sp) && fs::exists(kp) && read_text_file(kp.string()) == key) {
    try {
      Sensitivity cached = sensitivity_from_json(parse_json(read_text_file(sp.string()), sp.string()), ms.options);
      res.cached.push_back("sensitivity");
      return cached;
    } catch (const Error&) {  // a table an older condense wrote: measured again
    } catch (const json::exception&) {
    }
  }
  fs::remove(kp);
  LoadedModel t = load_model(any.teacher->model, any.teacher->tokenizer);
  const Tokenizer& tok = require_tokenizer(t);
  const compress::CalibrationSet windows = recipe_calibration_windows(any, t.model, tok, ms.windows);
  SensitivityMethod how;
  how.method = ms.method;
  std::optional<compress::CalibrationSet> cal;
  if (ms.method == "gptq") {  // GPTQ as the variants' quantize stage runs it
    const StageSpec st = mixed_quantize_stage(spec, ms);
    how.gptq = st.quantize.gptq;
    cal = recipe_calibration_windows(any, t.model, tok, st.calibration);
    how.calibration = &*cal;
  }
  std::fprintf(stderr, "sweep: sensitivity of each weight to %zu options (%s) on %d x %d tokens\n", ms.options.size(), ms.method.c_str(),
               windows.n_seq, windows.seq);
  std::optional<Progress> prog;
  const Sensitivity sens = measure_sensitivity(t.model, ms.options, ms.targets, windows, how, [&](int done, int total) {
    if (!prog) prog.emplace("sensitivity", total, log_json);
    prog->update(done);
  });
  if (prog) prog->finish();
  write_file_atomically(sp.string(), sens.to_json().dump(1) + "\n");
  write_file_atomically(kp.string(), key);
  res.ran.push_back("sensitivity");
  return sens;
}

// The mixed variants of the spec's budgets; OUT/mixed.json lists each allocation.
std::vector<SweepPoint> mixed_variants(const json& spec, const MixedSpec& ms, const Sensitivity& sens, double reference_tpot_ms,
                                       const fs::path& dir) {
  std::vector<std::string> notes;
  std::vector<SweepPoint> out;
  json alloc = json::array();
  for (const MixedPoint& m : mixed_points(spec, ms, sens, reference_tpot_ms, &notes)) {
    json per = json::object();
    for (size_t i = 0; i < m.choice.size(); ++i) per[sens.rows[i].tensor] = sens.options[size_t(m.choice[i])].name;
    alloc.push_back({{"name", m.point.name}, {"bits_per_target_weight", m.bits}, {"predicted_tpot_ms", m.tpot_ms}, {"objective", ms.objective}, {"predicted_sum", m.predicted}, {"formats", per}});
    out.push_back(m.point);
  }
  for (const std::string& n : notes) std::fprintf(stderr, "sweep: %s\n", n.c_str());
  write_file_atomically((dir / "mixed.json").string(), json{{"allocations", alloc}, {"notes", notes}}.dump(1) + "\n");
  return out;
}

}  // namespace

SweepResult run_sweep(const json& spec, const SweepOptions& opt) {
  std::vector<std::string> skipped;
  const std::vector<SweepPoint> pts = expand_sweep(spec, &skipped);
  for (const std::string& s : skipped) std::fprintf(stderr, "sweep: skipped %s\n", s.c_str());
  const fs::path dir = spec["output"]["dir"].get<std::string>();
  fs::create_directories(dir);
  SweepResult res;
  if (pts.empty()) fail("sweep", "the grid has no valid point");
  const std::string teacher = parse_recipe(pts[0].recipe, "").teacher->model;
  const BenchOptions bo = bench_options(spec);
  const std::string bench_key = spec.value("bench", json::object()).dump();
  std::fprintf(stderr, "sweep: %zu variants of %s\n", pts.size(), teacher.c_str());
  const uint64_t th = hash_path(teacher);
  auto cached = [&](const fs::path& d, const std::string& key) {
    return fs::exists(d / "bench.json") && fs::exists(d / "sweep.key") && read_text_file((d / "sweep.key").string()) == key;
  };
  std::vector<std::string> runs;
  {  // the reference: the teacher's speed
    const fs::path d = dir / "reference";
    const std::string key = hex(fnv(bench_key, th)) + "\n";
    fs::create_directories(d);
    if (cached(d, key)) {
      res.cached.push_back("reference");
    } else {
      std::fprintf(stderr, "sweep: bench the teacher\n");
      write_file_atomically((d / "bench.json").string(), bench_with_progress(teacher, bo, opt.log_json).dump(1) + "\n");
      write_file_atomically((d / "sweep.key").string(), key);
      res.ran.push_back("reference");
    }
    runs.push_back((d / "bench.json").string());
  }
  std::vector<SweepPoint> all = pts;
  const MixedSpec ms = parse_mixed(spec);
  if (!ms.options.empty()) {
    // a latency budget reads the reference's TPOT (benched above)
    const double ref_tpot = report::load_variants({runs.back()})[0].tpot_p50_ms;
    const Sensitivity sens = sweep_sensitivity(spec, ms, parse_recipe(pts[0].recipe, ""), dir, th, opt.log_json, res);
    for (SweepPoint& p : mixed_variants(spec, ms, sens, ref_tpot, dir)) {
      all.push_back(std::move(p));
    }
  }
  for (const SweepPoint& p : all) {
    const fs::path d = dir / p.name;
    const std::string key = hex(fnv(p.recipe.dump() + bench_key, th)) + "\n";
    if (cached(d, key) && fs::exists(d / "results.json")) {
      res.cached.push_back(p.name);
    } else {
      std::fprintf(stderr, "sweep: %s\n", p.name.c_str());
      fs::remove(d / "sweep.key");
      const json r = run_recipe(parse_recipe(p.recipe, ""), {false, opt.log_json});
      write_file_atomically((d / "bench.json").string(), bench_with_progress(r["output_model"].get<std::string>(), bo, opt.log_json).dump(1) + "\n");
      write_file_atomically((d / "sweep.key").string(), key);  // last: a run cut short is redone
      res.ran.push_back(p.name);
    }
    runs.push_back(d.string());
  }
  res.variants = report::load_variants(runs);
  res.report = (dir / "report.html").string();
  write_file_atomically(res.report, report::render_html(res.variants, spec.value("name", std::string("condense sweep"))));
  write_file_atomically((dir / "report.json").string(), report::to_json(res.variants).dump(1) + "\n");
  write_file_atomically((dir / "report.csv").string(), report::to_csv(res.variants));
  return res;
}

std::optional<report::Variant> best_within(const std::vector<report::Variant>& v, const std::string& budget) {
  const size_t at = budget.find("<=");
  if (at == std::string::npos) fail("--budget", "'" + budget + "': expected size<=BYTES or tpot_p99<=MS");
  const std::string what = budget.substr(0, at), val = budget.substr(at + 2);
  char* end = nullptr;
  double limit = std::strtod(val.c_str(), &end);
  if (end == val.c_str()) fail("--budget", "'" + val + "' is not a number");
  const std::string unit(end);
  if (what == "size") {
    if (unit == "K") limit *= 1e3;
    else if (unit == "M") limit *= 1e6;
    else if (unit == "G") limit *= 1e9;
    else if (!unit.empty()) fail("--budget", "size unit '" + unit + "': use K, M or G (powers of 1000) or none (bytes)");
  } else if (what != "tpot_p99" || !unit.empty()) {
    fail("--budget", "'" + budget + "': expected size<=BYTES[K|M|G] or tpot_p99<=MS");
  }
  std::optional<report::Variant> best;
  for (const report::Variant& x : v) {
    if (x.reference || !std::isfinite(x.delta_ppl_pct)) continue;
    const double have = what == "size" ? x.weight_bytes : x.tpot_p99_ms;
    if (!(have <= limit)) continue;
    if (!best || x.delta_ppl_pct < best->delta_ppl_pct) best = x;
  }
  return best;
}

}  // namespace condense::pipeline
