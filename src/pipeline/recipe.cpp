#include "pipeline/recipe.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <sstream>

#include "core/error.h"
#include "io/file_view.h"
#include "core/json_text.h"
#include "model/shapes.h"

namespace condense::pipeline {

using nlohmann::json;
namespace fs = std::filesystem;

json load_recipe_json(const std::string& path) {
  return parse_json(read_text_file(path), path);
}

void apply_set(json& j, const std::string& a) {
  const size_t eq = a.find('=');
  if (eq == std::string::npos || eq == 0) fail("--set " + a, "expected key=value, e.g. stages[0].steps=100");
  const std::string key = a.substr(0, eq), value = a.substr(eq + 1);
  json* node = &j;
  size_t i = 0;
  // Each part nests one level: a key of thousands of parts would build a value
  // so deep that copying it overflows the stack. Recipes nest a few levels.
  constexpr int kMaxSetDepth = 32;
  int depth = 0;
  while (i < key.size()) {
    if (key[i] == '.') { ++i; continue; }
    if (++depth > kMaxSetDepth) {
      fail("--set " + a.substr(0, 80) + (a.size() > 80 ? "..." : ""),
           "the key has more than " + std::to_string(kMaxSetDepth) + " parts; no recipe value nests that deep");
    }
    if (key[i] == '[') {
      const size_t close = key.find(']', i);
      if (close == std::string::npos) fail("--set " + a, "unclosed '[' in the key");
      const std::string digits = key.substr(i + 1, close - i - 1);
      if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) {
        fail("--set " + a, "'[" + digits + "]' is not an index (a number in brackets, e.g. stages[0])");
      }
      const size_t idx = std::stoul(digits);
      if (!node->is_array() || idx >= node->size()) fail("--set " + a, "index " + std::to_string(idx) + " is not in the recipe");
      node = &(*node)[idx];
      i = close + 1;
      continue;
    }
    const size_t end = key.find_first_of(".[", i);
    const std::string part = key.substr(i, end == std::string::npos ? std::string::npos : end - i);
    if (!node->is_object() && !node->is_null()) fail("--set " + a, "'" + part + "' is set inside a value that is not an object");
    node = &(*node)[part];
    i = end == std::string::npos ? key.size() : end;
  }
  const json parsed = try_parse_json(value);
  if (parsed.is_discarded()) *node = value;
  else *node = parsed;
}

namespace {

// A JSON object at a path: typed getters that fail with the path and the
// allowed values, and a check that no unknown key was given.
class Obj {
 public:
  Obj(const json& j, std::string path) : j_(j), path_(std::move(path)) {
    if (!j.is_object()) fail("recipe", path_ + ": expected an object, got " + std::string(j.type_name()));
  }
  const std::string& path() const { return path_; }
  bool has(const std::string& k) const { return j_.contains(k); }
  std::string at(const std::string& k) const { return path_ + "." + k; }
  const json& raw(const std::string& k) const {
    seen_.insert(k);
    return j_.at(k);
  }
  [[noreturn]] void bad(const std::string& k, const std::string& want) const {
    fail("recipe", at(k) + ": expected " + want + (has(k) ? ", got " + json_snippet(j_.at(k), 200) : " (missing)"));
  }
  std::string str(const std::string& k, const std::string& def, const std::vector<std::string>& allowed = {}) const {
    if (!has(k)) return def;
    const json& v = raw(k);
    std::string list;
    for (const auto& s : allowed) list += (list.empty() ? "" : ", ") + s;
    if (!v.is_string()) bad(k, allowed.empty() ? "a string" : "one of " + list);
    const std::string s = v.get<std::string>();
    if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), s) == allowed.end()) bad(k, "one of " + list);
    return s;
  }
  std::string req_str(const std::string& k) const {
    if (!has(k)) bad(k, "a string");
    return str(k, "");
  }
  double num(const std::string& k, double def, double lo, double hi) const {
    if (!has(k)) return def;
    const json& v = raw(k);
    if (!v.is_number() || !(v.get<double>() >= lo && v.get<double>() <= hi)) {  // NaN fails both comparisons: refused
      bad(k, "a number in [" + fmt(lo) + ", " + fmt(hi) + "]");
    }
    return v.get<double>();
  }
  int64_t integer(const std::string& k, int64_t def, int64_t lo, int64_t hi) const {
    if (!has(k)) return def;
    const json& v = raw(k);
    // 2^64 - 1 reads as -1 through get<int64_t>(): unsigned values are compared as such.
    const bool in_range = v.is_number_unsigned() ? hi >= 0 && v.get<uint64_t>() <= uint64_t(hi) && int64_t(v.get<uint64_t>()) >= lo
                                                 : v.is_number_integer() && v.get<int64_t>() >= lo && v.get<int64_t>() <= hi;
    if (!in_range) bad(k, "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return v.get<int64_t>();
  }
  bool boolean(const std::string& k, bool def) const {
    if (!has(k)) return def;
    if (!raw(k).is_boolean()) bad(k, "true or false");
    return raw(k).get<bool>();
  }
  void done() const {
    for (auto it = j_.begin(); it != j_.end(); ++it) {
      if (!seen_.count(it.key())) {
        std::string list;
        for (const auto& s : seen_) list += (list.empty() ? "" : ", ") + s;
        fail("recipe", at(it.key()) + ": unknown key" + (list.empty() ? "" : " (this object uses: " + list + ")"));
      }
    }
  }

 private:
  static std::string fmt(double v) {
    std::ostringstream o;
    o << v;
    return o.str();
  }
  const json& j_;
  std::string path_;
  mutable std::set<std::string> seen_;
};

// "$CONDENSE_DATA_DIR/..." : the environment's CONDENSE_DATA_DIR, else the
// shared data folder beside the source tree this binary was built from, so the
// recipes in recipes/ run from any directory without --set.
std::string expand_data_dir(const std::string& p) {
  static const std::string var = "$CONDENSE_DATA_DIR";
  if (p.rfind(var, 0) != 0 || (p.size() > var.size() && p[var.size()] != '/')) return p;
  const char* env = std::getenv("CONDENSE_DATA_DIR");
  return std::string(env && *env ? env : CONDENSE_DEFAULT_DATA_DIR) + p.substr(var.size());
}

std::string resolve(const std::string& q, const std::string& base) {
  const std::string p = expand_data_dir(q);
  if (p.empty() || fs::path(p).is_absolute() || base.empty()) return p;
  return (fs::path(base) / p).lexically_normal().string();
}

ModelSource model_source(const Obj& o, const std::string& base) {
  ModelSource m{resolve(o.req_str("model"), base), resolve(o.str("tokenizer", ""), base)};
  o.done();
  return m;
}

void parse_calibration(const Obj& o, StageSpec& s, uint64_t seed);

// "targets": weight-name globs of a prune or quantize stage (empty: the default set).
std::vector<std::string> targets(const Obj& o) {
  std::vector<std::string> out;
  if (!o.has("targets")) return out;
  const json& t = o.raw("targets");
  if (!t.is_array() || t.empty() || !std::all_of(t.begin(), t.end(), [](const json& x) { return x.is_string(); })) {
    o.bad("targets", "a non-empty array of weight-name patterns (e.g. \"model.layers.*.mlp.*\")");
  }
  for (const auto& x : t) out.push_back(x.get<std::string>());
  return out;
}

QuantScheme parse_scheme(const Obj& w) {
  QuantScheme q;
  const std::string t = w.str("type", "", {"int8", "int4", "fp8"});
  if (t.empty()) w.bad("type", "one of int8, int4, fp8");
  q.type = quant_type_from_name(t);
  q.symmetric = w.boolean("symmetric", true);
  if (q.type == DType::F8E4M3 && !q.symmetric) w.bad("symmetric", "true (fp8 has no zero point)");
  q.group = int(w.integer("group", 0, 1, 1 << 20));
  if (q.group & (q.group - 1)) w.bad("group", "a power of two (32, 64 and 128 are usual): the .cpk format stores power-of-two groups");
  const std::string g = w.str("granularity", q.group ? "group" : (q.type == DType::I4 ? "" : "channel"), {"tensor", "channel", "group"});
  if (g.empty()) w.bad("group", "a group size (int4 is group-wise: 32, 64 or 128 are usual)");
  if (g == "group" && !q.group) w.bad("group", "a group size for granularity \"group\"");
  if (g != "group" && q.group) w.bad("granularity", "\"group\" (a group size was given)");
  q.granularity = g == "tensor" ? Granularity::PerTensor : (g == "channel" ? Granularity::PerChannel : Granularity::Group);
  w.done();
  return q;
}

void parse_quantize(const Obj& o, StageSpec& s, uint64_t seed) {
  compress::QuantizeOptions& q = s.quantize;
  if (!o.has("weights")) o.bad("weights", "an object like {\"type\": \"int4\", \"group\": 32}");
  q.scheme = parse_scheme(Obj(o.raw("weights"), o.at("weights")));
  q.method = o.str("method", "rtn", {"rtn", "gptq", "awq"});
  q.targets = targets(o);
  if (o.has("overrides")) {
    const json& ov = o.raw("overrides");
    if (!ov.is_object() || ov.empty()) o.bad("overrides", "an object of weight name -> weights object (per-tensor schemes)");
    for (const auto& [name, w] : ov.items()) q.schemes[name] = parse_scheme(Obj(w, o.at("overrides") + "." + name));
    if (q.method == "awq") o.bad("overrides", "nothing (AWQ needs one scheme per stage)");
  }
  if (o.has("gptq")) {
    if (q.method != "gptq") o.bad("gptq", "nothing (method is not gptq)");
    Obj g(o.raw("gptq"), o.at("gptq"));
    q.gptq.damp = g.num("damp", 0.01, 0, 10);
    q.gptq.block = int(g.integer("block", 128, 1, 1 << 16));
    q.gptq.act_order = g.boolean("act_order", false);
    q.gptq.true_sequential = g.boolean("true_sequential", true);
    g.done();
  }
  if (o.has("awq")) {
    if (q.method != "awq") o.bad("awq", "nothing (method is not awq)");
    Obj a(o.raw("awq"), o.at("awq"));
    q.awq.grid = int(a.integer("grid", 20, 1, 1000));
    q.awq.clip = a.boolean("clip", true);
    q.awq.clip_grid = int(a.integer("clip_grid", 20, 1, 1000));
    q.awq.max_shrink = a.num("max_shrink", 0.5, 0, 0.99);
    a.done();
  }
  if (o.has("activations")) {
    Obj a(o.raw("activations"), o.at("activations"));
    const std::string t = a.str("type", "", {"int8", "fp8"});
    if (t.empty()) a.bad("type", "int8 (dynamic per-token scales) or fp8 (static per-tensor scales from calibration)");
    q.activations.type = t == "int8" ? DType::I8 : DType::F8E4M3;
    q.activations.smooth = a.boolean("smoothquant", false);
    q.activations.alpha = a.num("alpha", 0.5, 0, 1);
    if (a.has("alpha") && !q.activations.smooth) a.bad("alpha", "nothing (smoothquant is off)");
    q.activations.head = a.boolean("head", false);
    if (q.activations.head && q.activations.type != DType::I8) {
      a.bad("head", "false for fp8 (a static head scale is not calibrated; only int8's dynamic per-token scales quantize the head's input)");
    }
    a.done();
  }
  if (o.has("calibration") && !q.needs_calibration()) o.bad("calibration", "nothing (rtn needs no calibration)");
  parse_calibration(o, s, seed);
}

void parse_calibration(const Obj& o, StageSpec& s, uint64_t seed) {
  if (o.has("calibration")) {
    Obj c(o.raw("calibration"), o.at("calibration"));
    s.calibration.samples = int(c.integer("samples", 128, 1, 1 << 20));
    s.calibration.seq = int(c.integer("seq", 256, 2, 1 << 20));
    s.calibration.chunk = int(c.integer("chunk", 8, 1, 1 << 20));
    s.calibration.seed = uint64_t(c.integer("seed", int64_t(seed), 0, INT64_MAX));
    c.done();
  } else {
    s.calibration.seed = seed;
  }
}

// The fields of a training run (a train or distill stage, or a gradual prune's "train").
void parse_training(const Obj& o, StageSpec& s, const std::string& kind, uint64_t seed) {
  train::TrainOptions& t = s.train;
  t.steps = o.integer("steps", 100, 1, int64_t(1) << 40);
  t.batch = int(o.integer("batch", 8, 1, 1 << 16));
  t.seq = int(o.integer("seq", 256, 2, 1 << 20));
  t.accum = int(o.integer("grad_accum", 1, 1, 1 << 16));
  t.schedule.kind = o.str("schedule", "cosine", {"cosine", "linear", "constant"});
  t.schedule.lr = o.num("lr", 1e-3, 0, 10);
  t.schedule.min_lr = o.num("min_lr", t.schedule.lr * 0.1, 0, 10);
  t.schedule.warmup = o.integer("warmup", 0, 0, t.steps);
  t.schedule.total_steps = t.steps;
  t.adam.weight_decay = o.num("weight_decay", 0.0, 0, 10);
  t.adam.beta1 = o.num("beta1", 0.9, 0, 0.999999);
  t.adam.beta2 = o.num("beta2", 0.95, 0, 0.999999);
  t.adam.eps = o.num("eps", 1e-8, 0, 1);
  t.decay_all = o.boolean("decay_norms_and_embeddings", false);
  t.clip = o.num("clip", 1.0, 0, 1e9);
  t.seed = uint64_t(o.integer("seed", int64_t(seed), 0, INT64_MAX));
  t.eval_every = o.integer("eval_every", 0, 0, int64_t(1) << 40);
  t.val_windows = int(o.integer("val_windows", 16, 0, 1 << 20));
  t.save_every = o.integer("save_every", 0, 0, int64_t(1) << 40);
  s.objective.loss_chunk = o.integer("loss_chunk", 512, 1, 1 << 20);
  t.bf16 = o.str("precision", "f32", {"f32", "bf16"}) == "bf16";
  if (kind == "distill") {
    const double alpha = o.num("alpha", 0.5, 0, 1);
    s.objective.token = {float(1 - alpha), float(alpha), float(o.num("temperature", 1.0, 1e-3, 1e3))};
    if (o.has("hidden")) {
      Obj h(o.raw("hidden"), o.at("hidden"));
      s.objective.hidden_beta = float(h.num("beta", 1.0, 0, 1e6));
      s.objective.hidden_projection = h.boolean("projection", false);
      if (!h.has("pairs") || !h.raw("pairs").is_array()) h.bad("pairs", "an array of [student_layer, teacher_layer] pairs");
      const json& pairs = h.raw("pairs");
      for (size_t i = 0; i < pairs.size(); ++i) {
        const json& p = pairs[i];
        if (!p.is_array() || p.size() != 2 || !p[0].is_number_integer() || !p[1].is_number_integer()) {
          fail("recipe", h.at("pairs") + "[" + std::to_string(i) + "]: expected [student_layer, teacher_layer], got " + json_snippet(p));
        }
        s.objective.hidden.push_back({p[0].get<int>(), p[1].get<int>()});
      }
      h.done();
    }
  }
}

void parse_prune(const Obj& o, StageSpec& s, uint64_t seed) {
  compress::PruneOptions& p = s.prune;
  p.method = o.str("method", "magnitude", {"magnitude", "wanda", "sparsegpt"});
  p.scope = o.str("scope", "tensor", {"tensor", "global"});
  if (o.has("pattern")) {
    const std::string pat = o.str("pattern", "");
    int n = 0, m = 0;
    char tail = 0;
    if (std::sscanf(pat.c_str(), "%d:%d%c", &n, &m, &tail) != 2 || n < 1 || m < 2 || n >= m) {
      o.bad("pattern", "\"N:M\" with 1 <= N < M, keeping N of every M weights (e.g. \"2:4\")");
    }
    p.nm = {n, m};
    if (o.has("sparsity")) o.bad("sparsity", "nothing (the pattern " + pat + " fixes it)");
  }
  p.sparsity = p.nm.active() ? p.nm.sparsity() : o.num("sparsity", 0.5, 0, 0.99);
  p.targets = targets(o);
  if (o.has("sparsegpt")) {
    if (p.method != "sparsegpt") o.bad("sparsegpt", "nothing (method is not sparsegpt)");
    Obj g(o.raw("sparsegpt"), o.at("sparsegpt"));
    p.sparsegpt.damp = g.num("damp", 0.01, 0, 10);
    p.sparsegpt.block = int(g.integer("block", 128, 1, 1 << 16));
    g.done();
  }
  if (o.has("calibration") && !p.needs_calibration()) o.bad("calibration", "nothing (magnitude pruning needs no calibration)");
  parse_calibration(o, s, seed);
  if (o.has("gradual")) {
    if (p.method != "magnitude") o.bad("gradual", "nothing (gradual pruning is by magnitude; method is " + p.method + ")");
    if (p.nm.active()) o.bad("gradual", "nothing (an N:M pattern is one-shot)");
    Obj g(o.raw("gradual"), o.at("gradual"));
    if (!g.has("train")) g.bad("train", "the training run to prune during: {\"type\": \"distill\" or \"train\", \"steps\": ...}");
    Obj t(g.raw("train"), g.at("train"));
    s.gradual_with = t.str("type", "", {"train", "distill"});
    if (s.gradual_with.empty()) t.bad("type", "one of train, distill");
    parse_training(t, s, s.gradual_with, seed);
    t.done();
    compress::GradualSchedule& sc = s.gradual.emplace();
    const int64_t steps = s.train.steps;
    sc.final_sparsity = p.sparsity;
    sc.initial = g.num("initial", 0, 0, p.sparsity);
    sc.begin = g.integer("begin", 0, 0, steps - 1);
    sc.end = g.integer("end", std::max<int64_t>(sc.begin + 1, steps * 3 / 4), sc.begin + 1, steps);
    sc.every = g.integer("every", std::max<int64_t>(1, (sc.end - sc.begin) / 20), 1, steps);
    g.done();
  }
}

StageSpec parse_stage(const json& j, const std::string& path, uint64_t seed) {
  Obj o(j, path);
  StageSpec s;
  s.type = o.str("type", "", {"train", "distill", "prune", "quantize", "qat", "calibrate_kv", "draft"});
  if (s.type.empty()) o.bad("type", "one of train, distill, prune, quantize, calibrate_kv, draft");
  s.name = o.str("name", s.type);
  if (s.type == "prune") {
    parse_prune(o, s, seed);
    o.done();
    return s;
  }
  if (s.type == "quantize") {
    parse_quantize(o, s, seed);
    o.done();
    return s;
  }
  if (s.type == "calibrate_kv") {
    const std::string t = o.str("dtype", "fp8", {"fp8", "int8"});
    s.kv.type = t == "fp8" ? DType::F8E4M3 : DType::I8;
    s.kv.per_head = o.str("granularity", "tensor", {"tensor", "head"}) == "head";
    s.kv.unit_scales = o.str("scales", "calibrated", {"calibrated", "unit"}) == "unit";
    parse_calibration(o, s, seed);
    o.done();
    return s;
  }
  if (s.type == "draft") {
    if (!o.has("layers") || !o.raw("layers").is_array() || o.raw("layers").empty()) {
      o.bad("layers", "a non-empty array of the model's block indices, increasing (the draft starts from those blocks)");
    }
    for (const json& l : o.raw("layers")) {
      if (!l.is_number_integer() || l.get<int64_t>() < 0 || l.get<int64_t>() > 4096 ||
          (!s.draft.layers.empty() && l.get<int>() <= s.draft.layers.back())) {
        o.bad("layers", "increasing block indices >= 0");
      }
      s.draft.layers.push_back(l.get<int>());
    }
    s.draft.samples = int(o.integer("samples", 500, 0, 1 << 24));
    s.draft.sample_tokens = int(o.integer("sample_tokens", 255, 1, 1 << 20));
    s.draft.temperature = float(o.num("sample_temperature", 1.0, 0, 100));
    const bool alpha_given = o.has("alpha");
    parse_training(o, s, "distill", seed);
    if (!alpha_given) s.objective.token.ce = 0.f, s.objective.token.kd = 1.f;  // the model's distribution is what acceptance measures
    if (!s.objective.hidden.empty()) o.bad("hidden", "nothing (a draft matches the model's tokens, not its hidden states)");
    o.done();
    return s;
  }
  if (s.type == "qat") {
    s.train.qat = true;
    s.train.learn_scales = o.boolean("learn_scales", false);
  }
  parse_training(o, s, s.type == "qat" ? "distill" : s.type, seed);
  o.done();
  return s;
}

}  // namespace

QuantScheme parse_weights(const json& w, const std::string& where) { return parse_scheme(Obj(w, where)); }

Recipe parse_recipe(const json& j, const std::string& base) {
  Obj o(j, "$");
  Recipe r;
  r.source = j;
  r.name = o.str("name", "recipe");
  const uint64_t seed = uint64_t(o.integer("seed", 1234, 0, INT64_MAX));
  if (o.has("teacher")) r.teacher = model_source(Obj(o.raw("teacher"), o.at("teacher")), base);

  // $.data may be left out when no stage trains or calibrates (checked below).
  if (o.has("data")) {
    Obj d(o.raw("data"), o.at("data"));
    if (d.has("text")) {
      const json& t = d.raw("text");
      if (t.is_string()) r.data.text.push_back(resolve(t.get<std::string>(), base));
      else if (t.is_array() && !t.empty() && std::all_of(t.begin(), t.end(), [](const json& x) { return x.is_string(); })) {
        for (const auto& x : t) r.data.text.push_back(resolve(x.get<std::string>(), base));
      } else {
        d.bad("text", "a file path or a non-empty array of file paths");
      }
    }
    r.data.tokens = resolve(d.str("tokens", ""), base);
    if (r.data.text.empty() == r.data.tokens.empty()) d.bad("text", "exactly one of \"text\" and \"tokens\"");
    r.data.skip_bytes = d.integer("skip_bytes", 0, 0, INT64_MAX);
    r.data.val_fraction = d.num("val_fraction", 0.05, 0, 0.99);
    if (d.has("generate")) {
      Obj g(d.raw("generate"), d.at("generate"));
      r.data.generate.samples = int(g.integer("samples", 0, 0, 1 << 24));
      r.data.generate.max_tokens = int(g.integer("max_tokens", 256, 1, 1 << 20));
      r.data.generate.temperature = float(g.num("temperature", 1.0, 0, 100));
      r.data.generate.top_p = float(g.num("top_p", 1.0, 0, 1));
      r.data.generate.seed = uint64_t(g.integer("seed", int64_t(seed), 0, INT64_MAX));
      g.done();
    }
    d.done();
  }

  if (!o.has("student")) o.bad("student", "an object with \"init\": from_teacher, random or model");
  Obj s(o.raw("student"), o.at("student"));
  r.student.init = s.str("init", "from_teacher", {"from_teacher", "random", "model"});
  r.student.seed = uint64_t(s.integer("seed", int64_t(seed), 0, INT64_MAX));
  if (s.has("layers")) {
    const json& l = s.raw("layers");
    if (!l.is_array() || l.empty() || !std::all_of(l.begin(), l.end(), [](const json& x) { return x.is_number_integer(); })) {
      s.bad("layers", "a non-empty array of teacher layer indices");
    }
    for (const auto& x : l) r.student.layers.push_back(x.get<int>());
  }
  if (s.has("width")) {
    Obj w(s.raw("width"), s.at("width"));
    r.student.shrink = true;
    r.student.width.ffn_dim = int(w.integer("ffn_dim", 0, 0, 1 << 24));
    r.student.width.n_heads = int(w.integer("n_heads", 0, 0, 1 << 16));
    r.student.width.dim = int(w.integer("dim", 0, 0, 1 << 24));
    r.student.calibration_windows = int(w.integer("calibration_windows", 32, 1, 1 << 20));
    w.done();
  }
  r.student.shape = s.str("shape", "");
  if (!r.student.shape.empty()) {
    try {
      shape_config(r.student.shape);
    } catch (const Error& e) {
      s.bad("shape", std::string("a known shape (") + e.what() + ")");
    }
  }
  if (s.has("config")) {
    Obj c(s.raw("config"), s.at("config"));
    ConfigOverrides& v = r.student.config;
    for (auto [key, field] : {std::pair{"dim", &v.dim}, {"n_layers", &v.n_layers}, {"n_heads", &v.n_heads}, {"n_kv_heads", &v.n_kv_heads},
                              {"head_dim", &v.head_dim}, {"ffn_dim", &v.ffn_dim}, {"max_seq", &v.max_seq}}) {
      *field = int(c.integer(key, 0, 1, 1 << 24));
    }
    if (c.has("tied_embeddings")) v.tied_embeddings = c.boolean("tied_embeddings", true);
    c.done();
  }
  r.student.model = {resolve(s.str("model", ""), base), resolve(s.str("tokenizer", ""), base)};
  if (r.student.init == "model" && r.student.model.model.empty()) s.bad("model", "a model path (init is \"model\")");
  if (r.student.init == "from_teacher" && !r.student.model.tokenizer.empty()) {
    s.bad("tokenizer", "nothing (a from_teacher student uses the teacher's tokenizer)");
  }

  if (r.student.init == "random" && r.student.shape.empty() && !r.teacher) {
    s.bad("shape", "a shape name (random init without a teacher has no config to start from)");
  }
  if (r.student.init == "from_teacher" && !r.teacher) fail("recipe", "$.student.init: from_teacher needs a \"teacher\"");
  if (r.student.init != "from_teacher" && !r.student.layers.empty()) s.bad("layers", "nothing (layers apply to from_teacher)");
  if (r.student.init != "from_teacher" && r.student.shrink) s.bad("width", "nothing (width reduction applies to from_teacher)");
  s.done();

  if (!o.has("stages") || !o.raw("stages").is_array() || o.raw("stages").empty()) o.bad("stages", "a non-empty array of stages");
  const json& st = o.raw("stages");
  for (size_t i = 0; i < st.size(); ++i) {
    const std::string at = "$.stages[" + std::to_string(i) + "]";
    r.stages.push_back(parse_stage(st[i], at, seed));
    const StageSpec& cur = r.stages.back();
    const bool after_quantize = std::any_of(r.stages.begin(), r.stages.end() - 1, [](const StageSpec& p) { return p.type == "quantize"; });
    if (cur.type == "draft" && i + 1 != st.size()) {
      fail("recipe", at + ": a draft stage must be the last stage (it distills the model the recipe writes)");
    }
    if (cur.type == "qat" && !after_quantize) {
      fail("recipe", at + ": a qat stage trains quantized weights, but no quantize stage comes before it",
           "Put a quantize stage (its scales start the training) before qat");
    }
    if (after_quantize && cur.type == "prune") {
      fail("recipe", at + ": a prune stage after quantize would change the quantized weights", "Prune before quantizing");
    }
    if (after_quantize && cur.type != "qat" && cur.trains()) {
      fail("recipe", at + ": a " + cur.type + " stage after quantize would train away the quantized weights",
           "Train or distill before quantizing (quantization-aware training is the qat stage)");
    }
    if (cur.uses_teacher() && !r.teacher) {
      const char* what = cur.type == "qat" ? "a qat stage distills from the original model and" : (cur.type == "prune" ? "a distill run" : "a distill stage");
      fail("recipe", at + ": " + what + " needs a \"teacher\" at $.teacher");
    }
  }
  if (r.data.generate.samples > 0 && !r.teacher) fail("recipe", "$.data.generate: sequence-level distillation needs a \"teacher\"");
  if (r.student.init == "random" && !r.teacher && r.student.model.tokenizer.empty()) {
    fail("recipe", "$.student.tokenizer: expected a tokenizer file (random init without a teacher; `condense data tokenizer` learns one from text)");
  }
  if (!o.has("data")) {
    for (size_t i = 0; i < r.stages.size(); ++i) {
      if (r.stages[i].needs_data()) {
        o.bad("data", "an object with \"text\" (files) or \"tokens\" (a prepared folder): $.stages[" + std::to_string(i) + "] (" +
                          r.stages[i].type + ") trains or calibrates on it");
      }
    }
    if (r.student.shrink) o.bad("data", "an object with \"text\" or \"tokens\": $.student.width ranks channels on it");
  }

  if (!o.has("output")) o.bad("output", "an object with \"dir\"");
  Obj out(o.raw("output"), o.at("output"));
  r.output_dir = resolve(out.req_str("dir"), base);
  const bool compresses = std::any_of(r.stages.begin(), r.stages.end(), [](const StageSpec& st) { return st.compresses(); });
  r.output_format = out.str("format", compresses ? "cpk" : "hf", {"hf", "llama2c", "cpk"});
  if (compresses && r.output_format != "cpk") {
    out.bad("format", "\"cpk\" (a compressed model's packed weights only fit a .cpk; hf/llama2c would store dequantized f32)");
  }
  out.done();
  if (o.has("eval")) {
    Obj e(o.raw("eval"), o.at("eval"));
    r.eval_text = resolve(e.req_str("text"), base);
    r.eval_ctx = int(e.integer("ctx", 256, 2, 1 << 20));
    r.eval_windows = int(e.integer("max_windows", 16, 0, 1 << 20));
    e.done();
  }
  o.done();
  return r;
}

}  // namespace condense::pipeline
