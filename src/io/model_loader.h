// Opening a model by path, whatever its format, with its tokenizer.
//   directory (or a file inside one) with config.json -> Hugging Face safetensors
//   *.gguf / GGUF magic                                -> GGUF
//   anything else                                      -> llama2.c .bin
// Tokenizer: --tokenizer FILE if given (tokenizer.bin, tokenizer.model,
// tokenizer.json); else the
// one the format carries or sits beside it (for llama2.c: tokenizer.bin or the
// only tok*.bin in the same folder).
#pragma once
#include <memory>
#include <string>

#include "model/model.h"
#include "model/tokenizer.h"

namespace condense {

struct LoadedModel {
  Model model;
  std::unique_ptr<Tokenizer> tokenizer;  // null when none was found
  std::string tokenizer_path;
  std::string tokenizer_note;            // why none was found
  // The Jinja chat template the model's files carry (a Hugging Face folder's
  // chat_template.jinja or tokenizer_config.json "chat_template", GGUF
  // tokenizer.chat_template; "" when none), and the text of its BOS / EOS
  // tokens as templates write them ("" when unknown).
  std::string chat_template, bos_text, eos_text;
};

// effective_f32 = false: a .cpk's quantized weights keep only their packed form
// (Model::compression) and their f32 tensors stay undefined: what the runtime
// engine needs, at the size of the file instead of 4 bytes per weight.
struct LoadOptions {
  bool effective_f32 = true;
};

std::string detect_format(const std::string& path);
LoadedModel load_model(const std::string& path, const std::string& tokenizer_path = "", const LoadOptions& opt = {});
// A model's config from its header alone (any format), for checks before work
// starts (`run --dry-run`); fails as load_model would on a malformed header.
ModelConfig read_model_config(const std::string& path);
std::unique_ptr<Tokenizer> load_tokenizer_file(const std::string& path);
// A tokenizer file's bytes held in memory (embedded in a .cpk); `file_name`'s
// extension says the kind as for load_tokenizer_file, `where` names it in errors.
std::unique_ptr<Tokenizer> load_tokenizer_bytes(const std::string& bytes, const std::string& file_name, const std::string& where);
// The tokenizer or an Error saying what to pass.
const Tokenizer& require_tokenizer(const LoadedModel& m);

}  // namespace condense
