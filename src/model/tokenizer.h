// Tokenizer: text <-> token ids. Implementations: llama2.c's tokenizer.bin
// (score-ordered BPE merges), SentencePiece models; others come with their loaders.
#pragma once
#include <string>
#include <vector>

namespace condense {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Ids for `text`, without BOS/EOS.
  virtual std::vector<int> encode(const std::string& text) const = 0;
  // The text of `token` when it follows `prev` (for streaming output).
  virtual std::string decode_token(int prev, int token) const = 0;
  virtual int vocab_size() const = 0;
  virtual std::string kind() const = 0;
  std::string decode(const std::vector<int>& ids, int prev = -1) const;
};

}  // namespace condense
