#include "pipeline/run_recipe.h"

#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "core/error.h"
#include "core/version.h"
#include "core/progress.h"
#include "compress/quantize_model.h"
#include "io/atomic_writer.h"
#include "io/cpk.h"
#include "io/crc32c.h"
#include "io/file_view.h"
#include "io/hf_model.h"
#include "io/llama2c.h"
#include "io/model_loader.h"
#include "kernels/cpu/cpu_features.h"
#include "model/shapes.h"
#include "pipeline/preflight.h"
#include "runtime/compare.h"
#include "runtime/generate.h"
#include "runtime/perplexity.h"
#include "train/grad_reducer.h"
#include "train/student_init.h"
#include "train/width_prune.h"

namespace condense::pipeline {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

bool is_root(const RunOptions& o) { return !o.comm || o.comm->root(); }

void log_line(const RunOptions& o, const json& j) {
  if (o.log_json) std::cerr << j.dump() << "\n";
}

std::string vocab_name(const Tokenizer& t, const std::string& path) {
  return "'" + path + "' (" + t.kind() + ", " + std::to_string(t.vocab_size()) + " tokens)";
}

// Calibration windows from the training split, a function of the seed.
compress::CalibrationSet calibration_set(const CalibrationSpec& cs, const Model& m, const train::TokenDataset& data, int bos,
                                         dist::Communicator* comm = nullptr) {
  compress::CalibrationSet cal;
  cal.comm = comm;
  const int seq = std::min(cs.seq, m.config.max_seq);
  cal.n_seq = cs.samples;
  cal.seq = seq;
  cal.chunk = cs.chunk;
  cal.inputs.resize(size_t(cs.samples) * size_t(seq));
  std::vector<int> targets(static_cast<size_t>(seq));
  for (int i = 0; i < cs.samples; ++i) data.sample(cs.seed, 0, i, 1, seq, bos, cal.inputs.data() + size_t(i) * size_t(seq), targets.data());
  return cal;
}

// A compressing stage (quantize, calibrate_kv) on the student, calibrated on
// training windows when its method needs them; returns its results entry, whose
// "summary" also goes into the model's history.
json run_compress_stage(const StageSpec& st, Model& student, const train::TokenDataset& data, int bos, const RunOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  const bool quantize = st.type == "quantize";
  const compress::QuantizeOptions& q = st.quantize;
  const compress::PruneOptions& p = st.prune;
  std::optional<compress::CalibrationSet> cal;
  const bool calibrated = st.type == "prune" ? p.needs_calibration() : (quantize ? q.needs_calibration() : !st.kv.unit_scales);
  if (calibrated) cal = calibration_set(st.calibration, student, data, bos, o.comm);
  json rep, summary;
  if (st.type == "prune") {
    std::optional<Progress> prog;
    if (!o.log_json) std::fprintf(stderr, "%s: %s to %.0f%% sparsity\n", st.name.c_str(), p.method.c_str(), 100 * p.sparsity);
    rep = compress::prune_model(student, p, cal ? &*cal : nullptr, [&](int done, int total) {
      if (!prog) prog.emplace(st.name, total, o.log_json);
      prog->update(done);
    });
    if (prog) prog->finish();
    summary = {{"method", p.method}, {"sparsity", rep["sparsity"]}};
    if (p.nm.active()) summary["pattern"] = rep["pattern"];
  } else if (quantize) {
    std::optional<Progress> prog;
    if (!o.log_json) {
      std::fprintf(stderr, "%s: %s %s%s\n", st.name.c_str(), q.method.c_str(), q.scheme.describe().c_str(),
                   q.schemes.empty() ? "" : (" (" + std::to_string(q.schemes.size()) + " weights in other schemes)").c_str());
    }
    rep = compress::quantize_model(student, q, cal ? &*cal : nullptr, [&](int done, int total) {
      if (!prog) prog.emplace(st.name, total, o.log_json);
      prog->update(done);
    });
    if (prog) prog->finish();
    const int retries = rep.contains("calibration") ? rep["calibration"].value("cholesky_retries", 0) : 0;
    if (retries) std::fprintf(stderr, "%s: GPTQ's Cholesky factorisation failed %d times; dampening was raised (see results.json)\n", st.name.c_str(), retries);
    summary = {{"method", q.method}, {"scheme", rep["scheme"]}};
    if (!q.schemes.empty()) summary["overrides"] = q.schemes.size();  // weights in their own scheme (mixed precision)
    if (rep.contains("activations")) summary["activations"] = rep["activations"]["dtype"];
    if (q.activations.smooth) summary["smoothquant_alpha"] = q.activations.alpha;
  } else {
    rep = compress::calibrate_kv(student, st.kv, cal ? &*cal : nullptr);
    summary = {{"kv_cache", rep["dtype"]}, {"scales", rep["scales"]}, {"granularity", rep["granularity"]}};
  }
  log_line(o, {{"event", st.type}, {"stage", st.name}, {"report", rep}});
  return {{"name", st.name}, {"type", st.type}, {"summary", summary}, {"report", rep},
          {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()}};
}

// A training stage (train, distill, or a gradual prune's run) on the student,
// resuming from its state file when asked; returns its results entry. Gradual
// pruning raises the masks by magnitude at each scheduled step before the
// trainer continues; the state file holds the masks, so a resumed run goes on
// from the same ones.
json run_train_stage(const StageSpec& st, size_t si, const Recipe& r, Model& student, const Model* teacher,
                     const train::TokenDataset& data, int bos, const RunOptions& o) {
  using clock = std::chrono::steady_clock;
  std::vector<std::string> prune_names;
  json sparsity_log = json::array();
  if (st.gradual) {
    // every target gets a mask before the trainer starts, so the state file always holds the same tensors
    prune_names = compress::prune_targets(student, st.prune, st.name);
    compress::magnitude_prune_to(student, prune_names, st.gradual->initial, st.prune.scope);
  }
  train::TrainOptions topt = st.train;
  topt.device = o.device;
  topt.comm = o.comm;
  topt.bucket_bytes = o.bucket_bytes;
  topt.check_every = o.check_every;
  topt.state_path = (fs::path(r.output_dir) / ("state-stage" + std::to_string(si) + ".h5")).string();
  train::Trainer tr(student, st.uses_teacher() ? teacher : nullptr, st.objective, topt, data, bos);
  tr.meta_json = json{{"recipe", r.source}, {"stage", si}}.dump();
  // rank 0's file decides (the others need not see the output folder)
  int found = o.resume && is_root(o) && fs::exists(topt.state_path);
  if (o.comm) o.comm->broadcast(&found, sizeof found, 0);
  if (found) {
    tr.resume(topt.state_path);
    std::fprintf(stderr, "%s: resuming from %s at step %lld of %lld\n", st.name.c_str(), topt.state_path.c_str(), (long long)tr.step(),
                 (long long)topt.steps);
    log_line(o, {{"event", "resume"}, {"stage", st.name}, {"found", true}, {"step", tr.step()}, {"state", topt.state_path}});
  } else if (o.resume && is_root(o)) {
    std::fprintf(stderr, "%s: --resume found no training state at %s; starting from step 1\n", st.name.c_str(), topt.state_path.c_str());
    log_line(o, {{"event", "resume"}, {"stage", st.name}, {"found", false}, {"step", 0}, {"state", topt.state_path}});
  }
  log_line(o, {{"event", "stage"}, {"stage", st.name}, {"type", st.type}, {"steps", topt.steps},
               {"activation_mb", double(tr.activation_bytes()) / 1e6}, {"state_mb", double(tr.state_bytes()) / 1e6}});
  std::optional<Progress> prog;
  if (!o.log_json) {
    std::fprintf(stderr, "%s: %lld steps of %d x %d tokens; activations %.1f MB, weights + gradients + AdamW moments %.1f MB\n",
                 st.name.c_str(), (long long)topt.steps, topt.batch * topt.accum, topt.seq, double(tr.activation_bytes()) / 1e6,
                 double(tr.state_bytes()) / 1e6);
    prog.emplace(st.name, topt.steps, false);
  }
  double loss_tail = 0, tok_s = 0, sparsity = st.gradual ? st.gradual->at(tr.step()) : 0;
  int tail_n = 0;
  json last_val;
  const auto t0 = clock::now();
  auto on_step = [&](const train::StepLog& s) {
    tok_s = s.tokens_per_s;
    if (topt.steps - s.step < 10) {
      loss_tail += s.loss.total;
      ++tail_n;
    }
    char detail[160];
    if (st.gradual) std::snprintf(detail, sizeof detail, "loss %.4f  sparsity %.3f  lr %.2e  %.0f tok/s", s.loss.total, sparsity, s.lr, s.tokens_per_s);
    else std::snprintf(detail, sizeof detail, "loss %.4f  lr %.2e  %.0f tok/s", s.loss.total, s.lr, s.tokens_per_s);
    if (prog) prog->update(s.step, detail);
    json ev = {{"event", "step"}, {"stage", st.name}, {"step", s.step}, {"steps", topt.steps}, {"loss", s.loss.total},
               {"ce", s.loss.ce}, {"kd", s.loss.kd}, {"hidden", s.loss.hidden}, {"lr", s.lr}, {"grad_norm", s.grad_norm},
               {"tokens_per_s", s.tokens_per_s}, {"eta_s", s.seconds * double(topt.steps - s.step)}};
    if (st.gradual) ev["sparsity"] = sparsity;
    log_line(o, ev);
  };
  auto on_val = [&](const train::ValLog& v) {
    last_val = {{"step", v.step}, {"loss", v.loss}, {"ce", v.ce}, {"ppl", v.ppl}, {"windows", v.windows}};
    if (o.log_json) log_line(o, {{"event", "validation"}, {"stage", st.name}, {"step", v.step}, {"loss", v.loss}, {"ppl", v.ppl}});
    else std::fprintf(stderr, "\n%s: step %lld validation loss %.4f ppl %.4f (%d windows)\n", st.name.c_str(), (long long)v.step, v.loss, v.ppl, v.windows);
  };
  if (!st.gradual) {
    tr.run(on_step, on_val);
  } else {
    while (tr.step() < topt.steps) {
      const int64_t t = tr.step();
      if (st.gradual->update_at(t)) {
        sparsity = st.gradual->at(t);
        compress::magnitude_prune_to(student, prune_names, sparsity, st.prune.scope);
        tr.refresh_masks();
        sparsity_log.push_back({{"step", t}, {"sparsity", sparsity}});
        log_line(o, {{"event", "prune"}, {"stage", st.name}, {"step", t}, {"sparsity", sparsity}});
      }
      tr.run(on_step, on_val, std::min(st.gradual->next_update(t), topt.steps) - t);
    }
  }
  if (prog) prog->finish();
  json res = {{"name", st.name}, {"type", st.type}, {"steps", topt.steps}, {"final_train_loss", tail_n ? loss_tail / tail_n : NAN},
              {"validation", last_val}, {"seconds", std::chrono::duration<double>(clock::now() - t0).count()},
              {"last_step_tokens_per_s", tok_s}, {"state", topt.state_path},
              {"activation_mb", double(tr.activation_bytes()) / 1e6}, {"weights_grads_moments_mb", double(tr.state_bytes()) / 1e6}};
  if (const train::ReduceStats* rs = tr.reduce_stats()) {
    res["data_parallel"] = {{"ranks", tr.ranks()}, {"backend", o.comm->describe()}, {"bucket_bytes", topt.bucket_bytes},
                            {"allreduce_bytes_per_step", tr.reduce_bytes_per_step()}, {"buckets_per_step", rs->steps ? rs->buckets / rs->steps : 0},
                            {"allreduce_s", rs->comm_s}, {"exposed_s", rs->exposed_s}, {"hidden_fraction", rs->hidden_fraction()}};
  }
  if (st.gradual) {
    res["with"] = st.gradual_with;
    res["schedule"] = {{"initial", st.gradual->initial}, {"final", st.gradual->final_sparsity}, {"begin", st.gradual->begin},
                       {"end", st.gradual->end}, {"every", st.gradual->every}, {"updates", sparsity_log}};
    res["sparsity"] = compress::sparsity_report(student, prune_names);
  }
  return res;
}

// Appends `samples` sequences sampled from m (each from BOS, up to max_tokens)
// to the training split; returns the tokens added.
int64_t append_samples(const Model& m, int samples, int max_tokens, float temperature, float top_p, uint64_t seed, int bos,
                       train::TokenDataset& data, const RunOptions& o) {
  Engine eng(m, std::min(m.config.max_seq, max_tokens + 1));
  Sampler sampler(temperature, top_p, seed);
  Progress prog("generate", samples, o.log_json);
  int64_t generated = 0;
  for (int i = 0; i < samples; ++i) {
    std::vector<int> out;
    eng.truncate(0, 0);
    generate(eng, {bos}, std::min(max_tokens, m.config.max_seq - 1), sampler, {}, &out);
    data.append_train(out);
    generated += int64_t(out.size());
    prog.update(i + 1);
  }
  prog.finish();
  return generated;
}

// A draft stage (the recipe's last): a student of `target` (its blocks
// st.draft.layers, f32) distilled from it on the recipe's data plus its own
// samples, written to the output folder as draft.cpk. Returns the stage's
// results entry; *draft_json gets what the output's provenance records.
json run_draft_stage(const StageSpec& st, size_t si, const Recipe& r, const Model& target, const train::TokenDataset& data,
                     const std::string& tok_path, int bos, const RunOptions& o, json* draft_json) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  for (int l : st.draft.layers) {
    if (l >= target.config.n_layers) {
      fail("recipe", "$.stages[" + std::to_string(si) + "].layers: the model has " + std::to_string(target.config.n_layers) +
                         " blocks, no block " + std::to_string(l));
    }
  }
  // The draft starts from the target's blocks as the target runs them (its
  // effective f32 values) and trains in f32: it is small.
  Model draft = train::student_from_teacher(target, st.draft.layers);
  draft.compression.clear();
  draft.activations = {};
  draft.kv_cache = {};
  draft.history = "[]";
  train::TokenDataset dd = data;
  const int64_t sampled = append_samples(target, st.draft.samples, st.draft.sample_tokens, st.draft.temperature, 1.f,
                                         st.train.seed + 7, bos, dd, o);
  StageSpec ts = st;
  ts.type = "distill";
  json res = run_train_stage(ts, si, r, draft, &target, dd, bos, o);
  res["type"] = "draft";
  const std::string path = (fs::path(r.output_dir) / "draft.cpk").string();
  CpkWriteOptions w;
  w.tokenizer_path = tok_path.find(" (embedded") == std::string::npos ? tok_path : "";
  w.provenance_json = json{{"recipe", r.source}, {"created_by", "condense"}, {"draft_of", r.name}}.dump();
  if (is_root(o)) save_cpk(draft, path, w);
  *draft_json = {{"path", "draft.cpk"}, {"crc32c", is_root(o) ? file_crc32c_hex(path) : ""}, {"layers", st.draft.layers},
                 {"n_layers", draft.config.n_layers}, {"params", draft.config.n_params()}};
  res["draft"] = *draft_json;
  res["draft"]["path"] = path;
  res["target_samples"] = st.draft.samples;
  res["target_sample_tokens"] = sampled;
  res["seconds"] = std::chrono::duration<double>(clock::now() - t0).count();
  log_line(o, {{"event", "draft"}, {"stage", st.name}, {"draft", res["draft"]}});
  return res;
}

}  // namespace

namespace {

// The recipe's training data as tokens of `tok` (fingerprint fp), before any
// teacher samples; empty when the recipe has none (no stage trains or calibrates).
train::TokenDataset recipe_data(const Recipe& r, const Tokenizer& tok, const std::string& fp) {
  if (r.data.text.empty() && r.data.tokens.empty()) return train::TokenDataset::from_tokens({}, {}, fp);
  if (!r.data.tokens.empty()) return train::TokenDataset::open(r.data.tokens, fp);
  train::PrepareOptions popt;
  popt.texts = r.data.text;
  popt.skip_bytes = r.data.skip_bytes;
  popt.val_fraction = r.data.val_fraction;
  return train::TokenDataset::from_text(tok, popt);
}

}  // namespace

compress::CalibrationSet recipe_calibration_windows(const Recipe& r, const Model& m, const Tokenizer& tok, const CalibrationSpec& cs) {
  if (r.data.text.empty() && r.data.tokens.empty()) fail("recipe", "$.data: calibration needs a text or a token folder");
  return calibration_set(cs, m, recipe_data(r, tok, train::tokenizer_fingerprint(tok)), m.config.bos_id);
}

json run_recipe(const Recipe& r, const RunOptions& o) {
  using clock = std::chrono::steady_clock;
  const auto t_start = clock::now();
  preflight(r);  // what a dry run checks, before anything is loaded or written
  std::error_code ec;
  fs::create_directories(r.output_dir, ec);
  if (ec) fail(r.output_dir, "cannot create the output folder: " + ec.message());
  // A run killed between writing a temporary file and renaming it left it behind.
  for (const std::string& t : is_root(o) ? remove_stale_temporaries(r.output_dir) : std::vector<std::string>{}) {
    std::fprintf(stderr, "removed %s, a temporary file left by an earlier run that was stopped while writing\n", t.c_str());
    log_line(o, {{"event", "stale_temporary_removed"}, {"path", t}});
  }

  // teacher, student and the one tokenizer they share
  std::optional<LoadedModel> teacher;
  if (r.teacher) {
    teacher.emplace(load_model(r.teacher->model, r.teacher->tokenizer));
    require_tokenizer(*teacher);
  }
  Model student;
  std::unique_ptr<Tokenizer> own_tok;
  const Tokenizer* tok = teacher ? teacher->tokenizer.get() : nullptr;
  std::string tok_path = teacher ? teacher->tokenizer_path : "";
  if (r.student.init == "from_teacher") {
    std::vector<int> layers = r.student.layers;
    if (layers.empty()) for (int l = 0; l < teacher->model.config.n_layers; ++l) layers.push_back(l);
    student = train::student_from_teacher(teacher->model, layers);
  } else if (r.student.init == "model") {
    LoadedModel s = load_model(r.student.model.model, r.student.model.tokenizer);
    const Tokenizer& st = require_tokenizer(s);
    if (tok && train::tokenizer_fingerprint(st) != train::tokenizer_fingerprint(*tok)) {
      fail("recipe", "the student's vocabulary " + vocab_name(st, s.tokenizer_path) + " differs from the teacher's " +
                         vocab_name(*tok, tok_path),
           "Teacher and student must share one tokenizer");
    }
    if (!tok) {
      own_tok = std::move(s.tokenizer);
      tok = own_tok.get();
      tok_path = s.tokenizer_path;
    }
    student = std::move(s.model);
  } else {
    if (!r.student.model.tokenizer.empty()) {  // its own tokenizer: the teacher's, when there is one, must be the same
      auto own = load_tokenizer_file(r.student.model.tokenizer);
      if (tok && train::tokenizer_fingerprint(*own) != train::tokenizer_fingerprint(*tok)) {
        fail("recipe", "$.student.tokenizer " + vocab_name(*own, r.student.model.tokenizer) + " differs from the teacher's " +
                           vocab_name(*tok, tok_path),
             "Teacher and student must share one tokenizer");
      }
      if (!tok) {
        own_tok = std::move(own);
        tok = own_tok.get();
        tok_path = r.student.model.tokenizer;
      }
    }
    if (!tok) fail("recipe", "$.student: random init without a teacher needs a tokenizer ($.student.tokenizer or a $.teacher)");
    student = random_model(random_student_config(r.student, teacher ? &teacher->model.config : nullptr, tok->vocab_size()), r.student.seed);
  }
  if (student.config.vocab != tok->vocab_size()) {
    fail("recipe", "the student has " + std::to_string(student.config.vocab) + " embedding rows but the tokenizer " +
                       vocab_name(*tok, tok_path) + " has " + std::to_string(tok->vocab_size()) + " tokens");
  }
  const std::string fp = train::tokenizer_fingerprint(*tok);
  const int bos = student.config.bos_id;

  // data
  train::TokenDataset data = recipe_data(r, *tok, fp);
  json data_j = {{"train_tokens", data.train_tokens()}, {"val_tokens", data.val_tokens()}, {"tokenizer", fp}};
  if (r.data.generate.samples > 0) {
    const GenerateSpec& g = r.data.generate;
    data_j["generated_samples"] = g.samples;
    data_j["generated_tokens"] = append_samples(teacher->model, g.samples, g.max_tokens, g.temperature, g.top_p, g.seed, bos, data, o);
    data_j["train_tokens"] = data.train_tokens();
  }
  log_line(o, {{"event", "data"}, {"data", data_j}});
  json width_j;
  if (r.student.shrink) {
    const int seq = std::min(256, student.config.max_seq);
    const train::Importance imp = train::measure_importance(student, data, r.student.calibration_windows, seq, bos, r.student.seed);
    const ModelConfig before = student.config;
    student = train::shrink_width(student, imp, r.student.width);
    width_j = {{"calibration_windows", r.student.calibration_windows}, {"seq", seq},
               {"from", {{"dim", before.dim}, {"n_heads", before.n_heads}, {"n_kv_heads", before.n_kv_heads}, {"ffn_dim", before.ffn_dim}}},
               {"to", {{"dim", student.config.dim}, {"n_heads", student.config.n_heads}, {"n_kv_heads", student.config.n_kv_heads},
                       {"ffn_dim", student.config.ffn_dim}}}};
    log_line(o, {{"event", "width_reduction"}, {"width", width_j}});
  }

  if (r.output_format == "llama2c" && student.config.q_dim() != student.config.dim) {
    fail("recipe", "$.output.format: llama2c cannot hold this student (n_heads * head_dim = " + std::to_string(student.config.q_dim()) +
                       " differs from dim " + std::to_string(student.config.dim) + ")",
         "Use \"format\": \"hf\"");
  }
  json stages = json::array();
  json history = json::array();
  json draft_j;
  for (size_t si = 0; si < r.stages.size(); ++si) {
    const StageSpec& st = r.stages[si];
    if (st.type == "draft") {  // the last stage: the model itself is not changed
      stages.push_back(run_draft_stage(st, si, r, student, data, tok_path, bos, o, &draft_j));
      continue;
    }
    if (st.compresses() && !st.trains()) {
      stages.push_back(run_compress_stage(st, student, data, bos, o));
      json h = {{"stage", st.name}, {"type", st.type}};
      h.update(stages.back()["summary"]);
      history.push_back(h);
      continue;
    }
    json h = {{"stage", st.name}, {"type", st.type}, {"steps", st.train.steps}};
    stages.push_back(run_train_stage(st, si, r, student, teacher ? &teacher->model : nullptr, data, bos, o));
    if (st.gradual) h["sparsity"] = stages.back()["sparsity"]["sparsity"];
    history.push_back(h);
  }

  // output model: written by rank 0 (every rank holds the same one)
  if (!is_root(o)) return json{{"rank", o.comm->rank()}};
  std::string model_out;
  student.history = history.dump();
  if (r.output_format == "cpk") {
    model_out = (fs::path(r.output_dir) / "model.cpk").string();
    CpkWriteOptions w;
    w.tokenizer_path = tok_path.find(" (embedded") == std::string::npos ? tok_path : "";
    json prov = {{"recipe", r.source}, {"created_by", "condense"}};
    if (!draft_j.is_null()) prov["draft"] = draft_j;  // path relative to the model's folder
    w.provenance_json = prov.dump();
    save_cpk(student, model_out, w);
  } else if (r.output_format == "hf") {
    model_out = (fs::path(r.output_dir) / "model").string();
    save_hf_model(student, model_out, DType::F32, {{"condense.recipe", r.name}});
    // The tokenizer goes with the folder where the loader finds it (a model
    // trained from scratch has no other copy).
    const fs::path tp(tok_path);
    const std::string ext = tp.extension().string();
    if (fs::is_regular_file(tp) && (ext == ".model" || ext == ".json")) {
      fs::copy_file(tp, fs::path(model_out) / (ext == ".model" ? "tokenizer.model" : "tokenizer.json"), fs::copy_options::overwrite_existing);
    }
  } else {
    model_out = (fs::path(r.output_dir) / "model.bin").string();
    save_llama2c(student, model_out);
  }

  json res = {{"recipe", r.name}, {"recipe_source", r.source}, {"output_model", model_out}, {"tokenizer", tok_path}, {"data", data_j}, {"stages", stages},
              {"student", {{"n_layers", student.config.n_layers}, {"dim", student.config.dim}, {"params", student.config.n_params()}}}};
  if (!width_j.is_null()) res["width_reduction"] = width_j;
  if (!draft_j.is_null()) {
    res["draft"] = draft_j;
    res["draft"]["path"] = (fs::path(r.output_dir) / "draft.cpk").string();
  }
  if (r.teacher) res["teacher_model"] = r.teacher->model;  // as resolved ($CONDENSE_DATA_DIR expanded)
  if (!r.eval_text.empty()) {
    const std::vector<int> ids = tok->encode(read_text_file(r.eval_text));
    // evaluation of a large model takes minutes: progress per window
    std::optional<Progress> prog;
    auto on_window = [&](int done, int total) {
      if (!prog) prog.emplace("eval", total, o.log_json);
      prog->update(done);
    };
    auto ppl = [&](const Model& m) {
      Engine e(m, std::min(m.config.max_seq, r.eval_ctx));
      return evaluate_perplexity(e, ids, r.eval_ctx, r.eval_windows, on_window).ppl;
    };
    json ev = {{"text", r.eval_text}, {"ctx", r.eval_ctx}, {"max_windows", r.eval_windows}};
    if (teacher) {
      Engine es(student, std::min(student.config.max_seq, r.eval_ctx)), et(teacher->model, std::min(teacher->model.config.max_seq, r.eval_ctx));
      const Comparison c = compare_models(es, et, ids, r.eval_ctx, r.eval_windows, on_window);
      ev["student_ppl"] = c.ppl;
      ev["teacher_ppl"] = c.reference_ppl;
      ev["vs_teacher"] = {{"delta_ppl_pct", c.delta_ppl_pct}, {"kl_mean", c.kl_mean}, {"kl_p99", c.kl_p99}, {"top1_agreement", c.top1_agreement}};
    } else {
      ev["student_ppl"] = ppl(student);
    }
    if (prog) prog->finish();
    res["eval"] = ev;
    log_line(o, {{"event", "eval"}, {"eval", ev}});
  }
  res["seconds"] = std::chrono::duration<double>(clock::now() - t_start).count();
  res["machine"] = {{"cpu", kernels::cpu_name()}, {"isa", kernels::isa_name(kernels::active_isa())},
                    {"threads", omp_get_max_threads()}, {"ranks", o.comm ? o.comm->size() : 1}};
  res["condense"] = {{"version", version()}, {"revision", git_revision()}};
  write_file_atomically((fs::path(r.output_dir) / "results.json").string(), res.dump(2) + "\n");
  return res;
}

}  // namespace condense::pipeline
