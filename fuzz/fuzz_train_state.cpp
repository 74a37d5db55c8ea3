// HDF5 training state: the checksum header, then (past it) the metadata and tensors.
#include "core/error.h"
#include "fuzz/fuzz_input.h"
#include "io/train_state.h"

CONDENSE_FUZZ_TARGET(data, size) {
  const std::string path = condense::fuzz::input_file(data, size, "state.h5");
  condense::read_train_state_meta(path);
  condense::Tensor a = condense::Tensor::zeros(condense::DType::F32, {4, 8}), b = condense::Tensor::zeros(condense::DType::F32, {8});
  condense::read_train_state_tensors(path, {{"param/a", &a}, {"adam_m/b", &b}});
}
