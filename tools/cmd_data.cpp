// condense data prepare --text FILE... --tokenizer T --out DIR: token shards + manifest.
// condense data tokenizer --text FILE... --vocab N --out tokenizer.model: learn a tokenizer.
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/model_loader.h"
#include "tools/cli_common.h"
#include "io/atomic_writer.h"
#include "train/token_data.h"
#include "train/tokenizer_training.h"

namespace condense::cli {

void register_data(CLI::App& app) {
  auto* data = app.add_subcommand("data", "Training data tools");
  data->require_subcommand(1);
  auto* cmd = data->add_subcommand("prepare", "Tokenize text files into u32 token shards plus a JSON manifest (train/validation split)");
  auto opt = std::make_shared<train::PrepareOptions>();
  auto tok = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto json_out = std::make_shared<bool>(false);
  cmd->add_option("--text", opt->texts, "UTF-8 text files")->required()->check(CLI::ExistingFile);
  cmd->add_option("--tokenizer", *tok,
                  "Tokenizer: a tokenizer file (tokenizer.bin, tokenizer.model, tokenizer.json) or a model that carries one")
      ->required()
      ->check(CLI::ExistingPath);
  cmd->add_option("--out", *out, "Output folder")->required();
  cmd->add_option("--val-fraction", opt->val_fraction, "Tail of each file held out for validation")->check(CLI::Range(0.0, 0.99));
  cmd->add_option("--skip-bytes", opt->skip_bytes, "Skip this many bytes at each file's start (then to the next line)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--json", *json_out, "Print the result as JSON");
  cmd->callback([=] {
    std::unique_ptr<Tokenizer> own;
    LoadedModel lm;
    const Tokenizer* t = nullptr;
    try {
      own = load_tokenizer_file(*tok);
      t = own.get();
    } catch (const Error& as_tokenizer) {
      try {
        lm = load_model(*tok);  // not a tokenizer file: a model carrying one
        t = &require_tokenizer(lm);
      } catch (const Error& as_model) {
        fail(*tok, std::string("is neither a tokenizer (") + as_tokenizer.what() + ") nor a model with one (" + as_model.what() + ")");
      }
    }
    const train::PrepareResult r = train::prepare_token_data(*t, *opt, *out);
    if (*json_out) {
      std::cout << nlohmann::json{{"manifest", r.manifest_path}, {"train_tokens", r.train_tokens}, {"val_tokens", r.val_tokens},
                                  {"tokenizer", train::tokenizer_fingerprint(*t)}}
                       .dump()
                << "\n";
    } else {
      std::cout << "wrote " << r.manifest_path << ": " << r.train_tokens << " training and " << r.val_tokens << " held-out tokens\n";
    }
  });

  auto* tk = data->add_subcommand("tokenizer", "Learn a SentencePiece tokenizer (BPE, byte fallback, Llama ids) from text files");
  auto to = std::make_shared<train::TokenizerTraining>();
  auto texts = std::make_shared<std::vector<std::string>>();
  auto tout = std::make_shared<std::string>();
  tk->add_option("--text", *texts, "UTF-8 text files")->required()->check(CLI::ExistingFile);
  tk->add_option("--vocab", to->vocab, "Vocabulary size (>= 260: 256 byte pieces + unk/bos/eos + learned pieces)");
  tk->add_option("--type", to->type, "bpe or unigram")->check(CLI::IsMember({"bpe", "unigram"}));
  tk->add_option("--out", *tout, "The tokenizer.model to write")->required();
  tk->callback([=] {
    to->threads = active_threads();
    const std::string proto = train::train_tokenizer(*texts, *to);
    write_file_atomically(*tout, proto);
    const auto check = load_tokenizer_file(*tout);  // what condense will read back
    std::cout << "wrote " << *tout << " (" << check->vocab_size() << " tokens, " << check->kind() << ")\n";
  });
}

}  // namespace condense::cli
