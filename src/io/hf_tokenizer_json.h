// Hugging Face tokenizer.json files with a "BPE" model: the SentencePiece-style
// (Llama 2, Mistral) and byte-level (Llama 3, Qwen2, GPT-2) shapes. Anything
// else (Unigram, WordPiece, unknown normalizers, pre-tokenizers or decoders) is
// refused with the JSON path that names it. Reading rules: every id an integer
// in [0, vocabulary entries + added tokens) (so no id reaches outside the token
// table or sizes it beyond the file's own count); Sequence steps are arrays of
// objects; a field of the wrong type names the file ("malformed"), never an
// internal error.
#pragma once
#include <memory>
#include <string>

#include "model/tokenizer_hf_bpe.h"
#include "model/tokenizer_llama2c.h"

namespace condense {

std::unique_ptr<HfBpeTokenizer> parse_hf_tokenizer_json(const std::string& json_text, const std::string& where);
std::unique_ptr<HfBpeTokenizer> load_hf_tokenizer_json(const std::string& path);

// A llama2.c / GGUF "llama" tokenizer (pieces with merge scores) as the
// SentencePiece-style tokenizer.json transformers' LlamaTokenizerFast reads:
// BPE with byte fallback, merges ranked by the merged piece's score (the
// llama2.c rule: the pair whose concatenation scores highest merges first),
// the "<unk>", "<s>", "</s>" of ids 0-2 as special added tokens, a BOS
// template. Also the matching tokenizer_config.json.
std::string hf_tokenizer_json_from_llama2c(const Llama2cTokenizer& tok, int bos_id, int eos_id);
std::string hf_tokenizer_config_json(const Llama2cTokenizer& tok, int bos_id, int eos_id, int max_seq);

}  // namespace condense
