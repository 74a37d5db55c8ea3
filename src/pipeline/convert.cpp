#include "pipeline/convert.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.h"
#include "core/process_stats.h"
#include "core/progress.h"
#include "core/json_text.h"
#include "io/atomic_writer.h"
#include "io/cpk.h"
#include "io/file_view.h"
#include "io/ggml_quants.h"
#include "io/gguf.h"
#include "io/compressed_tensors.h"
#include "io/hf_model.h"
#include "io/hf_tokenizer_json.h"
#include "io/safetensors.h"
#include "io/llama2c.h"
#include "io/model_loader.h"
#include "model/tokenizer_llama2c.h"
#include "runtime/compare.h"
#include "pipeline/tensor_parallel.h"
#include "train/token_data.h"

namespace condense::pipeline {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

json plan_json(const std::vector<GgufTensorPlan>& plan, bool measured) {
  json a = json::array();
  for (const GgufTensorPlan& p : plan) {
    json t = {{"name", p.name}, {"gguf_name", p.gguf_name}, {"source", p.source}, {"type", ggml::type_name(p.type)},
              {"how", p.how},   {"shape", p.shape},         {"bytes", p.bytes}};
    if (!p.note.empty()) t["note"] = p.note;
    if (measured) {
      t["rel_rmse"] = p.rel_rmse;
      t["max_abs_err"] = p.max_abs_err;
    }
    a.push_back(t);
  }
  return a;
}

// Each weight as the input holds it and as the output stores it: the packed
// form (a .cpk) or `dtype` ("": f32, exact).
json tensor_list(const Model& m, const std::string& dtype, WeightSource& weights) {
  json a = json::array();
  for_each_weight(m, [&](const WeightRef& w) {
    const WeightCompression* wc = weights.get(w).packed;
    const std::string held = wc && wc->scheme.quantized() ? wc->scheme.describe() : "f32";
    const std::string src = m.source_encodings.count(w.name) ? m.source_encodings.at(w.name) : held;
    const std::string stored = !dtype.empty() ? dtype : held;
    a.push_back({{"name", w.name}, {"source", src}, {"stored", stored}, {"how", dtype.empty() ? "exact" : "rounded to " + dtype}});
  });
  return a;
}

// The output's quality against the input, on the same windows.
json quality(const LoadedModel& in, const std::string& out_path, const ConvertOptions& opt) {
  const Tokenizer& tok = require_tokenizer(in);
  const std::vector<int> tokens = tok.encode(read_text_file(opt.text));
  LoadedModel out = load_model(out_path, opt.tokenizer, {.effective_f32 = false});
  // Both score the same ids: the output's own tokenizer (a tokenizer.json
  // written from a llama2.c one, say) must encode the text exactly so.
  if (out.tokenizer && train::tokenizer_fingerprint(*out.tokenizer) != train::tokenizer_fingerprint(tok)) {
    const std::vector<int> other = out.tokenizer->encode(read_text_file(opt.text));
    size_t i = 0;
    while (i < tokens.size() && i < other.size() && tokens[i] == other[i]) ++i;
    if (i != tokens.size() || other.size() != tokens.size()) {
      fail(out_path, "the converted model's tokenizer encodes " + opt.text + " differently from the input's (first difference at token " + std::to_string(i) + ")");
    }
  }
  const int ctx = std::min({opt.ctx, in.model.config.max_seq, out.model.config.max_seq});
  Engine ref(in.model, ctx), model(out.model, ctx);
  std::optional<Progress> progress;
  const Comparison c = compare_models(model, ref, tokens, ctx, opt.max_windows, [&](int done, int total) {
    if (!progress) progress.emplace("quality", total, opt.log_json);
    progress->update(done);
  });
  if (progress) progress->finish();
  return {{"text", opt.text}, {"ctx", ctx},           {"windows", c.windows},         {"tokens", c.tokens},
          {"input_perplexity", c.reference_ppl},      {"output_perplexity", c.ppl},   {"delta_ppl_pct", c.delta_ppl_pct},
          {"kl_mean", c.kl_mean}, {"kl_p99", c.kl_p99}, {"top1_agreement", c.top1_agreement}};
}

constexpr const char* kTpManifest = "tp.json";

// The input model: a file or folder condense reads, or (merge) a folder of
// tensor-parallel ranks written by --tp, put back together.
LoadedModel open_input(const std::string& in, const ConvertOptions& opt, bool effective_f32) {
  if (!opt.merge) return load_model(in, opt.tokenizer, {.effective_f32 = effective_f32});
  const std::string mpath = (fs::path(in) / kTpManifest).string();
  if (!fs::exists(mpath)) fail(in, std::string("has no ") + kTpManifest, "--merge reads a folder written by `condense convert --tp N`");
  const json man = parse_json(read_text_file(mpath), mpath);
  if (!man.is_object() || man.value("format", "") != "condense-tp") fail(mpath, "is not a condense-tp manifest");
  const int n = int(json_int(man.at("tp"), mpath, "tp", 1, 4096));
  const ModelConfig full = parse_hf_config(man.at("config").dump(), mpath + ": config");
  if (!man.at("ranks").is_array() || man["ranks"].size() != size_t(n)) fail(mpath, "'ranks' must list " + std::to_string(n) + " files");
  std::vector<Model> ranks;
  for (const json& f : man["ranks"]) {
    if (!f.is_string() || f.get<std::string>().find('/') != std::string::npos) fail(mpath, "'ranks' holds a name that is not a file in the folder");
    ranks.push_back(load_cpk((fs::path(in) / f.get<std::string>()).string()).model);
  }
  LoadedModel lm;
  lm.model = merge_tensor_parallel(ranks, full);
  lm.model.format = "cpk-tp" + std::to_string(n);
  lm.model.path = in;
  const std::string tok = opt.tokenizer.empty() && man.contains("tokenizer") && man["tokenizer"].is_string()
                              ? (fs::path(in) / man["tokenizer"].get<std::string>()).string() : opt.tokenizer;
  if (!tok.empty()) {
    lm.tokenizer = load_tokenizer_file(tok);
    lm.tokenizer_path = tok;
  } else {
    lm.tokenizer_note = "the tensor-parallel folder carries no tokenizer";
  }
  return lm;
}

// --tp N: N rank .cpk files, the tokenizer and a manifest in a new folder.
json write_tp(const LoadedModel& lm, const std::string& in, const ConvertOptions& opt) {
  const Model& m = lm.model;
  std::vector<Model> ranks = split_tensor_parallel(m, opt.tp);
  json files = json::array();
  char name[64];
  for (int r = 0; r < opt.tp; ++r) {
    std::snprintf(name, sizeof name, "rank-%05d-of-%05d.cpk", r, opt.tp);
    files.push_back(name);
  }
  json man = {{"format", "condense-tp"}, {"version", 1}, {"tp", opt.tp}, {"source", in},
              {"config", json::parse(hf_config_json(m.config, "float32"))}, {"ranks", files}, {"split", tp_split_table(m)}};
  std::string tok_file;
  const auto* l2c = dynamic_cast<const Llama2cTokenizer*>(lm.tokenizer.get());
  if (!lm.tokenizer_path.empty() && fs::is_regular_file(lm.tokenizer_path)) tok_file = fs::path(lm.tokenizer_path).filename().string();
  else if (l2c) tok_file = "tokenizer.bin";
  man["tokenizer"] = tok_file.empty() ? json(nullptr) : json(tok_file);
  if (opt.dry_run) return man;
  const fs::path out(opt.out), tmp = temporary_path(opt.out);
  if (fs::exists(out)) fail(opt.out, "exists", "--tp writes a new folder");
  fs::remove_all(tmp);
  try {
    fs::create_directories(tmp);
    for (int r = 0; r < opt.tp; ++r) {
      CpkWriteOptions c;
      c.zstd_level = opt.zstd_level;
      c.provenance_json = json{{"tensor_parallel", {{"rank", r}, {"of", opt.tp}, {"source", in}}}}.dump();
      save_cpk(ranks[size_t(r)], (tmp / files[size_t(r)].get<std::string>()).string(), c);
    }
    if (!tok_file.empty()) {
      if (l2c && !fs::is_regular_file(lm.tokenizer_path)) write_file_atomically((tmp / tok_file).string(), llama2c_tokenizer_bytes(*l2c));
      else fs::copy_file(lm.tokenizer_path, tmp / tok_file);
    }
    write_file_atomically((tmp / kTpManifest).string(), man.dump(2) + "\n");
    fs::rename(tmp, out);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  return man;
}

}  // namespace

json convert_model(const std::string& in, const ConvertOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  if (opt.to != "gguf" && opt.to != "cpk" && opt.to != "hf" && opt.to != "compressed-tensors") {
    fail("--to", "'" + opt.to + "' is not a format condense writes", "Use gguf, cpk, hf or compressed-tensors");
  }
  if (opt.max_shard_bytes && opt.to != "hf" && opt.to != "compressed-tensors") fail("--max-shard-size", "applies to hf and compressed-tensors folders");
  if (opt.out.empty() && !opt.dry_run) fail("--out", "an output path is required");
  if (!opt.out.empty() && fs::exists(opt.out) && fs::equivalent(opt.out, in)) fail(opt.out, "is the input itself", "Write the conversion elsewhere");
  int gguf_type = -1;
  if (opt.to == "gguf" && opt.gguf_type != "auto") gguf_type = int(ggml::writable_type_from_name(opt.gguf_type));
  const DType hf_dtype = dtype_from_name(opt.hf_dtype);
  if ((opt.to == "hf" || opt.to == "compressed-tensors") && hf_dtype != DType::F32 && hf_dtype != DType::BF16 && hf_dtype != DType::F16) {
    fail("--dtype", "'" + opt.hf_dtype + "' is not a safetensors dtype condense writes", "Use bf16, f16 or f32");
  }

  // GGUF, hf and compressed-tensors writers decode packed weights one at a
  // time, so a .cpk stays packed in memory; a .cpk writer and a split take
  // the f32 values.
  const bool packed_only = opt.to != "cpk" && !opt.merge && opt.tp <= 1;
  // A .cpk going to GGUF, hf or compressed-tensors is streamed: one weight in
  // memory at a time (read once to plan, once to write).
  LoadedModel lm;
  std::unique_ptr<WeightSource> stream;
  if (packed_only && is_cpk(in)) stream = open_cpk_stream(in, lm);
  else lm = open_input(in, opt, !packed_only);
  if (!stream) stream = std::make_unique<ModelWeights>(lm.model);
  WeightSource* src = stream.get();
  Model& m = lm.model;
  json r = {{"input", in}, {"input_format", m.format}, {"to", opt.to}, {"output", opt.out}, {"dry_run", opt.dry_run},
            {"config", m.config.summary()}};
  const auto* l2c = dynamic_cast<const Llama2cTokenizer*>(lm.tokenizer.get());
  json notes = json::array();
  if (opt.tp > 1) {
    if (opt.to != "cpk") fail("--tp", "writes its ranks as .cpk files", "Use --to cpk (convert a merged model to other formats)");
    const json man = write_tp(lm, in, opt);
    r["tp"] = opt.tp;
    r["ranks"] = man["ranks"];
    r["split"] = man["split"];
    r["tensors"] = tensor_list(m, "", *src);
  } else if (opt.to == "gguf") {
    GgufWriteOptions g;
    g.type = gguf_type;
    const std::string problem = lm.tokenizer ? gguf_tokenizer_problem(*lm.tokenizer) : lm.tokenizer_note;
    if (problem.empty()) g.tokenizer = lm.tokenizer.get();
    else notes.push_back("tokenizer not embedded: " + problem);
    g.chat_template = lm.chat_template;
    g.name = fs::path(in).filename().string();
    r["gguf_type"] = opt.gguf_type;
    const std::vector<GgufTensorPlan> plan = opt.dry_run ? plan_gguf(m, g, src) : save_gguf(m, opt.out, g, src);
    r["tensors"] = plan_json(plan, !opt.dry_run);
    // The plan names each source encoding ("... sparse"): no pass of its own.
    for (const GgufTensorPlan& p : plan) {
      if (p.source.ends_with(" sparse")) {
        notes.push_back("GGUF has no sparse encoding: pruned weights are written as stored zeros");
        break;
      }
    }
  } else if (opt.to == "cpk") {
    CpkWriteOptions c;
    c.zstd_level = opt.zstd_level;
    if (!lm.tokenizer_path.empty() && fs::is_regular_file(lm.tokenizer_path)) c.tokenizer_path = lm.tokenizer_path;
    else if (l2c) {
      c.tokenizer_bytes = llama2c_tokenizer_bytes(*l2c);
      c.tokenizer_file = "tokenizer.bin";
    } else {
      notes.push_back(lm.tokenizer ? "tokenizer not embedded: its file is not at hand (" + lm.tokenizer_path + ")" : "tokenizer not embedded: " + lm.tokenizer_note);
    }
    c.provenance_json = json{{"converted_from", {{"path", in}, {"format", m.format}}}}.dump();
    r["tensors"] = tensor_list(m, "", *src);
    if (!opt.dry_run) save_cpk(m, opt.out, c);
  } else {
    // A Hugging Face folder: dense weights (hf) or vLLM's compressed-tensors.
    const bool ct = opt.to == "compressed-tensors";
    r["dtype"] = opt.hf_dtype;
    std::vector<SafetensorsItem> items;
    std::string qc;
    if (ct) {
      CompressedTensorsExport ex = plan_compressed_tensors(m, hf_dtype, src);
      items = std::move(ex.items);
      qc = ex.quantization_config;
      for (const std::string& n : ex.notes) notes.push_back(n);
      json tensors = json::array();
      for (const auto& t : ex.tensors) {
        json e(t);
        if (e["note"] == "") e.erase("note");
        tensors.push_back(e);
      }
      r["tensors"] = tensors;
      r["quantization_config"] = json::parse(qc);
    } else {
      r["tensors"] = tensor_list(m, hf_dtype == DType::F32 ? "" : opt.hf_dtype, *src);
      bool packed = false;
      for (const auto& t : r["tensors"]) packed = packed || t["source"] != "f32";
      if (packed) notes.push_back("quantized weights are written dequantized (their effective values) as " + opt.hf_dtype);
      const size_t es = hf_dtype == DType::F32 ? 4 : 2;
      for_each_weight(m, [&](const WeightRef& w) {
        const int64_t n = shape_numel(w.shape), rows = w.shape[0];
        items.push_back({w.name, hf_dtype == DType::F32 ? "F32" : hf_dtype == DType::F16 ? "F16" : "BF16", w.shape, uint64_t(n) * es,
                         [src, w, n, rows, es, hf_dtype](std::vector<uint8_t>& out) {
                           const WeightView view = src->get(w);
                           const Tensor* t = view.values;
                           const WeightCompression* wc = view.packed;
                           std::vector<float> eff;
                           const float* v = t && t->defined() ? t->f32() : nullptr;
                           if (!v) {  // a packed weight of a .cpk: its effective values, decoded now
                             eff.resize(size_t(n));
                             dequantize(*wc, rows, n / rows, eff.data());
                             v = eff.data();
                           }
                           out.resize(size_t(n) * es);
                           convert_from_f32(v, hf_dtype, out.data(), n);
                         }});
      });
    }
    std::string tokenizer_file;
    if (!lm.tokenizer_path.empty() && fs::is_regular_file(lm.tokenizer_path) &&
        (fs::path(lm.tokenizer_path).filename() == "tokenizer.json" || fs::path(lm.tokenizer_path).filename() == "tokenizer.model")) {
      tokenizer_file = fs::path(lm.tokenizer_path).filename().string();
      r["tokenizer_file"] = tokenizer_file;
    } else if (l2c) {
      r["tokenizer_file"] = "tokenizer.json";
      notes.push_back("tokenizer.json and tokenizer_config.json written from the " + lm.tokenizer->kind() +
                      " tokenizer (BPE with byte fallback, merges ranked by score)");
    } else {
      notes.push_back("tokenizer not written: transformers reads tokenizer.json or tokenizer.model, and this model's tokenizer is " +
                      (lm.tokenizer ? lm.tokenizer->kind() + " (" + lm.tokenizer_path + ")" : lm.tokenizer_note));
    }
    uint64_t total = 0;
    for (const auto& it : items) total += it.nbytes;
    r["tensor_bytes"] = total;
    if (!opt.dry_run) {
      // Written under a temporary name, then renamed: a new folder appears
      // complete or not at all; into an existing folder the files are renamed
      // over and weight files of an earlier export that this one does not
      // write are removed (the loader would otherwise mix them in).
      const fs::path out(opt.out), tmp = temporary_path(opt.out);
      if (fs::exists(out) && !fs::is_directory(out)) fail(opt.out, "exists and is not a folder");
      fs::remove_all(tmp);
      try {
        fs::create_directories(tmp);
        const std::vector<std::string> files =
            write_safetensors_shards(tmp.string(), items, opt.max_shard_bytes, {{"format", "pt"}, {"condense.converted_from", in}});
        r["files"] = files;
        json cfg = json::parse(hf_config_json(m.config, hf_dtype == DType::F32 ? "float32" : hf_dtype == DType::BF16 ? "bfloat16" : "float16"));
        if (ct) cfg["quantization_config"] = json::parse(qc);
        write_file_atomically((tmp / "config.json").string(), cfg.dump(2) + "\n");
        if (!tokenizer_file.empty()) fs::copy_file(lm.tokenizer_path, tmp / tokenizer_file);
        else if (l2c) {
          write_file_atomically((tmp / "tokenizer.json").string(), hf_tokenizer_json_from_llama2c(*l2c, m.config.bos_id, m.config.eos_id));
          write_file_atomically((tmp / "tokenizer_config.json").string(), hf_tokenizer_config_json(*l2c, m.config.bos_id, m.config.eos_id, m.config.max_seq));
        }
        if (!lm.chat_template.empty()) write_file_atomically((tmp / "chat_template.jinja").string(), lm.chat_template);
        if (!fs::exists(out)) {
          fs::rename(tmp, out);
        } else {
          for (const auto& e : fs::directory_iterator(tmp)) fs::rename(e.path(), out / e.path().filename());
          fs::remove(tmp);
          for (const auto& e : fs::directory_iterator(out)) {
            const std::string f = e.path().filename().string();
            const bool weights = f.rfind("model", 0) == 0 && (f.ends_with(".safetensors") || f == "model.safetensors.index.json");
            if (weights && std::find(files.begin(), files.end(), f) == files.end()) {
              fs::remove(e.path());
              notes.push_back("removed " + f + " of an earlier export from " + opt.out);
            }
          }
        }
      } catch (...) {
        std::error_code ec;
        fs::remove_all(tmp, ec);
        throw;
      }
    }
  }
  r["notes"] = notes;
  if (!opt.dry_run) {
    r["output_bytes"] = fs::is_directory(opt.out) ? uint64_t(0) : uint64_t(fs::file_size(opt.out));
    if (fs::is_directory(opt.out)) {
      uint64_t total = 0;
      for (const auto& e : fs::directory_iterator(opt.out)) total += e.is_regular_file() ? e.file_size() : 0;
      r["output_bytes"] = total;
    }
    r["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r["peak_rss_bytes"] = peak_rss_bytes();
    if (!opt.text.empty()) {
      if (opt.tp > 1) fail("--text", "measures a single output model, not tensor-parallel ranks");
      if (packed_only) lm = open_input(in, opt, false);
      r["quality"] = quality(lm, opt.out, opt);
    }
  }
  return r;
}

}  // namespace condense::pipeline
