// `condense convert`: a model in any format condense reads written in the
// format another runtime loads. What is built:
//   gguf  llama.cpp's GGUF: every 2-D weight in one ggml type (or `auto`: the
//         type each packed weight maps onto exactly), q/k rows permuted for
//         ggml's RoPE, the tokenizer embedded (llama2.c / GGUF "llama" ones)
//   cpk   condense's packed checkpoint (GGUF Q8_0 / Q4_0 keep their codes)
//   hf    a Hugging Face folder: config.json + model.safetensors (dequantized)
//   compressed-tensors  the same folder with vLLM's quantized layout
//         (io/compressed_tensors.h) and quantization_config
//   --tp N  a folder of N tensor-parallel rank .cpk files and a manifest
//           (tp.json); --merge reads one back as the input of any conversion
// Folders may be sharded (max_shard_bytes: model-0000k-of-0000N.safetensors
// and model.safetensors.index.json).
// Every output goes through a temporary name; a failure leaves nothing.
#pragma once
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace condense::pipeline {

struct ConvertOptions {
  std::string to;           // gguf | cpk | hf | compressed-tensors
  std::string out;
  std::string tokenizer;    // --tokenizer for inputs that carry none
  std::string gguf_type = "auto";
  std::string hf_dtype = "bf16";  // dense tensors (and pack-quantized scales) of hf / compressed-tensors
  uint64_t max_shard_bytes = 0;   // 0: one model.safetensors
  int zstd_level = 0;       // cpk
  bool dry_run = false;
  // Quality of the output against the input on this text (perplexity
  // protocol windows of ctx tokens), when not empty.
  std::string text;
  int ctx = 256, max_windows = 0;
  bool log_json = false;
  // Tensor parallelism (pipeline/tensor_parallel.h): tp > 1 writes `out` as a
  // folder of rank .cpk files + tp.json; merge reads such a folder as the input.
  int tp = 1;
  bool merge = false;
};

// Converts and returns what happened: per tensor (GGUF) the type, whether the
// values are exact or re-quantized and the measured error; output bytes,
// seconds, peak RSS; with `text`, the perplexity change and KL the
// conversion costs.
nlohmann::json convert_model(const std::string& in, const ConvertOptions& opt);

}  // namespace condense::pipeline
