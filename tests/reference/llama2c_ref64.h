// A float64 reference for llama2.c checkpoints, written independently of the
// production code: its own file parser, run.c's interleaved-pair RoPE (no weight
// permutation), plain loops, and run.c's quadratic tokenizer. Tests compare the
// production loaders, tokenizer, engine and perplexity against it.
#pragma once
#include <string>
#include <vector>

namespace ref {

struct Llama2cRef {
  int dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len;
  bool shared;
  std::vector<double> emb, att_norm, wq, wk, wv, wo, ffn_norm, w1, w2, w3, final_norm, wcls;
};

Llama2cRef load_llama2c_ref(const std::string& path);

// Logits [tokens.size(), vocab] for a sequence starting at position 0.
std::vector<std::vector<double>> forward_ref(const Llama2cRef& m, const std::vector<int>& tokens);

struct TokenizerRef {
  std::vector<std::string> pieces;
  std::vector<float> scores;
};
TokenizerRef load_tokenizer_ref(const std::string& path, int vocab);
// run.c's encode (no BOS/EOS), rescanning all pairs after each merge.
std::vector<int> encode_ref(const TokenizerRef& t, const std::string& text);

// exp(mean NLL) by condense's perplexity protocol, in float64.
double perplexity_ref(const Llama2cRef& m, const std::vector<int>& tokens, int ctx, int max_windows, int bos);

}  // namespace ref
