#include "report/variants.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include "core/error.h"
#include "core/json_text.h"

namespace condense::report {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

[[noreturn]] void bad(const std::string& file, const std::string& what) { fail(file, what); }

json read_json(const std::string& file) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) bad(file, "is not a regular file");
  std::ifstream f(file, std::ios::binary);
  if (!f) bad(file, "cannot be read");
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return parse_json(text, file);
}

double num(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : kNone;
}

std::string str(const json& j, const char* key);

// A bench's "machine" object in words: "AMD EPYC, avx512, 2 threads".
std::string machine_text(const json& mc) { return str(mc, "cpu") + ", " + str(mc, "isa") + ", " + std::to_string(mc.value("threads", 0)) + " threads"; }

std::string str(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

// Paths in results.json / bench JSON are as the run saw them: made absolute
// against the folder the run was started from is unknowable, so relative
// paths are taken against the working directory, as the runs take them.
std::string key_of(const std::string& model) {
  std::error_code ec;
  const fs::path p = fs::weakly_canonical(fs::absolute(model), ec);
  return ec ? model : p.string();
}

struct Joiner {
  std::map<std::string, Variant> by_model;
  std::vector<std::string> order;          // first appearance
  std::vector<std::string> teachers;       // recipes' teacher model keys
  std::map<std::string, double> teacher_ppl;  // their perplexity, as the recipes' evaluations measured it

  Variant& at(const std::string& model) {
    const std::string k = key_of(model);
    auto [it, fresh] = by_model.try_emplace(k);
    if (fresh) {
      it->second.model = k;
      it->second.name = fs::path(model).filename().string();
      order.push_back(k);
    }
    return it->second;
  }

  void results(const json& j, const std::string& file) {
    const std::string model = str(j, "output_model");
    if (model.empty()) bad(file, "a results.json without \"output_model\"");
    Variant& v = at(model);
    v.sources.push_back(file);
    v.name = str(j, "recipe").empty() ? v.name : str(j, "recipe");
    if (j.contains("recipe_source")) v.recipe = j["recipe_source"];
    // The teacher: as the run resolved it, else as the recipe names it.
    std::string tm = str(j, "teacher_model");
    if (tm.empty() && v.recipe.is_object()) {
      const json& t = v.recipe.value("teacher", json::object());
      if (t.is_object() && t.contains("model") && t["model"].is_string()) tm = t["model"].get<std::string>();
    }
    if (!tm.empty()) {
      teachers.push_back(key_of(tm));
      if (j.contains("eval")) {
        const double tp = num(j["eval"], "teacher_ppl");
        if (tp == tp) teacher_ppl.emplace(teachers.back(), tp);
      }
    }
    if (j.contains("student")) v.params = num(j["student"], "params");
    if (v.revision.empty() && j.contains("condense")) v.revision = str(j["condense"], "revision");
    v.stages = json::array();
    for (const json& s : j.value("stages", json::array())) {
      json h = {{"stage", s.value("name", "")}, {"type", s.value("type", "")}};
      if (s.contains("summary")) h["summary"] = s["summary"];
      // a quantize stage with per-tensor schemes (docs/RECIPES.md "overrides")
      if (s.contains("summary") && s["summary"].is_object() && s["summary"].contains("overrides")) v.mixed = true;
      v.stages.push_back(h);
    }
    if (j.contains("machine")) {
      const json& m = j["machine"];
      if (v.machine.empty()) v.machine = str(m, "cpu") + ", " + str(m, "isa") + ", " + std::to_string(m.value("threads", 0)) + " threads";
    }
    if (j.contains("eval")) {
      const json& e = j["eval"];
      v.ppl = num(e, "student_ppl");
      if (e.contains("vs_teacher")) {
        const json& t = e["vs_teacher"];
        v.delta_ppl_pct = num(t, "delta_ppl_pct");
        v.kl_mean = num(t, "kl_mean");
        v.kl_p99 = num(t, "kl_p99");
        v.top1 = num(t, "top1_agreement");
      }
    }
  }

  void bench(const json& j, const std::string& file) {
    const json& m = j.value("model", json::object());
    const std::string model = str(m, "path");
    if (model.empty()) bad(file, "a condense-bench/1 file without \"model.path\"");
    Variant& v = at(model);
    v.sources.push_back(file);
    v.weight_bytes = num(m, "weight_bytes");
    if (v.params != v.params) v.params = num(m, "params");
    v.linears = str(m, "linears");
    v.date = str(j, "date");
    if (j.contains("condense")) v.revision = str(j["condense"], "revision");
    v.machine = machine_text(j.value("machine", json::object()));
    for (const json& d : j.value("decode", json::array())) {
      if (d.value("batch", 0) != 1 || !d.contains("tok_s")) continue;
      v.tpot_p50_ms = num(d, "step_ms_p50");
      v.tpot_p99_ms = num(d, "step_ms_p99");
      v.decode_tok_s = num(d, "tok_s");
      v.context = d.value("context", 0);
      break;  // the first context measured
    }
    if (j.contains("speculative") && j["speculative"].is_object()) {
      const json& sp = j["speculative"];
      for (const auto& [key, mode] : {std::pair<const char*, const char*>{"greedy", "greedy"}, {"sampled_t1", "T = 1"}}) {
        if (!sp.contains(key) || !sp[key].is_object()) continue;
        const json& x = sp[key];
        SpecPoint p;
        p.mode = mode;
        p.draft = str(sp, "draft");
        p.draft_layers = sp.value("draft_layers", 0);
        p.tok_s = num(x, "tok_s");
        p.plain_tok_s = num(x, "plain_tok_s");
        p.speedup = num(x, "speedup");
        p.acceptance_rate = num(x, "spec_decode_acceptance_rate");
        p.acceptance_length = num(x, "spec_decode_acceptance_length");
        p.draft_time_share = num(x, "draft_time_share");
        v.speculative.push_back(p);
      }
    }
  }

  // `condense bench --server/--model` (kind "load"): the runs join the model
  // by model.path (in-process, or --bound-model), else by the served id.
  void load_bench(const json& j, const std::string& file) {
    std::string model = str(j.value("model", json::object()), "path");
    const json& t = j.value("target", json::object());
    if (model.empty()) model = str(t, "model");
    if (model.empty()) bad(file, "a load benchmark without \"model.path\" or \"target.model\"");
    Variant& v = at(model);
    v.sources.push_back(file);
    v.load_target = str(t, "kind") == "server" ? "server " + str(t, "url") : "in-process";
    if (v.machine.empty() && j.contains("machine")) v.machine = machine_text(j["machine"]);
    if (!j.contains("runs") || !j["runs"].is_array()) bad(file, "a load benchmark without \"runs\"");
    for (const json& r : j["runs"]) {
      LoadPoint p;
      if (r.contains("max_concurrency") && r["max_concurrency"].is_number()) p.concurrency = r["max_concurrency"].get<double>();
      if (r.contains("request_rate") && r["request_rate"].is_number()) p.rate = r["request_rate"].get<double>();
      p.label = p.concurrency == p.concurrency ? "concurrency " + std::to_string(int(p.concurrency))
                : p.rate == p.rate              ? "rate " + json(p.rate).dump() + "/s"
                                                : "all at once";
      p.output_tok_s = num(r, "output_throughput");
      p.request_goodput = num(r, "request_goodput");
      p.ttft_p50_ms = num(r, "p50_ttft_ms");
      p.ttft_p99_ms = num(r, "p99_ttft_ms");
      p.tpot_p50_ms = num(r, "p50_tpot_ms");
      p.tpot_p99_ms = num(r, "p99_tpot_ms");
      p.itl_p99_ms = num(r, "p99_itl_ms");
      p.e2el_p99_ms = num(r, "p99_e2el_ms");
      p.completed = r.value("completed", 0);
      p.failed = r.value("failed", 0);
      v.load.push_back(p);
    }
  }

  void file(const std::string& path) {
    const json j = read_json(path);
    if (!j.is_object()) bad(path, "is not a JSON object");
    if (j.value("schema", "") == "condense-bench/1" && j.value("kind", "") == "load") return load_bench(j, path);
    if (j.value("schema", "") == "condense-bench/1") return bench(j, path);
    if (j.contains("output_model")) return results(j, path);
    bad(path, "is neither a recipe's results.json nor condense-bench/1 JSON (`condense bench --json`)");
  }
};

}  // namespace

std::vector<Variant> load_variants(const std::vector<std::string>& paths) {
  Joiner J;
  for (const std::string& p : paths) {
    if (fs::is_directory(p)) {
      if (!fs::exists(fs::path(p) / "results.json")) bad(p, "a folder without results.json (a recipe's output folder is expected)");
      J.file((fs::path(p) / "results.json").string());
      std::vector<std::string> extra;  // bench*.json beside it, in name order
      for (const auto& e : fs::directory_iterator(p)) {
        const std::string n = e.path().filename().string();
        if (n.rfind("bench", 0) == 0 && e.path().extension() == ".json") extra.push_back(e.path().string());
      }
      std::sort(extra.begin(), extra.end());
      for (const std::string& x : extra) J.file(x);
    } else {
      J.file(p);
    }
  }
  std::vector<Variant> out;
  for (const std::string& k : J.order) {
    Variant v = J.by_model.at(k);
    if (std::find(J.teachers.begin(), J.teachers.end(), k) != J.teachers.end()) {
      v.reference = true;
      v.delta_ppl_pct = v.kl_mean = v.kl_p99 = 0;
      v.top1 = 1;
      if (v.ppl != v.ppl && J.teacher_ppl.count(k)) v.ppl = J.teacher_ppl.at(k);
      if (v.name == fs::path(k).filename().string()) {  // no recipe named it: the last two path parts say more than "model"
        const fs::path p(k);
        v.name = "reference (" + (p.parent_path().filename() / p.filename()).string() + ")";
      }
    }
    if (v.weight_bytes == v.weight_bytes && v.params == v.params && v.params > 0) v.bits_per_weight = 8 * v.weight_bytes / v.params;
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace condense::report
