// A Hugging Face folder: config.json (with or without a compressed-tensors
// quantization_config) and model.safetensors, loaded as a model. The input is
// a little-endian u32 length, that many bytes of config.json, then the
// safetensors file.
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "fuzz/fuzz_input.h"
#include "io/hf_model.h"

CONDENSE_FUZZ_TARGET(data, size) {
  uint32_t n = 0;
  if (size < 4) return;
  std::memcpy(&n, data, 4);
  if (n > size - 4) return;
  static const bool made = std::filesystem::create_directories(condense::fuzz::work_dir() + "/hf") || true;
  (void)made;
  const std::string cfg = condense::fuzz::input_file(data + 4, n, "hf/config.json");
  condense::fuzz::input_file(data + 4 + n, size - 4 - n, "hf/model.safetensors");
  condense::load_hf_model(std::filesystem::path(cfg).parent_path().string());
}
