// Hugging Face model folders: config.json (Llama, Mistral, Qwen2 model types)
// plus model.safetensors or a sharded model.safetensors.index.json.
// Reading rules: config integers range-checked (never truncated) and within
// ModelConfig's limits; every weight the config implies present once across
// the shards with its shape, checked before it is read; no tensor left over
// (but a rotary cache and a tied lm_head); shard names are files in the folder.
#pragma once
#include <string>

#include "model/model.h"

namespace condense {

// The config.json text mapped onto ModelConfig; `where` names the file in errors.
ModelConfig parse_hf_config(const std::string& json_text, const std::string& where);
std::string hf_config_json(const ModelConfig& c, const std::string& torch_dtype);
Model load_hf_model(const std::string& dir);
// Writes config.json and model.safetensors with weights stored as `dtype`
// (f32 or bf16). `metadata` goes into the safetensors header.
void save_hf_model(const Model& m, const std::string& dir, DType dtype,
                   const std::map<std::string, std::string>& metadata = {});

}  // namespace condense
