// Hugging Face tokenizer.json (BPE, byte-level or SentencePiece-style), then a round trip.
#include <string>

#include "core/error.h"
#include "fuzz/fuzz_input.h"
#include "io/hf_tokenizer_json.h"

CONDENSE_FUZZ_TARGET(data, size) {
  const auto tok = condense::parse_hf_tokenizer_json(std::string(reinterpret_cast<const char*>(data), size), "tokenizer.json");
  tok->decode(tok->encode("Hello, world! It's 2026 \xc3\xa9\xe6\x97\xa5 \xf0\x9f\x98\x80 <|end|>\n  x"));
}
