#include "io/llama2c.h"

#include <cmath>
#include <vector>

#include "io/atomic_writer.h"
#include "io/file_view.h"
#include "model/rope_layout.h"

namespace condense {
namespace {

constexpr int32_t kV1Magic = 0x616b3432;  // "ak42", llama2.c's versioned export

// The header's config, checked against the file's size (no weight read).
ModelConfig read_header(const FileView& f) {
  const std::string& path = f.path();
  int32_t h[7];
  for (int i = 0; i < 7; ++i) h[i] = f.read<int32_t>(uint64_t(4 * i), "llama2.c header");
  if (h[0] == kV1Magic) {
    fail(path, "this is a versioned llama2.c export (magic 'ak42', version " + std::to_string(h[1]) + ")",
         "condense reads the legacy format: re-export with llama2.c's export.py --version 0");
  }
  // Checked before any arithmetic: a vocabulary of -2^31 has no absolute value.
  static const char* kFields[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
  for (int i = 0; i < 7; ++i) {
    if (h[i] == 0 || (i != 5 && h[i] < 0) || std::abs(int64_t(h[i])) > (1 << 24)) {
      fail(path, "implausible llama2.c header value " + std::to_string(h[i]) + " for " + kFields[i],
           "This does not look like a llama2.c .bin checkpoint");
    }
  }
  ModelConfig c;
  c.dim = h[0]; c.ffn_dim = h[1]; c.n_layers = h[2]; c.n_heads = h[3]; c.n_kv_heads = h[4];
  c.vocab = int(std::abs(int64_t(h[5]))); c.max_seq = h[6];
  c.tied_embeddings = h[5] > 0;
  c.rope_theta = 10000.f;
  c.norm_eps = 1e-5f;
  if (c.dim % c.n_heads != 0) fail(path, "dim is not a multiple of n_heads: not a llama2.c checkpoint");
  c.head_dim = c.dim / c.n_heads;
  c.validate(path);
  const int64_t L = c.n_layers, d = c.dim, kvd = c.kv_dim(), f_ = c.ffn_dim, hs = c.head_dim;
  int64_t floats = int64_t(c.vocab) * d + L * (2 * d + d * d + 2 * kvd * d + d * d + 3 * f_ * d) + d + c.max_seq * hs;
  if (!c.tied_embeddings) floats += int64_t(c.vocab) * d;
  const uint64_t expect = 28 + 4 * uint64_t(floats);
  if (f.size() != expect) {
    fail(path, "file has " + std::to_string(f.size()) + " bytes but its header (" + c.summary() + ") implies " +
                   std::to_string(expect),
         f.size() < expect ? "The file is truncated" : "The file is not a legacy llama2.c checkpoint");
  }
  return c;
}

}  // namespace

ModelConfig read_llama2c_config(const std::string& path) { return read_header(FileView(path)); }

Model load_llama2c(const std::string& path) {
  FileView f(path);
  Model m;
  m.config = read_header(f);
  const ModelConfig& c = m.config;
  m.format = "llama2c";
  m.path = path;
  const int64_t d = c.dim, kvd = c.kv_dim(), f_ = c.ffn_dim, hs = c.head_dim;
  allocate_weights(m);
  const float* p = reinterpret_cast<const float*>(f.data() + 28);
  auto take = [&](float* dst, int64_t n) { std::memcpy(dst, p, size_t(n) * 4); p += n; };
  std::vector<float> tmp;
  auto take_rope = [&](Tensor& dst, int heads) {
    tmp.resize(size_t(dst.numel()));
    take(tmp.data(), dst.numel());
    rope_rows_interleaved_to_half(tmp.data(), heads, c.head_dim, d, dst.f32());
  };
  take(m.embed.f32(), c.vocab * d);
  for (auto& l : m.layers) take(l.attn_norm.f32(), d);
  for (auto& l : m.layers) take_rope(l.wq, c.n_heads);
  for (auto& l : m.layers) take_rope(l.wk, c.n_kv_heads);
  for (auto& l : m.layers) take(l.wv.f32(), kvd * d);
  for (auto& l : m.layers) take(l.wo.f32(), d * d);
  for (auto& l : m.layers) take(l.ffn_norm.f32(), d);
  for (auto& l : m.layers) take(l.w_gate.f32(), f_ * d);
  for (auto& l : m.layers) take(l.w_down.f32(), d * f_);
  for (auto& l : m.layers) take(l.w_up.f32(), f_ * d);
  take(m.final_norm.f32(), d);
  p += c.max_seq * hs;  // freq_cis_real/imag: recomputed from rope_theta instead
  if (!c.tied_embeddings) take(m.lm_head.f32(), c.vocab * d);
  for_each_weight(m, [&](const WeightRef& w) { m.source_dtypes[w.name] = DType::F32; });
  return m;
}

void save_llama2c(const Model& model, const std::string& path) {
  const ModelConfig& c = model.config;
  if (c.q_dim() != c.dim) fail(path, "llama2.c needs n_heads * head_dim == dim (" + c.summary() + ")", "Save as safetensors instead");
  if (c.qkv_bias) fail(path, "llama2.c has no q/k/v biases", "Save as safetensors instead");
  if (c.rope_theta != 10000.f || c.norm_eps != 1e-5f) {
    fail(path, "llama2.c fixes rope_theta=10000 and norm_eps=1e-5; this model has " + std::to_string(c.rope_theta) + " and " +
                   std::to_string(c.norm_eps),
         "Save as safetensors instead");
  }
  AtomicWriter w(path);
  const int32_t h[7] = {c.dim, c.ffn_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.tied_embeddings ? c.vocab : -c.vocab,
                        c.max_seq};
  w.write(h, sizeof h);
  auto put = [&](const Tensor& t) { w.write(t.f32(), t.nbytes()); };
  std::vector<float> tmp;
  auto put_rope = [&](const Tensor& t, int heads) {
    tmp.resize(size_t(t.numel()));
    rope_rows_half_to_interleaved(t.f32(), heads, c.head_dim, c.dim, tmp.data());
    w.write(tmp.data(), tmp.size() * 4);
  };
  put(model.embed);
  for (auto& l : model.layers) put(l.attn_norm);
  for (auto& l : model.layers) put_rope(l.wq, c.n_heads);
  for (auto& l : model.layers) put_rope(l.wk, c.n_kv_heads);
  for (auto& l : model.layers) put(l.wv);
  for (auto& l : model.layers) put(l.wo);
  for (auto& l : model.layers) put(l.ffn_norm);
  for (auto& l : model.layers) put(l.w_gate);
  for (auto& l : model.layers) put(l.w_down);
  for (auto& l : model.layers) put(l.w_up);
  put(model.final_norm);
  const int half = c.head_dim / 2;
  std::vector<float> re(size_t(c.max_seq) * half), im(re.size());
  for (int t = 0; t < c.max_seq; ++t) {
    for (int i = 0; i < half; ++i) {
      const double a = t * std::pow(double(c.rope_theta), -2.0 * i / c.head_dim);
      re[size_t(t * half + i)] = float(std::cos(a));
      im[size_t(t * half + i)] = float(std::sin(a));
    }
  }
  w.write(re.data(), re.size() * 4);
  w.write(im.data(), im.size() * 4);
  if (!c.tied_embeddings) put(model.lm_head);
  w.commit();
}

std::unique_ptr<Llama2cTokenizer> load_llama2c_tokenizer(const std::string& path) {
  FileView f(path);
  return parse_llama2c_tokenizer(f);
}

std::unique_ptr<Llama2cTokenizer> parse_llama2c_tokenizer(const FileView& f) {
  const std::string& path = f.path();
  const int32_t max_len = f.read<int32_t>(0, "max_token_length");
  if (max_len <= 0 || max_len > 4096) fail(path, "implausible max_token_length " + std::to_string(max_len), "Not a llama2.c tokenizer.bin");
  std::vector<std::string> pieces;
  std::vector<float> scores;
  uint64_t off = 4;
  while (off < f.size()) {
    const std::string what = "token " + std::to_string(pieces.size());
    const float score = f.read<float>(off, what + " score");
    const int32_t len = f.read<int32_t>(off + 4, what + " length");
    if (len < 0 || len > max_len) {
      fail(path, what + " has length " + std::to_string(len) + " outside [0, " + std::to_string(max_len) + "] at byte " +
                     std::to_string(off + 4),
           "Not a llama2.c tokenizer.bin, or a corrupted one");
    }
    f.require(off + 8, uint64_t(len), what + " bytes");
    pieces.emplace_back(reinterpret_cast<const char*>(f.data() + off + 8), size_t(len));
    scores.push_back(score);
    off += 8 + uint64_t(len);
  }
  if (pieces.empty()) fail(path, "tokenizer has no tokens");
  return std::make_unique<Llama2cTokenizer>(std::move(pieces), std::move(scores));
}

std::string llama2c_tokenizer_bytes(const Llama2cTokenizer& tok) {
  std::string b;
  auto put = [&](const void* p, size_t n) { b.append(static_cast<const char*>(p), n); };
  int32_t max_len = 1;
  for (int i = 0; i < tok.vocab_size(); ++i) max_len = std::max<int32_t>(max_len, int32_t(tok.piece(i).size()));
  put(&max_len, 4);
  for (int i = 0; i < tok.vocab_size(); ++i) {
    const float s = tok.score(i);
    const int32_t len = int32_t(tok.piece(i).size());
    put(&s, 4);
    put(&len, 4);
    put(tok.piece(i).data(), size_t(len));
  }
  return b;
}

void save_llama2c_tokenizer(const Llama2cTokenizer& tok, const std::string& path) { write_file_atomically(path, llama2c_tokenizer_bytes(tok)); }

}  // namespace condense
