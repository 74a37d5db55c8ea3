// Hugging Face config.json.
#include <string>

#include "core/error.h"
#include "fuzz/fuzz_input.h"
#include "io/hf_model.h"

CONDENSE_FUZZ_TARGET(data, size) { condense::parse_hf_config(std::string(reinterpret_cast<const char*>(data), size), "config.json"); }
