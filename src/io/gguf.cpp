#include "io/gguf.h"

#include <nlohmann/json.hpp>

#include "io/atomic_writer.h"
#include "io/file_view.h"
#include "model/rope_layout.h"
#include "model/text_codec.h"

namespace condense {
namespace {

using json = nlohmann::json;

enum ValueType : uint32_t { U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 };
constexpr uint64_t kScalarSize[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char* ggml_type_name(uint32_t t) {
  static const char* names[] = {"F32",  "F16",  "Q4_0", "Q4_1",    "Q4_2",   "Q4_3",  "Q5_0",  "Q5_1",   "Q8_0",   "Q8_1",  "Q2_K",
                                "Q3_K", "Q4_K", "Q5_K", "Q6_K",    "Q8_K",   "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S",
                                "IQ2_S", "IQ4_XS", "I8", "I16",    "I32",    "I64",   "F64",   "IQ1_M",  "BF16"};
  return t < sizeof(names) / sizeof(names[0]) ? names[t] : "unknown";
}
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
  uint64_t offset;
};

}  // namespace

GgufModel load_gguf_model(const std::string& path) {
  FileView f(path);
  Cursor c{f};
  if (f.size() < 4 || std::memcmp(f.data(), "GGUF", 4) != 0) fail(path, "missing the GGUF magic", "Not a GGUF file");
  c.off = 4;
  const uint32_t version = c.get<uint32_t>("version");
  if (version != 3) fail(path, "GGUF version " + std::to_string(version) + " is not supported", "condense reads GGUF v3; re-convert with a current llama.cpp");
  const uint64_t n_tensors = c.get<uint64_t>("tensor count"), n_kv = c.get<uint64_t>("metadata count");
  if (n_tensors > (1u << 20) || n_kv > (1u << 20)) fail(path, "implausible tensor/metadata counts", "The file is corrupted");
  json meta = json::object();
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string key = c.str("metadata key " + std::to_string(i));
    const uint32_t type = c.get<uint32_t>("type of " + key);
    meta[key] = c.value(type, key);
  }
  std::map<std::string, TensorInfo> infos;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    const std::string name = c.str("tensor name " + std::to_string(i));
    TensorInfo t;
    const uint32_t nd = c.get<uint32_t>(name + " n_dims");
    if (nd == 0 || nd > 4) fail(path, "tensor '" + name + "' has " + std::to_string(nd) + " dimensions");
    for (uint32_t d = 0; d < nd; ++d) t.dims.push_back(c.get<uint64_t>(name + " dims"));
    t.type = c.get<uint32_t>(name + " type");
    t.offset = c.get<uint64_t>(name + " offset");
    infos[name] = t;
  }
  auto meta_get = [&](const std::string& key, auto fallback, bool required) -> decltype(fallback) {
    if (!meta.contains(key)) {
      if (required) fail(path, "metadata key '" + key + "' is missing");
      return fallback;
    }
    try {
      return meta[key].get<decltype(fallback)>();
    } catch (const json::exception&) {
      fail(path, "metadata key '" + key + "' has the wrong type: " + meta[key].dump().substr(0, 80));
    }
  };
  const uint64_t alignment = meta_get("general.alignment", uint64_t(32), false);
  if (alignment == 0 || (alignment & (alignment - 1))) fail(path, "general.alignment " + std::to_string(alignment) + " is not a power of two");
  const uint64_t data_start = (c.off + alignment - 1) / alignment * alignment;
  if (data_start > f.size()) fail(path, "data section starts past the end of the file", "The file is truncated");

  const std::string arch = meta_get("general.architecture", std::string(), true);
  if (arch != "llama") fail(path, "GGUF architecture '" + arch + "' is not supported", "condense reads the 'llama' architecture");
  if (meta_get("llama.expert_count", uint64_t(0), false) > 0) fail(path, "mixture-of-experts models (llama.expert_count) are not supported");
  const std::string scaling = meta_get("llama.rope.scaling.type", std::string("none"), false);
  if (scaling != "none") fail(path, "metadata 'llama.rope.scaling.type' is '" + scaling + "'", "RoPE scaling is not supported yet");

  GgufModel g;
  Model& m = g.model;
  ModelConfig& cfg = m.config;
  cfg.dim = int(meta_get("llama.embedding_length", uint64_t(0), true));
  cfg.n_layers = int(meta_get("llama.block_count", uint64_t(0), true));
  cfg.n_heads = int(meta_get("llama.attention.head_count", uint64_t(0), true));
  cfg.n_kv_heads = int(meta_get("llama.attention.head_count_kv", uint64_t(cfg.n_heads), false));
  cfg.ffn_dim = int(meta_get("llama.feed_forward_length", uint64_t(0), true));
  cfg.max_seq = int(meta_get("llama.context_length", uint64_t(2048), false));
  cfg.rope_theta = meta_get("llama.rope.freq_base", 10000.0f, false);
  cfg.norm_eps = meta_get("llama.attention.layer_norm_rms_epsilon", 1e-5f, false);
  cfg.head_dim = int(meta_get("llama.attention.key_length",
                              meta_get("llama.rope.dimension_count", uint64_t(cfg.n_heads ? cfg.dim / cfg.n_heads : 0), false), false));
  auto emb = infos.find("token_embd.weight");
  if (emb == infos.end() || emb->second.dims.size() != 2) fail(path, "tensor 'token_embd.weight' is missing or not 2-D");
  cfg.vocab = int(emb->second.dims[1]);
  cfg.tied_embeddings = !infos.count("output.weight");
  cfg.qkv_bias = infos.count("blk.0.attn_q.bias") != 0;
  cfg.bos_id = int(meta_get("tokenizer.ggml.bos_token_id", uint64_t(1), false));
  cfg.eos_id = int(meta_get("tokenizer.ggml.eos_token_id", uint64_t(2), false));
  cfg.validate(path);
  m.format = "gguf";
  m.path = path;

  allocate_weights(m);
  std::vector<float> tmp;
  for_each_weight(m, [&](const WeightRef& w) {
    const std::string gn = gguf_name(w.name);
    auto it = infos.find(gn);
    if (it == infos.end()) fail(path, "tensor '" + gn + "' (" + w.name + ") is missing");
    const TensorInfo& t = it->second;
    Shape shape(t.dims.rbegin(), t.dims.rend());
    std::vector<int64_t> sh(shape.begin(), shape.end());
    if (sh != w.shape) fail(path, "tensor '" + gn + "' has shape " + shape_str(sh) + " but the metadata implies " + shape_str(w.shape));
    DType dt;
    if (t.type == kGgmlF32) dt = DType::F32;
    else if (t.type == kGgmlF16) dt = DType::F16;
    else if (t.type == kGgmlBF16) dt = DType::BF16;
    else {
      fail(path, "tensor '" + gn + "' has ggml type " + ggml_type_name(t.type) + " (" + std::to_string(t.type) + "), which condense does not read yet",
           "Supported: F32, F16, BF16; re-convert the model without quantization (e.g. --outtype f16)");
    }
    const uint64_t n = storage_bytes(dt, w.tensor->numel());
    if (t.offset % alignment) fail(path, "tensor '" + gn + "' offset " + std::to_string(t.offset) + " is not aligned to " + std::to_string(alignment));
    if (t.offset > f.size() - data_start || n > f.size() - data_start - t.offset) {
      fail(path, "tensor '" + gn + "' (bytes " + std::to_string(t.offset) + ".." + std::to_string(t.offset + n) +
                     " of the data section) runs past the end of the file",
           "The file is truncated");
    }
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
