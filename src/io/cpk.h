// The packed checkpoint (.cpk): one file holding a model's config, tokenizer,
// provenance and every weight in its compressed form (spec: docs/FORMAT.md).
// Writing goes through a temporary file and a rename; reading validates the
// magic, version, checksums, offsets and every tensor against the config and
// fails naming the file and what is wrong.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/model_loader.h"
#include "io/weight_source.h"

namespace condense {

inline constexpr uint32_t kCpkMajor = 1, kCpkMinor = 1;  // 1.1: optional "activations" key

struct CpkWriteOptions {
  int zstd_level = 0;               // 0: sections stored raw; 1..19: zstd where it saves space
  std::string tokenizer_path;       // embedded when not empty
  // Or a tokenizer held in memory: its bytes and the file name that says its kind ("tokenizer.bin").
  std::string tokenizer_bytes, tokenizer_file;
  std::string provenance_json = "{}";  // recipe, stage history, source (a JSON object)
};

void save_cpk(const Model& m, const std::string& path, const CpkWriteOptions& opt);

// True when the file starts with the .cpk magic.
bool is_cpk(const std::string& path);
// The model (f32 tensors hold the effective values, Model::compression the
// packed forms) and the embedded tokenizer, if any.
// effective_f32 = false leaves the f32 tensors of quantized weights undefined.
LoadedModel load_cpk(const std::string& path, bool effective_f32 = true);

// A .cpk opened for streaming: `skeleton` gets everything but the weights
// (config, scales, tokenizer; layers sized, tensors undefined) and the source
// reads one weight at a time, checksummed, as load_cpk would (quantized
// weights as their packed form only).
std::unique_ptr<WeightSource> open_cpk_stream(const std::string& path, LoadedModel& skeleton);

// What each tensor takes in a .cpk: for `info`.
struct CpkTensorInfo {
  std::string name, format;        // format: f32 | int8 | int4 | fp8-e4m3 (+ scheme details in `scheme`)
  std::string scheme, sparsity;    // "" when dense
  std::vector<int64_t> shape;
  int64_t elements = 0, kept = 0;
  uint64_t bytes = 0;              // stored bytes of all its sections (values, scales, zeros, mask)
  bool linear = false;             // a block's linear weight
};
struct CpkInfo {
  uint32_t major = 0, minor = 0;
  uint64_t file_bytes = 0, header_bytes = 0;
  std::string header_json;
  std::vector<CpkTensorInfo> tensors;
};
CpkInfo read_cpk_info(const std::string& path);
// The header's model config (header checksum and section table checked), no tensor read.
ModelConfig read_cpk_config(const std::string& path);

}  // namespace condense
