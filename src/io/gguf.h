// GGUF version 3 (llama.cpp's format) for the "llama" architecture.
//
// Layout: "GGUF", u32 version, u64 tensor count, u64 metadata count; metadata as
// (string key, u32 type, value) with strings as u64 length + bytes and arrays as
// u32 element type + u64 count + elements; tensor infos as (string name, u32
// n_dims, u64 dims[n_dims] innermost first, u32 ggml type, u64 offset); the data
// section starts at the next multiple of general.alignment (default 32).
// q/k rows are in llama.cpp's interleaved RoPE layout and are permuted at load.
// Tensors: F32, F16 and BF16 are read; quantized ggml types raise an error naming
// the type. The embedded tokenizer is read when tokenizer.ggml.model is "llama".
#pragma once
#include <memory>
#include <string>

#include "model/model.h"
#include "model/tokenizer_llama2c.h"

namespace condense {

struct GgufModel {
  Model model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::string tokenizer_note;  // why there is none
  std::string chat_template;   // tokenizer.chat_template ("" when absent)
  std::string bos_text, eos_text;  // the BOS / EOS tokens' text ("" when the file has no token list)
};

GgufModel load_gguf_model(const std::string& path);
// The metadata's config (header and tensor layout checked), no weights read.
ModelConfig read_gguf_config(const std::string& path);
// Writes 2-D weights as `dtype` (f32, f16 or bf16) and 1-D ones as f32, as
// llama.cpp does; embeds `tokenizer` when given.
void save_gguf_model(const Model& model, const Llama2cTokenizer* tokenizer, const std::string& path, DType dtype);

}  // namespace condense
