// Training state in HDF5: a JSON metadata string (step, seeds, data position,
// recipe, configs) as a root attribute, and named f32 tensors as datasets
// ("model/<weight>", "adam_m/<weight>", ... with groups made on demand). Written
// to a temporary file in the same folder and renamed, so an interrupted write
// never replaces the last good state.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace condense {

using NamedTensors = std::vector<std::pair<std::string, Tensor*>>;

void write_train_state(const std::string& path, const std::string& meta_json, const NamedTensors& tensors);
// The metadata JSON string of a state file.
std::string read_train_state_meta(const std::string& path);
// Fills each named tensor from the file; shapes must match exactly.
void read_train_state_tensors(const std::string& path, const NamedTensors& tensors);

}  // namespace condense
