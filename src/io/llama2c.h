// llama2.c checkpoints (legacy "version 0" .bin) and tokenizer.bin files.
//
// Model file: 7 little-endian int32 (dim, hidden_dim, n_layers, n_heads,
// n_kv_heads, vocab_size, seq_len; a negative vocab_size means an unshared
// classifier), then f32 arrays grouped by kind across layers: token embedding,
// attention norms, wq, wk, wv, wo, ffn norms, w1, w2, w3, final norm,
// freq_cis_real and freq_cis_imag ([seq_len, head_size/2] each, ignored on load),
// then the classifier when unshared. q/k rows use interleaved RoPE pairs and are
// permuted to the canonical layout on load (and back on save). run.c fixes
// rope_theta = 10000 and norm_eps = 1e-5.
// Reading rules: every header field nonzero, positive (vocab_size may be
// negative, not -2^31), at most 2^24 and within ModelConfig's limits, checked
// before any arithmetic; the file's size equals what the header implies,
// exactly, before anything is allocated.
//
// Tokenizer file: int32 max_token_length, then per token: f32 score, int32 len,
// len bytes. The token count is the model's vocabulary size.
#pragma once
#include <memory>
#include <string>

#include "model/model.h"
#include "model/tokenizer_llama2c.h"

namespace condense {

Model load_llama2c(const std::string& path);
// The header's config (checked against the file's size), no weights read.
ModelConfig read_llama2c_config(const std::string& path);
void save_llama2c(const Model& model, const std::string& path);
std::unique_ptr<Llama2cTokenizer> load_llama2c_tokenizer(const std::string& path);
class FileView;
std::unique_ptr<Llama2cTokenizer> parse_llama2c_tokenizer(const FileView& bytes);
void save_llama2c_tokenizer(const Llama2cTokenizer& tok, const std::string& path);
// The tokenizer.bin bytes save_llama2c_tokenizer writes.
std::string llama2c_tokenizer_bytes(const Llama2cTokenizer& tok);

}  // namespace condense
