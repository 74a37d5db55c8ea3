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
  // The vocabulary as the model holds it (pieces with U+2581 for spaces), for
  // exports: GGUF's token type 1 normal, 2 unknown, 3 control, 5 unused, 6 byte.
  std::string piece(int id) const;
  float score(int id) const;
  int gguf_token_type(int id) const;

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
};

}  // namespace condense
