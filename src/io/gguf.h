// GGUF version 3 (llama.cpp's format) for the "llama" architecture.
//
// Layout: "GGUF", u32 version, u64 tensor count, u64 metadata count; metadata as
// (string key, u32 type, value) with strings as u64 length + bytes and arrays as
// u32 element type + u64 count + elements; tensor infos as (string name, u32
// n_dims, u64 dims[n_dims] innermost first, u32 ggml type, u64 offset); the data
// section starts at the next multiple of general.alignment (default 32).
// q/k rows are in llama.cpp's interleaved RoPE layout and are permuted at load.
// Tensors: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K and Q6_K are read (other
// ggml types raise an error naming the type); Q8_0 and Q4_0 weights keep their
// codes as int8 / int4 g32 (io/gguf_codes.h), the rest are decoded to f32.
// The embedded tokenizer is read when tokenizer.ggml.model is "llama".
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "io/weight_source.h"
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
struct GgufWriteOptions {
  // The ggml type of 2-D weights (ggml::Type), or -1: each in the type its
  // packed form maps onto exactly (Q8_0, Q4_0, Q4_1), else F32. 1-D weights
  // (norms, biases) are always F32, as llama.cpp keeps them.
  int type = -1;
  // Embedded when given and expressible as GGUF's "llama" (SentencePiece BPE)
  // vocabulary: a llama2.c tokenizer, or a SentencePiece BPE model (checked:
  // the pieces and scores must encode probe texts as the model does).
  const Tokenizer* tokenizer = nullptr;
  std::string chat_template;                    // tokenizer.chat_template when not empty
  std::string name;                             // general.name ("condense" when empty)
};

// Why `tok` cannot be embedded in a GGUF file ("" when it can).
std::string gguf_tokenizer_problem(const Tokenizer& tok);

// What happens to one tensor.
struct GgufTensorPlan {
  std::string name, gguf_name;  // canonical, GGUF
  std::string source;           // how the model holds it: "f32", "int4 g32 sym", ...
  uint32_t type = 0;            // ggml type written
  // "exact": the values are unchanged (F32, or codes copied bit for bit);
  // "re-quantized": encoded again from the effective f32 values.
  std::string how;
  std::string note;             // why: a fallback for rows that do not divide, or why the codes do not map
  std::vector<int64_t> shape;   // canonical [rows, cols]
  uint64_t bytes = 0;
  // Filled by save_gguf: the written values decoded again against the
  // model's effective values (relative RMS error and largest |difference|).
  double rel_rmse = 0, max_abs_err = 0;
};

// The per-tensor plan, without writing anything (`convert --dry-run`). The
// weights come from `source` when given (a stream), else from `model`.
std::vector<GgufTensorPlan> plan_gguf(const Model& model, const GgufWriteOptions& opt, WeightSource* source = nullptr);
// Writes the file (atomically, one row in memory at a time) and returns the
// plan with its measured errors. Quantized weights without f32 values (a
// .cpk loaded packed, or streamed) are decoded from their packed form.
std::vector<GgufTensorPlan> save_gguf(const Model& model, const std::string& path, const GgufWriteOptions& opt, WeightSource* source = nullptr);
// Writes 2-D weights as `dtype` (f32, f16 or bf16) and 1-D ones as f32.
void save_gguf_model(const Model& model, const Llama2cTokenizer* tokenizer, const std::string& path, DType dtype);

}  // namespace condense
