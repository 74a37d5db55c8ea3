// A tokenizer learned from text (SentencePiece's trainer): for a model trained
// from scratch on a corpus that comes without one (the main job's default).
#pragma once
#include <string>
#include <vector>

namespace condense::train {

struct TokenizerTraining {
  int vocab = 512;
  std::string type = "bpe";  // bpe | unigram
  int threads = 1;
};

// The serialized SentencePiece model (a tokenizer.model's bytes): Llama's
// conventions (unk 0, bos 1, eos 2, no pad; no normalization, whitespace kept,
// digits split), every character of the text kept, byte fallback so that any
// input encodes. Fails naming the option or file.
std::string train_tokenizer(const std::vector<std::string>& texts, const TokenizerTraining& opt);

}  // namespace condense::train
