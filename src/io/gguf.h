// GGUF (version 3) files of the llama architecture.
#pragma once
#include <memory>
#include <string>

#include "model/model.h"
#include "model/tokenizer.h"

namespace condense {

struct GgufModel {
  Model model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::string tokenizer_note;
};

GgufModel load_gguf_model(const std::string& path);

}  // namespace condense
