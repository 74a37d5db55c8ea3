#include "io/gguf.h"

#include <nlohmann/json.hpp>
#include <optional>

#include "core/json_text.h"
#include "io/atomic_writer.h"
#include "io/file_view.h"
#include "io/ggml_quants.h"
#include "io/gguf_codes.h"
#include "model/rope_layout.h"
#include "model/text_codec.h"
#include "model/tokenizer_sentencepiece.h"

namespace condense {
namespace {

using json = nlohmann::json;

enum ValueType : uint32_t { U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 };
constexpr uint64_t kScalarSize[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};


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
    const ggml::TypeInfo* gt = ggml::type_info(t.type);
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
  std::map<std::string, uint32_t> types;
  for_each_weight(m, [&](const WeightRef& w) {
    const std::string gn = gguf_name(w.name);
    auto it = infos.find(gn);
    if (it == infos.end()) fail(path, "tensor '" + gn + "' (" + w.name + ") is missing");
    const TensorInfo& t = it->second;
    const std::vector<int64_t> sh(t.dims.rbegin(), t.dims.rend());
    if (sh != w.shape) fail(path, "tensor '" + gn + "' has shape " + shape_str(sh) + " but the metadata implies " + shape_str(w.shape));
    if (!ggml::readable(t.type)) {
      fail(path, "tensor '" + gn + "' has ggml type " + ggml::type_name(t.type) + " (" + std::to_string(t.type) + "), which condense does not read yet",
           "Supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K");
    }
    const int64_t bad = ggml::first_bad_scale(t.type, f.data() + data_start + t.offset, int64_t(t.nbytes / ggml::type_info(t.type)->bytes * ggml::type_info(t.type)->block));
    if (bad >= 0) {
      fail(path, "tensor '" + gn + "' holds a non-finite " + (ggml::type_info(t.type)->block > 1 ? "scale in block " : "value at element ") + std::to_string(bad),
           "The file is corrupted");
    }
    types[gn] = t.type;
  });
  for (const std::string& name : order) {
    if (name == "rope_freqs.weight") fail(path, "tensor 'rope_freqs.weight' (RoPE frequency factors, e.g. Llama 3.1's) is present", "RoPE scaling is not supported yet");
    if (!types.count(name)) {
      fail(path, "tensor '" + name + "' is not part of the model the metadata describes (" + cfg.summary() + ")",
           "The file is corrupted, or its architecture variant is not supported");
    }
  }
  allocate_weights(m);
  std::vector<float> tmp;
  for_each_weight(m, [&](const WeightRef& w) {
    const std::string gn = gguf_name(w.name);
    const TensorInfo& t = infos.at(gn);
    const uint32_t type = types.at(gn);
    const uint8_t* src = f.data() + data_start + t.offset;
    const int64_t cols = w.shape.back(), rows = w.tensor->numel() / cols;
    const uint64_t rb = ggml::row_bytes(type, cols);
    const bool rope = gn.find("attn_q.weight") != std::string::npos || gn.find("attn_k.weight") != std::string::npos;
    const int heads = gn.find("attn_q") != std::string::npos ? cfg.n_heads : cfg.n_kv_heads;
    // Row r of the canonical (rotate-half) tensor is row src_row(r) of the file.
    auto src_row = [&](int64_t r) { return rope ? rope_row_interleaved_of_half(r, heads, cfg.head_dim) : r; };
    float* out = w.tensor->f32();
    for (int64_t r = 0; r < rows; ++r) ggml::dequantize_row(type, src + uint64_t(src_row(r)) * rb, out + r * cols, cols);
    if (w.shape.size() == 2) {
      // Q8_0 / Q4_0 keep their codes (int8 / int4 g32), so they go on to a .cpk as they are.
      if (auto wc = codes_from_ggml(type, src, rows, cols)) {
        if (rope) permute_rows(*wc, rows, cols, src_row);
        m.compression[w.name] = std::move(*wc);
      }
    }
    m.source_dtypes[w.name] = type == ggml::F16 ? DType::F16 : type == ggml::BF16 ? DType::BF16 : DType::F32;
    if (type != ggml::F32 && type != ggml::F16 && type != ggml::BF16) m.source_encodings[w.name] = ggml::type_name(type);
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
  uint64_t count = 0;  // key/value pairs written
  template <typename T>
  void put(T v) { buf.append(reinterpret_cast<const char*>(&v), sizeof v); }
  void str(const std::string& s) { put<uint64_t>(s.size()); buf += s; }
  void key(const std::string& k, uint32_t type) { str(k); put<uint32_t>(type); ++count; }
  void kv_u32(const std::string& k, uint32_t v) { key(k, U32); put(v); }
  void kv_f32(const std::string& k, float v) { key(k, F32); put(v); }
  void kv_str(const std::string& k, const std::string& v) { key(k, STRING); str(v); }
  void array(const std::string& k, uint32_t type, uint64_t n) { key(k, ARRAY); put<uint32_t>(type); put<uint64_t>(n); }
};

// llama.cpp's fallback for rows that are not whole blocks (llama-quant.cpp):
// a 32-element type of about the same size, then F16.
uint32_t fallback_type(uint32_t t, int64_t cols, std::string& note) {
  const uint32_t want = t;
  if (cols % ggml::type_info(t)->block && (t == ggml::Q4_K || t == ggml::Q6_K)) t = t == ggml::Q4_K ? ggml::Q4_1 : ggml::Q8_0;
  if (cols % ggml::type_info(t)->block) t = ggml::F16;
  if (t != want) {
    note = "rows of " + std::to_string(cols) + " are not a multiple of " + ggml::type_name(want) + "'s block of " +
           std::to_string(ggml::type_info(want)->block) + ": " + ggml::type_name(t) + " instead";
  }
  return t;
}

bool is_rope_weight(const std::string& gn) {
  return gn.find("attn_q.weight") != std::string::npos || gn.find("attn_k.weight") != std::string::npos;
}

// llama.cpp's general.file_type for a file that is mostly `t` (LLAMA_FTYPE_*).
int file_type_of(int t) {
  switch (t) {
    case ggml::F32: return 0;
    case ggml::F16: return 1;
    case ggml::Q4_0: return 2;
    case ggml::Q4_1: return 3;
    case ggml::Q8_0: return 7;
    case ggml::Q4_K: return 14;  // Q4_K_S: every weight Q4_K
    case ggml::Q6_K: return 18;
    case ggml::BF16: return 32;
    default: return -1;
  }
}

// GGUF's "llama" vocabulary: pieces (U+2581 for spaces), scores, token types.
struct GgufVocab {
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::vector<int> types;
  int unk = 0;
};

std::optional<GgufVocab> gguf_vocab(const Tokenizer& t, const ModelConfig& c) {
  GgufVocab v;
  const int n = t.vocab_size();
  if (const auto* l2c = dynamic_cast<const Llama2cTokenizer*>(&t)) {
    for (int i = 0; i < n; ++i) {
      v.pieces.push_back(text::replace_all(l2c->piece(i), " ", text::kMetaSpace));
      v.scores.push_back(l2c->score(i));
      const bool byte = text::parse_byte_piece(l2c->piece(i)) >= 0;
      v.types.push_back(i == 0 ? 2 : (i == c.bos_id || i == c.eos_id) ? 3 : byte ? 6 : 1);  // unknown, control, byte, normal
    }
    return v;
  }
  const auto* sp = dynamic_cast<const SentencePieceTokenizer*>(&t);
  if (!sp) return std::nullopt;
  std::vector<std::string> plain;
  for (int i = 0; i < n; ++i) {
    v.pieces.push_back(sp->piece(i));
    v.scores.push_back(sp->score(i));
    v.types.push_back(sp->gguf_token_type(i));
    if (v.types.back() == 2) v.unk = i;
    plain.push_back(text::replace_all(sp->piece(i), text::kMetaSpace, " "));
  }
  // GGUF readers (llama.cpp, condense) merge by score as SentencePiece BPE
  // does; a unigram model would tokenize differently. Probe it.
  const Llama2cTokenizer as_read(plain, v.scores, c.bos_id);
  for (const char* probe : {"Once upon a time, there was a little girl named Lily.", "  two  spaces, tabs\tand\nnew lines", "12345 + 678 = 13023",
                            "caf\xc3\xa9 na\xc3\xafve \xe2\x82\xac \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80", "The quick brown fox jumps over the lazy dog"}) {
    if (as_read.encode(probe) != sp->encode(probe)) return std::nullopt;
  }
  return v;
}

}  // namespace

std::string gguf_tokenizer_problem(const Tokenizer& tok) {
  if (dynamic_cast<const Llama2cTokenizer*>(&tok)) return "";
  if (!dynamic_cast<const SentencePieceTokenizer*>(&tok)) return "GGUF export of a " + tok.kind() + " tokenizer is not built yet (llama2.c and SentencePiece BPE are)";
  ModelConfig c;
  return gguf_vocab(tok, c) ? "" : "this SentencePiece model does not tokenize as a score-merge BPE (a unigram model?), which GGUF's \"llama\" vocabulary is";
}

std::vector<GgufTensorPlan> plan_gguf(const Model& model, const GgufWriteOptions& opt, WeightSource* source) {
  if (opt.type >= 0 && !ggml::writable(uint32_t(opt.type))) fail("GGUF", std::string("condense does not write ggml type ") + ggml::type_name(uint32_t(opt.type)));
  ModelWeights own(model);
  WeightSource& src = source ? *source : own;
  std::vector<GgufTensorPlan> plan;
  for_each_weight(model, [&](const WeightRef& r) {
    GgufTensorPlan p;
    p.name = r.name;
    p.gguf_name = gguf_name(r.name);
    p.shape = r.shape;
    const WeightCompression* wc = src.get(r).packed;
    const bool quantized = wc && wc->scheme.quantized();
    p.source = quantized ? wc->scheme.describe() : "f32";
    if (wc && wc->sparse()) p.source += " sparse";
    const int64_t cols = r.shape.back(), rows = shape_numel(r.shape) / cols;
    std::string why;
    if (r.shape.size() == 1) {
      p.type = ggml::F32;
      p.how = "exact";
    } else if (opt.type < 0) {
      p.type = ggml::F32;
      p.how = "exact";
      if (quantized) {
        const uint32_t candidates[] = {ggml::Q8_0, ggml::Q4_0, ggml::Q4_1};
        std::string first_why;
        for (uint32_t t : candidates) {
          if (codes_fit_ggml(*wc, rows, cols, t, &why)) {
            p.type = t;
            break;
          }
          if (first_why.empty() || (wc->scheme.type == DType::I4) == (t != ggml::Q8_0)) first_why = std::string(ggml::type_name(t)) + ": " + why;
        }
        if (p.type == ggml::F32) p.note = "its codes map onto no ggml type (" + first_why + "): F32 keeps the values exactly";
      }
    } else {
      p.type = fallback_type(uint32_t(opt.type), cols, p.note);
      if (p.type == ggml::F32) p.how = "exact";
      else if (quantized && codes_fit_ggml(*wc, rows, cols, p.type, &why)) p.how = "exact";
      else {
        p.how = "re-quantized";
        if (quantized && p.note.empty() && p.type != ggml::F16 && p.type != ggml::BF16) p.note = "codes do not map: " + why;
      }
    }
    p.bytes = uint64_t(rows) * ggml::row_bytes(p.type, cols);
    plan.push_back(std::move(p));
  });
  return plan;
}

std::vector<GgufTensorPlan> save_gguf(const Model& model, const std::string& path, const GgufWriteOptions& opt, WeightSource* source) {
  ModelWeights own(model);
  WeightSource& src = source ? *source : own;
  std::vector<GgufTensorPlan> plan = plan_gguf(model, opt, &src);
  const ModelConfig& c = model.config;
  std::optional<GgufVocab> tok;
  if (opt.tokenizer) {
    if (opt.tokenizer->vocab_size() != c.vocab) {
      fail(path, "the tokenizer has " + std::to_string(opt.tokenizer->vocab_size()) + " tokens but the model's vocabulary is " + std::to_string(c.vocab));
    }
    tok = gguf_vocab(*opt.tokenizer, c);
    if (!tok) fail(path, "the tokenizer cannot be embedded: " + gguf_tokenizer_problem(*opt.tokenizer));
  }
  bool any_quantized = false;
  for (const auto& p : plan) any_quantized = any_quantized || ggml::type_info(p.type)->block > 1;
  Writer kv;
  kv.kv_str("general.architecture", "llama");
  kv.kv_u32("general.alignment", 32);
  kv.kv_str("general.name", opt.name.empty() ? "condense" : opt.name);
  if (any_quantized) kv.kv_u32("general.quantization_version", 2);
  if (opt.type >= 0 && file_type_of(opt.type) >= 0) kv.kv_u32("general.file_type", uint32_t(file_type_of(opt.type)));
  kv.kv_u32("llama.context_length", uint32_t(c.max_seq));
  kv.kv_u32("llama.embedding_length", uint32_t(c.dim));
  kv.kv_u32("llama.block_count", uint32_t(c.n_layers));
  kv.kv_u32("llama.feed_forward_length", uint32_t(c.ffn_dim));
  kv.kv_u32("llama.attention.head_count", uint32_t(c.n_heads));
  kv.kv_u32("llama.attention.head_count_kv", uint32_t(c.n_kv_heads));
  kv.kv_u32("llama.rope.dimension_count", uint32_t(c.head_dim));
  if (c.head_dim * c.n_heads != c.dim) {
    kv.kv_u32("llama.attention.key_length", uint32_t(c.head_dim));
    kv.kv_u32("llama.attention.value_length", uint32_t(c.head_dim));
  }
  kv.kv_f32("llama.rope.freq_base", c.rope_theta);
  kv.kv_f32("llama.attention.layer_norm_rms_epsilon", c.norm_eps);
  if (tok) {
    const uint64_t n = tok->pieces.size();
    kv.kv_str("tokenizer.ggml.model", "llama");
    kv.array("tokenizer.ggml.tokens", STRING, n);
    for (const std::string& p : tok->pieces) kv.str(p);
    kv.array("tokenizer.ggml.scores", F32, n);
    for (float v : tok->scores) kv.put<float>(v);
    kv.array("tokenizer.ggml.token_type", I32, n);
    for (int t : tok->types) kv.put<int32_t>(t);
    kv.kv_u32("tokenizer.ggml.bos_token_id", uint32_t(c.bos_id));
    kv.kv_u32("tokenizer.ggml.eos_token_id", uint32_t(c.eos_id));
    kv.kv_u32("tokenizer.ggml.unknown_token_id", uint32_t(tok->unk));
    kv.key("tokenizer.ggml.add_bos_token", BOOL);
    kv.put<uint8_t>(1);
  }
  if (!opt.chat_template.empty()) kv.kv_str("tokenizer.chat_template", opt.chat_template);

  Writer w;
  w.buf = "GGUF";
  w.put<uint32_t>(3);
  w.put<uint64_t>(plan.size());
  w.put<uint64_t>(kv.count);
  w.buf += kv.buf;
  uint64_t off = 0;
  for (const GgufTensorPlan& p : plan) {
    w.str(p.gguf_name);
    w.put<uint32_t>(uint32_t(p.shape.size()));
    for (auto d = p.shape.rbegin(); d != p.shape.rend(); ++d) w.put<uint64_t>(uint64_t(*d));
    w.put<uint32_t>(p.type);
    w.put<uint64_t>(off);
    off += (p.bytes + 31) / 32 * 32;
  }
  w.buf.append((32 - w.buf.size() % 32) % 32, '\0');
  AtomicWriter out(path);
  out.write(w.buf.data(), w.buf.size());

  // One tensor at a time: its effective values (decoded from the packed form
  // when the model holds no f32 copy), encoded and written row by row in GGUF
  // row order (q/k rows interleaved for ggml's RoPE), each row decoded again
  // to measure the error.
  std::vector<float> eff;
  std::vector<uint8_t> data;
  size_t i = 0;
  for_each_weight(model, [&](const WeightRef& r) {
    GgufTensorPlan& p = plan[i++];
    const int64_t cols = r.shape.back(), rows = shape_numel(r.shape) / cols;
    const WeightView view = src.get(r);
    const WeightCompression* wc = view.packed;
    const float* values;
    if (view.values && view.values->defined()) {
      values = view.values->f32();
    } else {
      if (!wc || !wc->scheme.quantized()) fail(path, "weight '" + r.name + "' has neither values nor a packed form");
      eff.resize(size_t(rows * cols));
      dequantize(*wc, rows, cols, eff.data());
      values = eff.data();
    }
    const bool codes = p.how == "exact" && p.type != ggml::F32 && wc && wc->scheme.quantized();
    const bool rope = is_rope_weight(p.gguf_name);
    const int heads = p.gguf_name.find("attn_q") != std::string::npos ? c.n_heads : c.n_kv_heads;
    const uint64_t rb = ggml::row_bytes(p.type, cols);
    // Rows in chunks encoded in parallel (K-quant searches are slow), written in order.
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(rows, int64_t((4u << 20) / std::max<uint64_t>(rb, 1))));
    data.resize(size_t(rb * uint64_t(chunk)));
    double err2 = 0, ref2 = 0, maxerr = 0;
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
      const int64_t r1 = std::min(rows, r0 + chunk);
      // Small chunks stay on this thread: no pool for a tiny tensor (and none
      // in a process forked after OpenMP started, where a pool would hang).
#pragma omp parallel if (uint64_t(r1 - r0) * uint64_t(cols) >= (uint64_t(1) << 16)) reduction(+ : err2, ref2) reduction(max : maxerr)
      {
        std::vector<float> back(static_cast<size_t>(cols));
#pragma omp for schedule(dynamic, 4)
        for (int64_t row = r0; row < r1; ++row) {
          const int64_t src = rope ? rope_row_half_of_interleaved(row, heads, c.head_dim) : row;
          uint8_t* dst = data.data() + uint64_t(row - r0) * rb;
          if (codes) encode_codes_row(*wc, src, cols, p.type, dst);
          else ggml::quantize_row(p.type, values + src * cols, dst, cols);
          ggml::dequantize_row(p.type, dst, back.data(), cols);
          for (int64_t k = 0; k < cols; ++k) {
            const double v = values[src * cols + k], d = double(back[size_t(k)]) - v;
            err2 += d * d;
            ref2 += v * v;
            maxerr = std::max(maxerr, std::fabs(d));
          }
        }
      }
      out.write(data.data(), size_t(uint64_t(r1 - r0) * rb));
    }
    p.rel_rmse = ref2 > 0 ? std::sqrt(err2 / ref2) : std::sqrt(err2);
    p.max_abs_err = maxerr;
    if (codes && maxerr != 0) fail(path, "internal error: the codes of '" + r.name + "' did not survive the copy into " + ggml::type_name(p.type));
    if (p.how == "re-quantized" && maxerr == 0) p.how = "exact";
    out.write_zeros((32 - p.bytes % 32) % 32);
  });
  out.commit();
  return plan;
}

void save_gguf_model(const Model& model, const Llama2cTokenizer* tok, const std::string& path, DType dtype) {
  if (dtype != DType::F32 && dtype != DType::F16 && dtype != DType::BF16) fail(path, std::string("cannot write GGUF tensors as ") + name(dtype), "Use f32, f16 or bf16");
  GgufWriteOptions opt;
  opt.type = int(dtype == DType::F32 ? ggml::F32 : dtype == DType::F16 ? ggml::F16 : ggml::BF16);
  opt.tokenizer = tok;
  opt.name = model.path;
  save_gguf(model, path, opt);
}

}  // namespace condense
