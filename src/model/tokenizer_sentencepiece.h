// A SentencePiece model (tokenizer.model protobuf), through libsentencepiece.
#pragma once
#include <memory>
#include <string>

#include "model/tokenizer.h"

namespace sentencepiece { class SentencePieceProcessor; }

namespace condense {

class SentencePieceTokenizer : public Tokenizer {
 public:
  // `where` names the source file in errors.
  SentencePieceTokenizer(const std::string& serialized_model, const std::string& where);
  ~SentencePieceTokenizer() override;
  std::vector<int> encode(const std::string& text) const override;
  std::string decode_token(int prev, int token) const override;
  int vocab_size() const override;
  std::string kind() const override { return "sentencepiece"; }

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
};

}  // namespace condense
