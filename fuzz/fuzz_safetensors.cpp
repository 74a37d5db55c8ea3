// safetensors: header JSON, dtypes, shapes, data ranges; every tensor read.
#include "core/error.h"
#include "fuzz/fuzz_input.h"
#include "io/safetensors.h"

CONDENSE_FUZZ_TARGET(data, size) {
  condense::SafetensorsFile f(condense::fuzz::input_file(data, size, "model.safetensors"));
  for (const auto& [name, e] : f.entries()) {
    if (e.raw_only) f.bytes(name);
    else f.read_f32(name);
  }
}
