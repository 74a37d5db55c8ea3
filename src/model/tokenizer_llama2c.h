// llama2.c's tokenizer: pieces with merge scores. Encoding is exactly run.c's:
// a dummy-prefix " " token for non-empty text, each UTF-8 code point looked up
// whole (else one byte-fallback id per byte: the piece "<0xNN>", which llama2.c
// files hold at id byte + 3), then repeatedly merge the
// adjacent pair whose concatenation is a piece with the highest score, leftmost
// on ties. GGUF's "llama" tokenizer uses the same rule.
#pragma once
#include <string>
#include <unordered_map>
#include <vector>

#include "model/tokenizer.h"

namespace condense {

class Llama2cTokenizer : public Tokenizer {
 public:
  Llama2cTokenizer(std::vector<std::string> pieces, std::vector<float> scores, int bos_id = 1);
  std::vector<int> encode(const std::string& text) const override;
  std::string decode_token(int prev, int token) const override;
  int vocab_size() const override { return int(pieces_.size()); }
  std::string kind() const override { return "llama2c-bpe"; }
  const std::string& piece(int id) const { return pieces_.at(size_t(id)); }
  float score(int id) const { return scores_.at(size_t(id)); }
  // -1 when absent.
  int lookup(const std::string& piece) const;

 private:
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int> index_;
  int byte_ids_[256];
  int bos_id_;
};

}  // namespace condense
