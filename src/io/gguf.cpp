#include "io/gguf.h"

#include <nlohmann/json.hpp>

#include "core/json_text.h"
#include "io/atomic_writer.h"
#include "io/file_view.h"
#include "model/rope_layout.h"
#include "model/text_codec.h"

namespace condense {
namespace {

using json = nlohmann::json;

enum ValueType : uint32_t { U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 };
constexpr uint64_t kScalarSize[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

// ggml's types: name, elements per block and bytes per block (ggml.c's
// type_traits; 4, 5 and 31..33, 36..38 were removed from ggml and are refused).
struct GgmlType { const char* name; uint32_t block; uint32_t bytes; };
constexpr GgmlType kGgmlTypes[] = {
    {"F32", 1, 4},        {"F16", 1, 2},       {"Q4_0", 32, 18},    {"Q4_1", 32, 20},    {nullptr, 0, 0},     {nullptr, 0, 0},
    {"Q5_0", 32, 22},     {"Q5_1", 32, 24},    {"Q8_0", 32, 34},    {"Q8_1", 32, 36},    {"Q2_K", 256, 84},   {"Q3_K", 256, 110},
    {"Q4_K", 256, 144},   {"Q5_K", 256, 176},  {"Q6_K", 256, 210},  {"Q8_K", 256, 292},  {"IQ2_XXS", 256, 66}, {"IQ2_XS", 256, 74},
    {"IQ3_XXS", 256, 98}, {"IQ1_S", 256, 50},  {"IQ4_NL", 32, 18},  {"IQ3_S", 256, 110}, {"IQ2_S", 256, 82},  {"IQ4_XS", 256, 136},
    {"I8", 1, 1},         {"I16", 1, 2},       {"I32", 1, 4},       {"I64", 1, 8},       {"F64", 1, 8},       {"IQ1_M", 256, 56},
    {"BF16", 1, 2},       {nullptr, 0, 0},     {nullptr, 0, 0},     {nullptr, 0, 0},     {"TQ1_0", 256, 54},  {"TQ2_0", 256, 66},
    {nullptr, 0, 0},      {nullptr, 0, 0},     {nullptr, 0, 0},     {"MXFP4", 32, 17}};
const GgmlType* ggml_type(uint32_t t) {
  return t < sizeof(kGgmlTypes) / sizeof(kGgmlTypes[0]) && kGgmlTypes[t].name ? &kGgmlTypes[t] : nullptr;
}
const char* ggml_type_name(uint32_t t) { return ggml_type(t) ? ggml_type(t)->name : "unknown"; }
constexpr uint32_t kGgmlF32 = 0, kGgmlF16 = 1, kGgmlBF16 = 30;

// Canonical (HF) name -> GGUF name.
std::string gguf_name(const std::string& hf) {
  static const std::pair<const char*, const char*> kMap[] = {
      {"input_layernorm.weight", "attn_norm.weight"},   {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},     {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.q_proj.bias", "attn_q.bias"},         {"self_attn.k_proj.bias", "attn_k.bias"},
      {"self_attn.v_proj.bias", "attn_v.bias"},         {"self_attn.o_proj.weight", "attn_output.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"}, {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},          {"mlp.down_proj.weight", "ffn_down.weight"}};
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  const std::string pre = "model.layers.";
  const size_t dot = hf.find('.', pre.size());
  const std::string layer = hf.substr(pre.size(), dot - pre.size()), rest = hf.substr(dot + 1);
  for (const auto& [a, b] : kMap) {
    if (rest == a) return "blk." + layer + "." + b;
  }
  return "";
}

// A bounds-checked cursor over the file.
struct Cursor {
  const FileView& f;
  uint64_t off = 0;
  template <typename T>
  T get(const std::string& what) {
    T v = f.read<T>(off, what);
    off += sizeof(T);
    return v;
  }
  std::string str(const std::string& what) {
    const uint64_t n = get<uint64_t>(what + " length");
    f.require(off, n, what);
    std::string s(reinterpret_cast<const char*>(f.data() + off), size_t(n));
    off += n;
    return s;
  }
  json scalar(uint32_t type, const std::string& what) {
    switch (type) {
      case U8: return get<uint8_t>(what);
      case I8: return get<int8_t>(what);
      case U16: return get<uint16_t>(what);
      case I16: return get<int16_t>(what);
      case U32: return get<uint32_t>(what);
      case I32: return get<int32_t>(what);
      case F32: return get<float>(what);
      case BOOL: return get<uint8_t>(what) != 0;
      case STRING: return str(what);
      case U64: return get<uint64_t>(what);
      case I64: return get<int64_t>(what);
      case F64: return get<double>(what);
      default: fail(f.path(), what + " has unknown value type " + std::to_string(type) + " at byte " + std::to_string(off));
    }
  }
  json value(uint32_t type, const std::string& what) {
    if (type != ARRAY) return scalar(type, what);
    const uint32_t et = get<uint32_t>(what + " element type");
    const uint64_t n = get<uint64_t>(what + " element count");
    if (et == ARRAY) fail(f.path(), what + " is a nested array, which GGUF models do not use");
    if (et > F64) fail(f.path(), what + " has unknown element type " + std::to_string(et));
    const uint64_t min_size = et == STRING ? 8 : kScalarSize[et];
    if (n > (f.size() - off) / min_size) fail(f.path(), what + " claims " + std::to_string(n) + " elements, more than the file holds");
    json a = json::array();
    for (uint64_t i = 0; i < n; ++i) a.push_back(scalar(et, what));
    return a;
  }
};

struct TensorInfo {
  std::vector<uint64_t> dims;  // innermost first
  uint32_t type;
  uint64_t offset;             // from the data section's start
  uint64_t nbytes;
};

}  // namespace

// Reading rules (as strict as llama.cpp's gguf_init_from_file): version 3;
// counts bounded by the file; no duplicate metadata key or tensor name; every
// tensor of a known ggml type, 1..4 dimensions, a row length that is a whole
// number of blocks, and its element and byte counts without overflow; tensor
// data packed in the order of the infos, each at the running offset rounded up
// to general.alignment, inside the file; metadata integers range-checked into
// the config; exactly the tensors the metadata's architecture calls for (one
// left over, e.g. a layer beyond block_count, is refused, not ignored).
namespace {

GgufModel read_gguf(const std::string& path, bool config_only) {
  FileView f(path);
  Cursor c{f};
  if (f.size() < 4 || std::memcmp(f.data(), "GGUF", 4) != 0) fail(path, "missing the GGUF magic", "Not a GGUF file");
  c.off = 4;
  const uint32_t version = c.get<uint32_t>("version");
  if (version != 3) fail(path, "GGUF version " + std::to_string(version) + " is not supported", "condense reads GGUF v3; re-convert with a current llama.cpp");
  const uint64_t n_tensors = c.get<uint64_t>("tensor count"), n_kv = c.get<uint64_t>("metadata count");
  // Each metadata pair takes at least 8 + 4 + 1 bytes and each tensor info 8 + 4 + 8 + 4 + 8.
  if (n_kv > f.size() / 13 || n_tensors > f.size() / 32) {
    fail(path, "claims " + std::to_string(n_tensors) + " tensors and " + std::to_string(n_kv) + " metadata pairs, more than its " +
                   std::to_string(f.size()) + " bytes can hold",
         "The file is corrupted");
  }
  json meta = json::object();
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string key = c.str("metadata key " + std::to_string(i));
    const uint32_t type = c.get<uint32_t>("type of " + key);
    if (meta.contains(key)) fail(path, "metadata key '" + key + "' appears twice");
    meta[key] = c.value(type, key);
  }
  std::map<std::string, TensorInfo> infos;
  std::vector<std::string> order;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    const std::string name = c.str("tensor name " + std::to_string(i));
    if (infos.count(name)) fail(path, "tensor '" + name + "' appears twice");
    TensorInfo t;
    const uint32_t nd = c.get<uint32_t>(name + " n_dims");
    if (nd == 0 || nd > 4) fail(path, "tensor '" + name + "' has " + std::to_string(nd) + " dimensions");
    uint64_t numel = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      const uint64_t v = c.get<uint64_t>(name + " dims");
      if (v > uint64_t(INT64_MAX) || __builtin_mul_overflow(numel, v, &numel) || numel > uint64_t(INT64_MAX)) {
        fail(path, "tensor '" + name + "' has an element count that overflows 63 bits");
      }
      t.dims.push_back(v);
    }
    t.type = c.get<uint32_t>(name + " type");
    const GgmlType* gt = ggml_type(t.type);
    if (!gt) fail(path, "tensor '" + name + "' has unknown ggml type " + std::to_string(t.type));
    if (t.dims[0] % gt->block) {
      fail(path, "tensor '" + name + "' has rows of " + std::to_string(t.dims[0]) + " elements, not a multiple of " + gt->name + "'s block of " +
                     std::to_string(gt->block));
    }
    t.nbytes = numel / gt->block * gt->bytes;
    if (numel / gt->block > UINT64_MAX / gt->bytes) fail(path, "tensor '" + name + "' has a byte count that overflows");
    t.offset = c.get<uint64_t>(name + " offset");
    infos[name] = t;
    order.push_back(name);
  }
  auto meta_get = [&](const std::string& key, auto fallback, bool required) -> decltype(fallback) {
    if (!meta.contains(key)) {
      if (required) fail(path, "metadata key '" + key + "' is missing");
      return fallback;
    }
    const json& v = meta[key];
    if constexpr (std::is_same_v<decltype(fallback), std::string>) {
      if (!v.is_string()) fail(path, "metadata key '" + key + "' must be a string, got " + json_snippet(v));
    } else if constexpr (std::is_floating_point_v<decltype(fallback)>) {
      if (!v.is_number()) fail(path, "metadata key '" + key + "' must be a number, got " + json_snippet(v));
    } else if constexpr (std::is_same_v<decltype(fallback), bool>) {
      if (!v.is_boolean()) fail(path, "metadata key '" + key + "' must be a bool, got " + json_snippet(v));
    }
    return v.get<decltype(fallback)>();
  };
  // An integer key, range-checked: a value that does not fit is refused, never truncated.
  auto meta_int = [&](const std::string& key, int64_t fallback, int64_t lo, int64_t hi, bool required) -> int64_t {
    if (!meta.contains(key)) {
      if (required) fail(path, "metadata key '" + key + "' is missing");
      return fallback;
    }
    return json_int(meta[key], path, key, lo, hi);
  };
  const uint64_t alignment = uint64_t(meta_int("general.alignment", 32, 1, 1 << 16, false));
  if (alignment & (alignment - 1)) fail(path, "general.alignment " + std::to_string(alignment) + " is not a power of two");
  const uint64_t data_start = (c.off + alignment - 1) / alignment * alignment;
  if (data_start > f.size()) fail(path, "data section starts past the end of the file", "The file is truncated");
  // The data: each tensor where the previous one ended, rounded up to the
  // alignment (so no two overlap and none is shifted), and inside the file.
  uint64_t expect = 0;
  for (const std::string& name : order) {
    const TensorInfo& t = infos[name];
    if (t.offset != expect) {
      fail(path, "tensor '" + name + "' starts at byte " + std::to_string(t.offset) + " of the data section, expected " + std::to_string(expect) +
                     " (tensors are stored in order, each aligned to " + std::to_string(alignment) + ")",
           "The file is corrupted: its tensors overlap, leave gaps or are out of order");
    }
    if (t.nbytes > f.size() - data_start - t.offset) {
      fail(path, "tensor '" + name + "' (bytes " + std::to_string(t.offset) + ".." + std::to_string(t.offset + t.nbytes) +
                     " of the data section) runs past the end of the file",
           "The file is truncated");
    }
    expect = (t.offset + t.nbytes + alignment - 1) / alignment * alignment;
  }
  const std::string arch = meta_get("general.architecture", std::string(), true);
  if (arch != "llama") fail(path, "GGUF architecture '" + arch + "' is not supported", "condense reads the 'llama' architecture");
  if (meta_get("llama.expert_count", uint64_t(0), false) > 0) fail(path, "mixture-of-experts models (llama.expert_count) are not supported");
  const std::string scaling = meta_get("llama.rope.scaling.type", std::string("none"), false);
  if (scaling != "none") fail(path, "metadata 'llama.rope.scaling.type' is '" + scaling + "'", "RoPE scaling is not supported yet");

  GgufModel g;
  Model& m = g.model;
  ModelConfig& cfg = m.config;
  auto meta_dim = [&](const std::string& key, int64_t fallback, int limit, bool required) {
    return int(meta_int(key, fallback, 1, limit, required));
  };
  cfg.dim = meta_dim("llama.embedding_length", 0, kMaxDim, true);
  cfg.n_layers = meta_dim("llama.block_count", 0, kMaxLayers, true);
  cfg.n_heads = meta_dim("llama.attention.head_count", 0, kMaxHeads, true);
  cfg.n_kv_heads = meta_dim("llama.attention.head_count_kv", cfg.n_heads, kMaxHeads, false);
  cfg.ffn_dim = meta_dim("llama.feed_forward_length", 0, kMaxFfn, true);
  cfg.max_seq = meta_dim("llama.context_length", 2048, kMaxSeq, false);
  cfg.rope_theta = meta_get("llama.rope.freq_base", 10000.0f, false);
  cfg.norm_eps = meta_get("llama.attention.layer_norm_rms_epsilon", 1e-5f, false);
  cfg.head_dim = meta_dim("llama.attention.key_length", meta_dim("llama.rope.dimension_count", cfg.dim / cfg.n_heads, kMaxHeadDim, false),
                          kMaxHeadDim, false);
  auto emb = infos.find("token_embd.weight");
  if (emb == infos.end() || emb->second.dims.size() != 2) fail(path, "tensor 'token_embd.weight' is missing or not 2-D");
  if (emb->second.dims[1] < 1 || emb->second.dims[1] > uint64_t(kMaxVocab)) fail(path, "tensor 'token_embd.weight' has " + std::to_string(emb->second.dims[1]) + " rows (vocabulary), out of range");
  cfg.vocab = int(emb->second.dims[1]);
  cfg.tied_embeddings = !infos.count("output.weight");
  cfg.qkv_bias = infos.count("blk.0.attn_q.bias") != 0;
  cfg.bos_id = int(meta_int("tokenizer.ggml.bos_token_id", 1, 0, cfg.vocab - 1, false));
  cfg.eos_id = int(meta_int("tokenizer.ggml.eos_token_id", 2, 0, cfg.vocab - 1, false));
  cfg.validate(path);
  m.format = "gguf";
  m.path = path;
  if (config_only) return g;

  // Every tensor the config calls for, with its shape and a type condense
  // reads, and nothing else, checked before any weight is allocated.
  std::map<std::string, DType> dtypes;
  for_each_weight(m, [&](const WeightRef& w) {
    const std::string gn = gguf_name(w.name);
    auto it = infos.find(gn);
    if (it == infos.end()) fail(path, "tensor '" + gn + "' (" + w.name + ") is missing");
    const TensorInfo& t = it->second;
    const std::vector<int64_t> sh(t.dims.rbegin(), t.dims.rend());
    if (sh != w.shape) fail(path, "tensor '" + gn + "' has shape " + shape_str(sh) + " but the metadata implies " + shape_str(w.shape));
    if (t.type == kGgmlF32) dtypes[gn] = DType::F32;
    else if (t.type == kGgmlF16) dtypes[gn] = DType::F16;
    else if (t.type == kGgmlBF16) dtypes[gn] = DType::BF16;
    else {
      fail(path, "tensor '" + gn + "' has ggml type " + ggml_type_name(t.type) + " (" + std::to_string(t.type) + "), which condense does not read yet",
           "Supported: F32, F16, BF16; re-convert the model without quantization (e.g. --outtype f16)");
    }
  });
  for (const std::string& name : order) {
    if (name == "rope_freqs.weight") fail(path, "tensor 'rope_freqs.weight' (RoPE frequency factors, e.g. Llama 3.1's) is present", "RoPE scaling is not supported yet");
    if (!dtypes.count(name)) {
      fail(path, "tensor '" + name + "' is not part of the model the metadata describes (" + cfg.summary() + ")",
           "The file is corrupted, or its architecture variant is not supported");
    }
  }
  allocate_weights(m);
  std::vector<float> tmp;
  for_each_weight(m, [&](const WeightRef& w) {
    const std::string gn = gguf_name(w.name);
    const TensorInfo& t = infos.at(gn);
    const DType dt = dtypes.at(gn);
    const uint8_t* src = f.data() + data_start + t.offset;
    const bool rope = gn.find("attn_q.weight") != std::string::npos || gn.find("attn_k.weight") != std::string::npos;
    if (!rope) {
      convert_to_f32(dt, src, w.tensor->f32(), w.tensor->numel());
    } else {
      tmp.resize(size_t(w.tensor->numel()));
      convert_to_f32(dt, src, tmp.data(), w.tensor->numel());
      const int heads = gn.find("attn_q") != std::string::npos ? cfg.n_heads : cfg.n_kv_heads;
      rope_rows_interleaved_to_half(tmp.data(), heads, cfg.head_dim, cfg.dim, w.tensor->f32());
    }
    m.source_dtypes[w.name] = dt;
  });

  g.chat_template = meta_get("tokenizer.chat_template", std::string(), false);
  const std::string tok_model = meta_get("tokenizer.ggml.model", std::string(), false);
  if (tok_model == "llama") {
    const json& toks = meta.contains("tokenizer.ggml.tokens") ? meta["tokenizer.ggml.tokens"] : json();
    const json& scores = meta.contains("tokenizer.ggml.scores") ? meta["tokenizer.ggml.scores"] : json();
    if (!toks.is_array() || !scores.is_array() || toks.size() != scores.size()) {
      fail(path, "tokenizer.ggml.tokens and tokenizer.ggml.scores must be arrays of equal length");
    }
    if (toks.size() != size_t(cfg.vocab)) {
      fail(path, "tokenizer.ggml.tokens has " + std::to_string(toks.size()) + " tokens but token_embd.weight has " + std::to_string(cfg.vocab) + " rows");
    }
    for (size_t i = 0; i < toks.size(); ++i) {
      if (!toks[i].is_string() || !scores[i].is_number()) fail(path, "tokenizer.ggml.tokens must hold strings and tokenizer.ggml.scores numbers (entry " + std::to_string(i) + ")");
    }
    std::vector<std::string> pieces;
    std::vector<float> sc;
    for (size_t i = 0; i < toks.size(); ++i) {
      pieces.push_back(text::replace_all(toks[i].get<std::string>(), text::kMetaSpace, " "));
      sc.push_back(scores[i].get<float>());
    }
    if (cfg.bos_id >= 0 && size_t(cfg.bos_id) < pieces.size()) g.bos_text = toks[size_t(cfg.bos_id)].get<std::string>();
    if (cfg.eos_id >= 0 && size_t(cfg.eos_id) < pieces.size()) g.eos_text = toks[size_t(cfg.eos_id)].get<std::string>();
    g.tokenizer = std::make_unique<Llama2cTokenizer>(std::move(pieces), std::move(sc), cfg.bos_id);
  } else {
    g.tokenizer_note = tok_model.empty() ? "the GGUF file embeds no tokenizer"
                                         : "GGUF tokenizer model '" + tok_model + "' is not supported yet (only 'llama')";
  }
  return g;
}

}  // namespace

GgufModel load_gguf_model(const std::string& path) { return read_gguf(path, false); }
ModelConfig read_gguf_config(const std::string& path) { return read_gguf(path, true).model.config; }

namespace {

struct Writer {
  std::string buf;
  template <typename T>
  void put(T v) { buf.append(reinterpret_cast<const char*>(&v), sizeof v); }
  void str(const std::string& s) { put<uint64_t>(s.size()); buf += s; }
  void kv_u32(const std::string& k, uint32_t v) { str(k); put<uint32_t>(U32); put(v); }
  void kv_f32(const std::string& k, float v) { str(k); put<uint32_t>(F32); put(v); }
  void kv_str(const std::string& k, const std::string& v) { str(k); put<uint32_t>(STRING); str(v); }
};

}  // namespace

void save_gguf_model(const Model& model, const Llama2cTokenizer* tok, const std::string& path, DType dtype) {
  if (dtype != DType::F32 && dtype != DType::F16 && dtype != DType::BF16) fail(path, std::string("cannot write GGUF tensors as ") + name(dtype), "Use f32, f16 or bf16");
  const ModelConfig& c = model.config;
  Writer w;
  struct Out { std::string name; Tensor data; uint32_t type; };
  std::vector<Out> tensors;
  for_each_weight(model, [&](const WeightRef& r) {
    const std::string gn = gguf_name(r.name);
    Tensor t = *r.tensor;
    if (gn.find("attn_q.weight") != std::string::npos || gn.find("attn_k.weight") != std::string::npos) {
      Tensor p = Tensor::empty(DType::F32, t.shape());
      rope_rows_half_to_interleaved(t.f32(), gn.find("attn_q") != std::string::npos ? c.n_heads : c.n_kv_heads, c.head_dim, c.dim, p.f32());
      t = p;
    }
    const DType dt = t.ndim() == 1 ? DType::F32 : dtype;
    tensors.push_back({gn, t.to(dt), dt == DType::F32 ? kGgmlF32 : dt == DType::F16 ? kGgmlF16 : kGgmlBF16});
  });
  const uint64_t n_kv = 12 + (tok ? 7 : 0);
  w.buf = "GGUF";
  w.put<uint32_t>(3);
  w.put<uint64_t>(tensors.size());
  w.put<uint64_t>(n_kv);
  w.kv_str("general.architecture", "llama");
  w.kv_u32("general.alignment", 32);
  w.kv_str("general.name", model.path.empty() ? "condense" : model.path);
  w.kv_u32("llama.context_length", uint32_t(c.max_seq));
  w.kv_u32("llama.embedding_length", uint32_t(c.dim));
  w.kv_u32("llama.block_count", uint32_t(c.n_layers));
  w.kv_u32("llama.feed_forward_length", uint32_t(c.ffn_dim));
  w.kv_u32("llama.attention.head_count", uint32_t(c.n_heads));
  w.kv_u32("llama.attention.head_count_kv", uint32_t(c.n_kv_heads));
  w.kv_u32("llama.rope.dimension_count", uint32_t(c.head_dim));
  w.kv_f32("llama.rope.freq_base", c.rope_theta);
  w.kv_f32("llama.attention.layer_norm_rms_epsilon", c.norm_eps);
  if (tok) {
    w.kv_str("tokenizer.ggml.model", "llama");
    w.str("tokenizer.ggml.tokens");
    w.put<uint32_t>(ARRAY); w.put<uint32_t>(STRING); w.put<uint64_t>(uint64_t(tok->vocab_size()));
    for (int i = 0; i < tok->vocab_size(); ++i) {
      w.str(text::replace_all(tok->piece(i), " ", text::kMetaSpace));
    }
    w.str("tokenizer.ggml.scores");
    w.put<uint32_t>(ARRAY); w.put<uint32_t>(F32); w.put<uint64_t>(uint64_t(tok->vocab_size()));
    for (int i = 0; i < tok->vocab_size(); ++i) w.put<float>(tok->score(i));
    w.str("tokenizer.ggml.token_type");
    w.put<uint32_t>(ARRAY); w.put<uint32_t>(I32); w.put<uint64_t>(uint64_t(tok->vocab_size()));
    for (int i = 0; i < tok->vocab_size(); ++i) {
      const bool byte = text::parse_byte_piece(tok->piece(i)) >= 0;
      w.put<int32_t>(i == 0 ? 2 : (i == c.bos_id || i == c.eos_id) ? 3 : byte ? 6 : 1);  // unknown, control, byte, normal
    }
    w.kv_u32("tokenizer.ggml.bos_token_id", uint32_t(c.bos_id));
    w.kv_u32("tokenizer.ggml.eos_token_id", uint32_t(c.eos_id));
    w.kv_u32("tokenizer.ggml.unknown_token_id", 0);
  }
  uint64_t off = 0;
  for (const Out& t : tensors) {
    w.str(t.name);
    w.put<uint32_t>(uint32_t(t.data.ndim()));
    for (int d = t.data.ndim() - 1; d >= 0; --d) w.put<uint64_t>(uint64_t(t.data.dim(d)));
    w.put<uint32_t>(t.type);
    w.put<uint64_t>(off);
    off += (t.data.nbytes() + 31) / 32 * 32;
  }
  w.buf.append((32 - w.buf.size() % 32) % 32, '\0');
  AtomicWriter out(path);
  out.write(w.buf.data(), w.buf.size());
  for (const Out& t : tensors) {
    out.write(t.data.data(), t.data.nbytes());
    out.write_zeros((32 - t.data.nbytes() % 32) % 32);
  }
  out.commit();
}

}  // namespace condense
