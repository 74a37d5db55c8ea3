#include "model/tokenizer_sentencepiece.h"

#include <sentencepiece_processor.h>

#include "core/error.h"
#include "model/text_codec.h"

namespace condense {

SentencePieceTokenizer::SentencePieceTokenizer(const std::string& serialized, const std::string& where)
    : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  sentencepiece::util::Status status;
  try {
    status = sp_->LoadFromSerializedProto(serialized);
  } catch (const std::exception& e) {  // the library's own index builder (darts) throws on malformed pieces
    fail(where, std::string("not a valid SentencePiece model: ") + e.what(), "Pass the tokenizer.model that came with the model");
  }
  if (!status.ok()) fail(where, "not a valid SentencePiece model: " + status.ToString(), "Pass the tokenizer.model that came with the model");
}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

std::vector<int> SentencePieceTokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  const auto status = sp_->Encode(text, &ids);
  if (!status.ok()) fail("sentencepiece", "encoding failed: " + status.ToString());
  return ids;
}

std::string SentencePieceTokenizer::decode_token(int prev, int token) const {
  if (token < 0 || token >= vocab_size()) fail("SentencePieceTokenizer::decode_token", "id " + std::to_string(token) + " is outside the vocabulary");
  if (sp_->IsControl(token)) return "";
  std::string p = sp_->IdToPiece(token);
  if (sp_->IsByte(token)) {
    const int b = text::parse_byte_piece(p);
    if (b >= 0) return std::string(1, char(b));
  }
  std::string out = text::replace_all(p, text::kMetaSpace, " ");
  if ((prev < 0 || sp_->IsControl(prev)) && !out.empty() && out[0] == ' ') out.erase(0, 1);
  return out;
}

int SentencePieceTokenizer::vocab_size() const { return sp_->GetPieceSize(); }
std::string SentencePieceTokenizer::piece(int id) const { return sp_->IdToPiece(id); }
float SentencePieceTokenizer::score(int id) const { return sp_->GetScore(id); }
int SentencePieceTokenizer::gguf_token_type(int id) const {
  if (sp_->IsUnknown(id)) return 2;
  if (sp_->IsControl(id)) return 3;
  if (sp_->IsUnused(id)) return 5;
  if (sp_->IsByte(id)) return 6;
  return 1;
}

}  // namespace condense
