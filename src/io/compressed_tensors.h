// compressed-tensors checkpoints (what vLLM loads; layout in shared/INTEROP.md
// B.2): a Hugging Face folder whose config.json carries quantization_config
// and whose safetensors hold, per quantized Linear `P`:
//   pack-quantized (int4/int8 weight-only, group or channel):
//     P.weight_packed I32 [out, ceil(in*b/32)]  codes + 2^(b-1), LSB first
//     P.weight_scale  [out, in/group] (channel: [out, 1]) in the model dtype
//     P.weight_shape  I64 [2]
//     P.weight_zero_point I32 [ceil(out*b/32), groups], packed along dim 0 (asymmetric only)
//   int-quantized (int8 W8A8, activations dynamic per token):
//     P.weight I8 [out, in], P.weight_scale F32 [out, 1] (tensor: [1]), P.weight_zero_point I8 (asymmetric)
//   float-quantized (fp8 e4m3, per tensor or channel):
//     P.weight F8_E4M3 [out, in], P.weight_scale F32, P.input_scale F32 [1] (static activations)
//   KV cache: model.layers.N.self_attn.k_scale / v_scale F32 [] (fp8, per tensor)
// x = (q - zp) * scale with q, zp in the signed range [-2^(b-1), 2^(b-1)).
// Weights no vLLM scheme holds exactly (a last group shorter than the others,
// fp8 in groups, a quantized embedding) go out dense and unquantized modules
// are listed in "ignore"; each such choice is reported.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "io/safetensors.h"
#include "io/weight_source.h"
#include "model/model.h"

namespace condense {

struct CompressedTensorsExport {
  std::vector<SafetensorsItem> items;   // every tensor, made on demand
  std::string quantization_config;      // JSON object text for config.json
  std::vector<std::string> notes;       // what could not go out as stored
  // Per weight: {name, format, scheme, how ("exact" | "dense: ..."), note}
  std::vector<std::map<std::string, std::string>> tensors;
  std::shared_ptr<WeightSource> own_source;  // the model's, when no source was given
};

// The export of `m` (block linears as stored; everything else dense in
// `dense_dtype`: f16, bf16 or f32). Pack-quantized scales are written in
// dense_dtype too (as llm-compressor does): exact when the scales are (a .cpk's
// are exact in f16), reported otherwise. The weights come from `source` (a
// stream that must outlive the items), else from `m` itself.
CompressedTensorsExport plan_compressed_tensors(const Model& m, DType dense_dtype, WeightSource* source = nullptr);

// Reading: when a Hugging Face folder's config has a compressed-tensors
// quantization_config, its quantized Linears are read into Model::compression
// (codes and scales exactly) with their effective f32 values. `cfg` is the
// parsed config.json; `tensor` finds a stored tensor (nullptr when absent).
struct StoredTensor {
  const SafetensorsFile* file;
  const SafetensorsEntry* entry;
};
bool read_compressed_linear(const nlohmann::json& quantization_config, const std::string& weight_name, int64_t rows, int64_t cols,
                            const std::function<StoredTensor(const std::string&)>& tensor, Model& m, Tensor& out);

// The rest of a compressed-tensors model: input activation quantization (int8
// dynamic per token, or fp8 static with input_scale per linear) and the fp8
// KV cache's k_scale / v_scale.
void read_compressed_extras(const nlohmann::json& quantization_config, const std::function<StoredTensor(const std::string&)>& tensor, Model& m);

}  // namespace condense
