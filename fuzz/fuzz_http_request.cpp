// HTTP request bodies of POST /v1/completions and /v1/chat/completions (the
// first byte chooses), parsed and validated as the server does; the chat
// template is the plain default. ApiError is the protocol's refusal (a 4xx).
#include <string>

#include "core/error.h"
#include "fuzz/fuzz_input.h"
#include "model/config.h"
#include "model/tokenizer.h"
#include "serve/chat_template.h"
#include "serve/openai_protocol.h"

namespace {

struct Bytes : condense::Tokenizer {  // token = byte + 3, as llama vocabularies' byte pieces
  std::vector<int> encode(const std::string& t) const override {
    std::vector<int> o;
    for (unsigned char c : t) o.push_back(int(c) + 3);
    return o;
  }
  std::string decode_token(int, int t) const override { return t >= 3 && t < 259 ? std::string(1, char(t - 3)) : std::string(); }
  int vocab_size() const override { return 259; }
  std::string kind() const override { return "bytes"; }
};

}  // namespace

CONDENSE_FUZZ_TARGET(data, size) {
  static const Bytes tok;
  static const condense::ChatTemplate tmpl;
  static const condense::ServedModel m = [] {
    condense::ModelConfig c;
    c.dim = 8, c.n_layers = 1, c.n_heads = 1, c.n_kv_heads = 1, c.head_dim = 8, c.ffn_dim = 8, c.vocab = 259, c.max_seq = 256;
    return condense::served_model("m", "/m", c, tok, tmpl);
  }();
  if (size == 0) return;
  try {
    condense::parse_request(std::string(reinterpret_cast<const char*>(data) + 1, size - 1), data[0] & 1, m);
  } catch (const condense::ApiError&) {
  }
}
