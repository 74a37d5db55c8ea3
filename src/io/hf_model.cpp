#include "io/hf_model.h"

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/json_text.h"
#include <set>

#include "io/atomic_writer.h"
#include "io/compressed_tensors.h"
#include "io/file_view.h"
#include "io/safetensors.h"

namespace condense {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

template <typename T>
T get_field(const json& j, const char* key, const std::string& where, T fallback, bool required) {
  if (!j.contains(key) || j[key].is_null()) {
    if (required) fail(where, std::string("config field '") + key + "' is missing");
    return fallback;
  }
  const json& v = j[key];
  if constexpr (std::is_same_v<T, int>) {
    // Range-checked: get<int>() would wrap 2^32 + 8 to 8.
    return int(json_int(v, where, key, INT32_MIN, INT32_MAX));
  } else {
    const bool ok = std::is_same_v<T, bool> ? v.is_boolean() : std::is_floating_point_v<T> ? v.is_number() : v.is_string();
    if (!ok) fail(where, std::string("config field '") + key + "' has the wrong type: " + json_snippet(v));
    return v.get<T>();
  }
}

}  // namespace

ModelConfig parse_hf_config(const std::string& text, const std::string& where) {
  const json j = parse_json(text, where);
  if (!j.is_object()) fail(where, "config.json is not a JSON object");
  ModelConfig c;
  const std::string type = get_field<std::string>(j, "model_type", where, "", true);
  if (type != "llama" && type != "mistral" && type != "qwen2") {
    fail(where, "config field 'model_type' is '" + type + "'", "condense supports llama, mistral and qwen2 so far");
  }
  const std::string act = get_field<std::string>(j, "hidden_act", where, "silu", false);
  if (act != "silu") fail(where, "config field 'hidden_act' is '" + act + "'; only silu (SwiGLU) is supported");
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    fail(where, "config field 'rope_scaling' is set (" + j["rope_scaling"].dump() + ")", "RoPE scaling is not supported yet");
  }
  if (get_field<bool>(j, "mlp_bias", where, false, false)) fail(where, "config field 'mlp_bias' is true; MLP biases are not supported");
  c.dim = get_field<int>(j, "hidden_size", where, 0, true);
  c.n_layers = get_field<int>(j, "num_hidden_layers", where, 0, true);
  c.n_heads = get_field<int>(j, "num_attention_heads", where, 0, true);
  c.n_kv_heads = get_field<int>(j, "num_key_value_heads", where, c.n_heads, false);
  c.head_dim = get_field<int>(j, "head_dim", where, c.n_heads > 0 ? c.dim / c.n_heads : 0, false);
  c.ffn_dim = get_field<int>(j, "intermediate_size", where, 0, true);
  c.vocab = get_field<int>(j, "vocab_size", where, 0, true);
  c.max_seq = get_field<int>(j, "max_position_embeddings", where, 2048, false);
  c.rope_theta = get_field<float>(j, "rope_theta", where, 10000.f, false);
  c.norm_eps = get_field<float>(j, "rms_norm_eps", where, 1e-6f, false);
  c.tied_embeddings = get_field<bool>(j, "tie_word_embeddings", where, false, false);
  c.qkv_bias = type == "qwen2" || get_field<bool>(j, "attention_bias", where, false, false);
  auto first_id = [&](const char* key, int fallback) {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    const json& v = j[key].is_array() && !j[key].empty() ? j[key][0] : j[key];
    return int(json_int(v, where, key, 0, INT32_MAX));  // validate() checks it against the vocabulary
  };
  c.bos_id = first_id("bos_token_id", 1);
  c.eos_id = first_id("eos_token_id", 2);
  if (type == "mistral" || type == "qwen2") {
    const bool sliding = type == "mistral" || get_field<bool>(j, "use_sliding_window", where, false, false);
    const int window = get_field<int>(j, "sliding_window", where, 0, false);
    if (sliding && window > 0 && window < c.max_seq) c.max_seq = window;  // identical attention within the window
  }
  c.validate(where);
  return c;
}

std::string hf_config_json(const ModelConfig& c, const std::string& torch_dtype) {
  json j = {{"architectures", {c.qkv_bias ? "Qwen2ForCausalLM" : "LlamaForCausalLM"}},
            {"model_type", c.qkv_bias ? "qwen2" : "llama"},
            {"hidden_size", c.dim},
            {"num_hidden_layers", c.n_layers},
            {"num_attention_heads", c.n_heads},
            {"num_key_value_heads", c.n_kv_heads},
            {"head_dim", c.head_dim},
            {"intermediate_size", c.ffn_dim},
            {"vocab_size", c.vocab},
            {"max_position_embeddings", c.max_seq},
            {"rope_theta", c.rope_theta},
            {"rms_norm_eps", c.norm_eps},
            {"tie_word_embeddings", c.tied_embeddings},
            {"hidden_act", "silu"},
            {"bos_token_id", c.bos_id},
            {"eos_token_id", c.eos_id},
            {"torch_dtype", torch_dtype}};
  return j.dump(2) + "\n";
}

Model load_hf_model(const std::string& dir) {
  const std::string cfg_path = (fs::path(dir) / "config.json").string();
  if (!fs::exists(cfg_path)) fail(dir, "no config.json", "Pass a Hugging Face model folder");
  Model m;
  m.config = parse_hf_config(read_text_file(cfg_path), cfg_path);
  m.format = "hf-safetensors";
  m.path = dir;

  // name -> shard holding it
  std::vector<std::unique_ptr<SafetensorsFile>> shards;
  std::map<std::string, const SafetensorsFile*> where;
  const fs::path single = fs::path(dir) / "model.safetensors", index = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(single)) {
    shards.push_back(std::make_unique<SafetensorsFile>(single.string()));
  } else if (fs::exists(index)) {
    const json j = parse_json(read_text_file(index.string()), index.string());
    if (!j.contains("weight_map") || !j["weight_map"].is_object()) fail(index.string(), "no 'weight_map' object");
    std::map<std::string, const SafetensorsFile*> opened;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it->is_string()) fail(index.string(), "weight_map." + it.key() + " is not a file name");
      const std::string file = it->get<std::string>();
      if (file.find('/') != std::string::npos) fail(index.string(), "weight_map." + it.key() + " names a path outside the folder");
      if (!opened.count(file)) {
        shards.push_back(std::make_unique<SafetensorsFile>((fs::path(dir) / file).string()));
        opened[file] = shards.back().get();
      }
    }
  } else {
    fail(dir, "no model.safetensors or model.safetensors.index.json", "Only safetensors weights are read (not PyTorch .bin)");
  }
  for (const auto& s : shards) {
    if (auto it = s->metadata().find("condense.random_init"); it != s->metadata().end() && it->second == "true") m.random_init = true;
    for (const auto& [name, e] : s->entries()) {
      if (where.count(name)) fail(s->path(), "tensor '" + name + "' also appears in " + where[name]->path());
      where[name] = s.get();
    }
  }
  std::set<std::string> used;
  // A compressed-tensors checkpoint (vLLM's): its quantized linears keep their codes.
  const json cfg_json = parse_json(read_text_file(cfg_path), cfg_path);
  json qc = cfg_json.contains("quantization_config") ? cfg_json["quantization_config"] : json(nullptr);
  if (!qc.is_null()) {
    if (!qc.is_object()) fail(cfg_path, "quantization_config is not an object");
    const std::string method = qc.value("quant_method", "");
    if (method != "compressed-tensors") {
      fail(cfg_path, "quantization_config.quant_method '" + method + "' is not read", "condense reads compressed-tensors checkpoints (and GGUF)");
    }
  }
  auto stored = [&](const std::string& name) -> StoredTensor {
    auto it = where.find(name);
    if (it == where.end()) return {nullptr, nullptr};
    used.insert(name);
    return {it->second, &it->second->entries().at(name)};
  };
  for_each_weight(m, [&](const WeightRef& w) {
    if (!qc.is_null() && w.kind == WeightKind::Linear && read_compressed_linear(qc, w.name, w.shape[0], w.shape[1], stored, m, *w.tensor)) {
      m.source_encodings[w.name] = m.compression.at(w.name).scheme.describe();
      return;
    }
    auto it = where.find(w.name);
    if (it == where.end()) fail(dir, "tensor '" + w.name + "' is missing", "The safetensors files do not match config.json");
    const SafetensorsEntry& e = it->second->entries().at(w.name);
    if (e.shape != w.shape) {
      fail(it->second->path(), "tensor '" + w.name + "' has shape " + shape_str(e.shape) + " but config.json implies " + shape_str(w.shape));
    }
    *w.tensor = it->second->read_f32(w.name);
    m.source_dtypes[w.name] = e.dtype;
    used.insert(w.name);
  });
  if (!qc.is_null()) read_compressed_extras(qc, stored, m);
  for (const auto& [name, s] : where) {
    if (used.count(name)) continue;
    if (name.find("rotary_emb.inv_freq") != std::string::npos) continue;  // a cache some exporters save
    if (name == "lm_head.weight" && m.config.tied_embeddings) continue;
    fail(s->path(), "unexpected tensor '" + name + "'", "This architecture variant is not supported");
  }
  return m;
}

void save_hf_model(const Model& model, const std::string& dir, DType dtype, const std::map<std::string, std::string>& metadata) {
  if (dtype != DType::F32 && dtype != DType::BF16 && dtype != DType::F16) {
    fail(dir, std::string("cannot save weights as ") + name(dtype), "Use f32, bf16 or f16");
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(dir, "cannot create folder: " + ec.message());
  std::vector<std::pair<std::string, Tensor>> tensors;
  for_each_weight(model, [&](const WeightRef& w) { tensors.emplace_back(w.name, w.tensor->to(dtype)); });
  save_safetensors((fs::path(dir) / "model.safetensors").string(), tensors, metadata);
  AtomicWriter cw((fs::path(dir) / "config.json").string());
  const std::string cfg = hf_config_json(model.config, dtype == DType::F32 ? "float32" : dtype == DType::BF16 ? "bfloat16" : "float16");
  cw.write(cfg.data(), cfg.size());
  cw.commit();
}

}  // namespace condense
