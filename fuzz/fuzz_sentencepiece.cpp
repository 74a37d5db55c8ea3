// SentencePiece tokenizer.model (a protobuf), then a round trip.
#include <string>

#include "core/error.h"
#include "fuzz/fuzz_input.h"
#include "model/tokenizer_sentencepiece.h"

CONDENSE_FUZZ_TARGET(data, size) {
  const condense::SentencePieceTokenizer tok(std::string(reinterpret_cast<const char*>(data), size), "tokenizer.model");
  tok.decode(tok.encode("Once upon a time, 42 \xc3\xa9 \xf0\x9f\x98\x80\n"));
}
