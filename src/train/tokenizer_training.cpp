#include "train/tokenizer_training.h"

#include <sentencepiece_trainer.h>

#include <filesystem>

#include "core/error.h"

namespace condense::train {

std::string train_tokenizer(const std::vector<std::string>& texts, const TokenizerTraining& opt) {
  if (texts.empty()) fail("--text", "no text to learn a tokenizer from");
  std::string input;
  for (const std::string& t : texts) {
    if (!std::filesystem::is_regular_file(t)) fail(t, "is not a readable file");
    if (t.find(',') != std::string::npos) fail(t, "a text path with a comma (SentencePiece's list separator) is refused; rename it");
    input += (input.empty() ? "" : ",") + t;
  }
  if (opt.vocab < 260 || opt.vocab > 1 << 20) fail("--vocab", "must be in [260, 1048576] (byte fallback needs 256 pieces plus unk/bos/eos)");
  if (opt.type != "bpe" && opt.type != "unigram") fail("--type", "'" + opt.type + "' is not one of bpe, unigram");
  std::string proto;
  const auto st = sentencepiece::SentencePieceTrainer::Train(
      {{"input", input},
       {"vocab_size", std::to_string(opt.vocab)},
       {"model_type", opt.type},
       {"character_coverage", "1.0"},
       {"byte_fallback", "true"},
       {"unk_id", "0"},
       {"bos_id", "1"},
       {"eos_id", "2"},
       {"pad_id", "-1"},
       // As Llama's tokenizer: text kept as written (no NFKC, spaces and tabs as they are), digits split.
       {"normalization_rule_name", "identity"},
       {"remove_extra_whitespaces", "false"},
       {"allow_whitespace_only_pieces", "true"},
       {"split_digits", "true"},
       {"minloglevel", "1"},
       {"num_threads", std::to_string(std::max(1, opt.threads))}},
      nullptr, &proto);
  if (!st.ok()) {
    fail("tokenizer training", st.ToString(),
         "--vocab must hold the 256 byte pieces, every character of the text and unk/bos/eos, and no more pieces than the text supports");
  }
  return proto;
}

}  // namespace condense::train
