// Hugging Face BPE tokenizers (the "BPE" model of tokenizer.json), in the two
// shapes Llama-family models ship:
//  - SentencePiece style (Llama 2, Mistral, TinyLlama): spaces become U+2581 with
//    one prepended, BPE over characters, unknown characters fall back to <0xNN>;
//  - byte-level (Llama 3, Qwen2, GPT-2): text split by the pre-tokenizer regex,
//    each byte mapped to a printable character (GPT-2's bytes_to_unicode), BPE.
// Merges apply lowest rank first, leftmost on ties, as tokenizers' Word::merge_all.
// Added tokens are matched literally before anything else (longest first).
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/pretokenize.h"
#include "model/tokenizer.h"

namespace condense {

struct HfBpeSpec {
  std::unordered_map<std::string, int> vocab;
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  struct Added { int id; std::string content; bool special; };
  std::vector<Added> added;
  bool byte_level = false;
  PreTokenizer pre = PreTokenizer::None;
  bool sp_spaces = false;        // replace ' ' by U+2581
  bool sp_prepend = false;       // prepend U+2581 to each text segment
  bool sp_prepend_first_only = false;
  bool sp_split = false;         // Metaspace split: words start at each U+2581
  bool byte_fallback = false;
  bool ignore_merges = false;    // a word already in the vocabulary is one token
  int unk_id = -1;
};

class HfBpeTokenizer : public Tokenizer {
 public:
  // `where` names the source in errors.
  HfBpeTokenizer(HfBpeSpec spec, const std::string& where);
  std::vector<int> encode(const std::string& text) const override;
  std::string decode_token(int prev, int token) const override;
  int vocab_size() const override { return int(tokens_.size()); }
  std::string kind() const override { return spec_.byte_level ? "hf-bpe-bytelevel" : "hf-bpe-sentencepiece"; }

 private:
  void encode_word(const std::string& word, std::vector<int>& out) const;
  int id_of(const std::string& s) const;

  HfBpeSpec spec_;
  std::vector<std::string> tokens_;  // id -> token string ("" for unused ids)
  std::vector<bool> special_;
  std::unordered_map<uint64_t, std::pair<int, int>> merge_;  // (left, right) -> (rank, merged)
  std::string byte_char_[256];                               // byte -> UTF-8 of its printable stand-in
  std::unordered_map<uint32_t, uint8_t> char_byte_;          // stand-in code point -> byte
  int byte_fallback_ids_[256];
};

}  // namespace condense
